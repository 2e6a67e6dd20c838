"""The int8-matmul pass: FULLY_CONNECTEDs of one input row left with dynamic-range int8 weights (a tied LM head,
which prefill and decode both apply to one row) become our Int8MatMul op, which runs on the thread pool our other
ops share and reads the int8 table in place (the one the embedding lookup reads too: int8_embeddings.py).

Only single rows: Int8MatMul streams weight rows in order (cc/kernels/w8/avx512.cc), which is what a matrix-vector
product needs, not a GEMM (SmolLM2's head at 64 rows takes it ~24 ms; a register tile over several weight rows would
reuse each activation load, but reading rows 576 bytes apart halved the single-row bandwidth), so FULLY_CONNECTEDs of
several rows stay XNNPACK's."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export.tflite.flatbuffer import Constants, new_op, opcode_name, read_model, write_model

INT8_MATMUL_OP = "Int8MatMul"


def _steps(subgraph, op) -> np.ndarray | None:
    """The per-row steps of a FULLY_CONNECTED that Int8MatMul can run: float input, int8 weights [N, K] with one
    step per row and zero points 0, no bias, no fused activation, one input row (x [..., 1, K]) and output [1, N]
    (Int8MatMul's [M, N], not one that keeps x's leading dims); else None. Both round the row with a zero point:
    LiteRT with 255 steps over its range (asymmetric_quantize_inputs), Int8MatMul with 253 as our W2A8 ops do
    (cc/kernels/a8/layout.h)."""
    if op.inputs is None or len(op.inputs) < 2 or (len(op.inputs) > 2 and op.inputs[2] >= 0):
        return None
    options = op.builtinOptions
    if options is not None and options.fusedActivationFunction != schema.ActivationFunctionType.NONE:
        return None
    x, w, y = (subgraph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    q = w.quantization
    if (x.type != schema.TensorType.FLOAT32 or w.type != schema.TensorType.INT8 or len(w.shape) != 2
            or q is None or q.scale is None or len(q.scale) != w.shape[0]
            or (q.zeroPoint is not None and np.any(np.asarray(q.zeroPoint) != 0))):
        return None
    if list(y.shape) != [1, w.shape[0]] or int(np.prod(x.shape[:-1])) != 1 or x.shape[-1] != w.shape[1]:
        return None
    return np.asarray(q.scale, np.float32)


def int8_matmuls(content: bytes) -> tuple[bytes, list[int]]:
    """Replaces each FULLY_CONNECTED that _steps accepts with CUSTOM Int8MatMul(x, weights, steps) (the same
    weight tensor, so its buffer stays shared); returns the model and, per subgraph, the number replaced."""
    model = read_model(content)
    constants = Constants(model)
    counts = []
    for subgraph in model.subgraphs:
        count = 0
        for index, op in enumerate(subgraph.operators):
            if opcode_name(model, op) != "FULLY_CONNECTED":
                continue
            steps = _steps(subgraph, op)
            if steps is None:
                continue
            weights = subgraph.tensors[op.inputs[1]]
            step = constants.tensor(subgraph, f"int8_matmul_steps_{weights.buffer}", steps, schema.TensorType.FLOAT32)
            subgraph.operators[index] = new_op(model, schema.BuiltinOperator.CUSTOM,
                                               [op.inputs[0], op.inputs[1], step], op.outputs,
                                               custom_name=INT8_MATMUL_OP)
            count += 1
        counts.append(count)
    return write_model(model), counts
