"""What a power source must provide. Hardware lives behind `MeterSource`; fakes go here only.

A source reports, per domain, a cumulative energy in joules and (where it has one) the power
at the poll. Sources without a hardware counter integrate their own power samples and say so
in `method`, so every domain downstream looks like a counter and window energy is always a
difference of cumulative joules at the window edges.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

METHODS = ("energy-counter", "power-sampling", "rapl", "wall-meter", "tdp-model", "replay")
PROVENANCES = ("measured", "estimated", "simulated")


@dataclass(frozen=True)
class Reading:
    domain: str
    joules: float  # cumulative since the source opened
    watts: float | None  # power at (or averaged up to) this poll, if the source has it


ROLES = ("device", "total")


@dataclass
class SourceDescription:
    name: str
    method: str
    provenance: str
    domains: list[str]
    role: str = "device"  # "total": a wall meter whose reading is the whole system's
    details: dict[str, Any] = field(default_factory=dict)


class MeterSource(ABC):
    """One physical power source (a GPU's NVML handle, a RAPL zone, a wall meter...)."""

    name: str = "source"
    method: str = "power-sampling"
    provenance: str = "measured"
    role: str = "device"  # "total" for a meter at the plug: device meters are then its breakdown

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
    def poll(self, t_ns: int) -> list[Reading]:
        """Read every domain now. May raise; the sampler records the fault and stops polling it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the hardware."""

    def describe(self) -> SourceDescription:
        return SourceDescription(
            self.name, self.method, self.provenance, self.domains(), self.role, self.details()
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
