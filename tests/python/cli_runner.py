"""Runs a ternary_vlm CLI module in a child Python, as a user would, with this test's import path."""

import os
import subprocess
import sys


def run_module(module: str, *flags: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", module, *flags], env=env, capture_output=True, text=True,
                          timeout=timeout)
