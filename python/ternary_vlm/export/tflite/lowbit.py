"""Stock LiteRT's low-bit weight tensors, written here and nowhere else. Its FULLY_CONNECTED runs them with int8
activations quantized on the fly (XNNPACK's qd8 kernels, and TFLite's builtin kernels), no custom op needed:

  INT2 (schema TensorType 19)  2-bit two's-complement values, four per byte, least-significant pair first
  INT4 (schema TensorType 17)  4-bit two's-complement values, two per byte, low nibble first

Values are packed as one stream over the row-major [N, K] tensor. Scales are per output channel (zero point 0),
or for INT4 also blockwise: one float16 scale per `block` consecutive inputs of a row (BlockwiseQuantization).
"""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

TYPES = {2: schema.TensorType.INT2, 4: schema.TensorType.INT4}


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Signed integers [N, K] within `bits` bits -> uint8 [ceil(N * K * bits / 8)]."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = np.asarray(values)
    if values.size and (values.min() < lo or values.max() > hi):
        raise ValueError(f"INT{bits} values must lie in [{lo}, {hi}]")
    per_byte = 8 // bits
    codes = (values.astype(np.int16).ravel() & ((1 << bits) - 1)).astype(np.uint8)
    codes = np.pad(codes, (0, -len(codes) % per_byte)).reshape(-1, per_byte)
    return np.bitwise_or.reduce(codes << (bits * np.arange(per_byte, dtype=np.uint8)), axis=1).astype(np.uint8)


def quantize_int4(w: np.ndarray, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric 4-bit weights of float w [N, K]: codes in [-7, 7] and scales [N] (per channel) or [N, K / block]
    (float16-representable, as the file stores them), round to nearest."""
    n, k = w.shape
    groups = w.reshape(n, 1, k) if block is None else w.reshape(n, k // block, block)
    scale = np.maximum(np.abs(groups).max(axis=-1), 1e-30) / 7
    if block is not None:
        scale = np.maximum(scale.astype(np.float16), np.float16(6e-8)).astype(np.float32)
    codes = np.clip(np.round(groups / scale[..., None]), -7, 7).astype(np.int8).reshape(n, k)
    return codes, (scale[:, 0] if block is None else scale).astype(np.float32)


def per_channel(scale: np.ndarray) -> "schema.QuantizationParametersT":
    q = schema.QuantizationParametersT()
    q.scale, q.zeroPoint, q.quantizedDimension = [float(s) for s in scale], [0] * len(scale), 0
    return q


def blockwise(scales_tensor: int, block: int) -> "schema.QuantizationParametersT":
    """The scales live in their own float16 tensor [N, K / block]."""
    details = schema.BlockwiseQuantizationT()
    details.scales, details.zeroPoints, details.blockSize = scales_tensor, -1, block
    q = schema.QuantizationParametersT()
    q.detailsType, q.details = schema.QuantizationDetails.BlockwiseQuantization, details
    return q
