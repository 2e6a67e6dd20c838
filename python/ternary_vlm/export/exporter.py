"""Export a Flax model (float SmolVLM / Llama, or a ternarize output) to one .tflite file.

  tools/bazel run //python:export -- --model=DIR --variant=ternary --out=model.tflite   (cli/export.py)

The existing Flax modules are traced with jax2tf and converted with TFLiteConverter; nothing is re-implemented.
Signatures (keys = tf.function names):

  encode_image(pixel_values f32 [1, C, H, W]) -> image_features f32 [image_seq_len, D]      (VLMs only)
  prefill(ids i32 [1, P], image_features f32 [P, D] (VLMs only), length i32 []) -> logits f32 [1, vocab]
  decode(token i32 [1, 1], position i32 []) -> logits f32 [1, vocab]
  reset() -> done i32 []

P (--prefill_len) is a fixed prompt capacity: the prompt goes in ids[0, :length], the rest is padding, and the
logits are those after the last real token. Image features (one encode_image call per tile, concatenated) go
in the first rows of image_features; their rows replace the image tokens of ids in order, as SmolVLM.embed.
The KV cache (per layer k [kv_heads, head_dim, max_len], v [kv_heads, max_len, head_dim]) lives inside the
interpreter, in one of two ways (kv_cache=):
  op         (default) each layer's cache update + attention is our KVCacheAttention op, which owns the cache,
             writes new tokens in place and reads only the positions a query sees
             (tflite.kv_cache_attention; cc/tflite/attention_op.h)
  variables  stock TFLite: resource variables read, dynamic-update-sliced and re-assigned at every step, and
             attention over all max_len positions with a mask (ternary_unpack_builtin always uses this: it
             promises builtin ops only)
Padding cannot corrupt the cache: prefill writes slots 0..P-1, but slot i >= length is only ever attended to
after decode(position=i) has overwritten it (attention masks keys beyond the query position). So a new
conversation needs no reset(); with kv_cache=variables reset() zeroes the cache anyway (memory hygiene).

Variants: export/variants.py (one table: scheme, activations, strategy, int8 for the rest, KV cache).
"""

from __future__ import annotations

import dataclasses
import os

from ternary_vlm import atomic
from ternary_vlm.errors import TernaryVLMError
from ternary_vlm.export.variants import Variant


@dataclasses.dataclass
class ExportResult:
    content: bytes
    replacements: dict  # signature -> number of quantized FULLY_CONNECTED rewritten
    expected: dict      # signature -> number of quantized layers it uses


