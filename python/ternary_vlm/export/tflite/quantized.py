"""The quantized-layer pass: rewrites a converted .tflite so that quantized layers run from packed weights.

The converter sees each quantized layer as a plain FULLY_CONNECTED whose weights are α·t. A FULLY_CONNECTED
is identified as quantized layer L by its weights alone: same [N, K] shape and the same values as L's α·t
(float32 weights: bit-exact; int8 dynamic-range weights: codes exactly 127·t and step α/127). Each match is
rewritten with one of four strategies (the paper's operator comparison, and stock LiteRT's own low-bit path):

  fused           CUSTOM TernaryMatMul / BinaryMatMul(x, packed t, α[, bias]): our kernels, no float weights
  unpack_op       w = CUSTOM UnpackTernary(packed t, α, {N, K}); FULLY_CONNECTED(x, w[, bias])
  unpack_builtin  w = MUL(RESHAPE(GATHER(table[256, 4], CAST(packed t, int32)))[:, :K], α[N, 1]);
                  FULLY_CONNECTED(x, w[, bias]) — builtin ops only, so any stock TFLite runs it
  int2_fc         FULLY_CONNECTED(x, t as an INT2 weight tensor with per-channel scales α[, bias]) — stock
                  LiteRT's own 2-bit path (lowbit.py: its bit order, not packing.h's), int8 activations

The first three read our packed bytes (packing.h); the unpack strategies recompute the float weights at every invoke into the interpreter's arena. Matches are
counted per subgraph so the caller can assert that every quantized layer was found. No JAX or TF needed: the
flatbuffer object API from the LiteRT wheel.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export.tflite.flatbuffer import (Constants, buffer_array, new_op, new_tensor, opcode_index,
                                                  opcode_name, read_model, tensor_ids, write_without)
from ternary_vlm.export.tflite import lowbit
from ternary_vlm.export.tflite.builder import matmul_options
from ternary_vlm.quant import packing, schemes
from ternary_vlm.quant.artifact import QuantizedLayer

STRATEGIES = ("fused", "unpack_op", "unpack_builtin", "int2_fc")
UNPACK_OP = "UnpackTernary"


def _match(model, tensor, candidates: list[QuantizedLayer]) -> QuantizedLayer | None:
    w = buffer_array(model, tensor)
    if w is None:
        return None
    for layer in candidates:
        if tensor.type == schema.TensorType.FLOAT32:
            if np.array_equal(w, layer.dequantized()):
                return layer
        elif tensor.type == schema.TensorType.INT8 and tensor.quantization is not None:
            q = tensor.quantization
            steps = np.asarray(q.scale if q.scale is not None else [], np.float32)
            if steps.size != layer.scale.size or w.shape != layer.codes.shape:
                continue
            # A row stores its codes as ±levels steps: α / 127 a step, 127 levels (α ≥ 0: QuantizedLayer.of), except that
            # the converter's step has a floor (a row range under 1e-6 counts as 1e-6), so a row whose α went below
            # 5e-7 in training holds round(α / step) < 127 levels. Rows that are all zero get an arbitrary step.
            live = np.any(layer.codes != 0, axis=1)
            levels = np.where(live, np.minimum(np.rint(layer.scale / np.where(live, steps, 1)), 127), 0)
            full, floored = live & (levels == 127), live & (levels < 127)
            if (np.array_equal(w, levels[:, None].astype(np.int64) * layer.codes)
                    and np.allclose(steps[full] * 127, layer.scale[full], rtol=1e-5, atol=0)
                    and np.all(steps[floored] * 127 > layer.scale[floored])
                    and np.all(np.abs(steps[floored] * levels[floored] - layer.scale[floored]) <= 0.5 * steps[floored])):
                return layer
    return None


def _unpack_ops(model, subgraph, constants: Constants, layer: QuantizedLayer, strategy: str) -> tuple[list, int]:
    """The ops that compute layer's float weights α·t [N, K] from its packed bytes, and their output tensor."""
    n, k = layer.codes.shape
    packed = constants.tensor(subgraph, layer.name + ".packed", layer.packed.astype(np.uint8),
                              schema.TensorType.UINT8)
    weights = new_tensor(subgraph, layer.name + ".weights", [n, k], schema.TensorType.FLOAT32)
    f32, i32 = schema.TensorType.FLOAT32, schema.TensorType.INT32
    if strategy == "unpack_op":
        scale = constants.tensor(subgraph, layer.name + ".scale", layer.scale.astype(np.float32), f32)
        shape = constants.tensor(subgraph, f"shape_{n}x{k}", np.array([n, k], np.int32), i32)
        return [new_op(model, schema.BuiltinOperator.CUSTOM, [packed, scale, shape], [weights],
                        custom_name=UNPACK_OP)], weights
    B = schema.BuiltinOperator
    row_bytes = layer.packed.shape[1]
    byte_values = packing.byte_table(packing.TERNARY)  # [256, 4]
    per_byte = byte_values.shape[1]
    codes = new_tensor(subgraph, layer.name + ".codes", [n, row_bytes], i32)
    cast = schema.CastOptionsT()
    cast.inDataType, cast.outDataType = schema.TensorType.UINT8, i32
    ops = [new_op(model, B.CAST, [packed], [codes], options_type=schema.BuiltinOptions.CastOptions, options=cast)]
    table = constants.tensor(subgraph, "ternary_byte_table", byte_values, f32)
    values = new_tensor(subgraph, layer.name + ".values", [n, row_bytes, per_byte], f32)
    gather = schema.GatherOptionsT()
    gather.axis, gather.batchDims = 0, 0
    ops.append(new_op(model, B.GATHER, [table, codes], [values], options_type=schema.BuiltinOptions.GatherOptions,
                       options=gather))
    padded_k = per_byte * row_bytes
    flat = new_tensor(subgraph, layer.name + ".flat", [n, padded_k], f32)
    new_shape = constants.tensor(subgraph, f"shape_{n}x{padded_k}", np.array([n, padded_k], np.int32), i32)
    reshape = schema.ReshapeOptionsT()
    reshape.newShape = [n, padded_k]
    ops.append(new_op(model, B.RESHAPE, [values, new_shape], [flat], options_type=schema.BuiltinOptions.ReshapeOptions,
                       options=reshape))
    if padded_k != k:  # drop the padding weights of the last byte
        cut = new_tensor(subgraph, layer.name + ".cut", [n, k], f32)
        begin = constants.tensor(subgraph, "zeros_2", np.zeros(2, np.int32), i32)
        size = constants.tensor(subgraph, f"shape_{n}x{k}", np.array([n, k], np.int32), i32)
        ops.append(new_op(model, B.SLICE, [flat, begin, size], [cut], options_type=schema.BuiltinOptions.SliceOptions,
                           options=schema.SliceOptionsT()))
        flat = cut
    scale = constants.tensor(subgraph, layer.name + ".scale", layer.scale.astype(np.float32), f32, shape=[n, 1])
    mul = schema.MulOptionsT()
    mul.fusedActivationFunction = schema.ActivationFunctionType.NONE
    ops.append(new_op(model, B.MUL, [flat, scale], [weights], options_type=schema.BuiltinOptions.MulOptions,
                       options=mul))
    return ops, weights


