"""A fake NVIDIA H200 for the CPU rehearsal of scripts/gpu_check.sh, at the hardware seam only.

It is tests/fakes.py's `fake_pynvml` (an autospec of the real pynvml module, real constants and
errors, field values in pynvml's own c_nvmlFieldValue_t) over one GPU whose power follows a
fixed curve of wall time, 150-500 W with a 7 s period, and whose total-energy counter is the
exact integral of that curve, updated every 100 ms as a Hopper counter is. Installed as
sys.modules["pynvml"], so the real NvmlSource, probe and scripts run against it.

JB_FAKE_NVML_FAULT breaks it for one step of the rehearsal (JB_STEP names the step running):
`<step>:<fault>[,<step>:<fault>...]` with fault one of
  hang          every NVML call after nvmlInit blocks (the step's timeout must end it)
  field_error   after 40 good reads, the energy field returns NVML_ERROR_UNKNOWN
  unknown_uuid  nvmlDeviceGetHandleByUUID finds no GPU, whatever the UUID
"""

from __future__ import annotations

import math
import os
import sys
import time

import pynvml

from tests.fakes import FakeGpuState, fake_pynvml

UUID = "GPU-5eab0a1e-0000-4000-8000-00000000c0de"  # what the rehearsal's "torch" reports
TICK_S = 0.1
IDLE_W, SWING_W, PERIOD_S = 150.0, 350.0, 7.0


def watts_at(t_s: float) -> float:
    return IDLE_W + SWING_W * (0.5 + 0.5 * math.sin(2 * math.pi * t_s / PERIOD_S))


def joules_at(t_s: float) -> float:
    """The integral of watts_at from 0 to t_s."""
    mean = IDLE_W + 0.5 * SWING_W
    wave = 0.5 * SWING_W * PERIOD_S / (2 * math.pi) * (1 - math.cos(2 * math.pi * t_s / PERIOD_S))
    return mean * t_s + wave


def _now_s() -> float:
    return time.time() % 86400.0  # a day's clock: counter values stay far from any overflow


def counter_mj() -> int:
    """The counter at its latest tick: the energy up to that tick, in mJ."""
    tick = math.floor(_now_s() / TICK_S) * TICK_S
    return 1_000_000_000 + int(joules_at(tick) * 1000)


def fault() -> str | None:
    step = os.environ.get("JB_STEP", "")
    for entry in os.environ.get("JB_FAKE_NVML_FAULT", "").split(","):
        name, _, kind = entry.partition(":")
        if name == step and kind:
            return kind
    return None


def build():
    gpu = FakeGpuState(UUID, counter_mj, name="NVIDIA H200")
    nvml = fake_pynvml([gpu])
    gpu.power = lambda: int(watts_at(_now_s()) * 1000)  # instant power at the read, mW
    nvml.nvmlSystemGetNVMLVersion.return_value = "13.580.159.04"
    nvml.nvmlDeviceGetMemoryInfo.return_value = type("Mem", (), {"total": 143771 * 2**20})()
    kind = fault()
    if kind == "hang":
        for name in ("nvmlDeviceGetCount", "nvmlDeviceGetFieldValues"):
            getattr(nvml, name).side_effect = lambda *a, **k: time.sleep(3600)
    elif kind == "field_error":
        gpu.energy_codes = [pynvml.NVML_SUCCESS] * 40 + [pynvml.NVML_ERROR_UNKNOWN] * 10**6
    elif kind == "unknown_uuid":

        def not_found(uuid):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

        nvml.nvmlDeviceGetHandleByUUID.side_effect = not_found
    return nvml


def install() -> None:
    sys.modules["pynvml"] = build()
