"""Named ternarized models shipped in compact form, loadable by every CLI as `--model=NAME`.

python/artifacts/NAME/ holds only what the base checkpoint cannot give back:
  quantized.safetensors   the packed codes and scales of every quantized layer (the ternarize output's file)
  changed.safetensors     every other tensor that training moved (e.g. RMSNorm gains), by transformers name
  config.json, report.json, report.md   the ternarize output's own; config names the base in
                          quantization_config.base (a --model value: `smollm2` = the pip GGUF, `smollm2-vlm` = the
                          grafted VLM)
A VLM ternarized with its decoder taken from a shipped text artifact (ternarize --text_init_from, and
--freeze_decoder) leaves out every packed tensor that artifact holds unchanged: quantization_config names it in
text_layers_from, with the digest of what was taken, so a retrained text artifact is refused, not silently used.
`materialize(NAME)` rebuilds the full ternarize output directory (model.safetensors holding α·t, tokenizer)
from the base once, in a cache folder, so loading, export and benchmarks treat it as any ternarize output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors.numpy import load_file, save_file

from ternary_vlm import atomic
from ternary_vlm.errors import CheckpointError

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"
NAMES = ("smollm2-ternary", "smollm2-binary", "smollm2-vlm-ternary", "smollm2-vlm-binary")
_COPIED = ("quantized.safetensors", "config.json", "report.json", "report.md")


def base_tensors(base_flag: str) -> tuple[dict[str, np.ndarray], object]:
    """(tensors by transformers name, tokenizer) of the text-only model a --model value names."""
    from ternary_vlm.checkpoints import model_path
    from ternary_vlm.checkpoints.loader import load_model
    from ternary_vlm.checkpoints import writer
    from ternary_vlm.models.config import text_config_dict

    loaded = load_model(model_path(base_flag))
    if loaded.is_vlm:
        raise CheckpointError(f"{base_flag}: compact artifacts of VLMs are not supported")
    return writer.state_dict(loaded.model, text_config_dict(loaded.config)), loaded.tokenizer


def base_model(base_flag: str) -> tuple[dict[str, np.ndarray], Callable[[str], None]]:
    """(tensors by transformers name, write_files(directory) of its tokenizer and processor files) of the model a
    --model value names: a text-only model (base_tensors), or a VLM directory as it was written."""
    from ternary_vlm.checkpoints import model_path
    from ternary_vlm.checkpoints.processing import load_processing
    from ternary_vlm.quant.artifact import PROCESSOR_FILES

    path = model_path(base_flag)
    if not (os.path.isdir(path) and load_processing(path).is_vlm):
        tensors, tokenizer = base_tensors(base_flag)
        return tensors, tokenizer.save

    def files(directory: str) -> None:
        for name in PROCESSOR_FILES:
            if os.path.exists(os.path.join(path, name)):
                shutil.copy(os.path.join(path, name), directory)

    return load_file(os.path.join(path, "model.safetensors")), files


def text_layers(name: str) -> tuple[dict[str, np.ndarray], str]:
    """(the packed codes and scales of text artifact `name` (a shipped name, or a ternarize output / compact
    directory) under a grafted VLM's layer names, their digest)."""
    path = (ARTIFACTS / name if name in NAMES else Path(name)) / "quantized.safetensors"
    if not path.exists():
        raise CheckpointError(f"{name}: no quantized.safetensors to take the decoder's layers from")
    return ({"text_model." + k: v for k, v in load_file(str(path)).items()},
            hashlib.sha256(path.read_bytes()).hexdigest())


def write(ternarize_dir: str, base_flag: str, dest: str, text_layers_from: str | None = None) -> None:
    """The compact form of a ternarize output whose base model is `base_flag`; with `text_layers_from` (a shipped
    text artifact), the packed tensors it holds unchanged are left out."""
    config = json.load(open(os.path.join(ternarize_dir, "config.json")))
    q = config["quantization_config"]
    layers = set(q["layers"])
    base, _ = base_model(base_flag)
    trained = load_file(os.path.join(ternarize_dir, "model.safetensors"))
    changed = {name: t for name, t in trained.items()
               if name.removeprefix("model.").removesuffix(".weight") not in layers
               and not (name in base and np.array_equal(base[name], t))}
    packed = load_file(os.path.join(ternarize_dir, "quantized.safetensors"))
    q["base"] = base_flag
    if text_layers_from:
        shared, q["text_layers_sha256"] = text_layers(text_layers_from)
        packed = {k: v for k, v in packed.items() if not (k in shared and np.array_equal(shared[k], v))}
        q["text_layers_from"] = text_layers_from
    with atomic.output_directory(dest) as tmp:
        for name in _COPIED:
            if name != "quantized.safetensors":
                shutil.copy(os.path.join(ternarize_dir, name), tmp)
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
        save_file(packed, os.path.join(tmp, "quantized.safetensors"))
        save_file(changed, os.path.join(tmp, "changed.safetensors"))


def cache_root() -> Path:
    return Path(os.environ.get("TERNARY_VLM_CACHE", Path.home() / ".cache" / "ternary_vlm"))


def available(name: str) -> bool:
    return (ARTIFACTS / name / "quantized.safetensors").exists()


def materialize(name: str) -> str:
    """The ternarize output directory of the named artifact, rebuilt from its base on first use."""
    src = ARTIFACTS / name
    if not available(name):
        raise CheckpointError(f"{name}: no compact artifact at {src} (docs/RESULTS.md has the command that "
                              f"makes it)")
    return materialize_dir(src, name)


def materialize_dir(src: Path, name: str) -> str:
    """The ternarize output directory of the compact artifact in `src` (cached under `name` + a digest)."""
    from ternary_vlm.quant import packing

    src = Path(src)
    with open(src / "config.json") as f:
        q = json.load(f)["quantization_config"]
    packed = load_file(str(src / "quantized.safetensors"))
    if q.get("text_layers_from"):
        shared, digest = text_layers(q["text_layers_from"])
        if digest != q["text_layers_sha256"]:
            raise CheckpointError(f"{name}: its decoder layers come from {q['text_layers_from']}, which has changed "
                                  f"since it was written (quantized.safetensors digest); write it again "
                                  f"(quant/compact.py write)")
        # config.json holds the digest checked here, so the cache key below covers the layers taken too
        packed = {**{k: v for k, v in shared.items() if k.rsplit(".", 1)[0] in q["layers"]}, **packed}
    missing = [layer for layer in q["layers"] if layer + ".packed" not in packed]
    if missing:
        raise CheckpointError(f"{name}: quantized.safetensors lacks the codes of {len(missing)} layers, "
                              f"{missing[0]} first")

    def fill(tmp: str) -> None:
        tensors, write_files = base_model(q["base"])
        for layer in q["layers"]:
            key = f"model.{layer}.weight"
            shape = tensors[key].shape  # a patch embedding is stored as its Conv2d [D, C, p, p] (checkpoints/writer.py)
            codes = packing.unpack(packed[layer + ".packed"], int(np.prod(shape[1:])), q["format"])
            tensors[key] = (packed[layer + ".scale"][:, None] * codes.astype(np.float32)).reshape(shape)
        tensors.update(load_file(str(src / "changed.safetensors")))
        for f in _COPIED:
            if f != "quantized.safetensors":
                shutil.copy(src / f, tmp)
        save_file(packed, os.path.join(tmp, "quantized.safetensors"))
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        write_files(tmp)

    return cached_directory(src, ("config.json", "quantized.safetensors", "changed.safetensors"), name, fill)


def cached_directory(src: Path, inputs: tuple[str, ...], name: str, fill) -> str:
    """A directory rebuilt once from the artifact files `inputs` of `src`: cached under `name` + their digest,
    written by fill(tmp_dir) into a temporary sibling that is renamed into place when complete."""
    digest = hashlib.sha256(b"".join((Path(src) / f).read_bytes() for f in inputs)).hexdigest()[:16]
    target = cache_root() / f"{name}-{digest}"
    if (target / "model.safetensors").exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=target.parent)
    os.chmod(tmp, 0o755)  # an ordinary directory, like any ternarize output
    try:
        fill(tmp)
        os.rename(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        # Another process (tests run in parallel) materialized the same digest first: same content, use it.
        if not (target / "model.safetensors").exists():
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(target)
