"""Our Flax SmolVLM / Idefics3 / Llama against transformers on tiny random checkpoints (image + text),
and prefill + decode through the KV cache against the full forward."""

import tempfile

import jax.numpy as jnp
import numpy as np
import torch
from absl.testing import absltest, parameterized

import tiny_checkpoints
from ternary_vlm.checkpoints.loader import load_model
from flax import nnx

from ternary_vlm.models import layers
from ternary_vlm.models.config import config_from_dict
from ternary_vlm.models.decoding import Generator
from ternary_vlm.models.smolvlm import SmolVLM

TOL = 1e-4


def _prompt(rng, vocab, image_token_id, n_image_tokens, before=5, after=7):
    text = lambda n: [int(t) for t in rng.integers(0, vocab, n) if t != image_token_id]  # noqa: E731
    return text(before) + [image_token_id] * n_image_tokens + text(after)


class SmolVLMParityTest(parameterized.TestCase):

    @parameterized.named_parameters(*[(name, name) for name in tiny_checkpoints.VLM_CONFIGS])
    def test_logits_and_cache_match_transformers(self, name):
        with tempfile.TemporaryDirectory() as d:
            ref = tiny_checkpoints.make_vlm(d, name)
            loaded = load_model(d)
        self.assertIsInstance(loaded.model, SmolVLM)
        cfg = loaded.config
        rng = np.random.default_rng(1)
        side = cfg.vision.image_size
        for tiles in (1, 2):  # 2 tiles: the layout of a split image (tile + global view)
            pixels = rng.standard_normal((tiles, 3, side, side)).astype(np.float32)
            ids = _prompt(rng, cfg.text.vocab_size, cfg.image_token_id, tiles * cfg.image_seq_len)
            with torch.no_grad():
                want = ref(input_ids=torch.tensor([ids]), pixel_values=torch.from_numpy(pixels)[None]).logits.numpy()
            got, _ = loaded.model(jnp.asarray([ids]), jnp.asarray(pixels))
            diff = float(np.abs(np.asarray(got) - want).max())
            print(f"{name} tiles={tiles} tokens={len(ids)} max|logit|={np.abs(want).max():.2f} "
                  f"max abs diff vs transformers={diff:.2e}")
            self.assertLess(diff, TOL)

            # prefill the first part (image included), then decode the rest token by token
            gen = Generator(loaded.model)
            split = len(ids) - 6
            cache = loaded.model.init_cache(1, len(ids) + 3)
            logits, cache = gen.prefill(ids[:split], cache, gen.image_features(pixels))
            steps = [np.asarray(logits[0])]
            for pos in range(split, len(ids)):
                logits, cache = gen.decode(ids[pos], pos, cache)
                steps.append(np.asarray(logits[0]))
            cached = np.stack(steps)  # positions split-1 .. len-1
            diff_cache = float(np.abs(cached - np.asarray(got)[0, split - 1:]).max())
            diff_ref = float(np.abs(cached - want[0, split - 1:]).max())
            print(f"{name} tiles={tiles} prefill+decode vs full forward={diff_cache:.2e}, vs transformers={diff_ref:.2e}")
            self.assertLess(diff_cache, TOL)
            self.assertLess(diff_ref, TOL)
            if tiles == 1:  # greedy generation with the image, token for token
                with torch.no_grad():
                    hf = ref.generate(input_ids=torch.tensor([ids]), pixel_values=torch.from_numpy(pixels)[None],
                                      max_new_tokens=6, do_sample=False)[0, len(ids):].tolist()
                self.assertEqual(list(gen.generate(ids, pixel_values=pixels, max_new_tokens=6)), hf)

    def test_image_smaller_than_the_trained_grid(self):
        """48 px on a 64 px / 16-patch grid: positions come from transformers' fractional bucketing."""
        with tempfile.TemporaryDirectory() as d:
            ref = tiny_checkpoints.make_vlm(d, "smolvlm_bias_rope")
            loaded = load_model(d)
        rng = np.random.default_rng(2)
        pixels = rng.standard_normal((1, 3, 48, 48)).astype(np.float32)
        ids = _prompt(rng, loaded.config.text.vocab_size, loaded.config.image_token_id, 9)
        with torch.no_grad():
            want = ref(input_ids=torch.tensor([ids]), pixel_values=torch.from_numpy(pixels)[None]).logits.numpy()
        got, _ = loaded.model(jnp.asarray([ids]), jnp.asarray(pixels))
        diff = float(np.abs(np.asarray(got) - want).max())
        print(f"48 px image on a 64 px grid: max abs diff vs transformers={diff:.2e}")
        self.assertLess(diff, TOL)

    def test_every_linear_goes_through_the_factory(self):
        spec = tiny_checkpoints.VLM_CONFIGS["smolvlm_gqa"]
        cfg = config_from_dict({"model_type": "smolvlm", "scale_factor": 2, "image_token_id": 150,
                                "text_config": spec["text"], "vision_config": spec["vision"]})
        names = []

        def factory(in_features, out_features, *, use_bias, rngs, name):
            names.append(name)
            return layers.Linear(in_features, out_features, use_bias=use_bias, rngs=rngs, name=name)

        with layers.linear_factory(factory):
            model = SmolVLM(cfg, rngs=nnx.Rngs(0))
        found = [m.name for _, m in layers.iter_linears(model)]
        self.assertCountEqual(names, found)
        # 7 per text layer, 6 per vision layer, patch embedding, projection, untied LM head
        self.assertLen(names, 7 * 3 + 6 * 2 + 3)
        self.assertIn("text_model.lm_head", names)
        self.assertIn("vision_model.embeddings.patch_embedding", names)
        self.assertIn("text_model.layers.2.self_attn.q_proj", names)

    def test_text_only_llama_directory(self):
        with tempfile.TemporaryDirectory() as d:
            ref = tiny_checkpoints.make_llama(d)
            loaded = load_model(d)
        ids = [3, 17, 99, 4, 56, 7, 8, 100, 2]
        with torch.no_grad():
            want = ref(torch.tensor([ids])).logits.numpy()
        got, _ = loaded.model(jnp.asarray([ids]))
        diff = float(np.abs(np.asarray(got) - want).max())
        print(f"llama tied, 5 heads / 1 KV head: max abs diff vs transformers={diff:.2e}")
        self.assertLess(diff, TOL)
        with torch.no_grad():
            hf = ref.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)[0, len(ids):].tolist()
        ours = list(Generator(loaded.model).generate(ids, max_new_tokens=8))
        self.assertEqual(ours, hf)


if __name__ == "__main__":
    absltest.main()
