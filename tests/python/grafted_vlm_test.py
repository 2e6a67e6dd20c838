"""A vision tower grafted onto the real SmolLM2-135M (checkpoints/grafted_vlm.py, cli/pretrain_vlm.py): the
directory it writes loads in transformers with the same logits, the decoder is untouched (its text logits are the
base model's), the prompt format is SmolLM2's ChatML with SmolVLM's image expansion, the compact form rebuilds the
directory bit for bit and refuses a trained decoder, and the CLI trains, resumes and writes on a tiny decoder."""

import json
import os
import tempfile
from unittest import mock

import jax.numpy as jnp
import numpy as np
import torch
import transformers
from absl.testing import absltest
from PIL import Image
from safetensors.numpy import load_file, save_file

import cli_runner
import tiny_checkpoints
from ternary_vlm.checkpoints import grafted_vlm, model_path, writer
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.data import scenes
from ternary_vlm.data.batches import Batcher
from ternary_vlm.errors import CheckpointError
from ternary_vlm.models import layers
from ternary_vlm.quant import apply, artifact, compact
from ternary_vlm.quant.layers import QuantLinear


def float32_bound(max_logit: float, k: int, layers: int) -> float:
    """The rounding error float32 puts on logits against exact arithmetic: u·sqrt(K)·sqrt(L)·max|logit| (the
    argument is smollm2_gguf_test.float32_bound's)."""
    return 2.0 ** -24 * np.sqrt(k) * np.sqrt(layers) * max_logit


