"""The int8 passes on hand-built models. tflite.int8_embeddings: the float embedding table leaves the file, the
lookup returns int8 rows x their step (numpy reference), and a tied table reuses the LM head's int8 weights.
tflite.int8_matmuls: a one-row int8 FULLY_CONNECTED becomes Int8MatMul on the same weights, computing what its
header says (numpy), and nothing else is touched."""

import int8_rows
import numpy as np
from absl.testing import absltest
from ai_edge_litert import interpreter as stock
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export import tflite
from ternary_vlm.export.tflite import builder
from ternary_vlm.export.tflite.builder import ModelBuilder
from ternary_vlm.quant import packing
from ternary_vlm.runtime import litert

V, D = 50, 12


def embedding_model(table, lm_head_int8=None):
    """ids [1, 3, 1] -> GATHER_ND(table) -> rows [1, 3, D]; optionally also FC(rows, int8 codes) -> logits."""
    b = ModelBuilder()
    ids = b.tensor("ids", [1, 3, 1], np.int32)
    rows = b.tensor("rows", [1, 3, D], np.float32)
    b.op(schema.BuiltinOperator.GATHER_ND, [b.tensor("table", [V, D], np.float32, table), ids], [rows],
         schema.BuiltinOptions.GatherNdOptions, schema.GatherNdOptionsT())
    outputs = [rows]
    if lm_head_int8 is not None:
        codes, steps = lm_head_int8
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = steps.tolist(), [0] * V, 0
        logits = b.tensor("logits", [1, 3, V], np.float32)
        options = schema.FullyConnectedOptionsT()
        options.keepNumDims = True
        b.op(schema.BuiltinOperator.FULLY_CONNECTED, [rows, b.tensor("head", [V, D], np.int8, codes, q), -1],
             [logits], schema.BuiltinOptions.FullyConnectedOptions, options)
        outputs.append(logits)
    return b.build([ids], outputs)


def run(content, ids):
    interp = stock.Interpreter(model_content=content)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], np.asarray(ids, np.int32).reshape(1, 3, 1))
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def float_buffers(content, nbytes):
    return [b for b in tflite.read_model(content).buffers
            if b.data is not None and len(b.data) == nbytes]


class Int8EmbeddingsTest(absltest.TestCase):

    def setUp(self):
        rng = np.random.default_rng(0)
        self.table = (rng.normal(size=(V, D)) * rng.uniform(0.1, 3, size=(V, 1))).astype(np.float32)
        self.steps = (np.abs(self.table).max(axis=1) / 127).astype(np.float32)
        self.codes = np.round(self.table / self.steps[:, None]).astype(np.int8)
        self.ids = [3, 49, 3]

    def test_untied_table_is_quantized_per_row(self):
        content, counts = tflite.int8_embeddings(embedding_model(self.table))
        self.assertEqual(counts, [1])
        self.assertEmpty(float_buffers(content, V * D * 4))  # the float table is gone
        (rows,) = run(content, self.ids)
        want = (self.codes * self.steps[:, None])[self.ids]
        np.testing.assert_allclose(rows[0], want, rtol=1e-6, atol=0)
        self.assertLessEqual(np.abs(rows[0] - self.table[self.ids]).max(), self.steps.max() / 2)

    def test_tied_table_reads_the_lm_head_int8_weights(self):
        original = embedding_model(self.table, (self.codes, self.steps))
        content, counts = tflite.int8_embeddings(original)
        self.assertEqual(counts, [1])
        self.assertEmpty(float_buffers(content, V * D * 4))
        model = tflite.read_model(content)
        int8_buffers = [b for b in model.buffers if b.data is not None and len(b.data) == V * D]
        self.assertLen(int8_buffers, 1)  # one int8 copy, shared by the lookup and the LM head
        rows, logits = run(content, self.ids)
        weights = self.codes * self.steps[:, None]
        np.testing.assert_allclose(rows[0], weights[self.ids], rtol=1e-6, atol=0)
        # The LM head still multiplies by the shared int8 weights (hybrid FC: int8-rounded activations).
        want = rows[0] @ weights.T
        np.testing.assert_allclose(logits[0], want, rtol=0, atol=0.02 * np.abs(want).max())

    def test_other_lookups_are_left_alone(self):
        b = ModelBuilder()  # a GATHER_ND on a runtime tensor (e.g. image features) is not an embedding
        params = b.tensor("params", [V, D], np.float32)
        ids = b.tensor("ids", [1, 3, 1], np.int32)
        out = b.tensor("out", [1, 3, D], np.float32)
        b.op(schema.BuiltinOperator.GATHER_ND, [params, ids], [out], schema.BuiltinOptions.GatherNdOptions,
             schema.GatherNdOptionsT())
        _, counts = tflite.int8_embeddings(b.build([params, ids], [out]))
        self.assertEqual(counts, [0])



