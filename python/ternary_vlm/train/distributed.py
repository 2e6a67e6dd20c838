"""Several processes training one model (several hosts, or one process per GPU): jax.distributed.

Every process runs the same program. After `initialize`, jax.devices() lists the devices of all processes, so
the mesh of train/sharding.py spans them: batches are split over every device (each process places only the
rows of its own devices), parameters, teacher and optimizer state are split on `fsdp`, and XLA's collectives
cross processes (NCCL on GPUs, gloo on CPUs). orbax checkpoints are written by all processes together and can be
restored on another mesh or process count. What is not sharded training (reports, curves, the output directory)
runs on every process on a local copy of the weights and is written by process 0 only.

  ternarize --coordinator_address=host0:1234 --num_processes=2 --process_id=0   # on host 0, and id 1 on host 1
  srun ternarize ...    # SLURM (or Open MPI's mpirun): no flags, jax reads the job's environment
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils

from ternary_vlm.errors import TernaryVLMError

# Variables of a multi-process job launcher that jax.distributed.initialize() reads by itself.
_LAUNCHERS = (("SLURM_NTASKS", "SLURM"), ("OMPI_COMM_WORLD_SIZE", "Open MPI"))


def launcher_processes() -> int:
    """The number of processes a SLURM / Open MPI launch started (1 without one)."""
    for variable, _ in _LAUNCHERS:
        if os.environ.get(variable, "").isdigit():
            return int(os.environ[variable])
    return 1


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """Joins the job when one is asked for (all three flags, or a launcher's environment with several processes);
    does nothing for a single process. Must run before anything touches a jax backend."""
    given = [v is not None for v in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise TernaryVLMError("--coordinator_address, --num_processes and --process_id go together (or none, "
                              "under SLURM / Open MPI)")
    if not any(given) and launcher_processes() == 1:
        return
    if all(given) and not 0 <= process_id < num_processes:
        raise TernaryVLMError(f"--process_id={process_id} is not in [0, --num_processes={num_processes})")
    # CPU collectives across processes (XLA's default CPU backend has none); GPUs use NCCL regardless.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)


def is_main() -> bool:
    """Whether this process writes the outputs (process 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process got here (no-op in a single process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def local_copy(state):
    """A pytree of cross-process arrays as whole arrays on this process's default device."""
    return jax.tree.map(jnp.asarray, multihost_utils.process_allgather(state, tiled=True))


def same_everywhere(state):
    """Process 0's values of a pytree of local arrays, on every process (results computed redundantly on each
    process are made exactly equal before they are split over the mesh)."""
    if jax.process_count() == 1:
        return state
    return multihost_utils.broadcast_one_to_all(state)
