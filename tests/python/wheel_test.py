"""The ternary-vlm wheel as a device user gets it: installed by pip into a fresh venv that holds only its declared
dependencies (and theirs), it imports no JAX or TensorFlow, gives LiteRT our ops through load_delegate(), and its
`ternary-vlm generate` writes the same caption as the in-repo runtime; a wheel for another architecture is refused.
"""

import glob
import importlib.metadata as md
import os
import re
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from absl.testing import absltest
from PIL import Image

from ternary_vlm import atomic, export
from ternary_vlm.checkpoints import demo_model
from ternary_vlm.checkpoints.loader import load_model
from ternary_vlm.checkpoints.processing import build_inputs
from ternary_vlm.data import scenes
from ternary_vlm.quant.apply import quantize_model
from ternary_vlm.runtime import Runtime

RUNFILES = os.path.join(os.environ.get("TEST_SRCDIR", ""), "ternary_vlm")
WHEEL = glob.glob(os.path.join(RUNFILES, "python", "ternary_vlm-*-py3-none-*_x86_64.whl"))
TRAIN_WHEEL = glob.glob(os.path.join(RUNFILES, "python", "ternary_vlm_train-*.whl"))
BUILDER = os.path.join(RUNFILES, "tools", "wheel", "build_wheel")


def closure(requirements):
    """The installed distributions that `requirements` need, transitively (markers evaluated here)."""
    from packaging.requirements import Requirement
    seen, todo = {}, list(requirements)
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen:
            continue
        seen[key] = md.distribution(req.name)
        todo += seen[key].requires or []
    return seen


