"""Perplexity of any model the CLIs accept on a text file, so anyone can check the project's figures on their text.

  tools/bazel run //python:evaluate -- --model=smollm2 --data=FILE --json=OUT.json
  tools/bazel run //python:evaluate -- --model=OUT_OF_TERNARIZE          # the project's held-out texts
  tools/bazel run //python:evaluate -- --model=smollm2-ternary --int8_inputs=row   # as the W2A8 export rounds
  tools/bazel run //python:evaluate -- --model=smollm2-vlm-ternary --scenes=1024  # a VLM: its scene scores too

The text is tokenized as one stream and scored in consecutive non-overlapping windows of --window tokens
(each window sees only its own tokens: the figures of docs/RESULTS.md). A ternarize output directory loads
with its ternary weights α·t; a GGUF or Hugging Face directory with its float weights. The JSON (written
atomically) holds, per text, `perplexity` and `tokens` (the number of tokens scored). With --scenes, a VLM is also
scored on the first N test scenes per task as ternarize's reports score it: exact caption and QA answers (greedy,
teacher-forced) and caption perplexity; the JSON's `scenes` holds them with the counts behind each accuracy.
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
flags.DEFINE_integer("scenes", None, "A VLM: also score the first N test scenes per task (captions, QA).",
                     lower_bound=1)
flags.DEFINE_string("int8_inputs", None, "Score with every linear layer's and the LM head's input rounded to int8 as "
                    "the W2A8 export does: 'row' (one scale per token, as our ops), or N (one per N inputs).")


def run() -> dict:
    from ternary_vlm import atomic
    from ternary_vlm.checkpoints import model_path
    from ternary_vlm.checkpoints.loader import load_model
    from ternary_vlm.checkpoints.processing import load_processing
    from ternary_vlm.data import eval_texts, user_data
    from ternary_vlm.errors import TernaryVLMError
    from ternary_vlm.models import layers
    from ternary_vlm.paths import user_path

    group = layers.int8_group(FLAGS.int8_inputs)  # a bad value fails before any work
    texts = ({FLAGS.data: user_data.read_text(user_path(FLAGS.data))} if FLAGS.data else
             {name: eval_texts.load(name) for name in eval_texts.NAMES})
    path = model_path(FLAGS.model)
    if FLAGS.scenes and not load_processing(path).is_vlm:  # before the (slow) load
        raise TernaryVLMError(f"--scenes: {path} is a language model (no vision tower to score on scenes)")
    loaded = load_model(path)
    if loaded.tokenizer is None:
        raise TernaryVLMError(f"{path}: no tokenizer.json: cannot tokenize the text")
    model = loaded.model.text_model if loaded.is_vlm else loaded.model
    results = {}
    with layers.int8_inputs(group):
        for name, text in texts.items():
            results[name] = _score(model, name, text, loaded.tokenizer)
        scenes = _scenes(loaded) if FLAGS.scenes else None
    out = {"model": path, "window": FLAGS.window, "int8_inputs": FLAGS.int8_inputs, "texts": results}
    if scenes:
        out["scenes"] = scenes
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


def _scenes(loaded) -> dict:
    from ternary_vlm.data.batches import Batcher
    from ternary_vlm.train import evaluate

    n = FLAGS.scenes
    batcher = Batcher(loaded.tokenizer, loaded.image_processor, loaded.config, max_len=evaluate.REPORT_MAX_LEN)
    result = {"examples": n, **evaluate.scene_scores(loaded.model, batcher, n)}

    def accuracy(task):  # with its binomial standard error, so that two models' figures can be compared
        k = result[f"{task}_correct"]
        return f"{100 * k / n:.1f} % ± {100 * math.sqrt(k * (n - k) / n) / n:.1f} ({k} of {n})"

    print(f"scenes: caption exact {accuracy('caption')}, QA exact {accuracy('qa')}, caption perplexity "
          f"{result['caption_ppl']:.4f}", flush=True)
    return result


if __name__ == "__main__":
    from ternary_vlm.cli import main_of
    app.run(main_of("evaluate", run))
