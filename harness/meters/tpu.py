"""Cloud TPU energy, estimated: chips x average power per chip x time (x duty cycle if known).

Cloud TPUs expose no energy counter to the VM. The per-chip figures are averages under
training load, each with its source; generations without a published figure need the user's
own (`meter.tpu.watts_per_chip`). Labelled `estimated`: never accepted in a closed division.
"""

from __future__ import annotations

from harness.errors import MeterError
from harness.meters.base import MeterSource, Reading

# generation -> (average watts per chip, source)
TPU_AVERAGE_POWER_W = {
    "v2": (
        221.0,
        "Patterson et al. 2021, Carbon Emissions and Large Neural Network Training, Table 3",
    ),
    "v3": (
        283.0,
        "Patterson et al. 2021, Carbon Emissions and Large Neural Network Training, Table 3",
    ),
}


def generation(device_kind: str) -> str:
    """'TPU v3' -> 'v3', 'TPU v5 lite' -> 'v5 lite'."""
    return device_kind.lower().replace("tpu", "").strip()


class TpuSource(MeterSource):
    name = "tpu"
    method = "tdp-model"
    provenance = "estimated"

    def __init__(
        self,
        device_kind: str,
        chips: int,
        watts_per_chip: float | None = None,
        duty_cycle: float | None = None,
    ):
        gen = generation(device_kind)
        if watts_per_chip is None:
            if gen not in TPU_AVERAGE_POWER_W:
                raise MeterError(
                    f"no cited average power for {device_kind} chips.",
                    "set meter.tpu.watts_per_chip to a figure you can cite.",
                )
            watts_per_chip, self.source = TPU_AVERAGE_POWER_W[gen]
        else:
            self.source = "user-supplied meter.tpu.watts_per_chip"
        if duty_cycle is not None and not 0 < duty_cycle <= 1:
            raise MeterError(
                f"meter.tpu.duty_cycle={duty_cycle} must be in (0, 1].",
                "give a fraction, e.g. 0.9.",
            )
        self.device_kind, self.chips = device_kind, chips
        self.watts_per_chip, self.duty_cycle = float(watts_per_chip), duty_cycle
        self._t0: int | None = None

    def default_hz(self) -> float:
        return 2.0

    def domains(self) -> list[str]:
        return [f"tpu:0-{self.chips - 1}"]

    def covers(self) -> set[str]:
        return {f"tpu:{i}" for i in range(self.chips)}

    def open(self, t_ns: int) -> None:
        self._t0 = t_ns

    def poll(self, t_ns: int) -> list[Reading]:
        watts = self.chips * self.watts_per_chip * (self.duty_cycle or 1.0)
        return [Reading(self.domains()[0], watts * (t_ns - self._t0) / 1e9, watts)]

    def details(self) -> dict:
        return {
            "device_kind": self.device_kind,
            "chips": self.chips,
            "watts_per_chip": self.watts_per_chip,
            "watts_source": self.source,
            "duty_cycle": self.duty_cycle,
        }
