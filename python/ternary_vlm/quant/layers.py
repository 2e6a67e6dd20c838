"""QuantLinear: the drop-in replacement for models.layers.Linear during quantization-aware training.

It keeps the float latent weights W and a learnable per-output-channel scale α. The forward pass
uses α·t with t the nearest-centre codes of W (ternary {-1,0,1} or binary {-1,1}); gradients flow
to W through a straight-through estimator and to α as d(α·t)/dα = t (LSQ-style). What export packs
is exactly `codes()` and `scale`, the same arrays the forward pass uses.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ternary_vlm.models import layers
from ternary_vlm.quant import init as qinit
from ternary_vlm.quant import schemes



def codes(w: jax.Array, scale: jax.Array, mode: str) -> jax.Array:
    """Nearest-centre codes as float (jax twin of init.quantize_codes)."""
    if mode == "binary":
        return jnp.where(w >= 0, 1.0, -1.0).astype(w.dtype)
    return jnp.clip(jnp.round(w / scale[:, None]), -1.0, 1.0)


def fake_quant(w: jax.Array, scale: jax.Array, mode: str) -> jax.Array:
    """Forward α·t; backward: identity to w (STE), t to α."""
    t = jax.lax.stop_gradient(codes(w, scale, mode))
    return scale[:, None] * t + (w - jax.lax.stop_gradient(w))


class QuantLinear(nnx.Module):
    def __init__(self, weight: np.ndarray, bias, scale: np.ndarray, mode: str, name: str = ""):
        schemes.by_mode(mode)  # unknown modes fail here
        self.out_features, self.in_features = weight.shape
        self.mode, self.name = mode, name
        self.weight = nnx.Param(jnp.asarray(weight, jnp.float32))
        self.scale = nnx.Param(jnp.asarray(scale, jnp.float32))
        self.bias = nnx.Param(jnp.asarray(bias, jnp.float32)) if bias is not None else None

    @classmethod
    def from_linear(cls, linear: layers.Linear, mode: str, init: str) -> "QuantLinear":
        w = np.asarray(linear.weight[...])
        bias = None if linear.bias is None else np.asarray(linear.bias[...])
        return cls(w, bias, qinit.init_scale(w, init, mode), mode, linear.name)

    def codes(self) -> np.ndarray:
        """int8 codes [out, in], what the packing and the kernels consume."""
        return np.asarray(codes(self.weight[...], self.scale[...], self.mode)).astype(np.int8)

    def __call__(self, x: jax.Array) -> jax.Array:
        w = fake_quant(self.weight[...], self.scale[...], self.mode)
        y = jnp.einsum("...i,oi->...o", layers.int8_rounded(x), w)
        if self.bias is not None:
            y = y + self.bias[...]
        return y
