"""Rewrites a converted .tflite so that quantized layers run as TernaryMatMul / BinaryMatMul.

The converter sees each quantized layer as a plain FULLY_CONNECTED whose weights are α·t. A FULLY_CONNECTED
is identified as quantized layer L by its weights alone: same [N, K] shape and the same values as L's α·t
(float32 weights: bit-exact; int8 dynamic-range weights: codes exactly 127·t and step α/127). Each match
becomes CUSTOM(x, packed t, α[, bias]); matches are counted per subgraph so the caller can assert that every
quantized layer was found. No JAX or TF needed: the flatbuffer object API from the LiteRT wheel.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.tflite_model import CUSTOM_OPS

_NUMPY_TYPES = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT8: np.int8,
                schema.TensorType.UINT8: np.uint8, schema.TensorType.INT32: np.int32}


@dataclasses.dataclass
class QuantizedLayer:
    """What the kernels need of one quantized linear layer: int8 codes t [N, K], α [N], packed t, format."""
    name: str
    codes: np.ndarray
    scale: np.ndarray
    packed: np.ndarray
    fmt: str

    def dequantized(self) -> np.ndarray:
        return self.scale[:, None] * self.codes.astype(np.float32)


def read_model(content: bytes) -> "schema.ModelT":
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))


def write_model(model: "schema.ModelT") -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def opcode_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        name = code.customCode
        return name.decode() if isinstance(name, bytes) else name
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}[builtin]


def buffer_array(model, tensor) -> np.ndarray | None:
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    if data is None or len(data) == 0 or tensor.type not in _NUMPY_TYPES:
        return None
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), _NUMPY_TYPES[tensor.type]).reshape(tensor.shape)


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
            if steps.size != layer.scale.size or not np.array_equal(w, 127 * layer.codes):
                continue
            # Rows that are all zero get an arbitrary step; the rest must be α/127.
            live = np.any(layer.codes != 0, axis=1)
            if np.allclose(steps[live] * 127, layer.scale[live], rtol=1e-5, atol=0):
                return layer
    return None


def _opcode_index(model, custom_name: str) -> int:
    for i, code in enumerate(model.operatorCodes):
        name = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        if code.builtinCode == schema.BuiltinOperator.CUSTOM and name == custom_name:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode, code.version = custom_name, 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_buffer(model, array: np.ndarray) -> int:
    b = schema.BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
    model.buffers.append(b)
    return len(model.buffers) - 1


def _new_tensor(subgraph, name: str, array: np.ndarray, buffer: int, tensor_type) -> int:
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(array.shape), tensor_type, buffer
    subgraph.tensors.append(t)
    return len(subgraph.tensors) - 1


def replace_quantized(content: bytes, layers: list[QuantizedLayer]) -> tuple[bytes, list[Counter]]:
    """Returns the rewritten model and, per subgraph, how many times each layer name was replaced.

    Subgraphs (signatures) may share weight buffers, so the packed data and scales are shared too (one
    buffer per layer) and a float buffer is emptied only once no tensor of any subgraph still uses it."""
    model = read_model(content)
    by_shape: dict[tuple, list[QuantizedLayer]] = {}
    for layer in layers:
        by_shape.setdefault(tuple(layer.codes.shape), []).append(layer)
    shared: dict[str, tuple[int, int]] = {}
    replaced_buffers: set[int] = set()
    counts = []
    for subgraph in model.subgraphs:
        count: Counter = Counter()
        uses = Counter(i for op in subgraph.operators for i in (op.inputs if op.inputs is not None else []))
        for op in subgraph.operators:
            if opcode_name(model, op) != "FULLY_CONNECTED" or op.inputs is None or len(op.inputs) < 2:
                continue
            weight = subgraph.tensors[op.inputs[1]]
            layer = _match(model, weight, by_shape.get(tuple(weight.shape), []))
            if layer is None:
                continue
            options = op.builtinOptions
            if options is not None and options.fusedActivationFunction != schema.ActivationFunctionType.NONE:
                raise ValueError(f"{layer.name}: FULLY_CONNECTED with a fused activation cannot be rewritten")
            if layer.name not in shared:
                shared[layer.name] = (_new_buffer(model, layer.packed.astype(np.uint8)),
                                      _new_buffer(model, layer.scale.astype(np.float32)))
            packed_buf, scale_buf = shared[layer.name]
            packed = _new_tensor(subgraph, layer.name + ".packed", layer.packed, packed_buf,
                                 schema.TensorType.UINT8)
            scale = _new_tensor(subgraph, layer.name + ".scale", layer.scale, scale_buf,
                                schema.TensorType.FLOAT32)
            bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            replaced_buffers.add(weight.buffer)
            if uses[op.inputs[1]] == 1:  # the dead float weight tensor must not keep its buffer alive
                weight.buffer = 0
            op.opcodeIndex = _opcode_index(model, CUSTOM_OPS[layer.fmt])
            op.inputs = [op.inputs[0], packed, scale] + ([bias] if bias is not None else [])
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.NONE, None
            op.customOptions = None
            count[layer.name] += 1
        counts.append(count)
    live = {t.buffer for sg in model.subgraphs for t in sg.tensors}
    for index in replaced_buffers - live:
        model.buffers[index].data = None
    return write_model(model), counts


def add_metadata(content: bytes, key: str, value: bytes) -> bytes:
    """Adds (or replaces) the named metadata entry: a buffer any reader finds by name."""
    model = read_model(content)
    model.metadata = [m for m in (model.metadata or [])
                      if (m.name.decode() if isinstance(m.name, bytes) else m.name) != key]
    entry = schema.MetadataT()
    entry.name, entry.buffer = key, _new_buffer(model, np.frombuffer(value, np.uint8))
    model.metadata.append(entry)
    return write_model(model)


def signature_subgraphs(content: bytes) -> dict[str, int]:
    """Signature key -> subgraph index."""
    model = read_model(content)
    return {(s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else s.signatureKey): s.subgraphIndex
            for s in (model.signatureDefs or [])}


def op_histogram(content: bytes) -> list[Counter]:
    """Per subgraph, op name -> count (for reports and tests)."""
    model = read_model(content)
    return [Counter(opcode_name(model, op) for op in sg.operators) for sg in model.subgraphs]
