"""Scores of a VLM on held-out data: text perplexity (pydoc test split), caption perplexity, exact
caption accuracy and QA accuracy on the scene test split. Accuracies are greedy-decoding exact matches,
computed by teacher forcing (every answer token, end of turn included, must be the argmax)."""

from __future__ import annotations

import functools

import numpy as np
from flax import nnx

from ternary_vlm.models import layers
from ternary_vlm.train import losses
from ternary_vlm.data.batches import Batcher
from ternary_vlm.train import logits_of


def _scores(model, ids, labels, mask, pixel_values):
    # The int8 rounding in force (models/layers.int8_inputs) is part of the compiled function's key: one model
    # scored with and without it must not reuse the other's trace.
    return _jit_scores(model, ids, labels, mask, pixel_values, layers.active_int8_group())


@functools.partial(nnx.jit, static_argnames="int8_group")
def _jit_scores(model, ids, labels, mask, pixel_values, int8_group):
    with layers.int8_inputs(int8_group):
        logits = logits_of(model, {"ids": ids, "pixel_values": pixel_values})
    nll = losses.token_nll(logits, labels) * mask
    return nll.sum(), mask.sum(), losses.exact_match(logits, labels, mask)


REPORT_MAX_LEN = 80  # tokens per row of the scene scores and text windows in ternarize's reports


def scene_scores(model, batcher: Batcher, examples: int = 256, batch_size: int = 32, split: str = "test") -> dict:
    """Caption perplexity, and exact-match accuracy of captions and QA answers with how many were right, on the
    first `examples` scenes of `split` per task."""
    out = {}
    for task in ("caption", "qa"):
        nll = count = 0.0
        correct = []
        for start in range(0, examples, batch_size):
            b = batcher.scene_batch(split, range(start, min(start + batch_size, examples)), lambda i: task)
            s, n, em = _scores(model, b.ids, b.labels, b.mask, b.pixel_values)
            nll, count = nll + float(s), count + float(n)
            correct.extend(np.asarray(em).tolist())
        if task == "caption":
            out["caption_ppl"] = float(np.exp(nll / count))
        out[f"{task}_accuracy"] = float(np.mean(correct))
        out[f"{task}_correct"] = int(np.sum(correct))
    return out


def evaluate(model, batcher: Batcher, examples: int = 256, batch_size: int = 32, split: str = "test") -> dict:
    """The reports' scores: scene_scores' accuracies and caption perplexity, and the text perplexity of `split`."""
    out = {k: v for k, v in scene_scores(model, batcher, examples, batch_size, split).items()
           if not k.endswith("_correct")}
    out["text_ppl"] = text_perplexity(model, batcher.text_ids(split), batcher.max_len, batch_size)
    return out


def document_perplexity(model, batcher: Batcher, docs, batch_size: int = 32) -> float:
    """Perplexity of the answers of image-text examples (data/user_data.Document), teacher-forced."""
    nll = count = 0.0
    for start in range(0, len(docs), batch_size):
        b = batcher.document_batch(docs[start: start + batch_size])
        s, n, _ = _scores(model, b.ids, b.labels, b.mask, b.pixel_values)
        nll, count = nll + float(s), count + float(n)
    return float(np.exp(nll / count))


def text_nll(model, ids: np.ndarray, window: int, batch_size: int = 32, max_windows: int | None = None
             ) -> tuple[float, int]:
    """(summed negative log-likelihood, tokens scored) over consecutive non-overlapping windows of a token
    stream: each window of `window` + 1 tokens scores its last `window`."""
    starts = np.arange(0, len(ids) - window - 1, window)[:max_windows]
    nll = count = 0.0
    for i in range(0, len(starts), batch_size):
        rows = np.stack([ids[s: s + window + 1] for s in starts[i: i + batch_size]])
        s, n, _ = _scores(model, rows[:, :-1], rows[:, 1:], np.ones(rows[:, 1:].shape, np.float32), None)
        nll, count = nll + float(s), count + float(n)
    return nll, int(count)


def text_perplexity(model, ids: np.ndarray, window: int, batch_size: int = 32, max_windows: int | None = None) -> float:
    """Perplexity over consecutive non-overlapping windows of a token stream."""
    nll, count = text_nll(model, ids, window, batch_size, max_windows)
    return float(np.exp(nll / count))
