"""Flax NNX models: the SmolVLM / Idefics3 family and its Llama-style text decoder.

  config.py   dataclasses parsed from a Hugging Face config.json (or GGUF metadata)
  layers.py   Linear / Embedding / norms; the ONE place every linear layer is made (see its docstring)
  llama.py    the text decoder (RMSNorm, RoPE, GQA, SwiGLU) with a fixed-size KV cache
  siglip.py   the SigLIP-style vision encoder
  smolvlm.py  vision encoder + pixel-shuffle connector + text decoder
  decoding.py  the one prefill / decode step pair (jitted by Generator, traced by export) and the Generator
  sampling.py  next-token choice and the one token loop, on the host (numpy only; the LiteRT runtime's too)
"""
