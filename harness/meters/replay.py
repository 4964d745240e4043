"""Replays a recorded power.csv, so a measured trace can drive tests and demos deterministically.

Each domain's cumulative joules (or its integrated power where the trace has no counter) are
replayed against time since open(); past the trace's end it starts over, accumulating.
Labelled provenance `simulated`: a replay is not a measurement of this run.

A recorded counter is replayed as a counter: its value holds between the rows where it
changed, so a staircase recorded from NVML replays as a staircase, and it ticks with the
period the recording shows (the median interval between changes). A power-only domain is
integrated and replayed smoothly.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import numpy as np

from harness.errors import MeterError
from harness.meters.base import MeterSource, Reading
from harness.meters.counter import poll_hz_for_tick, tick_period_from_changes
from harness.results import mlperf_power as mp

MLPERF_LOG_BYTES = 64 << 20  # an MLPerf power log: the import's limit (configs/ruleset)


def read_trace(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """domain -> (t_s from the domain's first sample, watts, cumulative joules, is a counter),
    read by the one power.csv reader (harness/results/trace.py: bounded, no links), or from an
    MLPerf power log (a published node_<K>.txt or sw_<K>.txt: one wall-power domain)."""
    from harness.results.trace import DomainTrace, TraceCurve, TraceError

    path = Path(path)
    try:
        if fnmatch.fnmatch(path.name, "node_*.txt") or fnmatch.fnmatch(path.name, "sw_*.txt"):
            domains = {mp.domain_of(path.name): _mlperf_log(path, DomainTrace)}
        else:
            domains = TraceCurve.read(path).domains
    except (TraceError, OSError, ValueError) as exc:
        raise MeterError(
            f"cannot replay {path}: {exc}.",
            "give a power.csv written by joulebench, or an MLPerf node_<K>.txt power log.",
        ) from exc
    out = {}
    for domain, tr in domains.items():
        if tr.t_ns.size < 2:
            continue
        t = tr.t_ns.astype(np.float64)
        out[domain] = ((t - t[0]) / 1e9, tr.watts, tr.joules - tr.joules[0], tr.counter)
    if not out:
        raise MeterError(
            f"{path} holds no domain with two or more samples.", "record a longer trace."
        )
    return out


class ReplaySource(MeterSource):
    name = "replay"
    method = "replay"
    provenance = "simulated"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.trace = read_trace(self.path)
        self._t0: int | None = None
        self.ticks = {d: p for d, v in self.trace.items() if (p := _tick_s(v[0], v[2], v[3]))}

    def domains(self) -> list[str]:
        return sorted(self.trace)

    def tick_period_s(self) -> dict[str, float]:
        return dict(self.ticks)

    def default_hz(self) -> float:
        return poll_hz_for_tick(min(self.ticks.values())) if self.ticks else 20.0

    def open(self, t_ns: int) -> None:
        self._t0 = t_ns

    def poll(self, t_ns: int) -> list[Reading]:
        elapsed = (t_ns - self._t0) / 1e9
        out = []
        for domain in self.domains():
            t, w, j, counter = self.trace[domain]
            laps, within = divmod(elapsed, t[-1])
            if domain in self.ticks:  # hold the last value the recording had reached
                at = j[max(0, int(np.searchsorted(t, within, side="right")) - 1)]
            else:
                at = float(np.interp(within, t, j))
            joules = laps * j[-1] + float(at)
            watts = float(np.interp(within, t, w))
            out.append(Reading(domain, joules, watts if watts == watts else None))
        return out

    def details(self) -> dict:
        return {
            "path": str(self.path),
            "trace_s": {d: float(v[0][-1]) for d, v in self.trace.items()},
            "counter_tick_s": self.ticks,
        }


def _mlperf_log(path: Path, domain_trace):
    """An MLPerf power log's readings (time order, a repeated time's first), power only."""
    from harness.results import power_csv, safe_files

    series = mp.reading_series(mp.parse(safe_files.read_text(path, MLPERF_LOG_BYTES)).records)
    t, w = np.array(series.t_ns, dtype=np.int64), np.array(series.watts, dtype=float)
    return domain_trace(t, power_csv.cumulative_trapezoid_j(t, w), w, False)


def _tick_s(t_s: np.ndarray, joules: np.ndarray, counter: bool) -> float | None:
    """A recorded counter's tick period: the median interval between its changes."""
    if not counter:
        return None
    changes = t_s[1:][np.diff(joules) != 0]
    period = tick_period_from_changes(changes * 1e9)
    return None if period is None else period
