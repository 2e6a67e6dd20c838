"""Export a Flax model (float SmolVLM / Llama, or a ternarize output) to one .tflite file.

  tools/bazel run //python:export -- --model=DIR --variant=ternary --out=model.tflite   (export_cli.py)

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
             (tflite_rewrite.kv_cache_attention; cc/tflite/attention_op.h)
  variables  stock TFLite: resource variables read, dynamic-update-sliced and re-assigned at every step, and
             attention over all max_len positions with a mask (ternary_unpack_builtin always uses this: it
             promises builtin ops only)
Padding cannot corrupt the cache: prefill writes slots 0..P-1, but slot i >= length is only ever attended to
after decode(position=i) has overwritten it (attention masks keys beyond the query position). So a new
conversation needs no reset(); with kv_cache=variables reset() zeroes the cache anyway (memory hygiene).

Variants: fp32; int8 (TFLite's dynamic-range int8 weights); ternary / binary (the model's quantized layers
become TernaryMatMul / BinaryMatMul with packed weights, everything else fp32); ternary_int8 / binary_int8 (those
custom ops + dynamic-range int8 for the remaining float weights). In the int8 variants the embedding lookup reads
int8 rows too — for a tied LM head its int8 weights, so the table is stored once (tflite_rewrite.int8_embeddings);
ternary_a8 (ternary_int8 whose TernaryMatMuls also quantize their input rows to int8: W2A8, as BitNet b1.58 and
bitnet.cpp run ternary models and as the int8 variants' FULLY_CONNECTEDs already do, so every matmul of the model
takes int8 activations); ternary_unpack_op / ternary_unpack_builtin (the same packed ternary weights, unpacked to
float at every invoke by our UnpackTernary op or by builtin ops only, then multiplied by the builtin
FULLY_CONNECTED; see tflite_rewrite.py: the operator-strategy comparison).
"""

from __future__ import annotations

import dataclasses
import os


from ternary_vlm import atomic
from ternary_vlm.errors import TernaryVLMError

VARIANTS = ("fp32", "int8", "ternary", "binary", "ternary_int8", "binary_int8", "ternary_a8", "ternary_unpack_op",
            "ternary_unpack_builtin")
INT8_VARIANTS = ("int8", "ternary_int8", "binary_int8", "ternary_a8")
KV_CACHES = ("op", "variables")



@dataclasses.dataclass
class ExportResult:
    content: bytes
    replacements: dict  # signature -> number of quantized FULLY_CONNECTED rewritten
    expected: dict      # signature -> number of quantized layers it uses


def variant_strategy(variant: str) -> str:
    """How a quantized variant executes its packed layers (tflite_rewrite.STRATEGIES)."""
    return {"ternary_unpack_op": "unpack_op", "ternary_unpack_builtin": "unpack_builtin"}.get(variant, "fused")


def variant_activations(variant: str) -> str:
    """What a variant's TernaryMatMul / BinaryMatMul ops do with their input (tflite_model.ACTIVATIONS)."""
    return "int8" if variant == "ternary_a8" else "float32"


def default_kv_cache(variant: str) -> str:
    """The KV cache a variant gets unless asked otherwise (module docstring)."""
    return "variables" if variant == "ternary_unpack_builtin" else "op"


def variant_format(variant: str):
    """The packing format of a variant's custom ops, or None for fp32 / int8."""
    from ternary_vlm import packing
    if variant not in VARIANTS:
        raise TernaryVLMError(f"unknown variant {variant!r} (known: {', '.join(VARIANTS)})")
    if variant.startswith("ternary"):
        return packing.TERNARY
    if variant.startswith("binary"):
        return packing.BINARY
    return None


