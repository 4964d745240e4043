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

import math
import time
from collections.abc import Callable

import numpy as np

# Fewer changes than this in the detection window: no period (the counter is static or slow).
MIN_TICKS_FOR_DETECTION = 3


# How much one tick-to-tick interval of a counter may differ from its period, as a fraction.
# A counter is updated by the driver's or firmware's fixed-rate loop (NVML: every ~100 ms, an
# interval that differs by board, 93-100 ms, but stays put on one board), so the interval
# between neighbouring ticks is the period to within this. Used only to narrow a tick's
# bracket by its neighbours'; the bracket itself is never left.
TICK_INTERVAL_TOLERANCE = 0.02


def _brackets(
    t: np.ndarray, j: np.ndarray, tick_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each new value's index and the bracket (lower, upper] in ns its tick lies in, narrowed
    by its neighbours.

    The poll bracket: between the last poll that saw the old value and the first that saw the
    new, and at most one period before that (the counter shows its latest tick). Then, as
    ticks come one period apart, a tick n periods after a neighbour lies within n periods (give
    or take TICK_INTERVAL_TOLERANCE each) of that neighbour's bracket: a wide bracket next to a
    tight one (a read the host delayed past the tick it was to precede) is narrowed to the
    tight one's shadow. Only the original brackets of the two neighbours are used, and a
    narrowing that would empty a bracket (an irregular counter) is not applied."""
    period = tick_s * 1e9
    changed = np.flatnonzero(j[1:] != j[:-1]) + 1
    upper = t[changed]
    lower = np.maximum(t[changed - 1], upper - period)
    lo, hi = lower.copy(), upper.copy()
    if changed.size >= 2:
        mid = 0.5 * (lower + upper)
        n = np.maximum(np.round((mid[1:] - mid[:-1]) / period), 1.0)  # periods between them
        slack = n * period * TICK_INTERVAL_TOLERANCE
        # from the previous tick (for ticks 1..) and from the next one (for ticks ..-2)
        for k, (new_lo, new_hi) in (
            (slice(1, None), (lower[:-1] + n * period - slack, upper[:-1] + n * period + slack)),
            (slice(None, -1), (lower[1:] - n * period - slack, upper[1:] - n * period + slack)),
        ):
            cand_lo, cand_hi = np.maximum(lo[k], new_lo), np.minimum(hi[k], new_hi)
            ok = cand_lo <= cand_hi
            lo[k] = np.where(ok, cand_lo, lo[k])
            hi[k] = np.where(ok, cand_hi, hi[k])
    return changed, lo, hi


def tick_points(
    t_ns: np.ndarray, joules: np.ndarray, tick_s: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """(times in ns as float64, cumulative joules) through which energy is interpolated.

    `tick_s` None: the domain is continuous (an integral of power, an exact model), and every
    poll is a point. Otherwise repeated values are dropped and each new value is placed at the
    midpoint of its tick bracket (_brackets). The first poll stays a point (its tick is before
    it, unknown); after the last tick the curve is flat, so an edge needs a later tick to be
    bracketed, which is why the meter waits for one after the last edge (Meter.settle).
    """
    t = np.asarray(t_ns, dtype=np.float64)
    j = np.asarray(joules, dtype=np.float64)
    if tick_s is None or t.size < 2:
        return t, j
    changed, lower, upper = _brackets(t, j, tick_s)
    tau = 0.5 * (lower + upper)
    return np.concatenate([t[:1], tau]), np.concatenate([j[:1], j[changed]])


def bracket_widths_s(t_ns: np.ndarray, joules: np.ndarray, tick_s: float | None) -> np.ndarray:
    """Width of each tick's bracket in seconds (twice the most its placement can be off)."""
    t = np.asarray(t_ns, dtype=np.float64)
    j = np.asarray(joules, dtype=np.float64)
    if tick_s is None or t.size < 2:
        return np.zeros(0)
    _, lower, upper = _brackets(t, j, tick_s)
    return (upper - lower) / 1e9


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


def tick_period_from_changes(changes_ns: list[int] | np.ndarray) -> float | None:
    """The update period (s) from the times a counter was seen to change, robust to stalls.

    A read that stalls past a tick sees two ticks' worth at once, so its interval is about
    twice the period; a read late after one tick and on time after the next shortens one
    interval and lengthens the next. The median interval is the first estimate; intervals
    more than 30% away from it are dropped and the rest averaged. None with fewer than
    MIN_TICKS_FOR_DETECTION changes."""
    t = np.asarray(changes_ns, dtype=np.float64)
    if t.size < MIN_TICKS_FOR_DETECTION:
        return None
    gaps = np.diff(t)
    median = float(np.median(gaps))
    if median <= 0:
        return None
    kept = gaps[np.abs(gaps - median) <= 0.3 * median]
    return float(kept.mean()) / 1e9


def detect_tick_period(
    read: Callable[[], float | None],
    clock: Callable[[], int] = time.monotonic_ns,
    min_ticks: int = 12,
    max_duration_s: float = 1.5,
    pause_s: float = 0.0005,
) -> float | None:
    """A counter's update period, found as Zeus does (zeus/monitor/power.py) but from more
    ticks: read it as fast as possible until it has changed `min_ticks` times (at most
    `max_duration_s`) and time its changes (tick_period_from_changes, which a stalled read
    cannot fool the way Zeus's minimum or a median of four intervals can). `read` returns None
    for a failed read, which is skipped. None when the counter changed too rarely (a counter
    slower than the window, or a static one)."""
    changes: list[int] = []
    last = None
    deadline = clock() + int(max_duration_s * 1e9)
    while clock() < deadline and len(changes) < min_ticks + 1:
        value = read()
        if value is not None:
            if last is not None and value != last:
                changes.append(clock())
            last = value
        time.sleep(pause_s)
    return tick_period_from_changes(changes)


class TickLock:
    """When to read a ticking counter: just before and just after each tick it predicts.

    A counter that ticks every P seconds only needs reading around its ticks: a read shortly
    before the tick and one shortly after bracket it as tightly as a fast poll would, for two
    reads a tick instead of ten (an NVML read costs milliseconds of CPU: 100 polls a second is
    a third of a core per GPU). The lock starts searching (reads every `search_s`); once it has
    seen a tick in a bracket no wider than `lock_width_s`, it predicts the next one from the
    phase of the recent ticks (their bracket midpoints against the period, weighted by how
    tight each bracket was) and reads `before_s` ahead of it and `after_s` past it, then every
    `retry_s` until the tick shows (a late tick gets the tightest bracket of all). A tick that
    shows at the read before it (an early tick, or a read the host delayed past it) leaves a
    wide bracket: the lock searches again, and counts a relock; so does a tick a quarter
    period late. The period is re-estimated from the ticks it brackets, so it keeps checking
    the one detected at start.

    `observe` takes every read of the counter (scheduled or not); `next_read_ns` says when the
    next one is wanted. No hardware here: the NVML source and the staircase experiment
    (scripts/tick_experiment.py) drive the same code.
    """

    HISTORY = 16  # recent ticks kept for the phase and the period

    def __init__(
        self,
        tick_s: float,
        before_s: float = 0.004,
        after_s: float = 0.001,
        retry_s: float = 0.001,
        search_s: float = 0.01,
        lock_width_s: float = 0.012,
    ):
        self.period_ns = tick_s * 1e9
        self.before_ns, self.after_ns = before_s * 1e9, after_s * 1e9
        self.retry_ns, self.search_ns = retry_s * 1e9, search_s * 1e9
        self.lock_width_ns = lock_width_s * 1e9
        self.locked = False
        self.relocks = 0  # times a lock was lost to an early or missing tick
        self.reads = 0
        self._value = None
        self._last_read_ns: int | None = None
        self._ticks: list[tuple[float, float]] = []  # recent (midpoint, bracket width) in ns
        self._due_ns: float | None = None  # the predicted next tick
        self._next_ns: float | None = None

    @property
    def tick_s(self) -> float:
        return self.period_ns / 1e9

    def observe(self, t_ns: int, value) -> None:
        """A read at `t_ns` saw `value` (None: the read failed; the lock searches on)."""
        self.reads += 1
        if value is None:
            self._next_ns = t_ns + self.search_ns
            return
        changed = self._value is not None and value != self._value
        previous = self._last_read_ns
        self._value, self._last_read_ns = value, t_ns
        if changed:
            self._on_tick(previous, t_ns)
        if not self.locked:
            self._next_ns = t_ns + self.search_ns
        elif changed:
            self._due_ns = self._predict(t_ns)
            self._next_ns = self._due_ns - self.before_ns
        elif t_ns < self._due_ns - 0.5 * self.before_ns:
            self._next_ns = self._due_ns + self.after_ns
        elif t_ns < self._due_ns + 0.25 * self.period_ns:
            self._next_ns = t_ns + self.retry_ns
        else:  # no tick where one was due: the period or the phase moved
            self._unlock()
            self._next_ns = t_ns + self.search_ns

    def _on_tick(self, lo_ns: int, hi_ns: int) -> None:
        lower = max(lo_ns, hi_ns - self.period_ns)  # the counter shows its latest tick only
        width = hi_ns - lower
        if width > self.lock_width_ns:
            if self.locked:  # the tick came before the read that should have preceded it
                self._unlock()
            self._ticks = []
            return
        self._ticks = [*self._ticks[-(self.HISTORY - 1) :], (0.5 * (lower + hi_ns), width)]
        self.locked = True

    def _fit(self) -> tuple[float, float]:
        """(phase, period) in ns: a least-squares line through the recent ticks' midpoints
        against their tick numbers, each weighted by 1/width^2 (a tight bracket counts more).
        The period comes from the line once it spans 8 ticks, else it is the one in use."""
        P = self.period_ns
        last = self._ticks[-1][0]
        mid = np.array([m - last for m, _ in self._ticks])
        n = np.round(mid / P)
        w = 1.0 / np.maximum([wd for _, wd in self._ticks], 1e5) ** 2
        if n.max() - n.min() >= 8:
            nm, mm = np.average(n, weights=w), np.average(mid, weights=w)
            slope = float(np.sum(w * (n - nm) * (mid - mm)) / np.sum(w * (n - nm) ** 2))
            if abs(slope - P) < 0.2 * P:
                return last + mm - slope * nm, slope
        return last + float(np.average(mid - n * P, weights=w)), P

    def _predict(self, now_ns: int) -> float:
        """The next tick after `now_ns` on the line through the recent ticks."""
        phase, self.period_ns = self._fit()
        return phase + self.period_ns * max(1, math.ceil((now_ns - phase) / self.period_ns))

    def _unlock(self) -> None:
        self.locked = False
        self.relocks += 1
        self._ticks = []

    def next_read_ns(self, now_ns: int) -> int:
        """When the next read is wanted (now, if it is overdue or nothing was read yet)."""
        if self._next_ns is None:
            return now_ns
        return int(max(now_ns, self._next_ns))


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
