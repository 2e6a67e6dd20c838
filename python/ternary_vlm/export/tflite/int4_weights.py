"""The INT4 pass (variants int4, int4_b32): every FULLY_CONNECTED with constant float weights reads stock LiteRT
INT4 weights instead (lowbit.py), quantized symmetrically per output channel or per block of `block` inputs
(layers whose K is not a multiple of the block stay per channel). What ai-edge-quantizer's 4-bit weight-only
recipes give a LiteRT user; no custom op."""

from __future__ import annotations

from collections import Counter

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export.tflite import lowbit
from ternary_vlm.export.tflite.flatbuffer import (Constants, buffer_array, opcode_name, read_model, tensor_ids,
                                                  write_without)


def int4_weights(content: bytes, block: int | None = None) -> tuple[bytes, list[int]]:
    """Returns the model and, per subgraph, the number of FULLY_CONNECTEDs rewritten."""
    model = read_model(content)
    constants = Constants(model)
    replaced_buffers: set[int] = set()
    quantized: dict[int, tuple] = {}  # float buffer -> (codes, scales): signatures share weights, quantize once
    counts = []
    for subgraph in model.subgraphs:
        count = 0
        uses = Counter(i for op in subgraph.operators for i in tensor_ids(op.inputs))
        for op in subgraph.operators:
            if opcode_name(model, op) != "FULLY_CONNECTED" or op.inputs is None or len(op.inputs) < 2:
                continue
            weight = subgraph.tensors[op.inputs[1]]
            w = buffer_array(model, weight) if weight.type == schema.TensorType.FLOAT32 else None
            if w is None or w.ndim != 2:
                continue
            key = f"int4_{weight.buffer}"
            b = block if block and w.shape[1] % block == 0 else None
            if weight.buffer not in quantized:
                codes, scale = lowbit.quantize_int4(w, b)
                quantized[weight.buffer] = (lowbit.pack(codes, 4), scale)
            packed, scale = quantized[weight.buffer]
            index = constants.tensor(subgraph, key, packed, lowbit.TYPES[4], shape=w.shape)
            if b is None:
                quantization = lowbit.per_channel(scale)
            else:
                scales = constants.tensor(subgraph, key + ".scales", scale.astype(np.float16),
                                          schema.TensorType.FLOAT16)
                quantization = lowbit.blockwise(scales, b)
            subgraph.tensors[index].quantization = quantization
            replaced_buffers.add(weight.buffer)
            if uses[op.inputs[1]] == 1:  # the dead float weight tensor must not keep its buffer alive
                weight.buffer = 0
            op.inputs = [op.inputs[0], index] + list(op.inputs[2:])
            count += 1
        counts.append(count)
    return write_without(model, replaced_buffers), counts
