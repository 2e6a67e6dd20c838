"""Output files and directories appear whole or not at all.

Each is written under a temporary name beside its target and renamed into place when complete; on any
failure, Ctrl-C, or SIGTERM (cli.main_of turns it into an exception) the temporary is removed. A write
that fails (a full disk, no permission) becomes a TernaryVLMError naming the target: one line, no
traceback, and the previous file, if any, is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from ternary_vlm.errors import TernaryVLMError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def output_file(path: str) -> Iterator[str]:
    """Yields a temporary path (same directory and extension) to write; renamed to `path` on success."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would surprise whoever copies the file on
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise TernaryVLMError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        _remove(tmp)
        raise


def write_bytes(path: str, content: bytes) -> None:
    with output_file(path) as tmp, open(tmp, "wb") as f:
        f.write(content)


def write_text(path: str, text: str) -> None:
    with output_file(path) as tmp, open(tmp, "w") as f:
        f.write(text)


@contextlib.contextmanager
def output_directory(path: str) -> Iterator[str]:
    """Yields a temporary directory to fill; it replaces `path` (and whatever was there) on success."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary directory
        yield tmp
        if os.path.exists(path):
            old = path + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old)
        else:
            os.rename(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise TernaryVLMError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
