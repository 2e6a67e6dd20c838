"""Model configuration dataclasses, parsed from a Hugging Face config.json (dict) or built by the GGUF loader.

Supported model types: smolvlm and idefics3 (vision-language) and llama (text only). Missing keys take the
defaults of the corresponding transformers config classes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ternary_vlm.errors import CheckpointError

VLM_TYPES = ("smolvlm", "idefics3")
TEXT_TYPES = ("llama",)
SUPPORTED_TYPES = VLM_TYPES + TEXT_TYPES
# Bound on every size in a config (Llama-3-405B's largest is 128256): a corrupt config.json must give an
# error, not a model whose construction takes all memory.
MAX_SIZE = 2 ** 24


def _check_fields(cfg) -> None:
    """Sizes (int fields) must be integers in 1..MAX_SIZE (token ids, *_id, from 0), eps/theta (float fields)
    finite and positive."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        low = 0 if f.name.endswith("_id") else 1
        if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int) or
                                not low <= value <= MAX_SIZE):
            raise CheckpointError(f"config: {f.name} must be an integer in {low}..{MAX_SIZE}, got {value!r}")
        if f.type == "float" and (isinstance(value, bool) or not isinstance(value, (int, float)) or
                                  not math.isfinite(value) or value <= 0):
            raise CheckpointError(f"config: {f.name} must be a positive number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """A Llama-style decoder: RMSNorm, RoPE, grouped-query attention, SwiGLU MLP."""

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int = 32
    head_dim: int = 128
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    attention_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        _check_fields(self)
        if self.num_attention_heads % self.num_key_value_heads:
            raise CheckpointError(f"config: num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                                  f"num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim % 2:
            raise CheckpointError(f"config: head_dim must be even for RoPE, got {self.head_dim}")


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """A SigLIP-style ViT: patch embedding, learned positions, pre-LN blocks, post-LayerNorm."""

    hidden_size: int = 1152
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6

    def __post_init__(self):
        _check_fields(self)

    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class VLMConfig:
    """SmolVLM / Idefics3: vision encoder -> pixel shuffle (scale_factor) -> projection -> text decoder."""

    model_type: str
    text: TextConfig
    vision: VisionConfig
    scale_factor: int = 2
    image_token_id: int = 128257

    def __post_init__(self):
        _check_fields(self)

    @property
    def image_seq_len(self) -> int:
        """Text tokens per image tile: (image_size // patch_size)^2 / scale_factor^2."""
        return int(self.vision.patches_per_side ** 2 / self.scale_factor ** 2)


_ACTIVATIONS = {"silu", "swish"}
_VISION_ACTIVATIONS = {"gelu_pytorch_tanh", "gelu_new", "gelu_fast", "gelu"}


def _pick(cls, d: dict[str, Any], **overrides):
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in d.items() if k in names}
    kwargs.update(overrides)
    return kwargs


def _rope_theta(d: dict[str, Any], where: str) -> float:
    # transformers 5 writes rope_parameters = {rope_type, rope_theta}; 4.x wrote rope_theta (+ rope_scaling).
    params = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"{where}: rope_parameters must be an object, got {params!r}")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise CheckpointError(f"{where}: unsupported RoPE type {rope_type!r} (supported: 'default')")
    theta = params.get("rope_theta", d.get("rope_theta", 10000.0))
    if isinstance(theta, bool) or not isinstance(theta, (int, float)):
        raise CheckpointError(f"{where}: rope_theta must be a number, got {theta!r}")
    return float(theta)


