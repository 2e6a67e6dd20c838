"""Next-token choice and the token loop on the host (numpy only), shared by the Flax generator
(models/decoding.py) and the LiteRT runtime, so no top_k / sort / random ops are traced or exported."""

from typing import Callable, Iterator, Sequence

import numpy as np


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Greedy for temperature <= 0, else a draw from softmax(logits / temperature)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def generate_tokens(prefill: Callable[[], np.ndarray], decode: Callable[[int, int], np.ndarray], n_prompt: int,
                    max_len: int, *, max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0,
                    stop_ids: Sequence[int] = ()) -> Iterator[int]:
    """The one token loop, of the Flax Generator and of the LiteRT Runtime alike. prefill() gives the logits
    [1, vocab] after the n_prompt prompt tokens, decode(token, position) those after one more token. Yields
    new token ids; stops after a stop id (which is yielded), after max_new_tokens, or when max_len is full."""
    logits = prefill()
    rng = np.random.default_rng(seed)
    for position in range(n_prompt, n_prompt + min(max_new_tokens, max_len - n_prompt)):
        token = sample(np.asarray(logits[0]), temperature, rng)
        yield token
        if token in stop_ids:
            return
        logits = decode(token, position)  # position < max_len: the range stops before the cache is full