def quantized_layers_of(model):
    """QuantLinear layers -> (float twin with Linear weights α·t, [QuantizedLayer]). The twin is what gets
    traced: the converter sees plain FULLY_CONNECTEDs whose weights the rewrite then recognises."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from ternary_vlm.models import layers
    from ternary_vlm.quant import schemes
    from ternary_vlm.quant.artifact import QuantizedLayer
    from ternary_vlm.quant.layers import QuantLinear

    model = nnx.clone(model)
    found = []
    for path, q in list(layers.iter_linears(model, QuantLinear)):
        codes, scale = q.codes(), np.asarray(q.scale[...], np.float32)
        fmt = schemes.by_mode(q.mode).format
        lin = layers.Linear(q.in_features, q.out_features, use_bias=q.bias is not None, rngs=nnx.Rngs(0),
                            name=q.name)
        lin.weight = nnx.Param(jnp.asarray(scale[:, None] * codes.astype(np.float32)))
        if q.bias is not None:
            lin.bias = nnx.Param(jnp.asarray(q.bias[...], jnp.float32))
        layers.set_submodule(model, path, lin)
        found.append(QuantizedLayer.of(q.name or ".".join(map(str, path)), codes, scale, fmt))
    return model, found


def convert(model, variant: Variant, *, quantized=None, max_len: int = 64,
            prefill_len: int | None = None) -> ExportResult:
    """The .tflite bytes of `model` (SmolVLM or LlamaDecoder; QuantLinear layers allowed) as `variant`
    (variants.parse). quantized: the QuantizedLayers of a model whose quantized layers are already plain
    Linear α·t (a loaded ternarize output, quant/artifact.read); found from the model's QuantLinears when None."""
    import json

    import tensorflow as tf

    from ternary_vlm.export import tflite
    from ternary_vlm.export.trace import build_module
    from ternary_vlm.models.decoding import text_model
    from ternary_vlm.runtime import METADATA_KEY

    prefill_len = prefill_len or max(max_len // 2, 1)
    if prefill_len > max_len:
        raise TernaryVLMError(f"prefill_len {prefill_len} exceeds max_len {max_len}")
    model, own = quantized_layers_of(model)
    layers = own + list(quantized or [])
    if variant.scheme is not None:
        if not layers:
            raise TernaryVLMError(f"variant {variant.name} needs a quantized model (a ternarize output); this one "
                                  f"has no quantized layers")
        if any(l.fmt != variant.scheme.format for l in layers):
            raise TernaryVLMError(f"variant {variant.name} needs {variant.scheme.mode} layers, the model has "
                                  f"{sorted({l.fmt for l in layers})}")
    module, functions = build_module(model, max_len, prefill_len)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function() for f in functions], module)
    # Else RMSNorm gains are folded into the next weights, which then stop being α·t.
    converter._experimental_disable_fuse_mul_and_fc = True
    if variant.other == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    content = converter.convert()
    if variant.other != "fp32":
        content, counts = tflite.int8_embeddings(content)
        for key, index in tflite.signature_subgraphs(content).items():
            if key in ("prefill", "decode") and counts[index] != 1:
                raise TernaryVLMError(f"{key}: {counts[index]} float embedding lookups made int8, expected 1")
    text_cfg = text_model(model).cfg
    if variant.kv_cache == "op":
        try:
            content, counts = tflite.kv_cache_attention(content)
        except ValueError as e:  # the converter traced attention in a shape the rewrite does not know
            raise TernaryVLMError(f"{e}; export with kv_cache=variables") from None
        for key, index in tflite.signature_subgraphs(content).items():
            want = text_cfg.num_hidden_layers if key in ("prefill", "decode") else 0
            if counts[index] != want:
                raise TernaryVLMError(f"{key}: {counts[index]} attentions became KVCacheAttention, expected {want}")
        content, counts = tflite.token_major_attention(content)
        for key, index in tflite.signature_subgraphs(content).items():
            want = text_cfg.num_hidden_layers if key in ("prefill", "decode") else 0
            if counts[index] != want:
                raise TernaryVLMError(f"{key}: {counts[index]} KVCacheAttentions read q, k, v token-major, "
                                      f"expected {want}")
    replacements, expected = {}, {}
    if variant.scheme is not None:
        content, counts = tflite.replace_quantized(content, layers, variant.strategy, variant.activations,
                                                   variant.format)
        for key, index in tflite.signature_subgraphs(content).items():
            want = {l.name for l in layers if key in _SIGNATURE_USES[_part(l.name)]}
            got = counts[index]
            replacements[key], expected[key] = sum(got.values()), len(want)
            if set(got) != want or any(n != 1 for n in got.values()):
                missing, extra = sorted(want - set(got)), sorted(set(got) - want)
                raise TernaryVLMError(f"{key}: rewrote {sum(got.values())} FULLY_CONNECTED ops for {len(want)} "
                                      f"quantized layers (not found: {missing[:3]}, unexpected: {extra[:3]})")
        if variant.strategy == "fused":
            content, counts = tflite.fuse_glu(content)
            downs = sum(_part(l.name) == "text" and l.name.endswith("mlp.down_proj") for l in layers)
            for key, index in tflite.signature_subgraphs(content).items():
                want = downs if key in ("prefill", "decode") else 0
                if counts[index] != want:
                    raise TernaryVLMError(f"{key}: {counts[index]} MLPs' silu(gate) · up moved into the down "
                                          f"projection, expected {want}")
            # (A vision tower's LayerNorm is an RMSNorm of the centred x: it may move too, uncounted.)
            content, counts = tflite.fuse_rms_norm(content)
            norms = _fusable_norms({l.name for l in layers if _part(l.name) == "text"})
            for key, index in tflite.signature_subgraphs(content).items():
                want = norms if key in ("prefill", "decode") else counts[index]
                if counts[index] != want:
                    raise TernaryVLMError(f"{key}: {counts[index]} RMSNorms moved into the projections after them, "
                                          f"expected {want}")
            # Projections reading one input (q / k / v, gate / up) become one op; a vision tower's may too, uncounted.
            content, counts = tflite.concat_projections(content)
            groups = _concat_groups({l.name for l in layers if _part(l.name) == "text"})
            for key, index in tflite.signature_subgraphs(content).items():
                want = groups if key in ("prefill", "decode") else counts[index]
                if counts[index] != want:
                    raise TernaryVLMError(f"{key}: {counts[index]} groups of projections reading one input became "
                                          f"one op, expected {want}")
    if variant.int8_weights == "op":  # after the quantized layers: only the other int8 weights are left
        content, counts = tflite.int8_matmuls(content)
        for key, index in tflite.signature_subgraphs(content).items():
            if key in ("prefill", "decode") and counts[index] < 1:
                raise TernaryVLMError(f"{key}: no int8 FULLY_CONNECTED (the LM head) became Int8MatMul")
    if variant.other in ("int4", "int4_b32"):  # after the quantized layers: only the other float weights are left
        content, _ = tflite.int4_weights(content, block=32 if variant.other == "int4_b32" else None)
    meta = {"variant": variant.name, "kv_cache": variant.kv_cache, "xnnpack": variant.xnnpack,
            "max_len": max_len, "prefill_len": prefill_len,
            "hidden_size": text_cfg.hidden_size, "vocab_size": text_cfg.vocab_size,
            "custom_ops": tflite.custom_ops(content)}  # empty: stock LiteRT runs it without our library
    if hasattr(model.cfg, "image_token_id"):
        meta.update(image_token_id=model.cfg.image_token_id, image_seq_len=model.cfg.image_seq_len)
    content = tflite.add_metadata(content, METADATA_KEY, json.dumps(meta).encode())
    return ExportResult(content, replacements, expected)


