"""The text-only path of ternarize end to end on a tiny random Llama (transformers-written, with the demo VLM's
tokenizer), and the resume of the text recipe's own stages (sampled corpus, block-wise); the distillation
stage is train/loop.py, whose kill-and-resume train_test covers."""

import json
import os
import shutil
import tempfile
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from flax import nnx
from safetensors.numpy import load_file

import tiny_checkpoints
from cli_runner import run_module
from ternary_vlm.export import tflite
from ternary_vlm.quant import packing
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.data import teacher_text
from ternary_vlm.models.decoding import Generator
from ternary_vlm.quant import compact
from ternary_vlm.quant.apply import quantize_model
from ternary_vlm.runtime import Runtime
from ternary_vlm.train import blockwise, text_recipe


def run(*flags):
    return run_module("ternary_vlm.cli.ternarize", *flags)


class TernarizeTextTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        cls.model_dir = tiny_checkpoints.make_llama_with_tokenizer(os.path.join(cls.tmp, "tiny"))
        cls.out = os.path.join(cls.tmp, "tiny-ternary")
        cls.result = run(f"--model={cls.model_dir}", "--data=sampled", "--corpus_rows=8", "--calib_rows=8",
                         "--blockwise_steps=2", "--steps=4", "--eval_every=2", "--eval_windows=1", "--checkpoint_every=2", "--seq_len=32",
                         "--batch_size=4", "--max_len=48", "--export_variant=ternary_f32", f"--out={cls.out}")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_ternarize_export_and_run_on_litert(self):
        out = self.out
        self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
        config = json.load(open(os.path.join(out, "config.json")))
        self.assertEqual(config["model_type"], "llama")
        q = config["quantization_config"]
        self.assertLen(q["layers"], 3 * 7)
        weights = load_file(os.path.join(out, "model.safetensors"))
        packed = load_file(os.path.join(out, "quantized.safetensors"))
        for name in q["layers"]:
            codes = packing.unpack(packed[name + ".packed"], weights["model." + name + ".weight"].shape[1],
                                   packing.TERNARY)
            np.testing.assert_array_equal(weights["model." + name + ".weight"],
                                          packed[name + ".scale"][:, None] * codes.astype(np.float32))
        report = json.load(open(os.path.join(out, "report.json")))
        stages = [(p["stage"], p["step"]) for p in report["curve"]]
        self.assertEqual(stages, [("float", 0), ("init", 0), ("blockwise", 2), ("distill", 2), ("distill", 4)])
        for p in report["curve"]:
            self.assertEqual(sorted(k for k in p if k.startswith("ppl_")), ["ppl_code", "ppl_licence", "ppl_pydoc"])
        self.assertLen(report["blockwise"], 3)
        self.assertGreater(os.path.getsize(os.path.join(out, "curve.png")), 10000)
        # The exported model on LiteRT (our TernaryMatMul) continues a prompt as the ternarized Flax model does.
        loaded = load_model(out)
        prompt = loaded.tokenizer.encode("def f(x):\n    return", add_special_tokens=False)
        want = list(Generator(loaded.model).generate(prompt, max_new_tokens=12))
        got = list(Runtime(os.path.join(out, "model-ternary_f32.tflite")).generate(prompt, max_new_tokens=12))
        self.assertEqual(got, want)
        # Its compact form (codes, scales, changed tensors) rebuilds the same directory from the base model.
        compact_dir = os.path.join(self.tmp, "compact")
        compact.write(out, self.model_dir, compact_dir)
        self.assertCountEqual(os.listdir(compact_dir), ["quantized.safetensors", "changed.safetensors",
                                                         "config.json", "report.json", "report.md"])
        changed = load_file(os.path.join(compact_dir, "changed.safetensors"))
        self.assertTrue(changed and all("norm" in k for k in changed), list(changed))  # gains trained, embeddings not
        os.environ["TERNARY_VLM_CACHE"] = os.path.join(self.tmp, "cache")
        rebuilt = compact.materialize_dir(compact_dir, "tiny-ternary")
        self.assertEqual(load_file(os.path.join(rebuilt, "model.safetensors")).keys(), weights.keys())
        for k, v in load_file(os.path.join(rebuilt, "model.safetensors")).items():
            np.testing.assert_array_equal(v, weights[k], err_msg=k)
        self.assertEqual(compact.materialize_dir(compact_dir, "tiny-ternary"), rebuilt)  # cached

    def test_init_from_continues_an_output_where_it_ended(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
        out = os.path.join(self.tmp, "tiny-ternary-more")
        r = run(f"--model={self.model_dir}", f"--init_from={self.out}", "--data=sampled", "--corpus_rows=8", "--steps=2",
                "--eval_windows=1", "--seq_len=32", "--batch_size=4", "--max_len=48", "--int8_inputs=row",
                f"--out={out}")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        before = json.load(open(os.path.join(self.out, "report.json")))
        report = json.load(open(os.path.join(out, "report.json")))
        # The student starts as the output it continues, bit for bit: same perplexities as where that one ended.
        init = next(p for p in report["curve"] if p["stage"] == "init")
        for k, v in before["after_qat"].items():
            self.assertAlmostEqual(init[k], v, delta=1e-5 * v, msg=k)
        self.assertEqual([p["stage"] for p in report["curve"]], ["float", "init", "distill"])
        # --int8_inputs=row trains through the export's rounding; every curve point also scores the texts that way.
        self.assertEqual(report["recipe"]["int8_group"], 0)
        for p in report["curve"]:
            for text in ("code", "licence", "pydoc"):
                self.assertNotEqual(p[f"ppl_{text}_int8"], p[f"ppl_{text}"], msg=(p["stage"], text))
        self.assertEqual(report["init_from"], self.out)
        self.assertEqual(json.load(open(os.path.join(out, "config.json")))["quantization_config"]["init"], "kmeans")
        # Two steps at the default rate move some latent weights across a threshold, but not most of them.
        old, new = load_file(os.path.join(self.out, "model.safetensors")), load_file(os.path.join(out, "model.safetensors"))
        changed = [k for k in old if not np.array_equal(old[k], new[k])]
        self.assertTrue(changed)
        self.assertFalse(any("embed_tokens" in k for k in changed), changed)
        # With no --export_variant the file is the fast export: every TernaryMatMul takes int8 activations (W2A8).
        content = open(os.path.join(out, "model-ternary.tflite"), "rb").read()
        parsed = tflite.read_model(content)
        options = [None if o.customOptions is None else bytes(list(o.customOptions)) for g in parsed.subgraphs
                   for o in g.operators if tflite.opcode_name(parsed, o) == "TernaryMatMul"]
        self.assertLen(options, 2 * 3 * 4)  # prefill and decode: q/k/v, o, gate/up, down (concat_projections.py)
        # (each layer's down projection also computes its MLP's silu(gate) · up, the q/k/v and gate/up ops their
        # RMSNorm: export/tflite/glu.py, rms_norm.py)
        self.assertEqual(Counter(options), {b"activations=int8": 2 * 3, b"activations=int8,glu=silu": 2 * 3,
                                            b"activations=int8,norm=rms": 2 * 3 * 2})

    def test_bad_int8_inputs_is_one_line_before_any_work(self):
        r = run(f"--model={self.model_dir}", "--int8_inputs=0", f"--out={os.path.join(self.tmp, 'refused')}")
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().splitlines()[-1],
                         "ternarize: --int8_inputs=0: expected 'row' or a group size N > 0")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "refused")))

    def test_init_from_refuses_another_mode_or_model(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
        r = run(f"--model={self.model_dir}", f"--init_from={self.out}", "--mode=binary", "--data=sampled",
                "--corpus_rows=8", "--steps=0", "--eval_windows=1", f"--out={os.path.join(self.tmp, 'refused')}")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"--init_from={self.out}: {self.out}/config.json is not a binary ternarize output "
                      f"(quantization_config.mode 'ternary')", r.stderr)
        r = run(f"--model={self.model_dir}", f"--init_from={self.model_dir}", "--steps=0",
                f"--out={os.path.join(self.tmp, 'refused')}")  # a float checkpoint: nothing to continue
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stderr.strip().splitlines()[-1],
                         f"ternarize: --init_from={self.model_dir}: {self.model_dir}/config.json is not a ternary "
                         f"ternarize output (quantization_config.mode None)")
        self.assertNotIn("Traceback", r.stderr)
        other = tiny_checkpoints.make_llama_with_tokenizer(os.path.join(self.tmp, "other"), hidden_size=36)
        r = run(f"--model={other}", f"--init_from={self.out}", "--data=sampled", "--corpus_rows=8", "--steps=0",
                "--eval_windows=1", f"--out={os.path.join(self.tmp, 'refused')}")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not a ternarization of it", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "refused")))

    def test_default_data_is_the_installed_text(self):
        out = os.path.join(self.tmp, "installed")
        r = run(f"--model={self.model_dir}", "--steps=0", "--eval_windows=1", "--export=false", f"--out={out}")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertRegex(r.stderr, r"--data=installed: \d+ training rows of 256 tokens, \d+ held-out documents")
        report = json.load(open(os.path.join(out, "report.json")))
        self.assertEqual(report["data"], "installed")
        self.assertEqual(set(report["after_init"]), {"ppl_pydoc", "ppl_code", "ppl_licence", "ppl_data"})
        r = run("--data=chat", "--steps=0", f"--out={os.path.join(self.tmp, 'vlm')}")  # the demo VLM
        self.assertEqual(r.stderr.strip().splitlines()[-1], "ternarize: --data=chat: a VLM trains on the scenes with "
                         "text rows from `installed` (or pydoc's train split), or on image-text --data; the other "
                         "corpora are for language models")

    def test_corpora_mix_and_chat_needs_a_template(self):
        out = os.path.join(self.tmp, "mixed")
        r = run(f"--model={self.model_dir}", "--data=installed,chat", "--corpus_rows=4", "--corpus_batch=4",
                "--steps=1", "--eval_windows=1", "--seq_len=32", "--batch_size=2", "--export=false", f"--out={out}")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(json.load(open(os.path.join(out, "report.json")))["data"], "installed,chat")
        shards = os.listdir(os.path.join(out + ".checkpoints", "teacher_text"))
        self.assertTrue(shards and all(s.startswith("chat") for s in shards), shards)
        plain = os.path.join(self.tmp, "plain")  # the same tiny model, its tokenizer without a chat template
        shutil.copytree(self.model_dir, plain)
        config = json.load(open(os.path.join(plain, "tokenizer_config.json")))
        del config["chat_template"]
        json.dump(config, open(os.path.join(plain, "tokenizer_config.json"), "w"))
        r = run(f"--model={plain}", "--data=chat", "--steps=0", f"--out={os.path.join(self.tmp, 'refused')}")
        self.assertEqual(r.stderr.strip().splitlines()[-1], f"ternarize: --data=chat: {plain} has no chat template")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "refused")))


