"""Training across processes (train/distributed.py): two processes on localhost joined by jax.distributed (gloo
CPU collectives), each with 2 forced host devices, train the tiny VLM on a data:2,fsdp:2 mesh that spans both;
their losses must be the one-process run's, and their checkpoints must resume on one process. A checkpoint
written on 8 devices (fsdp:8) resumes on 2 (fsdp:2). The whole text recipe of `ternarize` (sampled corpus,
block-wise, distillation) run by two processes writes the one-process output. The test process itself has 8
forced devices (BUILD)."""

import json
import os
import socket
import subprocess
import sys
import tempfile
from unittest import mock

import jax
import numpy as np
from absl.testing import absltest
from flax import nnx

from ternary_vlm import train
from ternary_vlm.errors import TernaryVLMError
from ternary_vlm.train import distributed, sharding
from safetensors.numpy import load_file

import tiny_checkpoints
from cli_runner import run_module
from tiny_training import Killed, batch, dies_at, make_model, params

STEPS = 20
WORKER = "TERNARY_VLM_DISTRIBUTED_WORKER"


def config(checkpoint_dir=None):
    return train.TrainConfig(steps=STEPS, learning_rate=1e-2, warmup_steps=2, log_every=1, checkpoint_every=5,
                             checkpoint_dir=checkpoint_dir)


def run(mesh, checkpoint_dir=None, batch_fn=batch):
    """The tiny VLM distilled from its float self for STEPS steps on `mesh`: (losses, model)."""
    student, teacher = make_model(True), make_model()
    history = train.train(student, train.distillation_loss(1.0), batch_fn, config(checkpoint_dir), mesh=mesh,
                          frozen=(teacher,))
    return [h["loss"] for h in history], student


