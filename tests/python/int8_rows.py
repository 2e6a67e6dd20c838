"""The int8 activation rows of cc/kernels/a8/layout.h in numpy, in float32 as our W2A8 ops and Int8MatMul compute
them: the reference of the tests that check those ops. Over [lo, hi] = [min(x, 0), max(x, 0)] per row:
s = (hi - lo) / 253, z = round-half-even(-126.5 - lo · 253 / (hi - lo)), q = clip(round-half-even(x · 253 / (hi - lo))
+ z, -127, 127), so that |x - s · (q - z)| ≤ s / 2."""

from typing import NamedTuple

import numpy as np


class Rows(NamedTuple):
    q: np.ndarray       # [m, k] int64, in [-127, 127]
    s: np.ndarray       # [m, 1] float32 step
    z: np.ndarray       # [m, 1] float32 zero point (an integer)
    scaled: np.ndarray  # [m, k] float32 x · 253 / (hi - lo), before rounding
    shift: np.ndarray   # [m, 1] float32 -126.5 - lo · 253 / (hi - lo), before rounding (z)


def quantize(x: np.ndarray) -> Rows:
    x = np.asarray(x, np.float32)
    lo = np.minimum(x.min(axis=1, keepdims=True), np.float32(0))
    hi = np.maximum(x.max(axis=1, keepdims=True), np.float32(0))
    span = hi - lo
    inv = np.where(span > 0, np.float32(253) / np.where(span > 0, span, np.float32(1)), np.float32(0))
    inv = inv.astype(np.float32)
    shift = (np.float32(-126.5) - lo * inv).astype(np.float32)
    z = np.round(shift)
    scaled = (x * inv).astype(np.float32)
    q = np.clip(np.round(scaled) + z, -127, 127).astype(np.int64)
    return Rows(q, (span / np.float32(253)).astype(np.float32), z, scaled, shift)


def product(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, Rows]:
    """(s · (q - z) · wᵀ in float64, |s · q·wᵀ| + |s · z · Σw|: the size of the terms the ops' epilogue rounds, the
    rows) for x [m, k] and integer weights w [n, k]."""
    rows = quantize(x)
    w = np.asarray(w, np.int64)
    acc = rows.q @ w.T
    s, z = rows.s.astype(np.float64), rows.z.astype(np.float64)
    wsum = w.sum(axis=1)
    return s * (acc - z * wsum), np.abs(s * acc) + np.abs(s * z * wsum), rows
