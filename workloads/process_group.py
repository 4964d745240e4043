"""Who this process is in a multi-process run, and the few collectives the harness needs.

The runner uses these to align window edges (a barrier at the same step on every rank), to agree
on stopping, and to gather every rank's measurements on rank 0. Training collectives (DDP's
all-reduce, the MoE all-to-all, XLA's collectives) belong to the framework adapters; these are
the harness's, on the host. One process: every collective is the identity.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Topology:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0
    nnodes: int = 1
    launcher: str = "local"  # local | torchrun | slurm | jax.distributed
    backend: str = "none"  # nccl | gloo | jax
    hostname: str = field(default_factory=socket.gethostname)


def topology_from_hosts(rank: int, hosts: list[str], launcher: str, backend: str) -> Topology:
    """Nodes from every rank's hostname (in rank order): a node is a host, numbered by its first
    rank; a rank's local rank is its place among the ranks on its host. For launchers that do
    not say which ranks share a machine (JAX's multi-controller runtime)."""
    nodes = list(dict.fromkeys(hosts))
    mine = hosts[rank]
    return Topology(
        rank=rank,
        world_size=len(hosts),
        local_rank=hosts[:rank].count(mine),
        local_world_size=hosts.count(mine),
        node_rank=nodes.index(mine),
        nnodes=len(nodes),
        launcher=launcher,
        backend=backend,
        hostname=mine,
    )


# What torch (gloo, NCCL) and JAX say when another process of the run has gone away
PEER_LOST = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "nccl communicator was aborted",
    "socket timeout",
    "unable to reach",
    "connection refused",
)


def lost_peer(exc: BaseException) -> bool:
    """True for the error a rank sees in a collective when another rank has died: not a bug
    of this rank, and worth one line rather than a traceback. Only inside a multi-process run."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and "JAX_PROCESS_ID" not in os.environ:
        return False
    text = f"{type(exc).__name__}: {exc}".lower()
    return "disterror" in text or any(sign in text for sign in PEER_LOST)


class ProcessGroup:
    """A one-process group; subclasses implement the collectives for torch and JAX."""

    def __init__(self, topology: Topology | None = None):
        self.topology = topology or Topology()

    @property
    def is_primary(self) -> bool:
        return self.topology.rank == 0

    @property
    def distributed(self) -> bool:
        return self.topology.world_size > 1

    def barrier(self) -> None:
        """Return on every rank once every rank has called it."""

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's picklable `obj`, in rank order, on every rank."""
        return [obj]

    def gather_object(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj` in rank order on rank 0; None on the other ranks."""
        gathered = self.all_gather_object(obj)
        return gathered if self.is_primary else None

    def agree(self, flags: list[bool], totals: list[float]) -> tuple[list[bool], list[float]]:
        """Each flag OR-ed and each number summed over ranks, on every rank: one collective,
        which is also the window edge's barrier."""
        return [bool(f) for f in flags], [float(x) for x in totals]

    def any(self, *flags: bool) -> list[bool]:
        """For each flag: True on every rank when any rank passed True. A barrier too."""
        return self.agree(list(flags), [])[0]

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        return self.all_gather_object(obj)[0]

    def close(self) -> None:
        """Release the group (the adapter's process group, if it made one)."""
