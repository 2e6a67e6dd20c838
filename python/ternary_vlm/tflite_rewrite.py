"""Rewrites a converted .tflite so that quantized layers run from packed weights.

The converter sees each quantized layer as a plain FULLY_CONNECTED whose weights are α·t. A FULLY_CONNECTED
is identified as quantized layer L by its weights alone: same [N, K] shape and the same values as L's α·t
(float32 weights: bit-exact; int8 dynamic-range weights: codes exactly 127·t and step α/127). Each match is
rewritten with one of three strategies (the paper's operator comparison), all reading the same packed bytes:

  fused           CUSTOM TernaryMatMul / BinaryMatMul(x, packed t, α[, bias]): our kernels, no float weights
  unpack_op       w = CUSTOM UnpackTernary(packed t, α, {N, K}); FULLY_CONNECTED(x, w[, bias])
  unpack_builtin  w = MUL(RESHAPE(GATHER(table[256, 4], CAST(packed t, int32)))[:, :K], α[N, 1]);
                  FULLY_CONNECTED(x, w[, bias]) — builtin ops only, so any stock TFLite runs it

The unpack strategies recompute the float weights at every invoke into the interpreter's arena. Matches are
counted per subgraph so the caller can assert that every quantized layer was found. No JAX or TF needed: the
flatbuffer object API from the LiteRT wheel.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm import packing
from ternary_vlm.tflite_model import CUSTOM_OPS, matmul_options

STRATEGIES = ("fused", "unpack_op", "unpack_builtin")
UNPACK_OP = "UnpackTernary"
KV_CACHE_OP = "KVCacheAttention"

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


def _ids(tensors) -> list[int]:
    """Tensor indices of an op's or subgraph's inputs/outputs (None when empty), without absent inputs."""
    return [int(i) for i in tensors if i >= 0] if tensors is not None else []


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


def _opcode_index(model, builtin: int, custom_name: str | None = None) -> int:
    for i, code in enumerate(model.operatorCodes):
        name = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and name == custom_name:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode = builtin, min(builtin, 127)
    code.customCode, code.version = custom_name, 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_buffer(model, array: np.ndarray) -> int:
    b = schema.BufferT()
    b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
    model.buffers.append(b)
    return len(model.buffers) - 1


def _new_tensor(subgraph, name: str, shape, tensor_type, buffer: int = 0) -> int:
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, list(shape), tensor_type, buffer
    subgraph.tensors.append(t)
    return len(subgraph.tensors) - 1


def _new_op(model, builtin: int, inputs, outputs, custom_name=None, options_type=0, options=None):
    op = schema.OperatorT()
    op.opcodeIndex = _opcode_index(model, builtin, custom_name)
    op.inputs, op.outputs = list(inputs), list(outputs)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def _write_without(model, replaced_buffers: set[int]) -> bytes:
    """The model's bytes with the replaced buffers emptied once no tensor of any subgraph uses them."""
    live = {t.buffer for sg in model.subgraphs for t in sg.tensors}
    for index in replaced_buffers - live:
        model.buffers[index].data = None
    return write_model(model)


class _Constants:
    """Buffers shared by every subgraph (one copy of each packed matrix in the file); tensors per subgraph."""

    def __init__(self, model):
        self.model, self.buffers = model, {}

    def tensor(self, subgraph, key: str, array: np.ndarray, tensor_type, shape=None) -> int:
        if key not in self.buffers:
            self.buffers[key] = _new_buffer(self.model, array)
        return _new_tensor(subgraph, key, array.shape if shape is None else shape, tensor_type, self.buffers[key])


