"""Held-out texts for language-model perplexity, three kinds, all on every machine that runs the project and
none used for training (the default text corpus, data/installed_text.py, leaves them out):

  pydoc    technical English: the test split of CPython's pydoc topics (data/text.py), the benchmark's text
  code     Python source: CPython's textwrap, fractions, statistics and difflib modules, as installed
  licence  legal English prose: the GNU GPL version 3 as Debian ships it (/usr/share/common-licenses)
"""

from __future__ import annotations

import importlib
import os

from ternary_vlm.data import text

NAMES = ("pydoc", "code", "licence")
CODE_MODULES = ("textwrap", "fractions", "statistics", "difflib")
_LICENCE = "/usr/share/common-licenses/GPL-3"


def load(name: str) -> str:
    if name == "pydoc":
        return "\n\n".join(text.split("test"))
    if name == "code":
        return "\n\n".join(open(importlib.import_module(m).__file__, encoding="utf-8").read() for m in CODE_MODULES)
    if name == "licence":
        if not os.path.exists(_LICENCE):
            raise FileNotFoundError(f"{_LICENCE} (Debian's base-files) is missing")
        return open(_LICENCE, encoding="utf-8").read()
    raise ValueError(f"unknown evaluation text {name!r} (known: {', '.join(NAMES)})")
