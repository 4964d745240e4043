"""One device's cumulative energy counter, vendor-neutral: the logic every counter meter shares.

NVML, amdsmi, HLML, Intel hwmon and a Redfish BMC all hand out the same thing: a cumulative
counter in some unit, sometimes a power reading beside it, and their own errors. What to do
with that is the same for all of them and lives here, once:
- at open, a first value (retried; a counter that keeps failing is a fault at the first poll,
  never a counter of zero), the tick period (given, or detected by reading fast), and the
  trust check against the device's own power (harness/meters/trust.py);
- a counter below its last value is a glitch, skipped and counted, until it stays below for
  RESET_AFTER reads: then the counter restarted (driver reload, device reset) and the energy
  so far is kept;
- a frozen counter (no change for `freeze_after_s` while power says the device draws) is a
  fault, never silent zero energy;
- transient errors are retried RETRIES times before the device is a fault; one device failing
  never stops the others;
- reads may be timed to the counter's ticks (TickLock, harness/meters/counter.py);
- a device without a counter (or one the trust check rejected) integrates its power.

A vendor file supplies only a subclass with `first_counter()` and `sample()` (one read:
counter, power and time) and says which of its exceptions are transient (`vendor_errors`,
`is_transient`), plus a `CounterSource` subclass that enumerates and matches devices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.meters.base import DomainFault, MeterSource, PowerIntegrator, Reading
from harness.meters.counter import TickLock, detect_tick_period, poll_hz_for_tick

RETRIES = 3  # consecutive transient failures of one device before it is a fault
RESET_AFTER = 5  # consecutive readings below the last one before it counts as a counter reset
PROBE_TRIES = 5  # reads of a failing counter at open before that device is a fault
# A counter faster than this is polled at a fixed rate: locking reads to millisecond ticks
# would read it hundreds of times a second for nothing (TickLock is for ~100 ms ticks)
MIN_LOCK_TICK_S = 0.01


class CounterUnsupported(Exception):
    """The device has no energy counter (it will integrate its power)."""


class CounterReadFailed(Exception):
    """One read gave no counter value; the message says why (retried)."""


@dataclass(frozen=True)
class Sample:
    """One read of a device: the raw counter (None: no value this time, `counter_error` says
    why), its power in W (None: none this time) and when, on the meter's clock."""

    counter: int | float | None
    watts: float | None
    t_ns: int
    counter_error: str | None = None


def count_keys(*extra: str) -> dict[str, int]:
    base = (
        "zero_power_skipped",
        "power_read_failed",
        "counter_regressions_skipped",
        "transient_retries",
        "counter_resets",
    )
    return dict.fromkeys((*base, *extra), 0)


