"""Checkpoints -> Flax NNX models (no torch at run time).

  load_model(path)  a Hugging Face model directory (smolvlm / idefics3 / llama) or a llama GGUF file
  model_path(flag)  what a --model flag names: a path, `smollm2` (the pip GGUF), a named ternarized model
                    (quant/compact.py: smollm2-ternary, smollm2-binary), or none (the demo VLM)
  safetensors_loader.py, gguf_loader.py  the two readers
"""

from ternary_vlm.convert.loader import load_model, LoadedModel  # noqa: F401


def model_path(flag: str | None) -> str:
    """The checkpoint a --model flag names (one vocabulary for every CLI)."""
    if flag == "smollm2":
        from ternary_vlm.convert.gguf_loader import smollm2_gguf_path
        return smollm2_gguf_path()
    from ternary_vlm.quant import compact
    if flag in compact.NAMES:
        return compact.materialize(flag)
    from ternary_vlm import demo_model
    from ternary_vlm.paths import user_path
    return user_path(flag) or demo_model.default_checkpoint()