class DeadTensorsTest(absltest.TestCase):

    def test_tensors_no_op_names_leave_the_file_and_the_rest_are_renumbered(self):
        """An orphan tensor (as a pass leaves when it replaces an int8 FULLY_CONNECTED: per-channel scales, no op)
        placed between live ones: write_without drops it, renumbers ops and graph outputs, and the model computes
        what it did (stock LiteRT, numpy reference)."""
        rng = np.random.default_rng(3)
        table = rng.normal(size=(V, D)).astype(np.float32)
        b = ModelBuilder()
        ids = b.tensor("ids", [1, 3, 1], np.int32)
        q = schema.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = [0.5] * 1000, [0] * 1000, 0
        b.tensor("orphan", [1000, 4], np.int8, quantization=q)
        rows = b.tensor("rows", [1, 3, D], np.float32)
        b.op(schema.BuiltinOperator.GATHER_ND, [b.tensor("table", [V, D], np.float32, table), ids], [rows],
             schema.BuiltinOptions.GatherNdOptions, schema.GatherNdOptionsT())
        content = b.build([ids], [rows])
        model = tflite.read_model(content)
        pruned = tflite.write_without(model, set())
        graph = tflite.read_model(pruned).subgraphs[0]
        self.assertEqual([t.name for t in graph.tensors], [b"ids", b"rows", b"table"])
        self.assertLess(len(pruned), len(content) - 1000 * 12)  # its 1000 float scales and int64 zero points
        self.assertEqual(tflite.drop_dead_tensors(tflite.read_model(pruned)), 0)
        (got,) = run(pruned, [4, 0, 49])
        np.testing.assert_array_equal(got, table[[4, 0, 49]][None])


class Int8MatMulsTest(absltest.TestCase):

    def setUp(self):
        rng = np.random.default_rng(1)
        self.dense = (rng.normal(size=(300, 70)) * rng.uniform(0.1, 2, size=(300, 1))).astype(np.float32)
        self.x = rng.normal(size=(1, 70)).astype(np.float32) * 3

    def test_one_row_int8_fc_becomes_the_op_on_the_same_weights(self):
        original = builder.fully_connected_model((1, 70), self.dense, int8=True)
        content, counts = tflite.int8_matmuls(original)
        self.assertEqual(counts, [1])
        self.assertEqual(tflite.custom_ops(content), ["Int8MatMul"])
        self.assertEqual(tflite.op_histogram(content)[0]["FULLY_CONNECTED"], 0)
        model = tflite.read_model(content)
        graph = model.subgraphs[0]
        weights = graph.tensors[graph.operators[0].inputs[1]]
        self.assertEqual(weights.type, schema.TensorType.INT8)  # the FC's own int8 tensor, not a copy
        self.assertLen([b for b in model.buffers if b.data is not None and len(b.data) == 300 * 70], 1)
        codes = np.frombuffer(bytes(model.buffers[weights.buffer].data), np.int8).reshape(300, 70).astype(np.int64)
        steps = np.asarray(weights.quantization.scale, np.float32)

        interp = litert.interpreter(model_content=content, xnnpack=False)
        interp.set_tensor(interp.get_input_details()[0]["index"], self.x)
        interp.invoke()
        (y,) = [interp.get_tensor(d["index"]) for d in interp.get_output_details()]
        x = self.x.reshape(1, 70)
        exact, size, rows = int8_rows.product(x, codes)  # as Int8MatMul quantizes its input (a8/layout.h)
        self.assertEqual(y.shape, (1, 300))
        # Exact integer sums, then five roundings (· s, s · z, · Σw, the difference, · step) of at most 2^-24 of
        # the terms they act on.
        self.assertTrue(np.all(np.abs(y - exact * steps) <= 6 * 2.0**-24 * size * steps))
        # And near the float layer: each weight moved by at most half its row's step, each activation by at most
        # half of its row's step s.
        bound = np.abs(x).sum() * steps / 2 + rows.s / 2 * np.abs(codes * steps[:, None]).sum(axis=1)
        self.assertTrue(np.all(np.abs(y - x @ self.dense.T) <= bound * (1 + 1e-5)))

    def test_many_rows_kept_dims_float_weights_and_biases_stay_fully_connected(self):
        for model in (builder.fully_connected_model((4, 70), self.dense, int8=True),  # 4 rows: a GEMM
                      builder.fully_connected_model((1, 1, 70), self.dense, int8=True),  # keeps [1, 1, N]
                      builder.fully_connected_model((1, 70), self.dense),  # float weights
                      builder.fully_connected_model((1, 70), self.dense, bias=np.ones(300, np.float32), int8=True)):
            content, counts = tflite.int8_matmuls(model)
            self.assertEqual(counts, [0])
            self.assertEqual(tflite.custom_ops(content), [])


