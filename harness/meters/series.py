"""One domain's rows in memory, as the meter keeps them (the trace on disk keeps every row).

A ticking counter's series keeps only the rows that carry information: each poll that saw a new
value and the last poll before it that saw the old one (the tick's bracket), plus a row every
KEEP_S while the value stands still, so gaps stay short. A continuous domain keeps every row.
"""

from __future__ import annotations

import threading
from array import array

import numpy as np

from harness.meters.view import DomainSeries

KEEP_S = 0.25  # a standing counter still gets a row this often


class Series:
    """One domain's retained polls, in time order, in compact arrays (8 bytes a value)."""

    def __init__(self) -> None:
        self.ticking = False
        self._t, self._j, self._w = array("q"), array("d"), array("d")
        self._pending: tuple[int, float, float] | None = None  # a repeat, kept if a tick follows
        self._last_t: int | None = None
        self.last_change_ns: int | None = None  # latest poll that saw a new counter value
        self._lock = threading.Lock()

    def add(self, t_ns: int, joules: float, watts: float | None) -> list[tuple[int, float, float]]:
        """Record a poll; returns the rows to stream (none for a repeat that may be thinned)."""
        w = float("nan") if watts is None else float(watts)
        with self._lock:
            if self._last_t is not None and t_ns <= self._last_t:
                t_ns = self._last_t + 1  # strictly increasing per domain, whatever stamped it
            self._last_t = t_ns
            repeat = self.ticking and len(self._j) > 0 and joules == self._j[-1]
            if repeat and t_ns - self._t[-1] < KEEP_S * 1e9:
                self._pending = (t_ns, joules, w)
                return []
            rows = []
            if self._pending is not None and not repeat:
                rows.append(self._pending)
            if self.ticking and len(self._j) > 0 and not repeat:
                self.last_change_ns = t_ns
            rows.append((t_ns, joules, w))
            self._pending = None
            for t, j, ww in rows:
                self._t.append(t)
                self._j.append(j)
                self._w.append(ww)
            return rows

    def flush(self) -> list[tuple[int, float, float]]:
        """Commit the pending repeat (at stop: the last poll bounds the trace)."""
        with self._lock:
            if self._pending is None:
                return []
            row, self._pending = self._pending, None
            self._t.append(row[0])
            self._j.append(row[1])
            self._w.append(row[2])
            return [row]

    def committed(self) -> int:
        return len(self._t)

    def snapshot(self, start: int = 0) -> tuple[DomainSeries, tuple[int, float, float] | None]:
        """Committed rows from `start` as arrays, and the pending repeat (the latest poll)."""
        with self._lock:
            n = len(self._t)
            series = DomainSeries(
                np.frombuffer(self._t, dtype=np.int64, count=n)[start:].copy(),
                np.frombuffer(self._j, dtype=np.float64, count=n)[start:].copy(),
                np.frombuffer(self._w, dtype=np.float64, count=n)[start:].copy(),
            )
            return series, self._pending

    def arrays(self) -> DomainSeries:
        """Every retained poll, the pending one last."""
        series, pending = self.snapshot()
        return series.appended(pending)

    def last(self) -> tuple[float, float] | None:
        """(joules, watts) at the latest poll."""
        with self._lock:
            if self._pending is not None:
                return self._pending[1], self._pending[2]
            if not self._t:
                return None
            return self._j[-1], self._w[-1]