def as_integer(value, key: str, where: str) -> int:
    """An integral JSON value (7 or 7.0) as int, else a CheckpointError naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
            value != int(value):
        raise CheckpointError(f"{where}: {key} must be an integer, got {value!r}")
    return int(value)


def text_config_dict(cfg: TextConfig) -> dict[str, Any]:
    """The transformers config.json of a text-only Llama decoder (what text_config_from_dict reads back)."""
    d = {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None}
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_act": "silu", **d}


def text_config_from_dict(d: dict[str, Any], *, tie_word_embeddings: bool | None = None,
                          where: str = "config.json") -> TextConfig:
    act = d.get("hidden_act", "silu")
    if act not in _ACTIVATIONS:
        raise CheckpointError(f"{where}: unsupported text hidden_act {act!r} (supported: silu)")
    if d.get("pretraining_tp", 1) not in (1, None):
        raise CheckpointError(f"{where}: pretraining_tp={d['pretraining_tp']} is not supported")
    heads = as_integer(d.get("num_attention_heads", 32), "num_attention_heads", where)
    hidden = as_integer(d.get("hidden_size", 4096), "hidden_size", where)
    kw = _pick(TextConfig, d)
    kw.pop("rope_theta", None)
    kw["num_attention_heads"] = heads
    kw["num_key_value_heads"] = as_integer(d.get("num_key_value_heads") or heads, "num_key_value_heads", where)
    kw["head_dim"] = as_integer(d.get("head_dim") or hidden // max(heads, 1), "head_dim", where)
    kw["rope_theta"] = _rope_theta(d, where)
    if tie_word_embeddings is not None:
        kw["tie_word_embeddings"] = bool(tie_word_embeddings)
    return TextConfig(**kw)


def vision_config_from_dict(d: dict[str, Any], where: str = "config.json") -> VisionConfig:
    kw = _pick(VisionConfig, d)
    for key in ("image_size", "patch_size"):
        if isinstance(kw.get(key), (list, tuple)):
            a, b = kw[key]
            if a != b:
                raise CheckpointError(f"{where}: non-square vision {key} {kw[key]} is not supported")
            kw[key] = a
    cfg = VisionConfig(**kw)
    if cfg.hidden_act not in _VISION_ACTIVATIONS:
        raise CheckpointError(f"{where}: unsupported vision hidden_act {cfg.hidden_act!r} "
                              f"(supported: {', '.join(sorted(_VISION_ACTIVATIONS))})")
    if cfg.hidden_size % cfg.num_attention_heads:
        raise CheckpointError(f"{where}: vision hidden_size {cfg.hidden_size} is not a multiple of "
                              f"num_attention_heads {cfg.num_attention_heads}")
    return cfg


def config_from_dict(d: dict[str, Any], where: str = "config.json") -> VLMConfig | TextConfig:
    """A VLMConfig for smolvlm/idefics3, a TextConfig for llama; CheckpointError for anything else."""
    model_type = d.get("model_type")
    if model_type not in SUPPORTED_TYPES:
        raise CheckpointError(f"{where}: unsupported model_type {model_type!r} "
                              f"(supported: {', '.join(SUPPORTED_TYPES)})")
    if model_type in TEXT_TYPES:
        return text_config_from_dict(d, where=where)
    text = dict(d.get("text_config") or {})
    if text.get("model_type", "llama") != "llama":
        raise CheckpointError(f"{where}: unsupported text_config.model_type {text.get('model_type')!r} "
                              f"(supported: llama)")
    text.setdefault("rms_norm_eps", 1e-5)  # the smolvlm/idefics3 default for its llama sub-config
    tie = d.get("tie_word_embeddings", False)
    vision = vision_config_from_dict(dict(d.get("vision_config") or {}), where=where)
    cfg = VLMConfig(model_type=model_type,
                    text=text_config_from_dict(text, tie_word_embeddings=tie, where=where),
                    vision=vision,
                    scale_factor=as_integer(d.get("scale_factor", 2), "scale_factor", where),
                    image_token_id=as_integer(d.get("image_token_id", 128257), "image_token_id", where))
    side = vision.patches_per_side
    if side % cfg.scale_factor:
        raise CheckpointError(f"{where}: patches per side ({side}) is not a multiple of scale_factor "
                              f"({cfg.scale_factor})")
    return cfg
