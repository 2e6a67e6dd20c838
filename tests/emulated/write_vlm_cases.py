"""Host side of the emulated-device VLM test: the bundled demo VLM, quantized (k-means init) and
exported as ternary_f32, binary_f32, ternary and binary (int8 activations), ternary_unpack_op (UnpackTernary +
FULLY_CONNECTED) and ternary_int2 (stock INT2 FULLY_CONNECTEDs, no custom op) .tflite files, plus
a scene prompt and the logits the host's LiteRT gives for prefill and a few greedy decode steps. Writes
one .npz.

With --model=<a ternarize output or a shipped name, e.g. smollm2-vlm-ternary> and --variants, the same cases of
that trained VLM (its own codes), for a manual device run of a model too big for the test (docs/RESULTS.md)."""

import os

import numpy as np
from absl import app, flags
from PIL import Image

from ternary_vlm import atomic, export
from ternary_vlm.checkpoints import model_path
from ternary_vlm.checkpoints import processing
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.data import scenes
from ternary_vlm.quant import artifact
from ternary_vlm.quant.apply import quantize_model
from ternary_vlm.runtime import Runtime

flags.DEFINE_string("out", None, "Output .npz", required=True)
flags.DEFINE_string("model", None, "A quantized VLM (ternarize output or shipped name); default: the demo VLM, "
                    "quantized in memory.")
flags.DEFINE_list("variants", ["ternary_f32", "binary_f32", "ternary", "binary", "ternary_unpack_op",
                                              "ternary_int2"],
                  "Export variants.")
STEPS = 4


def main(argv):
    del argv
    arrays = {}
    for mode in flags.FLAGS.variants:
        loaded = load_model(model_path(flags.FLAGS.model))
        if flags.FLAGS.model:
            layers = artifact.read(loaded.model, loaded.path)
        else:
            layers = None
            quantize_model(loaded.model, export.parse(mode).scheme.mode, "kmeans", [],
                           loaded.text_config.num_hidden_layers)
        content = export.convert(loaded.model, export.parse(mode), quantized=layers, max_len=64,
                                 prefill_len=40).content
        scene = scenes.example(0, "test", 5, loaded.config.vision.image_size)
        ids, pixels = processing.build_inputs(loaded.tokenizer, "Describe the image.",
                                              image=Image.fromarray(scene.image),
                                              image_processor=loaded.image_processor, vlm_config=loaded.config)
        path = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), f"{mode}.tflite")
        with open(path, "wb") as f:
            f.write(content)
        rt = Runtime(path, xnnpack=False)
        logits = [rt.prefill(ids, rt.image_features(pixels))]
        tokens = []
        for step in range(STEPS):
            tokens.append(int(np.argmax(logits[-1][0])))
            logits.append(rt.decode(tokens[-1], len(ids) + step))
        arrays.update({f"{mode}_model": np.frombuffer(content, np.uint8), f"{mode}_ids": np.asarray(ids, np.int32),
                       f"{mode}_pixels": pixels, f"{mode}_logits": np.concatenate(logits),
                       f"{mode}_tokens": np.asarray(tokens, np.int32)})
    with atomic.output_file(flags.FLAGS.out) as tmp:
        np.savez(tmp, **arrays)


if __name__ == "__main__":
    app.run(main)
