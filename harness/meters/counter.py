"""Cumulative counters that tick: where each new value happened, and the energy curve through them.

A hardware energy counter does not count continuously. NVML's total-energy counter on an H100
advances about every 100 ms; RAPL's about every millisecond. Between ticks a poll reads the old
value again, so a raw poll series is a staircase seen through the poll grid, and interpolating
linearly between raw polls puts each step where the poll happened to land, up to a whole poll
period late. With a tick period just off the poll grid that aliasing reads ~1 s windows 3% off
on median and 7% at p95 (the staircase experiment in scripts/tick_experiment.py).

The model here: the counter's k-th new value E_k is the energy up to the moment tau_k it ticked.
A poll that sees a new value brackets tau_k between the last poll that saw the old value and
itself, and the tick period bounds it from below too (the counter shows its latest tick, which
is at most one period old):

    tau_k in ( max(t_old, t_new - tick), t_new ]      estimate: the bracket's midpoint

Energy at any time is then the linear interpolation through (tau_k, E_k): exact at constant
power up to the placement error, which is at most half the bracket, so at most half the poll
period (5 ms at 100 Hz: 0.35 J at 700 W, 0.5% of a 1 s window per edge). Where power varies
between two ticks the interpolation can be off by at most the energy of one tick.

The same functions serve the runner (from the live meter) and the validator (from power.csv),
so both compute the same joules from the same rows, in one vectorised pass per domain.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

# Counters that are detected as ticking this much faster than polls are treated as continuous.
MIN_TICKS_FOR_DETECTION = 3


def tick_points(
    t_ns: np.ndarray, joules: np.ndarray, tick_s: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(times in ns as float64, cumulative joules) through which energy is interpolated.

    `tick_s` None: the domain is continuous (an integral of power, an exact model), and every
    poll is a point. Otherwise repeated values are dropped and each new value is placed at the
    midpoint of its tick bracket. The first poll stays a point (its tick is before it, unknown);
    after the last tick the curve is flat, so an edge needs a later tick to be bracketed, which
    is why the meter waits for one after the last edge (Meter.settle).
    """
    t = np.asarray(t_ns, dtype=np.float64)
    j = np.asarray(joules, dtype=np.float64)
    if tick_s is None or t.size < 2:
        return t, j
    changed = np.flatnonzero(j[1:] != j[:-1]) + 1
    lower = np.maximum(t[changed - 1], t[changed] - tick_s * 1e9)
    tau = 0.5 * (lower + t[changed])
    return np.concatenate([t[:1], tau]), np.concatenate([j[:1], j[changed]])


def bracket_widths_s(t_ns: np.ndarray, joules: np.ndarray, tick_s: float | None) -> np.ndarray:
    """Width of each tick's bracket in seconds (twice the most its placement can be off)."""
    t = np.asarray(t_ns, dtype=np.float64)
    j = np.asarray(joules, dtype=np.float64)
    if tick_s is None or t.size < 2:
        return np.zeros(0)
    changed = np.flatnonzero(j[1:] != j[:-1]) + 1
    lower = np.maximum(t[changed - 1], t[changed] - tick_s * 1e9)
    return (t[changed] - lower) / 1e9


class EnergyCurve:
    """Per-domain cumulative energy, queried at many times in one interpolation per domain."""

    def __init__(self, points: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.points = points

    @classmethod
    def from_polls(
        cls,
        polls: dict[str, tuple[np.ndarray, np.ndarray]],
        tick_s: dict[str, float],
    ) -> EnergyCurve:
        """From each domain's (poll times, joules) and the tick periods of the ticking ones."""
        return cls(
            {d: tick_points(t, j, tick_s.get(d)) for d, (t, j) in polls.items() if len(t) > 0}
        )

    def energy_at(self, t_ns):
        """Cumulative joules per domain at `t_ns` (a number, or an array of times at once)."""
        x = np.asarray(t_ns, dtype=np.float64)
        out = {d: np.interp(x, t, j) for d, (t, j) in self.points.items()}
        if x.ndim == 0:
            return {d: float(v) for d, v in out.items()}
        return out


def detect_tick_period(
    read: Callable[[], float],
    clock: Callable[[], int] = time.monotonic_ns,
    duration_s: float = 0.5,
    pause_s: float = 0.0005,
) -> float | None:
    """A counter's update period, found as Zeus does (zeus/monitor/power.py): read it as fast as
    possible for a while and time its changes. The median interval between changes is the
    period (Zeus takes the minimum, which one late read can halve); None when it changed fewer
    than MIN_TICKS_FOR_DETECTION times (a counter slower than `duration_s`, or a static one)."""
    changes: list[int] = []
    last = read()
    deadline = clock() + int(duration_s * 1e9)
    while clock() < deadline:
        value = read()
        if value != last:
            changes.append(clock())
            last = value
        time.sleep(pause_s)
    if len(changes) < MIN_TICKS_FOR_DETECTION:
        return None
    return float(np.median(np.diff(changes))) / 1e9


def poll_hz_for_tick(
    tick_s: float, polls_per_tick: float = 10.0, lo: float = 20.0, hi: float = 100.0
):
    """The default poll rate for a ticking counter: `polls_per_tick` polls per tick, so a tick's
    bracket (and twice its placement error) is a tenth of a tick, within [lo, hi] Hz. For an
    H100's ~100 ms tick that is 100 Hz: a 10 ms bracket, at most 5 ms off per window edge."""
    return float(min(hi, max(lo, polls_per_tick / tick_s)))


def power_integral_j(t_ns: np.ndarray, watts: np.ndarray, t0_ns: int, t1_ns: int) -> float | None:
    """Trapezoid integral of sampled power over [t0, t1], the edges interpolated; NaN samples
    (polls without a power reading) are left out. None with fewer than two samples. The
    independent cross-check of a counter: both measure the same energy."""
    t = np.asarray(t_ns, dtype=np.float64)
    w = np.asarray(watts, dtype=np.float64)
    ok = ~np.isnan(w)
    t, w = t[ok], w[ok]
    if t.size < 2:
        return None
    inside = (t > t0_ns) & (t < t1_ns)
    ts = np.concatenate([[t0_ns], t[inside], [t1_ns]])
    ws = np.interp(ts, t, w)
    return float(np.sum(0.5 * (ws[1:] + ws[:-1]) * np.diff(ts)) / 1e9)
