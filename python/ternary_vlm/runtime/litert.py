"""LiteRT interpreters with the project's custom ops (TernaryMatMul, BinaryMatMul) available.

Stock LiteRT cannot register custom ops from Python, so libternary_ops.so is loaded as an
external delegate that resolves them (cc/tflite/delegate.cc).
"""

import os
from pathlib import Path

from ai_edge_litert import interpreter as litert

# Inside the package in the wheel, beside it in Bazel runfiles; TERNARY_VLM_OPS_LIBRARY overrides both.
_WHEEL_LIBRARY = Path(__file__).parents[1] / "libternary_ops.so"
_RUNFILES_LIBRARY = Path(__file__).parents[3] / "cc" / "libternary_ops.so"


def ops_library() -> str:
    default = _WHEEL_LIBRARY if _WHEEL_LIBRARY.is_file() else _RUNFILES_LIBRARY
    path = Path(os.environ.get("TERNARY_VLM_OPS_LIBRARY", default))
    if not path.is_file():
        raise FileNotFoundError(f"custom-op library not found: {path} (build //cc:ternary_ops)")
    return str(path)


def interpreter(model_path=None, model_content=None, num_threads=1, xnnpack=True, preserve_all_tensors=False,
                ops=True):
    """An allocated interpreter for a model that may contain our custom ops.

    xnnpack=False uses TFLite's builtin kernels only (XNNPACK crashes under qemu).
    preserve_all_tensors keeps every intermediate tensor readable after invoke (for tests; no XNNPACK).
    ops=False: a stock interpreter that does not load our library (for models that use builtin ops only).
    Raises RuntimeError/ValueError naming the problem for a malformed model.
    """
    resolver = (litert.OpResolverType.AUTO if xnnpack and not preserve_all_tensors
                else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp = litert.Interpreter(
        model_path=model_path, model_content=model_content, num_threads=num_threads,
        experimental_delegates=[litert.load_delegate(ops_library())] if ops else None,
        experimental_op_resolver_type=resolver, experimental_preserve_all_tensors=preserve_all_tensors)
    interp.allocate_tensors()
    return interp
