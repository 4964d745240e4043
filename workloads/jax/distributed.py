"""JAX multi-controller start-up and the harness's host collectives for it.

`jax.distributed.initialize` runs when `framework.distributed.enabled=true`. Its address,
process count and id come from the config, else from JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES and JAX_PROCESS_ID, else from JAX's own cluster detection (SLURM, Open MPI,
Cloud TPU pods). Processes on one host (one per GPU, or a loopback test) are one node: the
process group finds which by hostname, and only the first reads the node's RAPL and wall meters.
Collectives go through `jax.experimental.multihost_utils`, which every JAX backend supports.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import socket

import jax
import numpy as np

from harness.errors import WorkloadError
from workloads.process_group import ProcessGroup, Topology, topology_from_hosts


def _from_env(value, name: str, cast=str):
    if value is not None:
        return value
    raw = os.environ.get(name)
    return cast(raw) if raw else None


def initialize(dist_cfg) -> Topology | None:
    """Start the multi-controller runtime if asked; the topology, or None for one process."""
    if not dist_cfg.enabled:
        return None
    # CPU processes exchange tensors through gloo (the default differs across JAX versions)
    with contextlib.suppress(AttributeError, ValueError):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=_from_env(dist_cfg.coordinator_address, "JAX_COORDINATOR_ADDRESS"),
            num_processes=_from_env(dist_cfg.num_processes, "JAX_NUM_PROCESSES", int),
            process_id=_from_env(dist_cfg.process_id, "JAX_PROCESS_ID", int),
        )
    except (RuntimeError, ValueError) as exc:
        if "already" not in str(exc):
            raise WorkloadError(
                f"jax.distributed.initialize failed: {str(exc).splitlines()[0]}.",
                "set framework.distributed.coordinator_address/num_processes/process_id "
                "(or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).",
            ) from exc
    return Topology(
        rank=jax.process_index(),
        world_size=jax.process_count(),
        launcher="jax.distributed",
        backend="jax",
    )


class JaxGroup(ProcessGroup):
    def __init__(self, topology: Topology):
        """Which processes share a host comes from their hostnames (JAX does not say)."""
        super().__init__(topology)
        hosts = self.all_gather_object(socket.gethostname())
        self.topology = topology_from_hosts(topology.rank, hosts, topology.launcher, "jax")

    def barrier(self) -> None:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("joulebench")

    def all_gather_object(self, obj):
        from jax.experimental import multihost_utils

        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64)))
        padded = np.zeros(int(sizes.max()), np.uint8)
        padded[: data.size] = data
        rows = np.asarray(multihost_utils.process_allgather(padded))
        return [pickle.loads(rows[i, : int(n)].tobytes()) for i, n in enumerate(sizes.ravel())]

    def agree(self, flags: list[bool], totals: list[float]) -> tuple[list[bool], list[float]]:
        from jax.experimental import multihost_utils

        mine = np.array([float(bool(f)) for f in flags] + [float(x) for x in totals])
        summed = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, mine.size).sum(0)
        return [bool(v > 0) for v in summed[: len(flags)]], summed[len(flags) :].tolist()
