"""Output-aware scales: α chosen against each layer's error on real inputs, not on its weights alone.

k-means (init.py) minimizes ||W − α·t||², which treats every input channel alike; a layer's effect on the model is
its output x·(W − α·t)ᵀ on the inputs it actually sees, whose channels differ by orders of magnitude in a real LM.
With H = E[xᵀx] over calibration tokens (one K×K matrix per layer, recorded in one float forward pass), the output
error of a row w is (w − αt) H (w − αt)ᵀ. Ternary: α is searched on a grid around the k-means α, t being the
nearest-centre codes of each candidate (so the codes QuantLinear derives from the chosen α are exactly the ones
scored). Binary: t = sign(w) does not depend on α, and the optimum is closed-form, α = t H wᵀ / t H tᵀ.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ternary_vlm.models import layers
from ternary_vlm.quant import init as qinit

GRID = np.union1d(np.linspace(0.4, 2.0, 41), [1.0])  # candidate α as multiples of the k-means α (1 included)


class _Recorder(nnx.Module):
    """Stands in for a Linear during the calibration pass: accumulates xᵀx of its inputs."""

    def __init__(self, linear, sums: dict):
        self.linear, self.sums = linear, sums

    def __call__(self, x):
        x2 = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
        self.sums[self.linear.name] = self.sums.get(self.linear.name, 0.0) + x2.T @ x2
        return self.linear(x)


def input_moments(model: nnx.Module, rows: np.ndarray, batch: int = 8) -> dict[str, np.ndarray]:
    """E[xᵀx] [K, K] of the inputs of every Linear of a text decoder, over token rows [N, T] (float64)."""
    sums: dict = {}
    linears = list(layers.iter_linears(model))
    for path, lin in linears:
        layers.set_submodule(model, path, _Recorder(lin, sums))
    try:
        for i in range(0, len(rows), batch):
            model(jnp.asarray(rows[i: i + batch]))
    finally:
        for path, lin in linears:
            layers.set_submodule(model, path, lin)
    tokens = rows.shape[0] * rows.shape[1]
    return {name: s / tokens for name, s in sums.items()}


def output_error(w: np.ndarray, wq: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Per row, (w − wq) H (w − wq)ᵀ."""
    e = w - wq
    return np.einsum("ok,ok->o", e @ h, e)


def output_aware_scale(w: np.ndarray, h: np.ndarray, mode: str) -> np.ndarray:
    """α [out] minimizing each row's output error on inputs with second moments h."""
    w = np.asarray(w, np.float64)
    if mode == "binary":
        t = qinit.quantize_codes(w, np.ones(w.shape[0]), mode).astype(np.float64)
        th = t @ h
        return np.maximum(np.einsum("ok,ok->o", th, w) / np.einsum("ok,ok->o", th, t), 1e-12).astype(np.float32)
    base = qinit.init_scale(w, "kmeans", mode).astype(np.float64)
    best, best_err = base, np.full(w.shape[0], np.inf)
    for c in GRID:
        alpha = base * c
        err = output_error(w, alpha[:, None] * qinit.quantize_codes(w, alpha, mode), h)
        better = err < best_err
        best, best_err = np.where(better, alpha, best), np.where(better, err, best_err)
    return best.astype(np.float32)
