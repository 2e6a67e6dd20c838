"""Real English text available offline: CPython's pydoc topics (the language reference), split into
paragraphs and deterministically into train / validation / test (every 10th paragraph is validation,
every 10th + 1 is test). pydoc repeats some paragraphs under several topics (44 of the 131 test paragraphs have
a copy elsewhere): train leaves out every paragraph that is also held out, so no held-out text is trained on."""

from __future__ import annotations

import re


def paragraphs() -> list[str]:
    from pydoc_data import topics
    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    out = []
    for p in re.split(r"\n\s*\n", text):
        p = " ".join(p.split())
        if len(p) >= 80 and not p.startswith(("*", ">>>", "...")):
            out.append(p)
    return out


def split(name: str) -> list[str]:
    offsets = {"train": None, "validation": 0, "test": 1}
    if name not in offsets:
        raise ValueError(f"unknown split {name!r} (known: {', '.join(offsets)})")
    ps = paragraphs()
    if name == "train":
        heldout = {p for i, p in enumerate(ps) if i % 10 in (0, 1)}
        return [p for i, p in enumerate(ps) if i % 10 not in (0, 1) and p not in heldout]
    return [p for i, p in enumerate(ps) if i % 10 == offsets[name]]
