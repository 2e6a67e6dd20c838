"""Model-level benchmark: every export variant of the demo VLM, SmolLM2-135M and the VLM grafted onto it, on LiteRT.

  tools/bazel run //python:benchmark -- [--models=demo,smollm2,smollm2-vlm] [--variants=fp32,int8,ternary,...]
      [--demo_ternary=DIR] [--demo_binary=DIR] [--json=PATH] [--plot=PATH] [--out_md=docs/BENCHMARKS.md]

For each model and variant, in one run: the model is exported with export.convert (the quantized variants come
from a ternarize output: the demo's given with --demo_ternary / --demo_binary, the others' shipped as
python/artifacts/<model>-<mode>; else from the float model quantized in memory with the k-means init and no
training), written to a temporary directory, then measured:

  file MB           size of the .tflite
  peak RSS MB       ru_maxrss of a fresh child process (imports only LiteRT + numpy) that loads the model with
                    litert.interpreter (via runtime.Runtime) and runs encode_image + prefill + the decode steps
  encode / prefill  median ms of encode_image (VLMs) and of prefill for a fixed prompt (padded to --prefill_len)
  decode tok/s      1 / median ms of decode over --decode_steps steps after --warmup steps, per thread count;
                    each figure is the median over --processes fresh child processes; the variants of a model and
                    the thread counts take turns within each round of processes, so their ratios share the machine's
                    slow spells; the runtime applies XNNPACK or not as the export's metadata says (export/variants.py)
  perplexity        computed with the .tflite itself (teacher forcing through prefill/decode): pydoc test-split
                    text windows for both models; for the VLM also the caption perplexity on --scenes test scenes
  caption accuracy  VLM: greedy runtime.generate on --scenes test scenes, exact token match (end of turn included)
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging

from ternary_vlm import atomic
from ternary_vlm.bench import quality, report as reporting
from ternary_vlm.bench.child import Launcher
from ternary_vlm.bench.sources import MODEL_NAMES, Source, prompt_inputs, text_ids
from ternary_vlm.paths import user_path

MODELS = ("demo", "smollm2", "smollm2-vlm")
DEFAULT_VARIANTS = ("fp32", "int8", "ternary", "ternary_f32", "binary", "binary_f32", "ternary_int8", "ternary_unpack_op",
                    "ternary_unpack_builtin", "fp32/variables", "int8/variables", "ternary_int2", "int4", "int4_b32")

FLAGS = flags.FLAGS
flags.DEFINE_list("models", list(MODELS), f"Models to benchmark: {', '.join(MODELS)}.")
flags.DEFINE_list("variants", list(DEFAULT_VARIANTS), "Export variants (export/variants.py), each optionally with "
                  "/<kv_cache> (op or variables; default: the variant's): e.g. int8/variables is the "
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
flags.DEFINE_list("max_len", [f"{m}:256" for m in MODELS], "KV cache length per model (model:N).")
flags.DEFINE_list("prefill_len", [f"{m}:64" for m in MODELS], "Prefill capacity per model (model:N).")
flags.DEFINE_integer("smollm2_layers", 0, "Export only SmolLM2's first N of its 30 decoder layers (embedding, final "
                     "norm and LM head kept), for quick runs; 0 = all.", lower_bound=0)
flags.DEFINE_list("llama_cpp", [], "Also run SmolLM2 on llama.cpp (llama-cpp-python, built from PyPI on first use; "
                  "bench/llama_cpp.py), its GGUF requantized by llama.cpp to these types: Q8_0, Q4_0, TQ2_0 "
                  "(ternary where rows allow). TYPE:ternary or TYPE:binary requantizes the weights of that "
                  "quantized twin instead (written as a float GGUF with the pip GGUF's metadata).")
flags.DEFINE_string("export_dir", None, "Keep the .tflite files here (default: a temporary directory, removed).")
flags.DEFINE_string("json", None, "Write every figure to this JSON file.")
flags.DEFINE_string("plot", None, "Write a PNG: memory vs perplexity, marker size = decode tok/s.")
flags.DEFINE_string("from_json", None, "Measure nothing: re-render the table, plot and markdown of an earlier --json.")
flags.DEFINE_string("out_md", None, "Write/replace the model section (between <!-- model-benchmark --> markers) "
                    "of this markdown file, e.g. docs/BENCHMARKS.md; other content is kept.")


def _per_model(values, model: str) -> int:
    table = dict(v.split(":", 1) for v in values)
    return int(table[model])


def benchmark_model(name: str, variants: list, workdir: str, launcher: Launcher) -> dict:
    """Every figure of one model; variants: export.Variant values (parsed from --variants)."""
    from ternary_vlm import export
    from ternary_vlm.data import scenes
    from ternary_vlm.data.batches import Batcher
    from ternary_vlm.runtime import Runtime

    source = Source(name, {"ternary": user_path(FLAGS.demo_ternary), "binary": user_path(FLAGS.demo_binary)})
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
    result = {"model": name, "title": MODEL_NAMES[name], "path": source.path, "is_vlm": loaded.is_vlm,
              "max_len": max_len,
              "prefill_len": prefill_len, "prompt_tokens": int(len(inputs["ids"])),
              "text_ppl_tokens": windows * FLAGS.text_window, "scenes": len(rows),
              "params": int(sum(np.size(v) for v in _params(loaded.model))),
              "layers": cfg.num_hidden_layers, "full_layers": source.full_layers,
              "full_model_flax_text_ppl": source.full_model_ppl, "hidden_size": cfg.hidden_size,
              "vocab_size": cfg.vocab_size,
              "variants": []}
    if windows:  # the Flax float model on the same windows: a check of the export, not a TFLite figure
        from ternary_vlm.train import evaluate
        result["flax_float_text_ppl"] = evaluate.text_perplexity(loaded.model, stream, FLAGS.text_window,
                                                                 batch_size=2, max_windows=windows)
        logging.info("%s: Flax float text perplexity %.3f", name, result["flax_float_text_ppl"])
    truth = {}  # id(model) -> float64 logits of the fixed prompt
    speeds = []  # (row, label, args_of): every variant's speed is measured after the exports, interleaved
    for i, variant in enumerate(variants):
        spec, kv_cache = variant.spec, variant.kv_cache
        logging.info("%s %s: exporting (max_len %d, prefill_len %d)", name, spec, max_len, prefill_len)
        model, layers, how = source.for_variant(variant)
        start = time.time()
        exported = export.convert(model, variant, quantized=layers, max_len=max_len, prefill_len=prefill_len)
        path = os.path.join(workdir, f"{name}-{variant.name}-{kv_cache}.tflite")
        atomic.write_bytes(path, exported.content)
        row = {"variant": spec, "kv_cache": kv_cache, "weights": how, "export_s": time.time() - start,
               "file_mb": os.path.getsize(path) / 1e6, "custom_ops": exported.replacements}
        del exported
        logging.info("%s %s: %.2f MB in %.0f s; quality", name, spec, row["file_mb"], row["export_s"])
        start = time.time()
        rt = Runtime(path, num_threads=int(FLAGS.threads[0]))
        want = quality.flax_prefill_logits(model, inputs, max_len)
        if id(model) not in truth:
            truth[id(model)] = quality.flax64_prefill_logits(model, inputs)
        got = rt.prefill(inputs["ids"], rt.image_features(inputs["pixel_values"]) if rt.is_vlm else None)
        row["flax_logit_diff"] = float(np.abs(got - want).max())
        row["flax_logit_max"] = float(np.abs(want).max())
        row["f64_logit_diff"] = float(np.abs(got - truth[id(model)]).max())
        row["flax_f32_vs_f64"] = float(np.abs(want - truth[id(model)]).max())
        if windows:
            row["text_ppl"] = quality.text_perplexity(rt, stream, FLAGS.text_window, windows)
        if rows:
            row.update(quality.caption_scores(rt, rows, stop_ids))
        del rt
        row["quality_s"] = time.time() - start
        logging.info("%s %s: %s", name, spec, {k: row[k] for k in ("flax_logit_diff", "text_ppl", "caption_ppl",
                                                                       "caption_accuracy") if k in row})
        result["variants"].append(row)
        speeds.append((row, f"{name} {spec}", lambda threads, path=path: [
            path, inputs_path, threads, FLAGS.decode_steps, FLAGS.warmup, FLAGS.timing_runs]))
        needed = {v.scheme.mode for v in variants[i + 1:] if v.scheme}
        for mode in list(source._quantized):  # free what no later variant needs: conversions peak at GBs
            if mode not in needed:
                del source._quantized[mode]
        del model, layers
        gc.collect()
        if FLAGS.json:  # partial results survive a later failure (e.g. the OOM killer during a conversion)
            atomic.write_bytes(user_path(FLAGS.json) + ".partial", json.dumps(result, indent=1).encode())
    measure_speed(speeds, launcher)
    if FLAGS.export_dir is None:
        for _, _, args_of in speeds:
            os.unlink(args_of(1)[0])
    if name == "smollm2" and FLAGS.llama_cpp:
        result["variants"] += llama_cpp_rows(source, inputs_path, stream, windows, max_len, prefill_len, workdir,
                                             launcher)
    return result


def measure_speed(rows: list, launcher: Launcher, module: str = "ternary_vlm.bench.child") -> None:
    """For each (row, label, args_of) of rows, fills row["speed"] (per thread count, the median of --processes fresh
    children running `module`.measure on args_of(threads)) and the row's headline figures from the first thread count.
    Rows and thread counts take turns within each round of processes (variant A at 1 and 2 threads, variant B at 1
    and 2, ..., then again): a slow spell of the shared machine then falls on every row and thread count alike, and
    the ratios between rows hold even when the absolute figures drift."""
    runs_of = [{threads: [] for threads in FLAGS.threads} for _ in rows]
    for _ in range(FLAGS.processes):
        for (_, _, args_of), runs in zip(rows, runs_of):
            for threads in FLAGS.threads:
                runs[threads].append(launcher.run(args_of(int(threads)), module=module))
    for (row, label, _), runs_by_threads in zip(rows, runs_of):
        row["speed"] = {}
        for threads, runs in runs_by_threads.items():
            m = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
            m["decode_tok_s"] = 1e3 / m["decode_ms"]
            row["speed"][threads] = m
            logging.info("%s, %s thread(s), median of %d processes: %s", label, threads, len(runs),
                         ", ".join(f"{k} {v:.4g}" for k, v in m.items()))
        first = row["speed"][FLAGS.threads[0]]
        row.update({k: first[k] for k in ("rss_mb", "prefill_ms", "encode_ms") if k in first})
        row["decode_tok_s"] = {t: s["decode_tok_s"] for t, s in row["speed"].items()}


def llama_cpp_rows(source, inputs_path: str, stream, windows: int, max_len: int, prefill_len: int, workdir: str,
                   launcher: Launcher) -> list[dict]:
    """The llama.cpp baseline rows: the same weights requantized by llama.cpp (the float model's, or with
    TYPE:MODE a quantized twin's), measured as our exports."""
    from ternary_vlm.bench import llama_cpp
    from ternary_vlm.checkpoints import gguf
    from ternary_vlm.checkpoints.writer import state_dict

    version = llama_cpp.ensure_installed()
    twins = {}  # mode -> (float GGUF of that twin, written once for all its types, description)
    rows = []
    for spec in FLAGS.llama_cpp:
        qtype, _, mode = spec.partition(":")
        origin, weights = source.path, "the pip GGUF (Q4_1)"
        if mode:
            if mode not in twins:
                model, _, how = source.quantized(mode)
                f32 = os.path.join(workdir, f"smollm2-{mode}-f32.gguf")
                gguf.write_like(gguf.GGUFCheckpoint(source.path), state_dict(model, {"model_type": "llama"}), f32)
                twins[mode] = (f32, f"the {mode} twin ({how}) as a float GGUF")
            origin, weights = twins[mode]
        path = os.path.join(workdir, f"smollm2-{spec.replace(':', '-')}.gguf")
        llama_cpp.quantize(origin, path, qtype)
        row = {"variant": f"llama.cpp {spec}", "kv_cache": "llama.cpp",
               "weights": f"{weights} requantized to {qtype} by llama.cpp (llama-cpp-python {version}; "
                          f"{llama_cpp.type_mix(path)})",
               "file_mb": os.path.getsize(path) / 1e6}
        measure_speed([(row, f"smollm2 llama.cpp {spec}",
                        lambda threads: [path, inputs_path, threads, FLAGS.decode_steps, FLAGS.warmup,
                                         FLAGS.timing_runs, prefill_len, max_len])],
                      launcher, module="ternary_vlm.bench.llama_cpp")
        if windows:
            row["text_ppl"] = llama_cpp.text_perplexity(path, stream, FLAGS.text_window, windows)
        rows.append(row)
        if FLAGS.export_dir is None:
            os.unlink(path)
    for f32, _ in twins.values():
        os.unlink(f32)
    return rows


def _params(model):
    from flax import nnx
    return [v.get_value() for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param))]


