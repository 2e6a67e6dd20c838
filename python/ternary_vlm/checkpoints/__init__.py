"""Checkpoints in and out (no torch at run time).

  model_path(flag)  (here) what a --model flag names: a path, `smollm2` (the pip GGUF), a named ternarized
                    model (quant/compact.py: smollm2-ternary, smollm2-binary), a named grafted VLM
                    (grafted_vlm.py: smollm2-vlm), or none (the demo VLM)
  loader.py         load_model(path): a Hugging Face model directory (smolvlm / idefics3 / llama) or a llama
                    GGUF file -> a Flax NNX model + tokenizer (LoadedModel)
  huggingface.py, gguf.py  the two readers; writer.py  a Flax model -> a Hugging Face directory
  processing.py     tokenizer / image inputs as transformers' processor makes them; load_processing (no JAX)
  tokenizer.py      the tokenizers-library tokenizer and chat template
  demo_model.py     the bundled demo VLM (python/demo_vlm)
  grafted_vlm.py    a vision tower grafted onto a pretrained text decoder (SmolLM2): tokens, config, compact form
"""


def model_path(flag: str | None) -> str:
    """The checkpoint a --model flag names (one vocabulary for every CLI): an existing path first, then a name."""
    import os

    from ternary_vlm.paths import user_path

    if flag == "smollm2":
        from ternary_vlm.checkpoints.gguf import smollm2_gguf_path
        return smollm2_gguf_path()
    path = user_path(flag)
    if path and os.path.exists(path):
        return path
    if flag:
        from ternary_vlm.checkpoints import grafted_vlm
        from ternary_vlm.quant import compact
        if flag in grafted_vlm.NAMES:
            return grafted_vlm.materialize(flag)
        return compact.materialize(flag) if flag in compact.NAMES else path  # else: the loader's "no such file"
    from ternary_vlm.checkpoints import demo_model
    return demo_model.default_checkpoint()
