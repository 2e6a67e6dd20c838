"""TernaryMatMul / BinaryMatMul in stock LiteRT (through the delegate plugin) against numpy."""

import itertools
import threading

import int8_rows
import numpy as np
from absl.testing import absltest, parameterized

from ternary_vlm.runtime import litert
from ternary_vlm.quant import packing
from ternary_vlm.export.tflite import builder


def random_layer(rng, fmt, n, k, with_bias):
    alphabet = [-1, 0, 1] if fmt == packing.TERNARY else [-1, 1]
    w = rng.choice(alphabet, size=(n, k)).astype(np.int8)
    scale = rng.uniform(0.01, 0.1, n).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32) if with_bias else None
    return w, scale, bias


def numpy_matmul(x, w, scale, bias):
    y = (x.astype(np.float64) @ w.T.astype(np.float64)) * scale
    return y + bias if bias is not None else y


def run(model, x, num_threads=1):
    interp = litert.interpreter(model_content=model, num_threads=num_threads)
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


class MatMulOpsTest(parameterized.TestCase):

    @parameterized.product(fmt=[packing.TERNARY, packing.BINARY], m=[1, 3, 17], threads=[1, 2])
    def test_matches_numpy_on_ragged_shapes(self, fmt, m, threads):
        rng = np.random.default_rng(m * 7 + threads)
        for k, n, with_bias in itertools.product([5, 33, 100, 577], [1, 7, 67], [False, True]):
            w, scale, bias = random_layer(rng, fmt, n, k, with_bias)
            x = rng.normal(size=(m, k)).astype(np.float32)
            model = builder.quantized_matmul_model(fmt, x.shape, packing.pack(w, fmt), scale, bias)
            y = run(model, x, threads)
            want = numpy_matmul(x, w, scale, bias)
            self.assertEqual(y.shape, (m, n))
            err = np.abs(y - want).max() / max(np.abs(want).max(), 1e-6)
            self.assertLessEqual(err, 1e-5, f"{fmt} m={m} k={k} n={n} bias={with_bias}")

    @parameterized.product(fmt=[packing.TERNARY, packing.BINARY], threads=[1, 2])
    def test_int8_activations_quantize_each_row_then_multiply_exactly(self, fmt, threads):
        rng = np.random.default_rng(threads)
        for m, k, n in [(1, 577, 67), (3, 100, 7), (17, 33, 130)]:
            w, scale, bias = random_layer(rng, fmt, n, k, True)
            x = rng.normal(size=(m, k)).astype(np.float32)
            model = builder.quantized_matmul_model(fmt, x.shape, packing.pack(w, fmt), scale, bias,
                                                        activations="int8")
            # Per row q, s, z as cc/kernels/a8/layout.h defines them (int8_rows.py), Σ q·w in integers.
            want = int8_rows.product(x, w)[0] * scale + bias
            y = run(model, x, threads)
            np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5 * np.abs(want).max(),
                                       err_msg=f"{fmt} m={m} k={k} n={n}")
            # and the quantization is visible: not the float-activation result
            self.assertGreater(np.abs(y - numpy_matmul(x, w, scale, bias)).max(), 0)

    def test_leading_dims_are_batch(self):
        rng = np.random.default_rng(1)
        w, scale, bias = random_layer(rng, packing.TERNARY, 9, 70, True)
        x = rng.normal(size=(2, 3, 70)).astype(np.float32)
        model = builder.quantized_matmul_model(packing.TERNARY, x.shape,
                                                    packing.pack(w, packing.TERNARY), scale, bias)
        np.testing.assert_allclose(run(model, x), numpy_matmul(x, w, scale, bias), rtol=1e-5, atol=1e-5)


