"""Flax -> .tflite export: every variant's signatures against the Flax model, custom-op rewrite counts,
the LiteRT-only runtime against the Flax Generator, and one-line errors from the CLI path."""

import os
import tempfile
from collections import Counter

import jax.numpy as jnp
import int8_rows
import numpy as np
from absl.testing import absltest
from flax import nnx

from safetensors.numpy import save_file

from ai_edge_litert import schema_py_generated as schema
from ternary_vlm import atomic, export, runtime
from ternary_vlm.checkpoints import writer
from ternary_vlm.export import tflite
from ternary_vlm.errors import TernaryVLMError
from ternary_vlm.models import layers
from ternary_vlm.models.config import config_from_dict
from ternary_vlm.models.decoding import Generator
from ternary_vlm.models.llama import LlamaDecoder
from ternary_vlm.models.smolvlm import SmolVLM
from ternary_vlm.quant import packing
from ternary_vlm.quant.apply import quantize_model, quantized_layers
from ternary_vlm.quant.layers import QuantLinear
from ternary_vlm.runtime import Runtime, litert

CONFIG = {  # tests/python/train_test.py's tiny SmolVLM: 4 image tokens per 16 px image
    "model_type": "smolvlm", "image_token_id": 30, "scale_factor": 2, "tie_word_embeddings": True,
    "text_config": {"vocab_size": 40, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64},
    "vision_config": {"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
                      "num_attention_heads": 2, "image_size": 16, "patch_size": 4},
}
MAX_LEN, PREFILL_LEN = 24, 12
PROMPT = [1, 30, 30, 30, 30, 5, 7, 9]  # 4 image tokens, then text; prefill pads it to PREFILL_LEN
DECODE_STEPS = 6
# Absolute for the exact-weight variants; relative to max |logit| where int8 rounds the weights. ternary and binary (int8
# activations) are checked op by op against an emulation of their arithmetic instead (test_w2a8_ops_*), and so are
# the stock low-bit variants ternary_int2, int4 and int4_b32 (test_stock_lowbit_variants_*).
TOLERANCE = {"fp32": 1e-4, "ternary_f32": 1e-4, "binary_f32": 1e-4, "int8": 5e-2, "ternary_int8": 5e-2,
             "ternary_unpack_op": 1e-4, "ternary_unpack_builtin": 1e-4}


def spread(model):
    """Init std 0.02 gives logits ~1e-2, where a 1e-4 tolerance proves little: scale up to logits ~O(1)."""
    for _, lin in layers.iter_linears(model):
        lin.weight.set_value(lin.weight[...] * 10)
    for _, emb in layers.iter_linears(model, layers.Embedding):
        emb.weight.set_value(emb.weight[...] * 50)
    return model


def make_model(mode=None, seed=0):
    cfg = config_from_dict(CONFIG)
    model = spread(SmolVLM(cfg, rngs=nnx.Rngs(seed)))
    if mode:
        quantize_model(model, mode, "kmeans", [], cfg.text.num_hidden_layers)
        # Training leaves α free and it may cross zero (it did in 4 rows of the SmolLM2 VLM's vision tower): every
        # third row gets a negative α, which each export must carry as it is α·t (the codes follow α's sign).
        # And row 2 an α under 5e-7 (one row of the binary SmolLM2 VLM's vision tower: 2e-7), where the converter's
        # int8 step stops at its floor and stores fewer than 127 levels.
        for _, q in layers.iter_linears(model, QuantLinear):
            rows = np.arange(q.out_features) % 3 == 1
            scale = jnp.where(jnp.asarray(rows), -q.scale[...], q.scale[...])
            q.scale.set_value(scale.at[2].set(2e-7))
    return model


def pixels(seed=0):
    return np.random.default_rng(seed).normal(size=(1, 3, 16, 16)).astype(np.float32)


def flax_logits(model, tokens):
    """Prefill logits, then one per decode step fed with `tokens`, from the Flax Generator."""
    gen = Generator(model)
    features = gen.image_features(pixels())
    cache = gen.text_model().init_cache(1, MAX_LEN)
    logits, cache = gen.prefill(PROMPT, cache, features)
    out = [np.asarray(logits)]
    for i, token in enumerate(tokens):
        logits, cache = gen.decode(token, len(PROMPT) + i, cache)
        out.append(np.asarray(logits))
    return np.asarray(features), out