def _unpack_ops(model, subgraph, constants: _Constants, layer: QuantizedLayer, strategy: str) -> tuple[list, int]:
    """The ops that compute layer's float weights α·t [N, K] from its packed bytes, and their output tensor."""
    n, k = layer.codes.shape
    packed = constants.tensor(subgraph, layer.name + ".packed", layer.packed.astype(np.uint8),
                              schema.TensorType.UINT8)
    weights = _new_tensor(subgraph, layer.name + ".weights", [n, k], schema.TensorType.FLOAT32)
    f32, i32 = schema.TensorType.FLOAT32, schema.TensorType.INT32
    if strategy == "unpack_op":
        scale = constants.tensor(subgraph, layer.name + ".scale", layer.scale.astype(np.float32), f32)
        shape = constants.tensor(subgraph, f"shape_{n}x{k}", np.array([n, k], np.int32), i32)
        return [_new_op(model, schema.BuiltinOperator.CUSTOM, [packed, scale, shape], [weights],
                        custom_name=UNPACK_OP)], weights
    B = schema.BuiltinOperator
    row_bytes = layer.packed.shape[1]
    byte_values = packing.byte_table(packing.TERNARY)  # [256, 4]
    per_byte = byte_values.shape[1]
    codes = _new_tensor(subgraph, layer.name + ".codes", [n, row_bytes], i32)
    cast = schema.CastOptionsT()
    cast.inDataType, cast.outDataType = schema.TensorType.UINT8, i32
    ops = [_new_op(model, B.CAST, [packed], [codes], options_type=schema.BuiltinOptions.CastOptions, options=cast)]
    table = constants.tensor(subgraph, "ternary_byte_table", byte_values, f32)
    values = _new_tensor(subgraph, layer.name + ".values", [n, row_bytes, per_byte], f32)
    gather = schema.GatherOptionsT()
    gather.axis, gather.batchDims = 0, 0
    ops.append(_new_op(model, B.GATHER, [table, codes], [values], options_type=schema.BuiltinOptions.GatherOptions,
                       options=gather))
    padded_k = per_byte * row_bytes
    flat = _new_tensor(subgraph, layer.name + ".flat", [n, padded_k], f32)
    new_shape = constants.tensor(subgraph, f"shape_{n}x{padded_k}", np.array([n, padded_k], np.int32), i32)
    reshape = schema.ReshapeOptionsT()
    reshape.newShape = [n, padded_k]
    ops.append(_new_op(model, B.RESHAPE, [values, new_shape], [flat], options_type=schema.BuiltinOptions.ReshapeOptions,
                       options=reshape))
    if padded_k != k:  # drop the padding weights of the last byte
        cut = _new_tensor(subgraph, layer.name + ".cut", [n, k], f32)
        begin = constants.tensor(subgraph, "zeros_2", np.zeros(2, np.int32), i32)
        size = constants.tensor(subgraph, f"shape_{n}x{k}", np.array([n, k], np.int32), i32)
        ops.append(_new_op(model, B.SLICE, [flat, begin, size], [cut], options_type=schema.BuiltinOptions.SliceOptions,
                           options=schema.SliceOptionsT()))
        flat = cut
    scale = constants.tensor(subgraph, layer.name + ".scale", layer.scale.astype(np.float32), f32, shape=[n, 1])
    mul = schema.MulOptionsT()
    mul.fusedActivationFunction = schema.ActivationFunctionType.NONE
    ops.append(_new_op(model, B.MUL, [flat, scale], [weights], options_type=schema.BuiltinOptions.MulOptions,
                       options=mul))
    return ops, weights


