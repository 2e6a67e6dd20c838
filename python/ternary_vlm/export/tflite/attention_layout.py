"""The attention-layout pass: each KVCacheAttention reads q, k and v as the projections write them (token-major) and
writes its output as the output projection reads it, so the TRANSPOSEs (and RESHAPEs) the converter puts around
attention go (cc/tflite/attention_op.h's token-major form). TFLite runs those transposes as scalar loops: four per
layer, ~2 % of a SmolLM2 prefill, and ~8 op calls per layer per decoded token.

Which tensor to read is decided by value, not by pattern: the chain of RESHAPE / TRANSPOSE ops between a candidate
tensor and the op's input is run on numpy indices, and the candidate is taken only if the chain is exactly the
head-major re-layout the op would otherwise be given."""

from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from ternary_vlm.export.tflite.flatbuffer import (buffer_array, new_reshape, new_tensor, opcode_name,
                                                  producers_and_readers, read_model, tensor_ids, write_model)
from ternary_vlm.export.tflite.kv_cache import KV_CACHE_OP

_LAYOUT_OPS = ("RESHAPE", "TRANSPOSE")


def token_major_attention(content: bytes) -> tuple[bytes, list[int]]:
    """Rewrites every KVCacheAttention whose inputs and output are re-laid out by RESHAPE / TRANSPOSE chains alone;
    returns the model and, per subgraph, how many ops now read the token-major layout."""
    model = read_model(content)
    counts = []
    for subgraph in model.subgraphs:
        ops = subgraph.operators
        producer, readers = producers_and_readers(subgraph)
        graph_outputs = set(tensor_ids(subgraph.outputs))

        def shape(t):
            return tuple(int(d) for d in subgraph.tensors[t].shape)

        def sole_link(t):
            """t is read by one op only and is no graph output (so the op making it may go)."""
            return len(readers.get(t, [])) == 1 and t not in graph_outputs

        def relayout(ops_chain, values):
            """values carried through RESHAPE / TRANSPOSE ops (in order), or None if one is not a plain re-layout."""
            for op in ops_chain:
                if opcode_name(model, op) == "RESHAPE":
                    values = values.reshape(shape(op.outputs[0]))
                else:
                    perm = buffer_array(model, subgraph.tensors[op.inputs[1]])
                    if perm is None:
                        return None
                    values = values.transpose([int(p) for p in perm.ravel()])
            return values

        def source(t, head_major):
            """The furthest tensor back along t's chain of RESHAPE / TRANSPOSE ops (each output read by the next op
            only) whose values the chain lays out as head_major(their token-major order); with the chain's ops.
            None if there is none."""
            chain, found, at = [], None, t
            while True:
                op = producer.get(at)
                if op is None or opcode_name(model, op) not in _LAYOUT_OPS or not sole_link(at):
                    break
                chain.insert(0, op)
                at = op.inputs[0]
                index = np.arange(int(np.prod(shape(at))))
                moved = relayout(chain, index.reshape(shape(at)))
                if moved is not None and np.array_equal(moved, head_major(index)):
                    found = (at, list(chain))
            return found

        def sink(t, head_major):
            """The furthest tensor forward along t's chain of RESHAPE / TRANSPOSE ops (sole readers) that holds t's
            values in the token-major order (head_major of it is t); with the chain's ops. None if there is none."""
            chain, found, at = [], None, t
            while sole_link(at):
                op = readers[at][0]
                if opcode_name(model, op) not in _LAYOUT_OPS or op.inputs[0] != at:
                    break
                chain.append(op)
                at = op.outputs[0]
                index = np.arange(int(np.prod(shape(t)))).reshape(shape(t))
                moved = relayout(chain, index)
                if moved is not None and np.array_equal(head_major(moved.reshape(-1)), index):
                    found = (at, list(chain))
            return found

        def as_shape(tensor, want, name):
            """tensor itself if it has shape `want`, else a new tensor of that shape and the RESHAPE to it."""
            if shape(tensor) == want:
                return tensor, []
            seen = new_tensor(subgraph, f"{name}_{tensor}", want, schema.TensorType.FLOAT32)
            return seen, [new_reshape(model, subgraph, tensor, seen, f"{name}_shape_{tensor}")]

        removed, count, before, after = set(), 0, {}, {}
        for op in ops:
            if opcode_name(model, op) != KV_CACHE_OP or len(shape(op.inputs[0])) != 3:
                continue
            heads, rows, dim = shape(op.inputs[0])
            t = shape(op.inputs[1])[2]
            group = rows // t

            # The op's head-major inputs and output, as functions of the token-major arrays (attention_op.h).
            def q_of(a):
                return a.reshape(t, heads, group, dim).transpose(1, 2, 0, 3).reshape(heads, rows, dim)

            def k_of(a):
                return a.reshape(t, heads, dim).transpose(1, 2, 0)

            def v_of(a):
                return a.reshape(t, heads, dim).transpose(1, 0, 2)

            found = [source(op.inputs[0], q_of), source(op.inputs[1], k_of), source(op.inputs[2], v_of),
                     sink(op.outputs[0], q_of)]
            if any(f is None for f in found):
                continue
            (q, q_chain), (k, k_chain), (v, v_chain), (out, out_chain) = found
            q, q_shaped = as_shape(q, (1, t, heads * group, dim), "attention_q")
            k, k_shaped = as_shape(k, (1, t, heads, dim), "attention_k")
            v, v_shaped = as_shape(v, (1, t, heads, dim), "attention_v")
            y = out
            if shape(out) != (1, t, heads * group * dim):  # the op writes [1, T, H·G·D], reshaped to what is read
                y = new_tensor(subgraph, f"attention_out_{out}", (1, t, heads * group * dim), schema.TensorType.FLOAT32)
                after[id(op)] = [new_reshape(model, subgraph, y, out, f"attention_out_shape_{out}")]
            before[id(op)] = q_shaped + k_shaped + v_shaped
            op.inputs = [q, k, v] + list(op.inputs[3:])
            op.outputs = [y]
            removed.update(id(o) for o in q_chain + k_chain + v_chain + out_chain)
            count += 1
        subgraph.operators = [o for op in ops if id(op) not in removed
                              for o in before.get(id(op), []) + [op] + after.get(id(op), [])]
        counts.append(count)
    return write_model(model), counts
