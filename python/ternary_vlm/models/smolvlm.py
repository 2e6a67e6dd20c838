"""SmolVLM / Idefics3: SigLIP-style vision encoder -> pixel shuffle + linear projection -> Llama decoder.

Attribute names follow transformers' SmolVLMModel (vision_model, connector.modality_projection.proj,
text_model); the LM head lives in `text_model` (LlamaDecoder.lm_head / tied embedding) so the decoder is
the same class whether it runs inside the VLM or alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ternary_vlm.models import layers
from ternary_vlm.models.config import VLMConfig
from ternary_vlm.models.llama import KVCache, LlamaDecoder
from ternary_vlm.models.siglip import VisionEncoder


def pixel_shuffle(x: jax.Array, scale: int) -> jax.Array:
    """[B, seq, D] -> [B, seq / scale^2, D * scale^2], exactly transformers' SmolVLMConnector.pixel_shuffle."""
    b, seq, d = x.shape
    side = int(round(seq ** 0.5))
    x = x.reshape(b, side, side // scale, d * scale)
    x = x.transpose(0, 2, 1, 3)
    x = x.reshape(b, side // scale, side // scale, d * scale * scale)
    x = x.transpose(0, 2, 1, 3)
    return x.reshape(b, seq // (scale * scale), d * scale * scale)


class ModalityProjection(nnx.Module):
    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs, name: str):
        self.proj = layers.linear(in_features, out_features, use_bias=False, rngs=rngs, name=f"{name}.proj")

    def __call__(self, x):
        return self.proj(x)


class Connector(nnx.Module):
    def __init__(self, cfg: VLMConfig, *, rngs: nnx.Rngs, name: str):
        self.scale_factor = cfg.scale_factor
        self.modality_projection = ModalityProjection(cfg.vision.hidden_size * cfg.scale_factor ** 2,
                                                      cfg.text.hidden_size, rngs=rngs,
                                                      name=f"{name}.modality_projection")

    def __call__(self, x):
        return self.modality_projection(pixel_shuffle(x, self.scale_factor))


def merge_image_features(ids: jax.Array, embeds: jax.Array, features: jax.Array, image_token_id: int) -> jax.Array:
    """Puts the rows of features [N, D] into embeds [B, T, D] where ids == image_token_id, in order
    (a gather and a select: no scatter, so it lowers to TFLite builtins)."""
    b, t, d = embeds.shape
    mask = (ids == image_token_id).reshape(-1)
    idx = jnp.clip(jnp.cumsum(mask.astype(jnp.int32)) - 1, 0, features.shape[0] - 1)
    gathered = jnp.take(features, idx, axis=0)
    return jnp.where(mask[:, None], gathered, embeds.reshape(b * t, d)).reshape(b, t, d)


class SmolVLM(nnx.Module):
    def __init__(self, cfg: VLMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.vision_model = VisionEncoder(cfg.vision, rngs=rngs, name="vision_model")
        self.connector = Connector(cfg, rngs=rngs, name="connector")
        self.text_model = LlamaDecoder(cfg.text, rngs=rngs, name="text_model")

    def image_features(self, pixel_values: jax.Array) -> jax.Array:
        """[tiles, C, H, W] normalized pixels -> [tiles * image_seq_len, text hidden]."""
        f = self.connector(self.vision_model(pixel_values))
        return f.reshape(-1, f.shape[-1])

    def embed(self, ids: jax.Array, image_features: jax.Array | None = None) -> jax.Array:
        embeds = self.text_model.embed(ids)
        if image_features is not None:
            embeds = merge_image_features(ids, embeds, image_features, self.cfg.image_token_id)
        return embeds

    def init_cache(self, batch: int, max_len: int, dtype=jnp.float32) -> KVCache:
        return self.text_model.init_cache(batch, max_len, dtype)

    def __call__(self, ids: jax.Array, pixel_values: jax.Array | None = None, *,
                 image_features: jax.Array | None = None, cache: KVCache | None = None, start=0):
        """Logits [B, T, vocab] (and the updated cache). Give pixel_values or precomputed image_features
        (their rows replace the image tokens of ids in order) or neither for text only."""
        if pixel_values is not None:
            image_features = self.image_features(pixel_values)
        return self.text_model(embeds=self.embed(ids, image_features), cache=cache, start=start)
