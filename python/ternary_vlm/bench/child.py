"""The measuring child process of the model benchmark: LiteRT only (no JAX, no TF), so its RSS is the model's;
started through a small launcher process made before JAX and TF are imported (Launcher)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def measure(argv) -> None:
    """argv: model.tflite inputs.npz threads decode_steps warmup timing_runs ("-" model = baseline)."""
    model_path, inputs_path, threads, steps, warmup, runs = argv[0], argv[1], *map(int, argv[2:])
    from ternary_vlm.runtime import Runtime  # noqa: F401 (the baseline imports what a measurement imports)

    def rss_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes

    def hwm_mb():  # the kernel's own high-water mark of this process image: a cross-check of ru_maxrss
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024

    if model_path == "-":
        print(json.dumps({"rss_mb": rss_mb()}))
        return
    inputs = np.load(inputs_path)
    ids = [int(i) for i in inputs["ids"]]
    start = time.perf_counter()
    rt = Runtime(model_path, num_threads=threads)
    out = {"load_s": time.perf_counter() - start, "threads": threads}
    features = None
    if rt.is_vlm:
        pixels = inputs["pixel_values"]
        times = []
        for _ in range(runs + 1):
            t = time.perf_counter()
            features = rt.image_features(pixels)
            times.append(time.perf_counter() - t)
        out["encode_ms"] = float(np.median(times[1:])) * 1e3
    times = []
    for _ in range(runs + 1):  # prefill rewrites the same cache slots: no reset needed between runs
        t = time.perf_counter()
        logits = rt.prefill(ids, features)
        times.append(time.perf_counter() - t)
    out["prefill_ms"] = float(np.median(times[1:])) * 1e3
    token, times = int(np.argmax(logits[0])), []
    room = rt.max_len - len(ids)
    for i in range(warmup + steps):
        t = time.perf_counter()
        logits = rt.decode(token, len(ids) + i % room)  # wraps around within the cache (timing only)
        times.append(time.perf_counter() - t)
        token = int(np.argmax(logits[0]))
    out["decode_ms"] = float(np.median(times[warmup:])) * 1e3
    out["decode_tok_s"] = 1e3 / out["decode_ms"]
    out["rss_mb"], out["vm_hwm_mb"] = rss_mb(), hwm_mb()
    print(json.dumps(out))


_LAUNCHER = """
import json, subprocess, sys
for line in sys.stdin:
    args, env = json.loads(line)
    p = subprocess.run(args, env=env, capture_output=True, text=True)
    print(json.dumps([p.returncode, p.stdout, p.stderr]), flush=True)
"""


class Launcher:
    """Starts the measurement children from a small process started before JAX and TF are imported.

    Linux's ru_maxrss survives fork + exec: a child forked from this process (gigabytes once JAX, TF and the
    converted models are in) would report this process's peak instead of its own. The launcher is a bare
    Python (~10 MB), below any child's own peak, so the children's ru_maxrss is theirs."""

    def __init__(self):
        self._proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)

    def run(self, args, module: str = "ternary_vlm.bench.child") -> dict:
        """One measurement: `module`.measure(args) in a fresh child (bench/llama_cpp.py has one too)."""
        from ternary_vlm.runtime import litert
        # One OpenBLAS thread: numpy's idle BLAS threads would compete with LiteRT's for the cores.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                   TERNARY_VLM_OPS_LIBRARY=litert.ops_library(), OPENBLAS_NUM_THREADS="1")
        code = f"import sys; from {module} import measure; measure(sys.argv[1:])"
        self._proc.stdin.write(json.dumps([[sys.executable, "-c", code, *map(str, args)], env]) + "\n")
        self._proc.stdin.flush()
        returncode, stdout, stderr = json.loads(self._proc.stdout.readline())
        if returncode != 0:
            raise RuntimeError(f"measurement child failed ({returncode}): {stderr[-2000:]}")
        return json.loads(stdout.strip().splitlines()[-1])

    def close(self):
        self._proc.stdin.close()
        self._proc.wait()
