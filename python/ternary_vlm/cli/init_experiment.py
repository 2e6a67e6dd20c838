"""Reproduces the paper's claim on the bundled demo VLM: how much k-means initialization shortens
ternarization (and binarization) compared with TWN and BitNet-absmean initialization.

  tools/bazel run //python:init_experiment [-- --steps=120 --eval_every=20]

For each mode × init: quantize the demo VLM from its pretrained weights, run QAT (distillation from
the float model) and evaluate on the validation split every --eval_every steps. Then the same inits and the
data-aware `output` init (scales against each layer's output error on text sampled from the model), without
training, on SmolLM2-135M (perplexity on the held-out texts of data/eval_texts.py). Writes
docs/init_curves.png, docs/init_experiment.json and the tables printed at the end (--smollm2_only: SmolLM2 only).
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags, logging
from flax import nnx

from ternary_vlm import atomic, train
from ternary_vlm.checkpoints import demo_model
from ternary_vlm.train import evaluate
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.checkpoints.gguf import smollm2_gguf_path
from ternary_vlm.data.batches import Batcher
from ternary_vlm.quant.apply import quantize_model

FLAGS = flags.FLAGS
flags.DEFINE_list("inits", ["kmeans", "twn", "absmean"], "Initializations to compare.")
flags.DEFINE_list("modes", ["ternary", "binary"], "Weight alphabets.")
flags.DEFINE_integer("steps", 120, "QAT steps per run.")
flags.DEFINE_integer("eval_every", 20, "Steps between evaluations (a multiple of 10).")
flags.DEFINE_integer("eval_examples", 128, "Validation examples per task per evaluation.")
flags.DEFINE_float("learning_rate", 5e-4, "Peak learning rate.")
flags.DEFINE_integer("smollm2_windows", 24, "256-token windows per held-out text for SmolLM2 (0 skips it).")
flags.DEFINE_integer("smollm2_calib_rows", 32, "Rows of 128 sampled tokens for SmolLM2's output-aware init.")
flags.DEFINE_bool("smollm2_only", False, "Only the SmolLM2 post-init table (minutes instead of an hour).")
flags.DEFINE_string("out_dir", None, "Where to write the plot and JSON (default: docs/ in the workspace).")


def qat_curve(path, mode, init):
    loaded = load_model(path)
    batcher = Batcher(loaded.tokenizer, loaded.image_processor, loaded.config, max_len=evaluate.REPORT_MAX_LEN)
    scores = lambda model: evaluate.evaluate(model, batcher, FLAGS.eval_examples, split="validation")  # noqa: E731
    teacher = nnx.clone(loaded.model)
    float_scores = scores(loaded.model)
    reports = quantize_model(loaded.model, mode, init, [], loaded.text_config.num_hidden_layers)
    curve = [{"step": 0, **scores(loaded.model)}]
    cfg = train.TrainConfig(steps=FLAGS.steps, learning_rate=FLAGS.learning_rate, warmup_steps=10)
    history = train.train(loaded.model, train.distillation_loss(1.0),
                          lambda step: batcher.train_batch(step, 24, 8).arrays(), cfg,
                          description=f"{mode}/{init}", evaluate=lambda _, model: scores(model),
                          evaluate_every=FLAGS.eval_every,
                          frozen=(teacher,))
    curve += [h for h in history if "caption_ppl" in h]
    error = float(np.mean([r.relative_error for r in reports]))
    return float_scores, error, curve


def steps_to_reach(curve, key, target):
    return next((c["step"] for c in curve if c[key] <= target), None)


def smollm2_post_init(inits, modes):
    """{mode/init: {text: perplexity}} for SmolLM2-135M right after initialization (no training)."""
    import tempfile

    from ternary_vlm.data import teacher_text
    from ternary_vlm.quant import calibrate
    from ternary_vlm.train.text_recipe import eval_tokens

    loaded = load_model(smollm2_gguf_path())
    texts = eval_tokens(loaded.tokenizer)

    def ppl(m):
        return {name: evaluate.text_perplexity(m, ids, 256, batch_size=4, max_windows=FLAGS.smollm2_windows)
                for name, ids in texts.items()}

    rows = {"float": ppl(loaded.model)}
    logging.info("SmolLM2-135M float perplexity %s", rows["float"])
    with tempfile.TemporaryDirectory() as d:
        calib = teacher_text.generate(loaded.model, teacher_text.special_ids(loaded.tokenizer, loaded.config.vocab_size),
                                      FLAGS.smollm2_calib_rows, 128, d)
    moments = calibrate.input_moments(loaded.model, calib)
    for mode in modes:
        for init in list(inits) + ["output"]:
            model = nnx.clone(loaded.model)
            quantize_model(model, mode, init, [], loaded.text_config.num_hidden_layers, moments)
            rows[f"{mode}/{init}"] = ppl(model)
            logging.info("SmolLM2-135M %s/%s after init: perplexity %s", mode, init, rows[f"{mode}/{init}"])
    return rows


def plot(results, path):
    from ternary_vlm import plots
    fig, axes = plots.subplots(1, len(FLAGS.modes), figsize=(6 * len(FLAGS.modes), 4.2), squeeze=False)
    for ax, mode in zip(axes[0], FLAGS.modes):
        fp = None
        for init in FLAGS.inits:
            r = results[f"{mode}/{init}"]
            fp = r["float"]["caption_ppl"]
            ax.plot([c["step"] for c in r["curve"]], [c["caption_ppl"] for c in r["curve"]], marker="o", label=init)
        ax.axhline(fp, color="black", lw=0.8, label="float")
        ax.axhline(1.1 * fp, color="gray", lw=0.8, ls="--", label="1.10 × float")
        ax.set_yscale("log")
        ax.set_xlabel("QAT step")
        ax.set_ylabel("caption perplexity (validation)")
        ax.set_title(f"{mode} demo VLM: initialization vs QAT steps")
        ax.legend()
    plots.save(fig, path)


def main(argv):
    del argv
    out_dir = FLAGS.out_dir or os.path.join(os.environ.get("BUILD_WORKSPACE_DIRECTORY", "."), "docs")
    os.makedirs(out_dir, exist_ok=True)
    path = demo_model.default_checkpoint()
    results, start = {}, time.time()
    for mode in [] if FLAGS.smollm2_only else FLAGS.modes:
        for init in FLAGS.inits:
            float_scores, error, curve = qat_curve(path, mode, init)
            results[f"{mode}/{init}"] = {"float": float_scores, "init_error": error, "curve": curve}
    smollm2 = smollm2_post_init(FLAGS.inits, FLAGS.modes) if FLAGS.smollm2_windows else None
    summary = {"steps": FLAGS.steps, "eval_every": FLAGS.eval_every, "minutes": (time.time() - start) / 60,
               "demo": results, "smollm2_post_init_ppl": smollm2}
    name = "init_experiment_smollm2.json" if FLAGS.smollm2_only else "init_experiment.json"
    atomic.write_text(os.path.join(out_dir, name), json.dumps(summary, indent=1))
    if results:
        plot(results, os.path.join(out_dir, "init_curves.png"))

    print("\n| mode/init | mean rel. error at init | caption ppl after init | steps to ≤ 1.10 × float | "
          f"caption ppl at {FLAGS.steps} | caption acc at {FLAGS.steps} | float caption ppl / acc |")
    print("|---|---|---|---|---|---|---|")
    for key, r in results.items():
        target = 1.1 * r["float"]["caption_ppl"]
        reach = steps_to_reach(r["curve"], "caption_ppl", target)
        last = r["curve"][-1]
        print(f"| {key} | {r['init_error']:.4f} | {r['curve'][0]['caption_ppl']:.4g} | "
              f"{reach if reach is not None else f'> {FLAGS.steps}'} | {last['caption_ppl']:.4g} | "
              f"{last['caption_accuracy']:.3f} | {r['float']['caption_ppl']:.4g} / {r['float']['caption_accuracy']:.3f} |")
    if smollm2:
        names = list(smollm2["float"])
        print("\n| SmolLM2-135M, no training | " + " | ".join(f"{n} perplexity" for n in names) + " |")
        print("|---|" + "---|" * len(names))
        for key, v in smollm2.items():
            print(f"| {key} | " + " | ".join(f"{v[n]:.4g}" for n in names) + " |")


if __name__ == "__main__":
    app.run(main)