def _int2_weights(subgraph, constants: Constants, layer: QuantizedLayer) -> int:
    """The layer's codes as a stock INT2 weight tensor, α per output channel (buffer shared by the signatures)."""
    index = constants.tensor(subgraph, layer.name + ".int2", lowbit.pack(layer.codes, 2),
                             lowbit.TYPES[2], shape=layer.codes.shape)
    subgraph.tensors[index].quantization = lowbit.per_channel(layer.scale)
    return index


def replace_quantized(content: bytes, layers: list[QuantizedLayer], strategy: str = "fused",
                      activations: str = "float32", fmt: str | None = None) -> tuple[bytes, list[Counter]]:
    """Returns the rewritten model and, per subgraph, how many times each layer name was replaced.

    activations: what the fused ops do with their input (builder.ACTIVATIONS): float32, or int8 (W2A8).
    fmt: the packing format of the fused ops' codes when not the layers' own (ternary5, ternary layers only).

    Subgraphs (signatures) may share weight buffers, so the packed data and scales are shared too (one
    buffer per layer) and a float buffer is emptied only once no tensor of any subgraph still uses it."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if strategy.startswith("unpack") and any(layer.fmt != packing.TERNARY for layer in layers):
        raise ValueError(f"strategy {strategy} unpacks ternary layers only")
    if fmt is not None and (strategy != "fused" or any(layer.fmt != packing.TERNARY for layer in layers)):
        raise ValueError(f"format {fmt} stores the codes of fused ternary layers only")
    custom_options = matmul_options(activations, fmt)
    stored = {layer.name: layer.packed if fmt is None else packing.pack(layer.codes, fmt) for layer in layers}
    if strategy != "fused" and custom_options is not None:
        raise ValueError(f"strategy {strategy} multiplies unpacked float weights: activations must be float32")
    model = read_model(content)
    by_shape: dict[tuple, list[QuantizedLayer]] = {}
    for layer in layers:
        by_shape.setdefault(tuple(layer.codes.shape), []).append(layer)
    constants = Constants(model)
    replaced_buffers: set[int] = set()
    counts = []
    for subgraph in model.subgraphs:
        count: Counter = Counter()
        uses = Counter(i for op in subgraph.operators for i in tensor_ids(op.inputs))
        operators = []
        for op in subgraph.operators:
            operators.append(op)
            if opcode_name(model, op) != "FULLY_CONNECTED" or op.inputs is None or len(op.inputs) < 2:
                continue
            weight = subgraph.tensors[op.inputs[1]]
            layer = _match(model, weight, by_shape.get(tuple(weight.shape), []))
            if layer is None:
                continue
            replaced_buffers.add(weight.buffer)
            if uses[op.inputs[1]] == 1:  # the dead float weight tensor must not keep its buffer alive
                weight.buffer = 0
            count[layer.name] += 1
            if strategy == "int2_fc":  # the FULLY_CONNECTED stays and reads stock INT2 weights
                op.inputs = [op.inputs[0], _int2_weights(subgraph, constants, layer)] + list(op.inputs[2:])
                continue
            if strategy != "fused":  # the FULLY_CONNECTED stays and reads the unpacked weights
                unpack, weights = _unpack_ops(model, subgraph, constants, layer, strategy)
                operators[-1:] = unpack + [op]
                op.inputs = [op.inputs[0], weights] + list(op.inputs[2:])
                continue
            options = op.builtinOptions
            if options is not None and options.fusedActivationFunction != schema.ActivationFunctionType.NONE:
                raise ValueError(f"{layer.name}: FULLY_CONNECTED with a fused activation cannot be rewritten")
            packed = constants.tensor(subgraph, layer.name + ".packed", stored[layer.name].astype(np.uint8),
                                      schema.TensorType.UINT8)
            scale = constants.tensor(subgraph, layer.name + ".scale", layer.scale.astype(np.float32),
                                     schema.TensorType.FLOAT32)
            bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            op.opcodeIndex = opcode_index(model, schema.BuiltinOperator.CUSTOM, schemes.by_format(layer.fmt).custom_op)
            op.inputs = [op.inputs[0], packed, scale] + ([bias] if bias is not None else [])
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.NONE, None
            op.customOptions = list(custom_options) if custom_options else None
        subgraph.operators = operators
        counts.append(count)
    return write_without(model, replaced_buffers), counts