def replace_quantized(content: bytes, layers: list[QuantizedLayer], strategy: str = "fused",
                      activations: str = "float32") -> tuple[bytes, list[Counter]]:
    """Returns the rewritten model and, per subgraph, how many times each layer name was replaced.

    activations: what the fused ops do with their input (tflite_model.ACTIVATIONS): float32, or int8 (W2A8).

    Subgraphs (signatures) may share weight buffers, so the packed data and scales are shared too (one
    buffer per layer) and a float buffer is emptied only once no tensor of any subgraph still uses it."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if strategy != "fused" and any(layer.fmt != packing.TERNARY for layer in layers):
        raise ValueError(f"strategy {strategy} unpacks ternary layers only")
    custom_options = matmul_options(activations)
    if strategy != "fused" and custom_options is not None:
        raise ValueError(f"strategy {strategy} multiplies unpacked float weights: activations must be float32")
    model = read_model(content)
    by_shape: dict[tuple, list[QuantizedLayer]] = {}
    for layer in layers:
        by_shape.setdefault(tuple(layer.codes.shape), []).append(layer)
    constants = _Constants(model)
    replaced_buffers: set[int] = set()
    counts = []
    for subgraph in model.subgraphs:
        count: Counter = Counter()
        uses = Counter(i for op in subgraph.operators for i in _ids(op.inputs))
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
            if strategy != "fused":  # the FULLY_CONNECTED stays and reads the unpacked weights
                unpack, weights = _unpack_ops(model, subgraph, constants, layer, strategy)
                operators[-1:] = unpack + [op]
                op.inputs = [op.inputs[0], weights] + list(op.inputs[2:])
                continue
            options = op.builtinOptions
            if options is not None and options.fusedActivationFunction != schema.ActivationFunctionType.NONE:
                raise ValueError(f"{layer.name}: FULLY_CONNECTED with a fused activation cannot be rewritten")
            packed = constants.tensor(subgraph, layer.name + ".packed", layer.packed.astype(np.uint8),
                                      schema.TensorType.UINT8)
            scale = constants.tensor(subgraph, layer.name + ".scale", layer.scale.astype(np.float32),
                                     schema.TensorType.FLOAT32)
            bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            op.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.CUSTOM, CUSTOM_OPS[layer.fmt])
            op.inputs = [op.inputs[0], packed, scale] + ([bias] if bias is not None else [])
            op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.NONE, None
            op.customOptions = list(custom_options) if custom_options else None
        subgraph.operators = operators
        counts.append(count)
    return _write_without(model, replaced_buffers), counts


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
    constants = _Constants(model)
    replaced_buffers: set[int] = set()
    counts = []
    for subgraph in model.subgraphs:
        operators, count = [], 0
        uses = Counter(i for op in subgraph.operators for i in _ids(op.inputs))
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
                codes = _new_tensor(subgraph, key, table.shape, schema.TensorType.INT8, codes_tensor.buffer)
            else:
                steps = np.maximum(np.abs(table).max(axis=1), 1e-30).astype(np.float32) / 127
                int8 = np.clip(np.round(table / steps[:, None]), -127, 127).astype(np.int8)
                codes = constants.tensor(subgraph, key, int8, schema.TensorType.INT8)
            step_table = constants.tensor(subgraph, key + ".steps", steps.reshape(-1, 1).astype(np.float32), f32)
            ids, out = op.inputs[1], op.outputs[0]
            lead = list(subgraph.tensors[out].shape[:-1])
            rows = _new_tensor(subgraph, key + ".rows", lead + [table.shape[1]], schema.TensorType.INT8)
            rows_f32 = _new_tensor(subgraph, key + ".rows_f32", lead + [table.shape[1]], f32)
            row_steps = _new_tensor(subgraph, key + ".row_steps", lead + [1], f32)
            cast = schema.CastOptionsT()
            cast.inDataType, cast.outDataType = schema.TensorType.INT8, f32
            mul = schema.MulOptionsT()
            mul.fusedActivationFunction = schema.ActivationFunctionType.NONE
            operators[-1:] = [
                _new_op(model, B.GATHER_ND, [codes, ids], [rows], options_type=schema.BuiltinOptions.GatherNdOptions,
                        options=schema.GatherNdOptionsT()),
                _new_op(model, B.CAST, [rows], [rows_f32], options_type=schema.BuiltinOptions.CastOptions,
                        options=cast),
                _new_op(model, B.GATHER_ND, [step_table, ids], [row_steps],
                        options_type=schema.BuiltinOptions.GatherNdOptions, options=schema.GatherNdOptionsT()),
                _new_op(model, B.MUL, [rows_f32, row_steps], [out], options_type=schema.BuiltinOptions.MulOptions,
                        options=mul)]
            replaced_buffers.add(table_tensor.buffer)
            if uses[op.inputs[0]] == 1:
                table_tensor.buffer = 0
            count += 1
        subgraph.operators = operators
        counts.append(count)
    return _write_without(model, replaced_buffers), counts


def _var_name(model, producers: dict, handle: int) -> str | None:
    op = producers.get(handle)
    if op is None or opcode_name(model, op) != "VAR_HANDLE" or op.builtinOptions is None:
        return None
    name = op.builtinOptions.sharedName
    return name.decode() if isinstance(name, bytes) else name


def _attention(model, subgraph, bmm, producers: dict, consumers: dict) -> dict | None:
    """The cache update + attention region ending at `bmm` (scores = q @ k_cache) as the export traces it:

        k_cache = DYNAMIC_UPDATE_SLICE(READ_VARIABLE(k var), new_k, index)   (v likewise, its own index)
        out = BATCH_MATMUL(SOFTMAX(SELECT_V2(mask, MUL(BATCH_MATMUL(q, k_cache), scale), min)), v_cache)
        ASSIGN_VARIABLE(k var, k_cache); ASSIGN_VARIABLE(v var, v_cache)

    or None when bmm does not start one. Nothing else may read the caches: then the region is exactly one
    layer's attention and KVCacheAttention computes it."""
    def op_of(tensor, name):
        op = producers.get(tensor)
        return op if op is not None and opcode_name(model, op) == name else None

    def sole_consumer(op, name, position):
        users = consumers.get(op.outputs[0], [])
        if len(users) != 1 or opcode_name(model, users[0]) != name or users[0].inputs[position] != op.outputs[0]:
            return None
        return users[0]

    def plain_bmm(op):
        options = op.builtinOptions
        return options is None or not (options.adjX or options.adjY)

    q, k_cache = bmm.inputs[:2]
    dus_k = op_of(k_cache, "DYNAMIC_UPDATE_SLICE")
    read_k = dus_k and op_of(dus_k.inputs[0], "READ_VARIABLE")
    if read_k is None or not plain_bmm(bmm):
        return None
    mul = sole_consumer(bmm, "MUL", 0)
    select = mul and sole_consumer(mul, "SELECT_V2", 1)
    softmax = select and sole_consumer(select, "SOFTMAX", 0)
    out_bmm = softmax and sole_consumer(softmax, "BATCH_MATMUL", 0)
    if out_bmm is None or not plain_bmm(out_bmm) or softmax.builtinOptions.beta != 1.0:
        return None
    if mul.builtinOptions is not None and mul.builtinOptions.fusedActivationFunction:
        return None
    scale = buffer_array(model, subgraph.tensors[mul.inputs[1]])
    dus_v = op_of(out_bmm.inputs[1], "DYNAMIC_UPDATE_SLICE")
    read_v = dus_v and op_of(dus_v.inputs[0], "READ_VARIABLE")
    if scale is None or scale.size != 1 or read_v is None:
        return None
    k_var, v_var = _var_name(model, producers, read_k.inputs[0]), _var_name(model, producers, read_v.inputs[0])
    assigns = []
    for cache, reader in ((k_cache, bmm), (out_bmm.inputs[1], out_bmm)):
        for user in consumers.get(cache, []):
            if user is reader:
                continue
            if opcode_name(model, user) != "ASSIGN_VARIABLE" or user.inputs[1] != cache:
                return None
            assigns.append(user)
    shape = lambda t: tuple(subgraph.tensors[t].shape)  # noqa: E731
    heads, _, dim = shape(q)
    new_k, new_v, index = dus_k.inputs[1], dus_v.inputs[1], dus_k.inputs[2]
    t = shape(new_k)[2]
    if (None in (k_var, v_var) or len(assigns) != 2 or shape(new_k) != (heads, dim, t)
            or shape(new_v) != (heads, t, dim) or shape(k_cache)[:2] != (heads, dim)
            or shape(index) != (3,) or subgraph.tensors[index].type != schema.TensorType.INT32
            or consumers.get(read_k.outputs[0]) != [dus_k] or consumers.get(read_v.outputs[0]) != [dus_v]):
        return None
    return {"inputs": [q, new_k, new_v, index, mul.inputs[1]], "output": out_bmm.outputs[0],
            "max_len": shape(k_cache)[2], "vars": (k_var, v_var), "last": out_bmm,
            "ops": [read_k, read_v, dus_k, dus_v, bmm, mul, select, softmax, out_bmm] + assigns}