def mlp_model(x_shape, layers, silu_as_output=False, bias=None, up_first=False):
    """x -> down(silu(gate(x)) · up(x)) as the converter writes a Llama MLP: TernaryMatMul gate and up, LOGISTIC,
    MUL(g, σ), MUL(silu, up), TernaryMatMul down (float32 activations). silu_as_output: the silu tensor is also a
    model output (so the pass must leave it). layers: (codes [N, K], α [N]) of gate, up, down. up_first: the up
    projection's op comes first in the graph."""
    b = ModelBuilder()
    f32 = np.float32
    x = b.tensor("x", x_shape, f32)
    lead = list(x_shape[:-1])

    def matmul(name, inp, codes, alpha, extra=()):
        n = len(alpha)
        packed = packing.pack(codes, packing.TERNARY)
        inputs = [inp, b.tensor(name + ".packed", packed.shape, np.uint8, packed),
                  b.tensor(name + ".scale", [n], f32, alpha)] + list(extra)
        y = b.tensor(name, lead + [n], f32)
        b.op(schema.BuiltinOperator.CUSTOM, inputs, [y], custom_name="TernaryMatMul")
        return y

    (gc, ga), (uc, ua), (dc, da) = layers
    inter = len(ga)
    u = matmul("up", x, uc, ua) if up_first else None
    g = matmul("gate", x, gc, ga)
    sig = b.tensor("sigmoid", lead + [inter], f32)
    b.op(schema.BuiltinOperator.LOGISTIC, [g], [sig])
    silu = b.tensor("silu", lead + [inter], f32)
    b.op(schema.BuiltinOperator.MUL, [g, sig], [silu], schema.BuiltinOptions.MulOptions, schema.MulOptionsT())
    u = matmul("up", x, uc, ua) if u is None else u
    h = b.tensor("h", lead + [inter], f32)
    b.op(schema.BuiltinOperator.MUL, [u, silu], [h], schema.BuiltinOptions.MulOptions, schema.MulOptionsT())
    extra = [b.tensor("bias", [len(da)], f32, bias)] if bias is not None else []
    y = matmul("down", h, dc, da, extra)
    return b.build([x], [y, silu] if silu_as_output else [y])


def run_all(content, x):
    interp = litert.interpreter(model_content=content, xnnpack=False)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]


def glu_case():
    """(layers, x) of a small MLP: gate and up 40 -> 96, down 96 -> 40; x [1, 5, 40]."""
    rng = np.random.default_rng(4)
    hid, inter = 40, 96
    layers = [(rng.integers(-1, 2, size=(n, k)).astype(np.int8), rng.uniform(0.05, 0.2, n).astype(np.float32))
              for n, k in ((inter, hid), (inter, hid), (hid, inter))]
    return layers, rng.normal(size=(1, 5, hid)).astype(np.float32)


class FuseGluTest(absltest.TestCase):

    def setUp(self):
        self.layers, self.x = glu_case()

    def test_the_mlp_becomes_three_matmuls_and_computes_the_same(self):
        for bias in (None, np.linspace(-1, 1, 40).astype(np.float32)):
            original = mlp_model((1, 5, 40), self.layers, bias=bias)
            content, counts = tflite.fuse_glu(original)
            self.assertEqual(counts, [1])
            self.assertEqual(tflite.op_histogram(content)[0], {"TernaryMatMul": 3})
            model = tflite.read_model(content)
            down = model.subgraphs[0].operators[-1]
            self.assertEqual(bytes(down.customOptions), b"glu=silu")
            self.assertEqual(list(down.inputs)[3] >= 0, bias is not None)
            (want,), (got,) = run_all(original, self.x), run_all(content, self.x)
            # The same products; only silu(g) · up is computed differently (cc/kernels/glu.h: 2^-20 relative, against
            # TFLite's LOGISTIC then two MULs): bounded by 2^-19 of Σ |h| · α over each output's inputs.
            (gc, ga), (uc, ua), (dc, da) = self.layers
            x = self.x.reshape(5, 40).astype(np.float64)
            g, u = x @ gc.T * ga, x @ uc.T * ua
            h = g / (1 + np.exp(-g)) * u
            bound = 2.0**-19 * (np.abs(h) @ np.abs(dc.T)) * da + 1e-6
            self.assertTrue(np.all(np.abs(got - want).reshape(5, 40) <= bound))
            np.testing.assert_allclose(got.reshape(5, 40), h @ dc.T * da + (0 if bias is None else bias),
                                       rtol=1e-4, atol=1e-5)

    def test_a_silu_read_elsewhere_stays(self):
        content, counts = tflite.fuse_glu(mlp_model((1, 5, 40), self.layers, silu_as_output=True))
        self.assertEqual(counts, [0])
        self.assertEqual(tflite.op_histogram(content)[0]["LOGISTIC"], 1)


