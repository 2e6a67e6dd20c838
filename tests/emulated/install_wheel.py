"""Host side: `pip install` of the aarch64 ternary-vlm wheel for the emulated device (Python 3.11, manylinux
aarch64) into a folder, packed as a zip the device test unpacks onto its sys.path. The device has no pip; this is
pip installing for that target (--platform), as one would for a board from a workstation."""

import os
import shutil
import subprocess
import sys
import tempfile

wheel, out = sys.argv[1], sys.argv[2]
target = tempfile.mkdtemp()
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                "--no-index", "--only-binary=:all:", "--target", target, "--python-version", "3.11",
                "--implementation", "cp", "--platform", "manylinux_2_35_aarch64", wheel], check=True)
shutil.make_archive(out[:-len(".zip")], "zip", target)
shutil.rmtree(target)
os.chmod(out, 0o644)
