"""The Llama-style text decoder (SmolLM2, the LM of SmolVLM/Idefics3): RMSNorm, RoPE, GQA, SwiGLU.

One class serves both uses: standalone (SmolLM2 from GGUF, config.json model_type llama) and as
`SmolVLM.text_model`. Attribute names follow transformers' module names, so a checkpoint tensor
"model.layers.3.self_attn.q_proj.weight" lands on `layers[3].self_attn.q_proj.weight`.

KV cache: a fixed-size pytree, one (k, v) pair per layer: k [batch * kv_heads, head_dim, max_len] and
v [batch * kv_heads, max_len, head_dim], updated with lax.dynamic_update_slice; attention always spans the
whole cache with a position mask, so prefill (start = 0, T tokens) and decode (start = position, 1 token)
trace to static shapes. The layouts are exactly the right-hand operands of attention's two batched matrix
products, so the exported decode step multiplies the cache as stored. (With [batch, max_len, kv_heads,
head_dim] every step transposed and copied both caches of every layer: SmolLM2 ternary decode at
max_len 256 went from 11.5 to about 8 ms/token with these layouts.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ternary_vlm.models import layers
from ternary_vlm.models.config import TextConfig

KVCache = tuple  # over layers: (k [batch * kv_heads, head_dim, max_len], v [batch * kv_heads, max_len, head_dim])


def rope_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    """1 / theta^(2i/d) in float32, rounded like transformers' float32 torch.pow (pow correctly rounded to
    float32, then the reciprocal in float32): a 1-ulp difference here grows with the position."""
    exponent = (np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)).astype(np.float64)
    power = (np.float64(np.float32(theta)) ** exponent).astype(np.float32)
    return np.float32(1.0) / power


def rope_cos_sin(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos, sin [T, head_dim] for integer positions [T] (transformers' rotate_half layout)."""
    freqs = positions.astype(jnp.float32)[:, None] * jnp.asarray(rope_inv_freq(head_dim, theta))[None, :]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x [B, T, heads, D]; cos/sin [T, D]."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[None, :, None, :] + rotated * sin[None, :, None, :]


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, scale: float) -> jax.Array:
    """Grouped-query attention. q [B,T,H,D]; k [B*KV,D,S]; v [B*KV,S,D]; mask [T,S] bool (True = attend).

    A KV head's G*T queries are the rows of two batched matrix products whose right-hand operands are
    the caches as stored: exported, XNNPACK runs a small-M product on them (27 µs per SmolLM2 layer at
    S = 256, against 76 µs for the einsum form, which made it transpose and copy the caches)."""
    b, t, h, d = q.shape
    kv = k.shape[0] // b
    g = h // kv
    q = q.reshape(b, t, kv, g, d).transpose(0, 2, 3, 1, 4).reshape(b * kv, g * t, d)
    scores = jnp.matmul(q, k) * scale  # [B*KV, G*T, S]
    if mask is not None:
        scores = jnp.where(jnp.tile(mask, (g, 1)), scores, jnp.finfo(scores.dtype).min)
    probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(q.dtype)
    out = jnp.matmul(probs, v)  # [B*KV, G*T, D]
    return out.reshape(b, kv, g, t, d).transpose(0, 3, 1, 2, 4).reshape(b, t, h * d)


