"""Trains a VLM on the procedural scenes and writes it as a Hugging Face SmolVLM directory with a model card.

  tools/bazel run //python:pretrain_vlm                               the bundled demo VLM, from scratch
                                                                      (python/demo_vlm; + pydoc text rows)
  tools/bazel run //python:pretrain_vlm -- --language_model=smollm2   a vision tower grafted onto the pretrained
                                                                      SmolLM2-135M-Instruct, which stays frozen
                                                                      (checkpoints/grafted_vlm.py; ./smollm2-vlm)

Training resumes from OUT.checkpoints (orbax, every --checkpoint_every steps) when rerun with the same flags.
"""

from __future__ import annotations

import json
import os
import time

import jax
from absl import app, flags, logging
from flax import nnx

from ternary_vlm import train
from ternary_vlm.checkpoints import demo_model, grafted_vlm, processing, writer
from ternary_vlm.cli import batch_flags  # noqa: F401  --scene_rows, --text_rows
from ternary_vlm.checkpoints.tokenizer import Tokenizer
from ternary_vlm.data.batches import Batcher
from ternary_vlm.errors import TernaryVLMError
from ternary_vlm.models.config import config_from_dict
from ternary_vlm.models.smolvlm import SmolVLM
from ternary_vlm.paths import user_path
from ternary_vlm.train import evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("language_model", None, "A pretrained text-only decoder to graft a vision tower onto and keep "
                    "frozen (smollm2, a GGUF file or a Hugging Face llama directory); default: the demo VLM, "
                    "trained whole from scratch.")
