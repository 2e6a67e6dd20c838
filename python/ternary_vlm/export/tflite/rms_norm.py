"""The RMSNorm pass: a Llama layer's RMSNorm, which the converter writes as seven or eight builtin ops (MUL(x, x),
SUM over the last axis, MUL by 1/K, ADD eps, [RESHAPE], RSQRT, MUL(x, ·), MUL(·, gamma)), moves into the
projections that read it: each becomes TernaryMatMul / BinaryMatMul(x, packed, scale, bias or -1, -1, gamma [K],
eps) with custom option norm=rms (cc/kernels/rms_norm.h), which normalizes its rows itself. Applies where every
reader of the normalized tensor is such an op (q/k/v after input_layernorm, gate/up after post_attention_layernorm;
not the final norm, which the LM head reads)."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export.tflite.flatbuffer import (buffer_array, new_buffer, new_reshape, new_tensor,
                                                  no_fused_activation, opcode_name, producers_and_readers, read_model,
                                                  tensor_ids, write_model)
from ternary_vlm.export.tflite.glu import MATMUL_OPS

NORM_OPTION = "norm=rms"


def fuse_rms_norm(content: bytes) -> tuple[bytes, list[int]]:
    """Rewrites every RMSNorm (above) whose readers are all our matmul ops; returns the model and, per subgraph,
    how many norms moved."""
    model = read_model(content)
    counts = []
    for subgraph in model.subgraphs:
        ops = subgraph.operators
        producer, readers = producers_and_readers(subgraph)
        outputs = set(tensor_ids(subgraph.outputs))

        def only(tensor, name):
            """The op named `name` that makes tensor, when exactly one op reads tensor and it is no graph output."""
            op = producer.get(tensor)
            if (op is None or opcode_name(model, op) != name or tensor in outputs
                    or len(readers.get(tensor, [])) != 1 or not no_fused_activation(op)):
                return None
            return op

        def const(tensor) -> np.ndarray | None:
            t = subgraph.tensors[tensor]
            return buffer_array(model, t) if t.type == schema.TensorType.FLOAT32 else None

        def split(op, test):
            """(input passing test, the other input) of a binary op, in either order, or None."""
            for a, b in ((op.inputs[0], op.inputs[1]), (op.inputs[1], op.inputs[0])):
                if test(a):
                    return a, b
            return None

        def norm_of(scaled) -> tuple | None:
            """(x, gamma constant or None, eps tensor, the ops) when scaled = MUL(MUL(x, RSQRT(...)), gamma), or
            MUL(x, RSQRT(...)) where the converter dropped a gamma of ones."""
            last = producer.get(scaled)
            if last is None or opcode_name(model, last) != "MUL" or not no_fused_activation(last):
                return None
            found = split(last, lambda t: const(t) is not None and only(t, "RSQRT") is None)
            gamma_tensor, times_r, chain = None, last, []
            if found is not None and only(found[1], "MUL") is not None:
                gamma_tensor, times_r, chain = found[0], only(found[1], "MUL"), [last]
            found = split(times_r, lambda t: only(t, "RSQRT") is not None)
            if found is None:
                return None
            r, x = found
            rsqrt = only(r, "RSQRT")
            chain += [times_r, rsqrt]
            a = rsqrt.inputs[0]
            if (reshape := only(a, "RESHAPE")) is not None:
                chain.append(reshape)
                a = reshape.inputs[0]
            add = only(a, "ADD")
            found = add and split(add, lambda t: (v := const(t)) is not None and v.size == 1 and v.ravel()[0] >= 0)
            if not found:
                return None
            eps, mean = found
            times_k = only(mean, "MUL")
            found = times_k and split(times_k, lambda t: (v := const(t)) is not None and v.size == 1)
            if not found:
                return None
            inv_k, total = found
            k = subgraph.tensors[x].shape[-1]
            if abs(float(const(inv_k).ravel()[0]) * k - 1) > 1e-6 or (gamma_tensor is not None and
                                                                      const(gamma_tensor).size != k):
                return None
            reduce = only(total, "SUM")
            if reduce is None or (axis := buffer_array(model, subgraph.tensors[reduce.inputs[1]])) is None:
                return None
            squares = reduce.inputs[0]
            rank = len(subgraph.tensors[squares].shape)
            if sorted(int(v) % rank for v in np.ravel(axis)) != [rank - 1]:
                return None
            chain += [add, times_k, reduce]
            if (shaped := only(squares, "RESHAPE")) is not None:  # x [T, K] squared, then seen as [1, T, K]
                chain.append(shaped)
                squares = shaped.inputs[0]
            square = only(squares, "MUL")
            if square is None or list(square.inputs) != [x, x]:
                return None
            return x, gamma_tensor, eps, chain + [square]

        removed, count, inserted = set(), 0, {}
        for op in ops:
            if opcode_name(model, op) != "MUL" or id(op) in removed:
                continue
            out = op.outputs[0]
            users = readers.get(out, [])
            if (not users or out in outputs
                    or any(opcode_name(model, u) not in MATMUL_OPS or len(u.inputs) > 4 or u.inputs[0] != out
                           or out in list(u.inputs[1:]) for u in users)):
                continue
            found = norm_of(out)
            if found is None:
                continue
            x, gamma_tensor, eps, chain = found
            k = int(subgraph.tensors[x].shape[-1])
            shape = [int(d) for d in subgraph.tensors[out].shape]
            if [int(d) for d in subgraph.tensors[x].shape] != shape:  # the readers see x as the norm's shape
                if int(np.prod(subgraph.tensors[x].shape)) != int(np.prod(shape)):
                    continue
                seen = new_tensor(subgraph, f"rms_norm_input_{x}", shape, schema.TensorType.FLOAT32)
                inserted[id(op)] = new_reshape(model, subgraph, x, seen, f"rms_norm_shape_{x}")
                x = seen
            if gamma_tensor is None:
                gamma_1d = new_tensor(subgraph, f"rms_norm_ones_{k}", [k], schema.TensorType.FLOAT32,
                                      new_buffer(model, np.ones(k, np.float32)))
            else:  # the same bytes as [K]
                g = subgraph.tensors[gamma_tensor]
                gamma_1d = new_tensor(subgraph, f"{g.name.decode() if isinstance(g.name, bytes) else g.name}.1d", [k],
                                      schema.TensorType.FLOAT32, g.buffer)
            for u in users:
                bias = u.inputs[3] if len(u.inputs) > 3 else -1
                u.inputs = [x, u.inputs[1], u.inputs[2], bias, -1, gamma_1d, eps]
                options = bytes(u.customOptions if u.customOptions is not None else b"").decode()
                u.customOptions = list((options + "," if options else "").encode() + NORM_OPTION.encode())
            removed.update(id(o) for o in chain)
            count += 1
        # A RESHAPE of x, where one was needed, runs where the norm's last MUL ran (before its readers).
        subgraph.operators = [o for op in ops for o in ([inserted[id(op)]] if id(op) in inserted else [op])
                              if id(o) not in removed]
        counts.append(count)
    return write_model(model), counts
