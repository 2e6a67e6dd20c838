"""Paths given on a command line, resolved where the user typed them.

`bazel run` starts binaries in their runfiles tree; it names the user's directory in
BUILD_WORKING_DIRECTORY, against which relative flags must be resolved.
"""

import os


def user_path(path: str | None) -> str | None:
    if not path or os.path.isabs(path):
        return path
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", ""), path)
