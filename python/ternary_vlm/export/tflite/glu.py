"""The GLU pass: a Llama MLP's silu(gate) · up, which the converter writes as LOGISTIC, MUL and MUL between the
projections, moves into the down projection's op (TernaryMatMul / BinaryMatMul with custom option glu=silu: it
reads the gate and up outputs and multiplies silu(gate) · up itself, cc/kernels/glu.h). Three builtin ops per
layer go, which TFLite's own kernels ran at ~1 ns an element (SmolLM2 prefill of 64 tokens: 54.6 -> 52.1 ms)."""

from __future__ import annotations

from collections import Counter

from ternary_vlm.export.tflite.flatbuffer import no_fused_activation, opcode_name, read_model, tensor_ids, write_model

MATMUL_OPS = ("TernaryMatMul", "BinaryMatMul")
GLU_OPTION = "glu=silu"


def fuse_glu(content: bytes) -> tuple[bytes, list[int]]:
    """Rewrites every down = MatMul(MUL(MUL(g, LOGISTIC(g)), up)) whose intermediate tensors nothing else reads
    into MatMul(g, packed, scale, bias or -1, up) with glu=silu; returns the model and, per subgraph, how many."""
    model = read_model(content)
    counts = []
    for subgraph in model.subgraphs:
        ops = subgraph.operators
        producer = {t: op for op in ops for t in tensor_ids(op.outputs)}
        uses = Counter(t for op in ops for t in tensor_ids(op.inputs)) + Counter(tensor_ids(subgraph.outputs))

        def made_by(tensor, name):
            op = producer.get(tensor)
            return op if op is not None and opcode_name(model, op) == name and uses[tensor] == 1 else None

        def silu_of(tensor):
            """(g, the MUL, the LOGISTIC) when tensor = MUL(g, LOGISTIC(g)), in either order, read once each."""
            silu = made_by(tensor, "MUL")
            if silu is None or not no_fused_activation(silu):
                return None
            for g, s in ((silu.inputs[0], silu.inputs[1]), (silu.inputs[1], silu.inputs[0])):
                sigmoid = made_by(s, "LOGISTIC")
                if sigmoid is not None and sigmoid.inputs[0] == g:
                    return g, silu, sigmoid
            return None

        removed, count = set(), 0
        for down in ops:
            if opcode_name(model, down) not in MATMUL_OPS or len(down.inputs) > 4:
                continue
            product = made_by(down.inputs[0], "MUL")
            if product is None or not no_fused_activation(product):
                continue
            for silu_at in (0, 1):
                found, up = silu_of(product.inputs[silu_at]), product.inputs[1 - silu_at]
                if found is None or list(subgraph.tensors[found[0]].shape) != list(subgraph.tensors[up].shape):
                    continue
                gate, silu, sigmoid = found
                options = bytes(down.customOptions if down.customOptions is not None else b"").decode()
                down.customOptions = list((options + "," if options else "").encode() + GLU_OPTION.encode())
                bias = down.inputs[3] if len(down.inputs) > 3 else -1
                down.inputs = [gate, down.inputs[1], down.inputs[2], bias, up]
                removed.update({id(product), id(silu), id(sigmoid)})
                count += 1
                break
        subgraph.operators = [op for op in ops if id(op) not in removed]
        counts.append(count)
    return write_model(model), counts
