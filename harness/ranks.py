"""What the runner does across ranks: agree on set-up, check meter ownership, gather measurements.

Every function here is called by every rank at the same point of the run (they are collectives);
with one process they reduce to the local answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.errors import ConfigError, JoulebenchError, MeterError
from harness.meters.meter import Meter
from harness.meters.view import ClockMap, MeterView, Owner, ViewAccumulator, merge_views
from workloads.process_group import ProcessGroup


def on_primary(group: ProcessGroup, make: Callable[[], Any]) -> Any:
    """Rank 0 computes a value (e.g. the run directory) and every rank gets it; a user error
    raised there is raised on every rank, so no rank waits for a value that never comes."""
    payload = None
    if group.is_primary:
        try:
            payload = ("ok", make())
        except JoulebenchError as exc:
            payload = ("error", type(exc).__name__, exc.problem, exc.fix)
            if not group.distributed:
                raise
    payload = group.broadcast_object(payload)
    if payload[0] == "error":
        kinds = {cls.__name__: cls for cls in (ConfigError, MeterError, JoulebenchError)}
        raise kinds.get(payload[1], JoulebenchError)(payload[2], payload[3])
    return payload[1]


def check_ownership(group: ProcessGroup, meter: Meter) -> None:
    """No physical device is measured by two ranks of one node (e.g. two ranks told to read the
    same GPU with meter.nvml.devices)."""
    if not group.distributed:
        return
    mine = sorted(thing for s in meter.sources if s.role == "device" for thing in s.covers())
    everyone = group.all_gather_object((group.topology.node_rank, group.topology.rank, mine))
    seen: dict[tuple[int, str], int] = {}
    for node, rank, things in everyone:
        for thing in things:
            if (node, thing) in seen:
                raise MeterError(
                    f"ranks {seen[(node, thing)]} and {rank} on node {node} both measure {thing}; "
                    "its energy would be counted twice.",
                    "leave meter.nvml.devices unset so each rank meters only its own GPU.",
                )
            seen[(node, thing)] = rank


def owner_of(group: ProcessGroup, devices: list[str]) -> Owner:
    t = group.topology
    return Owner(t.rank, t.local_rank, t.node_rank, t.hostname, devices)


class ViewGather:
    """Every rank's measurements, merged on rank 0 onto its clock; each call sends only what
    each rank recorded since the last one, so provisional results at every eval cost a run
    linear time in its trace, not its length times its evals."""

    def __init__(self) -> None:
        self.cursors: dict[str, int] = {}
        self.ranks: dict[int, ViewAccumulator] = {}

    def __call__(
        self, group: ProcessGroup, meter: Meter, owner: Owner, edges: tuple[int, int | None]
    ) -> tuple[MeterView, list[Owner], list[ClockMap]] | None:
        """On rank 0: the merged view, the owners and the clock maps; None on other ranks.
        `edges` are this rank's times of the barrier-aligned run_start and run_stop (None until
        the run has stopped), which tie the clocks together."""
        if not group.distributed:
            return meter.view(), [owner], [ClockMap()]
        delta, self.cursors = meter.export(self.cursors)
        parts = group.gather_object((owner, delta, edges))
        if parts is None:
            return None
        views = [
            (o, self.ranks.setdefault(o.rank, ViewAccumulator()).add(d), e) for o, d, e in parts
        ]
        ref = views[0][2]
        clocks = [ClockMap.between(mine, ref) for _, _, mine in views]
        merged = merge_views([(o, v, c) for (o, v, _), c in zip(views, clocks, strict=True)])
        return merged, [o for o, _, _ in views], clocks
