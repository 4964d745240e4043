"""One NVIDIA GPU as the NVML source reads it: its fields, how NVML's errors read, and its
settings disclosed read-only. The counter's state (reset-safe, tick placed, read around its
ticks, its own errors and skips) is the vendor-neutral CounterDevice's
(harness/meters/counter_device.py). NvmlSource (harness/meters/nvml.py) owns the list of them."""

from __future__ import annotations

import time
from typing import Any

from harness.errors import MeterError
from harness.meters.counter_device import (
    CounterDevice,
    CounterReadFailed,
    CounterUnsupported,
    Sample,
)

ASSUMED_TICK_S = 0.1  # when detection sees too few ticks: the Hopper/Ampere period


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_COMPUTE_MODES = {0: "default", 1: "exclusive-thread", 2: "prohibited", 3: "exclusive-process"}


def gpu_state(nvml, handle) -> dict[str, Any]:
    """What a GPU's settings and clocks are now, read only (joulebench never sets them). A
    query the GPU or driver refuses is null, never a failure: this is disclosure."""

    def ask(fn, *args, then=lambda v: v):
        try:
            return then(fn(handle, *args))
        except Exception:  # noqa: BLE001 - NVMLError_NotSupported, NoPermission, a fake's gap
            return None

    return {
        "temperature_c": ask(nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU),
        "power_limit_w": ask(nvml.nvmlDeviceGetEnforcedPowerLimit, then=lambda mw: mw / 1000.0),
        "default_power_limit_w": ask(
            nvml.nvmlDeviceGetPowerManagementDefaultLimit, then=lambda mw: mw / 1000.0
        ),
        "sm_clock_mhz": ask(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM),
        "mem_clock_mhz": ask(nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM),
        "max_sm_clock_mhz": ask(nvml.nvmlDeviceGetMaxClockInfo, nvml.NVML_CLOCK_SM),
        "max_mem_clock_mhz": ask(nvml.nvmlDeviceGetMaxClockInfo, nvml.NVML_CLOCK_MEM),
        "performance_state": ask(nvml.nvmlDeviceGetPerformanceState, then=lambda p: f"P{p}"),
        "persistence_mode": ask(
            nvml.nvmlDeviceGetPersistenceMode, then=lambda m: "on" if m else "off"
        ),
        "compute_mode": ask(
            nvml.nvmlDeviceGetComputeMode, then=lambda m: _COMPUTE_MODES.get(m, str(m))
        ),
        "ecc": ask(nvml.nvmlDeviceGetEccMode, then=lambda modes: "on" if modes[0] else "off"),
        "clocks_event_reasons": ask(
            nvml.nvmlDeviceGetCurrentClocksEventReasons, then=lambda bits: f"0x{bits:x}"
        ),
    }


class NvmlGpu(CounterDevice):
    """One GPU: its fields, and how NVML's errors read; the counter logic is CounterDevice's."""

    joules_per_unit = 1e-3  # NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION is in mJ
    assumed_tick_s = ASSUMED_TICK_S

    def __init__(self, nvml, handle, allow_mig: bool):
        self.nvml, self.handle = nvml, handle
        self.vendor_errors = (nvml.NVMLError,)
        self.index = nvml.nvmlDeviceGetIndex(handle)
        super().__init__(f"gpu:{self.index}")
        self.uuid = text(nvml.nvmlDeviceGetUUID(handle))
        self.name = text(nvml.nvmlDeviceGetName(handle))
        self.mig = self._mig_on()
        if self.mig and not allow_mig:
            raise MeterError(
                f"GPU {self.index} ({self.uuid}) is in MIG mode: its energy counter covers every "
                "slice, not only this workload's.",
                "meter a GPU without MIG, or set meter.nvml.allow_mig=true to record the whole "
                "GPU's energy, labelled as such.",
            )
        self.scope = self._power_scope()

    @property
    def _first_mj(self):
        return self._first_raw

    @property
    def _last_mj(self):
        return self._last_raw

    def _mig_on(self) -> bool:
        try:
            current, _pending = self.nvml.nvmlDeviceGetMigMode(self.handle)
        except self.nvml.NVMLError:  # NotSupported: a GPU without MIG
            return False
        return current == self.nvml.NVML_DEVICE_MIG_ENABLE

    def _power_scope(self) -> int:
        """GPU scope where offered; module scope on Grace Hopper (as zeus/device/gpu/nvidia.py)."""
        nvml = self.nvml
        for scope in (nvml.NVML_POWER_SCOPE_GPU, nvml.NVML_POWER_SCOPE_MODULE):
            field = nvml.nvmlDeviceGetFieldValues(
                self.handle, [(nvml.NVML_FI_DEV_POWER_INSTANT, scope)]
            )[0]
            if field.nvmlReturn == nvml.NVML_SUCCESS:
                return scope
        return nvml.NVML_POWER_SCOPE_GPU

    @property
    def module_scope(self) -> bool:
        return self.scope == self.nvml.NVML_POWER_SCOPE_MODULE

    def fields(self):
        nvml = self.nvml
        return nvml.nvmlDeviceGetFieldValues(
            self.handle,
            [
                (nvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, 0),
                (nvml.NVML_FI_DEV_POWER_INSTANT, self.scope),
            ],
        )

    def first_counter(self) -> int:
        energy = self.fields()[0]
        if energy.nvmlReturn == self.nvml.NVML_ERROR_NOT_SUPPORTED:
            raise CounterUnsupported
        if energy.nvmlReturn != self.nvml.NVML_SUCCESS:
            raise CounterReadFailed(
                f"its energy field returned {self.nvml.NVMLError(energy.nvmlReturn)}"
            )
        return energy.value.ullVal

    def open_error(self, exc: BaseException) -> str:
        return f"nvmlDeviceGetFieldValues failed: {exc}"

    def is_transient(self, exc: BaseException) -> bool:
        nvml = self.nvml
        return isinstance(
            exc, (nvml.NVMLError_NotSupported, nvml.NVMLError_Unknown, nvml.NVMLError_Timeout)
        )

    def _watts(self, field) -> float | None:
        if field.nvmlReturn != self.nvml.NVML_SUCCESS:
            return self.classify_watts(None, failed=True)
        return self.classify_watts(field.value.uiVal / 1000.0)

    def sample(self, clock) -> Sample:
        nvml = self.nvml
        before = clock()
        energy, power = self.fields()
        after = clock()
        watts = self._watts(power)
        if not self.has_counter:
            return Sample(None, watts, after)
        if energy.nvmlReturn != nvml.NVML_SUCCESS:
            return Sample(None, watts, after, str(nvml.NVMLError(energy.nvmlReturn)))
        return Sample(energy.value.ullVal, watts, self._stamp(energy.timestamp, before, after))

    @staticmethod
    def _stamp(timestamp_us: int, before: int, after: int) -> int:
        """NVML's timestamp (CPU wall clock, microseconds) on the meter's clock, clamped to
        the call: the value was read during it."""
        if timestamp_us <= 0:
            return after
        age_ns = time.time_ns() - timestamp_us * 1000
        return min(after, max(before, after - age_ns))
