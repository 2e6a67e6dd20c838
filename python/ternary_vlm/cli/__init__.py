"""Thin absl entry points of the Bazel targets (flags in, one-line errors out)."""

from __future__ import annotations

import sys
from typing import Callable

from absl import app


def main_of(name: str, run: Callable[[], object]) -> Callable[[list[str]], None]:
    """The absl main of a CLI: no stray arguments; a TernaryVLMError or a missing file ends the program with
    one line `NAME: message` (no traceback)."""
    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        from ternary_vlm.errors import TernaryVLMError
        try:
            run()
        except (TernaryVLMError, FileNotFoundError) as e:
            sys.exit(f"{name}: {e}")
    return main
