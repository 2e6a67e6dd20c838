"""Perplexity of any model the CLIs accept on a text file, so anyone can check the project's figures on their text.

  tools/bazel run //python:evaluate -- --model=smollm2 --data=FILE --json=OUT.json
  tools/bazel run //python:evaluate -- --model=OUT_OF_TERNARIZE          # the project's held-out texts
  tools/bazel run //python:evaluate -- --model=smollm2-ternary --int8_inputs=row   # as the W2A8 export rounds

The text is tokenized as one stream and scored in consecutive non-overlapping windows of --window tokens
(each window sees only its own tokens: the figures of docs/RESULTS.md). A ternarize output directory loads
with its ternary weights α·t; a GGUF or Hugging Face directory with its float weights. The JSON (written
atomically) holds, per text, `perplexity` and `tokens` (the number of tokens scored).
"""

from __future__ import annotations

import json
import math

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Hugging Face model directory, GGUF file, ternarize output, or smollm2; "
                    "default: the bundled demo VLM.")
flags.DEFINE_string("data", None, "A UTF-8 text file; default: the held-out texts pydoc, code and licence "
                    "(data/eval_texts.py).")
flags.DEFINE_integer("window", 256, "Tokens per scored window.", lower_bound=1)
flags.DEFINE_integer("max_windows", None, "Score at most this many windows per text.", lower_bound=1)
flags.DEFINE_string("json", None, "Also write the results here.")
flags.DEFINE_string("int8_inputs", None, "Score with every linear layer's and the LM head's input rounded to int8 as "
                    "the W2A8 export does: 'row' (one scale per token, as our ops), or N (one per N inputs).")


def run() -> dict:
    from ternary_vlm import atomic
    from ternary_vlm.checkpoints import model_path
    from ternary_vlm.checkpoints.loader import load_model
    from ternary_vlm.data import eval_texts, user_data
    from ternary_vlm.errors import TernaryVLMError
    from ternary_vlm.models import layers
    from ternary_vlm.paths import user_path

    group = layers.int8_group(FLAGS.int8_inputs)  # a bad value fails before any work
    texts = ({FLAGS.data: user_data.read_text(user_path(FLAGS.data))} if FLAGS.data else
             {name: eval_texts.load(name) for name in eval_texts.NAMES})
    path = model_path(FLAGS.model)
    loaded = load_model(path)
    if loaded.tokenizer is None:
        raise TernaryVLMError(f"{path}: no tokenizer.json: cannot tokenize the text")
    model = loaded.model.text_model if loaded.is_vlm else loaded.model
    results = {}
    with layers.int8_inputs(group):
        for name, text in texts.items():
            results[name] = _score(model, name, text, loaded.tokenizer)
    out = {"model": path, "window": FLAGS.window, "int8_inputs": FLAGS.int8_inputs, "texts": results}
    if len(results) == 1:
        out.update(next(iter(results.values())))
    if FLAGS.json:
        atomic.write_text(user_path(FLAGS.json), json.dumps(out, indent=1))
    return out


def _score(model, name: str, text: str, tokenizer) -> dict:
    from ternary_vlm.errors import TernaryVLMError
    from ternary_vlm.train import evaluate
    from ternary_vlm.train.text_recipe import token_stream

    ids = token_stream([text], tokenizer)
    if len(ids) < FLAGS.window + 2:
        raise TernaryVLMError(f"{name}: {len(ids)} tokens, too few for one window of {FLAGS.window}")
    nll, count = evaluate.text_nll(model, ids, FLAGS.window, batch_size=8, max_windows=FLAGS.max_windows)
    result = {"perplexity": math.exp(nll / count), "tokens": count}
    print(f"{name}: perplexity {result['perplexity']:.4f} over {count} tokens (windows of {FLAGS.window})",
          flush=True)
    return result


if __name__ == "__main__":
    from ternary_vlm.cli import main_of
    app.run(main_of("evaluate", run))
