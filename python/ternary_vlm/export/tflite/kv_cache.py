"""The KV-cache pass: each layer's cache variables + attention become one KVCacheAttention op."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export.tflite.flatbuffer import (Constants, buffer_array, new_op, opcode_name, read_model, tensor_ids,
                                                  write_without)

KV_CACHE_OP = "KVCacheAttention"


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
        used = set(tensor_ids(subgraph.outputs)) | {i for op in subgraph.operators for i in tensor_ids(op.inputs)}
        keep = [op for op in subgraph.operators
                if opcode_name(model, op) in _SIDE_EFFECTS or model.operatorCodes[op.opcodeIndex].customCode
                or any(o in used for o in tensor_ids(op.outputs))]
        if len(keep) == len(subgraph.operators):
            break
        subgraph.operators = keep
    live = set(tensor_ids(subgraph.inputs)) | set(tensor_ids(subgraph.outputs)) | {
        i for op in subgraph.operators for i in tensor_ids(op.inputs) + tensor_ids(op.outputs)}
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
    constants = Constants(model)
    cache_ids: dict[str, int] = {}
    cache_vars: set[str] = set()
    counts = []
    for subgraph in model.subgraphs:
        producers = {o: op for op in subgraph.operators for o in tensor_ids(op.outputs)}
        consumers: dict[int, list] = {}
        for op in subgraph.operators:
            for i in tensor_ids(op.inputs):
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
            replacement[id(region["last"])] = new_op(model, schema.BuiltinOperator.CUSTOM,
                                                        region["inputs"] + [cache], [region["output"]],
                                                        custom_name=KV_CACHE_OP)
            removed.update(id(o) for o in region["ops"])
        subgraph.operators = [replacement.get(id(op), op) for op in subgraph.operators
                              if id(op) not in removed or id(op) in replacement]
        counts.append(len(replacement))
    dead_buffers: set[int] = set()
    for subgraph in model.subgraphs:  # the variables' remaining uses: reset, initialization
        producers = {o: op for op in subgraph.operators for o in tensor_ids(op.outputs)}
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
    return write_without(model, dead_buffers), counts
