"""Estimated host CPU power: TDP x utilisation (the CodeCarbon / Green Algorithms model).

psutil's system-wide utilisation since the previous poll is the interval's average, so the
interval's energy is TDP x average utilisation x interval length, accumulated as a counter.
It is an estimate: real CPU power is neither zero at idle nor linear in utilisation.
"""

from __future__ import annotations

from harness.meters.base import MeterSource, Reading


class CpuModelSource(MeterSource):
    name = "cpu-model"
    method = "tdp-model"
    provenance = "estimated"
    domain = "cpu:host"

    def __init__(self, tdp_w: float):
        import psutil

        self._psutil = psutil
        self.tdp_w = float(tdp_w)
        self._joules = 0.0
        self._last_ns: int | None = None

    @staticmethod
    def available() -> tuple[bool, str]:
        try:
            import psutil

            psutil.cpu_percent(interval=None)
        except Exception as exc:  # noqa: BLE001 - any failure means "not available", with the reason
            return False, f"psutil cannot read CPU utilisation ({exc})"
        return True, "psutil reads system-wide CPU utilisation"

    def domains(self) -> list[str]:
        return [self.domain]

    def covers(self) -> set[str]:
        return {"cpu"}  # the same CPUs RAPL's package zones measure

    def open(self, t_ns: int) -> None:
        self._psutil.cpu_percent(interval=None)  # starts psutil's utilisation interval
        self._last_ns = t_ns

    def poll(self, t_ns: int) -> list[Reading]:
        assert self._last_ns is not None, "open() first"
        watts = self.tdp_w * self._psutil.cpu_percent(interval=None) / 100.0
        self._joules += watts * max(0, t_ns - self._last_ns) / 1e9
        self._last_ns = t_ns
        return [Reading(self.domain, self._joules, watts)]

    def details(self) -> dict:
        return {
            "tdp_w": self.tdp_w,
            "utilisation": "system-wide, psutil.cpu_percent",
            "logical_cpus": self._psutil.cpu_count(logical=True),
        }