class CorpusTest(absltest.TestCase):

    def test_batches_draw_from_each_source_in_turn(self):
        a = np.arange(0, 3 * 256).reshape(3, 256)
        b = np.arange(10000, 10000 + 5 * 256).reshape(5, 256)
        batch = text_recipe.row_batch([a, b], step=3, batch=4, seq_len=16)
        self.assertEqual(batch["ids"].shape, (4, 16))
        for i, row in enumerate(batch["ids"]):
            source = (a, b)[i % 2]
            self.assertTrue(np.isin(row, source).all())
            np.testing.assert_array_equal(np.diff(row), 1)  # one contiguous window of one row
            np.testing.assert_array_equal(batch["labels"][i], row + 1)
        # One source: the batches of the runs documented before corpora could be mixed (docs/RESULTS.md).
        rng = np.random.default_rng([0, 7, 3])
        r, o = rng.integers(0, 5, size=4), rng.integers(0, 256 - 16, size=4)
        np.testing.assert_array_equal(text_recipe.row_batch([b], 3, 4, 16)["ids"],
                                      np.stack([b[i, j: j + 16] for i, j in zip(r, o)]))


class StageResumeTest(absltest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        self.loaded = load_model(tiny_checkpoints.make_llama_with_tokenizer(os.path.join(self.tmp, "tiny")))

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def test_sampled_corpus_resumes_shard_by_shard(self):
        directory = os.path.join(self.tmp, "corpus")
        full = teacher_text.generate(self.loaded.model, {0, 1}, 10, 16, directory, batch=4)
        self.assertEqual(full.shape, (10, 16))
        self.assertFalse(np.isin(full[:, 0], [0, 1]).any())  # first tokens drawn without special ids
        shards = sorted(os.listdir(directory))
        self.assertLen(shards, 3)
        os.remove(os.path.join(directory, shards[1]))  # as if killed while writing the second shard
        np.testing.assert_array_equal(teacher_text.generate(self.loaded.model, {0, 1}, 10, 16, directory, batch=4),
                                      full)

    def test_chat_corpus_rows_open_with_the_chat_template(self):
        prefix = teacher_text.chat_prefix(self.loaded.tokenizer)
        text = self.loaded.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
        self.assertTrue(prefix and text.startswith(self.loaded.tokenizer.decode(prefix, skip_special_tokens=False)))
        directory = os.path.join(self.tmp, "corpus")
        sampled = teacher_text.generate(self.loaded.model, {0, 1}, 8, 16, directory, batch=4)
        chat = teacher_text.generate(self.loaded.model, {0, 1}, 8, 16, directory, batch=4, prefix=prefix)
        np.testing.assert_array_equal(chat[:, : len(prefix)], np.tile(prefix, (8, 1)))
        self.assertGreater(len({tuple(r) for r in chat[:, len(prefix):]}), 1)  # sampled after it
        self.assertLen(os.listdir(directory), 4)  # both corpora kept side by side, neither read as the other
        np.testing.assert_array_equal(teacher_text.generate(self.loaded.model, {0, 1}, 8, 16, directory, batch=4),
                                      sampled)
        with self.assertRaisesRegex(ValueError, "leaves nothing to sample"):
            teacher_text.generate(self.loaded.model, {0, 1}, 8, len(prefix), directory, batch=4, prefix=prefix)

    def test_blockwise_resumes_after_a_kill_between_blocks(self):
        ids = np.random.default_rng(0).integers(0, 1024, size=(8, 16)).astype(np.int32)

        def student():
            model = nnx.clone(self.loaded.model)
            quantize_model(model, "ternary", "kmeans", [], 3)
            return model

        cfg = blockwise.BlockwiseConfig(steps=3, batch=4, learning_rate=1e-2)
        uninterrupted = student()
        history = blockwise.train_blocks(uninterrupted, self.loaded.model, ids, cfg)
        self.assertLen(history, 3)
        for h in history:  # each block's reconstruction improves on its own calibration rows
            self.assertLess(h["after"], h["before"])

        cfg = blockwise.BlockwiseConfig(steps=3, batch=4, learning_rate=1e-2,
                                        checkpoint_dir=os.path.join(self.tmp, "blocks"))
        original_save = blockwise._Checkpoints.save

        def save_then_die(self_, done, model):
            original_save(self_, done, model)
            if done == 2:
                raise KeyboardInterrupt("killed")

        blockwise._Checkpoints.save = save_then_die
        try:
            with self.assertRaises(KeyboardInterrupt):
                blockwise.train_blocks(student(), self.loaded.model, ids, cfg)
        finally:
            blockwise._Checkpoints.save = original_save
        resumed = student()
        rest = blockwise.train_blocks(resumed, self.loaded.model, ids, cfg)
        self.assertEqual([h["block"] for h in rest], [2])
        # Each save holds its own block only: the three steps together are smaller than one whole student.
        saved = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(cfg.checkpoint_dir) for f in files)
        self.assertLess(saved, sum(np.asarray(x).nbytes for x in jax.tree.leaves(nnx.state(resumed))))
        for a, b in zip(jax_leaves(uninterrupted), jax_leaves(resumed)):
            np.testing.assert_array_equal(a, b)
        x = jnp.asarray(ids[:2])
        np.testing.assert_array_equal(np.asarray(uninterrupted(x)[0]), np.asarray(resumed(x)[0]))


def jax_leaves(model):
    return [np.asarray(leaf) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))]


if __name__ == "__main__":
    absltest.main()
