"""The composite meter: sources, a background sampler, the streamed trace, and edge interpolation.

The training thread never waits on hardware: it only notes timestamps at window edges. A
background thread polls every source at `sample_hz`, appends each reading to `power.csv`
(flushed per poll, so a crash loses at most one poll) and to per-domain counter series.
Window energy is the cumulative counter interpolated linearly at the edge timestamps and
differenced (DESIGN.md, "Meter"); a final poll at stop() brackets the last edge.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from harness.errors import MeterError
from harness.meters.base import MeterSource, SourceDescription
from harness.meters.view import DomainSeries, MeterView, total_domains_of
from harness.meters.view import Fault as MeterFault

TRACE_HEADER = "t_ns,domain,watts,joules\n"


class _Series:
    """Cumulative joules and watts of one domain, in poll order."""

    def __init__(self) -> None:
        self.t_ns: list[int] = []
        self.joules: list[float] = []
        self.watts: list[float] = []
        self._cache: tuple[int, DomainSeries] | None = None

    def arrays(self) -> DomainSeries:
        """The polls as arrays, rebuilt only when polls were added since the last call."""
        n = min(len(self.t_ns), len(self.joules), len(self.watts))  # the sampler may be mid-append
        if self._cache is None or self._cache[0] != n:
            self._cache = (
                n,
                DomainSeries(
                    np.asarray(self.t_ns[:n], dtype=np.int64),
                    np.asarray(self.joules[:n], dtype=float),
                    np.asarray(self.watts[:n], dtype=float),
                ),
            )
        return self._cache[1]


class Meter:
    def __init__(
        self,
        sources: list[MeterSource],
        sample_hz: float,
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        self._check_no_double_counting(sources)
        self.sources = list(sources)
        self.sample_hz = sample_hz
        self.clock = clock
        self.faults: list[MeterFault] = []
        self.series = {domain: _Series() for s in sources for domain in s.domains()}
        self.idle_power_w: dict[str, float] = {}
        self._active = list(sources)
        self._trace = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _check_no_double_counting(sources: list[MeterSource]) -> None:
        """One domain name from one source; one physical device from one device-role source."""
        domains: dict[str, str] = {}
        covered: dict[str, str] = {}
        for source in sources:
            for domain in source.domains():
                if domain in domains:
                    raise MeterError(
                        f"domain {domain} is reported by both {domains[domain]} and {source.name}; "
                        "counting it twice would double its energy.",
                        "drop one of the two sources from meter.source.",
                    )
                domains[domain] = source.name
            if source.role != "device":
                continue
            for thing in source.covers():
                if thing in covered:
                    raise MeterError(
                        f"{covered[thing]} and {source.name} both measure {thing}; "
                        "its energy would be counted twice.",
                        "keep one of them in meter.source.",
                    )
                covered[thing] = source.name
        if sum(s.role == "total" for s in sources) > 1:
            raise MeterError(
                "more than one wall meter: each measures the whole node.",
                "keep one wall meter in meter.source.",
            )

    @property
    def total_domains(self) -> list[str]:
        """The domains whose sum is the system's energy: the wall meter's when there is one,
        else every device domain (then device meters are the whole account)."""
        return total_domains_of([(s.role, s.domains()) for s in self.sources])

    def measure_idle(self, seconds: float) -> dict[str, float]:
        """Average power per domain over `seconds` of doing nothing (the sampler keeps running)."""
        self.poll()  # brackets t0
        t0 = self.clock()
        time.sleep(seconds)
        t1 = self.clock()
        self.poll()  # brackets t1
        energy = self.energy_between(t0, t1)
        self.idle_power_w = {d: e / ((t1 - t0) / 1e9) for d, e in energy.items()}
        return self.idle_power_w

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, trace_path: Path) -> None:
        self._trace = open(trace_path, "w", buffering=1 << 16, encoding="ascii")  # noqa: SIM115
        self._trace.write(TRACE_HEADER)
        now = self.clock()
        for source in self.sources:
            source.open(now)
        self.poll()
        self._thread = threading.Thread(target=self._run, name="joulebench-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        if self._trace is None:
            return
        self.poll()  # brackets the last window edge
        for source in self.sources:
            try:
                source.close()
            except Exception as exc:  # noqa: BLE001 - closing must not lose the measurements
                if source in self._active:  # a source that already failed may well fail to close
                    self.faults.append(
                        MeterFault(self.clock(), source.name, f"close failed: {exc}")
                    )
        self._trace.close()
        self._trace = None

    def release(self) -> None:
        """Close the sources of a meter that never started (a run that failed in set-up), so
        NVML is shut down and sockets are closed."""
        for source in self.sources:
            with contextlib.suppress(Exception):
                source.close()

    def _run(self) -> None:
        period = 1.0 / self.sample_hz
        next_t = time.monotonic() + period
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            self.poll()
            next_t = max(next_t + period, time.monotonic())

    def poll(self) -> None:
        """Read every active source once, append to the series and stream to the trace."""
        with self._lock:
            rows = []
            for source in list(self._active):
                t_ns = self.clock()
                try:
                    readings = source.poll(t_ns)
                except Exception as exc:  # noqa: BLE001 - a failing meter must not kill the run
                    self.faults.append(
                        MeterFault(t_ns, source.name, f"{type(exc).__name__}: {exc}")
                    )
                    self._active.remove(source)
                    continue
                for r in readings:
                    s = self.series[r.domain]
                    s.t_ns.append(t_ns)
                    s.joules.append(r.joules)
                    s.watts.append(r.watts if r.watts is not None else float("nan"))
                    watts = "" if r.watts is None else f"{r.watts:.4f}"
                    rows.append(f"{t_ns},{r.domain},{watts},{r.joules:.6f}\n")
            if self._trace is not None and rows:
                self._trace.write("".join(rows))
                self._trace.flush()

    # -- queries ---------------------------------------------------------------------------
    def view(self) -> MeterView:
        """What the meter has recorded so far, as arrays (cheap: cached per domain)."""
        return MeterView(
            series={d: s.arrays() for d, s in self.series.items()},
            sources=self.describe(),
            total_domains=self.total_domains,
            faults=list(self.faults),
            idle_power_w=dict(self.idle_power_w),
            sample_hz=self.sample_hz,
        )

    def energy_at(self, t_ns: int) -> dict[str, float]:
        """Cumulative joules per domain at t_ns, linearly interpolated between polls."""
        return self.view().energy_at(t_ns)

    def energy_between(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        e0, e1 = self.energy_at(t0_ns), self.energy_at(t1_ns)
        return {d: e1[d] - e0[d] for d in e1}

    def latest_joules(self) -> float:
        """System joules at the last poll (total domains only: a wall meter's breakdown is not
        added to it)."""
        series = [self.series[d] for d in self.total_domains]
        return sum(s.joules[-1] for s in series if s.joules)

    def latest_watts(self) -> float:
        series = [self.series[d] for d in self.total_domains]
        return sum(s.watts[-1] for s in series if s.watts and s.watts[-1] == s.watts[-1])

    def power_peak_w(self, t0_ns: int, t1_ns: int) -> float | None:
        return self.view().power_peak_w(t0_ns, t1_ns)

    def describe(self) -> list[tuple[SourceDescription, float | None]]:
        """Each source with its measured sample rate (polls per second over the trace)."""
        out = []
        for source in self.sources:
            rates = []
            for domain in source.domains():
                t = self.series[domain].t_ns
                if len(t) > 1 and t[-1] > t[0]:
                    rates.append((len(t) - 1) / ((t[-1] - t[0]) / 1e9))
            out.append((source.describe(), min(rates) if rates else None))
        return out
