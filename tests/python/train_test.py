"""The training loop: exact resume after a kill, and data-parallel sharding equal to one device.
Runs with 4 forced host devices (XLA_FLAGS in the BUILD target)."""

import tempfile

import jax
import numpy as np
from absl.testing import absltest
from flax import nnx

from ternary_vlm import train
from ternary_vlm.models.config import config_from_dict
from ternary_vlm.models.smolvlm import SmolVLM
from ternary_vlm.quant.apply import quantize_model

CONFIG = {
    "model_type": "smolvlm", "image_token_id": 30, "scale_factor": 2, "tie_word_embeddings": True,
    "text_config": {"vocab_size": 40, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64},
    "vision_config": {"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
                      "num_attention_heads": 2, "image_size": 16, "patch_size": 4},
}


def make_model(quantized=False):
    cfg = config_from_dict(CONFIG)
    model = SmolVLM(cfg, rngs=nnx.Rngs(0))
    if quantized:
        quantize_model(model, "ternary", "kmeans", [], cfg.text.num_hidden_layers)
    return model


def batch(step):
    """8 rows: 4 image tokens (one 16 px image each) then text; loss on the text."""
    rng = np.random.default_rng(step)
    ids = rng.integers(0, 30, size=(8, 12)).astype(np.int32)
    ids[:, 1:5] = 30
    mask = np.zeros((8, 12), np.float32)
    mask[:, 5:] = 1
    return {"ids": ids, "labels": np.roll(ids, -1, axis=1), "mask": mask,
            "pixel_values": rng.normal(size=(8, 3, 16, 16)).astype(np.float32)}


def params(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


class Killed(Exception):
    pass


class TrainTest(absltest.TestCase):

    def test_resume_after_kill_follows_the_uninterrupted_run(self):
        with tempfile.TemporaryDirectory() as d:
            cfg = train.TrainConfig(steps=6, learning_rate=1e-2, warmup_steps=2, checkpoint_every=2,
                                    log_every=1, checkpoint_dir=d + "/full")
            full = make_model(True)
            full_history = train.train(full, train.lm_loss, batch, cfg)

            def dies_at_step_3(step):
                if step == 3:
                    raise Killed()
                return batch(step)
            resumed = make_model(True)
            cfg = train.TrainConfig(**{**cfg.__dict__, "checkpoint_dir": d + "/killed"})
            with self.assertRaises(Killed):
                train.train(resumed, train.lm_loss, dies_at_step_3, cfg)
            resumed = make_model(True)  # a fresh process would start from scratch weights
            history = train.train(resumed, train.lm_loss, batch, cfg)
        self.assertEqual([h["step"] for h in history], [3, 4, 5, 6])
        np.testing.assert_allclose([h["loss"] for h in history], [h["loss"] for h in full_history[2:]],
                                   rtol=1e-6)
        for a, b in zip(params(full), params(resumed)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    def test_sharded_step_equals_single_device_step(self):
        self.assertEqual(jax.device_count(), 4)
        cfg = train.TrainConfig(steps=3, learning_rate=1e-2, warmup_steps=1, log_every=1)
        one = make_model(True)
        h1 = train.train(one, train.lm_loss, batch, cfg, mesh=train.data_mesh(jax.devices()[:1]))
        four = make_model(True)
        h4 = train.train(four, train.lm_loss, batch, cfg, mesh=train.data_mesh())
        np.testing.assert_allclose([h["loss"] for h in h1], [h["loss"] for h in h4], rtol=1e-5)
        for a, b in zip(params(one), params(four)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    def test_quantization_aware_training_lowers_the_loss(self):
        model = make_model(True)
        history = train.train(model, train.lm_loss, lambda s: batch(s % 2), train.TrainConfig(
            steps=30, learning_rate=1e-2, warmup_steps=2, log_every=5))
        self.assertLess(history[-1]["loss"], history[0]["loss"] * 0.8)


if __name__ == "__main__":
    absltest.main()