def quantized_layers_of(model):
    """QuantLinear layers -> (float twin with Linear weights α·t, [QuantizedLayer]). The twin is what gets
    traced: the converter sees plain FULLY_CONNECTEDs whose weights the rewrite then recognises."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from ternary_vlm import packing
    from ternary_vlm.models import layers
    from ternary_vlm.quant.layers import QuantLinear
    from ternary_vlm.tflite_rewrite import QuantizedLayer

    model = nnx.clone(model)
    found = []
    for path, q in list(layers.iter_linears(model, QuantLinear)):
        codes, scale = q.codes(), np.asarray(q.scale[...], np.float32)
        fmt = packing.TERNARY if q.mode == "ternary" else packing.BINARY
        lin = layers.Linear(q.in_features, q.out_features, use_bias=q.bias is not None, rngs=nnx.Rngs(0),
                            name=q.name)
        lin.weight = nnx.Param(jnp.asarray(scale[:, None] * codes.astype(np.float32)))
        if q.bias is not None:
            lin.bias = nnx.Param(jnp.asarray(q.bias[...], jnp.float32))
        layers.set_submodule(model, path, lin)
        found.append(QuantizedLayer(q.name or ".".join(map(str, path)), codes, scale, packing.pack(codes, fmt),
                                    fmt))
    return model, found


def quantized_layers_from_directory(model, directory: str):
    """The layers listed in a ternarize output's quantized.safetensors, checked against the loaded α·t."""
    import json

    import numpy as np
    from safetensors.numpy import load_file

    from ternary_vlm import packing
    from ternary_vlm.models import layers
    from ternary_vlm.tflite_rewrite import QuantizedLayer

    path = os.path.join(directory, "quantized.safetensors")
    if not os.path.exists(path):
        return []
    with open(os.path.join(directory, "config.json")) as f:
        qconfig = json.load(f).get("quantization_config") or {}
    fmt = qconfig.get("format")
    if fmt not in packing.FORMATS:
        raise TernaryVLMError(f"{directory}/config.json: quantization_config.format {fmt!r} is not a known "
                              f"packing format ({', '.join(packing.FORMATS)})")
    tensors = load_file(path)
    linears = {(lin.name or ".".join(map(str, p))): lin for p, lin in layers.iter_linears(model)}
    found = []
    for name in qconfig.get("layers", []):
        if name not in linears or name + ".packed" not in tensors or name + ".scale" not in tensors:
            raise TernaryVLMError(f"{path}: quantized layer {name!r} is missing from the model or the file")
        w = np.asarray(linears[name].weight[...], np.float32)
        try:
            codes = packing.unpack(tensors[name + ".packed"], w.shape[1], fmt)
        except ValueError as e:
            raise TernaryVLMError(f"{path}: {name}: {e}") from None
        layer = QuantizedLayer(name, codes, tensors[name + ".scale"].astype(np.float32),
                               tensors[name + ".packed"], fmt)
        if codes.shape != w.shape or not np.array_equal(layer.dequantized(), w):
            raise TernaryVLMError(f"{path}: {name}: packed codes x scale differ from the weights in "
                                  f"model.safetensors")
        found.append(layer)
    return found


def _text(model):
    from ternary_vlm.models.smolvlm import SmolVLM
    return model.text_model if isinstance(model, SmolVLM) else model