flags.DEFINE_integer("steps", 1200, "Optimizer steps.", lower_bound=1)
flags.DEFINE_integer("max_len", 80, "Tokens per row.", lower_bound=8)
flags.DEFINE_float("learning_rate", 2e-3, "Peak learning rate.", lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Data and initialization seed.")
flags.DEFINE_integer("eval_examples", 512, "Test examples per task for the final report.", lower_bound=1)
flags.DEFINE_integer("checkpoint_every", 100, "Steps between training checkpoints.", lower_bound=1)
flags.DEFINE_string("out", None, "Output directory (default: python/demo_vlm in the workspace for the demo, "
                    "./<language_model>-vlm for a grafted VLM).")


def demo_card(config: dict, scores: dict, params: int, seconds: float) -> str:
    return f"""# Demo VLM (bundled)

A {params / 1e6:.2f}M-parameter SmolVLM trained from scratch by this repository, so that every command
has a real pretrained vision-language model to work on offline. Not a general model: it knows the
procedural scenes of `ternary_vlm.data.scenes` (1-3 shapes × 6 colours × 2 sizes on a 3×3 grid,
48×48 px) and some English from CPython's pydoc topics.

- Architecture: SigLIP-style encoder (48 px, 8 px patches, 2 blocks × 96), pixel shuffle ×2 → 9 image
  tokens, Llama decoder (4 blocks × 192, 6/2 heads, SwiGLU 512, tied embeddings), BPE of
  {config['text_config']['vocab_size']} tokens.
- Training: {FLAGS.steps} AdamW steps of {FLAGS.scene_rows} scene rows (captions and QA, loss on the answer) + \
{FLAGS.text_rows} pydoc windows,
  {seconds / 60:.1f} min on 2 CPU cores. Command: `tools/bazel run //python:pretrain_vlm`.
{scores_table(scores)}"""


def grafted_card(config: dict, scores: dict, trained: int, seconds: float) -> str:
    v, t = config["vision_config"], config["text_config"]
    return f"""# {FLAGS.language_model} with a vision tower (grafted VLM)

A SmolVLM whose language model is the pretrained `{FLAGS.language_model}` ({t['num_hidden_layers']} blocks × \
{t['hidden_size']}), unchanged, and whose vision encoder and connector ({trained / 1e6:.2f}M parameters) were \
trained here on the procedural scenes of `ternary_vlm.data.scenes` (captions and QA, 48×48 px) with the language \
model frozen. It knows those scenes, not general images.

- Vision: SigLIP-style encoder ({v['image_size']} px, {v['patch_size']} px patches, {v['num_hidden_layers']} \
blocks × {v['hidden_size']}), pixel shuffle ×{config['scale_factor']} → \
{(v['image_size'] // v['patch_size']) ** 2 // config['scale_factor'] ** 2} image tokens, linear projection to \
{t['hidden_size']}.
- Prompt format: the language model's own ChatML turns with the image in the user turn (checkpoints/grafted_vlm.py).
- Training: {FLAGS.steps} AdamW steps of {FLAGS.scene_rows} scene rows at peak learning rate \
{FLAGS.learning_rate:g}; the run that finished them took {seconds / 60:.1f} min on this machine (a run resumed from a checkpoint counts only its own steps). Command: `tools/bazel run //python:pretrain_vlm -- \
--language_model={FLAGS.language_model} --steps={FLAGS.steps} --scene_rows={FLAGS.scene_rows} \
--learning_rate={FLAGS.learning_rate:g} --max_len={FLAGS.max_len}`.
{scores_table(scores)}"""


def scores_table(scores: dict) -> str:
    return f"""
## Scores (test split, {FLAGS.eval_examples} examples per task)

| metric | value |
|---|---|
| exact caption accuracy | {scores['caption_accuracy']:.3f} |
| QA accuracy | {scores['qa_accuracy']:.3f} |
| caption perplexity | {scores['caption_ppl']:.3f} |
| text perplexity (pydoc test) | {scores['text_ppl']:.2f} |
"""


def build():
    """(model, config.json dict, tokenizer, trainable-variable filter, write_files(dir), card(scores, seconds))."""
    if not FLAGS.language_model:
        tok = demo_model.train_tokenizer(FLAGS.seed)
        config = demo_model.hf_config(tok)
        model = SmolVLM(config_from_dict(config), rngs=nnx.Rngs(FLAGS.seed))
        params = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        logging.info("demo VLM: %.2fM parameters", params / 1e6)
        tokenizer = Tokenizer(tok, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                              chat_template=processing.DEFAULT_VLM_CHAT_TEMPLATE)
        return (model, config, tokenizer, nnx.Param, lambda d: demo_model.write_tokenizer_files(tok, d),
                lambda scores, seconds: demo_card(config, scores, params, seconds))
    if FLAGS["text_rows"].present and FLAGS.text_rows:
        raise TernaryVLMError("--text_rows trains the decoder, which a grafted VLM keeps frozen")
    FLAGS.text_rows = 0
    from ternary_vlm.checkpoints import model_path
    from ternary_vlm.checkpoints.loader import load_model

    model, config, tokenizer = grafted_vlm.graft(load_model(model_path(FLAGS.language_model)), FLAGS.seed)
    config["grafted_on"] = FLAGS.language_model  # what ternarize keeps frozen depends on it (grafted_vlm.trainable)
    trainable = grafted_vlm.vision_tower()
    count = sum(x.size for x in jax.tree.leaves(nnx.state(model, trainable)))
    logging.info("grafted VLM: %.2fM trainable parameters (vision encoder + connector), the decoder frozen",
                 count / 1e6)
    return (model, config, tokenizer, trainable, lambda d: grafted_vlm.write_files(d, tokenizer),
            lambda scores, seconds: grafted_card(config, scores, count, seconds))


def run():
    if FLAGS.language_model:
        name = os.path.basename(FLAGS.language_model.rstrip("/")).removesuffix(".gguf")
        out = user_path(FLAGS.out or f"{name}-vlm")
    else:
        out = user_path(FLAGS.out) or os.path.join(os.environ.get("BUILD_WORKSPACE_DIRECTORY", "."), "python",
                                                   "demo_vlm")
    model, config, tokenizer, trainable, write_files, card = build()
    vlm_config = config_from_dict(config)
    image_processor = processing.ImageProcessor(processing.vlm_preprocessor_config(vlm_config.vision.image_size),
                                                vlm_config)
    batcher = Batcher(tokenizer, image_processor, vlm_config, FLAGS.max_len, FLAGS.seed)
    cfg = train.TrainConfig(steps=FLAGS.steps, learning_rate=FLAGS.learning_rate, warmup_steps=100,
                            checkpoint_dir=out + ".checkpoints", checkpoint_every=FLAGS.checkpoint_every)
    start = time.time()
    train.train(model, train.lm_loss,
                lambda step: batcher.train_batch(step, FLAGS.scene_rows, FLAGS.text_rows).arrays(),
                cfg, wrt=trainable, description="pretrain VLM")
    seconds = time.time() - start
    scores = evaluate.evaluate(model, batcher, FLAGS.eval_examples)
    logging.info("scores: %s", scores)

    def extras(directory):
        write_files(directory)
        with open(os.path.join(directory, "README.md"), "w") as f:
            f.write(card(scores, seconds))
        with open(os.path.join(directory, "scores.json"), "w") as f:
            json.dump({"eval_examples": FLAGS.eval_examples, "seed": FLAGS.seed, "max_len": FLAGS.max_len, **scores},
                      f, indent=1)

    writer.save_directory(model, config, out, extras)
    print(json.dumps(scores, indent=1))
    print(f"wrote {out} (training checkpoints stay in {out}.checkpoints)")


if __name__ == "__main__":
    from ternary_vlm.cli import main_of
    app.run(main_of("pretrain_vlm", run))
