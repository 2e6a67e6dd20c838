"""Ternary and binary compression of vision-language models for edge devices.

The on-device API (the ternary-vlm wheel, no JAX or TensorFlow):

    import ternary_vlm
    runtime = ternary_vlm.Runtime("model-ternary.tflite")        # or a directory holding one .tflite
    for token in runtime.generate(ids, max_new_tokens=32): ...
    interpreter = Interpreter(model_path=..., experimental_delegates=[ternary_vlm.load_delegate()])
"""

from ternary_vlm._version import __version__  # noqa: F401


def load_delegate():
    """Our custom-op library as a LiteRT delegate: pass it in `experimental_delegates` of any Interpreter."""
    from ai_edge_litert import interpreter as litert

    from ternary_vlm.runtime.litert import ops_library
    return litert.load_delegate(ops_library())


def __getattr__(name):
    if name == "Runtime":  # imported on use: `import ternary_vlm` stays light
        from ternary_vlm.runtime import Runtime
        return Runtime
    raise AttributeError(f"module 'ternary_vlm' has no attribute {name!r}")
