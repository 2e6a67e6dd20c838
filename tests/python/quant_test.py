"""Quantizer initializations and the STE layer against brute force and numpy."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from flax import nnx

from ternary_vlm.quant import packing
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


class OutputAwareTest(absltest.TestCase):
    """quant/calibrate.py against brute force on inputs whose channels differ in scale, as a real LM's do."""

    def setUp(self):
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(512, 24)) * np.geomspace(0.05, 20, 24)  # anisotropic inputs
        self.h = self.x.T @ self.x / len(self.x)
        self.w = rng.normal(size=(16, 24)) * 0.05

    def output_error(self, alpha, mode):
        wq = alpha[:, None] * qinit.quantize_codes(self.w, alpha, mode)
        return np.sum((self.x @ (self.w - wq).T) ** 2, axis=0) / len(self.x)  # measured on the inputs themselves

    def test_ternary_beats_kmeans_on_the_outputs_and_is_the_grid_optimum(self):
        from ternary_vlm.quant import calibrate
        alpha = calibrate.output_aware_scale(self.w, self.h, "ternary").astype(np.float64)
        kmeans = qinit.init_scale(self.w, "kmeans", "ternary").astype(np.float64)
        ours, theirs = self.output_error(alpha, "ternary"), self.output_error(kmeans, "ternary")
        self.assertTrue(np.all(ours <= theirs * (1 + 1e-6)))
        self.assertLess(ours.sum(), 0.8 * theirs.sum())
        for r in range(len(self.w)):  # no grid candidate of that row does better
            cands = kmeans[r] * calibrate.GRID
            errs = [self.output_error(np.full(len(self.w), c), "ternary")[r] for c in cands]
            self.assertLessEqual(ours[r], min(errs) * (1 + 1e-6))

    def test_binary_closed_form_is_the_least_squares_optimum(self):
        from ternary_vlm.quant import calibrate
        alpha = calibrate.output_aware_scale(self.w, self.h, "binary").astype(np.float64)
        for r in range(len(self.w)):  # a 1-D least squares: x·w ≈ α (x·sign(w))
            t = np.where(self.w[r] >= 0, 1.0, -1.0)
            a, b = self.x @ self.w[r], self.x @ t
            self.assertAlmostEqual(alpha[r], (a @ b) / (b @ b), places=5)

    def test_moments_are_those_of_each_layers_inputs(self):
        from ternary_vlm.models.config import TextConfig
        from ternary_vlm.models.llama import LlamaDecoder
        from ternary_vlm.quant import calibrate
        cfg = TextConfig(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=4, tie_word_embeddings=True)
        model = LlamaDecoder(cfg, rngs=nnx.Rngs(0))
        rows = np.random.default_rng(1).integers(0, 50, size=(3, 7))
        moments = calibrate.input_moments(model, rows, batch=2)
        self.assertLen(moments, 2 * 7)
        cos, sin, mask = rope(cfg, 7)
        h1 = model.layers[0](model.embed(jnp.asarray(rows)), cos, sin, mask)[0]
        block = model.layers[1]  # its MLP input, recomputed step by step
        a = h1 + block.self_attn(block.input_layernorm(h1), cos, sin, mask)[0]
        x = np.asarray(block.post_attention_layernorm(a), np.float64).reshape(-1, 16)
        np.testing.assert_allclose(moments["layers.1.mlp.up_proj"], x.T @ x / 21, rtol=1e-4, atol=1e-6)
        self.assertIsInstance(model.layers[0].mlp.up_proj, layers.Linear)  # the recorders are gone


def rope(cfg, t):
    from ternary_vlm.models.llama import rope_cos_sin
    cos, sin = rope_cos_sin(jnp.arange(t), cfg.head_dim, cfg.rope_theta)
    return cos, sin, jnp.tril(jnp.ones((t, t), bool))


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