def norm_model(x_shape, gamma, layers, eps=1e-5, normed_as_output=False):
    """x -> RMSNorm -> TernaryMatMul for each of `layers` ((codes, α)), the ops as the converter writes a Llama
    RMSNorm of a prefill (SUM without keep_dims, then RESHAPE)."""
    b = ModelBuilder()
    f32, B = np.float32, schema.BuiltinOperator
    k, lead = x_shape[-1], list(x_shape[:-1])
    x = b.tensor("x", x_shape, f32)

    def binary(builtin, a, c, shape, name):
        out = b.tensor(name, shape, f32)
        options = schema.MulOptionsT() if builtin == B.MUL else schema.AddOptionsT()
        kind = schema.BuiltinOptions.MulOptions if builtin == B.MUL else schema.BuiltinOptions.AddOptions
        b.op(builtin, [a, c], [out], kind, options)
        return out

    square = binary(B.MUL, x, x, x_shape, "square")
    total = b.tensor("total", lead, f32)
    reducer = schema.ReducerOptionsT()
    reducer.keepDims = False
    b.op(B.SUM, [square, b.tensor("axis", [1], np.int32, np.array([len(x_shape) - 1], np.int32))], [total],
         schema.BuiltinOptions.ReducerOptions, reducer)
    mean = binary(B.MUL, total, b.tensor("inv_k", [1], f32, np.float32([1 / k])), lead, "mean")
    shifted = binary(B.ADD, mean, b.tensor("eps", [1], f32, np.float32([eps])), lead, "shifted")
    shaped = b.tensor("shaped", lead + [1], f32)
    reshape = schema.ReshapeOptionsT()
    reshape.newShape = lead + [1]
    b.op(B.RESHAPE, [shifted, b.tensor("shape", [len(x_shape)], np.int32, np.array(lead + [1], np.int32))], [shaped],
         schema.BuiltinOptions.ReshapeOptions, reshape)
    r = b.tensor("r", lead + [1], f32)
    b.op(B.RSQRT, [shaped], [r])
    normed = binary(B.MUL, x, r, x_shape, "normed")
    scaled = binary(B.MUL, normed, b.tensor("gamma", [1] * len(lead) + [k], f32, gamma.reshape([1] * len(lead) + [k])),
                    x_shape, "scaled")
    outputs = []
    for i, (codes, alpha) in enumerate(layers):
        packed = packing.pack(codes, packing.TERNARY)
        y = b.tensor(f"y{i}", lead + [len(alpha)], f32)
        b.op(B.CUSTOM, [scaled, b.tensor(f"p{i}", packed.shape, np.uint8, packed), b.tensor(f"a{i}", [len(alpha)], f32, alpha)],
             [y], custom_name="TernaryMatMul", custom_options=b"activations=int8")
        outputs.append(y)
    return b.build([x], outputs + ([scaled] if normed_as_output else []))


def norm_case():
    """(gamma, layers, x) of an RMSNorm read by two projections 40 -> 48 and 40 -> 16; x [1, 5, 40]."""
    rng = np.random.default_rng(6)
    layers = [(rng.integers(-1, 2, size=(n, 40)).astype(np.int8), rng.uniform(0.05, 0.2, n).astype(np.float32))
              for n in (48, 16)]
    gamma = rng.uniform(0.5, 1.5, 40).astype(np.float32)
    return gamma, layers, (rng.normal(size=(1, 5, 40)) * 3).astype(np.float32)


