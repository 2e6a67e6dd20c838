"""Compress a pretrained VLM into a ternary (or binary) version of itself.

  tools/bazel run //python:ternarize                    # the bundled demo VLM
  tools/bazel run //python:ternarize -- --model=DIR --mode=binary --init=twn --steps=500 --out=DIR
"""

import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Hugging Face model directory or GGUF file; default: the bundled demo VLM.")
flags.DEFINE_enum("mode", "ternary", ["ternary", "binary"], "Weight alphabet: {-1,0,+1}·α or {-1,+1}·α.")
flags.DEFINE_enum("init", "kmeans", ["kmeans", "twn", "absmean"], "Initialization of the quantized weights.")
flags.DEFINE_integer("steps", 300, "Quantization-aware training steps.", lower_bound=0)
flags.DEFINE_string("out", None, "Output directory for the quantized checkpoint and report.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    model = FLAGS.model or "the bundled demo VLM"
    logging.info("plan: %s weights of %s, %s init, %d QAT steps -> %s",
                 FLAGS.mode, model, FLAGS.init, FLAGS.steps, FLAGS.out or "(default output dir)")
    sys.exit("ternarize: not built yet -- the model loader (issue #4), the demo VLM (issue #5) and "
             "quantization-aware training (issue #6) have not landed")


if __name__ == "__main__":
    app.run(main)