def fresh_venv(directory, requirements):
    """A venv (with pip) whose site-packages holds links to exactly the distributions of `requirements`."""
    subprocess.run([sys.executable, "-m", "venv", directory], check=True)
    site = glob.glob(os.path.join(directory, "lib", "python3*", "site-packages"))[0]
    for dist in closure(requirements).values():
        tops = {str(f).split("/")[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src = os.path.join(str(dist.locate_file("")), top)
            if os.path.exists(src) and not os.path.exists(os.path.join(site, top)):
                os.symlink(src, os.path.join(site, top))
    return os.path.join(directory, "bin")


def requirements(wheel):
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    return [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist: ")]


def install(bin_dir, *wheels):
    r = subprocess.run([os.path.join(bin_dir, "pip"), "install", "--no-index", "--no-deps", *wheels],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


class WheelTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        assert len(WHEEL) == 1 and len(TRAIN_WHEEL) == 1, (WHEEL, TRAIN_WHEEL)
        cls.dir = tempfile.mkdtemp()
        cls.bin = fresh_venv(os.path.join(cls.dir, "venv"), requirements(WHEEL[0]))
        install(cls.bin, WHEEL[0])
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # nothing from the repository or the test's runfiles
        env.pop("TERNARY_VLM_OPS_LIBRARY", None)
        cls.env = env

    def python(self, code):
        return subprocess.run([os.path.join(self.bin, "python"), "-c", code], capture_output=True, text=True,
                              env=self.env, cwd=self.dir)

    def test_dependencies_are_declared_and_runtime_imports_no_jax_or_tensorflow(self):
        check = subprocess.run([os.path.join(self.bin, "pip"), "check"], capture_output=True, text=True, env=self.env)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        r = self.python("import sys, ternary_vlm, ternary_vlm.runtime, ternary_vlm.cli.generate\n"
                        "print(ternary_vlm.__file__, ternary_vlm.__version__)\n"
                        "print(sorted(m for m in ('jax', 'flax', 'tensorflow', 'torch') if m in sys.modules))")
        self.assertEqual(r.returncode, 0, r.stderr)
        where, version = r.stdout.splitlines()[0].split()
        self.assertTrue(where.startswith(self.dir), where)  # the installed copy, not the repository's
        self.assertIn(f"-{version}-", os.path.basename(WHEEL[0]))
        self.assertEqual(r.stdout.splitlines()[1], "[]")

    def test_load_delegate_gives_a_stock_interpreter_our_ops(self):
        r = self.python(
            "import numpy as np, ternary_vlm\n"
            "from ai_edge_litert import interpreter as litert\n"
            f"model = open({self.matmul_model()!r}, 'rb').read()\n"
            "i = litert.Interpreter(model_content=model, experimental_delegates=[ternary_vlm.load_delegate()])\n"
            "i.allocate_tensors(); i.set_tensor(i.get_input_details()[0]['index'], np.ones((1, 8), np.float32))\n"
            "i.invoke(); print(i.get_tensor(i.get_output_details()[0]['index']).tolist())")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(eval(r.stdout), [[4.0, -4.0]])  # rows of +1 and -1 codes (scale 0.5) times ones(8)

    def matmul_model(self):
        from ternary_vlm.export.tflite import builder
        from ternary_vlm.quant import packing
        codes = np.array([[1] * 8, [-1] * 8], np.int8)
        path = os.path.join(self.dir, "matmul.tflite")
        atomic.write_bytes(path, builder.quantized_matmul_model(packing.TERNARY, (1, 8), packing.pack(
            codes, packing.TERNARY), np.array([0.5, 0.5], np.float32)))
        return path

    def test_console_script_generates_the_runtimes_caption(self):
        loaded = load_model(demo_model.default_checkpoint())
        quantize_model(loaded.model, "ternary", "kmeans", [], loaded.text_config.num_hidden_layers)
        path = os.path.join(self.dir, "demo-ternary.tflite")
        atomic.write_bytes(path, export.convert(loaded.model, export.parse("ternary"), max_len=80,
                                                prefill_len=64).content)
        scene = scenes.example(0, "test", 2, demo_model.IMAGE_SIZE)
        image = os.path.join(self.dir, "scene.png")
        Image.fromarray(scene.image).save(image)
        ids, pixels = build_inputs(loaded.tokenizer, "Describe the image.", image=Image.open(image),
                                   image_processor=loaded.image_processor, vlm_config=loaded.config)
        stop = [loaded.tokenizer.eos_token_id, loaded.tokenizer.token_to_id("<end_of_utterance>")]
        want = loaded.tokenizer.decode(list(Runtime(path).generate(ids, pixel_values=pixels, max_new_tokens=12,
                                                                   stop_ids=[s for s in stop if s is not None])))
        r = subprocess.run([os.path.join(self.bin, "ternary-vlm"), "generate", f"--tflite={path}",
                            f"--model={demo_model.default_checkpoint()}", f"--image={image}",
                            "--prompt=Describe the image.", "--max_new_tokens=12"],
                           capture_output=True, text=True, env=self.env, cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(r.stdout.strip(), want.strip())
        self.assertNotEqual(want.strip(), "")
        r = subprocess.run([os.path.join(self.bin, "ternary-vlm"), "ternarize"], capture_output=True, text=True,
                           env=self.env, cwd=self.dir)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("pip install ternary-vlm-train", r.stderr.strip().splitlines()[-1])

    def test_train_wheel_adds_ternarize_and_export(self):
        """ternary-vlm-train on top of ternary-vlm, in a venv of both wheels' declared dependencies: pip check
        passes and `ternary-vlm export` writes a .tflite the runtime wheel runs."""
        train = [r for r in requirements(TRAIN_WHEEL[0]) if not r.startswith("ternary-vlm")]
        bin_dir = fresh_venv(os.path.join(self.dir, "train-venv"), requirements(WHEEL[0]) + train)
        install(bin_dir, WHEEL[0], TRAIN_WHEEL[0])
        check = subprocess.run([os.path.join(bin_dir, "pip"), "check"], capture_output=True, text=True, env=self.env)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        out = os.path.join(self.dir, "demo-fp32.tflite")
        r = subprocess.run([os.path.join(bin_dir, "ternary-vlm"), "export",
                            f"--model={demo_model.default_checkpoint()}", "--variant=fp32", "--max_len=64",
                            f"--out={out}"], capture_output=True, text=True, env=self.env, cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(Runtime(out).meta["variant"], "fp32")

    def test_a_wheel_for_another_architecture_is_refused(self):
        library = os.path.join(self.dir, "fake_aarch64.so")  # an ELF header for aarch64 (e_machine 183)
        with open(library, "wb") as f:
            f.write(b"\x7fELF\x02\x01\x01" + bytes(11) + (183).to_bytes(2, "little") + bytes(44))
        out = os.path.join(self.dir, "ternary_vlm-0.0.1-py3-none-manylinux_2_35_aarch64.whl")
        subprocess.run([BUILDER, f"--out={out}", "--distribution=ternary-vlm", "--version=0.0.1",
                        "--tag=py3-none-manylinux_2_35_aarch64", f"--file=ternary_vlm/lib.so={library}",
                        f"--native={library}"], check=True)
        r = subprocess.run([os.path.join(self.bin, "pip"), "install", "--no-index", "--no-deps", "--dry-run", out],
                           capture_output=True, text=True, env=self.env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("is not a supported wheel on this platform", r.stderr)
        r = subprocess.run([BUILDER, f"--out={out}", "--distribution=ternary-vlm", "--version=0.0.1",
                            "--tag=py3-none-manylinux_2_35_x86_64", f"--file=ternary_vlm/lib.so={library}",
                            f"--native={library}"], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)  # the tag is checked against the library's architecture
        self.assertIn("not an ELF library for x86_64", r.stderr)


if __name__ == "__main__":
    absltest.main()
