"""Benchmarks TernaryMatMul (float and int8 activations) and BinaryMatMul against LiteRT's FULLY_CONNECTED (fp32,
int8, and stock LiteRT's low-bit paths: the same ternary codes as INT2 weights, 4-bit weights per channel and per
block of 32), and against the unpack-then-multiply strategies (UnpackTernary or builtin unpack ops, then
FULLY_CONNECTED); with --llama_cpp, also against llama.cpp's own ternary kernel (ggml's TQ2_0, bench/ggml_matmul.py).

  tools/bazel run //python:bench_ops -- [--json=PATH] [--plot=PATH] [--threads=1,2] [--llama_cpp]

Every figure comes from the same run: median milliseconds of interpreter.invoke() on single-op
models (of ggml_graph_compute() on one-node graphs for TQ2_0), with weights cold (each configuration
rotates over enough model copies to exceed the last-level cache), plus the packed-weight bandwidth the
ternary op achieves and a memcpy bandwidth.
"""

import json
import time

import numpy as np
from absl import app, flags, logging

from ternary_vlm import atomic
from ternary_vlm.runtime import litert
from ternary_vlm.quant import packing
from ternary_vlm.export.tflite import builder, lowbit
from ternary_vlm.export import tflite
from ternary_vlm.quant.artifact import QuantizedLayer

FLAGS = flags.FLAGS
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
flags.DEFINE_list("shapes", ["576x1536", "1536x576", "2048x2048", "2048x8192", "8192x2048"],
                  "KxN weight shapes.")
flags.DEFINE_list("m", ["1", "32"], "Rows of activations (1 = decode, 32 = prefill).")
flags.DEFINE_integer("cold_bytes", 192 << 20, "Weights touched between two runs of one copy.")
flags.DEFINE_integer("min_runs", 40, "Timed invocations per configuration (at least).")
flags.DEFINE_string("json", None, "Write the figures to this JSON file.")
flags.DEFINE_bool("llama_cpp", False, "Add llama.cpp's TQ2_0 kernel (ggml) as a column, where K is a multiple of 256 "
                  "(builds the pinned llama-cpp-python on first use, ~20 min).")
flags.DEFINE_string("plot", None, "Write a bar chart (speed-up over fp32 FULLY_CONNECTED) to this PNG.")

# Named as the export variants are (export/variants.py): ternary / binary = W2A8, *_f32 = float activations.
VARIANTS = ("ternary", "ternary_f32", "binary", "binary_f32", "fp32_fc", "int8_fc", "int2_fc", "int4_fc", "int4_b32_fc",
            "unpack_op_fc", "unpack_builtin_fc")


