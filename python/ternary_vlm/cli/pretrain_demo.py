"""Trains the bundled demo VLM from scratch on the procedural scenes + pydoc text and writes it as a
Hugging Face checkpoint (python/demo_vlm) with a model card.

  tools/bazel run //python:pretrain_demo [-- --steps=1200 --out=DIR]
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags, logging
from flax import nnx

from ternary_vlm import train
from ternary_vlm.checkpoints import demo_model
from ternary_vlm.train import evaluate
from ternary_vlm.checkpoints import processing
from ternary_vlm.checkpoints import writer
from ternary_vlm.data.batches import Batcher
from ternary_vlm.models.config import config_from_dict
from ternary_vlm.models.smolvlm import SmolVLM
from ternary_vlm.checkpoints.tokenizer import Tokenizer

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 1200, "Optimizer steps.")
flags.DEFINE_integer("scene_rows", 24, "Scene examples per batch.")
flags.DEFINE_integer("text_rows", 8, "Text windows per batch.")
flags.DEFINE_integer("max_len", 80, "Tokens per row.")
flags.DEFINE_float("learning_rate", 2e-3, "Peak learning rate.")
flags.DEFINE_integer("seed", 0, "Data and initialization seed.")
flags.DEFINE_integer("eval_examples", 512, "Test examples per task for the final report.")
flags.DEFINE_string("out", None, "Output directory (default: python/demo_vlm in the workspace).")


def model_card(config: dict, scores: dict, params: int, steps: int, seconds: float) -> str:
    return f"""# Demo VLM (bundled)

A {params / 1e6:.2f}M-parameter SmolVLM trained from scratch by this repository, so that every command
has a real pretrained vision-language model to work on offline. Not a general model: it knows the
procedural scenes of `ternary_vlm.data.scenes` (1-3 shapes × 6 colours × 2 sizes on a 3×3 grid,
48×48 px) and some English from CPython's pydoc topics.

- Architecture: SigLIP-style encoder (48 px, 8 px patches, 2 blocks × 96), pixel shuffle ×2 → 9 image
  tokens, Llama decoder (4 blocks × 192, 6/2 heads, SwiGLU 512, tied embeddings), BPE of
  {config['text_config']['vocab_size']} tokens.
- Training: {steps} AdamW steps of 24 scene rows (captions and QA, loss on the answer) + 8 pydoc windows,
  {seconds / 60:.1f} min on 2 CPU cores. Command: `tools/bazel run //python:pretrain_demo`.

## Scores (test split, {FLAGS.eval_examples} examples per task)

| metric | value |
|---|---|
| exact caption accuracy | {scores['caption_accuracy']:.3f} |
| QA accuracy | {scores['qa_accuracy']:.3f} |
| caption perplexity | {scores['caption_ppl']:.3f} |
| text perplexity (pydoc test) | {scores['text_ppl']:.2f} |
"""


def main(argv):
    del argv
    out = FLAGS.out or os.path.join(os.environ.get("BUILD_WORKSPACE_DIRECTORY", "."), "python", "demo_vlm")
    tok = demo_model.train_tokenizer(FLAGS.seed)
    hf_config = demo_model.hf_config(tok)
    config = config_from_dict(hf_config)
    tmp_tok = Tokenizer(tok, bos_token="<|im_start|>", eos_token="<end_of_utterance>",
                        chat_template=processing.DEFAULT_VLM_CHAT_TEMPLATE)
    image_processor = processing.ImageProcessor(demo_model.preprocessor_config(), config)
    batcher = Batcher(tmp_tok, image_processor, config, FLAGS.max_len, FLAGS.seed)
    model = SmolVLM(config, rngs=nnx.Rngs(FLAGS.seed))
    params = sum(x.size for x in __import__("jax").tree.leaves(nnx.state(model, nnx.Param)))
    logging.info("demo VLM: %.2fM parameters, image_seq_len %d", params / 1e6, config.image_seq_len)

    cfg = train.TrainConfig(steps=FLAGS.steps, learning_rate=FLAGS.learning_rate, warmup_steps=100)
    start = time.time()
    train.train(model, train.lm_loss,
                lambda step: batcher.train_batch(step, FLAGS.scene_rows, FLAGS.text_rows).arrays(),
                cfg, description="pretrain demo VLM")
    seconds = time.time() - start
    scores = evaluate.evaluate(model, batcher, FLAGS.eval_examples)
    logging.info("scores: %s", scores)

    def extras(directory):
        demo_model.write_tokenizer_files(tok, directory)
        with open(os.path.join(directory, "README.md"), "w") as f:
            f.write(model_card(hf_config, scores, params, FLAGS.steps, seconds))
        with open(os.path.join(directory, "scores.json"), "w") as f:
            json.dump({"eval_examples": FLAGS.eval_examples, "seed": FLAGS.seed, **scores}, f, indent=1)

    writer.save_directory(model, hf_config, out, extras)
    print(json.dumps(scores, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(app.run(main))
