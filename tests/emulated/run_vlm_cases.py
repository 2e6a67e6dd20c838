"""Device side: the host-exported demo VLMs (every variant in the cases file) run on the emulated ARM64 device
(aarch64 LiteRT + our aarch64 ops, XNNPACK off as in run_cases.py) through the same LiteRT-only
runtime; image encoding, prefill and greedy decode logits must equal the host's, and so must the greedy
tokens. A model without custom ops (ternary_int2) must run on the stock aarch64 LiteRT without our library: the
library path is pointed at nothing while it runs."""

import os
import sys
import tempfile

import numpy as np

from ternary_vlm.runtime import Runtime, read_metadata


def main(cases_path):
    cases = np.load(cases_path)
    modes = sorted(key[:-len("_model")] for key in cases.files if key.endswith("_model"))
    if not modes:
        return 1
    for mode in modes:
        path = os.path.join(tempfile.mkdtemp(), f"{mode}.tflite")
        with open(path, "wb") as f:
            f.write(cases[f"{mode}_model"].tobytes())
        stock = not read_metadata(cases[f"{mode}_model"].tobytes()).get("custom_ops", True)
        library = os.environ.pop("TERNARY_VLM_OPS_LIBRARY", None)
        if stock:  # loading our library would now fail: the model must run on stock LiteRT
            os.environ["TERNARY_VLM_OPS_LIBRARY"] = "/nonexistent/libternary_ops.so"
        rt = Runtime(path, xnnpack=False)
        if library is not None:
            os.environ["TERNARY_VLM_OPS_LIBRARY"] = library
        else:
            os.environ.pop("TERNARY_VLM_OPS_LIBRARY", None)
        ids, want = cases[f"{mode}_ids"].tolist(), cases[f"{mode}_logits"]
        logits = [rt.prefill(ids, rt.image_features(cases[f"{mode}_pixels"]))]
        for step, token in enumerate(cases[f"{mode}_tokens"].tolist()):
            logits.append(rt.decode(token, len(ids) + step))
        got = np.concatenate(logits)
        err = float(np.abs(got - want).max() / np.abs(want).max())
        greedy = [int(np.argmax(l[0])) for l in logits[:-1]]
        print(f"{mode}: prefill + {len(logits) - 1} decode steps, relative logit error vs host {err:.2g}, "
              f"greedy tokens {'equal' if greedy == cases[f'{mode}_tokens'].tolist() else 'DIFFER'}"
              + (", stock LiteRT without our library" if stock else ""))
        # int8 activations (ternary and binary, W2A8; ternary_int2, whose INT2 FULLY_CONNECTEDs quantize their input): a last-bit
        # difference upstream (the two CPUs' builtin float kernels) can move one row's rounding to int8 by a step,
        # so those models get the int8 model's looser bound.
        int8_activations = mode in ("ternary", "binary", "ternary_int2")
        if got.shape != want.shape or err > (1e-2 if int8_activations else 1e-4) \
                or greedy != cases[f"{mode}_tokens"].tolist():
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
