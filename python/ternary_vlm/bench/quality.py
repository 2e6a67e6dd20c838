"""The model benchmark's quality figures, computed with the .tflite itself (teacher forcing through prefill /
decode, greedy generation) and the Flax logits the export must reproduce."""

from __future__ import annotations

import math

import numpy as np


def _nll(logits, token) -> float:
    z = logits.astype(np.float64)
    m = z.max()
    return float(m + math.log(np.exp(z - m).sum()) - z[token])


def text_perplexity(rt, ids: np.ndarray, window: int, windows: int) -> float:
    """Non-overlapping windows from the start of the stream (as evaluate.text_perplexity): position i predicts
    token i + 1; the first token goes through prefill, the rest through decode."""
    nll = count = 0.0
    for w in range(windows):
        seq = ids[w * window: w * window + window + 1]
        logits = rt.prefill(seq[:1])
        for i in range(1, len(seq)):
            nll, count = nll + _nll(logits[0], int(seq[i])), count + 1
            if i < len(seq) - 1:
                logits = rt.decode(int(seq[i]), i)
    return float(math.exp(nll / count))


def caption_scores(rt, rows, stop_ids) -> dict:
    """rows: (prompt ids, answer ids, pixel values). Perplexity of the answers by teacher forcing, and exact
    match of greedy generation."""
    nll = count = 0.0
    correct = 0
    for prompt, answer, pixels in rows:
        logits = rt.prefill(prompt, rt.image_features(pixels))
        for j, token in enumerate(answer):
            nll, count = nll + _nll(logits[0], token), count + 1
            if j < len(answer) - 1:
                logits = rt.decode(token, len(prompt) + j)
        generated = list(rt.generate(prompt, pixel_values=pixels, max_new_tokens=len(answer) + 4,
                                     stop_ids=stop_ids))
        correct += generated == list(answer)
    return {"caption_ppl": float(math.exp(nll / count)), "caption_accuracy": correct / len(rows)}


def flax_prefill_logits(model, inputs, max_len: int) -> np.ndarray:
    """The Flax model's logits after the fixed prompt: what the export's prefill must reproduce."""
    from ternary_vlm.models.decoding import Generator
    gen = Generator(model)
    features = gen.image_features(inputs["pixel_values"]) if "pixel_values" in inputs else None
    logits, _ = gen.prefill([int(i) for i in inputs["ids"]], gen.text_model().init_cache(1, max_len), features)
    return np.asarray(logits, np.float32)


def flax64_prefill_logits(model, inputs) -> np.ndarray:
    """The same logits in float64 (the model's float32 weights, exactly, then float64 arithmetic): the truth both
    float32 computations, Flax's and the export's, are measured against, so their own rounding is visible."""
    import jax
    import jax.numpy as jnp

    from flax import nnx

    from ternary_vlm import export
    from ternary_vlm.models.decoding import prefill_step
    twin, _ = export.quantized_layers_of(model)  # plain α·t weights: no re-quantization in float64
    with jax.enable_x64(True):
        state = nnx.state(twin)
        nnx.update(twin, jax.tree.map(
            lambda a: a.astype(jnp.float64) if getattr(a, "dtype", None) == jnp.float32 else a, state))
        ids = jnp.asarray(inputs["ids"][None], jnp.int32)
        features = None
        if "pixel_values" in inputs:
            features = twin.image_features(jnp.asarray(inputs["pixel_values"], jnp.float64))
        logits, _ = prefill_step(twin, ids, features, None, ids.shape[1])
        return np.asarray(logits, np.float64)
