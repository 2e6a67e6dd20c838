#!/usr/bin/env python3
"""Mutation check of the C++ test suite (a documented command, not part of CI; docs/RELIABILITY.md):

  python3 tools/mutation_check.py

Applies each mutation below to the source tree one at a time, runs the C++ tests on the host, and records which
test targets failed; the source is restored after each. Every mutation must be caught by at least one target,
else the suite could not tell the mutated kernel from the real one. Refuses to run on a tree whose mutated
files have uncommitted changes (it restores them with `git checkout`).
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = ["//cc/..."]

# (what it breaks, file, original text, mutated text)
MUTATIONS = [
    ("packing table: ternary code 0b10 decoded as 0 instead of +1", "cc/kernels/packing.cc",
     "table[byte][j] = code == 3 ? 0.0f", "table[byte][j] = code >= 2 ? 0.0f"),
    ("rounding: int8 activations truncated instead of rounded half to even", "cc/kernels/a8/layout.cc",
     "q[c] = static_cast<int8_t>((xi[c] * inv + kRound) - kRound);", "q[c] = static_cast<int8_t>(xi[c] * inv);"),
    ("loop bound: the last activation of a row not quantized", "cc/kernels/a8/layout.cc",
     "    for (size_t c = 0; c < k; ++c) {\n      // |x", "    for (size_t c = 0; c + 1 < k; ++c) {\n      // |x"),
    ("loop bound: the reference kernel skips the last input", "cc/kernels/reference.cc",
     "for (size_t c = 0; c < k_; ++c) acc += x[", "for (size_t c = 0; c + 1 < k_; ++c) acc += x["),
    ("attention: the last key tile of a query ignored", "cc/kernels/attention.cc",
     "Scores(qr, keys, dim_, (n + kTile - 1) / kTile, scores.data());",
     "Scores(qr, keys, dim_, n / kTile, scores.data());"),
]


def failed_targets(output: str) -> list[str]:
    return sorted({line.split()[0] for line in output.splitlines() if line.startswith("//") and " FAILED" in line})


def main() -> int:
    files = sorted({m[1] for m in MUTATIONS})
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=ROOT, capture_output=True,
                           text=True).stdout
    if dirty:
        sys.exit(f"mutation_check: uncommitted changes in {', '.join(files)}; commit or stash them first")
    results, missing = [], 0
    for what, path, old, new in MUTATIONS:
        full = os.path.join(ROOT, path)
        text = open(full).read()
        if text.count(old) != 1:
            print(f"{what}: the original text is not found once in {path} (update MUTATIONS)")
            missing += 1
            continue
        try:
            with open(full, "w") as f:
                f.write(text.replace(old, new))
            run = subprocess.run([os.path.join(ROOT, "tools", "bazel"), "test", "--keep_going", *TARGETS],
                                 cwd=ROOT, capture_output=True, text=True)
        finally:
            subprocess.run(["git", "checkout", "--", path], cwd=ROOT, check=True)
        caught = failed_targets(run.stdout + run.stderr)
        results.append((what, caught))
        print(f"{what}: {'caught by ' + ', '.join(caught) if caught else 'NOT CAUGHT'}", flush=True)
    print("\n| mutation | caught by |\n|---|---|")
    for what, caught in results:
        print(f"| {what} | {', '.join(f'`{c}`' for c in caught) or '**not caught**'} |")
    return 1 if missing or any(not caught for _, caught in results) else 0


if __name__ == "__main__":
    sys.exit(main())
