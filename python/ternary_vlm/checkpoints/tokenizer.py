"""Tokenizers from a checkpoint's own files (tokenizer.json, tokenizer_config.json, chat template) or from
a GGUF file's metadata, and chat templates rendered with jinja2 as transformers renders them."""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jinja2
import jinja2.ext
import jinja2.sandbox
import tokenizers
from tokenizers import AddedToken, decoders, models, pre_tokenizers

from ternary_vlm.errors import CheckpointError


def _raise(message):
    raise jinja2.TemplateError(message)


def render_chat_template(template: str, messages: Sequence[dict[str, Any]], *, add_generation_prompt: bool = True,
                         **extra) -> str:
    """Renders a Hugging Face chat template (same jinja2 settings as transformers)."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                       extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, indent=None, **kw: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = _raise
    try:
        return env.from_string(template).render(messages=list(messages),
                                                add_generation_prompt=add_generation_prompt, **extra)
    except jinja2.TemplateError as e:
        raise CheckpointError(f"chat template: {e}") from None


class Tokenizer:
    """A `tokenizers.Tokenizer` plus the special tokens and chat template that came with it."""

    def __init__(self, backend: tokenizers.Tokenizer, *, bos_token: str | None = None, eos_token: str | None = None,
                 chat_template: str | None = None):
        self.backend = backend
        self.bos_token, self.eos_token, self.chat_template = bos_token, eos_token, chat_template

    # -- loading -------------------------------------------------------------------------------------------
    @classmethod
    def from_directory(cls, directory: str) -> "Tokenizer":
        path = os.path.join(directory, "tokenizer.json")
        if not os.path.exists(path):
            raise CheckpointError(f"{directory}: no tokenizer.json (only fast tokenizers are supported)")
        try:
            backend = tokenizers.Tokenizer.from_file(path)
        except Exception as e:  # the tokenizers library raises its own Exception type
            raise CheckpointError(f"tokenizer.json: unreadable ({str(e).splitlines()[0]})") from None
        config = _read_json(os.path.join(directory, "tokenizer_config.json")) or {}
        template = config.get("chat_template")
        for name in ("chat_template.jinja",):
            if os.path.exists(os.path.join(directory, name)):
                with open(os.path.join(directory, name)) as f:
                    template = f.read()
        processor_template = _read_json(os.path.join(directory, "chat_template.json"))
        if processor_template and processor_template.get("chat_template"):
            template = processor_template["chat_template"]
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t["template"] for t in template if t.get("name") == "default"), template[0]["template"])
        return cls(backend, bos_token=_token_str(config.get("bos_token")),
                   eos_token=_token_str(config.get("eos_token")), chat_template=template)

    @classmethod
    def from_gguf_metadata(cls, meta: dict[str, Any]) -> "Tokenizer":
        """A byte-level BPE ('gpt2' tokenizer model) from llama.cpp's tokenizer.ggml.* keys."""
        kind = meta.get("tokenizer.ggml.model")
        if kind != "gpt2":
            raise CheckpointError(f"GGUF: unsupported tokenizer model {kind!r} (supported: gpt2, byte-level BPE)")
        tokens, merges = meta.get("tokenizer.ggml.tokens"), meta.get("tokenizer.ggml.merges", [])
        for key, value in (("tokens", tokens), ("merges", merges)):
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise CheckpointError(f"GGUF: tokenizer.ggml.{key} must be a list of strings")
        vocab = {t: i for i, t in enumerate(tokens)}
        merges = [tuple(m.split(" ", 1)) for m in merges]
        if any(len(m) != 2 for m in merges):
            raise CheckpointError("GGUF: tokenizer.ggml.merges holds an entry that is not two tokens")
        for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
            if key in meta and not (isinstance(meta[key], int) and 0 <= meta[key] < len(tokens)):
                raise CheckpointError(f"GGUF: {key} {meta[key]!r} is not a token of the {len(tokens)}")
        try:
            bpe = models.BPE(vocab, merges, fuse_unk=False, continuing_subword_prefix="", end_of_word_suffix="")
        except Exception as e:  # noqa: BLE001 -- tokenizers raises a bare Exception (e.g. a merge of unknown tokens)
            raise CheckpointError(f"GGUF: unusable BPE vocabulary ({str(e).splitlines()[0]})") from None
        backend = tokenizers.Tokenizer(bpe)
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        if meta.get("tokenizer.ggml.pre") == "smollm":
            # llama.cpp's "smollm" pre-tokenizer (and SmolLM2's tokenizer.json): digits one by one, then GPT-2.
            backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                             byte_level])
        else:
            backend.pre_tokenizer = byte_level
        backend.decoder = decoders.ByteLevel()
        types = meta.get("tokenizer.ggml.token_type") or []
        backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                    for t, ty in zip(tokens, types) if ty == 3])  # 3 = control
        token = lambda key: tokens[meta[key]] if key in meta else None  # noqa: E731
        return cls(backend, bos_token=token("tokenizer.ggml.bos_token_id"),
                   eos_token=token("tokenizer.ggml.eos_token_id"),
                   chat_template=meta.get("tokenizer.chat_template"))

    def save(self, directory: str) -> None:
        """tokenizer.json + tokenizer_config.json (special tokens, chat template): what from_directory reads."""
        self.backend.save(os.path.join(directory, "tokenizer.json"))
        config = {"bos_token": self.bos_token, "eos_token": self.eos_token, "chat_template": self.chat_template}
        with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
            json.dump({k: v for k, v in config.items() if v is not None}, f, indent=1)

    # -- use -----------------------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    @property
    def eos_token_id(self) -> int | None:
        return None if self.eos_token is None else self.token_to_id(self.eos_token)

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise CheckpointError("the checkpoint has no chat template")
        return render_chat_template(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                                    bos_token=self.bos_token or "", eos_token=self.eos_token or "")


def _token_str(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{os.path.basename(path)}: unreadable ({e})") from None
