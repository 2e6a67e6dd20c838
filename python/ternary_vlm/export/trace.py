"""Traces a Flax model into a tf.Module with one tf.function per signature (export/exporter.py's docstring),
through the one prefill / decode step pair of models/decoding.py and jax2tf."""

from __future__ import annotations

from ternary_vlm.models.decoding import decode_step, prefill_step, text_model
from ternary_vlm.models.smolvlm import SmolVLM


def build_module(model, max_len: int, prefill_len: int):
    """A tf.Module with weights and KV cache as variables, one tf.function per signature (module docstring)."""
    import functools

    import jax
    import numpy as np
    import tensorflow as tf
    from flax import nnx
    from jax.experimental import jax2tf

    is_vlm = isinstance(model, SmolVLM)
    text = text_model(model)
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
        logits, cache = prefill_step(merge(weights), ids, features, pairs(cache), length)
        return [logits] + flat(cache)

    def jax_decode(weights, token, position, *cache):
        logits, cache = decode_step(merge(weights), token, position, pairs(cache))
        return [logits] + flat(cache)

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
