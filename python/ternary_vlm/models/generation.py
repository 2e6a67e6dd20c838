"""Prefill + decode with the fixed-size KV cache, greedy or temperature sampling.

The traced functions (`prefill`, `decode`) are what an exporter converts: embeddings in, last-position
logits and the updated cache out. Sampling happens on the host (numpy), so no top_k/sort/random ops
are traced.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ternary_vlm.models.llama import LlamaDecoder
from ternary_vlm.models.smolvlm import SmolVLM
from ternary_vlm.sampling import sample


class Generator:
    """Runs a SmolVLM or a LlamaDecoder token by token; jitted once per prompt length / cache size."""

    def __init__(self, model: SmolVLM | LlamaDecoder):
        self.is_vlm = isinstance(model, SmolVLM)
        self.graphdef, self.state = nnx.split(model)
        graphdef = self.graphdef

        def text(m):
            return m.text_model if isinstance(m, SmolVLM) else m

        def prefill(state, ids, image_features, cache):
            m = nnx.merge(graphdef, state)
            embeds = m.embed(ids, image_features) if isinstance(m, SmolVLM) else m.embed(ids)
            h, cache = text(m).hidden_states(embeds, cache, 0)
            return text(m).logits(h[:, -1]), cache

        def decode(state, token, position, cache):
            m = nnx.merge(graphdef, state)
            h, cache = text(m).hidden_states(text(m).embed(token), cache, position)
            return text(m).logits(h[:, -1]), cache

        def features(state, pixel_values):
            return nnx.merge(graphdef, state).image_features(pixel_values)

        self._prefill = jax.jit(prefill, donate_argnums=(3,))
        self._decode = jax.jit(decode, donate_argnums=(3,))
        self._features = jax.jit(features)
        self._model = model

    def text_model(self) -> LlamaDecoder:
        return self._model.text_model if self.is_vlm else self._model

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
        """Yields new token ids (stops after a stop id, which is yielded, or max_new_tokens)."""
        text = self.text_model()
        max_len = max_len or len(ids) + max_new_tokens
        if max_len < len(ids) + max_new_tokens:
            max_new_tokens = max_len - len(ids)
        features = None
        if pixel_values is not None:
            features = self.image_features(pixel_values)
            n_image = sum(1 for i in ids if i == self._model.cfg.image_token_id)
            if n_image != features.shape[0]:
                raise ValueError(f"{n_image} image tokens in the prompt but {features.shape[0]} image features")
        cache = text.init_cache(1, max_len)
        logits, cache = self.prefill(ids, cache, features)
        rng = np.random.default_rng(seed)
        position = len(ids)
        for _ in range(max_new_tokens):
            token = sample(np.asarray(logits[0]), temperature, rng)
            yield token
            if token in stop_ids or position >= max_len:
                return
            logits, cache = self.decode(token, position, cache)
            position += 1