class CounterDevice:
    """One device's counter state. Subclasses read the hardware; this decides what it means."""

    joules_per_unit = 1e-3  # the raw counter's unit in joules (NVML and HLML: mJ)
    assumed_tick_s: float | None = 0.1  # when detection sees too few ticks (None: a fault)
    freeze_after_s: float | None = None  # a counter unchanged this long under power: a fault
    regression_is_fault = False  # a counter below its last value: a fault, not a glitch or reset
    vendor_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, domain: str):
        self.domain = domain
        self.has_counter = True
        self.tick_s: float | None = None
        self.tick_detected = False
        self.counts = count_keys()
        self.failed = False
        self.open_fault: str | None = None  # the counter failed at open: a fault at first poll
        self.lock: TickLock | None = None  # reads timed around the counter's ticks
        self.trust: dict | None = None  # the trust check's figures (harness/meters/trust.py)
        self.probe_rows: list[tuple[int, float, float]] = []  # detection reads, for the check
        self.reads = 0
        self._first_raw: int | float | None = None
        self._last_raw: int | float | None = None
        self._offset_j = 0.0
        self._below = 0  # consecutive readings below the last one
        self._errors = 0  # consecutive transient errors
        self._changed_ns: int | None = None  # when the counter last moved
        self._integrator = PowerIntegrator()

    # -- what a vendor supplies ------------------------------------------------------------
    def first_counter(self) -> int | float:
        """One read of the counter alone. Raises CounterUnsupported (no counter),
        CounterReadFailed, or one of `vendor_errors`."""
        raise NotImplementedError

    def sample(self, clock) -> Sample:
        """One full read: counter, power and the time it was taken. May raise vendor errors."""
        raise NotImplementedError

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a vendor error is worth retrying (busy, timeout, a momentary NotSupported)."""
        return False

    def open_error(self, exc: BaseException) -> str:
        """How a vendor error at open reads in the fault."""
        return str(exc)

    def refuse_first(self, raw) -> str | None:
        """Why the first value is no counter at all (a fault at the first poll), or None."""
        return None

    # -- shared logic ----------------------------------------------------------------------
    def counter_or_none(self):
        """The counter now, or None when this read failed (tick detection skips it)."""
        try:
            return self.first_counter()
        except (CounterUnsupported, CounterReadFailed, *self.vendor_errors):
            return None

    def probe(self, tick_s: float | None, tick_lock: bool = False, record: bool = False) -> None:
        """At open: has it a counter (CounterUnsupported: no, it samples power); its first
        value; its tick period (given, or detected). Any other error is retried; one that
        persists makes this device a fault, never a counter of zero. `record`: detection reads
        counter and power together and keeps them (`probe_rows`), so the trust check at open
        judges those reads instead of taking a span of its own."""
        cause = None
        for attempt in range(PROBE_TRIES):
            try:
                raw = self.first_counter()
            except CounterUnsupported:
                self.has_counter = False
                return
            except CounterReadFailed as exc:
                cause = str(exc)
            except self.vendor_errors as exc:
                cause = self.open_error(exc)
            else:
                break
            if attempt + 1 < PROBE_TRIES:
                time.sleep(0.02)
        else:
            self.open_fault = f"{cause} ({PROBE_TRIES} reads at open)"
            return
        self.open_fault = self.refuse_first(raw)
        if self.open_fault is not None:
            return
        self._first_raw = self._last_raw = raw
        if tick_s is not None:
            self.tick_s = tick_s
        else:
            detected = detect_tick_period(self._recorded_read if record else self.counter_or_none)
            self.tick_detected = detected is not None
            self.tick_s = detected or self.assumed_tick_s
            if self.tick_s is None:  # a period that is undocumented is never assumed
                self.open_fault = (
                    "its energy counter changed too rarely in 1.5 s of fast reads to find its "
                    "period (a frozen counter?); the period is undocumented, so none is assumed"
                )
                return
        if tick_lock and self.tick_s >= MIN_LOCK_TICK_S:
            self.lock = TickLock(self.tick_s)

    def _recorded_read(self):
        """One detection read of counter and power, kept for the trust check; the counts are
        left as they were (the reads at open are not part of the run)."""
        counts = dict(self.counts)
        try:
            s = self.sample(time.monotonic_ns)
        except self.vendor_errors:
            return None
        finally:
            self.counts = counts
        if s.counter is None:
            return None
        self.probe_rows.append((s.t_ns, s.counter, float("nan") if s.watts is None else s.watts))
        return s.counter

    def distrust(self) -> None:
        """The trust check rejected the counter: from now on this device integrates power."""
        self.has_counter = False
        self.lock = None

    def _transient(self, cause: str) -> DomainFault | None:
        self._errors += 1
        self.counts["transient_retries"] += 1
        if self._errors > RETRIES:
            self.failed = True
            return DomainFault(self.domain, f"{cause} ({RETRIES} retries)")
        return None

    def classify_watts(self, watts: float | None, failed: bool = False) -> float | None:
        """Counts a power read that failed or read 0 W (neither is a reading)."""
        if failed or watts is None:
            self.counts["power_read_failed"] += 1
            return None
        if watts == 0:
            self.counts["zero_power_skipped"] += 1
            return None
        return watts

    def _joules(self, raw) -> float | DomainFault | None:
        """Cumulative joules from a counter value; None for a reading to skip."""
        if raw < self._last_raw and self.regression_is_fault:
            self.failed = True
            return DomainFault(
                self.domain, f"its energy counter went backwards, from {self._last_raw} to {raw}"
            )
        if raw < self._last_raw:
            self._below += 1
            if self._below < RESET_AFTER:  # a glitch: skip it, keep the last good value
                self.counts["counter_regressions_skipped"] += 1
                return None
            # it stayed lower: the counter restarted (driver reload, reset); keep what we had
            self.counts["counter_resets"] += 1
            self._offset_j += (self._last_raw - self._first_raw) * self.joules_per_unit
            self._first_raw = raw
        self._below = 0
        self._last_raw = raw
        return self._offset_j + (raw - self._first_raw) * self.joules_per_unit

    def _frozen(self, raw, watts: float | None, t_ns: int) -> DomainFault | None:
        """A counter that stands still while the device draws power is broken (ROCm/amdsmi#38)."""
        if self._changed_ns is None or raw != self._last_raw:
            self._changed_ns = t_ns
            return None
        if self.freeze_after_s is None or not watts:
            return None
        if (t_ns - self._changed_ns) / 1e9 <= self.freeze_after_s:
            return None
        self.failed = True
        return DomainFault(
            self.domain,
            f"its energy counter stood at {raw} for {(t_ns - self._changed_ns) / 1e9:.1f} s "
            f"while it drew {watts:.0f} W: a frozen counter",
        )

    def read(self, clock) -> Reading | DomainFault | None:
        if self.open_fault is not None:
            self.failed = True
            return DomainFault(self.domain, self.open_fault)
        self.reads += 1
        try:
            s = self.sample(clock)
        except self.vendor_errors as exc:
            if self.lock is not None:
                self.lock.observe(clock(), None)
            if self.is_transient(exc):
                return self._transient(str(exc))
            self.failed = True
            return DomainFault(self.domain, str(exc))
        if not self.has_counter:
            self._errors = 0
            if s.watts is None:
                return None
            return Reading(self.domain, self._integrator.add(s.t_ns, s.watts), s.watts, s.t_ns)
        if s.counter is None:
            if self.lock is not None:
                self.lock.observe(s.t_ns, None)
            return self._transient(s.counter_error or "the counter gave no value")
        self._errors = 0
        frozen = self._frozen(s.counter, s.watts, s.t_ns)
        if frozen is not None:
            return frozen
        joules = self._joules(s.counter)
        if isinstance(joules, DomainFault):
            return joules
        if self.lock is not None:  # a skipped glitch is no tick: the lock sees the last value
            self.lock.observe(s.t_ns, self._last_raw)
        if joules is None:
            return None
        return Reading(self.domain, joules, s.watts, s.t_ns)

    def describe(self) -> dict:
        """What every counter device records in the result's details."""
        return {
            "domain": self.domain,
            "energy_counter": self.has_counter,
            "counter_tick_s": self.tick_s,
            "tick_detected": self.tick_detected,
            "reads_timed_to_ticks": self.lock is not None,
            "tick_s_refined": self.lock.tick_s if self.lock is not None else None,
            "trust": self.trust,
            **self.counts,
        }


class CounterSource(MeterSource):
    """A source of CounterDevices: polls each, locks reads to ticks, sums their quality."""

    method = "energy-counter"
    provenance = "measured"
    fixed_hz = 20.0  # the rate of a device without a counter (power sampling)
    devices: list[CounterDevice]

    def domains(self) -> list[str]:
        return [d.domain for d in self.devices]

    def tick_period_s(self) -> dict[str, float]:
        """Each counter's period: the detected one, refined by the tick lock's brackets."""
        out = {}
        for d in self.devices:
            if d.has_counter and d.tick_s:
                out[d.domain] = d.lock.tick_s if d.lock is not None else d.tick_s
        return out

    def default_hz(self) -> float:
        """Reads a second: two a tick when locked to the ticks, else ten a tick (20-100 Hz)."""
        ticks = self.tick_period_s().values()
        if not ticks:
            return self.fixed_hz
        if self.schedules_reads():
            return 2.0 / min(ticks)
        return poll_hz_for_tick(min(ticks))

    def schedules_reads(self) -> bool:
        return any(d.lock is not None for d in self.devices)

    def next_poll_ns(self, now_ns: int) -> int:
        """The earliest read any device wants: a locked one around its next tick, one without
        a counter (power sampling) at the fixed rate."""
        fixed = now_ns + int(1e9 / self.fixed_hz)
        wanted = [
            d.lock.next_read_ns(now_ns) if d.lock else fixed for d in self.devices if not d.failed
        ]
        return min(wanted) if wanted else fixed

    def poll(self, t_ns: int) -> list[Reading | DomainFault]:
        return self._read(t_ns, due_only=False)

    def poll_due(self, t_ns: int) -> list[Reading | DomainFault]:
        return self._read(t_ns, due_only=True)

    def _read(self, t_ns: int, due_only: bool) -> list[Reading | DomainFault]:
        out = []
        slack_ns = 200_000  # a read due within 0.2 ms is taken now
        for device in self.devices:
            if device.failed:
                continue
            lock = device.lock
            if due_only and lock is not None and lock.next_read_ns(t_ns) > t_ns + slack_ns:
                continue
            reading = device.read(self.clock)  # stamped right after this device's own read
            if reading is not None:
                out.append(reading)
        return out

    def quality(self) -> dict[str, int]:
        totals: dict[str, int] = {"reads": 0}
        for device in self.devices:
            totals["reads"] += device.reads
            for key, n in device.counts.items():
                totals[key] = totals.get(key, 0) + n
            if device.lock is not None:
                totals["tick_relocks"] = totals.get("tick_relocks", 0) + device.lock.relocks
        return totals
