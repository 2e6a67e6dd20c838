"""The native packing against an independent numpy implementation of the documented layout."""

import numpy as np
from absl.testing import absltest, parameterized

from ternary_vlm.quant import packing


def numpy_pack(values, fmt):
    """Reference: codes (t+1 in 2 bits, or sign in 1 bit) laid out least-significant first; ternary5: t+1 as
    base-3 digits, 5 per byte, least-significant first."""
    n, k = values.shape
    if fmt == packing.TERNARY5:
        padded = np.zeros((n, -(-k // 5) * 5), np.int64)
        padded[:, :k] = values
        return ((padded + 1).reshape(n, -1, 5) * 3 ** np.arange(5)).sum(-1).astype(np.uint8)
    bits = 2 if fmt == packing.TERNARY else 1
    per_byte = 8 // bits
    padded_k = -(-k // per_byte) * per_byte
    pad_value = 0 if fmt == packing.TERNARY else -1
    padded = np.full((n, padded_k), pad_value, np.int64)
    padded[:, :k] = values
    codes = padded + 1 if fmt == packing.TERNARY else (padded > 0).astype(np.int64)
    shifts = bits * np.arange(per_byte)
    return (codes.reshape(n, -1, per_byte) << shifts).sum(-1).astype(np.uint8)


class PackingTest(parameterized.TestCase):

    @parameterized.parameters(packing.TERNARY, packing.BINARY, packing.TERNARY5)
    def test_round_trip_matches_numpy_on_random_shapes(self, fmt):
        rng = np.random.default_rng(0)
        alphabet = [-1, 1] if fmt == packing.BINARY else [-1, 0, 1]
        for _ in range(50):
            n, k = rng.integers(1, 40), rng.integers(1, 300)
            values = rng.choice(alphabet, size=(n, k)).astype(np.int8)
            packed = packing.pack(values, fmt)
            self.assertEqual(packed.shape, (n, packing.row_bytes(fmt, k)))
            np.testing.assert_array_equal(packed, numpy_pack(values, fmt))
            np.testing.assert_array_equal(packing.unpack(packed, k, fmt), values)

    def test_format_table_comes_from_cpp(self):
        self.assertEqual(packing.FORMATS[packing.TERNARY]["weights_per_byte"], 4)
        self.assertEqual(packing.FORMATS[packing.BINARY]["bits_per_weight"], 1.0)
        self.assertEqual(packing.row_bytes(packing.TERNARY, 577), 145)
        self.assertEqual(packing.row_bytes(packing.BINARY, 577), 73)
        self.assertEqual(packing.FORMATS[packing.TERNARY5]["bits_per_weight"], 1.6)
        self.assertEqual(packing.row_bytes(packing.TERNARY5, 577), 116)

    def test_errors_name_the_problem(self):
        with self.assertRaisesRegex(ValueError, r"ternary value 2 at \[0, 1\]"):
            packing.pack(np.array([[0, 2]]), packing.TERNARY)
        with self.assertRaisesRegex(ValueError, r"binary value 0 at \[0, 0\]"):
            packing.pack(np.array([[0, 1]]), packing.BINARY)
        with self.assertRaisesRegex(ValueError, "invalid ternary code 3"):
            packing.unpack(np.array([[0xFF]], np.uint8), 4, packing.TERNARY)
        with self.assertRaisesRegex(ValueError, "invalid ternary5 byte 250 in row 1, byte 0"):
            packing.unpack(np.array([[121], [250]], np.uint8), 5, packing.TERNARY5)
        with self.assertRaisesRegex(ValueError, "needs 2"):
            packing.unpack(np.zeros((3, 1), np.uint8), 5, packing.TERNARY)
        with self.assertRaisesRegex(ValueError, "unknown weight format 'int3'"):
            packing.pack(np.zeros((1, 1), np.int8), "int3")
        with self.assertRaisesRegex(ValueError, "must be 2-D"):
            packing.pack(np.zeros(4, np.int8), packing.TERNARY)


if __name__ == "__main__":
    absltest.main()
