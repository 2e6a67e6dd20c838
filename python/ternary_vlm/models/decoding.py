"""The one prefill / decode step pair (what the Flax generator jits and what export traces) and the Flax
generator itself, with a fixed-size KV cache. The token loop and sampling are on the host (models/sampling.py),
shared with the LiteRT runtime.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from ternary_vlm.models.llama import LlamaDecoder
from ternary_vlm.models.sampling import generate_tokens
from ternary_vlm.models.smolvlm import SmolVLM


def text_model(model: SmolVLM | LlamaDecoder) -> LlamaDecoder:
    return model.text_model if isinstance(model, SmolVLM) else model


def prefill_step(model, ids, image_features, cache, length):
    """Logits [1, vocab] after ids[0, :length] (the rest of ids is padding) and the cache holding the prompt.
    For a VLM, image_features' rows replace the image tokens of ids in order; cache None: no cache."""
    valid = (jnp.arange(ids.shape[1]) < length)[None, :]
    if isinstance(model, SmolVLM):  # padding must not be taken for image tokens
        pad = 0 if model.cfg.image_token_id != 0 else 1
        embeds = model.embed(jnp.where(valid, ids, pad), image_features)
    else:
        embeds = model.embed(jnp.where(valid, ids, 0))
    h, cache = text_model(model).hidden_states(embeds, cache, 0)
    last = jax.lax.dynamic_slice_in_dim(h, length - 1, 1, axis=1)
    return text_model(model).logits(last)[:, 0], cache


def decode_step(model, token, position, cache):
    """Logits [1, vocab] after one more token [1, 1] at `position`, and the updated cache."""
    text = text_model(model)
    h, cache = text.hidden_states(text.embed(token), cache, position)
    return text.logits(h[:, -1]), cache


class Generator:
    """Runs a SmolVLM or a LlamaDecoder token by token; jitted once per prompt length / cache size."""

    def __init__(self, model: SmolVLM | LlamaDecoder):
        self.is_vlm = isinstance(model, SmolVLM)
        self.graphdef, self.state = nnx.split(model)
        graphdef = self.graphdef

        def prefill(state, ids, image_features, cache):
            return prefill_step(nnx.merge(graphdef, state), ids, image_features, cache, ids.shape[1])

        def decode(state, token, position, cache):
            return decode_step(nnx.merge(graphdef, state), token, position, cache)

        def features(state, pixel_values):
            return nnx.merge(graphdef, state).image_features(pixel_values)

        self._prefill = jax.jit(prefill, donate_argnums=(3,))
        self._decode = jax.jit(decode, donate_argnums=(3,))
        self._features = jax.jit(features)
        self._model = model

    def text_model(self) -> LlamaDecoder:
        return text_model(self._model)

    def image_features(self, pixel_values) -> jax.Array:
        return self._features(self.state, jnp.asarray(pixel_values, jnp.float32))

    def prefill(self, ids: Sequence[int], cache, image_features=None):
        """Logits [1, vocab] after the prompt ids, and the cache holding it."""
        ids = jnp.asarray([list(ids)], jnp.int32)
        return self._prefill(self.state, ids, image_features, cache)

    def decode(self, token: int, position: int, cache):
        return self._decode(self.state, jnp.asarray([[token]], jnp.int32), jnp.asarray(position, jnp.int32), cache)

    def generate(self, ids: Sequence[int], *, pixel_values=None, max_new_tokens: int = 64,
                 temperature: float = 0.0, seed: int = 0, stop_ids: Sequence[int] = (),
                 max_len: int | None = None) -> Iterator[int]:
        """Yields new token ids (models/sampling.generate_tokens); max_len: the cache size (default: room for
        max_new_tokens)."""
        ids = list(ids)
        max_len = max_len or len(ids) + max_new_tokens
        features = None
        if pixel_values is not None:
            features = self.image_features(pixel_values)
            n_image = sum(1 for i in ids if i == self._model.cfg.image_token_id)
            if n_image != features.shape[0]:
                raise ValueError(f"{n_image} image tokens in the prompt but {features.shape[0]} image features")
        cache = self.text_model().init_cache(1, max_len)

        def prefill():
            nonlocal cache
            logits, cache = self.prefill(ids, cache, features)
            return logits

        def decode(token, position):
            nonlocal cache
            logits, cache = self.decode(token, position, cache)
            return logits

        return generate_tokens(prefill, decode, len(ids), max_len, max_new_tokens=max_new_tokens,
                               temperature=temperature, seed=seed, stop_ids=stop_ids)