class MalformedModelTest(parameterized.TestCase):
    """Every malformed model ends in a Python exception naming the problem, never a crash."""

    def builder_model(self, x_dtype=np.float32, x_shape=(2, 10), packed=None, scale_n=6,
                      bias_n=None, packed_constant=True):
        b = builder.ModelBuilder()
        x = b.tensor("x", x_shape, x_dtype)
        if packed is None:
            packed = np.full((6, 3), 0x55, np.uint8)
        p = (b.tensor("packed", packed.shape, packed.dtype, packed) if packed_constant
             else b.tensor("packed", packed.shape, packed.dtype))
        inputs = [x, p, b.tensor("scale", [scale_n], np.float32, np.ones(scale_n))]
        if bias_n is not None:
            inputs.append(b.tensor("bias", [bias_n], np.float32, np.zeros(bias_n)))
        y = b.tensor("y", [2, 6], np.float32)
        b.op(builder.schema.BuiltinOperator.CUSTOM, inputs, [y], custom_name="TernaryMatMul")
        return b.build([x] + ([] if packed_constant else [p]), [y])

    @parameterized.named_parameters(
        ("wrong_input_dtype", dict(x_dtype=np.int32), "input x must be float32, got int32"),
        ("wrong_packed_dtype", dict(packed=np.zeros((6, 3), np.int8)), "packed weights must be uint8"),
        ("wrong_packed_rank", dict(packed=np.full(18, 0x55, np.uint8)), "packed weights must have rank 2"),
        ("short_packed_rows", dict(packed=np.full((6, 2), 0x55, np.uint8)),
         r"packed weights have shape \[6, 2\], expected \[6, 3\]"),
        ("too_few_rows", dict(packed=np.full((5, 3), 0x55, np.uint8)),
         r"packed weights have shape \[5, 3\], expected \[6, 3\]"),
        ("scale_wrong_length", dict(scale_n=7), r"expected \[7, 3\] for N = 7"),
        ("k_mismatch", dict(x_shape=(2, 20)), r"expected \[6, 5\] for N = 6 \(scale\) and K = 20"),
        ("bias_wrong_length", dict(bias_n=5), r"bias has shape \[5\], expected \[6\]"),
        ("invalid_code", dict(packed=np.full((6, 3), 0xFF, np.uint8)), "invalid ternary code 3"),
        ("non_constant_weights", dict(packed_constant=False), "must be a constant tensor"),
    )
    def test_clear_error(self, kwargs, message):
        model = self.builder_model(**kwargs)
        with self.assertRaisesRegex((RuntimeError, ValueError), "TernaryMatMul: .*" + message):
            litert.interpreter(model_content=model)

    def test_fuzzed_shapes_either_work_or_fail_cleanly(self):
        rng = np.random.default_rng(42)
        for trial in range(150):
            fmt = [packing.TERNARY, packing.BINARY][trial % 2]
            k, n = int(rng.integers(1, 80)), int(rng.integers(1, 20))
            w, scale, bias = random_layer(rng, fmt, n, k, with_bias=bool(trial % 3))
            packed = packing.pack(w, fmt)
            rows, cols = packed.shape
            rows, cols = max(1, rows + int(rng.integers(-1, 2))), max(1, cols + int(rng.integers(-1, 2)))
            scale_n = max(1, n + int(rng.integers(-1, 2)) * int(rng.random() < 0.3))
            bad_packed = np.resize(packed, (rows, cols))
            x = rng.normal(size=(2, k)).astype(np.float32)
            model = builder.quantized_matmul_model(
                fmt, x.shape, bad_packed, np.resize(scale, scale_n), None if bias is None else np.resize(bias, scale_n))
            if rows != scale_n or cols != packing.row_bytes(fmt, k):
                with self.assertRaisesRegex((RuntimeError, ValueError), "MatMul: .*expected"):
                    litert.interpreter(model_content=model)
                continue
            try:  # consistent shapes: the resized buffer may still hold invalid codes or padding
                w_bad = packing.unpack(bad_packed, k, fmt)
            except ValueError:
                with self.assertRaisesRegex((RuntimeError, ValueError), "MatMul: .*(invalid|padding)"):
                    litert.interpreter(model_content=model)
                continue
            want = numpy_matmul(x, w_bad, np.resize(scale, scale_n), None if bias is None else np.resize(bias, scale_n))
            np.testing.assert_allclose(run(model, x), want, rtol=1e-5, atol=1e-5)

    def test_missing_library_is_named(self):
        with absltest.mock.patch.dict("os.environ", {"TERNARY_VLM_OPS_LIBRARY": "/nonexistent/lib.so"}):
            with self.assertRaisesRegex(FileNotFoundError, "/nonexistent/lib.so"):
                litert.ops_library()


class TwoInterpretersTest(absltest.TestCase):
    """Two interpreters with our op in two threads at once (an app serving two users): both use the op
    library's shared 2-thread pool, and each must compute what it computes alone, bit for bit."""

    def test_concurrent_invokes_match_solo_runs(self):
        rng = np.random.default_rng(5)
        models, inputs = [], []
        for activations in ("float32", "int8"):
            w, scale, bias = random_layer(rng, packing.TERNARY, 1024, 512, True)  # 2^19 MACs: the pool splits it
            packed = packing.pack(w, packing.TERNARY)
            models.append(builder.quantized_matmul_model(packing.TERNARY, (1, 512), packed, scale, bias,
                                                              activations=activations))
            inputs.append(rng.normal(size=(200, 1, 512)).astype(np.float32))

        def run_all(model, xs, out):
            interp = litert.interpreter(model_content=model, num_threads=2)
            x_index, y_index = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
            for x in xs:
                interp.set_tensor(x_index, x)
                interp.invoke()
                out.append(interp.get_tensor(y_index).copy())

        alone = []
        for model, xs in zip(models, inputs):
            alone.append([])
            run_all(model, xs, alone[-1])
        together = [[], []]
        threads = [threading.Thread(target=run_all, args=(m, xs, out)) for m, xs, out in zip(models, inputs, together)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, got, want in zip(("float32", "int8"), together, alone):
            self.assertEqual(len(got), len(want), name)
            for step, (g, w) in enumerate(zip(got, want)):
                np.testing.assert_array_equal(g, w, err_msg=f"{name} activations, step {step}")


if __name__ == "__main__":
    absltest.main()
