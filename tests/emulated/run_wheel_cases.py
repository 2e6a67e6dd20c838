"""Device side: the ternary-vlm wheel as pip installed it for aarch64 (install_wheel.py), on the emulated device's
Python; `ternary-vlm generate` must write the caption the host's runtime wrote, from the wheel's own files and
op library, without JAX."""

import contextlib
import io
import os
import sys
import tempfile
import zipfile

import numpy as np


def main(cases_path, installed_zip):
    site = tempfile.mkdtemp()
    zipfile.ZipFile(installed_zip).extractall(site)
    sys.path.insert(0, site)  # before the repository's runtime files that run_on_device.sh puts on the path
    os.environ.pop("TERNARY_VLM_OPS_LIBRARY", None)
    cases = np.load(cases_path)
    work = tempfile.mkdtemp()
    model_dir = os.path.join(work, "demo")
    os.makedirs(model_dir)
    for key in cases.files:
        if key.startswith("file:"):
            cases[key].tofile(os.path.join(model_dir, key[len("file:"):]))
    cases["model"].tofile(os.path.join(work, "model.tflite"))
    cases["png"].tofile(os.path.join(work, "scene.png"))
    import ternary_vlm
    from ternary_vlm.cli import main as cli
    from ternary_vlm.runtime import litert
    if not ternary_vlm.__file__.startswith(site) or not litert.ops_library().startswith(site):
        print(f"not the installed wheel: {ternary_vlm.__file__}, {litert.ops_library()}")
        return 1
    sys.argv = ["ternary-vlm", "generate", f"--tflite={work}/model.tflite", f"--model={model_dir}",
                f"--image={work}/scene.png", f"--prompt={cases['prompt'].tobytes().decode()}",
                f"--max_new_tokens={int(cases['new_tokens'])}", "--noxnnpack", "--num_threads=1"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main()
        except SystemExit as e:
            if e.code:
                print(f"ternary-vlm generate failed: {e.code}", file=sys.stderr)
                return 1
    got, want = out.getvalue().strip(), cases["caption"].tobytes().decode()
    heavy = [m for m in ("jax", "flax", "tensorflow") if m in sys.modules]
    print(f"ternary-vlm {ternary_vlm.__version__} (aarch64 wheel) generate: {got!r}; host: {want!r}; "
          f"imported {heavy or 'no JAX / TF'}")
    return 0 if got == want and got and not heavy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
