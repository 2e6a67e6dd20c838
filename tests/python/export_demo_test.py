"""The bundled demo VLM, ternarized and binarized (k-means init), exported: .tflite logits for a real
scene prompt (image encoding, prefill, greedy decode) equal the Flax model's to 1e-4."""

import os
import tempfile

import numpy as np
from absl.testing import absltest, parameterized
from PIL import Image

from ternary_vlm import atomic, export
from ternary_vlm.checkpoints import demo_model
from ternary_vlm.checkpoints import processing
from ternary_vlm.export import tflite
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.data import scenes
from ternary_vlm.models.decoding import Generator
from ternary_vlm.quant.apply import quantize_model, quantized_layers
from ternary_vlm.runtime import Runtime

MAX_LEN, PREFILL_LEN, STEPS = 64, 40, 8


class DemoExportTest(parameterized.TestCase):

    @parameterized.parameters(("ternary_f32", "ternary"), ("binary_f32", "binary"))  # float-activation variants
    def test_exported_logits_equal_flax(self, variant, mode):
        loaded = load_model(demo_model.default_checkpoint())
        quantize_model(loaded.model, mode, "kmeans", [], loaded.text_config.num_hidden_layers)
        scene = scenes.example(0, "test", 11, demo_model.IMAGE_SIZE)
        ids, pixels = processing.build_inputs(loaded.tokenizer, "Describe the image.",
                                              image=Image.fromarray(scene.image),
                                              image_processor=loaded.image_processor, vlm_config=loaded.config)
        result = export.convert(loaded.model, export.parse(variant), max_len=MAX_LEN, prefill_len=PREFILL_LEN)
        path = os.path.join(tempfile.mkdtemp(), f"{variant}.tflite")
        atomic.write_bytes(path, result.content)
        # Every output row of every quantized layer of the Flax model is computed by a custom op in each signature
        # that runs it, counted in the written file: vision tower + connector in encode_image, the decoder in prefill
        # and decode. (Layers that read one input share an op: export/tflite/concat_projections.py.)
        layers = quantized_layers(loaded.model)
        vision = sum(len(q.scale[...]) for p, q in layers if p[0] in ("vision_model", "connector"))
        text = sum(len(q.scale[...]) for _, q in layers) - vision
        per_signature = {"encode_image": vision, "prefill": text, "decode": text}
        with open(path, "rb") as f:
            content = f.read()
        parsed = tflite.read_model(content)
        op = {"ternary": "TernaryMatMul", "binary": "BinaryMatMul"}[mode]
        signatures = tflite.signature_subgraphs(content)
        self.assertLessEqual(set(per_signature), set(signatures))
        for key, index in signatures.items():  # others (reset) run no layer
            sub = parsed.subgraphs[index]
            rows = sum(int(sub.tensors[o.inputs[2]].shape[0]) for o in sub.operators
                       if tflite.opcode_name(parsed, o) == op)
            self.assertEqual(rows, per_signature.get(key, 0), key)
        self.assertGreater(vision, 0)

        gen, rt = Generator(loaded.model), Runtime(path)
        want_features = np.asarray(gen.image_features(pixels))
        got_features = rt.image_features(pixels)
        self.assertLessEqual(np.abs(got_features - want_features).max(), 1e-4)
        cache = gen.text_model().init_cache(1, MAX_LEN)
        want, cache = gen.prefill(ids, cache, want_features)
        got = rt.prefill(ids, got_features)
        worst = 0.0
        for step in range(STEPS):
            worst = max(worst, float(np.abs(got - np.asarray(want)).max()))
            token = int(np.argmax(np.asarray(want)[0]))
            self.assertEqual(int(np.argmax(got[0])), token, f"greedy token {step}")
            want, cache = gen.decode(token, len(ids) + step, cache)
            got = rt.decode(token, len(ids) + step)
        print(f"demo VLM {mode}: max |logit diff| {worst:.2e} over prefill + {STEPS - 1} decode steps")
        self.assertLessEqual(worst, 1e-4)


if __name__ == "__main__":
    absltest.main()