class FuseRmsNormTest(absltest.TestCase):

    def setUp(self):
        self.gamma, self.layers, self.x = norm_case()

    def test_the_norm_moves_into_every_projection_that_reads_it(self):
        original = norm_model((1, 5, 40), self.gamma, self.layers)
        content, counts = tflite.fuse_rms_norm(original)
        self.assertEqual(counts, [1])
        self.assertEqual(tflite.op_histogram(content)[0], {"TernaryMatMul": 2})
        model = tflite.read_model(content)
        for op in model.subgraphs[0].operators:
            self.assertEqual(bytes(op.customOptions), b"activations=int8,norm=rms")
            self.assertEqual(list(op.inputs)[3:5], [-1, -1])
        got, want = run_all(content, self.x), run_all(original, self.x)
        # Against the definition in float64: each op quantizes its normalized rows to int8 (half a step per input at
        # most: (max - min) / 506 <= max|x̂| / 253, cc/kernels/a8/layout.h), which bounds both the fused op and the
        # unfused graph.
        x = self.x.reshape(5, 40).astype(np.float64)
        h = x / np.sqrt((x**2).mean(axis=1, keepdims=True) + 1e-5) * self.gamma
        for (codes, alpha), g, w in zip(self.layers, got, want):
            exact = h @ codes.T * alpha
            bound = (np.abs(h).max(axis=1, keepdims=True) / 253) * (np.abs(codes).sum(axis=1) * alpha) * (1 + 1e-5) + 1e-6
            self.assertTrue(np.all(np.abs(g.reshape(5, -1) - exact) <= bound))
            self.assertTrue(np.all(np.abs(w.reshape(5, -1) - exact) <= bound))

    def test_a_norm_read_elsewhere_stays(self):
        content, counts = tflite.fuse_rms_norm(norm_model((1, 5, 40), self.gamma, self.layers, normed_as_output=True))
        self.assertEqual(counts, [0])
        self.assertEqual(tflite.op_histogram(content)[0]["RSQRT"], 1)


def buffer_bytes(content) -> int:
    return sum(len(b.data) for b in tflite.read_model(content).buffers if b.data is not None)


class ConcatProjectionsTest(absltest.TestCase):

    def test_projections_of_one_norm_become_one_op_with_the_same_outputs(self):
        gamma, layers, x = norm_case()
        fused, _ = tflite.fuse_rms_norm(norm_model((1, 5, 40), gamma, layers))
        content, counts = tflite.concat_projections(fused)
        self.assertEqual(counts, [1])
        self.assertEqual(tflite.op_histogram(content)[0], {"TernaryMatMul": 1, "SPLIT_V": 1})
        op = tflite.read_model(content).subgraphs[0].operators[0]
        self.assertEqual(bytes(op.customOptions), b"activations=int8,norm=rms")
        # Every output row depends on its own weight row only, and the input rows are quantized the same way.
        for got, want in zip(run_all(content, x), run_all(fused, x)):
            np.testing.assert_array_equal(got, want)
        # One copy of the weights: the two packed matrices and scales replaced by their concatenation, plus
        # SPLIT_V's sizes (2 int32) and axis (1 int32).
        self.assertEqual(buffer_bytes(content), buffer_bytes(fused) + 12)

    def test_gate_and_up_feed_the_down_projection_as_one_tensor(self):
        layers, x = glu_case()
        for up_first in (False, True):
            for bias in (None, np.linspace(-1, 1, 40).astype(np.float32)):
                fused, _ = tflite.fuse_glu(mlp_model((1, 5, 40), layers, bias=bias, up_first=up_first))
                content, counts = tflite.concat_projections(fused)
                self.assertEqual(counts, [1])
                self.assertEqual(tflite.op_histogram(content)[0], {"TernaryMatMul": 2})
                sub = tflite.read_model(content).subgraphs[0]
                both, down = sub.operators
                self.assertEqual(list(sub.tensors[both.outputs[0]].shape), [1, 5, 2 * 96])
                self.assertEqual(list(down.inputs)[0], both.outputs[0])
                self.assertEqual(len(down.inputs), 4)
                (got,), (want,) = run_all(content, x), run_all(fused, x)
                np.testing.assert_array_equal(got, want)  # gate rows first, then up, whatever the graph's order

    def test_projections_reading_one_input_differently_stay_apart(self):
        gamma, layers, _ = norm_case()
        fused, _ = tflite.fuse_rms_norm(norm_model((1, 5, 40), gamma, layers))
        model = tflite.read_model(fused)
        model.subgraphs[0].operators[1].customOptions = list(b"activations=float32,norm=rms")
        content, counts = tflite.concat_projections(tflite.write_model(model))
        self.assertEqual(counts, [0])
        self.assertEqual(tflite.op_histogram(content)[0], {"TernaryMatMul": 2})


if __name__ == "__main__":
    absltest.main()
