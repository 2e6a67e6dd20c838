"""Runs on the emulated ARM64 device (Debian arm64 python3.11 + aarch64 LiteRT under qemu): the
host-written models through LiteRT with our aarch64 op library must give the host's outputs.

Two qemu 7.2 hazards, both from the guest seeing the host's x86 /proc/cpuinfo: XNNPACK segfaults on it,
so it is off (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES; our ops do not use it), and LiteRT's
CPU backend (cpuinfo library) crashes on it while building interpreters with builtin matmuls, so
run_on_device.sh preloads cpuinfo_shim.c, which serves an ARM description instead.
"""

import sys

import numpy as np

from ternary_vlm.runtime import litert  # from the runfiles' python/ (added to sys.path by the caller)


def main(cases_path):
    cases = np.load(cases_path)
    count = len([k for k in cases.files if k.startswith("model")])
    worst = 0.0
    for i in range(count):
        interp = litert.interpreter(model_content=cases[f"model{i}"].tobytes(), xnnpack=False)
        interp.set_tensor(interp.get_input_details()[0]["index"], cases[f"x{i}"])
        interp.invoke()
        y, want = interp.get_tensor(interp.get_output_details()[0]["index"]), cases[f"y{i}"]
        err = float(np.abs(y - want).max() / max(np.abs(want).max(), 1e-6))
        worst = max(worst, err)
        if y.shape != want.shape or err > 1e-5:
            print(f"case {i}: shape {y.shape} vs {want.shape}, relative error {err:.3g}")
            return 1
    print(f"{count} models on emulated aarch64 equal the host's outputs (worst relative error {worst:.2g})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
