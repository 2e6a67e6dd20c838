"""The ternarization recipe for a text-only decoder (SmolLM2 and other Llama-family models):

  0. data      token rows of the training corpus: the user's --data, or text sampled from the float model
  1. init      every selected Linear -> QuantLinear, scales from the pretrained weights (k-means, TWN, ...)
  2. blocks    block-wise reconstruction against the float model's hidden states (train/blockwise.py)
  3. distill   end-to-end: cross-entropy + KL(frozen float teacher || student) (train/loop.py)

After each stage (and every `eval_every` distillation steps) the held-out perplexities are measured and
appended to the curve with the CPU and wall time spent so far, so stages and inits can be compared by the
perplexity they reach per unit of compute. Every stage resumes from `work_dir` after an interruption.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from absl import logging

from ternary_vlm.models import layers
from ternary_vlm.train import evaluate
from ternary_vlm.data import eval_texts, user_data
from ternary_vlm.train import blockwise, distributed, loop


@dataclasses.dataclass(frozen=True)
class TextRecipe:
    blockwise_steps: int = 0       # per block; 0 skips the stage
    calib_rows: int = 128          # corpus rows for the block-wise stage
    steps: int = 0                 # end-to-end distillation steps
    learning_rate: float = 1e-4
    blockwise_learning_rate: float = 1e-4
    batch: int = 8
    seq_len: int = 128
    distill: float = 1.0
    int8_group: int | None = None  # train through the W2A8 export's int8 input rounding (loop.distillation_loss)
    checkpoint_every: int = 25
    eval_every: int = 100
    eval_windows: int = 16         # 256-token windows per held-out text for the curve


class Curve:
    """Held-out perplexities after each stage, against the CPU and wall seconds spent; kept in a JSON-lines
    file so a resumed run continues it. int8_group (not None): each text is also scored with the inputs rounded
    as the W2A8 export does (ppl_<text>_int8)."""

    def __init__(self, model_tokens: dict[str, np.ndarray], windows: int, path: str, int8_group: int | None = None):
        self.texts, self.windows, self.path, self.int8_group = model_tokens, windows, path, int8_group
        self.points = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
        self.offset_cpu = self.points[-1]["cpu_s"] if self.points else 0.0
        self.offset_wall = self.points[-1]["wall_s"] if self.points else 0.0
        self.cpu0, self.wall0 = time.process_time(), time.time()

    def perplexities(self, model) -> dict[str, float]:
        def scores(suffix=""):
            return {f"ppl_{name}{suffix}": evaluate.text_perplexity(model, ids, 256, batch_size=8,
                                                                    max_windows=self.windows)
                    for name, ids in self.texts.items()}
        out = scores()
        if self.int8_group is not None:
            with layers.int8_inputs(self.int8_group):
                out.update(scores("_int8"))
        return out

    def add(self, stage: str, step: int, model) -> dict:
        for p in self.points:  # already measured before an interruption
            if p["stage"] == stage and p["step"] == step:
                return p
        point = {"stage": stage, "step": step, **self.perplexities(model),
                 "cpu_s": self.offset_cpu + time.process_time() - self.cpu0,
                 "wall_s": self.offset_wall + time.time() - self.wall0}
        self.points.append(point)
        if distributed.is_main():
            with open(self.path, "a") as f:
                f.write(json.dumps(point) + "\n")
        logging.info("%s step %d: %s", stage, step,
                     ", ".join(f"{k} {v:.4g}" for k, v in point.items() if k.startswith("ppl_")))
        return point


def ppl(point: dict) -> dict:
    """The perplexities of a curve point (the report's columns)."""
    return {k: v for k, v in point.items() if k.startswith("ppl_")}


def token_stream(texts, tokenizer) -> np.ndarray:
    """The texts' tokens one after another, each followed by the end-of-text token."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return np.asarray([i for t in texts for i in tokenizer.encode(t, add_special_tokens=False) + eos], np.int32)


def token_rows(texts, tokenizer, length: int, what: str) -> np.ndarray:
    """The token stream of `texts` cut into rows [N, length] (the remainder dropped)."""
    stream = token_stream(texts, tokenizer)
    if len(stream) < length:
        raise user_data.DataError(f"{what}: {len(stream)} tokens, fewer than one training row of {length}")
    n = len(stream) // length
    return stream[: n * length].reshape(n, length)


def eval_tokens(tokenizer, extra: dict[str, list[str]] | None = None) -> dict[str, np.ndarray]:
    """Token streams of the held-out texts (eval_texts) and of any extra held-out documents by name."""
    texts = {name: [eval_texts.load(name)] for name in eval_texts.NAMES}
    texts.update(extra or {})
    return {name: token_stream(t, tokenizer) for name, t in texts.items()}


def row_batch(sources: list[np.ndarray], step: int, batch: int, seq_len: int, seed: int = 0) -> dict:
    """A training batch of `batch` windows of seq_len + 1 tokens from random rows at random offsets, the i-th from
    source i mod len(sources) (so a batch mixes the corpora of --data=a,b equally, whatever their sizes); a pure
    function of (seed, step), so a resumed run sees the batches an uninterrupted one would."""
    which = [i % len(sources) for i in range(batch)]
    rng = np.random.default_rng([seed, 7, step])
    r = rng.integers(0, [len(sources[k]) for k in which])
    o = rng.integers(0, [sources[k].shape[1] - seq_len for k in which])
    w = np.stack([sources[k][i, j: j + seq_len + 1] for k, i, j in zip(which, r, o)])
    return {"ids": w[:, :-1], "labels": w[:, 1:], "mask": np.ones(w[:, 1:].shape, np.float32)}


def run(student, teacher, sources: list[np.ndarray], curve: Curve, recipe: TextRecipe, work_dir: str,
        mesh=None) -> dict:
    """Stages 2 and 3 on an already initialized student (stage 1 is the caller's, so that it can report
    the init); sources: the token rows of each training corpus (row_batch); returns the report entries. mesh:
    where the distillation stage runs (the block-wise stage trains one block at a time on one device)."""
    report = {}
    if recipe.blockwise_steps:
        cfg = blockwise.BlockwiseConfig(recipe.blockwise_steps, recipe.batch, recipe.blockwise_learning_rate,
                                        os.path.join(work_dir, "blocks"))
        calib = np.concatenate(sources)[: recipe.calib_rows, : recipe.seq_len]
        report["blockwise"] = blockwise.train_blocks(student, teacher, calib, cfg)
        report["after_blockwise"] = ppl(curve.add("blockwise", recipe.blockwise_steps, student))
    if recipe.steps:
        cfg = loop.TrainConfig(steps=recipe.steps, learning_rate=recipe.learning_rate, warmup_steps=20,
                               checkpoint_dir=os.path.join(work_dir, "distill"),
                               checkpoint_every=recipe.checkpoint_every)

        def evaluate_at(step, model):
            return ppl(curve.add("distill", step, model))

        trainable = loop.all_but_embedding()  # latent weights, scales and norm gains
        report["history"] = loop.train(
            student, loop.distillation_loss(recipe.distill, recipe.int8_group),
            lambda step: row_batch(sources, step, recipe.batch, recipe.seq_len), cfg,
            description="distill", evaluate=evaluate_at, evaluate_every=recipe.eval_every, frozen=(teacher,),
            wrt=trainable, mesh=mesh)
        report["after_qat"] = ppl(curve.add("distill", recipe.steps, student))
    return report
