"""Masked token losses and the metrics built on them (shared by pretraining, QAT and evaluation)."""

import jax
import jax.numpy as jnp


def token_nll(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """-log p(label) per position: logits [B, T, V], labels [B, T] (the token to predict at each position)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    mask = mask.astype(jnp.float32)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def cross_entropy(logits, labels, mask):
    return masked_mean(token_nll(logits, labels), mask)


def distillation_kl(student_logits, teacher_logits, mask, temperature: float = 1.0):
    """KL(teacher || student) per position, averaged over mask, scaled by T² (Hinton et al.)."""
    t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature, axis=-1)
    s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature, axis=-1)
    kl = jnp.sum(jnp.exp(t) * (t - s), axis=-1)
    return masked_mean(kl, mask) * temperature ** 2


def exact_match(logits, labels, mask):
    """Per row: 1 where every masked position's argmax equals its label (= greedy decoding reproduces
    the whole answer, since teacher forcing feeds exactly the tokens greedy would have produced)."""
    wrong = (jnp.argmax(logits, axis=-1) != labels) & mask.astype(bool)
    return 1.0 - jnp.any(wrong, axis=-1).astype(jnp.float32)
