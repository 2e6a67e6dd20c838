"""Turns a float model into its quantized self: each selected Linear becomes a QuantLinear
initialized from its pretrained weights, and the reconstruction error of each is reported."""

from __future__ import annotations

import dataclasses
import fnmatch

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ternary_vlm.models import layers
from ternary_vlm.quant import calibrate
from ternary_vlm.quant import init as qinit
from ternary_vlm.quant.layers import QuantLinear

# Shorthands for --keep_float, as glob patterns over layer names.
KEEP_GROUPS = {
    "vision": ["vision_model.*"],
    "connector": ["connector.*"],
    "first": ["text_model.layers.0.*"],
    "lm_head": ["*lm_head*"],
}


@dataclasses.dataclass
class LayerReport:
    name: str
    shape: tuple
    relative_error: float


def keep_patterns(keep: list[str], num_text_layers: int) -> list[str]:
    patterns = []
    for item in keep:
        if item == "last":
            patterns.append(f"text_model.layers.{num_text_layers - 1}.*")
        else:
            patterns.extend(KEEP_GROUPS.get(item, [item]))
    return patterns


def quantize_model(model: nnx.Module, mode: str, init: str, keep: list[str], num_text_layers: int,
                   moments: dict[str, np.ndarray] | None = None) -> list[LayerReport]:
    """Replaces, in place, every Linear whose name matches no keep pattern. Returns per-layer reports.
    init "output" needs `moments`: E[xᵀx] of each layer's inputs (calibrate.input_moments)."""
    if init in qinit.DATA_INITS and moments is None:
        raise ValueError(f"init {init!r} needs calibration inputs (quant/calibrate.py)")
    patterns = keep_patterns(keep, num_text_layers)
    reports = []
    for path, lin in list(layers.iter_linears(model)):
        name = lin.name or ".".join(map(str, path))
        if any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        w = np.asarray(lin.weight[...])
        if init == "output":
            bias = None if lin.bias is None else np.asarray(lin.bias[...])
            q = QuantLinear(w, bias, calibrate.output_aware_scale(w, moments[lin.name], mode), mode, lin.name)
        else:
            q = QuantLinear.from_linear(lin, mode, init)
        reports.append(LayerReport(name, w.shape, qinit.relative_error(w, np.asarray(q.scale[...]), mode)))
        layers.set_submodule(model, path, q)
    return reports


def quantized_layers(model: nnx.Module):
    return list(layers.iter_linears(model, QuantLinear))


def output_quantization(directory: str, mode: str) -> dict:
    """The quantization_config of the ternarize output in `directory`, checked to be of `mode` (one-line errors)."""
    import json
    import os

    from ternary_vlm.errors import TernaryVLMError

    path = os.path.join(directory, "config.json")
    try:
        with open(path) as f:
            q = json.load(f).get("quantization_config") or {}
    except (OSError, ValueError) as e:
        raise TernaryVLMError(f"{path}: no ternarize output there ({e})") from None
    if q.get("mode") != mode:
        raise TernaryVLMError(f"{path} is not a {mode} ternarize output (quantization_config.mode {q.get('mode')!r})")
    return q


def continue_from(model: nnx.Module, directory: str, mode: str, prefix: str = "") -> list[LayerReport]:
    """Makes the float `model` the ternarize output in `directory` again, to train it further (ternarize
    --init_from): each of its quantized layers becomes a QuantLinear with latent weights α·t and scales α, so the
    codes are exactly the output's, and every other tensor it trained (norm gains) is copied in. The reports give
    each layer's ‖W − α·t‖ / ‖W‖ against `model`'s float weights.

    With prefix "text_model.", `model` is a grafted VLM's decoder and `directory` a ternarize output of the text-only
    model it was grafted onto (ternarize --text_init_from): layer names differ by the prefix, and the VLM's
    embedding may hold more rows (the image tokens), which keep their values."""
    from ternary_vlm.checkpoints.loader import load_model
    from ternary_vlm.errors import TernaryVLMError
    from ternary_vlm.quant import artifact

    output_quantization(directory, mode)
    start = load_model(directory).model
    quantized = {prefix + layer.name: layer for layer in artifact.read(start, directory)}
    if not quantized:
        raise TernaryVLMError(f"{directory}: not a ternarize output (no quantized.safetensors) to continue from")

    def flat(m):
        return {".".join(map(str, path)): v.get_value() for path, v in nnx.to_flat_state(nnx.state(m, nnx.Param))}

    ours, theirs = flat(model), flat(start)
    for name in sorted(ours.keys() | theirs.keys()):
        o, t = getattr(ours.get(name), "shape", None), getattr(theirs.get(name), "shape", None)
        grown = prefix and name == "embed_tokens.weight" and o and t and o[1:] == t[1:] and o[0] >= t[0]
        if o != t and not grown:
            raise TernaryVLMError(f"{directory}: tensor {name} is {t} there and {o} in the model: not a "
                                  f"ternarization of it")
    float_weights = {lin.name: np.asarray(lin.weight[...]) for _, lin in layers.iter_linears(model)}
    state = []
    for path, var in nnx.to_flat_state(nnx.state(start, nnx.Param)):
        value, mine = var.get_value(), ours[".".join(map(str, path))]
        if value.shape != mine.shape:  # the added rows of a grafted VLM's embedding stay the VLM's
            value = jnp.concatenate([value, mine[value.shape[0]:]])
        state.append((path, var.replace(value)))
    nnx.update(model, nnx.from_flat_state(state))
    reports = []
    for path, lin in list(layers.iter_linears(model)):
        if lin.name not in quantized:
            continue
        q = quantized.pop(lin.name)
        bias = None if lin.bias is None else np.asarray(lin.bias[...])
        layers.set_submodule(model, path, QuantLinear(q.dequantized(), bias, q.scale, mode, lin.name))
        w = float_weights[lin.name]
        reports.append(LayerReport(lin.name, w.shape,
                                   float(np.linalg.norm(w - q.dequantized()) / max(np.linalg.norm(w), 1e-12))))
    return reports