def main(argv):
    from ternary_vlm.cli import unwind_on_sigterm
    unwind_on_sigterm()  # the export folder is removed on SIGTERM too (the finally below)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from ternary_vlm import export
    from ternary_vlm.errors import TernaryVLMError
    for m in FLAGS.models:
        if m not in MODELS:
            raise app.UsageError(f"unknown model {m!r} (known: {', '.join(MODELS)})")
    from ternary_vlm.bench.llama_cpp import TYPES
    bad = [t for t in FLAGS.llama_cpp if t.partition(":")[0] not in TYPES]
    if bad:
        raise app.UsageError(f"unknown --llama_cpp type {bad[0]!r} (known: {', '.join(TYPES)})")
    bad = [t for t in FLAGS.llama_cpp if t.partition(":")[2] not in ("", "ternary", "binary")]
    if bad:
        raise app.UsageError(f"--llama_cpp={bad[0]}: after ':' comes the twin whose weights llama.cpp runs, "
                             f"ternary or binary")
    if FLAGS.llama_cpp and ("smollm2" not in FLAGS.models or FLAGS.smollm2_layers):
        raise app.UsageError("--llama_cpp runs the whole SmolLM2 GGUF: it needs --models with smollm2 and no "
                             "--smollm2_layers")
    try:
        variants = [export.parse(spec) for spec in FLAGS.variants]
    except TernaryVLMError as e:
        raise app.UsageError(str(e)) from None
    outputs = dict(json_path=user_path(FLAGS.json), plot_path=user_path(FLAGS.plot), md_path=user_path(FLAGS.out_md))
    if FLAGS.from_json:
        with open(user_path(FLAGS.from_json)) as f:
            saved = json.load(f)
        saved["meta"]["notes"] = [n for n in saved["meta"].get("notes", []) if "not measured" in n]
        return reporting.report(saved["models"], saved["meta"], **outputs)
    start = time.time()
    workdir = user_path(FLAGS.export_dir) if FLAGS.export_dir else tempfile.mkdtemp(prefix="ternary_vlm_benchmark-")
    os.makedirs(workdir, exist_ok=True)
    launcher = Launcher()
    baseline = launcher.run(["-", "-", 1, 0, 0, 0])["rss_mb"]
    results, notes = {}, []
    try:
        for name in FLAGS.models:
            try:
                results[name] = benchmark_model(name, variants, workdir, launcher)
            except MemoryError as e:  # measure what we can; the rest is stated
                logging.error("%s failed: %s", name, e)
                notes.append(f"{name}: not measured ({type(e).__name__}: {e})")
    finally:
        launcher.close()
        if FLAGS.export_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    meta = {"command": "tools/bazel run //python:benchmark -- " + " ".join(sys.argv[1:]),
            "machine": reporting.machine(), "baseline_rss_mb": baseline, "seconds": time.time() - start,
            "decode_steps": FLAGS.decode_steps, "warmup": FLAGS.warmup, "processes": FLAGS.processes,
            "notes": notes}
    reporting.report(results, meta, **outputs)
    if FLAGS.json and os.path.exists(user_path(FLAGS.json) + ".partial"):
        os.unlink(user_path(FLAGS.json) + ".partial")


if __name__ == "__main__":
    app.run(main)