def worker():
    """One process of the job (this file run with WORKER set): trains, then process 0 writes what it saw."""
    job = json.loads(os.environ[WORKER])
    distributed.initialize(f"localhost:{job['port']}", 2, job["process_id"])
    mesh = sharding.parse_mesh("data:2,fsdp:2")
    stop = job.get("stop_at")
    try:
        losses, student = run(mesh, job["checkpoint_dir"], dies_at(stop) if stop else batch)
    except Killed:
        return
    if distributed.is_main():
        np.savez(job["out"], losses=losses, processes=jax.process_count(), devices=jax.device_count(),
                 mesh_processes=sorted({d.process_index for d in mesh.devices.flat}),
                 local_devices=jax.local_device_count(), *params(student))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(directory: str, **job) -> None:
    """Runs the two processes to the end (a job killed by stop_at ends too: both raise at the same step)."""
    port = free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = []
    for pid in range(2):
        spec = dict(job, port=port, process_id=pid, out=os.path.join(directory, "out.npz"))
        procs.append(subprocess.Popen([sys.executable, __file__], env={**env, WORKER: json.dumps(spec)},
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=600)
        if p.returncode:
            raise AssertionError(f"process exited {p.returncode}:\n{out[-3000:]}")


class DistributedTest(absltest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.one_device = sharding.parse_mesh(None, jax.devices()[:1])
        cls.losses, student = run(cls.one_device)
        cls.params = params(student)

    def test_two_processes_train_like_one(self):
        """Same losses as one process on one device (the same arithmetic; only the order of XLA's reductions
        differs, as in train_test's fsdp:8 run), and the weights every process holds at the end are those of the
        one-device run."""
        with tempfile.TemporaryDirectory() as d:
            launch(d, checkpoint_dir=os.path.join(d, "ckpt"))
            out = np.load(os.path.join(d, "out.npz"))
            self.assertEqual((int(out["processes"]), int(out["devices"]), int(out["local_devices"])), (2, 4, 2))
            self.assertEqual(out["mesh_processes"].tolist(), [0, 1])  # the mesh spans both processes
            np.testing.assert_allclose(out["losses"], self.losses, rtol=1e-4)
            got = [out[f"arr_{i}"] for i in range(len(self.params))]
            # Adam divides each gradient by its running RMS, so reduction-order noise in a gradient near zero
            # moves a weight by up to ~lr·(relative noise): measured 1.7e-6 after 20 steps at lr 1e-2 (weights up
            # to 1.07); 1e-4 leaves room for another CPU's summation order, far below a step's ~1e-2 move.
            for a, b in zip(got, self.params):
                np.testing.assert_allclose(a, b, atol=1e-4)

    def test_checkpoint_of_two_processes_resumes_in_one(self):
        with tempfile.TemporaryDirectory() as d:
            ckpt = os.path.join(d, "ckpt")
            launch(d, checkpoint_dir=ckpt, stop_at=12)  # both processes die at step 12: last checkpoint at 10
            self.assertFalse(os.path.exists(os.path.join(d, "out.npz")))
            losses, _ = run(self.one_device, ckpt)
        # The whole history: the job's rows up to its checkpoint (its process 0 logged them), then this run's.
        np.testing.assert_allclose(losses, self.losses, rtol=1e-4)

    def test_checkpoint_of_eight_devices_resumes_on_two(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(Killed):
                run(sharding.parse_mesh("fsdp:8"), d, dies_at(12))
            two = sharding.parse_mesh("fsdp:2", jax.devices()[:2])
            losses, student = run(two, d)
            leaf = next(x for x in jax.tree.leaves(nnx.state(student)) if np.ndim(x) == 2 and x.shape[0] % 2 == 0)
            self.assertEqual(len(leaf.sharding.device_set), 2)  # restored onto the 2-device layout
        np.testing.assert_allclose(losses, self.losses, rtol=1e-4)

    def test_ternarize_text_recipe_on_two_processes_writes_the_one_process_output(self):
        with tempfile.TemporaryDirectory() as d:
            model = tiny_checkpoints.make_llama_with_tokenizer(os.path.join(d, "tiny"))
            flags = [f"--model={model}", "--data=sampled", "--corpus_rows=8", "--calib_rows=8", "--blockwise_steps=2",
                     "--steps=4", "--eval_every=2", "--eval_windows=1", "--checkpoint_every=2", "--seq_len=32", "--batch_size=4",
                     "--export=false"]
            with mock.patch.dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1"):
                one = run_module("ternary_vlm.cli.ternarize", *flags, f"--out={d}/one", timeout=600)
            self.assertEqual(one.returncode, 0, one.stderr[-3000:])
            job = [f"--out={d}/two", f"--coordinator_address=localhost:{free_port()}", "--num_processes=2"]
            env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
                       PYTHONPATH=os.pathsep.join(sys.path))
            procs = [subprocess.Popen([sys.executable, "-m", "ternary_vlm.cli.ternarize", *flags, *job,
                                       f"--process_id={i}"], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for i in range(2)]
            for p in procs:
                out, _ = p.communicate(timeout=600)
                self.assertEqual(p.returncode, 0, out[-3000:])
            curves = [[(p["stage"], p["step"], p["ppl_pydoc"]) for p in
                       json.load(open(os.path.join(d, name, "report.json")))["curve"]] for name in ("one", "two")]
            self.assertEqual([c[:2] for c in curves[1]], [c[:2] for c in curves[0]])
            np.testing.assert_allclose([c[2] for c in curves[1]], [c[2] for c in curves[0]], rtol=1e-5)
            for name in ("model.safetensors", "quantized.safetensors"):
                want, got = (load_file(os.path.join(d, run, name)) for run in ("one", "two"))
                self.assertEqual(got.keys(), want.keys())
                for k in want:  # measured equal to 1.5e-8 (one float32 rounding of the reduction order)
                    np.testing.assert_allclose(got[k], want[k], atol=1e-6, err_msg=k)

    def test_flag_errors_name_the_problem(self):
        with self.assertRaisesRegex(TernaryVLMError, "go together"):
            distributed.initialize("localhost:1234", None, None)
        with self.assertRaisesRegex(TernaryVLMError, r"--process_id=2 is not in \[0, --num_processes=2\)"):
            distributed.initialize("localhost:1234", 2, 2)


if __name__ == "__main__":
    if WORKER in os.environ:
        worker()
    else:
        absltest.main()