def decode_lowbit(model, graph, tensor, types, steps=False):
    """Float weights [N, K] of a stock INT2 / INT4 weight tensor, decoded with numpy from the file's bytes: values
    in two's complement, least-significant first, one stream over the tensor; scales per channel or blockwise.
    steps=True: also each weight's scale [N, K]."""
    bits = types[tensor.type]
    n, k = tensor.shape
    raw = np.asarray(model.buffers[tensor.buffer].data, np.uint8)
    fields = (raw[:, None] >> (bits * np.arange(8 // bits))) & ((1 << bits) - 1)
    values = fields.ravel()[:n * k].astype(np.int64)
    values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values).reshape(n, k)
    q = tensor.quantization
    if q.details is None:
        step = np.repeat(np.asarray(q.scale, np.float64)[:, None], k, axis=1)
    else:
        scales_tensor = graph.tensors[q.details.scales]
        scales = np.frombuffer(np.asarray(model.buffers[scales_tensor.buffer].data, np.uint8).tobytes(), np.float16)
        step = np.repeat(scales.reshape(n, -1).astype(np.float64), q.details.blockSize, axis=1)
    return (values * step, step) if steps else values * step


def stored_codes(q):
    """The codes a file stores for QuantLinear q: α ≥ 0 in every row, so a row with α < 0 holds −t (same α·t)."""
    return q.codes() * np.where(np.asarray(q.scale[...]) < 0, -1, 1).astype(np.int8)[:, None]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def projection_ops(names) -> tuple[int, int]:
    """(ops, groups): how many matmul ops the quantized layers `names` become after the concat pass
    (export/tflite/concat_projections.py merges a layer's q / k / v, and its gate / up), and how many of those ops are
    such merged groups (the ops that read a norm's input)."""
    def key(name):
        prefix, proj = name.rsplit(".", 1)
        return (prefix.rsplit(".", 1)[0], "qkv") if proj in ("q_proj", "k_proj", "v_proj") else \
            (prefix.rsplit(".", 1)[0], "gate_up") if proj in ("gate_proj", "up_proj") else (name,)
    keys = {key(n) for n in names}
    return len(keys), sum(len(k) == 2 for k in keys)


def tflite_logits(path, tokens):
    rt = Runtime(path)
    features = rt.image_features(pixels())
    out = [rt.prefill(PROMPT, features)]
    for i, token in enumerate(tokens):
        out.append(rt.decode(token, len(PROMPT) + i))
    return features, out


class ExportTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.models = {"fp32": make_model(), "int8": make_model(), "ternary_f32": make_model("ternary"),
                      "binary_f32": make_model("binary"), "binary": make_model("binary"),
                      "ternary_int8": make_model("ternary"), "ternary": make_model("ternary"),
                      "ternary_unpack_op": make_model("ternary"), "ternary_unpack_builtin": make_model("ternary"),
                      "ternary_int2": make_model("ternary"), "int4": make_model(), "int4_b32": make_model(),
                      "ternary_t5": make_model("ternary"), "ternary_head4": make_model("ternary")}
        cls.paths, cls.results = {}, {}
        for variant, model in cls.models.items():
            result = export.convert(model, export.parse(variant), max_len=MAX_LEN, prefill_len=PREFILL_LEN)
            cls.paths[variant] = os.path.join(cls.dir, f"{variant}.tflite")
            atomic.write_bytes(cls.paths[variant], result.content)
            cls.results[variant] = result

    def test_signatures_and_decode_logits_match_flax(self):
        rng = np.random.default_rng(0)
        tokens = [int(t) for t in rng.integers(0, 30, DECODE_STEPS)]
        for variant, model in self.models.items():
            if variant not in TOLERANCE:
                continue
            with self.subTest(variant=variant):
                want_features, want = flax_logits(model, tokens)
                got_features, got = tflite_logits(self.paths[variant], tokens)
                self.assertEqual(got_features.shape, (4, 32))
                feature_diff = np.abs(got_features - want_features).max()
                diff = max(np.abs(g - w).max() for g, w in zip(got, want))
                scale = max(np.abs(w).max() for w in want)
                print(f"{variant}: max |logit diff| {diff:.2e} (max |logit| {scale:.2f}) over prefill + "
                      f"{DECODE_STEPS} decode steps, max |image feature diff| {feature_diff:.2e}, "
                      f"{os.path.getsize(self.paths[variant])} bytes")
                bound = TOLERANCE[variant] * (scale if export.parse(variant).other != "fp32" else 1)
                self.assertLessEqual(diff, bound)
                self.assertLessEqual(feature_diff, bound)

    def test_every_quantized_layer_becomes_a_custom_op(self):
        for variant, op in (("ternary_f32", "TernaryMatMul"), ("binary_f32", "BinaryMatMul"),
                            ("ternary_int8", "TernaryMatMul"), ("ternary", "TernaryMatMul"), ("binary", "BinaryMatMul")):
            fast = export.parse(variant).activations == "int8"  # the default exports (export/variants.py)
            model = self.models[variant]
            names = {q.name for _, q in quantized_layers(model)}
            text = {n for n in names if n.startswith("text_model.")}
            result = self.results[variant]
            self.assertEqual(result.replacements, {"encode_image": len(names - text), "prefill": len(text),
                                                   "decode": len(text), "reset": 0})
            content = read(self.paths[variant])
            histograms = tflite.op_histogram(content)
            # Only the tied LM head (the embedding table) stays a matmul of ours not: a FULLY_CONNECTED, or in the
            # default ternary and binary exports our Int8MatMul (export/variants.py), which also run without XNNPACK.
            head = "Int8MatMul" if fast else "FULLY_CONNECTED"
            signature_names = {"encode_image": names - text, "prefill": text, "decode": text, "reset": set()}
            for key, index in tflite.signature_subgraphs(content).items():
                self.assertEqual(histograms[index][op], projection_ops(signature_names[key])[0], key)
                self.assertEqual(histograms[index][head], int(key in ("prefill", "decode")), key)
                self.assertEqual(histograms[index]["FULLY_CONNECTED" if head == "Int8MatMul" else "Int8MatMul"], 0)
            self.assertEqual(Runtime(self.paths[variant]).meta["xnnpack"], not fast)
            self.assert_only_packed_weights(content, model)
            # No tensor the rewrites orphaned stays (the converter's int8 weight tensors carry per-channel scales).
            self.assertEqual(tflite.drop_dead_tensors(tflite.read_model(content)), 0, variant)
            # The fast exports' ops quantize their input rows (cc/tflite/matmul_op.h); the others take it as it is. Each text
            # MLP's down projection also multiplies silu(gate) · up itself (export/tflite/glu.py), and the q / k / v
            # op and the gate / up op normalize their input rows (export/tflite/rms_norm.py, concat_projections.py).
            plain = "activations=int8" if fast else ""
            glu, norm = (",".join(o for o in (plain, extra) if o) for extra in ("glu=silu", "norm=rms"))
            parsed = tflite.read_model(content)
            for key, index in tflite.signature_subgraphs(content).items():
                options = Counter(bytes(o.customOptions if o.customOptions is not None else b"").decode()
                                  for o in parsed.subgraphs[index].operators if tflite.opcode_name(parsed, o) == op)
                text_key = key in ("prefill", "decode")
                downs = sum(n.endswith("mlp.down_proj") for n in text) if text_key else 0
                # (In the vision tower, a LayerNorm is an RMSNorm of the centred x: its readers may take it too.)
                ops, groups = projection_ops(signature_names[key])
                normed = groups if text_key else options[norm]
                self.assertEqual(options, Counter({plain: ops - downs - normed, glu: downs, norm: normed}) - Counter(),
                                 key)
                if text_key:  # no SiLU is left to TFLite's LOGISTIC, and only the final norm's RSQRT
                    self.assertEqual(histograms[index]["LOGISTIC"], 0, key)
                    self.assertEqual(histograms[index]["RSQRT"], 1, key)
                    # attention reads q, k, v token-major: no TRANSPOSE around it (export/tflite/attention_layout.py)
                    self.assertEqual(histograms[index]["TRANSPOSE"], 0, key)
                    attention = [o for o in parsed.subgraphs[index].operators
                                 if tflite.opcode_name(parsed, o) == "KVCacheAttention"]
                    self.assertTrue(attention and all(len(parsed.subgraphs[index].tensors[o.inputs[0]].shape) == 4
                                                      for o in attention), key)

    def test_w2a8_ops_equal_an_emulation_of_their_int8_arithmetic(self):
        for variant in ("ternary", "binary"):
            with self.subTest(variant=variant):
                self.check_w2a8_ops(variant)

    def check_w2a8_ops(self, variant):
        """Every TernaryMatMul / BinaryMatMul of a W2A8 export (ternary, binary), in every signature, on the activations
        it really received: its output equals numpy doing what the op documents (cc/kernels/a8/layout.h,
        int8_rows.py): per row q, s, z in float32, exact integer Σ q·t, then y = s · (Σ q·t - z · Σ t) · α + bias."""
        scheme = export.parse(variant).scheme
        content = read(self.paths[variant])
        parsed = tflite.read_model(content)
        interp = litert.interpreter(model_content=content, preserve_all_tensors=True)
        features = np.zeros((PREFILL_LEN, 32), np.float32)
        features[:4] = interp.get_signature_runner("encode_image")(pixel_values=pixels())["image_features"]
        ids = np.zeros((1, PREFILL_LEN), np.int32)
        ids[0, :len(PROMPT)] = PROMPT
        runs = {"encode_image": None,
                "prefill": lambda r: r(ids=ids, image_features=features, length=np.asarray(len(PROMPT), np.int32)),
                "decode": lambda r: r(token=np.asarray([[7]], np.int32), position=np.asarray(len(PROMPT), np.int32))}
        float_gap = 0.0
        subgraphs = tflite.signature_subgraphs(content)
        for key, index in ((key, subgraphs[key]) for key in runs):  # in the order a conversation runs them
            if runs[key]:
                runs[key](interp.get_signature_runner(key))
            self.check_int8_matmuls(interp, parsed, index, key)
            ops = [o for o in parsed.subgraphs[index].operators
                   if tflite.opcode_name(parsed, o) == scheme.custom_op]
            names = {q.name for _, q in quantized_layers(self.models[variant])}
            text = {n for n in names if n.startswith("text_model.")}
            self.assertEqual(len(ops), projection_ops(text if key != "encode_image" else names - text)[0], key)
            for o in ops:
                x, packed, alpha = (interp.get_tensor(int(i), index) for i in o.inputs[:3])
                bias = interp.get_tensor(int(o.inputs[3]), index) if len(o.inputs) > 3 and o.inputs[3] >= 0 else 0
                y = interp.get_tensor(int(o.outputs[0]), index)
                x = x.reshape(-1, x.shape[-1])
                # glu=silu: the op's input is silu(gate = x) · up, within 2^-20 relative (cc/kernels/glu.h); norm=rms:
                # x / sqrt(mean(x²) + eps) · gamma, within RmsNormBound(K) = (K / 32 + 12) · 2^-24 (rms_norm.h).
                # Emulated here in float64, then rounded to float32 (2^-24 more).
                rho = 0.0
                if b"glu=silu" in bytes(o.customOptions):  # up as input 4, or x = gate | up (concat_projections.py)
                    if len(o.inputs) > 4 and o.inputs[4] >= 0:
                        g, up = x.astype(np.float64), interp.get_tensor(int(o.inputs[4]), index).reshape(x.shape)
                    else:
                        g, up = np.split(x.astype(np.float64), 2, axis=1)
                    x, rho = (g / (1 + np.exp(-g)) * up).astype(np.float32), 2.0**-20 + 2.0**-24
                elif len(o.inputs) == 7:
                    gamma, eps = (interp.get_tensor(int(i), index) for i in o.inputs[5:7])
                    r = 1 / np.sqrt((x.astype(np.float64) ** 2).mean(axis=1, keepdims=True) + float(eps.ravel()[0]))
                    x, rho = (x * r * gamma).astype(np.float32), (x.shape[1] / 32 + 12 + 1) * 2.0**-24
                if scheme.format == packing.TERNARY:  # codes t + 1, least significant first (packing.h)
                    codes = (packed[:, :, None] >> np.array([0, 2, 4, 6], np.uint8)) & 3
                    t = codes.reshape(len(packed), -1).astype(np.int64) - 1
                else:  # one bit a weight, 1 = +1, least significant first
                    t = 2 * np.unpackbits(packed, axis=1, bitorder="little").astype(np.int64) - 1
                t = t[:, :x.shape[1]]
                exact, size, rows = int8_rows.product(x, t)
                want = exact * alpha + bias
                # Σ q·t is exact in both; float32(Σ) is exact (|Σ| ≤ 127·K < 2^24); the op then rounds · s, s · z,
                # · Σt, the difference, · α and + bias, each within 2^-24 of the terms it acts on: 6·2^-24 of their
                # sizes bounds it.
                bound = 6 * 2.0**-24 * (size * alpha + np.abs(bias))
                if rho:
                    # The op's input and this one differ by < 2ρ relative: so do min(x, 0), max(x, 0) and s, and x · inv
                    # and -126.5 - lo · inv by < 253 · 4ρ, so q can round the other way only where x · inv lies that close
                    # to a half (by one: ± s · α · |t| each). z can too, which moves q with it except at the clamps
                    # (|q| = 127); s itself moves the rest by < 2ρ.
                    near = np.abs(np.abs(rows.scaled - np.trunc(rows.scaled)) - 0.5) < 253 * 4 * rho
                    z_near = np.abs(np.abs(rows.shift - np.trunc(rows.shift)) - 0.5) < 253 * 4 * rho
                    near = near | (z_near & (np.abs(rows.q) == 127))
                    bound = bound + (near.astype(np.int64) @ np.abs(t).T) * rows.s * alpha + 2 * rho * np.abs(exact * alpha)
                self.assertTrue(np.all(np.abs(y.reshape(want.shape) - want) <= bound), f"{key}: op {o.outputs[0]}")
                float_gap = max(float_gap, np.abs(y.reshape(want.shape) - (x @ t.T) * alpha - bias).max())
        # The emulation is sharper than float activations would be: the op really rounds its input to int8.
        self.assertGreater(float_gap, 1e-4)

    def check_int8_matmuls(self, interp, parsed, index, key):
        """Every Int8MatMul (the LM head) in a subgraph just run: y = step · s · (Σ q·w - z · Σ w), with q, s, z as the
        W2A8 ops quantize their input (above) and w, step the FULLY_CONNECTED's own int8 weights and per-row steps."""
        ops = [o for o in parsed.subgraphs[index].operators if tflite.opcode_name(parsed, o) == "Int8MatMul"]
        self.assertEqual(len(ops), int(key in ("prefill", "decode")), key)
        for o in ops:
            x, w, step = (interp.get_tensor(int(i), index) for i in o.inputs)
            y = interp.get_tensor(int(o.outputs[0]), index)
            x = x.reshape(-1, x.shape[-1])
            exact, size, _ = int8_rows.product(x, w)
            want = exact * step
            # Exact integer sums (|Σ| ≤ 127·128·K < 2^24: float32(Σ) exact), then five roundings (· s, s · z, · Σw,
            # the difference, · step), each within 2^-24 of the terms it acts on.
            bound = 6 * 2.0**-24 * size * step
            self.assertEqual(y.shape, want.shape)
            self.assertTrue(np.all(np.abs(y - want) <= bound), f"{key}: Int8MatMul {o.outputs[0]}")

    def test_ternary5_format_equals_the_2bit_file_with_a_fifth_fewer_code_bytes(self):
        """ternary_t5: the codes packed 5 per byte (packing.h's ternary5, checked against numpy's base-3 digits);
        the op unpacks them once at load, so every logit equals the 2-bit `ternary` file's exactly."""
        tokens = [3, 1, 4, 1, 5]
        _, want = tflite_logits(self.paths["ternary"], tokens)
        _, got = tflite_logits(self.paths["ternary_t5"], tokens)
        np.testing.assert_array_equal(np.concatenate(got), np.concatenate(want))
        self.assertEqual(self.results["ternary_t5"].replacements, self.results["ternary"].replacements)
        content = read(self.paths["ternary_t5"])
        parsed = tflite.read_model(content)
        buffers = {bytes(b.data) for b in parsed.buffers if b.data is not None}
        for _, q in quantized_layers(self.models["ternary_t5"]):
            codes = stored_codes(q).astype(np.int64)
            padded = np.zeros((codes.shape[0], -(-codes.shape[1] // 5) * 5), np.int64)
            padded[:, :codes.shape[1]] = codes
            digits = ((padded + 1).reshape(len(codes), -1, 5) * 3 ** np.arange(5)).sum(-1).astype(np.uint8)
            # (its own buffer, or rows of one its group shares: export/tflite/concat_projections.py)
            self.assertEqual(sum(b.count(digits.tobytes()) for b in buffers), 1, q.name)
            self.assertEqual(sum(b.count(packing.pack(stored_codes(q), packing.TERNARY).tobytes()) for b in buffers),
                             0, q.name)
        options = {bytes(o.customOptions) for s in parsed.subgraphs for o in s.operators
                   if tflite.opcode_name(parsed, o) == "TernaryMatMul"}
        self.assertEqual(options, {b"activations=int8,format=ternary5", b"activations=int8,format=ternary5,glu=silu",
                                   b"activations=int8,format=ternary5,norm=rms"})
        code_bytes = {v: sum(packing.row_bytes(f, q.in_features) * q.out_features
                             for _, q in quantized_layers(self.models[v]))
                      for v, f in (("ternary", packing.TERNARY), ("ternary_t5", packing.TERNARY5))}
        def tensor_bytes(variant):  # every buffer but the metadata's (which names the variant)
            m = tflite.read_model(read(self.paths[variant]))
            metadata = {entry.buffer for entry in m.metadata or []}
            return sum(len(b.data) for i, b in enumerate(m.buffers) if b.data is not None and i not in metadata)

        data = {v: tensor_bytes(v) for v in code_bytes}
        self.assertEqual(data["ternary"] - data["ternary_t5"], code_bytes["ternary"] - code_bytes["ternary_t5"])
        self.assertLess(os.path.getsize(self.paths["ternary_t5"]), os.path.getsize(self.paths["ternary"]))

    def test_stock_lowbit_variants_run_without_our_library_and_do_their_arithmetic(self):
        """ternary_int2 (the ternary layers as stock INT2 FULLY_CONNECTEDs) and int4 / int4_b32 (every float FC
        weight as stock INT4, per channel / per block of 32): no custom op in the file, a stock interpreter runs
        them, and each low-bit FC in every signature gives x · Wᵀ (+ bias) for the W numpy decodes from the file,
        to the int8 rounding of its activations: TFLite quantizes x to int8 with a step s ≤ max|x| / 127 (per tensor,
        or finer), so |Δy_j| ≤ ‖W_j‖₁ · s / 2, plus float32 rounding. A wrong bit order or scale fails by O(|y|).
        ternary_head4 (our W2A8 ops for the quantized layers, the other float FCs — the LM head — as stock INT4
        blocks of 32) is checked the same way, with our library loaded."""
        types = {schema.TensorType.INT2: 2, schema.TensorType.INT4: 4}
        for variant in ("ternary_int2", "int4", "int4_b32", "ternary_head4"):
            with self.subTest(variant=variant):
                content = read(self.paths[variant])
                stock = variant != "ternary_head4"
                if stock:
                    self.assertEqual(tflite.custom_ops(content), [])
                    self.assertEqual(runtime.read_metadata(content)["custom_ops"], [])
                else:  # every quantized layer is still our op
                    self.assertEqual(self.results[variant].replacements, self.results["ternary"].replacements)
                parsed = tflite.read_model(content)
                interp = litert.interpreter(model_content=content, preserve_all_tensors=True, ops=not stock)
                features = np.zeros((PREFILL_LEN, 32), np.float32)
                features[:4] = interp.get_signature_runner("encode_image")(pixel_values=pixels())["image_features"]
                ids = np.zeros((1, PREFILL_LEN), np.int32)
                ids[0, :len(PROMPT)] = PROMPT
                subgraphs = tflite.signature_subgraphs(content)
                runs = {"encode_image": None, "prefill": lambda r: r(ids=ids, image_features=features,
                                                                     length=np.asarray(len(PROMPT), np.int32)),
                        "decode": lambda r: r(token=np.asarray([[7]], np.int32),
                                              position=np.asarray(len(PROMPT), np.int32))}
                for key in runs:
                    index = subgraphs[key]
                    if runs[key]:
                        runs[key](interp.get_signature_runner(key))
                    graph = parsed.subgraphs[index]
                    fcs = [o for o in graph.operators if tflite.opcode_name(parsed, o) == "FULLY_CONNECTED"]
                    lowbit_fcs = [o for o in fcs if graph.tensors[o.inputs[1]].type in types]
                    if variant == "ternary_int2":  # exactly the quantized layers, with their codes and α
                        self.assertEqual(len(lowbit_fcs), self.results[variant].replacements[key], key)
                    else:  # every FC left (the LM head too)
                        self.assertEqual(len(lowbit_fcs), len(fcs), key)
                        if stock or key != "encode_image":  # (ternary_head4's vision tower is all our ops)
                            self.assertGreater(len(fcs), 0, key)
                        if variant != "int4" and fcs:  # blocks of 32 where K allows: steps vary along a row
                            self.assertTrue(any(graph.tensors[o.inputs[1]].quantization.details is not None
                                                for o in fcs), key)
                    for o in lowbit_fcs:
                        w = decode_lowbit(parsed, graph, graph.tensors[o.inputs[1]], types)
                        x = interp.get_tensor(int(o.inputs[0]), index).reshape(-1, w.shape[1]).astype(np.float64)
                        y = interp.get_tensor(int(o.outputs[0]), index).reshape(len(x), -1)
                        bias = (interp.get_tensor(int(o.inputs[2]), index)
                                if len(o.inputs) > 2 and o.inputs[2] >= 0 else 0)
                        want = x @ w.T + bias
                        bound = np.abs(w).sum(axis=1) * np.abs(x).max() / 127 / 2 + 1e-5 * (np.abs(want) + 1)
                        self.assertTrue(np.all(np.abs(y - want) <= bound), f"{variant} {key} op {o.outputs[0]}")
                if variant != "ternary_int2":  # each INT4 weight is a float weight of the model rounded to its step
                    floats = [np.asarray(lin.weight[...], np.float64) for _, lin in
                              layers.iter_linears(self.models[variant])]
                    floats += [np.asarray(e.weight[...], np.float64) for _, e in
                               layers.iter_linears(self.models[variant], layers.Embedding)]  # the tied LM head
                    for g in parsed.subgraphs:
                        for o in g.operators:
                            if tflite.opcode_name(parsed, o) == "FULLY_CONNECTED":
                                w, step = decode_lowbit(parsed, g, g.tensors[o.inputs[1]], types, steps=True)
                                self.assertTrue(any(f.shape == w.shape and np.all(np.abs(w - f) <= step * 0.5001)
                                                    for f in floats), f"{variant}: FC {o.outputs[0]}")
                else:  # the file holds each layer's exact codes and α
                    decoded = [decode_lowbit(parsed, g, g.tensors[o.inputs[1]], types) for g in parsed.subgraphs
                               for o in g.operators if tflite.opcode_name(parsed, o) == "FULLY_CONNECTED"
                               and g.tensors[o.inputs[1]].type in types]
                    for _, q in quantized_layers(self.models[variant]):
                        want = np.asarray(q.scale[...], np.float32).astype(np.float64)[:, None] * q.codes()
                        self.assertTrue(any(w.shape == want.shape and np.array_equal(w, want) for w in decoded),
                                        q.name)

    def assert_only_packed_weights(self, content, model):
        """No float or int8 copy of a quantized weight is left; each packed matrix is stored once (shared by
        prefill and decode)."""
        buffers = Counter(np.asarray(b.data, np.uint8).tobytes()
                          for b in tflite.read_model(content).buffers if b.data is not None)
        for _, q in quantized_layers(model):
            codes, scale = stored_codes(q), np.abs(np.asarray(q.scale[...], np.float32))
            self.assertNotIn((scale[:, None] * codes).astype(np.float32).tobytes(), buffers, q.name)
            self.assertNotIn((127 * codes).astype(np.int8).tobytes(), buffers, q.name)
            fmt = packing.TERNARY if q.mode == "ternary" else packing.BINARY
            # Its own buffer, or rows of one its group shares (concat_projections.py): once in the file either way.
            packed = packing.pack(codes, fmt).tobytes()
            self.assertEqual(sum(n * b.count(packed) for b, n in buffers.items()), 1, q.name)
            self.assertEqual(sum(n * b.count(scale.tobytes()) for b, n in buffers.items()), 1, q.name)  # |α| ≥ 0

    def test_unpack_strategies_equal_the_fused_op(self):
        """ternary_unpack_op / ternary_unpack_builtin: the same packed bytes (no float copy in the file), unpacked
        in the graph and fed to the builtin FULLY_CONNECTED; logits equal the fused TernaryMatMul's. The
        builtin-only variant runs on a stock interpreter without our library."""
        from ai_edge_litert import interpreter as stock

        tokens = [3, 1, 4, 1, 5]
        _, fused = tflite_logits(self.paths["ternary_f32"], tokens)
        names = {q.name for _, q in quantized_layers(self.models["ternary_f32"])}
        text = {n for n in names if n.startswith("text_model.")}
        want_ops = {"ternary_unpack_op": {"UnpackTernary"}, "ternary_unpack_builtin": {"CAST", "GATHER", "MUL"}}
        for variant, ops in want_ops.items():
            with self.subTest(variant=variant):
                _, got = tflite_logits(self.paths[variant], tokens)
                np.testing.assert_allclose(np.concatenate(got), np.concatenate(fused), rtol=0, atol=1e-5)
                self.assertEqual(self.results[variant].replacements, self.results["ternary_f32"].replacements)
                content = read(self.paths[variant])
                histograms = tflite.op_histogram(content)
                for key, index in tflite.signature_subgraphs(content).items():
                    quantized = len(names - text) if key == "encode_image" else len(text) * (key != "reset")
                    self.assertEqual(histograms[index]["TernaryMatMul"], 0, key)
                    for op in ops:
                        self.assertGreaterEqual(histograms[index][op], quantized, (key, op))
                    lm_head = int(key in ("prefill", "decode"))
                    self.assertEqual(histograms[index]["FULLY_CONNECTED"], quantized + lm_head, key)
                self.assert_only_packed_weights(content, self.models[variant])
        interp = stock.Interpreter(model_path=self.paths["ternary_unpack_builtin"])
        decode = interp.get_signature_runner("decode")
        rt = Runtime(self.paths["ternary_f32"])  # the same weights through our fused op: the reference
        rt.prefill(PROMPT, rt.image_features(pixels()))
        prefill = interp.get_signature_runner("prefill")
        features = np.zeros((PREFILL_LEN, 32), np.float32)
        features[:4] = interp.get_signature_runner("encode_image")(pixel_values=pixels())["image_features"]
        ids = np.zeros((1, PREFILL_LEN), np.int32)
        ids[0, :len(PROMPT)] = PROMPT
        prefill(ids=ids, image_features=features, length=np.asarray(len(PROMPT), np.int32))
        got = decode(token=np.asarray([[7]], np.int32), position=np.asarray(len(PROMPT), np.int32))["logits"]
        np.testing.assert_allclose(got, rt.decode(7, len(PROMPT)), rtol=0, atol=1e-5)

    def test_kv_cache_op_replaces_the_cache_variables(self):
        """kv_cache=op (the default): each layer's cache update + attention is one KVCacheAttention in prefill and
        decode, no resource variable is left in any signature, and the logits equal the stock-ops export's
        (kv_cache=variables). Two interpreters of one file keep separate caches."""
        layers = CONFIG["text_config"]["num_hidden_layers"]
        stock = export.convert(self.models["fp32"], export.parse("fp32/variables"), max_len=MAX_LEN,
                               prefill_len=PREFILL_LEN)
        stock_path = os.path.join(self.dir, "fp32-variables.tflite")
        atomic.write_bytes(stock_path, stock.content)
        variable_ops = ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")
        for path, kv_cache in ((self.paths["fp32"], "op"), (stock_path, "variables")):
            content = read(path)
            histograms = tflite.op_histogram(content)
            for key, index in tflite.signature_subgraphs(content).items():
                text = key in ("prefill", "decode")
                self.assertEqual(histograms[index]["KVCacheAttention"], layers * text * (kv_cache == "op"), key)
                if kv_cache == "op":  # (the vision encoder's attention keeps its BATCH_MATMULs)
                    self.assertEqual([histograms[index][op] for op in variable_ops], [0] * 3, key)
                    self.assertEqual(histograms[index]["BATCH_MATMUL"], 2 * (key == "encode_image"), key)
                elif text:
                    self.assertEqual(histograms[index]["READ_VARIABLE"], 2 * layers, key)
        tokens = [3, 1, 4, 1, 5]
        _, want = tflite_logits(stock_path, tokens)
        _, got = tflite_logits(self.paths["fp32"], tokens)
        np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), rtol=0, atol=1e-5)
        a, b = Runtime(self.paths["fp32"]), Runtime(self.paths["fp32"])
        a.prefill(PROMPT, a.image_features(pixels()))
        b.prefill([2, 9, 9, 4, 4, 8, 1], b.image_features(pixels(1)))  # another conversation in between
        np.testing.assert_allclose(a.decode(tokens[0], len(PROMPT)), want[1], rtol=0, atol=1e-5)
        with self.assertRaisesRegex(TernaryVLMError, "builtin ops only"):
            export.parse("ternary_unpack_builtin", kv_cache="op")
        with self.assertRaisesRegex(TernaryVLMError, "unknown kv_cache 'disk'"):
            export.parse("fp32/disk")

    def test_kv_cache_rewrite_refuses_an_attention_it_does_not_recognise(self):
        """A decode attention traced in another shape (here: softmax beta 0.5) is not rewritten, and since its cache
        variables are then read outside the pattern the rewrite fails rather than leave two caches."""
        stock = export.convert(self.models["fp32"], export.parse("fp32/variables"), max_len=MAX_LEN,
                               prefill_len=PREFILL_LEN)
        model = tflite.read_model(stock.content)
        decode = model.subgraphs[tflite.signature_subgraphs(stock.content)["decode"]]
        for op in decode.operators:
            if tflite.opcode_name(model, op) == "SOFTMAX":
                op.builtinOptions.beta = 0.5
        with self.assertRaisesRegex(ValueError, r"KV cache variable \S+ is read outside the attention pattern"):
            tflite.kv_cache_attention(tflite.write_model(model))

    def test_int8_variants_store_the_tied_embedding_once_in_int8(self):
        vocab, hidden = CONFIG["text_config"]["vocab_size"], CONFIG["text_config"]["hidden_size"]
        for variant in ("int8", "ternary_int8", "ternary", "binary"):
            with self.subTest(variant=variant):
                content = read(self.paths[variant])
                sizes = Counter(len(b.data) for b in tflite.read_model(content).buffers if b.data is not None)
                self.assertEqual(sizes[vocab * hidden * 4], 0)  # no float embedding table
                self.assertEqual(sizes[vocab * hidden], 1)  # one int8 table: lookup and LM head

    def test_runtime_greedy_generation_equals_flax_generator(self):
        for variant in ("fp32", "ternary_f32", "binary_f32"):
            with self.subTest(variant=variant):
                want = list(Generator(self.models[variant]).generate(
                    PROMPT, pixel_values=pixels(), max_new_tokens=10, max_len=MAX_LEN))
                got = list(Runtime(self.paths[variant]).generate(PROMPT, pixel_values=pixels(),
                                                                 max_new_tokens=10))
                self.assertEqual(got, want)
                self.assertLen(got, 10)

    def test_runtime_reuse_and_cache_limit(self):
        rt = Runtime(self.paths["ternary_f32"])
        first = list(rt.generate(PROMPT, pixel_values=pixels(), max_new_tokens=40))
        self.assertLen(first, MAX_LEN - len(PROMPT))  # stops at a full cache
        self.assertEqual(list(rt.generate(PROMPT, pixel_values=pixels(), max_new_tokens=40)), first)
        with self.assertRaisesRegex(TernaryVLMError, "1..12"):
            rt.prefill(list(range(13)))

    def test_text_only_decoder_exports_without_encode_image(self):
        cfg = config_from_dict(CONFIG["text_config"] | {"model_type": "llama", "tie_word_embeddings": True})
        model = spread(LlamaDecoder(cfg, rngs=nnx.Rngs(1)))
        quantize_model(model, "ternary", "kmeans", [], 2)
        result = export.convert(model, export.parse("ternary_f32"), max_len=16, prefill_len=8)
        self.assertEqual(result.replacements, {"prefill": 14, "decode": 14, "reset": 0})
        path = os.path.join(self.dir, "text.tflite")
        atomic.write_bytes(path, result.content)
        want = list(Generator(model).generate([3, 4, 5], max_new_tokens=6, max_len=16))
        self.assertEqual(list(Runtime(path).generate([3, 4, 5], max_new_tokens=6)), want)

    def test_ternarize_output_directory_exports_like_the_model(self):
        """A ternarize OUT/ (α·t in model.safetensors + packed codes and scales in quantized.safetensors)
        through the CLI's path gives the same custom ops and logits as the in-memory quantized model."""
        model = self.models["ternary_f32"]
        names = sorted(q.name for _, q in quantized_layers(model))
        config = dict(CONFIG, quantization_config={"quant_method": "ternary_vlm", "mode": "ternary",
                                                   "format": packing.TERNARY, "init": "kmeans", "layers": names})

        def extras(directory):
            save_file({k: v for _, q in quantized_layers(model) for k, v in (
                (q.name + ".packed", packing.pack(q.codes(), packing.TERNARY)),
                (q.name + ".scale", np.asarray(q.scale[...], np.float32)))},
                os.path.join(directory, "quantized.safetensors"))
        directory, out = os.path.join(self.dir, "tern"), os.path.join(self.dir, "tern.tflite")
        writer.save_directory(model, config, directory, extras)
        result = export.export_path(directory, export.parse("ternary_f32"), out, MAX_LEN, PREFILL_LEN)
        self.assertEqual(result.replacements, self.results["ternary_f32"].replacements)
        tokens = [3, 1, 4]
        want_features, want = tflite_logits(self.paths["ternary_f32"], tokens)
        got_features, got = tflite_logits(out, tokens)
        np.testing.assert_allclose(got_features, want_features, atol=1e-6)
        np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), atol=1e-5)

    def test_float_model_has_no_ternary_variant(self):
        with self.assertRaisesRegex(TernaryVLMError, "needs a quantized model"):
            export.convert(make_model(), export.parse("ternary_f32"), max_len=MAX_LEN)

    def test_bad_inputs_give_one_line_errors(self):
        out = os.path.join(self.dir, "never.tflite")
        for export_it, pattern in (
                (lambda: export.export_path(os.path.join(self.dir, "missing"), export.parse("fp32"), out),
                 "no such file"),
                (lambda: export.export_path(self.dir, export.parse("ternary3"), out), "unknown variant 'ternary3'")):
            with self.assertRaisesRegex(TernaryVLMError, pattern) as e:
                export_it()
            self.assertNotIn("\n", str(e.exception))
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    absltest.main()
