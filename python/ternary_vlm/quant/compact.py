"""Named ternarized models shipped in compact form, loadable by every CLI as `--model=NAME`.

python/artifacts/NAME/ holds only what the base checkpoint cannot give back:
  quantized.safetensors   the packed codes and scales of every quantized layer (the ternarize output's file)
  changed.safetensors     every other tensor that training moved (e.g. RMSNorm gains), by transformers name
  config.json, report.json, report.md   the ternarize output's own; config names the base in
                          quantization_config.base (a --model value: `smollm2` = the pip GGUF)
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

import numpy as np
from safetensors.numpy import load_file, save_file

from ternary_vlm import atomic
from ternary_vlm.errors import CheckpointError

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"
NAMES = ("smollm2-ternary", "smollm2-binary")
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


def write(ternarize_dir: str, base_flag: str, dest: str) -> None:
    """The compact form of a ternarize output whose base model is `base_flag`."""
    config = json.load(open(os.path.join(ternarize_dir, "config.json")))
    layers = set(config["quantization_config"]["layers"])
    base, _ = base_tensors(base_flag)
    trained = load_file(os.path.join(ternarize_dir, "model.safetensors"))
    changed = {name: t for name, t in trained.items()
               if name.removeprefix("model.").removesuffix(".weight") not in layers
               and not (name in base and np.array_equal(base[name], t))}
    with atomic.output_directory(dest) as tmp:
        for name in _COPIED:
            shutil.copy(os.path.join(ternarize_dir, name), tmp)
        config["quantization_config"]["base"] = base_flag
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(config, f, indent=1)
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

    def fill(tmp: str) -> None:
        config = json.load(open(src / "config.json"))
        q = config["quantization_config"]
        tensors, tokenizer = base_tensors(q["base"])
        packed = load_file(str(src / "quantized.safetensors"))
        for layer in q["layers"]:
            key = f"model.{layer}.weight"
            codes = packing.unpack(packed[layer + ".packed"], tensors[key].shape[1], q["format"])
            tensors[key] = packed[layer + ".scale"][:, None] * codes.astype(np.float32)
        tensors.update(load_file(str(src / "changed.safetensors")))
        for f in _COPIED:
            shutil.copy(src / f, tmp)
        save_file(tensors, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save(tmp)

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
