"""The composite meter: sources, one sampler thread each, the streamed trace, and the energy curve.

The training thread never waits on hardware: it only notes timestamps at window edges. Each
source has its own sampler thread polling at its own rate (a slow wall meter or ipmitool
never delays NVML), appending every reading to `power.csv` (flushed per poll, so a crash loses
at most one poll) and to per-domain series.

A ticking counter's series keeps only the rows that carry information: each poll that saw a
new value, and the last poll before it that saw the old one (the tick's bracket), plus a row
every KEEP_S (harness/meters/series.py) while the value stands still, so gaps stay short. Window energy is the counter
interpolated through its ticks at the edge timestamps (harness/meters/counter.py); stop()
waits for one more tick after the last edge so that edge is bracketed too.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import MeterError
from harness.meters.base import DomainFault, MeterSource, SourceDescription
from harness.meters.series import Series as _Series
from harness.meters.view import Fault as MeterFault
from harness.meters.view import MeterView, ViewDelta
from harness.results import power_csv
from harness.results.run_dir import total_domains_of

TRANSIENT_RETRIES = 3  # consecutive transient failures of a source before it is a fault


class Meter:
    def __init__(
        self,
        sources: list[MeterSource],
        sample_hz: float | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ):
        self._check_no_double_counting(sources)
        self.sources = list(sources)
        self.sample_hz = sample_hz  # None: each source at its own default rate
        self.clock = clock
        for source in self.sources:
            source.clock = clock
        self.faults: list[MeterFault] = []
        self.warnings: list[str] = []
        self.series = {domain: _Series() for s in sources for domain in s.domains()}
        self.idle_power_w: dict[str, float] = {}
        self._failed: set[int] = set()  # ids of sources that failed as a whole
        self._dead: set[str] = set()  # domains that failed
        self._errors = {id(s): 0 for s in sources}  # consecutive transient failures
        self._polls = {id(s): [0, None, None] for s in sources}  # count, first, last poll time
        self._sampler_cpu_ns = {id(s): 0 for s in sources}  # each sampler thread's CPU time
        self._source_locks = {id(s): threading.Lock() for s in sources}
        self._trace = None
        self._trace_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

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

    def rate_hz(self, source: MeterSource) -> float:
        return self.sample_hz if self.sample_hz is not None else source.default_hz()

    def measure_idle(self, seconds: float) -> dict[str, float]:
        """Average power per domain over `seconds` of doing nothing (the samplers keep running);
        both ends are bracketed by a counter tick."""
        self.settle(self.clock())
        self.poll()  # a continuous domain's point just before t0
        t0 = self.clock()
        time.sleep(seconds)
        t1 = self.clock()
        self.poll()  # ... and just after t1
        self.settle(t1)
        energy = self.energy_between(t0, t1)
        self.idle_power_w = {d: e / ((t1 - t0) / 1e9) for d, e in energy.items()}
        return self.idle_power_w

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, trace_path: Path) -> None:
        self._trace = open(trace_path, "w", buffering=1 << 16, encoding="ascii")  # noqa: SIM115
        self._trace.write(power_csv.HEADER)
        now = self.clock()
        for source in self.sources:
            source.open(now)
            for domain in source.tick_period_s():
                self.series[domain].ticking = True
        self.poll()
        for source in self.sources:
            thread = threading.Thread(
                target=self._run, args=(source,), name=f"joulebench-{source.name}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def prepare_timed_run(self) -> None:
        """After warm-up, before run_start: sources that must settle first (a wall analyzer
        fixing its ranges) do so now. A failure here is a fault of that source."""
        for source in self.sources:
            if id(source) in self._failed:
                continue
            try:
                with self._source_locks[id(source)]:
                    source.prepare_timed_run()
            except Exception as exc:  # noqa: BLE001 - a failing meter must not kill the run
                self._fail_source(source, self.clock(), f"{type(exc).__name__}: {exc}")

    def settle(self, after_ns: int) -> bool:
        """Wait until every live ticking counter has ticked after `after_ns`, so an edge there
        is bracketed: polling those sources fast meanwhile, for three tick periods (at least
        0.5 s, at most 2 s). Says so in the warnings when a counter did not tick in time."""
        ticking = [s for s in self.sources if s.tick_period_s() and id(s) not in self._failed]
        if not ticking or self._trace is None:
            return True
        periods = [p for s in ticking for p in s.tick_period_s().values()]
        deadline = time.monotonic() + min(2.0, max(0.5, 3 * max(periods)))
        while True:
            late = [
                d
                for s in ticking
                for d in s.tick_period_s()
                if d not in self._dead
                and (
                    self.series[d].last_change_ns is None
                    or self.series[d].last_change_ns <= after_ns
                )
            ]
            if not late:
                return True
            if time.monotonic() > deadline:
                self.warnings.append(
                    f"{', '.join(late)}: no counter tick after the last edge; up to one tick of "
                    "energy before it is missing."
                )
                return False
            for source in ticking:
                self._poll_source(source)
            time.sleep(0.002)

    def stop(self) -> None:
        if self._trace is not None:
            self.settle(self.clock())  # brackets the last window edge
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []
        if self._trace is None:
            return
        self.poll()  # the trace reaches past the last edge
        for domain, series in self.series.items():
            self._write(domain, series.flush())
        for source in self.sources:
            try:
                source.close()
            except Exception as exc:  # noqa: BLE001 - closing must not lose the measurements
                if id(source) not in self._failed:  # a source that failed may well fail to close
                    self.faults.append(
                        MeterFault(self.clock(), source.name, f"close failed: {exc}")
                    )
        with self._trace_lock:
            self._trace.close()
            self._trace = None

    def release(self) -> None:
        """Close the sources of a meter that never started (a run that failed in set-up), so
        NVML is shut down and sockets are closed."""
        for source in self.sources:
            with contextlib.suppress(Exception):
                source.close()

    def timed_by_source(self, source: MeterSource) -> bool:
        """A source that times its own reads does so unless meter.sample_hz fixes a rate."""
        return self.sample_hz is None and source.schedules_reads()

    def _run(self, source: MeterSource) -> None:
        key, cpu0 = id(source), time.thread_time_ns()
        try:
            if self.timed_by_source(source):
                self._run_scheduled(source)
            else:
                self._run_fixed(source)
        finally:
            self._sampler_cpu_ns[key] = time.thread_time_ns() - cpu0

    def _run_fixed(self, source: MeterSource) -> None:
        period = 1.0 / self.rate_hz(source)
        next_t = time.monotonic() + period
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            if id(source) in self._failed:
                return
            self._poll_source(source)
            next_t = max(next_t + period, time.monotonic())

    def _run_scheduled(self, source: MeterSource) -> None:
        while True:
            with self._source_locks[id(source)]:
                wait_ns = source.next_poll_ns(self.clock()) - self.clock()
            if self._stop.wait(max(0.0, wait_ns / 1e9)) or id(source) in self._failed:
                return
            self._poll_source(source, due_only=True)

    def poll(self) -> None:
        """Read every live source once (what each sampler thread does at its own rate)."""
        for source in self.sources:
            self._poll_source(source)

    def _poll_source(self, source: MeterSource, due_only: bool = False) -> None:
        key = id(source)
        with self._source_locks[key]:
            if key in self._failed:
                return
            t_ns = self.clock()
            try:
                readings = source.poll_due(t_ns) if due_only else source.poll(t_ns)
            except Exception as exc:  # noqa: BLE001 - a failing meter must not kill the run
                if source.is_transient(exc) and self._errors[key] < TRANSIENT_RETRIES:
                    self._errors[key] += 1
                    return
                self._fail_source(source, t_ns, f"{type(exc).__name__}: {exc}")
                return
            self._errors[key] = 0
            count = self._polls[key]
            count[0] += 1
            count[1] = t_ns if count[1] is None else count[1]
            count[2] = t_ns
            for r in readings:
                if isinstance(r, DomainFault):
                    if r.domain not in self._dead:
                        self._dead.add(r.domain)
                        self.faults.append(MeterFault(t_ns, source.name, f"{r.domain}: {r.cause}"))
                    continue
                if r.domain in self._dead:
                    continue
                stamp = r.t_ns if r.t_ns is not None else t_ns
                self._write(r.domain, self.series[r.domain].add(stamp, r.joules, r.watts))

    def _fail_source(self, source: MeterSource, t_ns: int, cause: str) -> None:
        self._failed.add(id(source))
        self._dead.update(source.domains())
        self.faults.append(MeterFault(t_ns, source.name, cause))

    def _write(self, domain: str, rows: list[tuple[int, float, float]]) -> None:
        if not rows:
            return
        text = "".join(power_csv.row(t, domain, w, j) for t, j, w in rows)
        with self._trace_lock:
            if self._trace is not None:
                self._trace.write(text)
                self._trace.flush()

    # -- queries ---------------------------------------------------------------------------
    def view(self) -> MeterView:
        """What the meter has recorded so far, as arrays."""
        return MeterView(
            series={d: s.arrays() for d, s in self.series.items()},
            sources=self.describe(),
            total_domains=self.total_domains,
            faults=list(self.faults),
            idle_power_w=dict(self.idle_power_w),
            warnings=list(self.warnings),
        )

    def export(self, cursors: dict[str, int]) -> tuple[ViewDelta, dict[str, int]]:
        """What was recorded since `cursors` (committed rows per domain), and the new cursors:
        a rank sends only this to rank 0 at each provisional result."""
        series, moved = {}, {}
        for domain, s in self.series.items():
            start = cursors.get(domain, 0)
            rows, pending = s.snapshot(start)
            series[domain] = (rows, pending)
            moved[domain] = start + rows.t_ns.size
        delta = ViewDelta(
            series,
            self.describe(),
            self.total_domains,
            list(self.faults),
            dict(self.idle_power_w),
            list(self.warnings),
        )
        return delta, moved

    def energy_at(self, t_ns):
        """Cumulative joules per domain at t_ns (a time or an array of times)."""
        return self.view().energy_at(t_ns)

    def energy_between(self, t0_ns: int, t1_ns: int) -> dict[str, float]:
        return self.view().energy_between(t0_ns, t1_ns)

    def latest_joules(self) -> float:
        """System joules at the last poll (total domains only: a wall meter's breakdown is not
        added to it)."""
        lasts = [self.series[d].last() for d in self.total_domains]
        return sum(last[0] for last in lasts if last is not None)

    def latest_watts(self) -> float:
        lasts = [self.series[d].last() for d in self.total_domains]
        return sum(last[1] for last in lasts if last is not None and last[1] == last[1])

    def power_peak_w(self, t0_ns: int, t1_ns: int) -> float | None:
        return self.view().power_peak_w(t0_ns, t1_ns)

    def describe(self) -> list[tuple[SourceDescription, float | None]]:
        """Each source with its measured poll rate (polls per second while it ran), and in
        its quality the sampler's cost: hardware reads a second, and the sampler thread's
        CPU time in all and as a fraction of one core (once its thread has ended)."""
        out = []
        for source in self.sources:
            count, first, last = self._polls[id(source)]
            span_s = (last - first) / 1e9 if count > 1 and last > first else None
            rate = (count - 1) / span_s if span_s else None
            desc = source.describe(self.rate_hz(source))
            reads = desc.quality.get("reads", count)
            if span_s:
                desc.quality["reads_per_s"] = round(reads / span_s, 3)
            cpu_s = self._sampler_cpu_ns[id(source)] / 1e9
            if cpu_s > 0 and span_s:
                desc.quality["sampler_cpu_s"] = round(cpu_s, 4)
                desc.quality["sampler_cpu_core_fraction"] = round(cpu_s / span_s, 5)
            out.append((desc, rate))
        return out
