"""Flax model -> one .tflite file (exporter.py), in a variant from the one table (variants.py), traced through
the model's own step functions (trace.py) and rewritten by the passes in tflite/."""

from ternary_vlm.export.exporter import ExportResult, convert, export_path, quantized_layers_of  # noqa: F401
from ternary_vlm.export.variants import KV_CACHES, VARIANTS, Variant, parse  # noqa: F401
