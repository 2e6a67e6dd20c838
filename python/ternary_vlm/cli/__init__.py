"""Thin absl entry points of the Bazel targets (flags in, one-line errors out)."""

from __future__ import annotations

import signal
import sys
from typing import Callable

from absl import app


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def unwind_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so atomic writes and `finally` blocks remove their temporaries."""
    signal.signal(signal.SIGTERM, _interrupt)


def main_of(name: str, run: Callable[[], object]) -> Callable[[list[str]], None]:
    """The absl main of a CLI: no stray arguments; a TernaryVLMError or a missing file ends the program with
    one line `NAME: message` (no traceback); Ctrl-C or SIGTERM with `NAME: interrupted`, after every output
    being written has been removed (ternarize's checkpoints stay, to resume from)."""
    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        from ternary_vlm.errors import TernaryVLMError
        unwind_on_sigterm()
        try:
            run()
        except (TernaryVLMError, FileNotFoundError) as e:
            sys.exit(f"{name}: {e}")
        except KeyboardInterrupt:
            sys.exit(f"{name}: interrupted")
    return main
