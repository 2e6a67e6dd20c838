"""`ternary-vlm COMMAND [--flags]`: the wheels' console script; each command is the Bazel target of that name
(`tools/bazel run //python:COMMAND -- --flags`) with the same flags."""

import importlib
import sys

from absl import app

from ternary_vlm.cli import main_of

# generate runs from the ternary-vlm wheel alone (--tflite); the others need ternary-vlm-train (JAX, TF).
COMMANDS = {"generate": "ternary_vlm.cli.generate", "ternarize": "ternary_vlm.cli.ternarize",
            "export": "ternary_vlm.cli.export", "evaluate": "ternary_vlm.cli.evaluate"}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: ternary-vlm {{{','.join(COMMANDS)}}} [--flags]  (--helpfull lists a command's flags)")
    command = sys.argv[1]
    try:
        module = importlib.import_module(COMMANDS[command])
    except ModuleNotFoundError as e:
        sys.exit(f"ternary-vlm {command}: needs {e.name!r}, which this install lacks (pip install ternary-vlm-train)")
    sys.argv = [f"ternary-vlm {command}"] + sys.argv[2:]
    app.run(main_of(command, module.run))