def build_module(model, max_len: int, prefill_len: int):
    """A tf.Module with weights and KV cache as variables, one tf.function per signature (module docstring)."""
    import functools

    import jax
    import jax.numpy as jnp
    import numpy as np
    import tensorflow as tf
    from flax import nnx
    from jax.experimental import jax2tf

    from ternary_vlm.models.smolvlm import SmolVLM

    is_vlm = isinstance(model, SmolVLM)
    text = _text(model)
    cfg = text.cfg
    # The weights are arguments of the jax2tf functions, fed from one set of variables: closed over, each
    # XlaCallModule would embed its own copy in its serialized StableHLO, and the converter would copy those
    # many times over (>22 GB for a 135M-parameter model). The converter freezes the never-assigned
    # variables into constants, one buffer per weight shared by all signatures.
    graphdef, state = nnx.split(model)
    weights, treedef = jax.tree.flatten(state)
    cache_shapes = [a.shape for pair in text.init_cache(1, max_len) for a in pair]

    def pairs(flat):
        return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))

    def flat(cache):
        return [a for pair in cache for a in pair]

    def merge(weights):
        return nnx.merge(graphdef, jax.tree.unflatten(treedef, weights))

    def jax_prefill(weights, ids, features, length, *cache):
        m = merge(weights)
        valid = jnp.arange(ids.shape[1]) < length
        if is_vlm:  # padding must not be taken for image tokens
            pad = 0 if m.cfg.image_token_id != 0 else 1
            ids = jnp.where(valid[None, :], ids, pad)
            embeds = m.embed(ids, features)
        else:
            embeds = m.embed(jnp.where(valid[None, :], ids, 0))
        h, cache = _text(m).hidden_states(embeds, pairs(cache), 0)
        last = jax.lax.dynamic_slice_in_dim(h, length - 1, 1, axis=1)
        return [_text(m).logits(last)[:, 0]] + flat(cache)

    def jax_decode(weights, token, position, *cache):
        m = merge(weights)
        h, cache = _text(m).hidden_states(_text(m).embed(token), pairs(cache), position)
        return [_text(m).logits(h[:, -1])] + flat(cache)

    def jax_features(weights, pixel_values):
        return merge(weights).image_features(pixel_values)

    module = tf.Module()
    module.weights = [tf.Variable(np.asarray(w), trainable=False, name=f"weight_{i}")
                      for i, w in enumerate(weights)]
    module.cache = [tf.Variable(tf.zeros(s, tf.float32), trainable=False, name=f"kv_cache_{i}")
                    for i, s in enumerate(cache_shapes)]

    convert = lambda f: functools.partial(jax2tf.convert(f, with_gradient=False), module.weights)  # noqa: E731
    tf_decode = convert(jax_decode)
    if is_vlm:
        tf_prefill = convert(jax_prefill)
    else:
        tf_prefill_text = convert(lambda w, ids, length, *cache: jax_prefill(w, ids, None, length, *cache))

    def update(outputs):
        for var, value in zip(module.cache, outputs[1:]):
            var.assign(value)
        return {"logits": outputs[0]}

    def signature(*specs):
        return tf.function(input_signature=list(specs), autograph=False)  # autograph cannot parse jax2tf

    functions = []
    if is_vlm:
        vcfg = model.cfg.vision
        tf_features = convert(jax_features)

        @signature(tf.TensorSpec([1, vcfg.num_channels, vcfg.image_size, vcfg.image_size], tf.float32,
                                 name="pixel_values"))
        def encode_image(pixel_values):
            return {"image_features": tf_features(pixel_values)}

        @signature(tf.TensorSpec([1, prefill_len], tf.int32, name="ids"),
                   tf.TensorSpec([prefill_len, cfg.hidden_size], tf.float32, name="image_features"),
                   tf.TensorSpec([], tf.int32, name="length"))
        def prefill(ids, image_features, length):
            return update(tf_prefill(ids, image_features, length, *[v.read_value() for v in module.cache]))
        functions.append(encode_image)
    else:
        @signature(tf.TensorSpec([1, prefill_len], tf.int32, name="ids"),
                   tf.TensorSpec([], tf.int32, name="length"))
        def prefill(ids, length):
            return update(tf_prefill_text(ids, length, *[v.read_value() for v in module.cache]))

    @signature(tf.TensorSpec([1, 1], tf.int32, name="token"), tf.TensorSpec([], tf.int32, name="position"))
    def decode(token, position):
        return update(tf_decode(token, position, *[v.read_value() for v in module.cache]))

    @signature()
    def reset():
        for var in module.cache:
            var.assign(tf.zeros_like(var))
        return {"done": tf.constant(0, tf.int32)}

    functions += [prefill, decode, reset]
    return module, functions


