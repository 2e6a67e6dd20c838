"""The shipped grafted VLM and its ternary and binary versions (python/artifacts/smollm2-vlm, smollm2-vlm-ternary,
smollm2-vlm-binary): each is rebuilt from the pip GGUF plus its compact files, and is the model its card / report
describes (the scores on the scene test split and pydoc, recomputed); a quantized one's decoder is the shipped
quantized SmolLM2 of its mode, bit for bit."""

import json
import os
import tempfile
from unittest import mock

import numpy as np
from absl.testing import absltest
from safetensors.numpy import load_file

from ternary_vlm.checkpoints import grafted_vlm, model_path
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.data.batches import Batcher
from ternary_vlm.quant import compact
from ternary_vlm.train import evaluate


def assert_scores(test, got: dict, want: dict, examples: int) -> None:
    """Perplexities: the same weights and float32 arithmetic as the run that wrote them; only summation order can
    differ between machines, far below 1e-4 relative. Accuracies are exact matches of argmaxes: a token whose top two
    logits lie within float32 rounding of each other may flip, so one example per task may differ."""
    for key in ("caption_ppl", "text_ppl"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, err_msg=key)
    for key in ("caption_accuracy", "qa_accuracy"):
        test.assertLessEqual(abs(got[key] - want[key]), 1 / examples + 1e-9, key)


class ShippedVLMTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        # The materialized artifacts (~1.6 GB) go to a cache of this class's own, removed when it ends.
        cache = tempfile.TemporaryDirectory()
        cls.addClassCleanup(cache.cleanup)
        env = mock.patch.dict(os.environ, {"TERNARY_VLM_CACHE": cache.name})
        env.start()
        cls.addClassCleanup(env.stop)

    def test_grafted_vlm_scores_as_its_card(self):
        scores = json.load(open(grafted_vlm.ARTIFACTS / "smollm2-vlm" / "scores.json"))
        loaded = load_model(model_path("smollm2-vlm"))
        batcher = Batcher(loaded.tokenizer, loaded.image_processor, loaded.config, scores["max_len"], scores["seed"])
        got = evaluate.evaluate(loaded.model, batcher, scores["eval_examples"])
        assert_scores(self, got, scores, scores["eval_examples"])
        # It learned the scenes: the frozen LM answers the QA far above chance (1 of 6 colours / 3 shapes / 2 sizes)
        # and predicts the captions' tokens almost surely.
        self.assertGreater(got["qa_accuracy"], 0.5)
        self.assertLess(got["caption_ppl"], 2.0)

    def test_ternary_vlm_is_its_report_with_its_own_decoder(self):
        """The joint stage trained the decoder too: the compact form stores its codes (not the embedding, which
        stayed the base's and is re-derived)."""
        src = compact.ARTIFACTS / "smollm2-vlm-ternary"
        self.assertLess(sum(f.stat().st_size for f in src.iterdir()), 32 << 20)  # 2-bit decoder + vision tower
        stored = load_file(str(src / "quantized.safetensors"))
        self.assertLen([k for k in stored if k.startswith("text_model.") and k.endswith(".packed")], 30 * 7)
        self.assertFalse([k for k in load_file(str(src / "changed.safetensors")) if "embed_tokens" in k])
        path = model_path("smollm2-vlm-ternary")
        q = json.load(open(os.path.join(path, "config.json")))["quantization_config"]
        self.assertEqual((q["base"], q.get("text_layers_from"), q["mode"]), ("smollm2-vlm", None, "ternary"))
        self.assert_report("smollm2-vlm-ternary", path)

    def test_binary_vlm_is_its_report_with_the_shipped_binary_decoder(self):
        self.assert_quantized_vlm("smollm2-vlm-binary", "smollm2-binary", "binary")

    def assert_quantized_vlm(self, name: str, decoder: str, mode: str):
        src = compact.ARTIFACTS / name
        self.assertLess(sum(f.stat().st_size for f in src.iterdir()), 2 << 20)  # the vision tower alone
        stored = load_file(str(src / "quantized.safetensors"))
        self.assertFalse([k for k in stored if k.startswith("text_model.")])
        path = model_path(name)
        q = json.load(open(os.path.join(path, "config.json")))["quantization_config"]
        self.assertEqual((q["base"], q["text_layers_from"], q["mode"]), ("smollm2-vlm", decoder, mode))
        packed, text = load_file(os.path.join(path, "quantized.safetensors")), \
            load_file(str(compact.ARTIFACTS / decoder / "quantized.safetensors"))
        self.assertLen([k for k in packed if k.startswith("text_model.")], len(text))
        for key, value in text.items():
            np.testing.assert_array_equal(packed["text_model." + key], value, err_msg=key)
        self.assertTrue(any(k.startswith("vision_model.") for k in packed))
        self.assert_report(name, path)

    def assert_report(self, name: str, path: str):
        """The rebuilt model scores what its report says, and better on captions than the model QAT started from."""
        report = json.load(open(compact.ARTIFACTS / name / "report.json"))
        loaded = load_model(path)
        batcher = Batcher(loaded.tokenizer, loaded.image_processor, loaded.config, max_len=evaluate.REPORT_MAX_LEN)
        got = evaluate.evaluate(loaded.model, batcher, report["eval_examples"])
        assert_scores(self, got, report["after_qat"], report["eval_examples"])
        self.assertLess(got["caption_ppl"], report["after_init"]["caption_ppl"])


if __name__ == "__main__":
    absltest.main()
