"""What a power source must provide. Hardware lives behind `MeterSource`; fakes go here only.

A source reports, per domain, a cumulative energy in joules and (where it has one) the power
at the poll. Sources without a hardware counter integrate their own power samples and say so
in `method`, so every domain downstream looks like a counter and window energy is always a
difference of cumulative joules at the window edges. A hardware counter that updates in steps
says how often (`tick_period_s`), and its steps are placed where they happened
(harness/meters/counter.py).

Each source is polled by its own sampler thread at its own rate (`default_hz`, or the
meter.sample_hz override), so a slow wall meter never delays a GPU's reads. A poll returns a
`Reading` per healthy domain, stamped right after that domain's own read, and a `DomainFault`
for a domain that has failed for good; the others go on.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

METHODS = ("energy-counter", "power-sampling", "rapl", "wall-meter", "tdp-model", "replay")
PROVENANCES = ("measured", "estimated", "simulated")


@dataclass(frozen=True)
class Reading:
    domain: str
    joules: float  # cumulative since the source opened
    watts: float | None  # power at (or averaged up to) this poll, if the source has it
    t_ns: int | None = None  # when this domain was read (None: the poll's start)


@dataclass(frozen=True)
class DomainFault:
    """A domain that failed for good (after any retries): it is no longer polled."""

    domain: str
    cause: str


ROLES = ("device", "total")


# What a sampler thread may cost the host: 5% of one core per device it reads, at the default
# settings (README, Metering: "Sampling"). Over it, the result warns with the measured cost.
SAMPLER_CPU_BUDGET = 0.05


@dataclass
class SourceDescription:
    name: str
    method: str
    provenance: str
    domains: list[str]
    role: str = "device"  # "total": a wall meter whose reading is the whole system's
    details: dict[str, Any] = field(default_factory=dict)
    sample_hz: float = 10.0  # the rate its sampler ran at
    counter_tick_s: dict[str, float] = field(default_factory=dict)  # ticking domains' periods
    # readings skipped or retried, by kind; the sampler's reads a second and CPU time
    quality: dict[str, float] = field(default_factory=dict)


class MeterSource(ABC):
    """One physical power source (a GPU's NVML handle, a RAPL zone, a wall meter...)."""

    name: str = "source"
    method: str = "power-sampling"
    provenance: str = "measured"
    role: str = "device"  # "total" for a meter at the plug: device meters are then its breakdown
    clock: Callable[[], int] = staticmethod(time.monotonic_ns)  # the meter sets its own clock

    def covers(self) -> set[str]:
        """The physical things this source measures (e.g. a GPU's UUID, "cpu", "node").

        The composite meter refuses two device-role sources that cover the same thing, which is
        how one physical device is never counted twice even when two sources name it differently.
        """
        return {f"{self.name}:{d}" for d in self.domains()}

    @abstractmethod
    def domains(self) -> list[str]: ...

    def open(self, t_ns: int) -> None:  # noqa: B027 - optional hook, most sources need no set-up
        """Called once before the first poll, with the clock's time."""

    @abstractmethod
    def poll(self, t_ns: int) -> list[Reading | DomainFault]:
        """Read every domain now. Raising fails the whole source (after transient retries)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the hardware."""

    def prepare_timed_run(self) -> None:  # noqa: B027 - optional hook
        """Called once after warm-up, before run_start: a wall analyzer fixes its ranges here."""

    def default_hz(self) -> float:
        """The poll rate this source wants when meter.sample_hz is not set."""
        return 10.0

    def schedules_reads(self) -> bool:
        """Whether the source times its own reads (next_poll_ns, poll_due) instead of being
        polled at a fixed rate: a counter locked to its ticks."""
        return False

    def next_poll_ns(self, now_ns: int) -> int:
        """When the source next wants reading (sources that schedule their reads)."""
        return now_ns + int(1e9 / self.default_hz())

    def poll_due(self, t_ns: int) -> list[Reading | DomainFault]:
        """Read what is due now (a scheduling source); the rest wait for their time."""
        return self.poll(t_ns)

    def tick_period_s(self) -> dict[str, float]:
        """Domains whose counter advances in steps, with the step period (seconds)."""
        return {}

    def is_transient(self, exc: Exception) -> bool:
        """Whether a failed poll is worth retrying (a busy bus, a momentary NotSupported)."""
        return False

    def quality(self) -> dict[str, float]:
        """Counts of readings skipped or retried (zero power, counter regressions, retries),
        and `reads` (hardware reads so far) where the source counts them."""
        return {}

    def describe(self, sample_hz: float | None = None) -> SourceDescription:
        return SourceDescription(
            self.name,
            self.method,
            self.provenance,
            self.domains(),
            self.role,
            self.details(),
            sample_hz if sample_hz is not None else self.default_hz(),
            dict(self.tick_period_s()),
            dict(self.quality()),
        )

    def details(self) -> dict[str, Any]:
        return {}


class PowerIntegrator:
    """Cumulative joules from power samples by the trapezoid rule, for sources with no counter."""

    def __init__(self) -> None:
        self.joules = 0.0
        self._last: tuple[int, float] | None = None

    def add(self, t_ns: int, watts: float) -> float:
        if self._last is not None:
            t0, w0 = self._last
            self.joules += 0.5 * (w0 + watts) * max(0, t_ns - t0) / 1e9
        self._last = (t_ns, watts)
        return self.joules
