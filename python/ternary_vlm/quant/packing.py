"""Packed storage of ternary and binary weights, defined once in C++ (cc/kernels/packing.h).

A weight matrix [n, k] is packed row by row; see packing.h for the bit layout.
"""

import functools

import numpy as np

from ternary_vlm import _native

TERNARY = "ternary2"
BINARY = "binary1"
TERNARY5 = "ternary5"  # the same ternary codes, 5 per byte (1.6 bits per weight)
FORMATS = {f["name"]: f for f in _native.formats()}


def row_bytes(fmt: str, k: int) -> int:
    """Bytes of one packed row of k weights."""
    return _native.row_bytes(fmt, k)


def pack(values: np.ndarray, fmt: str) -> np.ndarray:
    """int8 [n, k] with values in {-1, 0, 1} (ternary) or {-1, 1} (binary) -> uint8 [n, row_bytes]."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"pack: values must be integers, got {values.dtype}")
    return _native.pack(values.astype(np.int8, copy=False), fmt)


def unpack(packed: np.ndarray, k: int, fmt: str) -> np.ndarray:
    """uint8 [n, row_bytes] -> int8 [n, k]. Raises ValueError on invalid codes or padding."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8:
        raise ValueError(f"unpack: packed must be uint8, got {packed.dtype}")
    return _native.unpack(packed, k, fmt)


@functools.cache
def byte_table(fmt: str) -> np.ndarray:
    """float32 [256, weights per byte]: the values each byte encodes (rows of invalid bytes are zero; validated
    packed buffers never hold one). A lookup table that unpacks with a gather, no bit operations. Cached: do
    not modify."""
    per_byte = FORMATS[fmt]["weights_per_byte"]
    table = np.zeros((256, per_byte), np.float32)
    for byte in range(256):
        try:
            table[byte] = unpack(np.array([[byte]], np.uint8), per_byte, fmt)[0]
        except ValueError:
            pass
    return table