class GraftedSmolLM2Test(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        # Named models (smollm2-ternary) are rebuilt here, not in ~/.cache: read-only in Bazel's sandbox, and a
        # test must not depend on what earlier runs left there.
        cls.cache = mock.patch.dict(os.environ, {"TERNARY_VLM_CACHE": os.path.join(cls.tmp.name, "cache")})
        cls.cache.start()
        cls.base = load_model(model_path("smollm2"))
        cls.model, cls.config, cls.tok = grafted_vlm.graft(cls.base, seed=3)
        cls.dir = os.path.join(cls.tmp.name, "smollm2-vlm")
        writer.save_directory(cls.model, cls.config, cls.dir, lambda d: grafted_vlm.write_files(d, cls.tok))
        cls.loaded = load_model(cls.dir)
        cls.batcher = Batcher(cls.loaded.tokenizer, cls.loaded.image_processor, cls.loaded.config, max_len=64)

    @classmethod
    def tearDownClass(cls):
        cls.cache.stop()
        cls.tmp.cleanup()

    def test_tokens_and_prompt_format(self):
        self.assertEqual([self.tok.token_to_id(t) for t in grafted_vlm.IMAGE_TOKENS], [49152, 49153, 49154])
        self.assertEqual(self.config["text_config"]["vocab_size"], 49155)
        self.assertEqual(self.config["image_token_id"], 49154)
        example = scenes.example(0, "test", 5)
        prompt, answer, pixels = self.batcher.scene_row(example, "caption")
        text = self.loaded.tokenizer.decode(prompt + answer, skip_special_tokens=False)
        image = "<fake_token_around_image><global-img>" + "<image>" * 9 + "<fake_token_around_image>"
        self.assertEqual(text, f"<|im_start|>user\n{image}Describe the image.<|im_end|>\n<|im_start|>assistant\n"
                               f"{example.caption}<|im_end|>")
        self.assertEqual(pixels.shape, (1, 3, 48, 48))

    def test_decoder_untouched(self):
        ids = jnp.asarray([self.base.tokenizer.encode("The capital of France is Paris, and")])
        want, _ = self.base.model.hidden_states(self.base.model.embed(ids))
        got, _ = self.loaded.model.text_model.hidden_states(self.loaded.model.embed(ids))
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
        want_logits, got_logits = np.asarray(self.base.model.logits(want)), np.asarray(self.loaded.model.text_model.logits(got))
        self.assertEqual(got_logits.shape[-1], 49155)
        table = np.asarray(self.base.model.embed_tokens.weight[...])
        np.testing.assert_array_equal(np.asarray(self.loaded.model.text_model.embed_tokens.weight[...])[:49152], table)
        # The same rows of one table times the same hidden states; only the GEMM's blocking (N = 49155 vs 49152, and
        # the ISA's: XLA's AVX2 and AVX-512 kernels block differently) may sum the K = 576 products in another order.
        # Any order's float32 sum lies within γ_K·Σ_k |h_k·w_k| of the exact one (γ_K = K·u / (1 − K·u), Higham,
        # Accuracy and Stability §3.1), so two orders differ by at most twice that, element by element. (A random-walk
        # estimate, u·sqrt(K)·max|logit|, was exceeded by 2 % at one of 393216 logits on an AVX2-only CPU.)
        k, u = 576, 2.0**-24
        bound = 2 * k * u / (1 - k * u) * (np.abs(np.asarray(want, np.float64)) @ np.abs(table.astype(np.float64)).T)
        self.assertTrue(np.all(np.abs(got_logits[..., :49152] - want_logits) <= bound))
        # The added rows are the mean embedding: their logits stay below every real token's best.
        self.assertTrue((got_logits[..., 49152:].max(-1) < want_logits.max(-1)).all())

    def test_transformers_loads_it_with_the_same_logits(self):
        batch = self.batcher.scene_batch("test", range(3), lambda i: ("caption", "qa")[i % 2])
        refs = {dtype: transformers.SmolVLMForConditionalGeneration.from_pretrained(self.dir, dtype=dtype).eval()
                for dtype in (torch.float32, torch.float64)}
        text, vision = self.config["text_config"], self.config["vision_config"]
        for row in range(3):
            # The example's own tokens, up to its end of turn: the padding after it (repeated <|endoftext|>) is no
            # input anyone feeds, and there both float32 runs drift from float64 by up to 3e-3.
            ids = batch.ids[row: row + 1, : int(batch.mask[row].nonzero()[0].max()) + 1]
            pixels = batch.pixel_values[row: row + 1]
            with torch.no_grad():
                want, exact = (refs[t](input_ids=torch.from_numpy(ids.astype(np.int64)),
                                       pixel_values=torch.from_numpy(pixels).to(t)[None]).logits.float().numpy()
                               for t in (torch.float32, torch.float64))
            got = np.asarray(self.loaded.model(jnp.asarray(ids), jnp.asarray(pixels))[0])
            # transformers in float64 stands in for exact arithmetic; each float32 run is within the bound of it
            # (K up to the MLP's 1536, the vision blocks counted with the decoder's).
            bound = float32_bound(np.abs(exact).max(), text["intermediate_size"],
                                  text["num_hidden_layers"] + vision["num_hidden_layers"])
            ours, theirs = np.abs(got - exact).max(), np.abs(want - exact).max()
            print(f"row {row}: max |logit| {np.abs(exact).max():.1f}, vs float64: ours {ours:.2e}, transformers "
                  f"float32 {theirs:.2e}, bound {bound:.2e}")
            self.assertLessEqual(theirs, bound)
            self.assertLessEqual(ours, bound)

    def test_compact_form_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            compact = os.path.join(d, "compact")
            grafted_vlm.write_compact(self.dir, "smollm2", compact)
            self.assertEqual(sorted(os.listdir(compact)), ["config.json", "graft.safetensors",
                                                           "preprocessor_config.json"])
            size = os.path.getsize(os.path.join(compact, "graft.safetensors"))
            self.assertLess(size, 12e6)  # vision tower + connector (2.3 M floats) + 3 rows, not the 540 MB decoder
            with mock.patch.dict(os.environ, {"TERNARY_VLM_CACHE": os.path.join(d, "cache")}):
                rebuilt = grafted_vlm.materialize("test-vlm", compact)
            want, got = load_file(os.path.join(self.dir, "model.safetensors")), \
                load_file(os.path.join(rebuilt, "model.safetensors"))
            self.assertEqual(sorted(want), sorted(got))
            for name in want:
                np.testing.assert_array_equal(got[name], want[name], err_msg=name)
            self.assertEqual(self.tok.encode("<image>hello"), load_model(rebuilt).tokenizer.encode("<image>hello"))

            # A decoder that training moved cannot be given back by the base: refused, naming the tensor.
            moved = os.path.join(d, "moved")
            os.makedirs(moved)
            tensors = dict(want)
            tensors["model.text_model.norm.weight"] = tensors["model.text_model.norm.weight"] * 1.01
            save_file(tensors, os.path.join(moved, "model.safetensors"))
            json.dump(self.config, open(os.path.join(moved, "config.json"), "w"))
            with self.assertRaisesRegex(CheckpointError, "model.text_model.norm.weight differs from smollm2"):
                grafted_vlm.write_compact(moved, "smollm2", os.path.join(d, "never"))
            self.assertFalse(os.path.exists(os.path.join(d, "never")))

    def test_train_batch_text_rows_come_from_the_stream_given(self):
        """ternarize --data=installed for a VLM: the text rows beside the scenes are windows of that token stream
        (inputs, next-token labels, every position counted); without one, of pydoc's train split."""
        stream = np.arange(5000, 9000, dtype=np.int32)
        for text_ids, source in ((stream, stream), (None, self.batcher.text_ids("train"))):
            b = self.batcher.train_batch(7, 2, 3, text_ids)
            self.assertEqual(b.ids.shape, (5, 64))
            self.assertLen(b.pixel_values, 2)
            for row in range(2, 5):
                starts = [s for s in np.nonzero(source[: len(source) - 64] == b.ids[row, 0])[0]
                          if np.array_equal(source[s: s + 64], b.ids[row])]
                self.assertTrue(starts, row)
                np.testing.assert_array_equal(b.labels[row], source[starts[0] + 1: starts[0] + 65])
                np.testing.assert_array_equal(b.mask[row], np.ones(64, np.float32))

    def test_decoder_starts_from_the_ternary_smollm2(self):
        """ternarize --text_init_from: the decoder becomes the shipped ternary SmolLM2 (codes, scales, norm gains);
        the image tokens' embedding rows stay the graft's."""
        vlm, _, _ = grafted_vlm.graft(self.base, seed=3)
        added = np.asarray(vlm.text_model.embed_tokens.weight[...])[49152:]
        directory = model_path("smollm2-ternary")
        reports = apply.continue_from(vlm.text_model, directory, "ternary", prefix="text_model.")
        self.assertLen(reports, 30 * 7)
        want = {layer.name: layer for layer in artifact.read(load_model(directory).model, directory)}
        for _, q in layers.iter_linears(vlm, QuantLinear):
            self.assertTrue(q.name.startswith("text_model."), q.name)
            layer = want[q.name.removeprefix("text_model.")]
            np.testing.assert_array_equal(q.codes(), layer.codes, err_msg=q.name)
            np.testing.assert_array_equal(np.asarray(q.scale[...]), layer.scale, err_msg=q.name)
        trained = load_file(os.path.join(directory, "model.safetensors"))
        np.testing.assert_array_equal(np.asarray(vlm.text_model.norm.weight[...]), trained["model.norm.weight"])
        embedding = np.asarray(vlm.text_model.embed_tokens.weight[...])
        np.testing.assert_array_equal(embedding[:49152], trained["model.embed_tokens.weight"])
        np.testing.assert_array_equal(embedding[49152:], added)


class PretrainCliTest(absltest.TestCase):

    def test_trains_resumes_and_writes_a_directory_transformers_loads(self):
        with tempfile.TemporaryDirectory() as d:
            lm = tiny_checkpoints.make_llama_with_tokenizer(os.path.join(d, "lm"))
            out = os.path.join(d, "vlm")
            flags = [f"--language_model={lm}", "--scene_rows=4", "--eval_examples=8", "--max_len=64",
                     "--checkpoint_every=1", f"--out={out}"]
            first = cli_runner.run_module("ternary_vlm.cli.pretrain_vlm", "--steps=2", *flags)
            self.assertEqual(first.returncode, 0, first.stderr[-3000:])
            second = cli_runner.run_module("ternary_vlm.cli.pretrain_vlm", "--steps=3", *flags)
            self.assertEqual(second.returncode, 0, second.stderr[-3000:])
            self.assertIn("resumed from the checkpoint at micro-step 2", second.stderr + second.stdout)
            scores = json.load(open(os.path.join(out, "scores.json")))
            self.assertEqual(set(scores) - {"eval_examples", "seed", "max_len"},
                             {"caption_accuracy", "qa_accuracy", "caption_ppl", "text_ppl"})

            # The decoder stayed frozen: its tensors are the tiny LM's own.
            base, trained = load_file(os.path.join(lm, "model.safetensors")), \
                load_file(os.path.join(out, "model.safetensors"))
            np.testing.assert_array_equal(trained["model.text_model.layers.0.mlp.up_proj.weight"],
                                          base["model.layers.0.mlp.up_proj.weight"])
            loaded = load_model(out)
            ref = transformers.SmolVLMForConditionalGeneration.from_pretrained(out).eval()
            batcher = Batcher(loaded.tokenizer, loaded.image_processor, loaded.config, max_len=64)
            prompt, _, pixels = batcher.image_row(Image.new("RGB", (48, 48), (200, 30, 30)), "Describe the image.", "")
            with torch.no_grad():
                want = ref(input_ids=torch.tensor([prompt]), pixel_values=torch.from_numpy(pixels)[None]).logits.numpy()
            got, _ = loaded.model(jnp.asarray([prompt]), jnp.asarray(pixels))
            self.assertLess(float(np.abs(np.asarray(got) - want).max()), 1e-4)

            # ternarize the tiny decoder alone, then the VLM with its decoder started from that output
            text_out, vlm_out = os.path.join(d, "lm-ternary"), os.path.join(d, "vlm-ternary")
            r = cli_runner.run_module("ternary_vlm.cli.ternarize", f"--model={lm}", "--data=sampled", "--corpus_rows=8",
                                      "--steps=0", "--eval_windows=1", "--export=false", f"--out={text_out}")
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            r = cli_runner.run_module("ternary_vlm.cli.ternarize", f"--model={out}", f"--text_init_from={text_out}",
                                      "--data=installed", "--scene_rows=4", "--text_rows=3", "--steps=2",
                                      "--learning_rate=1e-2", "--eval_examples=8", "--export=false", f"--out={vlm_out}")
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            joint_report = json.load(open(os.path.join(vlm_out, "report.json")))
            self.assertEqual((joint_report["data"], joint_report["scene_rows"], joint_report["text_rows"]),
                             ("installed", 4, 3))
            # The decoder trained (its norm gains moved), the embedding and tied head did not: they stay the graft's,
            # which the compact form re-derives from the base instead of storing them.
            graft_w, joint_w = (load_file(os.path.join(o, "model.safetensors")) for o in (out, vlm_out))
            self.assertGreater(np.abs(joint_w["model.text_model.norm.weight"] - load_file(os.path.join(
                text_out, "model.safetensors"))["model.norm.weight"]).max(), 0)
            np.testing.assert_array_equal(joint_w["model.text_model.embed_tokens.weight"],
                                          graft_w["model.text_model.embed_tokens.weight"])
            text_q, vlm_q = (json.load(open(os.path.join(o, "config.json")))["quantization_config"]["layers"]
                             for o in (text_out, vlm_out))
            self.assertEqual(sorted(n for n in vlm_q if n.startswith("text_model.")),
                             sorted("text_model." + n for n in text_q))
            self.assertTrue(any(n.startswith("vision_model.") for n in vlm_q))
            self.assertEqual(json.load(open(os.path.join(vlm_out, "report.json")))["text_init_from"], text_out)
            # --freeze_decoder: QAT moves the vision tower only; the decoder's codes, scales and gains stay the text
            # output's, so the compact form takes them from it and stores the vision tower alone.
            frozen_out = os.path.join(d, "vlm-ternary-frozen")
            r = cli_runner.run_module("ternary_vlm.cli.ternarize", f"--model={out}", f"--text_init_from={text_out}",
                                      "--freeze_decoder", "--steps=3", "--learning_rate=1e-2", "--eval_examples=8",
                                      "--export=false", f"--out={frozen_out}")
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            text_packed = load_file(os.path.join(text_out, "quantized.safetensors"))
            frozen_packed = load_file(os.path.join(frozen_out, "quantized.safetensors"))
            for name, t in text_packed.items():
                np.testing.assert_array_equal(frozen_packed["text_model." + name], t, err_msg=name)
            text_w, frozen_w, trained_w = (load_file(os.path.join(o, "model.safetensors"))
                                           for o in (text_out, frozen_out, vlm_out))
            np.testing.assert_array_equal(frozen_w["model.text_model.norm.weight"], text_w["model.norm.weight"])
            # the vision tower did train: its weights (α·t, α trained) moved away from the 1-step run's
            vision = [k for k in frozen_w if k.startswith("model.vision_model.")]
            self.assertTrue(any(np.abs(frozen_w[k] - trained_w[k]).max() > 0 for k in vision))
            # --init_from a frozen-decoder output trains its vision tower further, the decoder still the text output's
            further_out = os.path.join(d, "vlm-ternary-further")
            r = cli_runner.run_module("ternary_vlm.cli.ternarize", f"--model={out}", f"--init_from={frozen_out}",
                                      "--freeze_decoder", "--steps=2", "--learning_rate=1e-2", "--eval_examples=8",
                                      "--export=false", f"--out={further_out}")
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            further_packed = load_file(os.path.join(further_out, "quantized.safetensors"))
            for name, t in text_packed.items():
                np.testing.assert_array_equal(further_packed["text_model." + name], t, err_msg=name)
            further_w = load_file(os.path.join(further_out, "model.safetensors"))
            np.testing.assert_array_equal(further_w["model.text_model.norm.weight"], text_w["model.norm.weight"])
            self.assertTrue(any(np.abs(further_w[k] - frozen_w[k]).max() > 0 for k in vision))
            compact.write(further_out, out, os.path.join(d, "vlm-ternary-further-compact"), text_layers_from=text_out)
            compact_dir = os.path.join(d, "vlm-ternary-compact")
            compact.write(frozen_out, out, compact_dir, text_layers_from=text_out)
            stored = load_file(os.path.join(compact_dir, "quantized.safetensors"))
            self.assertTrue(stored and not any(k.startswith("text_model.") for k in stored), sorted(stored))
            with mock.patch.dict(os.environ, {"TERNARY_VLM_CACHE": os.path.join(d, "cache")}):
                rebuilt = compact.materialize_dir(compact_dir, "tiny-vlm-ternary")
                for f in ("model.safetensors", "quantized.safetensors"):
                    want, got = (load_file(os.path.join(o, f)) for o in (frozen_out, rebuilt))
                    self.assertEqual(sorted(got), sorted(want), f)
                    for k in want:
                        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
                self.assertEqual(load_model(rebuilt).tokenizer.encode("a red circle"),
                                 load_model(frozen_out).tokenizer.encode("a red circle"))
                # a text output changed since is refused, not silently used
                save_file({k: v + 1 if k.endswith(".scale") else v for k, v in text_packed.items()},
                          os.path.join(text_out, "quantized.safetensors"))
                with self.assertRaisesRegex(CheckpointError, "its decoder layers come from .* which has changed"):
                    compact.materialize_dir(compact_dir, "tiny-vlm-ternary")
            r = cli_runner.run_module("ternary_vlm.cli.ternarize", f"--model={out}", f"--text_init_from={text_out}",
                                      "--freeze_decoder", "--data=installed", f"--out={os.path.join(d, 'never')}")
            self.assertEqual(r.stderr.strip().splitlines()[-1], "ternarize: --data=installed gives text rows to train "
                             "the decoder, which --freeze_decoder keeps")
            r = cli_runner.run_module("ternary_vlm.cli.ternarize", f"--model={out}", f"--text_init_from={text_out}",
                                      "--freeze_decoder", "--text_rows=4", f"--out={os.path.join(d, 'never')}")
            self.assertEqual(r.stderr.strip().splitlines()[-1], "ternarize: --text_rows trains the decoder, which "
                             "--freeze_decoder keeps")
            r = cli_runner.run_module("ternary_vlm.cli.ternarize", f"--model={out}", "--freeze_decoder", "--steps=0",
                                      f"--out={os.path.join(d, 'never')}")
            self.assertEqual(r.stderr.strip().splitlines()[-1],
                             "ternarize: --freeze_decoder keeps the decoder of --text_init_from or --init_from; "
                             "give one")
            r = cli_runner.run_module("ternary_vlm.cli.ternarize", f"--model={lm}", f"--init_from={text_out}",
                                      "--freeze_decoder", "--steps=0", f"--out={os.path.join(d, 'never')}")
            self.assertEqual(r.stderr.strip().splitlines()[-1], f"ternarize: --freeze_decoder trains a VLM's vision "
                             f"tower alone; {lm} is a language model")
            r = cli_runner.run_module("ternary_vlm.cli.ternarize", f"--model={lm}", f"--text_init_from={text_out}",
                                      "--steps=0", f"--out={os.path.join(d, 'never')}")
            self.assertEqual(r.stderr.strip().splitlines()[-1], f"ternarize: --text_init_from is for a VLM grafted "
                             f"onto a language model; {lm} is a language model itself")

            bad = cli_runner.run_module("ternary_vlm.cli.pretrain_vlm", "--text_rows=4", *flags)
            self.assertNotEqual(bad.returncode, 0)
            self.assertEqual(bad.stderr.strip().splitlines()[-1],
                             "pretrain_vlm: --text_rows trains the decoder, which a grafted VLM keeps frozen")


if __name__ == "__main__":
    absltest.main()
