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
from harness.meters.counter import EnergyCurve
from harness.results import power_csv
from harness.results.run_dir import total_domains_of


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

    def appended(self, row: tuple[int, float, float] | None) -> DomainSeries:
        """This series with one more (t_ns, joules, watts) row; itself when `row` is None."""
        if row is None:
            return self
        return DomainSeries(
            np.append(self.t_ns, np.int64(row[0])),
            np.append(self.joules, row[1]),
            np.append(self.watts, row[2]),
        )

    def concat(self, other: DomainSeries) -> DomainSeries:
        return DomainSeries(
            np.concatenate([self.t_ns, other.t_ns]),
            np.concatenate([self.joules, other.joules]),
            np.concatenate([self.watts, other.watts]),
        )

    @classmethod
    def empty(cls) -> DomainSeries:
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))


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
    sources: list[tuple[SourceDescription, float | None]]  # with measured poll rate
    total_domains: list[str]  # summed for every total (a wall meter's, else every device's)
    faults: list[Fault] = field(default_factory=list)
    idle_power_w: dict[str, float] = field(default_factory=dict)
    owners: dict[str, Owner] = field(default_factory=dict)  # domain -> owner (merged views)
    warnings: list[str] = field(default_factory=list)
    _curve: EnergyCurve | None = field(default=None, repr=False, compare=False)

    @property
    def counter_tick_s(self) -> dict[str, float]:
        """The tick period of every ticking counter domain."""
        return {d: p for desc, _ in self.sources for d, p in desc.counter_tick_s.items()}

    @property
    def curve(self) -> EnergyCurve:
        """Each domain's energy through its ticks, built once per view (linear in its length)."""
        if self._curve is None:
            self._curve = EnergyCurve.from_polls(
                {d: (s.t_ns, s.joules) for d, s in self.series.items()}, self.counter_tick_s
            )
        return self._curve

    def energy_at(self, t_ns):
        """Cumulative joules per domain at t_ns (a time, or an array of times at once)."""
        return self.curve.energy_at(t_ns)

    def energy_between(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        e = self.energy_at(np.array([t0_ns, t1_ns]))
        return {d: float(v[1] - v[0]) for d, v in e.items()}

    def power_peak_w(self, t0_ns: int, t1_ns: int) -> float | None:
        """Peak of the summed power of the total domains over [t0, t1], each domain
        interpolated at every poll time of any domain."""
        curves = [self.series[d] for d in self.total_domains if d in self.series]
        curves = [(s.t_ns, s.watts) for s in curves if s.t_ns.size]
        if not curves:
            return None
        times = sorted_union([t[(t >= t0_ns) & (t <= t1_ns)] for t, _ in curves])
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
                rows.append((t, power_csv.row(t, domain, w, j)))
        rows.sort(key=lambda r: r[0])
        return [r for _, r in rows]


@dataclass
class ViewDelta:
    """What a meter recorded since the last export: each domain's new committed rows and its
    latest (pending) poll, plus the small parts, which are sent whole. Summed up on rank 0, the
    deltas give the same view as the meter's own, at a cost linear in the trace overall."""

    series: dict[str, tuple[DomainSeries, tuple[int, float, float] | None]]
    sources: list[tuple[SourceDescription, float | None]]
    total_domains: list[str]
    faults: list[Fault]
    idle_power_w: dict[str, float]
    warnings: list[str]


class ViewAccumulator:
    """One rank's view rebuilt from its deltas, on rank 0."""

    def __init__(self) -> None:
        self.committed: dict[str, DomainSeries] = {}
        self.last: ViewDelta | None = None

    def add(self, delta: ViewDelta) -> MeterView:
        for domain, (rows, _pending) in delta.series.items():
            before = self.committed.get(domain)
            self.committed[domain] = rows if before is None else before.concat(rows)
        self.last = delta
        return MeterView(
            series={d: self.committed[d].appended(p) for d, (_, p) in delta.series.items()},
            sources=delta.sources,
            total_domains=delta.total_domains,
            faults=delta.faults,
            idle_power_w=delta.idle_power_w,
            warnings=delta.warnings,
        )


def sorted_union(arrays: list[np.ndarray]) -> np.ndarray:
    """The distinct values of several sorted arrays, sorted: a stable sort (timsort) merges
    the k runs in O(n log k), where np.unique would sort everything again."""
    if not arrays:
        return np.zeros(0, dtype=np.int64)
    merged = np.sort(np.concatenate(arrays), kind="stable")
    if merged.size == 0:
        return merged
    return merged[np.concatenate([[True], merged[1:] != merged[:-1]])]


def merge_views(parts: list[tuple[Owner, MeterView, ClockMap]]) -> MeterView:
    """One view from every rank's (owner, view, map onto rank 0's clock).

    Domains become `node<k>/<domain>`; a node's total is its wall meter when one of its ranks
    has one, else all device domains of all its ranks, so nothing is counted twice."""
    series: dict[str, DomainSeries] = {}
    sources: list[tuple[SourceDescription, float | None]] = []
    faults: list[Fault] = []
    warnings: list[str] = []
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
            qualified = replace(
                desc,
                domains=[prefix + d for d in desc.domains],
                details=details,
                counter_tick_s={prefix + d: p for d, p in desc.counter_tick_s.items()},
            )
            sources.append((qualified, rate))
            node_sources.setdefault(owner.node_rank, []).append(qualified)
        faults += [
            Fault(int(clock(np.array([f.t_ns]))[0]), f"rank{owner.rank}:{f.source}", f.cause)
            for f in view.faults
        ]
        idle.update({prefix + d: w for d, w in view.idle_power_w.items()})
        warnings += [f"rank {owner.rank}: {w}" for w in view.warnings]
    totals = [
        d
        for node in sorted(node_sources)
        for d in total_domains_of([(s.role, s.domains) for s in node_sources[node]])
    ]
    return MeterView(series, sources, totals, faults, idle, owners, warnings)