# Which signatures run which part of the model: each quantized layer must be rewritten exactly once in each.
_SIGNATURE_USES = {"vision": ("encode_image",), "text": ("prefill", "decode")}


def _fusable_norms(names: set[str]) -> int:
    """How many decoder RMSNorms the norm pass moves into our ops: a layer's input norm where q, k and v are all
    quantized layers, its post-attention norm where gate and up are (the final norm feeds the LM head)."""
    layers = {n.rsplit(".", 2)[0] for n in names}
    return sum(all(f"{p}.self_attn.{q}_proj" in names for q in "qkv") +
               all(f"{p}.mlp.{q}_proj" in names for q in ("gate", "up")) for p in layers)


def _concat_groups(names: set[str]) -> int:
    """How many groups of decoder projections the concat pass merges: a layer's quantized q / k / v where at least
    two are, its gate and up where both are."""
    layers = {n.rsplit(".", 2)[0] for n in names}
    return sum((sum(f"{p}.self_attn.{q}_proj" in names for q in "qkv") >= 2) +
               all(f"{p}.mlp.{q}_proj" in names for q in ("gate", "up")) for p in layers)


def _part(layer_name: str) -> str:
    return "vision" if layer_name.startswith(("vision_model.", "connector.")) else "text"


def export_path(path: str, variant: Variant, out: str, max_len: int | None = None,
                prefill_len: int | None = None) -> ExportResult:
    """Loads a checkpoint (directory or GGUF), converts it and writes `out` atomically."""
    from ternary_vlm.checkpoints.loader import load_model
    from ternary_vlm.quant import artifact

    loaded = load_model(path)
    quantized = artifact.read(loaded.model, path) if os.path.isdir(path) else []
    max_len = max_len or min(loaded.text_config.max_position_embeddings, 512)
    result = convert(loaded.model, variant, quantized=quantized, max_len=max_len, prefill_len=prefill_len)
    atomic.write_bytes(out, result.content)
    return result
