"""Stock LiteRT's INT2 / INT4 weight layouts (export/tflite/lowbit.py) against an independent numpy reading of the
schema's rule, and single-op FULLY_CONNECTED models on them against numpy through LiteRT (XNNPACK and the builtin
kernels)."""

import numpy as np
from absl.testing import absltest, parameterized
from ai_edge_litert import interpreter as stock

from ternary_vlm.export.tflite import builder, lowbit


def reference_pack(values, bits):
    """Bit by bit: element i of the row-major stream goes to byte i // (8 / bits), bits (i mod 8/bits) · bits up,
    in two's complement."""
    flat = np.asarray(values).ravel()
    per_byte = 8 // bits
    out = np.zeros(-(-len(flat) // per_byte), np.uint8)
    for i, v in enumerate(flat):
        code = int(v) & ((1 << bits) - 1)
        for b in range(bits):
            if code >> b & 1:
                out[i // per_byte] |= 1 << (bits * (i % per_byte) + b)
    return out


def run(model, x, xnnpack):
    interp = stock.Interpreter(model_content=model, experimental_op_resolver_type=(
        stock.OpResolverType.AUTO if xnnpack else stock.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


class LowbitTest(parameterized.TestCase):

    @parameterized.parameters(2, 4)
    def test_pack_matches_the_bit_by_bit_rule(self, bits):
        rng = np.random.default_rng(bits)
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        for n, k in ((1, 1), (3, 5), (7, 33), (16, 64)):
            values = rng.integers(lo, hi + 1, size=(n, k))
            np.testing.assert_array_equal(lowbit.pack(values, bits), reference_pack(values, bits))
        with self.assertRaisesRegex(ValueError, f"INT{bits} values must lie in"):
            lowbit.pack(np.array([[hi + 1]]), bits)

    def test_int4_quantization_rounds_to_the_nearest_step(self):
        w = np.random.default_rng(0).normal(size=(6, 64)).astype(np.float32)
        for block in (None, 32):
            codes, scale = lowbit.quantize_int4(w, block)
            step = scale[:, None] if block is None else np.repeat(scale, block, axis=1)
            self.assertLessEqual(np.abs(codes).max(), 7)
            self.assertTrue(np.all(np.abs(codes * step - w) <= step / 2 * (1 + 1e-6)))
            if block:  # the scales are what the file stores: float16 values
                np.testing.assert_array_equal(scale, scale.astype(np.float16).astype(np.float32))

    @parameterized.product(layout=["int2", "int4", "int4_b32"], xnnpack=[True, False])
    def test_fully_connected_on_the_layout_equals_numpy(self, layout, xnnpack):
        """LiteRT quantizes x to int8 with a step s ≤ max|x| / 127, so |y_j − x·W_jᵀ| ≤ ‖W_j‖₁ · s / 2 (+ float32
        rounding); a wrong bit order, sign or scale layout gives errors of the order of |y|."""
        rng = np.random.default_rng(1)
        m, k, n = 3, 96, 40
        x = rng.normal(size=(m, k)).astype(np.float32)
        bias = rng.normal(size=n).astype(np.float32)
        if layout == "int2":
            codes = rng.choice([-1, 0, 1], size=(n, k)).astype(np.int8)
            scale, block = rng.uniform(0.01, 0.1, n).astype(np.float32), None
            w = scale[:, None] * codes
        else:
            block = 32 if layout == "int4_b32" else None
            codes, scale = lowbit.quantize_int4(rng.normal(size=(n, k)).astype(np.float32), block)
            w = codes * (scale[:, None] if block is None else np.repeat(scale, block, axis=1))
        model = builder.lowbit_fully_connected_model(x.shape, codes, 2 if layout == "int2" else 4, scale, block, bias)
        y = run(model, x, xnnpack)
        want = x.astype(np.float64) @ w.T + bias
        bound = np.abs(w).sum(axis=1) * np.abs(x).max() / 127 / 2 + 1e-5 * (np.abs(want) + 1)
        self.assertTrue(np.all(np.abs(y - want) <= bound), np.abs(y - want).max())
        self.assertGreater(np.abs(y - want).max(), 0)  # it did round x: this is the int8-activation path


if __name__ == "__main__":
    absltest.main()
