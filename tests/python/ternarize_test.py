"""The ternarize CLI end to end on the bundled demo VLM, and its one-line errors."""

import json
import os
import tempfile

import numpy as np
from absl.testing import absltest
from safetensors.numpy import load_file

from cli_runner import run_module

from ternary_vlm.quant import packing
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.models.decoding import Generator
from ternary_vlm.runtime import Runtime


def run(*flags):
    return run_module("ternary_vlm.cli.ternarize", *flags)


class TernarizeCliTest(absltest.TestCase):

    def test_short_run_writes_a_consistent_quantized_checkpoint(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "tern")
            r = run("--steps=2", "--eval_examples=8", "--checkpoint_every=1", "--export_variant=ternary_f32", f"--out={out}")
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            self.assertFalse(os.path.exists(out + ".checkpoints"))
            config = json.load(open(os.path.join(out, "config.json")))
            q = config["quantization_config"]
            self.assertEqual((q["mode"], q["format"], q["init"]), ("ternary", packing.TERNARY, "kmeans"))
            weights = load_file(os.path.join(out, "model.safetensors"))
            packed = load_file(os.path.join(out, "quantized.safetensors"))
            self.assertGreater(len(q["layers"]), 20)
            for name in q["layers"]:
                scale = packed[name + ".scale"]
                dequant = weights["model." + name + ".weight"]
                dequant = dequant.reshape(dequant.shape[0], -1)  # the patch embedding is stored as a Conv2d
                codes = packing.unpack(packed[name + ".packed"], dequant.shape[1], packing.TERNARY)
                # The float weights written are exactly scale * codes: one model, two encodings.
                np.testing.assert_array_equal(dequant, scale[:, None] * codes.astype(np.float32), err_msg=name)
            # The .tflite it wrote computes what the checkpoint it wrote computes (TernaryMatMul on float
            # activations against Flax on scale * codes: equal up to float32 summation order).
            loaded = load_model(out)
            runtime = Runtime(os.path.join(out, "model-ternary_f32.tflite"))
            ids = loaded.tokenizer.encode("A small red circle above a blue square.")
            generator = Generator(loaded.model)
            want, _ = generator.prefill(ids, generator.text_model().init_cache(1, runtime.max_len))
            want, got = np.asarray(want), runtime.prefill(ids)
            self.assertLessEqual(np.abs(got - want).max(), 1e-4 * np.abs(want).max())
            self.assertEqual(int(np.argmax(got[0])), int(np.argmax(want[0])))
            report = json.load(open(os.path.join(out, "report.json")))
            self.assertIn("after_qat", report)
            self.assertEqual(len(report["layers"]), len(q["layers"]))

    def test_user_vlm_data(self):
        """--data: JSONL image-text examples (captions and chat turns) train the VLM; the report scores the
        held-out part of them."""
        from PIL import Image

        from ternary_vlm.data import scenes
        with tempfile.TemporaryDirectory() as d:
            rows = []
            for i, e in enumerate(scenes.examples(3, "train", 40, 48)):
                Image.fromarray(e.image).save(os.path.join(d, f"{i}.png"))
                rows.append({"image": f"{i}.png", "text": e.caption} if i % 2 else
                            {"image": f"{i}.png", "messages": [{"role": "user", "content": e.question},
                                                               {"role": "assistant", "content": e.answer}]})
            with open(os.path.join(d, "data.jsonl"), "w") as f:
                f.write("\n".join(json.dumps(r) for r in rows))
            out = os.path.join(d, "tern")
            r = run(f"--data={d}/data.jsonl", "--steps=2", "--eval_examples=8", "--export=false", f"--out={out}")
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            report = json.load(open(os.path.join(out, "report.json")))
            for key in ("float", "after_init", "after_qat"):
                self.assertGreater(report[key]["data_ppl"], 1.0)
            self.assertLess(report["float"]["data_ppl"], report["after_init"]["data_ppl"])

    def test_bad_data_is_one_line_before_training_and_leaves_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "data.jsonl"), "w") as f:
                f.write('{"image": "a.png", "text": "x"}\n')
            out = os.path.join(d, "never")
            r = run(f"--data={d}/data.jsonl", f"--out={out}")
            self.assertNotEqual(r.returncode, 0)
            self.assertTrue(r.stderr.strip().splitlines()[-1].startswith(
                f"ternarize: {d}/data.jsonl:1: unreadable image {d}/a.png"), r.stderr[-500:])
            self.assertNotIn("Traceback", r.stderr)
            self.assertEqual(sorted(os.listdir(d)), ["data.jsonl"])

    def test_bad_model_is_one_line_and_leaves_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "never")
            r = run("--model=/no/such/model", f"--out={out}")
            self.assertNotEqual(r.returncode, 0)
            self.assertEqual(r.stderr.strip().splitlines()[-1], "ternarize: /no/such/model: no such file or directory")
            self.assertNotIn("Traceback", r.stderr)
            self.assertEqual(os.listdir(d), [])

    def test_export_variant_of_another_mode_is_one_line_and_leaves_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "never")
            for variant, message in (("binary_int8", "ternarize: --export_variant=binary_int8 is not a ternary "
                                                     "variant (--mode)"),
                                     ("ternary_a4", "ternarize: unknown variant 'ternary_a4'")):
                r = run(f"--export_variant={variant}", f"--out={out}")
                self.assertNotEqual(r.returncode, 0)
                self.assertTrue(r.stderr.strip().splitlines()[-1].startswith(message), r.stderr[-500:])
                self.assertNotIn("Traceback", r.stderr)
            self.assertEqual(os.listdir(d), [])

    def test_dry_run_sizes_the_run_for_the_mesh_asked_for_and_reads_no_weights(self):
        """--dry_run on the demo VLM: bytes per device for 1 device and for fsdp:8 (this machine has neither 8
        devices nor needs them), the split state an eighth of the whole where rows divide; a bad mesh is one line."""
        def total(*flags):
            r = run("--dry_run", "--batch_size=8", "--seq_len=64", *flags)
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            rows = [line.split() for line in r.stdout.splitlines()]
            return {row[0]: float(row[1]) for row in rows if len(row) == 3 and row[2] == "GiB"}, r.stdout
        one, _ = total()
        eight, out = total("--mesh=fsdp:8", "--device_memory=0.001")
        self.assertIn("does NOT fit in 0.001 GiB", out)
        self.assertLess(eight["optimizer"], one["optimizer"] / 4)
        self.assertGreater(one["activations"], 0)
        r = run("--dry_run", "--mesh=data:0")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().splitlines()[-1], "ternarize: --mesh: 'data:0' is not AXIS:SIZE with AXIS "
                                                           "in data, fsdp")

    def test_bad_flag_is_rejected(self):
        r = run("--mode=quaternary")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--mode=quaternary", r.stderr)
        # the batch mix of the scenes applies to nothing else: refused, not silently ignored
        with tempfile.TemporaryDirectory() as d:
            docs = os.path.join(d, "docs.jsonl")
            with open(docs, "w") as f:
                f.write(json.dumps({"image": "x.png", "text": "a red circle"}) + "\n")
            r = run(f"--data={docs}", "--text_rows=4", f"--out={os.path.join(d, 'never')}")
            self.assertEqual(r.stderr.strip().splitlines()[-1], "ternarize: --text_rows: the mix of a VLM's scene "
                             "batches; a language model trains on --batch_size rows, a VLM on its own --data on 32 "
                             "documents a step")
            self.assertFalse(os.path.exists(os.path.join(d, "never")))


if __name__ == "__main__":
    absltest.main()
