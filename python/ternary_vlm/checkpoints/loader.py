"""load_model(path): a Hugging Face model directory or a GGUF file -> a ready Flax NNX model + tokenizer.

Parameters are filled by walking the model's own variables (made abstractly with nnx.eval_shape, so no
random init) and looking each one up in the checkpoint by its transformers name; any missing or
misshaped tensor is reported by name with expected vs found shape.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Callable

import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from ternary_vlm.checkpoints.huggingface import SafetensorsCheckpoint
from ternary_vlm.checkpoints.processing import Processing, load_processing
from ternary_vlm.errors import CheckpointError
from ternary_vlm.models.config import SUPPORTED_TYPES, TextConfig, VLMConfig, config_from_dict
from ternary_vlm.models.llama import LlamaDecoder
from ternary_vlm.models.smolvlm import SmolVLM
from ternary_vlm.checkpoints.tokenizer import Tokenizer


@dataclasses.dataclass
class LoadedModel(Processing):
    """A checkpoint's Flax model (SmolVLM or LlamaDecoder) with its config, tokenizer and image processor."""
    model: nnx.Module = None


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def hf_tensor_name(path: tuple, is_vlm: bool) -> str:
    """The transformers tensor name of the variable at nnx `path` (the loader's and writer's mapping)."""
    if is_vlm and path[:2] == ("text_model", "lm_head"):
        return "lm_head." + _dotted(path[2:])
    if not is_vlm and path[0] == "lm_head":
        return _dotted(path)
    return "model." + _dotted(path)


def fill_params(make_model: Callable[[], nnx.Module], names: Callable[[tuple], str],
                shape_of: Callable[[str], tuple | None], get: Callable[[str], np.ndarray],
                used: set | None = None) -> nnx.Module:
    """Builds make_model() abstractly and fills every variable from the checkpoint.

    names(path) -> checkpoint tensor name; shape_of(name) -> its shape or None when absent;
    get(name) -> the array. Float tensors are cast to the variable's dtype."""
    abstract = nnx.eval_shape(make_model)
    graphdef, state = nnx.split(abstract)
    filled = []
    for path, var in nnx.to_flat_state(state):
        want = var.get_value()
        name = names(path)
        found = shape_of(name)
        if found is None:
            raise CheckpointError(f"missing tensor {name!r} (expected shape {tuple(want.shape)})")
        found = tuple(found)
        reshape = found != tuple(want.shape) and path[-2:] == ("patch_embedding", "weight") and \
            len(found) == 4 and found[0] == want.shape[0] and int(np.prod(found)) == int(np.prod(want.shape))
        if found != tuple(want.shape) and not reshape:
            raise CheckpointError(f"tensor {name!r} has shape {found}, expected {tuple(want.shape)}")
        array = np.asarray(get(name))
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise CheckpointError(f"tensor {name!r} holds NaN or infinite values")
        if reshape:  # Conv2d [D, C, p, p] -> linear over channel-major flattened patches [D, C*p*p]
            array = array.reshape(want.shape)
        filled.append((path, var.replace(jnp.asarray(array.astype(want.dtype, copy=False)))))
        if used is not None:
            used.add(name)
    return nnx.merge(graphdef, nnx.from_flat_state(filled))


def check_layer_counts(config: VLMConfig | TextConfig, names) -> None:
    """Fails unless the checkpoint's tensor `names` hold every layer the config declares; checked before the
    model is built, whose size the config sets (a corrupt num_hidden_layers of 10^9 would never finish)."""
    text = config.text if isinstance(config, VLMConfig) else config
    stacks = [("num_hidden_layers", text.num_hidden_layers, r"(?:.*\.)?layers\.(\d+)\.")]
    if isinstance(config, VLMConfig):
        stacks = [("text_config.num_hidden_layers", text.num_hidden_layers, r".*text_model\.layers\.(\d+)\."),
                  ("vision_config.num_hidden_layers", config.vision.num_hidden_layers,
                   r".*encoder\.layers\.(\d+)\.")]
    for key, declared, pattern in stacks:
        found = {int(m.group(1)) for n in names if (m := re.fullmatch(pattern + ".*", n))}
        if declared - 1 not in found:
            raise CheckpointError(f"{key} is {declared}, but the checkpoint holds {len(found)} such layers")


def load_model(path: str) -> LoadedModel:
    """A model directory (config.json + safetensors + tokenizer files) or a llama GGUF file."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file or directory")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"GGUF":
            return load_gguf(path)
        raise CheckpointError(f"{path} is not a checkpoint (expected a model directory with config.json, "
                              f"or a .gguf file)")
    return load_directory(path)


def load_directory(directory: str) -> LoadedModel:
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{directory} is not a checkpoint directory (no config.json)")
    try:
        with open(config_path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{config_path}: unreadable config ({e})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{config_path}: not a model config")
    config = config_from_dict(raw, where="config.json")
    checkpoint = SafetensorsCheckpoint(directory)
    check_layer_counts(config, checkpoint.keys())
    shape_of = lambda name: checkpoint.shape(name) if name in checkpoint else None  # noqa: E731

    is_vlm = isinstance(config, VLMConfig)
    if is_vlm:
        make = lambda: SmolVLM(config, rngs=nnx.Rngs(0))  # noqa: E731
    else:
        make = lambda: LlamaDecoder(config, rngs=nnx.Rngs(0))  # noqa: E731
    used: set = set()
    model = fill_params(make, lambda path: hf_tensor_name(path, is_vlm), shape_of, checkpoint.get, used)
    unused = sorted(set(checkpoint.keys()) - used - {"lm_head.weight"})
    if unused:
        logging.warning("%d checkpoint tensors unused, e.g. %s", len(unused), ", ".join(unused[:3]))

    return LoadedModel(**vars(load_processing(directory)), model=model)


def load_gguf(path: str) -> LoadedModel:
    from ternary_vlm.checkpoints.gguf import GGUFCheckpoint

    checkpoint = GGUFCheckpoint(path)
    config = checkpoint.config
    tensors = checkpoint.tensors()
    check_layer_counts(config, tensors)
    model = fill_params(lambda: LlamaDecoder(config, rngs=nnx.Rngs(0)), _dotted,
                        lambda name: tuple(int(d) for d in reversed(tensors[name].shape)) if name in tensors else None,
                        lambda name: checkpoint.get(tensors[name]))
    return LoadedModel(config, Tokenizer.from_gguf_metadata(checkpoint.meta), None, path, model=model)


__all__ = ["LoadedModel", "load_model", "load_directory", "load_gguf", "fill_params", "hf_tensor_name",
           "SUPPORTED_TYPES"]
