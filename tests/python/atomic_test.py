"""Outputs appear whole or not at all: a failed write (a full disk, simulated with RLIMIT_FSIZE), Ctrl-C and
SIGTERM in a CLI leave no temporary file and the previous output as it was, and report one line."""

import os
import subprocess
import sys
import tempfile
import textwrap

from absl.testing import absltest

from ternary_vlm import atomic
from ternary_vlm.errors import TernaryVLMError


def run_python(code: str, cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


class AtomicTest(absltest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.target = os.path.join(self.dir, "out.bin")
        atomic.write_bytes(self.target, b"previous")

    def assert_untouched(self):
        self.assertEqual(sorted(os.listdir(self.dir)), ["out.bin"])
        with open(self.target, "rb") as f:
            self.assertEqual(f.read(), b"previous")

    def test_write_replaces_whole(self):
        atomic.write_bytes(self.target, b"new")
        self.assertEqual(open(self.target, "rb").read(), b"new")
        self.assertEqual(os.listdir(self.dir), ["out.bin"])
        self.assertEqual(os.stat(self.target).st_mode & 0o777, 0o666 & ~_umask())

    def test_exception_while_writing_leaves_previous(self):
        with self.assertRaises(KeyboardInterrupt):
            with atomic.output_file(self.target) as tmp, open(tmp, "wb") as f:
                f.write(b"half")
                raise KeyboardInterrupt
        self.assert_untouched()

    def test_full_disk_is_one_line_and_leaves_previous(self):
        # Files may not grow past 4 KiB in the child: writing 1 MiB fails as on a full disk (EFBIG, not ENOSPC).
        result = run_python(f"""
            import resource, signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
            from ternary_vlm import atomic
            from ternary_vlm.errors import TernaryVLMError
            try:
                atomic.write_bytes({self.target!r}, b"x" * (1 << 20))
            except TernaryVLMError as e:
                print(e)
            """, self.dir)
        self.assertEqual(result.stdout.strip(), f"cannot write {self.target}: File too large", result.stderr)
        self.assert_untouched()

    def test_directory_output_is_whole_or_absent(self):
        out = os.path.join(self.dir, "model")
        with atomic.output_directory(out) as tmp:
            open(os.path.join(tmp, "a"), "w").write("1")
        with self.assertRaises(TernaryVLMError):
            with atomic.output_directory(out) as tmp:
                open(os.path.join(tmp, "b"), "w").write("2")
                raise OSError(28, "No space left on device")
        self.assertEqual(os.listdir(out), ["a"])
        self.assertEqual(sorted(os.listdir(self.dir)), ["model", "out.bin"])

    def test_sigterm_in_a_cli_cleans_up_and_says_so(self):
        result = run_python(f"""
            import os, signal
            from absl import app
            from ternary_vlm import atomic
            from ternary_vlm.cli import main_of

            def run():
                with atomic.output_file({self.target!r}) as tmp, open(tmp, "wb") as f:
                    f.write(b"half")
                    f.flush()
                    os.kill(os.getpid(), signal.SIGTERM)
                    f.write(b" never")

            app.run(main_of("export", run), argv=["export"])
            """, self.dir)
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(result.stderr.strip().splitlines()[-1], "export: interrupted")
        self.assert_untouched()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


if __name__ == "__main__":
    absltest.main()