_SIDE_EFFECTS = ("ASSIGN_VARIABLE", "CALL_ONCE", "CALL", "IF", "WHILE")


def _prune(model, subgraph, dead_buffers: set[int]) -> None:
    """Drops ops whose outputs nothing reads (side-effect-free builtins only), then detaches the buffers of
    tensors no op reads any more, collecting them in dead_buffers."""
    while True:
        used = set(_ids(subgraph.outputs)) | {i for op in subgraph.operators for i in _ids(op.inputs)}
        keep = [op for op in subgraph.operators
                if opcode_name(model, op) in _SIDE_EFFECTS or model.operatorCodes[op.opcodeIndex].customCode
                or any(o in used for o in _ids(op.outputs))]
        if len(keep) == len(subgraph.operators):
            break
        subgraph.operators = keep
    live = set(_ids(subgraph.inputs)) | set(_ids(subgraph.outputs)) | {
        i for op in subgraph.operators for i in _ids(op.inputs) + _ids(op.outputs)}
    for index, tensor in enumerate(subgraph.tensors):
        if index not in live and tensor.buffer:
            dead_buffers.add(tensor.buffer)
            tensor.buffer = 0


def kv_cache_attention(content: bytes) -> tuple[bytes, list[int]]:
    """Replaces every layer's cache update + attention (_attention) with CUSTOM KVCacheAttention(q, new keys,
    new values, index, scale, {cache id, max_len}) and drops the KV-cache resource variables from every
    subgraph (their reads, assigns, reset and initialization); returns the model and, per subgraph, the number
    of attentions replaced. The op owns the caches (cc/tflite/attention_op.h); a cache id is the same for the
    variable's layer in every signature."""
    model = read_model(content)
    constants = _Constants(model)
    cache_ids: dict[str, int] = {}
    cache_vars: set[str] = set()
    counts = []
    for subgraph in model.subgraphs:
        producers = {o: op for op in subgraph.operators for o in _ids(op.outputs)}
        consumers: dict[int, list] = {}
        for op in subgraph.operators:
            for i in _ids(op.inputs):
                consumers.setdefault(i, []).append(op)
        removed, replacement = set(), {}
        for op in subgraph.operators:
            if opcode_name(model, op) != "BATCH_MATMUL" or id(op) in removed:
                continue
            region = _attention(model, subgraph, op, producers, consumers)
            if region is None:
                continue
            cache_id = cache_ids.setdefault(region["vars"][0], len(cache_ids))
            cache_vars.update(region["vars"])
            cache = constants.tensor(subgraph, f"kv_cache_{cache_id}",
                                     np.array([cache_id, region["max_len"]], np.int32), schema.TensorType.INT32)
            replacement[id(region["last"])] = _new_op(model, schema.BuiltinOperator.CUSTOM,
                                                        region["inputs"] + [cache], [region["output"]],
                                                        custom_name=KV_CACHE_OP)
            removed.update(id(o) for o in region["ops"])
        subgraph.operators = [replacement.get(id(op), op) for op in subgraph.operators
                              if id(op) not in removed or id(op) in replacement]
        counts.append(len(replacement))
    dead_buffers: set[int] = set()
    for subgraph in model.subgraphs:  # the variables' remaining uses: reset, initialization
        producers = {o: op for op in subgraph.operators for o in _ids(op.outputs)}
        kept = []
        for op in subgraph.operators:
            name = opcode_name(model, op)
            variable = _var_name(model, producers, op.inputs[0]) if name.endswith("_VARIABLE") else None
            if variable in cache_vars and name == "READ_VARIABLE":  # an attention the pattern did not match
                raise ValueError(f"KV cache variable {variable} is read outside the attention pattern")
            if not (variable in cache_vars and name == "ASSIGN_VARIABLE"):
                kept.append(op)
        subgraph.operators = kept
        _prune(model, subgraph, dead_buffers)
    return _write_without(model, dead_buffers), counts


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
