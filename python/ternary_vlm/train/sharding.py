"""How training state is laid out over devices: a mesh with axes `data` (batch split, state replicated) and
`fsdp` (batch split too, and every large parameter split by rows, gathered by XLA where a layer needs it), and
one table of partition rules by parameter path, applied alike to the student, the frozen teacher and the
optimizer state (whose moments mirror the parameters' paths).

  --mesh=data:2,fsdp:4   parse_mesh; the default is every local device on `data` (pure data parallel)
"""

from __future__ import annotations

import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ternary_vlm.errors import TernaryVLMError

AXES = ("data", "fsdp")
BATCH = PartitionSpec(AXES)  # a batch's first dimension is split over every device of the mesh

# (pattern on the "/"-joined parameter path, spec). First match wins; a split needs the dimension to divide by the
# axis size, else the leaf stays replicated (tiny tensors: norm gains, biases, odd shapes).
RULES = (
    (r"embed_tokens/weight$", PartitionSpec("fsdp", None)),    # [vocab, hidden]: vocabulary rows
    (r"/weight$", PartitionSpec("fsdp", None)),                # Linear / QuantLinear latent [out, in]: output rows
    (r"/scale$", PartitionSpec("fsdp")),                       # QuantLinear α [out]: with its rows
    (r".*", PartitionSpec()),                                  # norm gains, biases, counters: replicated
)


def mesh_shape(spec: str | None, devices: int | None) -> dict[str, int]:
    """`data:2,fsdp:4` -> {"data": 2, "fsdp": 4}; an axis left out has size 1; None or "" puts every device on
    data. devices: checked against the product (None: not checked, for a dry run sized for another machine)."""
    sizes = {"data": devices or 1, "fsdp": 1}
    if spec:
        sizes = {"data": 1, "fsdp": 1}
        for part in spec.split(","):
            name, _, size = part.partition(":")
            if name not in AXES or not size.isdigit() or int(size) < 1:
                raise TernaryVLMError(f"--mesh: {part!r} is not AXIS:SIZE with AXIS in {', '.join(AXES)}")
            sizes[name] = int(size)
    if devices is not None and sizes["data"] * sizes["fsdp"] != devices:
        raise TernaryVLMError(f"--mesh {spec!r} needs {sizes['data'] * sizes['fsdp']} devices, there are {devices}")
    return sizes


def parse_mesh(spec: str | None, devices=None) -> Mesh:
    """The Mesh of mesh_shape(spec) over `devices` (default: every local device)."""
    devices = list(devices or jax.devices())
    sizes = mesh_shape(spec, len(devices))
    return Mesh(np.array(devices).reshape(sizes["data"], sizes["fsdp"]), AXES)


def spec_for(path: str, shape: tuple, axis_sizes) -> PartitionSpec:
    """The rule's spec for a leaf; axis_sizes: a Mesh's .shape, or the same mapping for a mesh not built yet."""
    for pattern, spec in RULES:
        if re.search(pattern, path):
            if len(spec) > len(shape):
                return PartitionSpec()
            for dim, axis in zip(shape, spec):
                if axis is not None and dim % axis_sizes[axis]:
                    return PartitionSpec()
            return spec
    return PartitionSpec()


def parameter_name(key_path) -> str:
    """A state leaf's jax key path as "a/b/weight", without the Variable's own field (.value)."""
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in key_path)
    return re.sub(r"/\.?(raw_)?value$", "", name)


def shardings(state, mesh: Mesh):
    """A NamedSharding per leaf of an nnx State (parameters or optimizer state), by RULES."""
    def one(path, leaf):
        return NamedSharding(mesh, spec_for(parameter_name(path), tuple(np.shape(leaf)), mesh.shape))
    return jax.tree_util.tree_map_with_path(one, state)


def place(state, mesh: Mesh):
    """The state moved to its shardings."""
    return jax.device_put(state, shardings(state, mesh))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
    """Splits every array's first dimension over all devices of the mesh (it must divide evenly); each process
    places only the rows of its own devices (the batch is a pure function of the step, the same on every
    process)."""
    out = {}
    for k, v in batch.items():
        if v.shape[0] % mesh.size:
            raise ValueError(f"batch field {k} has {v.shape[0]} rows, not divisible by {mesh.size} devices")
        out[k] = jax.make_array_from_callback(v.shape, NamedSharding(mesh, BATCH), lambda index, v=v: v[index])
    return out
