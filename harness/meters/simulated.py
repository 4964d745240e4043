"""A deterministic power model for tests and CI: constant watts on one domain.

Its counter is exact (joules = watts x elapsed time), so any window energy the harness reports
can be checked by hand: E = watts x (t_end - t_start).
"""

from __future__ import annotations

from harness.meters.base import MeterSource, Reading


class SimulatedSource(MeterSource):
    name = "simulated"
    method = "energy-counter"
    provenance = "simulated"

    def __init__(self, watts: float, domain: str = "sim:0"):
        self.watts, self.domain = float(watts), domain
        self._t0_ns: int | None = None

    def default_hz(self) -> float:
        return 20.0

    def domains(self) -> list[str]:
        return [self.domain]

    def open(self, t_ns: int) -> None:
        self._t0_ns = t_ns

    def poll(self, t_ns: int) -> list[Reading]:
        assert self._t0_ns is not None, "open() first"
        return [Reading(self.domain, self.watts * (t_ns - self._t0_ns) / 1e9, self.watts)]

    def details(self) -> dict:
        return {"model": "constant", "watts": self.watts}
