"""The committed demo VLM loads and reaches its recorded scores; the scene generator is deterministic."""

import json
import os

from absl.testing import absltest

from ternary_vlm.checkpoints import demo_model
from ternary_vlm.train import evaluate
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.data import scenes
from ternary_vlm.data.batches import Batcher


class DemoVLMTest(absltest.TestCase):

    def test_checkpoint_reaches_its_recorded_scores(self):
        path = demo_model.default_checkpoint()
        recorded = json.load(open(os.path.join(path, "scores.json")))
        loaded = load_model(path)
        self.assertTrue(loaded.is_vlm)
        batcher = Batcher(loaded.tokenizer, loaded.image_processor, loaded.config, max_len=80,
                          seed=recorded["seed"])
        scores = evaluate.evaluate(loaded.model, batcher, recorded["eval_examples"])
        for key in ("caption_accuracy", "qa_accuracy"):
            self.assertAlmostEqual(scores[key], recorded[key], delta=0.01, msg=key)
        for key in ("caption_ppl", "text_ppl"):
            self.assertAlmostEqual(scores[key] / recorded[key], 1.0, delta=0.01, msg=key)
        self.assertGreater(scores["caption_accuracy"], 0.5)  # it really learned the task

    def test_scene_generator_is_deterministic_per_seed_and_split(self):
        a = scenes.fingerprint(scenes.examples(7, "test", 30))
        self.assertEqual(a, scenes.fingerprint(scenes.examples(7, "test", 30)))
        self.assertNotEqual(a, scenes.fingerprint(scenes.examples(8, "test", 30)))
        self.assertNotEqual(a, scenes.fingerprint(scenes.examples(7, "validation", 30)))

    def test_captions_describe_the_objects(self):
        e = scenes.example(0, "train", 3)
        for o in e.objects:
            self.assertIn(f"{o.size} {o.colour} {o.shape}", e.caption)


if __name__ == "__main__":
    absltest.main()
