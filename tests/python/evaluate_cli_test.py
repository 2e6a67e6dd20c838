"""//python:evaluate against transformers: the perplexity of a tiny random Llama on a text file, windows scored
as the CLI documents, and the demo VLM's scene scores (--scenes), each computed independently with the
transformers model; and its one-line errors."""

import json
import math
import os
import shutil
import tempfile

import numpy as np
import torch
import transformers
from absl.testing import absltest

import tiny_checkpoints
from cli_runner import run_module
from ternary_vlm.checkpoints import demo_model
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.checkpoints.tokenizer import Tokenizer
from ternary_vlm.data.batches import Batcher
from ternary_vlm.train import evaluate

TEXT = "\n\n".join(f"Line {i}: the quick brown fox jumps over {i % 7} lazy dogs." for i in range(40))


def run(*flags):
    return run_module("ternary_vlm.cli.evaluate", *flags)


def reference_nll(ref, ids, window=16):
    """Summed NLL and token count of transformers model `ref` over consecutive windows, as the CLI documents."""
    nll, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(ids) - window - 1, window):
            tokens = torch.tensor([ids[s: s + window + 1]])
            logp = torch.log_softmax(ref(tokens[:, :-1]).logits.double(), -1)
            nll -= logp[0, torch.arange(window), tokens[0, 1:]].sum().item()
            count += window
    return nll, count


