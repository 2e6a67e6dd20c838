"""THE quantization table: one row per scheme, joining the vocabularies that name the same idea.

  mode        ternarize --mode, QuantLinear.mode, quantization_config.mode of a ternarize output
  format      the packing format of its codes (cc/kernels/packing.h FormatInfo, through the native module)
  custom_op   the TFLite op that multiplies by the packed codes (cc/tflite/matmul_op.h)
  values      the alphabet of the codes t (weights are α·t, one α per output row)
  bits        storage per weight, from the C++ format table

A new scheme is one row here plus its format in packing.h, its code rule in quant/layers.py and its kernels.
"""

from __future__ import annotations

import dataclasses

from ternary_vlm.quant import packing


@dataclasses.dataclass(frozen=True)
class Scheme:
    mode: str
    format: str
    custom_op: str
    values: tuple[int, ...]

    @property
    def bits(self) -> float:
        return packing.FORMATS[self.format]["bits_per_weight"]


TERNARY = Scheme("ternary", packing.TERNARY, "TernaryMatMul", (-1, 0, 1))
BINARY = Scheme("binary", packing.BINARY, "BinaryMatMul", (-1, 1))
SCHEMES = (TERNARY, BINARY)
MODES = tuple(s.mode for s in SCHEMES)


def by_mode(mode: str) -> Scheme:
    for s in SCHEMES:
        if s.mode == mode:
            return s
    raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")


def by_format(fmt: str) -> Scheme:
    for s in SCHEMES:
        if s.format == fmt:
            return s
    raise ValueError(f"unknown packing format {fmt!r} (known: {', '.join(s.format for s in SCHEMES)})")
