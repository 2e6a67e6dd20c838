"""Quantizer initializations and the STE layer against brute force and numpy."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from flax import nnx

from ternary_vlm import packing
from ternary_vlm.models import layers
from ternary_vlm.quant import init as qinit
from ternary_vlm.quant import layers as qlayers


def row_error(w, alpha, mode):
    return qinit.relative_error(w[None], np.array([alpha]), mode)


class InitTest(parameterized.TestCase):

    def test_kmeans_is_the_global_optimum_over_a_fine_grid(self):
        rng = np.random.default_rng(0)
        w = np.concatenate([rng.normal(size=(6, 64)), rng.laplace(size=(6, 64)),
                            rng.standard_t(3, size=(6, 64))])
        alpha = qinit.init_scale(w, "kmeans", "ternary")
        for r in range(w.shape[0]):
            grid = np.linspace(1e-3, np.abs(w[r]).max() * 2, 4000)
            best = min(row_error(w[r], a, "ternary") for a in grid)
            self.assertLessEqual(row_error(w[r], alpha[r], "ternary"), best + 1e-6, f"row {r}")

    @parameterized.parameters("lloyd", "twn", "absmean", "kmeans_sklearn")
    def test_kmeans_error_is_never_worse(self, other):
        rng = np.random.default_rng(1)
        w = rng.normal(size=(40, 300)) * rng.uniform(0.5, 2, size=(40, 1))
        best = qinit.init_scale(w, "kmeans", "ternary")
        alt = qinit.init_scale(w, other, "ternary")
        for r in range(w.shape[0]):
            self.assertLessEqual(row_error(w[r], best[r], "ternary"), row_error(w[r], alt[r], "ternary") + 1e-9)

    def test_twn_and_absmean_follow_their_definitions(self):
        w = np.array([[0.1, -0.2, 0.9, -1.0, 0.05, 0.0]])
        m = np.abs(w).mean()
        np.testing.assert_allclose(qinit.init_scale(w, "absmean", "ternary"), [m], rtol=1e-6)
        above = np.abs(w) > 0.7 * m
        np.testing.assert_allclose(qinit.init_scale(w, "twn", "ternary"), [np.abs(w)[above].mean()], rtol=1e-6)

    def test_binary_scale_is_mean_abs_and_codes_are_signs(self):
        w = np.array([[0.5, -1.5, 0.0, 2.0]])
        alpha = qinit.init_scale(w, "kmeans", "binary")
        np.testing.assert_allclose(alpha, [1.0])
        np.testing.assert_array_equal(qinit.quantize_codes(w, alpha, "binary"), [[1, -1, 1, 1]])

    def test_codes_pack_for_the_kernels(self):
        rng = np.random.default_rng(2)
        w = rng.normal(size=(7, 33))
        for mode, fmt in (("ternary", packing.TERNARY), ("binary", packing.BINARY)):
            t = qinit.quantize_codes(w, qinit.init_scale(w, "kmeans", mode), mode)
            np.testing.assert_array_equal(packing.unpack(packing.pack(t, fmt), 33, fmt), t)

    def test_unknown_init_is_named(self):
        with self.assertRaisesRegex(ValueError, "unknown init 'foo'"):
            qinit.init_scale(np.ones((2, 2)), "foo", "ternary")


class QuantLinearTest(absltest.TestCase):

    def test_forward_is_scaled_codes_and_gradients_are_straight_through(self):
        rng = np.random.default_rng(3)
        w = rng.normal(size=(5, 9)).astype(np.float32)
        scale = qinit.init_scale(w, "kmeans", "ternary")
        t = qinit.quantize_codes(w, scale, "ternary")
        got = qlayers.fake_quant(jnp.asarray(w), jnp.asarray(scale), "ternary")
        np.testing.assert_allclose(got, scale[:, None] * t, rtol=1e-6)
        upstream = rng.normal(size=w.shape).astype(np.float32)
        gw, gs = jax.grad(lambda a, b: jnp.sum(qlayers.fake_quant(a, b, "ternary") * upstream),
                          argnums=(0, 1))(jnp.asarray(w), jnp.asarray(scale))
        np.testing.assert_allclose(gw, upstream, rtol=1e-6)
        np.testing.assert_allclose(gs, (upstream * t).sum(axis=1), rtol=1e-5)

    def test_from_linear_matches_numpy(self):
        lin = layers.Linear(12, 4, use_bias=True, rngs=nnx.Rngs(0), name="x.proj")
        lin.bias[...] = jnp.arange(4.0)
        q = qlayers.QuantLinear.from_linear(lin, "ternary", "kmeans")
        self.assertEqual(q.name, "x.proj")
        x = np.random.default_rng(4).normal(size=(3, 12)).astype(np.float32)
        want = x @ (np.asarray(q.scale[...])[:, None] * q.codes()).T + np.arange(4.0)
        np.testing.assert_allclose(q(jnp.asarray(x)), want, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    absltest.main()