def convert(model, *, variant: str = "fp32", quantized=None, max_len: int = 64,
            prefill_len: int | None = None, kv_cache: str | None = None) -> ExportResult:
    """The .tflite bytes of `model` (SmolVLM or LlamaDecoder; QuantLinear layers allowed).

    kv_cache: "op" or "variables" (module docstring); default_kv_cache(variant) when None.
    quantized: the QuantizedLayers of a model whose quantized layers are already plain Linear α·t (a loaded
    ternarize output); found from the model's QuantLinears when None."""
    import json

    import tensorflow as tf

    from ternary_vlm import tflite_rewrite
    from ternary_vlm.runtime import METADATA_KEY

    fmt = variant_format(variant)
    kv_cache = kv_cache or default_kv_cache(variant)
    if kv_cache not in KV_CACHES:
        raise TernaryVLMError(f"unknown kv_cache {kv_cache!r} (known: {', '.join(KV_CACHES)})")
    if kv_cache == "op" and variant == "ternary_unpack_builtin":
        raise TernaryVLMError("ternary_unpack_builtin uses builtin ops only: it needs kv_cache=variables")
    prefill_len = prefill_len or max(max_len // 2, 1)
    if prefill_len > max_len:
        raise TernaryVLMError(f"prefill_len {prefill_len} exceeds max_len {max_len}")
    model, own = quantized_layers_of(model)
    layers = own + list(quantized or [])
    if fmt is not None:
        if not layers:
            raise TernaryVLMError(f"variant {variant} needs a quantized model (a ternarize output); this one has "
                                  f"no quantized layers")
        if any(l.fmt != fmt for l in layers):
            raise TernaryVLMError(f"variant {variant} needs {fmt} layers, the model has "
                                  f"{sorted({l.fmt for l in layers})}")
    module, functions = build_module(model, max_len, prefill_len)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function() for f in functions], module)
    # Else RMSNorm gains are folded into the next weights, which then stop being α·t.
    converter._experimental_disable_fuse_mul_and_fc = True
    if variant in INT8_VARIANTS:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    content = converter.convert()
    if variant in INT8_VARIANTS:
        content, counts = tflite_rewrite.int8_embeddings(content)
        for key, index in tflite_rewrite.signature_subgraphs(content).items():
            if key in ("prefill", "decode") and counts[index] != 1:
                raise TernaryVLMError(f"{key}: {counts[index]} float embedding lookups made int8, expected 1")
    text_cfg = _text(model).cfg
    if kv_cache == "op":
        try:
            content, counts = tflite_rewrite.kv_cache_attention(content)
        except ValueError as e:  # the converter traced attention in a shape the rewrite does not know
            raise TernaryVLMError(f"{e}; export with kv_cache=variables") from None
        for key, index in tflite_rewrite.signature_subgraphs(content).items():
            want = text_cfg.num_hidden_layers if key in ("prefill", "decode") else 0
            if counts[index] != want:
                raise TernaryVLMError(f"{key}: {counts[index]} attentions became KVCacheAttention, expected {want}")
    meta = {"variant": variant, "kv_cache": kv_cache, "max_len": max_len, "prefill_len": prefill_len,
            "hidden_size": text_cfg.hidden_size, "vocab_size": text_cfg.vocab_size}
    if hasattr(model.cfg, "image_token_id"):
        meta.update(image_token_id=model.cfg.image_token_id, image_seq_len=model.cfg.image_seq_len)
    content = tflite_rewrite.add_metadata(content, METADATA_KEY, json.dumps(meta).encode())
    if fmt is None:
        return ExportResult(content, {}, {})

    content, counts = tflite_rewrite.replace_quantized(content, layers, variant_strategy(variant),
                                                       variant_activations(variant))
    subgraphs = tflite_rewrite.signature_subgraphs(content)
    replacements, expected = {}, {}
    for key, index in subgraphs.items():
        want = {l.name for l in layers if key in _SIGNATURE_USES[_part(l.name)]}
        got = counts[index]
        replacements[key], expected[key] = sum(got.values()), len(want)
        if set(got) != want or any(n != 1 for n in got.values()):
            missing, extra = sorted(want - set(got)), sorted(set(got) - want)
            raise TernaryVLMError(f"{key}: rewrote {sum(got.values())} FULLY_CONNECTED ops for {len(want)} "
                                  f"quantized layers (not found: {missing[:3]}, unexpected: {extra[:3]})")
    return ExportResult(content, replacements, expected)


# Which signatures run which part of the model: each quantized layer must be rewritten exactly once in each.
_SIGNATURE_USES = {"vision": ("encode_image",), "text": ("prefill", "decode")}


def _part(layer_name: str) -> str:
    return "vision" if layer_name.startswith(("vision_model.", "connector.")) else "text"


def export_path(path: str, variant: str, out: str, max_len: int | None = None,
                prefill_len: int | None = None, kv_cache: str | None = None) -> ExportResult:
    """Loads a checkpoint (directory or GGUF), converts it and writes `out` atomically."""
    variant_format(variant)  # unknown variants fail before the (slow) load
    from ternary_vlm.convert import load_model

    loaded = load_model(path)
    quantized = quantized_layers_from_directory(loaded.model, path) if os.path.isdir(path) else []
    max_len = max_len or min(loaded.text_config.max_position_embeddings, 512)
    result = convert(loaded.model, variant=variant, quantized=quantized, max_len=max_len,
                     prefill_len=prefill_len, kv_cache=kv_cache)
    atomic.write_bytes(out, result.content)
    return result
