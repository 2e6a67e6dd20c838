"""The .tflite rewrite passes and the flatbuffer toolkit they share (the LiteRT wheel's schema; no JAX, no TF):

  flatbuffer.py       read / write a model, op names, constants, metadata, signatures, op histograms
  quantized.py        quantized FULLY_CONNECTEDs -> our matmul ops, or unpack-then-multiply (STRATEGIES)
  int8_embeddings.py  embedding lookups read int8 rows (the int8 and int4 variants)
  int4_weights.py     float FULLY_CONNECTED weights -> stock INT4 (per channel or blockwise)
  int8_matmul.py      int8 FULLY_CONNECTEDs left over (a tied LM head) -> our Int8MatMul op
  glu.py              a Llama MLP's silu(gate) · up -> the down projection's op (glu=silu)
  rms_norm.py         a Llama RMSNorm -> the projections that read it (norm=rms)
  concat_projections.py  q / k / v (and gate / up) reading one input -> one op over their rows
  lowbit.py           stock LiteRT's INT2 / INT4 weight tensors: their bit order and scales
  kv_cache.py         each layer's cache variables + attention -> one KVCacheAttention op
  attention_layout.py  KVCacheAttention reads q / k / v as the projections write them (no TRANSPOSEs)
  builder.py          small single-op models written from scratch (tests, op benchmarks)
"""

from ternary_vlm.export.tflite.attention_layout import token_major_attention  # noqa: F401
from ternary_vlm.export.tflite.concat_projections import concat_projections  # noqa: F401
from ternary_vlm.export.tflite.flatbuffer import (add_metadata, buffer_array, custom_ops,  # noqa: F401
                                                  drop_dead_tensors, op_histogram, opcode_name, read_model,
                                                  signature_subgraphs, write_model, write_without)
from ternary_vlm.export.tflite.glu import GLU_OPTION, fuse_glu  # noqa: F401
from ternary_vlm.export.tflite.int4_weights import int4_weights  # noqa: F401
from ternary_vlm.export.tflite.int8_embeddings import int8_embeddings  # noqa: F401
from ternary_vlm.export.tflite.int8_matmul import INT8_MATMUL_OP, int8_matmuls  # noqa: F401
from ternary_vlm.export.tflite.kv_cache import KV_CACHE_OP, kv_cache_attention  # noqa: F401
from ternary_vlm.export.tflite.quantized import STRATEGIES, UNPACK_OP, replace_quantized  # noqa: F401
from ternary_vlm.export.tflite.rms_norm import NORM_OPTION, fuse_rms_norm  # noqa: F401
