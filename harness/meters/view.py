"""A read-only view of what a meter recorded, and the merge of every rank's view into one.

The result is assembled from a `MeterView`, never from the live meter: in a one-process run the
view is the meter's own series; in a multi-process run rank 0 merges the views every rank sent
(harness/runner.py), with each domain named after its node (`node1/gpu:3`) and each rank's
times moved onto rank 0's clock by a `ClockMap`. The map is tied to the two barrier-aligned
edges every rank records, `run_start` and `run_stop`: each rank's edges land exactly on rank 0's,
so every rank's trace covers the timed window and its energy is its own between the same two
barriers, and a linear map between them takes out clock drift. Barrier exit jitter (microseconds
to milliseconds) is the remaining error, which is as close as two hosts' monotonic clocks can be
tied without a shared clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from harness.meters.base import SourceDescription


@dataclass
class Fault:
    t_ns: int
    source: str
    cause: str


@dataclass
class DomainSeries:
    t_ns: np.ndarray  # int64, poll times
    joules: np.ndarray  # cumulative
    watts: np.ndarray  # NaN where the source has no power reading


@dataclass
class Owner:
    """Which process measured a view: ties domains to ranks, nodes and hosts."""

    rank: int = 0
    local_rank: int = 0
    node_rank: int = 0
    hostname: str = ""
    devices: list[str] = field(default_factory=list)  # accelerators this rank trains on


@dataclass(frozen=True)
class ClockMap:
    """Maps one rank's monotonic times onto rank 0's: `from_ns` (this rank's run_start) lands on
    `to_ns` (rank 0's), and elapsed time is multiplied by `scale` (rank 0's window over this
    rank's; 1 until run_stop is known)."""

    from_ns: int = 0
    to_ns: int = 0
    scale: float = 1.0

    @classmethod
    def between(cls, mine: tuple[int, int | None], ref: tuple[int, int | None]) -> ClockMap:
        """From this rank's (run_start, run_stop) and rank 0's; an offset alone while either
        run_stop is unknown (provisional results, or a window that never opened)."""
        (start, stop), (ref_start, ref_stop) = mine, ref
        if stop is None or ref_stop is None or stop <= start or ref_stop <= ref_start:
            return cls(start, ref_start)
        return cls(start, ref_start, (ref_stop - ref_start) / (stop - start))

    @property
    def offset_ns(self) -> int:
        return self.to_ns - self.from_ns

    def __call__(self, t_ns: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return t_ns + self.offset_ns
        # float64 is exact to the nanosecond for spans under 2**52 ns (52 days); rint is
        # monotone, so a rank's run_stop maps exactly onto rank 0's
        elapsed = (np.asarray(t_ns, dtype=np.int64) - self.from_ns).astype(np.float64)
        return self.to_ns + np.rint(elapsed * self.scale).astype(np.int64)


@dataclass
class MeterView:
    series: dict[str, DomainSeries]
    sources: list[tuple[SourceDescription, float | None]]  # with measured sample rate
    total_domains: list[str]  # summed for every total (a wall meter's, else every device's)
    faults: list[Fault] = field(default_factory=list)
    idle_power_w: dict[str, float] = field(default_factory=dict)
    sample_hz: float = 10.0
    owners: dict[str, Owner] = field(default_factory=dict)  # domain -> owner (merged views)

    def energy_at(self, t_ns: int) -> dict[str, float]:
        """Cumulative joules per domain at t_ns, linearly interpolated between polls."""
        return {
            d: float(np.interp(t_ns, s.t_ns, s.joules))
            for d, s in self.series.items()
            if s.t_ns.size
        }

    def power_peak_w(self, t0_ns: int, t1_ns: int) -> float | None:
        """Peak of the summed power of the total domains over [t0, t1], each domain
        interpolated at every poll time of any domain."""
        curves = [self.series[d] for d in self.total_domains if d in self.series]
        curves = [(s.t_ns, s.watts) for s in curves if s.t_ns.size]
        if not curves:
            return None
        times = np.unique(np.concatenate([t for t, _ in curves]))
        times = times[(times >= t0_ns) & (times <= t1_ns)]
        if times.size == 0:
            return None
        total = np.zeros(times.size)
        for t, w in curves:
            ok = ~np.isnan(w)
            if ok.any():
                total += np.interp(times, t[ok], w[ok])
        return float(total.max())

    def describe(self) -> list[tuple[SourceDescription, float | None]]:
        return list(self.sources)

    def trace_rows(self) -> list[str]:
        """power.csv rows (without header) of every domain, in time order."""
        rows = []
        for domain, s in self.series.items():
            for t, w, j in zip(s.t_ns.tolist(), s.watts.tolist(), s.joules.tolist(), strict=True):
                watts = "" if w != w else f"{w:.4f}"
                rows.append((t, f"{t},{domain},{watts},{j:.6f}\n"))
        rows.sort(key=lambda r: r[0])
        return [r for _, r in rows]


def total_domains_of(sources: list[tuple[str, list[str]]]) -> list[str]:
    """From (role, domains) per source: a wall meter's domains when there is one (device
    meters are then its breakdown), else every domain."""
    totals = [d for role, domains in sources if role == "total" for d in domains]
    return totals or [d for _, domains in sources for d in domains]


def merge_views(parts: list[tuple[Owner, MeterView, ClockMap]]) -> MeterView:
    """One view from every rank's (owner, view, map onto rank 0's clock).

    Domains become `node<k>/<domain>`; a node's total is its wall meter when one of its ranks
    has one, else all device domains of all its ranks, so nothing is counted twice."""
    series: dict[str, DomainSeries] = {}
    sources: list[tuple[SourceDescription, float | None]] = []
    faults: list[Fault] = []
    idle: dict[str, float] = {}
    owners: dict[str, Owner] = {}
    node_sources: dict[int, list[SourceDescription]] = {}
    for owner, view, clock in sorted(parts, key=lambda p: p[0].rank):
        prefix = f"node{owner.node_rank}/"
        for domain, s in view.series.items():
            if prefix + domain in series:
                raise ValueError(f"{prefix + domain} is measured by two ranks")
            series[prefix + domain] = DomainSeries(clock(s.t_ns), s.joules, s.watts)
            owners[prefix + domain] = owner
        for desc, rate in view.sources:
            details = {**desc.details, "rank": owner.rank, "node": owner.node_rank}
            if owner.hostname:
                details["hostname"] = owner.hostname
            qualified = replace(desc, domains=[prefix + d for d in desc.domains], details=details)
            sources.append((qualified, rate))
            node_sources.setdefault(owner.node_rank, []).append(qualified)
        faults += [
            Fault(int(clock(np.array([f.t_ns]))[0]), f"rank{owner.rank}:{f.source}", f.cause)
            for f in view.faults
        ]
        idle.update({prefix + d: w for d, w in view.idle_power_w.items()})
    totals = [
        d
        for node in sorted(node_sources)
        for d in total_domains_of([(s.role, s.domains) for s in node_sources[node]])
    ]
    sample_hz = parts[0][1].sample_hz if parts else 10.0
    return MeterView(series, sources, totals, faults, idle, sample_hz, owners)
