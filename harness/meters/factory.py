"""Build the run's meter from `meter` config. `source=auto` takes the best source available.

Preference order for auto: measured hardware counters first (NVML, RAPL, wall meters: the
metering issue adds them here), then the estimated CPU model. The simulated source is for
tests and CI and is never picked automatically.
"""

from __future__ import annotations

from harness.errors import ConfigError, MeterError
from harness.meters.base import MeterSource
from harness.meters.meter import Meter

SOURCES = ("auto", "simulated", "cpu-model")


def _cpu_model(meter_cfg) -> MeterSource:
    from harness.meters.cpu_model import CpuModelSource

    ok, why = CpuModelSource.available()
    if not ok:
        raise MeterError(
            f"the cpu-model meter is unavailable: {why}.", "install psutil or pick meter=simulated."
        )
    return CpuModelSource(meter_cfg.cpu.tdp_w)


def _simulated(meter_cfg) -> MeterSource:
    from harness.meters.simulated import SimulatedSource

    return SimulatedSource(meter_cfg.watts, meter_cfg.domain)


def _auto(meter_cfg) -> list[MeterSource]:
    from harness.meters.cpu_model import CpuModelSource

    candidates = [("cpu-model", CpuModelSource.available, _cpu_model)]
    reasons = []
    for name, available, build in candidates:
        ok, why = available()
        if ok:
            return [build(meter_cfg)]
        reasons.append(f"{name}: {why}")
    raise MeterError(
        "no power source is available on this machine (" + "; ".join(reasons) + ").",
        "use meter=simulated for a dry run, or install the package a source needs.",
    )


def build_sources(meter_cfg) -> list[MeterSource]:
    if meter_cfg.source == "auto":
        return _auto(meter_cfg)
    if meter_cfg.source == "simulated":
        return [_simulated(meter_cfg)]
    if meter_cfg.source == "cpu-model":
        return [_cpu_model(meter_cfg)]
    raise ConfigError(
        f"meter.source={meter_cfg.source} is not a meter source.",
        f"use one of: {', '.join(SOURCES)} (or meter=<name>).",
    )


def build_meter(meter_cfg) -> Meter:
    return Meter(build_sources(meter_cfg), meter_cfg.sample_hz)
