"""Plots ternarization curves (the curve.jsonl of one or more ternarize runs) on one figure per held-out text.

  tools/bazel run //python:plot_curves -- --curve="ternary k-means=RUN.checkpoints/curve.jsonl" \\
      --curve="ternary output=OTHER/curve.jsonl" --out=docs/smollm2_curves.png
"""

from __future__ import annotations

import json
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("curve", [], "LABEL=PATH of a curve.jsonl (or a ternarize report.json).")
flags.DEFINE_string("out", None, "The PNG to write.", required=True)
flags.DEFINE_enum("x", "wall_s", ["wall_s", "cpu_s"], "Time axis: wall-clock or CPU seconds.")


def read_points(path: str) -> list[dict]:
    if path.endswith(".json"):
        return json.load(open(path))["curve"]
    return [json.loads(line) for line in open(path) if line.strip()]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from ternary_vlm import plots
    from ternary_vlm.paths import user_path
    curves = {}
    for item in FLAGS.curve:
        label, sep, path = item.partition("=")
        if not sep:
            sys.exit(f"plot_curves: --curve={item}: expected LABEL=PATH")
        try:
            curves[label] = read_points(user_path(path))
        except (OSError, ValueError, KeyError) as e:
            sys.exit(f"plot_curves: {path}: unreadable curve ({e})")
    if not curves:
        sys.exit("plot_curves: no --curve given")
    plots.plot_curves(curves, user_path(FLAGS.out), FLAGS.x)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
