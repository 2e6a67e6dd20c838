"""Data-free training text: token sequences sampled from the float model itself (LLM-QAT, arXiv 2305.17888).

The default corpus of a text-only model, which ships no data of its own. Each sequence starts from a token
drawn uniformly from the vocabulary (special tokens excluded) and continues by sampling the model's own
next-token distribution at temperature 1, so distillation sees the teacher's distribution where it puts its
mass, not a domain someone picked. Sequences are a pure function of (model, seed, row): the corpus is rebuilt
bit for bit from the installed model, and the model's licence (Apache-2.0 for SmolLM2) covers it.

For an instruction-tuned model, `chat_prefix` gives the corpus of `--data=chat`: every row starts with the
chat template's system turn and an open user turn, so the teacher writes a user message, closes it, and answers it
in its own chat format (the distribution an instruct model is used in, which plain text never shows the student).

Generation is written in shards of `batch` rows under `directory`, each atomically, so an interrupted run
resumes at the first missing shard. In a job of several processes each samples every process_count-th shard
into the shared directory, then all read the whole corpus.
"""

from __future__ import annotations

import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from ternary_vlm import atomic
from ternary_vlm.models.llama import LlamaDecoder
from ternary_vlm.train import distributed


def special_ids(tokenizer, vocab_size: int) -> set[int]:
    """Token ids that decode to nothing (control tokens): never drawn as a first token."""
    return {i for i in range(vocab_size) if not tokenizer.decode([i], skip_special_tokens=True)}


def chat_prefix(tokenizer) -> list[int]:
    """Token ids of the chat template up to an open user turn (its system turn included), or [] without one."""
    if not tokenizer.chat_template:
        return []
    marker = "\x00"
    text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], add_generation_prompt=True)
    return tokenizer.encode(text[: text.index(marker)], add_special_tokens=False)


def _sampler(model: LlamaDecoder, batch: int, length: int):
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, start, forced, key):
        """start [batch, length]: tokens fed where `forced` [length] is set, sampled elsewhere."""
        m = nnx.merge(graphdef, state)
        cache = m.init_cache(batch, length)

        def step(carry, position):
            token, cache, key = carry
            h, cache = m.hidden_states(m.embed(token[:, None]), cache, position)
            key, sub = jax.random.split(key)
            nxt = jax.random.categorical(sub, m.logits(h[:, -1]).astype(jnp.float32), axis=-1).astype(jnp.int32)
            nxt = jnp.where(forced[position + 1], start[:, position + 1], nxt)
            return (nxt, cache, key), nxt

        _, tokens = jax.lax.scan(step, (start[:, 0], cache, key), jnp.arange(length - 1, dtype=jnp.int32))
        return jnp.concatenate([start[:, :1], tokens.T], axis=1)

    return lambda start, forced, key: run(state, start, forced, key)


def generate(model: LlamaDecoder, special_ids: set[int], rows: int, length: int, directory: str,
             seed: int = 0, batch: int = 32, prefix: list[int] = ()) -> np.ndarray:
    """int32 [rows, length] sampled sequences (cached in `directory`, resumed shard by shard): each starts with
    `prefix` when one is given, else with a random non-special token."""
    if len(prefix) >= length:
        raise ValueError(f"a prefix of {len(prefix)} tokens leaves nothing to sample in rows of {length}")
    os.makedirs(directory, exist_ok=True)
    vocab = model.cfg.vocab_size
    allowed = np.asarray([i for i in range(vocab) if i not in special_ids], np.int32)
    shards = (rows + batch - 1) // batch
    kind = f"chat{zlib.crc32(np.asarray(prefix, np.int32).tobytes()):08x}-" if len(prefix) else ""
    paths = [os.path.join(directory, f"{kind}shard-{seed}-{length}-{batch}-{s:05d}.npy") for s in range(shards)]
    forced = np.zeros(length, bool)
    forced[: max(len(prefix), 1)] = True
    sample = None
    mine = range(jax.process_index(), shards, jax.process_count())
    for s in tqdm(mine, desc="teacher text", unit="shard", dynamic_ncols=True, disable=not distributed.is_main()):
        if not os.path.exists(paths[s]):
            sample = sample or _sampler(model, batch, length)
            rng = np.random.default_rng([seed, s])
            start = np.zeros((batch, length), np.int32)
            start[:, 0] = rng.choice(allowed, size=batch)  # drawn either way: a row's key is the same with a prefix
            start[:, : len(prefix)] = prefix
            key = jax.random.key(int(rng.integers(1 << 31)))
            tokens = np.asarray(sample(jnp.asarray(start), jnp.asarray(forced), key), np.int32)
            with atomic.output_file(paths[s]) as tmp:
                np.save(tmp, tokens)
    distributed.barrier("teacher text")
    return np.concatenate([np.load(p) for p in paths])[:rows]