def build_models(k, n, m, rng):
    """{variant: (single-op model, weight bytes)}, and the dense matrix they all hold."""
    w = rng.choice([-1, 0, 1], size=(n, k), p=[0.3, 0.4, 0.3]).astype(np.int8)
    signs = np.where(w >= 0, 1, -1).astype(np.int8)
    scale = rng.uniform(0.01, 0.05, n).astype(np.float32)
    dense = (w * scale[:, None]).astype(np.float32)
    shape = (m, k)
    fc = builder.fully_connected_model(shape, dense)
    layer = QuantizedLayer("w", w, scale, packing.pack(w, packing.TERNARY), packing.TERNARY)

    def unpacked(strategy):  # the export's own rewrite of this FULLY_CONNECTED
        model, counts = tflite.replace_quantized(fc, [layer], strategy)
        assert counts == [{"w": 1}], counts
        return model, n * packing.row_bytes(packing.TERNARY, k)

    packed = packing.pack(w, packing.TERNARY)
    (q4, s4), (q4b, s4b) = lowbit.quantize_int4(dense), lowbit.quantize_int4(dense, 32)
    return dense, {
        "ternary": (builder.quantized_matmul_model(packing.TERNARY, shape, packed, scale, activations="int8"),
                    n * packing.row_bytes(packing.TERNARY, k)),
        "ternary_f32": (builder.quantized_matmul_model(packing.TERNARY, shape, packed, scale),
                        n * packing.row_bytes(packing.TERNARY, k)),
        "binary": (builder.quantized_matmul_model(packing.BINARY, shape, packing.pack(signs, packing.BINARY), scale,
                                                  activations="int8"), n * packing.row_bytes(packing.BINARY, k)),
        "binary_f32": (builder.quantized_matmul_model(packing.BINARY, shape, packing.pack(signs, packing.BINARY), scale),
                       n * packing.row_bytes(packing.BINARY, k)),
        "fp32_fc": (builder.fully_connected_model(shape, dense), 4 * n * k),
        "int8_fc": (builder.fully_connected_model(shape, dense, int8=True), n * k),
        # Stock LiteRT's low-bit paths: the same ternary codes as INT2 weights, and 4-bit weights of the same matrix.
        "int2_fc": (builder.lowbit_fully_connected_model(shape, w, 2, scale), n * k // 4),
        "int4_fc": (builder.lowbit_fully_connected_model(shape, q4, 4, s4), n * k // 2),
        "int4_b32_fc": (builder.lowbit_fully_connected_model(shape, q4b, 4, s4b, block=32), n * k // 2 + n * k // 16),
        "unpack_op_fc": unpacked("unpack_op"),
        "unpack_builtin_fc": unpacked("unpack_builtin"),
    }


def median_ms(run, copies):
    """Median ms of run(copy), rotating over the copies (weights cold), after one warm-up run of each (first-run
    packing, page faults, thread start-up)."""
    for c in range(copies):
        run(c)
    runs = max(FLAGS.min_runs, 2 * copies)
    times = np.empty(runs)
    for r in range(runs):
        start = time.perf_counter_ns()
        run(r % copies)
        times[r] = time.perf_counter_ns() - start
    return float(np.median(times)) / 1e6


def time_model(model, weight_bytes, x, threads):
    copies = int(min(64, max(1, -(-FLAGS.cold_bytes // weight_bytes))))
    interps = [litert.interpreter(model_content=model, num_threads=threads) for _ in range(copies)]
    for interp in interps:
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
    return median_ms(lambda c: interps[c].invoke(), copies)


def time_tq2_0(dense, x, threads):
    """llama.cpp's TQ2_0 on the same ternary matrix, or None where ggml cannot store its rows (K % 256 != 0)."""
    from ternary_vlm.bench import ggml_matmul

    if dense.shape[1] % ggml_matmul.BLOCK:
        return None
    op = ggml_matmul.Tq2Matmul(dense, x.shape[0], threads, FLAGS.cold_bytes)
    try:
        op.set_input(x)
        return median_ms(op.run, op.copies)
    finally:
        op.close()


def memcpy_gbps():
    src = np.ones(256 << 20, np.uint8)
    dst = np.empty_like(src)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - start)
    return src.nbytes / min(times) / 1e9


def invoke_overhead_ms():
    x = np.zeros((1, 4), np.float32)
    model = builder.fully_connected_model(x.shape, np.ones((4, 4), np.float32))
    return time_model(model, 1 << 30, x, 1)


def plot(rows, path):
    from ternary_vlm import plots
    groups = [r for r in rows if r["threads"] == 1]
    labels = [f"{r['k']}x{r['n']}\nM={r['m']}" for r in groups]
    fig, ax = plots.subplots(figsize=(max(8, len(groups)), 4.5))
    shown = ("ternary", "ternary_f32", "binary", "binary_f32", "int8_fc", "int2_fc", "int4_fc", "int4_b32_fc")
    shown += ("tq2_0",) if "tq2_0" in groups[0] else ()
    width = 0.8 / len(shown)
    for i, variant in enumerate(shown):
        ax.bar(np.arange(len(groups)) + (i - (len(shown) - 1) / 2) * width,
               [np.nan if r[variant] is None else r["fp32_fc"] / r[variant] for r in groups], width, label=variant)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xticks(np.arange(len(groups)), labels, fontsize=8)
    ax.set_ylabel("speed-up over fp32 FULLY_CONNECTED (XNNPACK)")
    ax.set_title("Single-op latency (LiteRT; ggml for tq2_0), 1 thread, cold weights")
    ax.legend()
    plots.save(fig, path)


# Same-run ratios (how many times faster the first is): ours against each baseline on the same weights.
RATIOS = (("f32 vs fp32", "fp32_fc", "ternary_f32"), ("f32 vs int8", "int8_fc", "ternary_f32"),
          ("tern vs int8", "int8_fc", "ternary"), ("tern vs INT2", "int2_fc", "ternary"),
          ("tern vs INT4", "int4_fc", "ternary"), ("tern vs INT4 b32", "int4_b32_fc", "ternary"),
          ("bin vs int8", "int8_fc", "binary"), ("bin f32 vs fp32", "fp32_fc", "binary_f32"))
TQ2_0_RATIO = ("tern vs TQ2_0", "tq2_0", "ternary")


def table(rows) -> str:
    """Markdown table; "–" where a baseline cannot run the shape (TQ2_0 needs K % 256 == 0)."""
    variants = VARIANTS + (("tq2_0",) if "tq2_0" in rows[0] else ())
    ratios = RATIOS + ((TQ2_0_RATIO,) if "tq2_0" in rows[0] else ())
    head = ["K", "N", "M", "thr"] + [f"{v} ms" for v in variants] + [r[0] for r in ratios] + ["tern GB/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["k"]), str(r["n"]), str(r["m"]), str(r["threads"])]
        cells += ["–" if r[v] is None else f"{r[v]:.4f}" for v in variants]
        cells += ["–" if r[base] is None else f"{r[base] / r[ours]:.2f}x" for _, base, ours in ratios]
        lines.append("| " + " | ".join(cells + [f"{r['ternary_gbps']:.1f}"]) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    rng = np.random.default_rng(0)
    threads = [int(t) for t in FLAGS.threads]
    shapes = [tuple(int(v) for v in s.split("x")) for s in FLAGS.shapes]
    ms = [int(m) for m in FLAGS.m]
    if FLAGS.llama_cpp:
        from ternary_vlm.bench import llama_cpp
        logging.info("llama-cpp-python %s", llama_cpp.ensure_installed())
    bandwidth = memcpy_gbps()
    overhead = invoke_overhead_ms()
    rows = []
    total = len(shapes) * len(ms) * len(threads)
    for k, n in shapes:
        for m in ms:
            dense, models = build_models(k, n, m, rng)
            x = rng.normal(size=(m, k)).astype(np.float32)
            for t in threads:
                row = {"k": k, "n": n, "m": m, "threads": t}
                for variant in VARIANTS:
                    row[variant] = time_model(*models[variant], x, t)
                if FLAGS.llama_cpp:
                    row["tq2_0"] = time_tq2_0(dense, x, t)
                row["ternary_gbps"] = models["ternary"][1] / (row["ternary"] * 1e-3) / 1e9
                rows.append(row)
                logging.info("[%d/%d] K=%d N=%d M=%d threads=%d done", len(rows), total, k, n, m, t)

    print(f"\nmemcpy bandwidth (1 thread, 256 MiB): {bandwidth:.1f} GB/s; "
          f"Python invoke() overhead of a trivial model: {overhead * 1e3:.1f} us (included below)")
    print(table(rows))
    if FLAGS.json:
        atomic.write_text(FLAGS.json, json.dumps(
            {"memcpy_gbps": bandwidth, "invoke_overhead_ms": overhead, "rows": rows}, indent=1))
    if FLAGS.plot:
        plot(rows, FLAGS.plot)


if __name__ == "__main__":
    app.run(main)
