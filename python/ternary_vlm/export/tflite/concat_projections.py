"""The concat pass: matmul ops that read the same input the same way (q, k and v after one RMSNorm; gate and up)
become one op over their rows concatenated, so the input is normalized and quantized once instead of three times
(or twice), and decode makes fewer op calls. Every output value is the same bits as before: each output row of a
matmul depends only on its own weight row, scale and bias, and on the input rows, which are prepared the same way.

A gate / up pair that only a glu=silu down projection reads feeds it directly: the down op takes the concatenated
[.., 2K] tensor (gate | up) as x and no up input (cc/tflite/matmul_op.h). Any other group is split back into its
original outputs by one SPLIT_V."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export.tflite.flatbuffer import (buffer_array, new_buffer, new_op, new_tensor, opcode_name,
                                                  producers_and_readers, read_model, tensor_ids, write_without)
from ternary_vlm.export.tflite.glu import GLU_OPTION, MATMUL_OPS

_PACKED, _SCALE, _BIAS, _UP = 1, 2, 3, 4


def _options(op) -> str:
    return bytes(op.customOptions if op.customOptions is not None else b"").decode()


def concat_projections(content: bytes) -> tuple[bytes, list[int]]:
    """Merges each group of our matmul ops with the same input, options, norm inputs and constant weights into one
    op; returns the model and, per subgraph, how many groups were merged."""
    model = read_model(content)
    merged_buffers: dict[tuple, int] = {}  # source buffers -> their concatenation, shared by the subgraphs
    replaced: set[int] = set()
    counts = []
    for subgraph in model.subgraphs:
        ops = subgraph.operators
        outputs = set(tensor_ids(subgraph.outputs))
        _, readers = producers_and_readers(subgraph)

        def constant(tensor: int) -> bool:
            return tensor >= 0 and buffer_array(model, subgraph.tensors[tensor]) is not None

        groups: dict[tuple, list] = {}
        for op in ops:
            name = opcode_name(model, op)
            inputs = list(op.inputs)
            if (name not in MATMUL_OPS or GLU_OPTION in _options(op).split(",") or len(op.outputs) != 1
                    or not all(constant(t) for t in inputs[_PACKED:_BIAS])):
                continue
            bias = inputs[_BIAS] if len(inputs) > _BIAS else -1
            if bias >= 0 and not constant(bias):
                continue
            packed = subgraph.tensors[inputs[_PACKED]]
            key = (name, _options(op), inputs[0], tuple(inputs[_UP:]), bias >= 0, packed.type, packed.shape[1])
            groups.setdefault(key, []).append(op)

        count, removed, split_after, sources = 0, set(), {}, set()
        for members in groups.values():
            if len(members) < 2:
                continue
            first = members[0]
            down = _glu_reader(model, members, readers, outputs)
            if down is not None and down.inputs[0] == members[1].outputs[0]:
                members = [members[1], members[0]]  # gate rows first, then up
            rows = [int(subgraph.tensors[m.inputs[_SCALE]].shape[0]) for m in members]
            sources.update(t for m in members for t in tensor_ids(m.inputs[_PACKED:_UP]))
            inputs = list(first.inputs)
            for slot in (_PACKED, _SCALE) + ((_BIAS,) if len(inputs) > _BIAS and inputs[_BIAS] >= 0 else ()):
                inputs[slot] = _concat(model, subgraph, [m.inputs[slot] for m in members], merged_buffers, replaced)
            shape = [int(d) for d in subgraph.tensors[first.outputs[0]].shape]
            shape[-1] = sum(rows)
            y = new_tensor(subgraph, f"concat_projections_{first.outputs[0]}", shape, schema.TensorType.FLOAT32)
            first.inputs, after = inputs, []
            old_outputs = [m.outputs[0] for m in members]
            first.outputs = [y]
            if down is not None:  # the down op reads gate | up as its x
                down.inputs = [y] + list(down.inputs[1:_UP])
            else:
                after = [_split(model, subgraph, y, rows, old_outputs, len(shape) - 1)]
            split_after[id(first)] = after
            removed.update(id(m) for m in members if m is not first)
            count += 1
        subgraph.operators = [o for op in ops if id(op) not in removed for o in [op] + split_after.get(id(op), [])]
        read = {t for op in subgraph.operators for t in tensor_ids(op.inputs)}
        for t in sources - read:  # its buffer goes from the file once no subgraph's tensor holds it
            subgraph.tensors[t].buffer = 0
        counts.append(count)
    return write_without(model, replaced), counts


def _glu_reader(model, members, readers, outputs):
    """The glu=silu op that alone reads a pair's two outputs, as its gate and its up (either order), or None."""
    if len(members) != 2:
        return None
    pair = [m.outputs[0] for m in members]
    users = [readers.get(t, []) for t in pair]
    if any(len(u) != 1 for u in users) or users[0][0] is not users[1][0] or set(pair) & outputs:
        return None
    down = users[0][0]
    if (opcode_name(model, down) not in MATMUL_OPS or GLU_OPTION not in _options(down).split(",")
            or len(down.inputs) <= _UP or {down.inputs[0], down.inputs[_UP]} != set(pair)):
        return None
    return down


def _concat(model, subgraph, tensors: list[int], merged_buffers: dict, replaced: set[int]) -> int:
    """A constant tensor: the given constants concatenated along axis 0 (one buffer for every subgraph)."""
    sources = [subgraph.tensors[t] for t in tensors]
    key = tuple(t.buffer for t in sources)
    if key not in merged_buffers:
        merged_buffers[key] = new_buffer(model, np.concatenate([buffer_array(model, t) for t in sources]))
        replaced.update(key)
    shape = [sum(int(t.shape[0]) for t in sources)] + [int(d) for d in sources[0].shape[1:]]
    name = sources[0].name.decode() if isinstance(sources[0].name, bytes) else sources[0].name
    return new_tensor(subgraph, f"{name}.concat{len(sources)}", shape, sources[0].type, merged_buffers[key])


def _split(model, subgraph, y: int, rows: list[int], outputs: list[int], axis: int):
    sizes = new_tensor(subgraph, f"concat_projections_sizes_{y}", [len(rows)], schema.TensorType.INT32,
                       new_buffer(model, np.array(rows, np.int32)))
    axis_tensor = new_tensor(subgraph, f"concat_projections_axis_{y}", [], schema.TensorType.INT32,
                             new_buffer(model, np.array(axis, np.int32)))
    options = schema.SplitVOptionsT()
    options.numSplits = len(rows)
    return new_op(model, schema.BuiltinOperator.SPLIT_V, [y, sizes, axis_tensor], outputs,
                  options_type=schema.BuiltinOptions.SplitVOptions, options=options)
