"""The SigLIP-style vision encoder of SmolVLM / Idefics3 (NaViT-style position buckets).

The patch embedding (a stride-p convolution in the checkpoint) is a `layers.linear` over flattened
patches [C * p * p] (channel-major, like the conv weight flattened), so it lowers to FULLY_CONNECTED
and can be quantized like any other linear layer.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ternary_vlm.models import layers
from ternary_vlm.models.config import VisionConfig


def patchify(pixel_values: jax.Array, patch_size: int) -> jax.Array:
    """[B, C, H, W] -> [B, (H/p)*(W/p), C*p*p], patches row-major, each patch channel-major."""
    b, c, h, w = pixel_values.shape
    p = patch_size
    x = pixel_values.reshape(b, c, h // p, p, w // p, p)
    x = x.transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def position_ids(patches_h: int, patches_w: int, patches_per_side: int) -> np.ndarray:
    """Position-embedding rows for a full (unpadded) image of patches_h x patches_w patches: fractional
    coordinates bucketed onto the trained patches_per_side grid, as transformers computes them."""
    boundaries = np.arange(1, patches_per_side, dtype=np.float64) / patches_per_side
    boundaries = boundaries.astype(np.float32)

    def buckets(n):
        step = np.float32(1.0) / np.float32(n)
        frac = np.minimum(np.arange(n, dtype=np.float32) * step, np.float32(1.0 - 1e-6))
        return np.searchsorted(boundaries, frac, side="right")

    ids = buckets(patches_h)[:, None] * patches_per_side + buckets(patches_w)[None, :]
    return ids.reshape(-1).astype(np.int32)


class VisionEmbeddings(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, name: str):
        self.cfg = cfg
        patch_dim = cfg.num_channels * cfg.patch_size ** 2
        self.patch_embedding = layers.linear(patch_dim, cfg.hidden_size, use_bias=True, rngs=rngs,
                                             name=f"{name}.patch_embedding")
        self.position_embedding = layers.embedding(cfg.patches_per_side ** 2, cfg.hidden_size, rngs=rngs,
                                                   name=f"{name}.position_embedding")

    def __call__(self, pixel_values: jax.Array) -> jax.Array:
        cfg = self.cfg
        _, _, h, w = pixel_values.shape
        x = self.patch_embedding(patchify(pixel_values, cfg.patch_size))
        ids = position_ids(h // cfg.patch_size, w // cfg.patch_size, cfg.patches_per_side)
        return x + self.position_embedding(jnp.asarray(ids))[None]


class VisionAttention(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, name: str):
        d = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.q_proj = layers.linear(d, d, use_bias=True, rngs=rngs, name=f"{name}.q_proj")
        self.k_proj = layers.linear(d, d, use_bias=True, rngs=rngs, name=f"{name}.k_proj")
        self.v_proj = layers.linear(d, d, use_bias=True, rngs=rngs, name=f"{name}.v_proj")
        self.out_proj = layers.linear(d, d, use_bias=True, rngs=rngs, name=f"{name}.out_proj")

    def __call__(self, x):
        b, n, d = x.shape
        h = self.num_heads
        q = self.q_proj(x).reshape(b, n, h, d // h)
        k = self.k_proj(x).reshape(b, n, h, d // h)
        v = self.v_proj(x).reshape(b, n, h, d // h)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (d // h) ** -0.5
        probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(x.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, n, d)
        return self.out_proj(out)


class VisionMLP(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, name: str):
        self.act = layers.activation(cfg.hidden_act)
        self.fc1 = layers.linear(cfg.hidden_size, cfg.intermediate_size, use_bias=True, rngs=rngs,
                                 name=f"{name}.fc1")
        self.fc2 = layers.linear(cfg.intermediate_size, cfg.hidden_size, use_bias=True, rngs=rngs,
                                 name=f"{name}.fc2")

    def __call__(self, x):
        return self.fc2(self.act(self.fc1(x)))


class VisionEncoderLayer(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, name: str):
        self.layer_norm1 = layers.LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.self_attn = VisionAttention(cfg, rngs=rngs, name=f"{name}.self_attn")
        self.layer_norm2 = layers.LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg, rngs=rngs, name=f"{name}.mlp")

    def __call__(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class VisionLayers(nnx.Module):
    def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, name: str):
        self.layers = nnx.List([VisionEncoderLayer(cfg, rngs=rngs, name=f"{name}.layers.{i}")
                                for i in range(cfg.num_hidden_layers)])

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class VisionEncoder(nnx.Module):
    """Attribute names follow transformers (embeddings, encoder.layers[i], post_layernorm)."""

    def __init__(self, cfg: VisionConfig, *, rngs: nnx.Rngs, name: str):
        self.cfg = cfg
        self.embeddings = VisionEmbeddings(cfg, rngs=rngs, name=f"{name}.embeddings")
        self.encoder = VisionLayers(cfg, rngs=rngs, name=f"{name}.encoder")
        self.post_layernorm = layers.LayerNorm(cfg.hidden_size, cfg.layer_norm_eps)

    def __call__(self, pixel_values: jax.Array) -> jax.Array:
        """[tiles, C, H, W] (H, W multiples of patch_size) -> [tiles, patches, hidden]."""
        return self.post_layernorm(self.encoder(self.embeddings(pixel_values)))
