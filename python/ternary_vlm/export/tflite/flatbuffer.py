"""The TFLite flatbuffer toolkit the rewrite passes share (the LiteRT wheel's object API; no JAX or TF):
read / write a model, name an op, read a constant, add buffers / tensors / ops, metadata, signatures."""

from __future__ import annotations

from collections import Counter

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

_NUMPY_TYPES = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT8: np.int8,
                schema.TensorType.UINT8: np.uint8, schema.TensorType.INT32: np.int32}


def tensor_ids(tensors) -> list[int]:
    """Tensor indices of an op's or subgraph's inputs/outputs (None when empty), without absent inputs."""
    return [int(i) for i in tensors if i >= 0] if tensors is not None else []


def producers_and_readers(subgraph) -> tuple[dict, dict]:
    """tensor -> the op that makes it, and tensor -> the ops that read it (each op once), in graph order."""
    producer = {t: op for op in subgraph.operators for t in tensor_ids(op.outputs)}
    readers: dict[int, list] = {}
    for op in subgraph.operators:
        for t in set(tensor_ids(op.inputs)):
            readers.setdefault(t, []).append(op)
    return producer, readers


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


def no_fused_activation(op) -> bool:
    """The op applies no fused activation (or has no options that could hold one)."""
    return getattr(op.builtinOptions, "fusedActivationFunction", 0) == schema.ActivationFunctionType.NONE


def buffer_array(model, tensor) -> np.ndarray | None:
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    if data is None or len(data) == 0 or tensor.type not in _NUMPY_TYPES:
        return None
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), _NUMPY_TYPES[tensor.type]).reshape(tensor.shape)


def opcode_index(model, builtin: int, custom_name: str | None = None) -> int:
    for i, code in enumerate(model.operatorCodes):
        name = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and name == custom_name:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode = builtin, min(builtin, 127)
    code.customCode, code.version = custom_name, 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def new_buffer(model, array: np.ndarray) -> int:
    b = schema.BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
    model.buffers.append(b)
    return len(model.buffers) - 1


def new_tensor(subgraph, name: str, shape, tensor_type, buffer: int = 0) -> int:
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), tensor_type, buffer
    subgraph.tensors.append(t)
    return len(subgraph.tensors) - 1


def new_op(model, builtin: int, inputs, outputs, custom_name=None, options_type=0, options=None):
    op = schema.OperatorT()
    op.opcodeIndex = opcode_index(model, builtin, custom_name)
    op.inputs, op.outputs = list(inputs), list(outputs)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def new_reshape(model, subgraph, x: int, y: int, name: str):
    """A RESHAPE op from tensor x to tensor y (y's shape, given also as the op's constant shape input)."""
    shape = [int(d) for d in subgraph.tensors[y].shape]
    options = schema.ReshapeOptionsT()
    options.newShape = shape
    target = new_tensor(subgraph, name, [len(shape)], schema.TensorType.INT32,
                        new_buffer(model, np.array(shape, np.int32)))
    return new_op(model, schema.BuiltinOperator.RESHAPE, [x, target], [y],
                  options_type=schema.BuiltinOptions.ReshapeOptions, options=options)


def drop_dead_tensors(model) -> int:
    """Removes the tensors that no op, subgraph input/output, signature or blockwise quantization names (what a pass
    leaves behind when it replaces ops: the converter's int8 weight tensors keep ~0.5 MB of per-channel scales and
    zero points each); renumbers the rest. Returns how many went."""
    dropped = 0
    for index, sg in enumerate(model.subgraphs):
        signatures = [s for s in model.signatureDefs or [] if s.subgraphIndex == index]
        named = [t for s in signatures for t in (s.inputs or []) + (s.outputs or [])]
        used = set(tensor_ids(sg.inputs)) | set(tensor_ids(sg.outputs)) | {t.tensorIndex for t in named}
        for op in sg.operators:
            for ids in (op.inputs, op.outputs, op.intermediates):
                used.update(tensor_ids(ids))
        details = [sg.tensors[i].quantization.details for i in used if sg.tensors[i].quantization is not None]
        blockwise = [d for d in details if isinstance(d, schema.BlockwiseQuantizationT)]
        for d in blockwise:  # a blockwise tensor names its scales (and zero points) tensors
            used.update(tensor_ids([d.scales, d.zeroPoints]))
        if len(used) == len(sg.tensors):
            continue
        keep = sorted(used)
        new = {old: i for i, old in enumerate(keep)}

        def renumber(ids):
            return None if ids is None else [new[int(i)] if i >= 0 else int(i) for i in ids]
        for op in sg.operators:
            op.inputs, op.outputs, op.intermediates = (renumber(op.inputs), renumber(op.outputs),
                                                       renumber(op.intermediates))
        sg.inputs, sg.outputs = renumber(sg.inputs), renumber(sg.outputs)
        for d in blockwise:
            d.scales, d.zeroPoints = renumber([d.scales, d.zeroPoints])
        for t in named:
            t.tensorIndex = new[t.tensorIndex]
        dropped += len(sg.tensors) - len(keep)
        sg.tensors = [sg.tensors[i] for i in keep]
    return dropped


def write_without(model, replaced_buffers: set[int]) -> bytes:
    """The model's bytes without its dead tensors (drop_dead_tensors) and with the replaced buffers emptied once no
    tensor of any subgraph uses them."""
    drop_dead_tensors(model)
    live = {t.buffer for sg in model.subgraphs for t in sg.tensors}
    for index in replaced_buffers - live:
        model.buffers[index].data = None
    return write_model(model)


class Constants:
    """Buffers shared by every subgraph (one copy of each packed matrix in the file); tensors per subgraph."""

    def __init__(self, model):
        self.model, self.buffers = model, {}

    def tensor(self, subgraph, key: str, array: np.ndarray, tensor_type, shape=None) -> int:
        if key not in self.buffers:
            self.buffers[key] = new_buffer(self.model, array)
        return new_tensor(subgraph, key, array.shape if shape is None else shape, tensor_type, self.buffers[key])


def add_metadata(content: bytes, key: str, value: bytes) -> bytes:
    """Adds (or replaces) the named metadata entry: a buffer any reader finds by name."""
    model = read_model(content)
    model.metadata = [m for m in (model.metadata or [])
                      if (m.name.decode() if isinstance(m.name, bytes) else m.name) != key]
    entry = schema.MetadataT()
    entry.name, entry.buffer = key, new_buffer(model, np.frombuffer(value, np.uint8))
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


def custom_ops(content: bytes) -> list[str]:
    """The custom ops the model uses (sorted names): what a runtime must register besides the builtins."""
    model = read_model(content)
    return sorted({opcode_name(model, op) for sg in model.subgraphs for op in sg.operators
                   if max(model.operatorCodes[op.opcodeIndex].builtinCode,
                          model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == schema.BuiltinOperator.CUSTOM})