class LlamaAttention(nnx.Module):
    def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, name: str):
        self.cfg = cfg
        d, h, kv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        bias = cfg.attention_bias
        self.q_proj = layers.linear(cfg.hidden_size, h * d, use_bias=bias, rngs=rngs, name=f"{name}.q_proj")
        self.k_proj = layers.linear(cfg.hidden_size, kv * d, use_bias=bias, rngs=rngs, name=f"{name}.k_proj")
        self.v_proj = layers.linear(cfg.hidden_size, kv * d, use_bias=bias, rngs=rngs, name=f"{name}.v_proj")
        self.o_proj = layers.linear(h * d, cfg.hidden_size, use_bias=bias, rngs=rngs, name=f"{name}.o_proj")

    def __call__(self, x, cos, sin, mask, kv_cache=None, start=None):
        cfg = self.cfg
        b, t, _ = x.shape
        q = self.q_proj(x).reshape(b, t, cfg.num_attention_heads, cfg.head_dim)
        k = self.k_proj(x).reshape(b, t, cfg.num_key_value_heads, cfg.head_dim)
        v = self.v_proj(x).reshape(b, t, cfg.num_key_value_heads, cfg.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        kv, d = cfg.num_key_value_heads, cfg.head_dim  # to the cache layouts (module docstring)
        k = k.transpose(0, 2, 3, 1).reshape(b * kv, d, t)
        v = v.transpose(0, 2, 1, 3).reshape(b * kv, t, d)
        new_cache = None
        if kv_cache is not None:
            cache_k, cache_v = kv_cache
            k = jax.lax.dynamic_update_slice(cache_k, k.astype(cache_k.dtype), (0, 0, start))
            v = jax.lax.dynamic_update_slice(cache_v, v.astype(cache_v.dtype), (0, start, 0))
            new_cache = (k, v)
        out = attention(q, k, v, mask, cfg.head_dim ** -0.5)
        return self.o_proj(out), new_cache


class LlamaMLP(nnx.Module):
    def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, name: str):
        hid, inter, bias = cfg.hidden_size, cfg.intermediate_size, cfg.mlp_bias
        self.gate_proj = layers.linear(hid, inter, use_bias=bias, rngs=rngs, name=f"{name}.gate_proj")
        self.up_proj = layers.linear(hid, inter, use_bias=bias, rngs=rngs, name=f"{name}.up_proj")
        self.down_proj = layers.linear(inter, hid, use_bias=bias, rngs=rngs, name=f"{name}.down_proj")

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nnx.Module):
    def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, name: str):
        self.input_layernorm = layers.RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = LlamaAttention(cfg, rngs=rngs, name=f"{name}.self_attn")
        self.post_attention_layernorm = layers.RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = LlamaMLP(cfg, rngs=rngs, name=f"{name}.mlp")

    def __call__(self, x, cos, sin, mask, kv_cache=None, start=None):
        attn, new_cache = self.self_attn(self.input_layernorm(x), cos, sin, mask, kv_cache, start)
        x = x + attn
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, new_cache


class LlamaDecoder(nnx.Module):
    """Token embedding -> decoder layers -> final RMSNorm -> LM head (own weight, or tied to the embedding)."""

    def __init__(self, cfg: TextConfig, *, rngs: nnx.Rngs, name: str = ""):
        self.cfg = cfg
        prefix = f"{name}." if name else ""
        self.embed_tokens = layers.embedding(cfg.vocab_size, cfg.hidden_size, rngs=rngs,
                                             name=f"{prefix}embed_tokens")
        self.layers = nnx.List([LlamaDecoderLayer(cfg, rngs=rngs, name=f"{prefix}layers.{i}")
                                for i in range(cfg.num_hidden_layers)])
        self.norm = layers.RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = None if cfg.tie_word_embeddings else layers.linear(
            cfg.hidden_size, cfg.vocab_size, use_bias=False, rngs=rngs, name=f"{prefix}lm_head")

    def embed(self, ids: jax.Array) -> jax.Array:
        return self.embed_tokens(ids)

    def logits(self, h: jax.Array) -> jax.Array:
        """The LM head: `lm_head` when untied, else the embedding table transposed."""
        return self.embed_tokens.attend(h) if self.lm_head is None else self.lm_head(h)

    def init_cache(self, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
        cfg = self.cfg
        kv, d = cfg.num_key_value_heads, cfg.head_dim
        return tuple((jnp.zeros((batch * kv, d, max_len), dtype), jnp.zeros((batch * kv, max_len, d), dtype))
                     for _ in range(cfg.num_hidden_layers))

    def hidden_states(self, embeds: jax.Array, cache: KVCache | None = None, start=0):
        """Final-normed hidden states [B, T, D] for input embeddings [B, T, D] at positions start..start+T-1.

        Without a cache: causal attention within the T tokens. With a cache (max_len S): the T new keys
        and values are written at `start` (int or traced scalar) and queries attend to cache slots <= their
        position. Returns (hidden, new_cache or None)."""
        t = embeds.shape[1]
        positions = start + jnp.arange(t, dtype=jnp.int32)
        cos, sin = rope_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta)
        if cache is None:
            mask = jnp.tril(jnp.ones((t, t), dtype=bool))
        else:
            key_pos = jnp.arange(cache[0][1].shape[1], dtype=jnp.int32)
            mask = key_pos[None, :] <= positions[:, None]
        x = embeds
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, layer_cache = layer(x, cos, sin, mask, None if cache is None else cache[i], start)
            new_cache.append(layer_cache)
        return self.norm(x), (None if cache is None else tuple(new_cache))

    def __call__(self, ids: jax.Array | None = None, *, embeds: jax.Array | None = None,
                 cache: KVCache | None = None, start=0):
        """Logits [B, T, vocab] (and the updated cache) for token ids [B, T] or embeddings [B, T, D]."""
        if embeds is None:
            embeds = self.embed(ids)
        h, new_cache = self.hidden_states(embeds, cache, start)
        return self.logits(h), new_cache
