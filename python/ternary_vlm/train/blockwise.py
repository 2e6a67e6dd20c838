"""Block-wise reconstruction (the Block-AP stage of EfficientQAT, arXiv 2407.11062), for a decoder's layers.

Decoder blocks are trained one after another, each to reproduce the float model's residual stream at its
output, on calibration tokens: block i of the quantized model takes the quantized path's own input (the
outputs of quantized blocks 0..i-1, so each block also learns to undo the error that reaches it) and is
trained against the float model's hidden state after block i. Only that block's parameters move (latent
weights, scales, RMSNorm gains). No LM head and no teacher forward of the whole model, so a step costs a
few percent of an end-to-end one.

The loss is each token's squared error relative to its target's squared norm. Every reader of the residual
stream is an RMSNorm, which divides each token by its own norm, so a token's relative error is what the
rest of the model sees; plain MSE would be dominated by the few tokens that carry massive activations
(SmolLM2's residual reaches 2.5e4 on them, against ~10 elsewhere).

Resumable: after every block its own state (one block's parameters, ~1/30 of SmolLM2's) is checkpointed
(orbax, one step per block, all kept); a rerun restores the blocks done and recomputes their hidden states.
Saving the whole student after each block instead wrote 30 × 540 MB for SmolLM2 and took longer than the
training itself on a GPU (H200: ~7 s a block saving against ~2 s training it).

In a job of several processes (train/distributed.py) every process trains the blocks on one of its devices, the
same arithmetic on the same rows (a block's state is small; the end-to-end stage is the one worth sharding);
process 0 alone writes the checkpoints, and its result is broadcast at the end so that all processes go on from
identical weights.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm import tqdm

from ternary_vlm.models.llama import LlamaDecoder, rope_cos_sin
from ternary_vlm.train import distributed, loop


@dataclasses.dataclass(frozen=True)
class BlockwiseConfig:
    steps: int                  # optimizer steps per block
    batch: int = 8              # calibration rows per step
    learning_rate: float = 1e-4
    checkpoint_dir: str | None = None


def relative_error(y: jax.Array, target: jax.Array) -> jax.Array:
    """Mean over tokens of ||y - target||² / ||target||² (y, target [B, T, D])."""
    err = jnp.sum(jnp.square(y - target), axis=-1)
    return jnp.mean(err / jnp.maximum(jnp.sum(jnp.square(target), axis=-1), 1e-12))


def _apply(layer, x, cos, sin, mask):
    return layer(x, cos, sin, mask)[0]


@nnx.jit
def _run_block(layer, x, cos, sin, mask):
    return _apply(layer, x, cos, sin, mask)


@nnx.jit
def _train_step(layer, opt, x, target, cos, sin, mask):
    def loss_fn(layer):
        return relative_error(_apply(layer, x, cos, sin, mask), target)
    loss, grads = nnx.value_and_grad(loss_fn)(layer)
    opt.update(layer, grads)
    return loss


def _map_rows(fn, x: np.ndarray, rows: int = 32) -> np.ndarray:
    return np.concatenate([np.asarray(fn(jnp.asarray(x[i: i + rows]))) for i in range(0, len(x), rows)])


class _Checkpoints:
    """One orbax step per trained block (step i + 1 holds block i's state), so each save writes one block."""

    def __init__(self, directory: str):
        # Each process's manager works alone (no cross-process barriers): every process reads, process 0 writes.
        alone = ocp.options.MultiprocessingOptions(primary_host=jax.process_index(),
                                                   active_processes={jax.process_index()})
        os.makedirs(directory, exist_ok=True)  # orbax creates it only for managers of all processes
        self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=ocp.CheckpointManagerOptions(
            max_to_keep=None, create=False, enable_async_checkpointing=False, multiprocessing_options=alone))

    def restore(self, student) -> int:
        """Loads blocks 0 .. done - 1 into the student; returns done (the blocks saved one after another)."""
        done = 0
        for step in sorted(self.manager.all_steps()):
            if step != done + 1:  # a gap cannot come from this writer; stop at the last complete prefix
                break
            layer = student.layers[done]
            target = jax.tree.map(np.asarray, nnx.state(layer))
            restored = self.manager.restore(step, args=ocp.args.StandardRestore(target))
            nnx.update(layer, jax.tree.map(jnp.asarray, restored))
            done = step
        if done and distributed.is_main():
            tqdm.write(f"block-wise: resumed after block {done - 1} from {self.manager.directory}")
        return done

    def save(self, done: int, student):
        """Block done - 1, just trained."""
        if distributed.is_main():
            # As numpy: orbax refuses process-local jax arrays in a job of several processes.
            state = jax.tree.map(np.asarray, nnx.state(student.layers[done - 1]))
            self.manager.save(done, args=ocp.args.StandardSave(state), force=True)

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def train_blocks(student: LlamaDecoder, teacher: LlamaDecoder, ids: np.ndarray, cfg: BlockwiseConfig,
                 seed: int = 0) -> list[dict]:
    """Trains student.layers in place on calibration token rows ids [N, T]; returns per-block losses
    (before and after, on all calibration rows)."""
    t = ids.shape[1]
    cos, sin = rope_cos_sin(jnp.arange(t, dtype=jnp.int32), teacher.cfg.head_dim, teacher.cfg.rope_theta)
    mask = jnp.tril(jnp.ones((t, t), dtype=bool))

    def outputs(layer, x):
        return _map_rows(lambda rows: _run_block(layer, rows, cos, sin, mask), x)

    embed = nnx.jit(lambda m, x: m.embed(x))
    h_float = _map_rows(lambda x: embed(teacher, x), ids)
    h_quant = _map_rows(lambda x: embed(student, x), ids)
    restore_logging = loop.hide_orbax_info()
    ckpt = _Checkpoints(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    start = ckpt.restore(student) if ckpt else 0
    distributed.barrier("block-wise restored")  # every process has read the checkpoint before process 0 writes
    layers = len(student.layers)
    for i in range(start):  # the hidden states at the resumed block's input
        h_float, h_quant = outputs(teacher.layers[i], h_float), outputs(student.layers[i], h_quant)

    history = []
    bar = tqdm(total=(layers - start) * cfg.steps, desc="block-wise", unit="step", dynamic_ncols=True,
               disable=not distributed.is_main())
    for i in range(start, layers):
        layer = student.layers[i]
        target = outputs(teacher.layers[i], h_float)
        before = float(relative_error(outputs(layer, h_quant), target))
        schedule = optax.cosine_decay_schedule(cfg.learning_rate, max(cfg.steps, 1), 0.1)
        opt = nnx.Optimizer(layer, optax.adam(schedule), wrt=nnx.Param)
        rng = np.random.default_rng([seed, i])
        for s in range(cfg.steps):
            rows = rng.choice(len(ids), size=cfg.batch, replace=False)
            loss = _train_step(layer, opt, jnp.asarray(h_quant[rows]), jnp.asarray(target[rows]), cos, sin, mask)
            bar.update()
            if s % 10 == 0:
                bar.set_postfix(block=i, loss=f"{float(loss):.4f}")
        h_float, h_quant = target, outputs(layer, h_quant)  # the next block's inputs
        after = float(relative_error(h_quant, target))
        history.append({"block": i, "before": before, "after": after})
        if distributed.is_main():
            tqdm.write(f"block {i}: relative error {before:.4f} -> {after:.4f}")
        if ckpt:
            ckpt.save(i + 1, student)
    bar.close()
    if ckpt:
        ckpt.close()
    nnx.update(student, distributed.same_everywhere(nnx.state(student)))
    restore_logging()
    return history
