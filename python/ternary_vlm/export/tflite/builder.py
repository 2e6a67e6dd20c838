"""Writes small .tflite models directly with the flatbuffer schema shipped in the LiteRT wheel.

Used for single-op models (our TernaryMatMul / BinaryMatMul and TFLite's FULLY_CONNECTED baselines)
in tests and benchmarks.
"""

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export.tflite import lowbit
from ternary_vlm.quant import packing, schemes

_TYPES = {
    np.dtype(np.float32): schema.TensorType.FLOAT32,
    np.dtype(np.int32): schema.TensorType.INT32,
    np.dtype(np.uint8): schema.TensorType.UINT8,
    np.dtype(np.int8): schema.TensorType.INT8,
    np.dtype(np.float16): schema.TensorType.FLOAT16,
}
# What those ops do with their float input (cc/tflite/matmul_op.h): float32 multiplies it as it is, int8
# quantizes each row to int8 first (W2A8). The op reads its custom options as this text.
ACTIVATIONS = ("float32", "int8")


def matmul_options(activations: str, fmt: str | None = None) -> bytes | None:
    """The custom options of a TernaryMatMul / BinaryMatMul; None (no options) is float32 activations and the
    scheme's own packing format. fmt: the packing format of the op's codes when it is not its scheme's
    (ternary5 for a TernaryMatMul)."""
    if activations not in ACTIVATIONS:
        raise ValueError(f"unknown activations {activations!r} (known: {', '.join(ACTIVATIONS)})")
    options = [] if activations == "float32" else [f"activations={activations}"]
    if fmt is not None:
        if fmt != packing.TERNARY5:
            raise ValueError(f"format {fmt!r} is not an alternative packing (known: {packing.TERNARY5})")
        options.append(f"format={fmt}")
    return ",".join(options).encode() if options else None


class ModelBuilder:
    """One subgraph: add tensors (constants carry data) and ops, then build() the file bytes."""

    def __init__(self):
        self._buffers = [schema.BufferT()]  # buffer 0 is the empty sentinel
        self._tensors, self._ops, self._opcodes = [], [], []

    def tensor(self, name, shape, dtype, data=None, quantization=None):
        raw = None
        if data is not None:
            data = np.ascontiguousarray(data, dtype=dtype)
            if data.shape != tuple(shape):
                raise ValueError(f"tensor {name}: data shape {data.shape} != {tuple(shape)}")
            raw = data.tobytes()
        return self.raw_tensor(name, shape, _TYPES[np.dtype(dtype)], raw, quantization)

    def raw_tensor(self, name, shape, tensor_type, raw: bytes | None = None, quantization=None):
        """A tensor of any schema type; a constant when raw (its bytes as the file stores them) is given."""
        t = schema.TensorT()
        t.name, t.shape, t.type, t.quantization, t.buffer = name, list(shape), tensor_type, quantization, 0
        if raw is not None:
            b = schema.BufferT()
            b.data = np.frombuffer(raw, np.uint8)
            t.buffer = len(self._buffers)
            self._buffers.append(b)
        self._tensors.append(t)
        return len(self._tensors) - 1

    def _opcode(self, builtin, custom_name=None):
        key = (builtin, custom_name)
        for i, code in enumerate(self._opcodes):
            if (code.builtinCode, code.customCode) == key:
                return i
        code = schema.OperatorCodeT()
        code.builtinCode, code.customCode, code.version = builtin, custom_name, 1
        code.deprecatedBuiltinCode = min(builtin, 127)
        self._opcodes.append(code)
        return len(self._opcodes) - 1

    def op(self, builtin, inputs, outputs, options_type=0, options=None, custom_name=None, custom_options=None):
        o = schema.OperatorT()
        o.opcodeIndex = self._opcode(builtin, custom_name)
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = options_type, options
        o.customOptions = list(custom_options) if custom_options else None
        self._ops.append(o)

    def build(self, inputs, outputs):
        subgraph = schema.SubGraphT()
        subgraph.tensors, subgraph.operators = self._tensors, self._ops
        subgraph.inputs, subgraph.outputs = list(inputs), list(outputs)
        model = schema.ModelT()
        model.version, model.description = 3, "ternary_vlm"
        model.operatorCodes, model.subgraphs, model.buffers = self._opcodes, [subgraph], self._buffers
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def quantized_matmul_model(fmt, x_shape, packed, scale, bias=None, activations="float32"):
    """x [..., K] -> TernaryMatMul/BinaryMatMul(x, packed, scale[, bias]) -> [..., N]."""
    n = len(scale)
    b = ModelBuilder()
    x = b.tensor("x", x_shape, np.float32)
    inputs = [x, b.tensor("packed", packed.shape, np.uint8, packed),
              b.tensor("scale", [n], np.float32, scale)]
    if bias is not None:
        inputs.append(b.tensor("bias", [n], np.float32, bias))
    y = b.tensor("y", list(x_shape[:-1]) + [n], np.float32)
    b.op(schema.BuiltinOperator.CUSTOM, inputs, [y], custom_name=schemes.by_format(fmt).custom_op,
         custom_options=matmul_options(activations))
    return b.build([x], [y])


def fully_connected_model(x_shape, weights, bias=None, int8=False):
    """TFLite's own FULLY_CONNECTED: fp32 weights, or int8 per-channel weights (dynamic range)."""
    n, k = weights.shape
    b = ModelBuilder()
    if int8:
        step = np.maximum(np.abs(weights).max(axis=1), 1e-12) / 127.0
        q = lowbit.per_channel(step)
        w = b.tensor("w", [n, k], np.int8, np.clip(np.round(weights / step[:, None]), -127, 127), q)
    else:
        w = b.tensor("w", [n, k], np.float32, weights)
    return _fully_connected(b, x_shape, w, n, bias)


def lowbit_fully_connected_model(x_shape, codes, bits, scale, block=None, bias=None):
    """TFLite's own FULLY_CONNECTED on stock low-bit weights (lowbit.py): INT2 or INT4 codes [N, K] with scales
    [N] (per channel) or, for INT4 with a block, [N, K / block]."""
    n, k = codes.shape
    b = ModelBuilder()
    if block is None:
        q = lowbit.per_channel(scale)
    else:
        q = lowbit.blockwise(b.tensor("w.scales", scale.shape, np.float16, scale.astype(np.float16)), block)
    w = b.raw_tensor("w", [n, k], lowbit.TYPES[bits], lowbit.pack(codes, bits).tobytes(), q)
    return _fully_connected(b, x_shape, w, n, bias)


def _fully_connected(b, x_shape, w, n, bias):
    x = b.tensor("x", x_shape, np.float32)
    inputs = [x, w] + ([b.tensor("bias", [n], np.float32, bias)] if bias is not None else [-1])
    y = b.tensor("y", list(x_shape[:-1]) + [n], np.float32)
    options = schema.FullyConnectedOptionsT()
    options.keepNumDims = True
    b.op(schema.BuiltinOperator.FULLY_CONNECTED, inputs, [y],
         schema.BuiltinOptions.FullyConnectedOptions, options)
    return b.build([x], [y])
