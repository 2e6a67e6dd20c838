"""The int8-embedding pass (int8 variants): an embedding lookup reads int8 rows, sharing a tied LM head's."""

from __future__ import annotations

from collections import Counter

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export.tflite.flatbuffer import (Constants, buffer_array, new_op, new_tensor, opcode_name, read_model,
                                                  tensor_ids, write_without)


def _int8_rows(model, subgraph, table: np.ndarray):
    """(int8 weight tensor index, per-row steps) of a FULLY_CONNECTED in `subgraph` whose dynamic-range int8
    weights are this float table (a tied LM head), or None."""
    for op in subgraph.operators:
        if opcode_name(model, op) != "FULLY_CONNECTED" or op.inputs is None or len(op.inputs) < 2:
            continue
        weight = subgraph.tensors[op.inputs[1]]
        q = weight.quantization
        if weight.type != schema.TensorType.INT8 or q is None or q.scale is None or len(q.scale) != len(table):
            continue
        codes = buffer_array(model, weight)
        if codes is None or codes.shape != table.shape:
            continue
        steps = np.asarray(q.scale, np.float32)
        # Rounding to the nearest code: within half a step of the float table everywhere.
        if np.all(np.abs(codes * steps[:, None] - table) <= 0.5 * steps[:, None] * (1 + 1e-4) + 1e-30):
            return op.inputs[1], steps
    return None


def int8_embeddings(content: bytes) -> tuple[bytes, list[int]]:
    """Turns every embedding lookup on a constant float table into an int8 lookup, and returns the model and,
    per subgraph, the number of lookups rewritten.

    Dynamic-range quantization gives a tied LM head int8 weights but leaves the embedding's GATHER_ND on the
    float table, so a tied table would be stored twice (float + int8). Here the lookup reads the LM head's own
    int8 rows (one shared copy; per-row steps gathered alongside); an untied table is quantized per row:
        out = MUL(CAST(GATHER_ND(table int8 [V, D], ids)), GATHER_ND(steps [V, 1], ids))"""
    model = read_model(content)
    B, f32 = schema.BuiltinOperator, schema.TensorType.FLOAT32
    constants = Constants(model)
    replaced_buffers: set[int] = set()
    counts = []
    for subgraph in model.subgraphs:
        operators, count = [], 0
        uses = Counter(i for op in subgraph.operators for i in tensor_ids(op.inputs))
        for op in subgraph.operators:
            operators.append(op)
            if opcode_name(model, op) != "GATHER_ND":
                continue
            table_tensor = subgraph.tensors[op.inputs[0]]
            table = buffer_array(model, table_tensor) if table_tensor.type == f32 else None
            if table is None or table.ndim != 2:
                continue
            key = f"int8_embedding_{table_tensor.buffer}"
            tied = _int8_rows(model, subgraph, table)
            if tied is not None:
                codes_index, steps = tied
                codes_tensor = subgraph.tensors[codes_index]
                codes = new_tensor(subgraph, key, table.shape, schema.TensorType.INT8, codes_tensor.buffer)
            else:
                steps = np.maximum(np.abs(table).max(axis=1), 1e-30).astype(np.float32) / 127
                int8 = np.clip(np.round(table / steps[:, None]), -127, 127).astype(np.int8)
                codes = constants.tensor(subgraph, key, int8, schema.TensorType.INT8)
            step_table = constants.tensor(subgraph, key + ".steps", steps.reshape(-1, 1).astype(np.float32), f32)
            ids, out = op.inputs[1], op.outputs[0]
            lead = list(subgraph.tensors[out].shape[:-1])
            rows = new_tensor(subgraph, key + ".rows", lead + [table.shape[1]], schema.TensorType.INT8)
            rows_f32 = new_tensor(subgraph, key + ".rows_f32", lead + [table.shape[1]], f32)
            row_steps = new_tensor(subgraph, key + ".row_steps", lead + [1], f32)
            cast = schema.CastOptionsT()
            cast.inDataType, cast.outDataType = schema.TensorType.INT8, f32
            mul = schema.MulOptionsT()
            mul.fusedActivationFunction = schema.ActivationFunctionType.NONE
            operators[-1:] = [
                new_op(model, B.GATHER_ND, [codes, ids], [rows], options_type=schema.BuiltinOptions.GatherNdOptions,
                        options=schema.GatherNdOptionsT()),
                new_op(model, B.CAST, [rows], [rows_f32], options_type=schema.BuiltinOptions.CastOptions,
                        options=cast),
                new_op(model, B.GATHER_ND, [step_table, ids], [row_steps],
                        options_type=schema.BuiltinOptions.GatherNdOptions, options=schema.GatherNdOptionsT()),
                new_op(model, B.MUL, [rows_f32, row_steps], [out], options_type=schema.BuiltinOptions.MulOptions,
                        options=mul)]
            replaced_buffers.add(table_tensor.buffer)
            if uses[op.inputs[0]] == 1:
                table_tensor.buffer = 0
            count += 1
        subgraph.operators = operators
        counts.append(count)
    return write_without(model, replaced_buffers), counts
