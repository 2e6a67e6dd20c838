"""THE export-variant table: each variant is one row, parsed once from its name at the edge (CLI, benchmark
spec) into a Variant that the exporter and the passes read; nothing below parses variant strings again.

  scheme       the quantized layers' scheme (quant/schemes.py), None for float weights (fp32, int8)
  activations  what the custom matmul ops do with their input (export/tflite/builder.ACTIVATIONS): float32,
               or int8 (per-row W2A8)
  strategy     how the quantized layers execute (export/tflite/quantized.py): our fused op; unpacked to float
               at every invoke by our UnpackTernary op or by builtin ops only; or stock LiteRT's INT2
               FULLY_CONNECTED (int2_fc: the codes as INT2 weights, α per channel)
  other        what the remaining float weights become: fp32; int8 (TFLite's dynamic-range int8); int4 or
               int4_b32 (stock INT4 weights per channel or per block of 32 inputs, export/tflite/int4_weights.py).
               Except fp32, the embedding lookup then reads int8 rows (for a tied LM head stored as int8, its
               own; export/tflite/int8_embeddings.py)
  int8_weights who runs the FULLY_CONNECTEDs left with int8 weights (other=int8: a tied LM head): builtin (LiteRT's
               dynamic-range kernel, XNNPACK's on its own thread pool) or op (our Int8MatMul on the pool our other
               ops share, reading the int8 table the embedding lookup reads; export/tflite/int8_matmul.py)
  xnnpack      whether the runtime applies LiteRT's XNNPACK delegate (recorded in the file's metadata; runtime.py
               follows it). Off where our ops do every matmul and the attention: XNNPACK then only runs the small
               ops between them, one delegate partition each, and a SmolLM2 decode step is faster without it
               (docs/BENCHMARKS.md)
  kv_cache     op (KVCacheAttention owns the cache) or variables (stock resource variables); the default is
               the table's, a spec `name/kv_cache` overrides it
  format       the packing format of the fused ops' codes in the file (cc/kernels/packing.h); None: the
               scheme's own. ternary5 stores 5 ternary weights per byte (1.6 bits instead of 2); the op
               unpacks it once at load, so it computes exactly what the 2-bit file does

A new variant is one row in VARIANTS.
"""

from __future__ import annotations

import dataclasses

from ternary_vlm.errors import TernaryVLMError
from ternary_vlm.quant import packing, schemes
from ternary_vlm.quant.schemes import Scheme

KV_CACHES = ("op", "variables")


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    scheme: Scheme | None = None
    activations: str = "float32"
    strategy: str = "fused"
    other: str = "fp32"
    int8_weights: str = "builtin"
    xnnpack: bool = True
    kv_cache: str = "op"
    format: str | None = None

    @property
    def builtin_only(self) -> bool:
        """Runs on a stock LiteRT without our op library (so it keeps the KV cache in stock variables too)."""
        return self.strategy in ("unpack_builtin", "int2_fc")

    @property
    def spec(self) -> str:
        """The name, with /kv_cache when it is not the table's default."""
        default = VARIANTS[self.name].kv_cache
        return self.name if self.kv_cache == default else f"{self.name}/{self.kv_cache}"


VARIANTS = {v.name: v for v in (
    Variant("fp32"),
    Variant("int8", other="int8"),
    Variant("int4", other="int4", kv_cache="variables"),
    Variant("int4_b32", other="int4_b32", kv_cache="variables"),
    # The default ternary export: W2A8 TernaryMatMuls (int8 input rows), embedding / LM head in int8, the head our
    # Int8MatMul, no XNNPACK. ternary_fc_head is the same with the head as LiteRT's int8 FULLY_CONNECTED under
    # XNNPACK (the default until 2026-12-06). ternary_f32 computes exactly what the Flax model does (float
    # activations, other weights fp32).
    Variant("ternary", schemes.TERNARY, activations="int8", other="int8", int8_weights="op", xnnpack=False),
    Variant("ternary_fc_head", schemes.TERNARY, activations="int8", other="int8"),
    Variant("ternary_t5", schemes.TERNARY, activations="int8", other="int8", int8_weights="op", xnnpack=False,
            format=packing.TERNARY5),
    # The default with the remaining float weights (the LM head) in stock INT4 blocks of 32: the head is the
    # largest matmul of a decode step, so halving its bytes speeds decode; the embedding keeps int8 rows.
    Variant("ternary_head4", schemes.TERNARY, activations="int8", other="int4_b32"),
    Variant("ternary_f32", schemes.TERNARY),
    # Binary as the default ternary export: the same W2A8 kernels (a binary code is a ternary one without 0), the file
    # holding 1 bit per weight; binary_f32 computes exactly what the Flax model does.
    Variant("binary", schemes.BINARY, activations="int8", other="int8", int8_weights="op", xnnpack=False),
    Variant("binary_f32", schemes.BINARY),
    Variant("ternary_int8", schemes.TERNARY, other="int8"),
    Variant("binary_int8", schemes.BINARY, other="int8"),
    Variant("ternary_unpack_op", schemes.TERNARY, strategy="unpack_op"),
    Variant("ternary_unpack_builtin", schemes.TERNARY, strategy="unpack_builtin", kv_cache="variables"),
    Variant("ternary_int2", schemes.TERNARY, strategy="int2_fc", other="int8", kv_cache="variables"),
)}


def parse(spec: str, kv_cache: str | None = None) -> Variant:
    """A variant from `name` or `name/kv_cache` (kv_cache= overrides), validated."""
    name, _, spec_cache = spec.partition("/")
    if name not in VARIANTS:
        raise TernaryVLMError(f"unknown variant {name!r} (known: {', '.join(VARIANTS)})")
    variant = VARIANTS[name]
    kv_cache = kv_cache or spec_cache or variant.kv_cache
    if kv_cache not in KV_CACHES:
        raise TernaryVLMError(f"unknown kv_cache {kv_cache!r} (known: {', '.join(KV_CACHES)})")
    if kv_cache == "op" and variant.builtin_only:
        raise TernaryVLMError(f"{name} uses builtin ops only: it needs kv_cache=variables")
    return dataclasses.replace(variant, kv_cache=kv_cache)

