"""The shipped SmolLM2 artifacts (python/artifacts/smollm2-ternary, smollm2-binary): rebuilt from the pip GGUF plus
their compact files, each is exactly the trained model its report describes (held-out perplexity of the last curve
point, recomputed), and its weights are the scheme's codes times per-row scales."""

import json
import os
from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized
from cli_runner import run_module
from safetensors.numpy import load_file

from ternary_vlm.models import layers
from ternary_vlm.train import evaluate
from ternary_vlm.quant import schemes
from ternary_vlm.checkpoints import model_path
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.quant import compact
from ternary_vlm.train.text_recipe import eval_tokens


class SmolLM2ArtifactTest(parameterized.TestCase):

    def setUp(self):
        super().setUp()
        # Each test materializes the artifacts (~0.5 GB each) into its own cache, removed when it ends.
        self.enter_context(mock.patch.dict(os.environ, {"TERNARY_VLM_CACHE": self.create_tempdir().full_path}))

    @parameterized.parameters(*(n for n in compact.NAMES if "-vlm-" not in n))
    def test_rebuilt_model_is_the_reported_one(self, name):
        src = compact.ARTIFACTS / name
        self.assertLess(sum(f.stat().st_size for f in src.iterdir()), 40 << 20)  # compact: tens of MB
        path = model_path(name)
        config = json.load(open(os.path.join(path, "config.json")))
        q = config["quantization_config"]
        scheme = schemes.by_mode(name.split("-")[1])
        self.assertEqual((q["mode"], q["format"], q["base"]), (scheme.mode, scheme.format, "smollm2"))
        self.assertLen(q["layers"], 30 * 7)
        weights = load_file(os.path.join(path, "model.safetensors"))
        for layer in q["layers"][:7]:
            a = np.abs(weights[f"model.{layer}.weight"])  # every row: values in {-α, 0, α} (binary: {-α, α})
            allowed = (a == a.max(axis=1, keepdims=True)) | ((a == 0) if 0 in scheme.values else False)
            self.assertTrue(np.all(allowed), layer)
        # Compacting the rebuilt directory again gives back the shipped files (compact.write / materialize agree).
        again = os.path.join(self.create_tempdir().full_path, "again")
        compact.write(path, "smollm2", again)
        for name in ("quantized.safetensors", "changed.safetensors"):
            got, want = load_file(os.path.join(again, name)), load_file(str(src / name))
            self.assertEqual(sorted(got), sorted(want), name)
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        loaded = load_model(path)
        report = json.load(open(src / "report.json"))
        last = report["curve"][-1]
        windows = report["recipe"]["eval_windows"]
        ids = eval_tokens(loaded.tokenizer)["pydoc"]
        ppl = evaluate.text_perplexity(loaded.model, ids, 256, batch_size=8, max_windows=windows)
        # The same weights and arithmetic as the training run's evaluation (α·t in float32, summed over
        # windows × 256 tokens): only float32 summation order can differ, far below 1e-4 relative.
        np.testing.assert_allclose(ppl, last["ppl_pydoc"], rtol=1e-4)
        group = report["recipe"].get("int8_group")
        if group is not None:  # trained through the export's int8 rounding (ternarize --int8_inputs)
            # What it trained improved: the rounded model's perplexity, as the run measured it (then with the
            # symmetric rounding of the ops before they took a zero point).
            self.assertLess(last["ppl_pydoc_int8"], report["after_init"]["ppl_pydoc_int8"])
            with layers.int8_inputs(group):
                rounded = evaluate.text_perplexity(loaded.model, ids, 256, batch_size=8, max_windows=windows)
            # Rounded as the ops round today (a zero point per row, cc/kernels/a8/layout.h): it costs something
            # over float inputs, and less than the symmetric rounding did.
            self.assertGreater(rounded, ppl)
            self.assertLess(rounded, last["ppl_pydoc_int8"])
        elif report.get("init_from"):  # continued from an earlier output (ternarize --init_from): it improved on it
            self.assertLess(ppl, report["after_init"]["ppl_pydoc"])
        else:  # trained from the post-init model
            self.assertLess(ppl, 0.01 * report["after_init"]["ppl_pydoc"])

    def test_export_cli_takes_the_names(self):
        """`export --model=smollm2-binary` loads the shipped artifact (it once looked for a folder of that name): a
        ternary variant of it is then refused for its binary layers, after the load and before any conversion."""
        out = os.path.join(self.create_tempdir().full_path, "m.tflite")
        result = run_module("ternary_vlm.cli.export", "--model=smollm2-binary", "--variant=ternary",
                            f"--out={out}")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("needs ternary layers, the model has ['binary1']", result.stderr)
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    absltest.main()
