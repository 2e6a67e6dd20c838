"""Checkpoints -> Flax NNX models (no torch at run time).

  load_model(path)  a Hugging Face model directory (smolvlm / idefics3 / llama) or a llama GGUF file
  safetensors_loader.py, gguf_loader.py  the two readers
"""

from ternary_vlm.convert.loader import load_model, LoadedModel  # noqa: F401
