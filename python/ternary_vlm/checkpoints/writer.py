"""Flax model -> Hugging Face model directory (config.json, model.safetensors, tokenizer files), the
layout load_directory reads and transformers' SmolVLM/Llama classes load. Written atomically: into a
temporary sibling directory that replaces the target only when complete."""

from __future__ import annotations

import json
import os
from typing import Callable

import numpy as np
from flax import nnx
from safetensors.numpy import save_file

from ternary_vlm import atomic
from ternary_vlm.checkpoints.loader import hf_tensor_name
from ternary_vlm.models import layers


def state_dict(model: nnx.Module, config: dict) -> dict[str, np.ndarray]:
    """Tensors by transformers name; a QuantLinear contributes its effective weight α·t (no scale)."""
    from ternary_vlm.quant.layers import QuantLinear

    is_vlm = config.get("model_type") != "llama"
    quantized = {tuple(path): q for path, q in layers.iter_linears(model, QuantLinear)}
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        q = quantized.get(tuple(path[:-1]))
        if q is not None and path[-1] == "scale":
            continue
        if q is not None and path[-1] == "weight":
            array = np.asarray(q.scale[...])[:, None] * q.codes().astype(np.float32)
        else:
            array = np.asarray(var.get_value())
        if path[-2:] == ("patch_embedding", "weight"):  # our linear over patches -> Conv2d [D, C, p, p]
            vision = config["vision_config"]
            p = vision["patch_size"]
            array = array.reshape(array.shape[0], vision.get("num_channels", 3), p, p)
        out[hf_tensor_name(path, is_vlm)] = np.ascontiguousarray(array)
    return out


def save_directory(model: nnx.Module, config: dict, out_dir: str,
                   write_extras: Callable[[str], None] | None = None) -> None:
    """Writes config (a config.json dict), the weights and whatever write_extras(tmp_dir) adds."""
    with atomic.output_directory(out_dir) as tmp:
        save_file(state_dict(model, config), os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        if write_extras:
            write_extras(tmp)
