"""The one training loop (demo pretraining and quantization-aware training).

- optax AdamW with linear warm-up and cosine decay; gradient accumulation with optax.MultiSteps.
- Over a jax.sharding Mesh (train/sharding.py): batches split over every device; parameters, the frozen
  teacher and the optimizer state replicated on `data` and split by rows on `fsdp`, by one table of rules;
  XLA inserts the gathers and gradient reductions. The mesh may span several processes (train/distributed.py).
- orbax checkpoints (model + optimizer state + step) every `checkpoint_every` steps, written by all
  processes; a rerun with the same checkpoint_dir resumes from the latest one, on any mesh or process count
  (restored straight into the current layout). Batches are pure functions of the step, so a resumed run
  follows the same loss curve as an uninterrupted one.
- A tqdm bar with loss / perplexity / ETA.
"""

from __future__ import annotations

import dataclasses
import json
import logging as pylogging
import os
import time
from typing import Callable

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.sharding import Mesh
from tqdm import tqdm

from ternary_vlm import atomic
from ternary_vlm.train import distributed, sharding


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    weight_decay: float = 0.01
    grad_accum: int = 1
    clip_norm: float = 1.0
    checkpoint_dir: str | None = None
    checkpoint_every: int = 100
    log_every: int = 10


class _NoOrbaxInfo(pylogging.Filter):
    """Drops orbax's INFO records (it logs every checkpoint save); every other record passes, the curve's points too."""

    def filter(self, record: pylogging.LogRecord) -> bool:
        return record.levelno >= pylogging.WARNING or f"{os.sep}orbax{os.sep}" not in record.pathname


def hide_orbax_info() -> Callable[[], None]:
    """Silences orbax's INFO logging until the returned function is called."""
    handler, quiet = logging.get_absl_handler(), _NoOrbaxInfo()
    handler.addFilter(quiet)
    return lambda: handler.removeFilter(quiet)


def optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1),
                                                  max(cfg.steps, cfg.warmup_steps + 1), cfg.learning_rate * 0.05)
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                     optax.adamw(schedule, weight_decay=cfg.weight_decay))
    return optax.MultiSteps(tx, cfg.grad_accum) if cfg.grad_accum > 1 else tx


# loss_fn(model, batch, *frozen) -> (loss, metrics). Frozen modules (a teacher) are arguments of the jitted
# step rather than captured by the closure, which would compile their weights into the program as constants.
LossFn = Callable[..., tuple[jax.Array, dict]]


def all_but_embedding():
    """The nnx filter of every parameter but the embedding (and tied LM head) of a pretrained decoder: the table
    stays the base checkpoint's, exported in int8 and re-derived from the base by compact artifacts."""
    return nnx.All(nnx.Param, nnx.Not(nnx.PathContains("embed_tokens")))


def make_train_step(loss_fn: LossFn, wrt=nnx.Param):
    """One jitted optimizer step; gradients are computed only for the `wrt` variables (no work is spent on
    the gradient of a frozen embedding table)."""
    @nnx.jit
    def step(model, opt, batch, frozen):
        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)
        (loss, metrics), grads = grad_fn(model, batch, *frozen)
        opt.update(model, grads)
        return loss, metrics
    return step


