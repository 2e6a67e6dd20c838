"""Command line of the exporter (export/exporter.py).

  tools/bazel run //python:export -- --model=DIR --variant=ternary --out=model.tflite
  tools/bazel run //python:export -- --model=SmolLM2.gguf --variant=int8 --out=smollm2-int8.tflite
"""

import os

from absl import app, flags, logging

from ternary_vlm.checkpoints import model_path
from ternary_vlm.errors import TernaryVLMError
from ternary_vlm.export import KV_CACHES, VARIANTS, export_path, parse
from ternary_vlm.paths import user_path

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Model directory (Hugging Face layout, e.g. a ternarize output), GGUF file, or a "
                    "name every CLI knows: smollm2, smollm2-ternary, smollm2-binary.")
flags.DEFINE_string("variant", "ternary", f"One of {', '.join(VARIANTS)}.")
flags.DEFINE_string("out", None, "Output .tflite file (default: <model>-<variant>.tflite).")
flags.DEFINE_integer("max_len", None, "KV cache length = most prompt + generated tokens "
                     "(default: min(max_position_embeddings, 512)).", lower_bound=2)
flags.DEFINE_integer("prefill_len", None, "Prompt capacity of prefill (default: max_len // 2).", lower_bound=1)
flags.DEFINE_enum("kv_cache", None, KV_CACHES, "op: our KVCacheAttention op owns the cache (default, except "
                  "ternary_unpack_builtin); variables: stock resource variables, builtin ops only.")


def run():
    if not FLAGS.model:
        raise TernaryVLMError("--model is required")
    variant = parse(FLAGS.variant, FLAGS.kv_cache)  # a bad variant fails before the (slow) load
    model = model_path(FLAGS.model)
    out = user_path(FLAGS.out or os.path.basename(os.path.normpath(FLAGS.model)) + f"-{FLAGS.variant}.tflite")
    result = export_path(model, variant, out, FLAGS.max_len, FLAGS.prefill_len)
    for key, n in result.replacements.items():
        logging.info("%s: %d quantized layers -> custom ops", key, n)
    print(f"wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB)")


if __name__ == "__main__":
    from ternary_vlm.cli import main_of
    app.run(main_of("export", run))
