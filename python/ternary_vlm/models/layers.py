"""Building blocks shared by the vision encoder and the text decoder.

Every linear layer of every model is made by `linear(...)` and nothing else. The quantization code swaps
them without touching the models, in one of two ways:

  1. At construction, install another factory (same signature, returns an nnx.Module that maps
     [..., in_features] -> [..., out_features]):

         with layers.linear_factory(my_ternary_factory):
             model = SmolVLM(cfg, rngs=nnx.Rngs(0))

     The factory gets `name`, the layer's dotted path in the model (e.g. "text_model.layers.3.mlp.up_proj",
     "vision_model.embeddings.patch_embedding", "connector.modality_projection.proj", "text_model.lm_head"),
     so it can keep some layers in float (the first/last blocks, the LM head) by returning `Linear`.

  2. After loading, walk `iter_linears(model)` and replace modules in place with `set_submodule`.

Weights are stored PyTorch-style, `weight` [out_features, in_features] (the TFLite FULLY_CONNECTED and
packing layout: one row per output), so checkpoints map one to one.

The token embedding is `Embedding` (made by `embedding(...)`); the LM head is either a `linear` named
"...lm_head" or, with tied embeddings, `Embedding.attend` (see llama.LlamaDecoder.logits).

Everything here lowers to TFLite builtins: einsum/dot_general -> FULLY_CONNECTED / BATCH_MATMUL,
jnp.take -> GATHER, tanh-GELU, rsqrt. No erf unless a checkpoint asks for exact GELU (see `activation`).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
from absl import logging
from flax import nnx

from ternary_vlm.errors import TernaryVLMError

_INIT_STD = 0.02


# None: layers see their float inputs. Else every Linear, QuantLinear and the tied LM head round their input to
# int8 as the W2A8 export's ops do, per row (0) or per group of this many inputs (`int8_inputs`).
_int8_group: int | None = None


@contextlib.contextmanager
def int8_inputs(group: int | None = 0):
    """Within it, linear layers and Embedding.attend see their input rounded to int8 with a zero point, over each
    row (group 0: what the W2A8 export's TernaryMatMul and Int8MatMul do, cc/kernels/a8/layout.h) or over each group
    of `group` consecutive inputs: over [lo, hi] = [min(x, 0), max(x, 0)], s = (hi - lo) / 253,
    z = round-half-even(-126.5 - lo / s), q = clip(round-half-even(x / s) + z, -127, 127), seen as s · (q - z);
    None: float inputs. For scoring a model as its export computes it
    (cli/evaluate, train/evaluate) and for training through that rounding (train/loop.distillation_loss). Read when
    a function is traced: a jit-compiled caller must key its trace on active_int8_group() (train/evaluate does) or
    enter the context inside the traced function (distillation_loss does)."""
    global _int8_group
    previous, _int8_group = _int8_group, group
    try:
        yield
    finally:
        _int8_group = previous


def active_int8_group() -> int | None:
    """The group of the innermost `int8_inputs` (None outside any): for jit callers that key their traces on it."""
    return _int8_group


def int8_group(flag: str | None) -> int | None:
    """The group of an --int8_inputs flag value: None (unset), 'row' -> 0, or N > 0."""
    if flag is None:
        return None
    if flag != "row" and not (flag.isdigit() and int(flag) > 0):
        raise TernaryVLMError(f"--int8_inputs={flag}: expected 'row' or a group size N > 0")
    return 0 if flag == "row" else int(flag)


def int8_rounded(x: jax.Array) -> jax.Array:
    """x as the layer sees it under `int8_inputs` (x itself outside it); the gradient passes straight through the
    rounding, as in BitNet's 8-bit activations."""
    if _int8_group is None:
        return x
    k = x.shape[-1]
    group = _int8_group or k
    if k % group:
        raise TernaryVLMError(f"an input of {k} features does not split into int8 groups of {group}")
    xs = x.reshape(*x.shape[:-1], k // group, group)
    lo = jnp.minimum(jnp.min(xs, axis=-1, keepdims=True), 0.0)
    hi = jnp.maximum(jnp.max(xs, axis=-1, keepdims=True), 0.0)
    inv = jnp.where(hi > lo, 253.0 / jnp.where(hi > lo, hi - lo, 1.0), 0.0)
    z = jnp.round(-126.5 - lo * inv)
    q = jnp.clip(jnp.round(xs * inv) + z, -127.0, 127.0)
    seen = ((q - z) * ((hi - lo) / 253.0)).reshape(x.shape)
    return x + jax.lax.stop_gradient(seen - x)


class Linear(nnx.Module):
    """y = x W^T + b with W [out_features, in_features] (float)."""

    def __init__(self, in_features: int, out_features: int, *, use_bias: bool, rngs: nnx.Rngs,
                 name: str = "", dtype=jnp.float32):
        self.in_features, self.out_features, self.name = in_features, out_features, name
        self.weight = nnx.Param(_INIT_STD * jax.random.normal(rngs.params(), (out_features, in_features), dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), dtype)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.einsum("...i,oi->...o", int8_rounded(x), self.weight[...])
        if self.bias is not None:
            y = y + self.bias[...]
        return y


LinearFactory = Callable[..., nnx.Module]
_linear_factory: LinearFactory = Linear


def linear(in_features: int, out_features: int, *, use_bias: bool, rngs: nnx.Rngs, name: str) -> nnx.Module:
    """The one place linear layers are made; see the module docstring."""
    return _linear_factory(in_features, out_features, use_bias=use_bias, rngs=rngs, name=name)


def set_linear_factory(factory: LinearFactory) -> LinearFactory:
    """Installs `factory` for all later `linear(...)` calls; returns the previous one."""
    global _linear_factory
    previous, _linear_factory = _linear_factory, factory
    return previous


@contextlib.contextmanager
def linear_factory(factory: LinearFactory):
    previous = set_linear_factory(factory)
    try:
        yield
    finally:
        set_linear_factory(previous)


def iter_linears(model: nnx.Module, kind: type = Linear) -> Iterator[tuple[tuple, nnx.Module]]:
    """(path, module) for every `kind` module in the model, path as nnx gives it."""
    for path, node in nnx.iter_graph(model):
        if isinstance(node, kind):
            yield path, node


def set_submodule(model: nnx.Module, path: tuple, module: nnx.Module) -> None:
    """Replaces the submodule at `path` (as from iter_linears) by `module`."""
    parent = model
    for key in path[:-1]:
        parent = parent[key] if isinstance(key, int) else getattr(parent, key)
    if isinstance(path[-1], int):
        parent[path[-1]] = module
    else:
        setattr(parent, path[-1], module)


class Embedding(nnx.Module):
    """Token embedding table [num_embeddings, features]; `attend` is the tied LM head."""

    def __init__(self, num_embeddings: int, features: int, *, rngs: nnx.Rngs, name: str = "", dtype=jnp.float32):
        self.name = name
        self.weight = nnx.Param(_INIT_STD * jax.random.normal(rngs.params(), (num_embeddings, features), dtype))

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.weight[...], ids, axis=0)

    def attend(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("...d,vd->...v", int8_rounded(x), self.weight[...])


def embedding(num_embeddings: int, features: int, *, rngs: nnx.Rngs, name: str) -> Embedding:
    return Embedding(num_embeddings, features, rngs=rngs, name=name)


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype=jnp.float32):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.weight[...] * y.astype(x.dtype)


class LayerNorm(nnx.Module):
    def __init__(self, dim: int, eps: float, dtype=jnp.float32):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((dim,), dtype))
        self.bias = nnx.Param(jnp.zeros((dim,), dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        centered = x32 - mean
        var = jnp.mean(centered * centered, axis=-1, keepdims=True)
        y = centered * jax.lax.rsqrt(var + self.eps)
        return (y * self.weight[...] + self.bias[...]).astype(x.dtype)


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The checkpoint's activation. gelu_pytorch_tanh lowers to TFLite builtins; exact 'gelu' needs erf,
    which does not lower (noted in a warning: such a model runs in JAX but needs tanh-GELU for export)."""
    if name in ("gelu_pytorch_tanh", "gelu_new", "gelu_fast"):
        return lambda x: jax.nn.gelu(x, approximate=True)
    if name == "gelu":
        logging.warning("exact (erf) GELU: matches the checkpoint, but erf does not lower to TFLite builtins")
        return lambda x: jax.nn.gelu(x, approximate=False)
    if name in ("silu", "swish"):
        return jax.nn.silu
    raise ValueError(f"unsupported activation {name!r}")
