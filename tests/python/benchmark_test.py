"""//python:benchmark end to end on the demo VLM with tiny settings: the JSON has every figure, and they are
plausible (sizes > 0, the ternary file smaller than fp32, tok/s > 0, perplexities >= 1, RSS above the
bare-process baseline), and the markdown section lands between its markers without touching the rest."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

VARIANTS = ("fp32", "ternary_f32")  # the exact-weight exports: logits checked against float64
ROW_FIELDS = ("variant", "weights", "export_s", "file_mb", "custom_ops", "speed", "rss_mb", "prefill_ms",
              "encode_ms", "decode_tok_s", "text_ppl", "caption_ppl", "caption_accuracy", "quality_s",
              "flax_logit_diff", "f64_logit_diff", "flax_f32_vs_f64")
SPEED_FIELDS = ("load_s", "threads", "encode_ms", "prefill_ms", "decode_ms", "decode_tok_s", "rss_mb", "vm_hwm_mb")
MODEL_FIELDS = ("model", "title", "path", "max_len", "prefill_len", "prompt_tokens", "text_ppl_tokens", "scenes",
                "params", "layers", "hidden_size", "vocab_size", "flax_float_text_ppl", "variants")


class BenchmarkTest(absltest.TestCase):

    def test_demo_tiny(self):
        tmp = tempfile.mkdtemp()
        out_json, out_png, out_md = (os.path.join(tmp, n) for n in ("b.json", "b.png", "BENCHMARKS.md"))
        with open(out_md, "w") as f:
            f.write("# Benchmarks\n\nop-level table\n\n<!-- model-benchmark -->\nold\n<!-- /model-benchmark -->\n"
                    "\ntrailing section\n")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = subprocess.run(
            [sys.executable, "-m", "ternary_vlm.cli.benchmark", "--models=demo", f"--variants={','.join(VARIANTS)}",
             "--threads=1", "--decode_steps=4", "--warmup=1", "--timing_runs=1", "--scenes=2", "--text_windows=1",
             "--text_window=32", f"--json={out_json}", f"--plot={out_png}", f"--out_md={out_md}"],
            env=env, capture_output=True, text=True, timeout=600)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        with open(out_json) as f:
            data = json.load(f)
        self.assertIn("baseline_rss_mb", data["meta"])
        model = data["models"]["demo"]
        for field in MODEL_FIELDS:
            self.assertIn(field, model)
        rows = {r["variant"]: r for r in model["variants"]}
        self.assertEqual(set(rows), set(VARIANTS))
        for name, row in rows.items():
            for field in ROW_FIELDS:
                self.assertIn(field, row, name)
            self.assertGreater(row["file_mb"], 0)
            self.assertGreater(row["rss_mb"], data["meta"]["baseline_rss_mb"])
            self.assertLess(row["rss_mb"], 1000)  # the child's own peak, not the parent's (JAX + TF: GBs)
            self.assertGreater(row["encode_ms"], 0)
            self.assertGreater(row["prefill_ms"], 0)
            self.assertGreater(row["decode_tok_s"]["1"], 0)
            for field in SPEED_FIELDS:
                self.assertIn(field, row["speed"]["1"])
            self.assertGreaterEqual(row["text_ppl"], 1.0)
            self.assertGreaterEqual(row["caption_ppl"], 1.0)
            self.assertBetween(row["caption_accuracy"], 0.0, 1.0)
            # Exact-weight exports: the export and Flax's float32 each stay near float64 arithmetic.
            self.assertLess(row["f64_logit_diff"], 1e-4, name)
            self.assertBetween(row["flax_f32_vs_f64"], 1e-9, 1e-4)
        self.assertLess(rows["ternary_f32"]["file_mb"], rows["fp32"]["file_mb"] / 3)
        self.assertGreater(rows["ternary_f32"]["custom_ops"]["decode"], 0)
        # The fp32 export runs the Flax float model: same perplexity on the same windows.
        self.assertAlmostEqual(rows["fp32"]["text_ppl"], model["flax_float_text_ppl"],
                               delta=1e-3 * model["flax_float_text_ppl"])
        self.assertGreater(os.path.getsize(out_png), 1000)
        with open(out_md) as f:
            md = f.read()
        self.assertTrue(md.startswith("# Benchmarks\n\nop-level table\n"))
        self.assertTrue(md.rstrip().endswith("trailing section"))
        self.assertNotIn("\nold\n", md)
        self.assertEqual(md.count("<!-- model-benchmark -->"), 1)
        self.assertIn("| fp32 |", md)
        self.assertIn("| ternary_f32 |", md)

    def test_a_ternarize_output_is_measured_and_labelled_with_its_training(self):
        """--demo_ternary=OUT: the row runs that output's weights and says where they came from (a continued run names
        its start)."""
        tmp = tempfile.mkdtemp()
        out, out_json = os.path.join(tmp, "demo-ternary"), os.path.join(tmp, "b.json")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = subprocess.run([sys.executable, "-m", "ternary_vlm.cli.ternarize", "--steps=1", "--eval_examples=2",
                               "--export=false", f"--out={out}"], env=env, capture_output=True, text=True, timeout=900)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        report["init_from"] = "an-earlier-output"  # as `ternarize --init_from` writes it
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump(report, f)
        proc = subprocess.run(
            [sys.executable, "-m", "ternary_vlm.cli.benchmark", "--models=demo", "--variants=ternary_f32",
             f"--demo_ternary={out}", "--threads=1", "--decode_steps=2", "--warmup=0", "--timing_runs=1",
             "--processes=1", "--scenes=0", "--text_windows=0", f"--json={out_json}"],
            env=env, capture_output=True, text=True, timeout=600)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        with open(out_json) as f:
            row = json.load(f)["models"]["demo"]["variants"][0]
        self.assertEqual(row["weights"], "ternarize output (kmeans init, 1 more QAT steps from an-earlier-output)")
        self.assertLess(row["f64_logit_diff"], 1e-4)

    def test_llama_cpp_flags_fail_in_one_line_before_any_work(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        for flags, message in ((["--llama_cpp=Q3_K"], "unknown --llama_cpp type 'Q3_K' (known: Q8_0, Q4_0, TQ2_0)"),
                               (["--models=demo", "--llama_cpp=Q4_0"], "--llama_cpp runs the whole SmolLM2 GGUF"),
                               (["--llama_cpp=Q8_0:int8"], "--llama_cpp=Q8_0:int8: after ':' comes the twin"),
                               (["--smollm2_layers=2", "--llama_cpp=Q4_0"], "no --smollm2_layers")):
            proc = subprocess.run([sys.executable, "-m", "ternary_vlm.cli.benchmark", *flags], env=env,
                                  capture_output=True, text=True, timeout=120)
            self.assertNotEqual(proc.returncode, 0)
            self.assertIn(message, proc.stderr)

    def test_llama_cpp_pin_is_in_the_lock_but_not_installed_by_setup(self):
        """llama-cpp-python is benchmark-only: pinned as a comment line, which tools/setup's reader skips."""
        from ternary_vlm.bench import llama_cpp
        pins = llama_cpp.pins()
        self.assertTrue(any(p.startswith("llama-cpp-python==") for p in pins), pins)
        lock = open(llama_cpp._LOCK).read().splitlines()
        installed = [l.split("#")[0].strip() for l in lock if l.split("#")[0].strip()]
        self.assertFalse(any(l.startswith("llama-cpp-python") for l in installed))


if __name__ == "__main__":
    absltest.main()