class _Checkpoints:
    def __init__(self, directory: str, every: int):
        self.every = every
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            # Synchronous: a checkpoint exists once save() returns, so a kill right after cannot lose it.
            options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True, enable_async_checkpointing=False))

    def restore(self, model, opt) -> int:
        """Loads the latest checkpoint into the model and optimizer as they are laid out now (orbax reads
        each device's part, whatever mesh or process count wrote it)."""
        step = self.manager.latest_step()
        if step is None:
            return 0
        target = {"model": nnx.state(model), "opt": nnx.state(opt)}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
        nnx.update(model, restored["model"])
        nnx.update(opt, restored["opt"])
        if distributed.is_main():
            tqdm.write(f"resumed from the checkpoint at micro-step {step} in {self.manager.directory}")
        return step

    def history(self, step: int) -> list[dict]:
        """The metrics rows logged up to optimizer step `step` by earlier runs (a resumed run's report then
        holds the whole history); rows logged after the restored checkpoint are dropped, as they will be again."""
        path = os.path.join(self.manager.directory, "history.jsonl")
        rows = []
        if os.path.exists(path):
            with open(path) as f:
                rows = [r for r in map(json.loads, f) if r["step"] <= step]
        if distributed.is_main():
            with atomic.output_file(path) as tmp, open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        return rows

    def log(self, row: dict):
        if distributed.is_main():
            with open(os.path.join(self.manager.directory, "history.jsonl"), "a") as f:
                f.write(json.dumps(row) + "\n")

    def maybe_save(self, step: int, model, opt, last: bool):
        """Saves at every `every`-th micro-step and at the last one (orbax's own interval logic also
        saves the first step it sees, which would break exact resume points)."""
        if step % self.every == 0 or last:
            self.manager.save(step, args=ocp.args.StandardSave({"model": nnx.state(model), "opt": nnx.state(opt)}),
                              force=True)

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def train(model: nnx.Module, loss_fn: LossFn, batch_fn: Callable[[int], dict], cfg: TrainConfig,
          wrt=nnx.Param, description: str = "train", mesh: Mesh | None = None,
          evaluate: Callable[[int], dict] | None = None, evaluate_every: int = 0,
          frozen: tuple[nnx.Module, ...] = ()) -> list[dict]:
    """Trains `model` in place for cfg.steps optimizer steps (each of cfg.grad_accum micro-batches);
    batch_fn(micro_step) -> dict of numpy arrays; `frozen` modules are passed to loss_fn after the batch.
    Laid out over `mesh` (sharding.parse_mesh; default: every device on the data axis).
    evaluate(step, model) -> metrics is merged into the history every `evaluate_every` steps (in a job of several
    processes it gets a local copy of the model, whole on every process).
    On return the model's weights are whole on every process (a local copy when the mesh spans processes).
    Returns the logged metrics history; each row's train_s is the wall seconds spent training up to it, over every
    run that resumed (a killed run's time up to its last row before the checkpoint included)."""
    opt = nnx.Optimizer(model, optimizer(cfg), wrt=wrt)
    mesh = mesh or sharding.parse_mesh(None)
    step_fn = make_train_step(loss_fn, wrt)
    restore_logging = hide_orbax_info()
    ckpt = _Checkpoints(cfg.checkpoint_dir, cfg.checkpoint_every * cfg.grad_accum) if cfg.checkpoint_dir else None
    total = cfg.steps * cfg.grad_accum
    for module in (model, opt) + tuple(frozen):
        nnx.update(module, sharding.place(nnx.state(module), mesh))
    start = ckpt.restore(model, opt) if ckpt else 0
    history = ckpt.history(start // cfg.grad_accum) if ckpt else []
    t0 = time.time() - (history[-1].get("train_s", 0.0) if history else 0.0)
    bar = tqdm(range(start, total), initial=start, total=total, desc=description, unit="step", dynamic_ncols=True,
               disable=not distributed.is_main())
    running, running_ce = [], []
    for micro in bar:
        loss, metrics = step_fn(model, opt, sharding.shard_batch(batch_fn(micro), mesh), tuple(frozen))
        running.append(float(loss))
        running_ce.append(float(metrics.get("ce", loss)))  # perplexity is of the cross-entropy, not of CE + KL
        done = micro + 1
        step_done = done % cfg.grad_accum == 0
        evaluate_now = evaluate and evaluate_every and step_done and (done // cfg.grad_accum) % evaluate_every == 0
        if done % (cfg.log_every * cfg.grad_accum) == 0 or done == total or evaluate_now:
            mean, mean_ce = float(np.mean(running)), float(np.mean(running_ce))
            running, running_ce = [], []
            row = {"step": done // cfg.grad_accum, "loss": mean, "ppl": float(np.exp(min(mean_ce, 50))),
                   "train_s": time.time() - t0}
            row.update({k: float(v) for k, v in metrics.items()})
            if evaluate_now:
                row.update(evaluate(row["step"], _evaluable(model)))
            history.append(row)
            if ckpt:
                ckpt.log(row)
            bar.set_postfix(loss=f"{mean:.3f}", ppl=f"{row['ppl']:.2f}")
        if ckpt:
            ckpt.maybe_save(done, model, opt, last=done == total)
    if ckpt:
        ckpt.close()
    if jax.process_count() > 1:
        nnx.update(model, distributed.local_copy(nnx.state(model)))
    restore_logging()
    return history


def _evaluable(model: nnx.Module) -> nnx.Module:
    """The model itself, or in a job of several processes a copy whole on this process (evaluation runs
    unsharded on every process)."""
    if jax.process_count() == 1:
        return model
    graph, state = nnx.split(model)
    return nnx.merge(graph, distributed.local_copy(state))


def logits_of(model, batch) -> jax.Array:
    """Logits of a SmolVLM (with the batch's images, if any) or a text-only decoder."""
    pixels = batch.get("pixel_values")
    logits, _ = model(batch["ids"], pixels) if pixels is not None else model(batch["ids"])
    return logits


def lm_loss(model, batch):
    """Cross-entropy on the masked positions of a Batch dict."""
    from ternary_vlm.train import losses
    return losses.cross_entropy(logits_of(model, batch), batch["labels"], batch["mask"]), {}


def distillation_loss(weight: float, int8_group: int | None = None) -> LossFn:
    """Cross-entropy + weight · KL(frozen teacher || student) on the masked positions (QAT); the teacher
    is train()'s frozen module. int8_group (not None): the student computes as its W2A8 export does, every linear
    layer's and the LM head's input rounded to int8 (models/layers.int8_inputs), while the teacher stays float."""
    from ternary_vlm.models import layers
    from ternary_vlm.train import losses

    def loss_fn(model, batch, teacher):
        with layers.int8_inputs(int8_group):
            logits = logits_of(model, batch)
        ce = losses.cross_entropy(logits, batch["labels"], batch["mask"])
        if weight == 0:
            return ce, {"ce": ce}
        teacher_logits = jax.lax.stop_gradient(logits_of(teacher, batch))
        kl = losses.distillation_kl(logits, teacher_logits, batch["mask"])
        return ce + weight * kl, {"ce": ce, "kl": kl}
    return loss_fn
