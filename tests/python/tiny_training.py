"""A tiny SmolVLM and its batches, shared by the training tests (train_test, distributed_test)."""

import jax
import numpy as np
from flax import nnx

from ternary_vlm.models.config import config_from_dict
from ternary_vlm.models.smolvlm import SmolVLM
from ternary_vlm.quant.apply import quantize_model

CONFIG = {
    "model_type": "smolvlm", "image_token_id": 30, "scale_factor": 2, "tie_word_embeddings": True,
    "text_config": {"vocab_size": 40, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64},
    "vision_config": {"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
                      "num_attention_heads": 2, "image_size": 16, "patch_size": 4},
}


def make_model(quantized=False):
    cfg = config_from_dict(CONFIG)
    model = SmolVLM(cfg, rngs=nnx.Rngs(0))
    if quantized:
        quantize_model(model, "ternary", "kmeans", [], cfg.text.num_hidden_layers)
    return model


def batch(step):
    """8 rows: 4 image tokens (one 16 px image each) then text; loss on the text."""
    rng = np.random.default_rng(step)
    ids = rng.integers(0, 30, size=(8, 12)).astype(np.int32)
    ids[:, 1:5] = 30
    mask = np.zeros((8, 12), np.float32)
    mask[:, 5:] = 1
    return {"ids": ids, "labels": np.roll(ids, -1, axis=1), "mask": mask,
            "pixel_values": rng.normal(size=(8, 3, 16, 16)).astype(np.float32)}


def params(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


class Killed(Exception):
    pass


def dies_at(step: int):
    """A batch function that raises Killed at `step` (a process killed mid-run)."""
    def batch_fn(s):
        if s == step:
            raise Killed()
        return batch(s)
    return batch_fn
