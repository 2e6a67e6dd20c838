"""Bytes per device of quantization-aware training before it runs (ternarize --dry_run): the model's own
parameter shapes (built abstractly, no weights), laid out by the sharding rules of train/sharding.py.

  parameters   latent weights in float32, plus one α per output row of every quantized linear
  teacher      the frozen float model (float32), laid out like the student
  gradients    one float32 value per trainable parameter
  optimizer    AdamW's two moments per trainable parameter
  updated      the step's new parameters and moments: the loop does not donate the old buffers, so both live
  activations  what the backward pass keeps, per decoder layer: s·b·h·(34 + 5 a s / h) bytes at 16 bits
               (Korthikanti et al., arXiv 2205.05198, a transformer layer without recomputation), doubled for
               float32, plus one layer for the teacher's forward; the logits (student and teacher, and the
               softmax's gradient); under fsdp, one layer's gathered weights
The total is checked against XLA's own accounting of the compiled step (arguments + temporaries + outputs,
tests/python/train_test.py): on the configurations tested it comes to 0.65-0.9 of it (XLA's SPMD partitioner
also re-replicates some activations under fsdp), so fits() keeps a 1.5x margin.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ternary_vlm.train import sharding

FLOAT32 = 4


@dataclasses.dataclass
class Estimate:
    parameters: int
    teacher: int
    gradients: int
    optimizer: int
    updated: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.teacher + self.gradients + self.optimizer + self.updated + self.activations

    def fits(self, device_bytes: int) -> bool:
        return 1.5 * self.total <= device_bytes

    def table(self) -> str:
        rows = [(k, getattr(self, k)) for k in ("parameters", "teacher", "gradients", "optimizer", "updated",
                                                "activations")]
        return "\n".join(f"  {k:<12} {v / 2**30:8.2f} GiB" for k, v in rows + [("total", self.total)])


def _abstract_params(config):
    from flax import nnx

    from ternary_vlm.models.config import VLMConfig
    from ternary_vlm.models.llama import LlamaDecoder
    from ternary_vlm.models.smolvlm import SmolVLM
    make = SmolVLM if isinstance(config, VLMConfig) else LlamaDecoder
    return nnx.state(nnx.eval_shape(lambda: make(config, rngs=nnx.Rngs(0))), nnx.Param)


def per_device_bytes(state, mesh_shape: dict[str, int]) -> int:
    """Bytes of a (float32) state on one device under the sharding rules."""
    import jax
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        shape = tuple(np.shape(leaf))
        spec = sharding.spec_for(sharding.parameter_name(path), shape, mesh_shape)
        split = int(np.prod([mesh_shape[a] for a in spec if a is not None])) if len(spec) else 1
        total += int(np.prod(shape)) * FLOAT32 // split
    return total


def estimate(config, mesh_shape: dict[str, int], batch: int, seq_len: int, quantized_rows: bool = True,
             teacher: bool = True) -> Estimate:
    text = getattr(config, "text", config)
    params = per_device_bytes(_abstract_params(config), mesh_shape)
    if quantized_rows:  # α: one float per output row, ~1/in_features of the weights
        params += params // text.hidden_size
    devices = int(np.prod(list(mesh_shape.values())))
    rows = max(batch // devices, 1)
    h, a, s, layers = text.hidden_size, text.num_attention_heads, seq_len, text.num_hidden_layers
    per_layer = rows * s * (34 * h + 5 * a * s) * 2  # Korthikanti's 16-bit bytes, x 2 for float32
    passes = 2 if teacher else 1  # the teacher's forward keeps no backward state, but its layer outputs live too
    logits = rows * s * text.vocab_size * FLOAT32 * (3 if teacher else 2)
    # Under fsdp a layer's weights are gathered whole where it runs (forward and backward), and the tied
    # embedding / LM head table for the lookup and the logits.
    d, kv, inter = text.head_dim, text.num_key_value_heads, text.intermediate_size
    layer = (2 * h * a * d + 2 * h * kv * d + 3 * h * inter) * FLOAT32
    gathered = 2 * layer + text.vocab_size * h * FLOAT32 if mesh_shape.get("fsdp", 1) > 1 else 0
    return Estimate(parameters=params, teacher=params if teacher else 0, gradients=params, optimizer=2 * params,
                    updated=3 * params, activations=per_layer * layers + (passes - 1) * per_layer + logits + gathered)
