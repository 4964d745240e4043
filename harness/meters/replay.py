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

import csv
from pathlib import Path

import numpy as np

from harness.errors import MeterError
from harness.meters.base import MeterSource, Reading
from harness.meters.counter import poll_hz_for_tick, tick_period_from_changes


def read_trace(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """domain -> (t_s from the domain's first sample, watts, cumulative joules, is a counter)."""
    rows: dict[str, list[tuple[int, float, float | None]]] = {}
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                joules = float(row["joules"]) if row.get("joules") not in (None, "") else None
                watts = float(row["watts"]) if row.get("watts") not in (None, "") else float("nan")
                rows.setdefault(row["domain"], []).append((int(row["t_ns"]), watts, joules))
    except (OSError, KeyError, ValueError) as exc:
        raise MeterError(
            f"cannot replay {path}: {exc}.", "give a power.csv written by joulebench."
        ) from exc
    out = {}
    for domain, samples in rows.items():
        if len(samples) < 2:
            continue
        t = np.array([s[0] for s in samples], dtype=np.float64)
        w = np.array([s[1] for s in samples])
        counter = all(s[2] is not None for s in samples)
        if counter:
            j = np.array([s[2] for s in samples])
        else:
            ok = ~np.isnan(w)
            j = np.concatenate(
                [[0.0], np.cumsum(0.5 * (w[ok][1:] + w[ok][:-1]) * np.diff(t[ok]) / 1e9)]
            )
            t, w = t[ok], w[ok]
        out[domain] = ((t - t[0]) / 1e9, w, j - j[0], counter)
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


def _tick_s(t_s: np.ndarray, joules: np.ndarray, counter: bool) -> float | None:
    """A recorded counter's tick period: the median interval between its changes."""
    if not counter:
        return None
    changes = t_s[1:][np.diff(joules) != 0]
    period = tick_period_from_changes(changes * 1e9)
    return None if period is None else period
