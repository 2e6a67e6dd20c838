"""Next-token choice on the host (numpy only), shared by the Flax generator and the LiteRT runtime, so
no top_k / sort / random ops are traced or exported."""

import numpy as np


def sample(logits: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Greedy for temperature <= 0, else a draw from softmax(logits / temperature)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))
