"""Writes the emulated-device test cases on the host: single-op models with random shapes (float and int8
activations), their inputs, and the outputs the host's LiteRT + x86 ops give (checked here against numpy
first)."""


import int8_rows
import numpy as np
from absl import app, flags

from ternary_vlm import atomic

from ternary_vlm.runtime import litert
from ternary_vlm.quant import packing
from ternary_vlm.export.tflite import builder

flags.DEFINE_string("out", None, "Output .npz", required=True)
flags.DEFINE_integer("cases", 24, "Number of models.")


def main(argv):
    del argv
    rng = np.random.default_rng(2026)
    arrays = {}
    for i in range(flags.FLAGS.cases):
        fmt = (packing.TERNARY, packing.BINARY)[i % 2]
        m, k, n = int(rng.choice([1, 3, 17])), int(rng.integers(1, 700)), int(rng.integers(1, 200))
        alphabet = [-1, 0, 1] if fmt == packing.TERNARY else [-1, 1]
        w = rng.choice(alphabet, size=(n, k)).astype(np.int8)
        scale = rng.uniform(0.01, 0.1, n).astype(np.float32)
        bias = rng.normal(size=n).astype(np.float32) if i % 3 else None
        x = rng.normal(size=(m, k)).astype(np.float32)
        activations = ("float32", "float32", "int8", "int8")[i % 4]
        model = builder.quantized_matmul_model(fmt, x.shape, packing.pack(w, fmt), scale, bias, activations)
        interp = litert.interpreter(model_content=model)
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        y = interp.get_tensor(interp.get_output_details()[0]["index"])
        if activations == "int8":  # per row q, s, z (cc/kernels/a8/layout.h), Σ q·w exact
            want = int8_rows.product(x, w)[0] * scale + (0 if bias is None else bias)
        else:
            want = (x.astype(np.float64) @ w.T) * scale + (0 if bias is None else bias)
        assert np.abs(y - want).max() <= 1e-5 * max(np.abs(want).max(), 1e-6), f"host case {i}"
        arrays[f"model{i}"] = np.frombuffer(model, np.uint8)
        arrays[f"x{i}"], arrays[f"y{i}"] = x, y
    with atomic.output_file(flags.FLAGS.out) as tmp:
        np.savez(tmp, **arrays)


if __name__ == "__main__":
    app.run(main)