class EvaluateCliTest(absltest.TestCase):

    def test_perplexity_matches_transformers(self):
        with tempfile.TemporaryDirectory() as d:
            ref = tiny_checkpoints.make_llama(d, vocab_size=1024)
            for name in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(demo_model.default_checkpoint(), name), d)
            with open(os.path.join(d, "text.txt"), "w") as f:
                f.write(TEXT)
            r = run(f"--model={d}", f"--data={d}/text.txt", "--window=16", f"--json={d}/out.json")
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            got = json.load(open(os.path.join(d, "out.json")))
            tok = Tokenizer.from_directory(d)
            ids = tok.encode(TEXT, add_special_tokens=False) + [tok.eos_token_id]
            nll, count = reference_nll(ref, ids)
            self.assertEqual(got["tokens"], count)
            np.testing.assert_allclose(got["perplexity"], math.exp(nll / count), rtol=1e-5)
            self.assertIn("perplexity", r.stdout)

    def test_int8_inputs_match_transformers_with_rounded_inputs(self):
        """--int8_inputs=row / =8 against transformers whose every nn.Linear (the tied LM head included) rounds its
        input the same way (torch.round is half-to-even, as jnp.round): the rounding is the documented one. Weights
        at initializer_range 1.0 spread the logits, so that the perplexity feels the rounding."""
        with tempfile.TemporaryDirectory() as d:
            ref = tiny_checkpoints.make_llama(d, vocab_size=1024, initializer_range=1.0)
            for name in ("tokenizer.json", "tokenizer_config.json"):
                shutil.copy(os.path.join(demo_model.default_checkpoint(), name), d)
            with open(os.path.join(d, "text.txt"), "w") as f:
                f.write(TEXT)
            tok = Tokenizer.from_directory(d)
            ids = tok.encode(TEXT, add_special_tokens=False) + [tok.eos_token_id]
            for flag, group in (("row", None), ("8", 8)):
                r = run(f"--model={d}", f"--data={d}/text.txt", "--window=16", f"--int8_inputs={flag}",
                        f"--json={d}/out.json")
                self.assertEqual(r.returncode, 0, r.stderr[-2000:])
                got = json.load(open(os.path.join(d, "out.json")))

                def round_input(module, args, group=group):
                    # per row or group: s = (hi - lo) / 253 over [lo, hi] = [min(x, 0), max(x, 0)], a zero point
                    # z = round(-126.5 - lo / s), seen as s · (q - z) (cc/kernels/a8/layout.h)
                    x = args[0]
                    xs = x.reshape(*x.shape[:-1], -1, group or x.shape[-1])
                    lo, hi = xs.amin(-1, keepdim=True).clamp(max=0), xs.amax(-1, keepdim=True).clamp(min=0)
                    s = (hi - lo) / 253
                    inv = torch.where(s == 0, 0, 1 / torch.where(s == 0, 1, s))
                    z = torch.round(-126.5 - lo * inv)
                    q = torch.clamp(torch.round(xs * inv) + z, -127, 127)
                    return (((q - z) * s).reshape(x.shape),)

                hooks = [m.register_forward_pre_hook(round_input) for m in ref.modules()
                         if isinstance(m, torch.nn.Linear)]
                nll, count = reference_nll(ref, ids)
                for h in hooks:
                    h.remove()
                self.assertEqual(got["int8_inputs"], flag)
                # Float32 differences between JAX's and PyTorch's kernels (~1e-6 relative) can move an input across
                # a rounding boundary: one step s on one input of a row, a change of ~1e-4 in the
                # mean log-likelihood at most over these 112 tokens (measured: 1.6e-4 relative perplexity for
                # 'row', 2.5e-5 for groups of 8). Rounding itself moves the perplexity by ~1e-2 here (checked
                # below against the float run), ten times this tolerance.
                np.testing.assert_allclose(got["perplexity"], math.exp(nll / count), rtol=1e-3)
            r = run(f"--model={d}", f"--data={d}/text.txt", "--window=16", f"--json={d}/float.json")
            float_ppl = json.load(open(os.path.join(d, "float.json")))["perplexity"]
            self.assertGreater(abs(got["perplexity"] / float_ppl - 1), 1e-3)

    def test_scenes_match_transformers(self):
        """--scenes=N on the demo VLM: each task's first N test scenes, an answer right when every one of its tokens
        (end of turn included) is the argmax after the true prefix, caption perplexity over the answer tokens —
        recomputed here with transformers' SmolVLM in float64 on the same prompts and images."""
        n = 12
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "text.txt"), "w") as f:
                f.write(TEXT)
            r = run(f"--data={d}/text.txt", "--window=16", f"--scenes={n}", f"--json={d}/out.json")
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            got = json.load(open(os.path.join(d, "out.json")))["scenes"]
        path = demo_model.default_checkpoint()
        loaded = load_model(path)
        ref = transformers.SmolVLMForConditionalGeneration.from_pretrained(path, dtype=torch.float64).eval()
        batcher = Batcher(loaded.tokenizer, loaded.image_processor, loaded.config, max_len=evaluate.REPORT_MAX_LEN)
        self.assertEqual(got["examples"], n)
        for task in ("caption", "qa"):
            batch = batcher.scene_batch("test", range(n), lambda i: task)
            sure = unsure = 0  # answers right by a clear margin; answers a float32 rounding could decide
            nll = count = 0.0
            for row in range(n):
                answer = batch.mask[row].nonzero()[0]
                ids = batch.ids[row: row + 1, : answer.max() + 1]
                with torch.no_grad():
                    logits = ref(input_ids=torch.from_numpy(ids.astype(np.int64)),
                                 pixel_values=torch.from_numpy(batch.pixel_values[row: row + 1]).double()[None]
                                 ).logits[0, answer]
                labels = batch.labels[row, answer]
                nll -= torch.log_softmax(logits, -1)[np.arange(len(answer)), labels].sum().item()
                count += len(answer)
                logits = logits.numpy()
                # margin of the true token over the best other one, per token: > 0 where it is the argmax
                others = logits.copy()
                others[np.arange(len(answer)), labels] = -np.inf
                margin = (logits[np.arange(len(answer)), labels] - others.max(-1)).min()
                # 1e-3 in logits is 100x the float32 error of this 2M-parameter model's logits (~1e-5)
                sure += margin > 1e-3
                unsure += abs(margin) <= 1e-3
            print(f"{task}: {sure} right, {unsure} within rounding, CLI {got[task + '_correct']}")
            self.assertBetween(got[f"{task}_correct"], sure, sure + unsure)
            self.assertAlmostEqual(got[f"{task}_accuracy"], got[f"{task}_correct"] / n)
            if task == "caption":
                np.testing.assert_allclose(got["caption_ppl"], math.exp(nll / count), rtol=1e-4)
        self.assertGreater(got["caption_correct"] + got["qa_correct"], 0)  # the check above saw right answers

    def test_scenes_of_a_language_model_is_one_line(self):
        with tempfile.TemporaryDirectory() as d:
            tiny_checkpoints.make_llama(d, vocab_size=1024)
            r = run(f"--model={d}", "--scenes=4", f"--json={d}/never.json")
            self.assertEqual(r.stderr.strip().splitlines()[-1],
                             f"evaluate: --scenes: {d} is a language model (no vision tower to score on scenes)")
            self.assertFalse(os.path.exists(os.path.join(d, "never.json")))

    def test_bad_int8_inputs_is_one_line(self):
        r = run("--int8_inputs=half")
        self.assertEqual(r.stderr.strip().splitlines()[-1],
                         "evaluate: --int8_inputs=half: expected 'row' or a group size N > 0")

    def test_bad_text_is_one_line(self):
        with tempfile.TemporaryDirectory() as d:
            r = run(f"--data={d}/missing.txt")
            self.assertEqual(r.stderr.strip().splitlines()[-1], f"evaluate: {d}/missing.txt: cannot read "
                                                                "(No such file or directory)")
            with open(os.path.join(d, "bin.txt"), "wb") as f:
                f.write(b"\xff\xfe")
            r = run(f"--data={d}/bin.txt", f"--json={d}/never.json")
            self.assertEqual(r.stderr.strip().splitlines()[-1], f"evaluate: {d}/bin.txt: not UTF-8 text (byte 0)")
            self.assertEqual(sorted(os.listdir(d)), ["bin.txt"])


if __name__ == "__main__":
    absltest.main()
