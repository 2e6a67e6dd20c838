"""Generation with an exported .tflite on LiteRT alone (no JAX, no TF): runtime.py; litert.py makes the
interpreters with our custom-op library."""

from ternary_vlm.runtime.runtime import METADATA_KEY, Runtime, read_metadata  # noqa: F401
