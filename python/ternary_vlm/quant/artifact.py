"""The ternarize output format, written and read here only.

A ternarize output is a Hugging Face model directory whose quantized linear weights are the dequantized α·t
(any loader runs it as a float model), plus:
  quantized.safetensors  per quantized layer NAME: NAME.packed (uint8, the scheme's packing format) and
                         NAME.scale (float32 α ≥ 0 per output row): what export and the kernels consume
  config.json            quantization_config = {quant_method, mode, format, init, layers}
  report.json / .md      what ternarize measured
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Callable

import numpy as np

from ternary_vlm.errors import TernaryVLMError
from ternary_vlm.quant import packing


# A model directory's tokenizer and image-processor files, which every output of it carries unchanged.
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "chat_template.json",
                   "chat_template.jinja")


@dataclasses.dataclass
class QuantizedLayer:
    """What the kernels need of one quantized linear layer: int8 codes t [N, K], α [N], packed t, format."""
    name: str
    codes: np.ndarray
    scale: np.ndarray
    packed: np.ndarray
    fmt: str

    def dequantized(self) -> np.ndarray:
        return self.scale[:, None] * self.codes.astype(np.float32)

    @classmethod
    def of(cls, name: str, codes: np.ndarray, scale: np.ndarray, fmt: str,
           packed: np.ndarray | None = None) -> "QuantizedLayer":
        """The layer with α ≥ 0 in every row: training leaves α free, and a row whose α crossed zero is stored as
        (|α|, −t), the same weights α·t, in the form the kernels' int8 path and stock LiteRT's per-channel
        scales (positive steps) expect. `packed`: the codes already packed, kept when no row changes sign."""
        scale = np.asarray(scale, np.float32)
        if packed is not None and not (scale < 0).any():
            return cls(name, np.asarray(codes, np.int8), scale, packed, fmt)
        sign = np.where(scale < 0, -1, 1).astype(np.int8)[:, None]
        codes = (np.asarray(codes, np.int8) * sign).astype(np.int8)
        return cls(name, codes, np.abs(scale), packing.pack(codes, fmt), fmt)


def write(model, loaded, out: str, scheme, init: str, report: dict, report_md: str,
          extras: Callable[[str], None] | None = None) -> None:
    """Writes `model` (with QuantLinear layers) as a ternarize output at `out`, atomically; `extras(directory)`
    adds files (a curve plot, an export) inside the temporary directory, so a failure leaves no output."""
    from safetensors.numpy import save_file

    from ternary_vlm.checkpoints import writer
    from ternary_vlm.quant.apply import quantized_layers

    packed = {}
    for _, q in quantized_layers(model):
        layer = QuantizedLayer.of(q.name, q.codes(), np.asarray(q.scale[...], np.float32), scheme.format)
        packed[q.name + ".packed"], packed[q.name + ".scale"] = layer.packed, layer.scale
    if os.path.isdir(loaded.path):
        with open(os.path.join(loaded.path, "config.json")) as f:
            config = json.load(f)
    else:  # a GGUF file: its config and tokenizer written out in transformers' layout
        from ternary_vlm.models.config import text_config_dict
        config = text_config_dict(loaded.config)
    config["quantization_config"] = {"quant_method": "ternary_vlm", "mode": scheme.mode, "format": scheme.format,
                                     "init": init,
                                     "layers": sorted(k[:-len(".packed")] for k in packed if k.endswith(".packed"))}

    def files(directory):
        save_file(packed, os.path.join(directory, "quantized.safetensors"))
        if not os.path.isdir(loaded.path):
            loaded.tokenizer.save(directory)
        for name in PROCESSOR_FILES:
            if os.path.isdir(loaded.path) and os.path.exists(os.path.join(loaded.path, name)):
                shutil.copy(os.path.join(loaded.path, name), directory)
        with open(os.path.join(directory, "report.json"), "w") as f:
            json.dump(report, f, indent=1)
        with open(os.path.join(directory, "report.md"), "w") as f:
            f.write(report_md)
        if extras:
            extras(directory)

    writer.save_directory(model, config, out, files)


def read(model, directory: str) -> list[QuantizedLayer]:
    """The layers listed in a ternarize output's quantized.safetensors, checked against the loaded α·t (empty
    for a float checkpoint)."""
    from safetensors.numpy import load_file

    from ternary_vlm.models import layers

    path = os.path.join(directory, "quantized.safetensors")
    if not os.path.exists(path):
        return []
    with open(os.path.join(directory, "config.json")) as f:
        qconfig = json.load(f).get("quantization_config") or {}
    fmt = qconfig.get("format")
    if fmt not in packing.FORMATS:
        raise TernaryVLMError(f"{directory}/config.json: quantization_config.format {fmt!r} is not a known "
                              f"packing format ({', '.join(packing.FORMATS)})")
    tensors = load_file(path)
    linears = {(lin.name or ".".join(map(str, p))): lin for p, lin in layers.iter_linears(model)}
    found = []
    for name in qconfig.get("layers", []):
        if name not in linears or name + ".packed" not in tensors or name + ".scale" not in tensors:
            raise TernaryVLMError(f"{path}: quantized layer {name!r} is missing from the model or the file")
        w = np.asarray(linears[name].weight[...], np.float32)
        try:
            codes = packing.unpack(tensors[name + ".packed"], w.shape[1], fmt)
        except ValueError as e:
            raise TernaryVLMError(f"{path}: {name}: {e}") from None
        layer = QuantizedLayer.of(name, codes, tensors[name + ".scale"], fmt, packed=tensors[name + ".packed"])
        if codes.shape != w.shape or not np.array_equal(layer.dequantized(), w):
            raise TernaryVLMError(f"{path}: {name}: packed codes x scale differ from the weights in "
                                  f"model.safetensors")
        found.append(layer)
    return found
