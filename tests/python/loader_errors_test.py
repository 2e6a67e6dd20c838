"""One-line errors for bad checkpoints, and the generate CLI's handling of them."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest
from safetensors.numpy import load_file, save_file

import tiny_checkpoints
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.checkpoints.gguf import smollm2_gguf_path
from ternary_vlm.errors import CheckpointError


class LoaderErrorsTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.base = tempfile.mkdtemp()
        cls.good = os.path.join(cls.base, "good")
        tiny_checkpoints.make_vlm(cls.good, "smolvlm_gqa")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.base)

    def _copy(self, name):
        d = os.path.join(self.base, name)
        shutil.copytree(self.good, d)
        return d

    def _error(self, path):
        with self.assertRaises(CheckpointError) as ctx:
            load_model(path)
        message = str(ctx.exception)
        self.assertNotIn("\n", message)
        return message

    def test_missing_path(self):
        self.assertIn("no such file or directory", self._error(os.path.join(self.base, "nope")))

    def test_directory_that_is_not_a_checkpoint(self):
        d = os.path.join(self.base, "empty")
        os.makedirs(d, exist_ok=True)
        self.assertIn("is not a checkpoint directory (no config.json)", self._error(d))

    def test_file_that_is_not_a_checkpoint(self):
        path = os.path.join(self.base, "notes.txt")
        with open(path, "w") as f:
            f.write("hello")
        self.assertIn("is not a checkpoint", self._error(path))

    def test_unsupported_model_type_names_the_supported_ones(self):
        d = self._copy("gpt2")
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump({"model_type": "gpt2"}, f)
        message = self._error(d)
        self.assertIn("unsupported model_type 'gpt2'", message)
        for name in ("smolvlm", "idefics3", "llama"):
            self.assertIn(name, message)

    def test_missing_tensor_is_named(self):
        d = self._copy("missing")
        path = os.path.join(d, "model.safetensors")
        tensors = load_file(path)
        del tensors["model.text_model.layers.1.mlp.up_proj.weight"]
        save_file(tensors, path)
        message = self._error(d)
        self.assertIn("missing tensor 'model.text_model.layers.1.mlp.up_proj.weight'", message)
        self.assertIn("(72, 48)", message)

    def test_misshaped_tensor_says_expected_and_found(self):
        d = self._copy("misshaped")
        path = os.path.join(d, "model.safetensors")
        tensors = load_file(path)
        tensors["model.vision_model.post_layernorm.weight"] = np.ones(41, np.float32)
        save_file(tensors, path)
        message = self._error(d)
        self.assertIn("'model.vision_model.post_layernorm.weight' has shape (41,), expected (40,)", message)

    def test_truncated_safetensors(self):
        d = self._copy("truncated")
        path = os.path.join(d, "model.safetensors")
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 100)
        self.assertIn("truncated safetensors file", self._error(d))

    def test_no_weights(self):
        d = self._copy("noweights")
        os.remove(os.path.join(d, "model.safetensors"))
        self.assertIn("no model.safetensors or model.safetensors.index.json", self._error(d))

    def test_sharded_index_loads(self):
        d = self._copy("sharded")
        tensors = load_file(os.path.join(d, "model.safetensors"))
        os.remove(os.path.join(d, "model.safetensors"))
        keys = sorted(tensors)
        shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
        weight_map = {}
        for shard, names in shards.items():
            save_file({k: tensors[k] for k in names}, os.path.join(d, shard))
            weight_map.update({k: shard for k in names})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)
        loaded = load_model(d)
        np.testing.assert_array_equal(np.asarray(loaded.model.connector.modality_projection.proj.weight[...]),
                                      tensors["model.connector.modality_projection.proj.weight"])

    def test_truncated_gguf(self):
        path = os.path.join(self.base, "cut.gguf")
        with open(smollm2_gguf_path(), "rb") as src, open(path, "wb") as dst:
            dst.write(src.read(30_000_000))
        self.assertIn("truncated", self._error(path))
        with open(path, "r+b") as f:
            f.truncate(1000)  # inside the metadata
        self.assertIn("truncated or corrupt GGUF file", self._error(path))

    # Found by //tests/python:readers_fuzz_test; each was a hang, a stack trace or a silent wrong model.
    def test_layer_count_beyond_the_checkpoint_fails_before_building(self):
        d = self._copy("many_layers")
        config_path = os.path.join(d, "config.json")
        config = json.load(open(config_path))
        config["text_config"]["num_hidden_layers"] = 10 ** 6  # building it would take hours
        with open(config_path, "w") as f:
            json.dump(config, f)
        self.assertEqual(self._error(d), "text_config.num_hidden_layers is 1000000, but the checkpoint holds 3 "
                                         "such layers")

    def test_non_integer_or_huge_sizes(self):
        for value, message in (("x", "hidden_size must be an integer, got 'x'"),
                               (2 ** 40, f"hidden_size must be an integer in 1..{2 ** 24}, got {2 ** 40}")):
            d = self._copy(f"size_{value}")
            config_path = os.path.join(d, "config.json")
            config = json.load(open(config_path))
            config["text_config"]["hidden_size"] = value
            with open(config_path, "w") as f:
                json.dump(config, f)
            self.assertIn(message, self._error(d))

    def test_nan_weight_is_named(self):
        d = self._copy("nan")
        path = os.path.join(d, "model.safetensors")
        tensors = load_file(path)
        tensors["model.text_model.layers.0.self_attn.k_proj.weight"][1, 2] = np.nan
        save_file(tensors, path)
        self.assertEqual(self._error(d), "tensor 'model.text_model.layers.0.self_attn.k_proj.weight' holds NaN or "
                                         "infinite values")

    def test_tflite_that_is_not_one(self):
        from ternary_vlm import runtime
        from ternary_vlm.errors import TernaryVLMError

        for content, message in ((b"", "not a .tflite file (no TFL3 identifier)"),
                                 (b"\x10\x00\x00\x00TFL3\xff\xff", "corrupt .tflite file")):
            with self.assertRaises(TernaryVLMError) as ctx:
                runtime.read_metadata(content)
            self.assertIn(message, str(ctx.exception))

    def test_generate_cli_prints_one_line(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        result = subprocess.run([sys.executable, "-m", "ternary_vlm.cli.generate", f"--model={self.base}"],
                                capture_output=True, text=True, env=env, timeout=120)
        self.assertNotEqual(result.returncode, 0)
        lines = [l for l in result.stderr.splitlines() if l.startswith("generate:")]
        self.assertEqual(lines, [f"generate: {self.base} is not a checkpoint directory (no config.json)"])
        self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
    absltest.main()
