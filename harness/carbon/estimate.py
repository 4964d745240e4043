"""Patterson et al. 2021's estimate for training that was never metered (section 2, Table 4):

    MWh   = hours x processors x average power per processor (W) x PUE / 1e6
    tCO2e = MWh x grid intensity (kgCO2e/kWh, which equals tCO2e/MWh)

When the run time is unknown it follows from the work done:
    hours = FLOPs / (processors x peak FLOP/s per processor x utilisation) / 3600
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Estimate:
    processors: int
    hours: float
    avg_power_w: float
    pue: float
    intensity_kg_per_kwh: float
    energy_mwh: float
    co2e_t: float

    def to_dict(self) -> dict:
        return asdict(self)


def hours_from_flops(
    flops: float, processors: int, peak_tflops: float, utilization: float
) -> float:
    return flops / (processors * peak_tflops * 1e12 * utilization) / 3600.0


def patterson_estimate(
    processors: int, hours: float, avg_power_w: float, pue: float, intensity_kg_per_kwh: float
) -> Estimate:
    energy_mwh = hours * processors * avg_power_w * pue / 1e6
    return Estimate(
        processors,
        hours,
        avg_power_w,
        pue,
        intensity_kg_per_kwh,
        energy_mwh,
        energy_mwh * intensity_kg_per_kwh,
    )
