"""Host side of the emulated-device wheel test: the demo VLM quantized and exported as ternary, its tokenizer and
processor files, one test scene as a PNG, and the caption the host's runtime generates for it. Writes one .npz."""

import io
import os

import numpy as np
from absl import app, flags
from PIL import Image

from ternary_vlm import atomic, export
from ternary_vlm.checkpoints import demo_model
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.checkpoints.processing import build_inputs
from ternary_vlm.data import scenes
from ternary_vlm.quant.apply import quantize_model
from ternary_vlm.runtime import Runtime

flags.DEFINE_string("out", None, "Output .npz", required=True)
PROMPT, NEW_TOKENS = "Describe the image.", 12
FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "chat_template.jinja",
         "chat_template.json")


def main(argv):
    del argv
    directory = demo_model.default_checkpoint()
    loaded = load_model(directory)
    quantize_model(loaded.model, "ternary", "kmeans", [], loaded.text_config.num_hidden_layers)
    content = export.convert(loaded.model, export.parse("ternary_f32"), max_len=80, prefill_len=64).content
    png = io.BytesIO()
    Image.fromarray(scenes.example(0, "test", 2, demo_model.IMAGE_SIZE).image).save(png, format="PNG")
    ids, pixels = build_inputs(loaded.tokenizer, PROMPT, image=Image.open(io.BytesIO(png.getvalue())),
                               image_processor=loaded.image_processor, vlm_config=loaded.config)
    path = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), "wheel-ternary.tflite")
    with open(path, "wb") as f:
        f.write(content)
    stop = [i for i in (loaded.tokenizer.eos_token_id, loaded.tokenizer.token_to_id("<end_of_utterance>"),
                        loaded.tokenizer.token_to_id("<|im_end|>")) if i is not None]
    tokens = list(Runtime(path, xnnpack=False).generate(ids, pixel_values=pixels, max_new_tokens=NEW_TOKENS,
                                                        stop_ids=stop))
    arrays = {"model": np.frombuffer(content, np.uint8), "png": np.frombuffer(png.getvalue(), np.uint8),
              "caption": np.frombuffer(loaded.tokenizer.decode(tokens).strip().encode(), np.uint8),
              "prompt": np.frombuffer(PROMPT.encode(), np.uint8), "new_tokens": np.asarray(NEW_TOKENS)}
    for name in FILES:
        if os.path.exists(os.path.join(directory, name)):
            arrays["file:" + name] = np.fromfile(os.path.join(directory, name), np.uint8)
    with atomic.output_file(flags.FLAGS.out) as tmp:
        np.savez(tmp, **arrays)


if __name__ == "__main__":
    app.run(main)
