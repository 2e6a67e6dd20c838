"""llama.cpp as a baseline of the model benchmark: SmolLM2's own GGUF requantized by llama.cpp (Q8_0, Q4_0) and run
by llama-cpp-python, measured as our exports are (file size, peak RSS of a fresh process, prefill of P tokens,
decode tok/s per thread count, perplexity on the same text windows).

llama-cpp-python is a benchmark-only dependency. Its pin is a comment line of third_party/python/
requirements_lock.txt ("# benchmark-only: NAME==VERSION"): tools/setup does not install it and no test needs it. The
first benchmark run that asks for a llama.cpp row builds it from PyPI's sdist into the venv (pip + CMake, ~20 min on
2 cores), with GGML_NATIVE (this CPU's own SIMD, llama.cpp's default build) and without libcurl (no downloads).
Its Intel AMX path is left out: in this version ggml_backend_amx_mul_mat crashes (SIGSEGV, Q4_0 and Q8_0 SmolLM2 on
a Sapphire Rapids Xeon, 2026-12-04), so on AMX machines llama.cpp runs its AVX-512 VNNI kernels (with its repacked
Q4_0 / Q8_0 layouts), as on AMD.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from absl import logging

from ternary_vlm.errors import TernaryVLMError

# llama_ftype LLAMA_FTYPE_MOSTLY_<type>. TQ2_0 (llama.cpp's ternary type) stores only rows of a multiple of 256
# weights: in SmolLM2 the MLP's down projections (K = 1536); llama.cpp's quantizer picks its own fallbacks for the
# rest (Q4_0 for K = 576), so its row reports the mix (type_mix).
TYPES = ("Q8_0", "Q4_0", "TQ2_0")
PIN_PREFIX = "# benchmark-only: "
_LOCK = Path(__file__).parents[3] / "third_party" / "python" / "requirements_lock.txt"
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"  # explicit -mno- flags win over -march=native's
CMAKE_ARGS = (f"-DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
              f"'-DCMAKE_C_FLAGS={_NO_AMX}' '-DCMAKE_CXX_FLAGS={_NO_AMX}'")


def pins(lock: Path = _LOCK) -> list[str]:
    """The benchmark-only pins of the lock, in install order (llama-cpp-python's pure-Python dependencies first)."""
    found = [line[len(PIN_PREFIX):].strip() for line in open(lock) if line.startswith(PIN_PREFIX)]
    if not any(p.startswith("llama-cpp-python==") for p in found):
        raise TernaryVLMError(f"{lock} has no '{PIN_PREFIX}llama-cpp-python==VERSION' line")
    return found


def ensure_installed() -> str:
    """Installs the pinned llama-cpp-python into this interpreter's environment if it is not there; its version."""
    import importlib.metadata as md

    wanted = dict(p.split("==") for p in pins())
    missing = [f"{n}=={v}" for n, v in wanted.items() if _version(md, n) != v]
    if missing:
        logging.info("building %s from PyPI for the llama.cpp baseline (once; ~20 min on 2 cores)", ", ".join(missing))
        env = dict(os.environ, CMAKE_ARGS=CMAKE_ARGS)
        # --no-cache-dir: a wheel pip cached from another build of the same version would ignore CMAKE_ARGS.
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir",
                               "--disable-pip-version-check", *missing], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise TernaryVLMError(f"pip could not build {', '.join(missing)}: {done.stderr.strip()[-500:]}")
    return wanted["llama-cpp-python"]


def _version(md, name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def quantize(source_gguf: str, out: str, qtype: str) -> None:
    """llama.cpp's own quantizer: every weight of `source_gguf` (dequantized first: the pip GGUF is Q4_1) to `qtype`;
    written atomically."""
    import llama_cpp

    if qtype not in TYPES:
        raise TernaryVLMError(f"unknown llama.cpp type {qtype!r} (known: {', '.join(TYPES)})")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{qtype}")
    params.allow_requantize = True
    tmp = out + ".tmp"
    if llama_cpp.llama_model_quantize(source_gguf.encode(), tmp.encode(), ctypes.byref(params)) != 0:
        raise TernaryVLMError(f"llama.cpp could not quantize {source_gguf} to {qtype}")
    os.replace(tmp, out)


def type_mix(path: str) -> str:
    """The tensor types of a GGUF and how many tensors of each, most first: "TQ2_0 ×30, Q4_0 ×180, ..."."""
    import collections

    import gguf

    counts = collections.Counter(t.tensor_type.name for t in gguf.GGUFReader(path).tensors)
    return ", ".join(f"{name} ×{n}" for name, n in counts.most_common())


def _open(path: str, threads: int, n_ctx: int, logits_all: bool = False):
    import llama_cpp

    return llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_threads=threads, n_threads_batch=threads,
                           logits_all=logits_all, verbose=False)


def text_perplexity(path: str, ids: np.ndarray, window: int, windows: int) -> float:
    """As quality.text_perplexity (non-overlapping windows from the start; position i predicts token i + 1), by one
    evaluation per window with every position's logits."""
    llm = _open(path, 1, window + 1, logits_all=True)
    nll = count = 0.0
    for w in range(windows):
        seq = [int(t) for t in ids[w * window: w * window + window + 1]]
        llm.reset()
        llm.eval(seq[:-1])
        z = llm.scores[: len(seq) - 1].astype(np.float64)
        m = z.max(axis=1)
        nll += float((m + np.log(np.exp(z - m[:, None]).sum(axis=1)) - z[np.arange(len(z)), seq[1:]]).sum())
        count += len(seq) - 1
    return float(np.exp(nll / count))


def measure(argv) -> None:
    """Child process (bench/child.Launcher): argv = model.gguf inputs.npz threads decode_steps warmup timing_runs
    prefill_len max_len. Prefill times `prefill_len` tokens (the prompt padded with its last token, as our exports
    compute the whole prefill capacity); decode as child.measure."""
    import llama_cpp

    path, inputs_path = argv[0], argv[1]
    threads, steps, warmup, runs, prefill_len, max_len = map(int, argv[2:])
    ids = [int(i) for i in np.load(inputs_path)["ids"]]
    prompt = (ids + [ids[-1]] * prefill_len)[:prefill_len]
    start = time.perf_counter()
    llm = _open(path, threads, max_len)
    out = {"load_s": time.perf_counter() - start, "threads": threads}
    vocab = llm.n_vocab()

    def last_logits():
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(vocab,))

    times = []
    for _ in range(runs + 1):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        logits = last_logits()
        times.append(time.perf_counter() - t)
    out["prefill_ms"] = float(np.median(times[1:])) * 1e3
    llm.reset()
    llm.eval(ids)
    token, times = int(np.argmax(last_logits())), []
    for _ in range(warmup + steps):
        if llm.n_tokens >= max_len:  # wrap around within the context (timing only), as child.measure
            llm.reset()
            llm.eval(ids)
        t = time.perf_counter()
        llm.eval([token])
        logits = last_logits()
        times.append(time.perf_counter() - t)
        token = int(np.argmax(logits))
    out["decode_ms"] = float(np.median(times[warmup:])) * 1e3
    out["decode_tok_s"] = 1e3 / out["decode_ms"]
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
