"""One NVIDIA GPU as the NVML source reads it: its fields, its counter's state (reset-safe, tick
placed, read around its ticks), its own errors and skips, and its settings disclosed read-only.
NvmlSource (harness/meters/nvml.py) owns the list of them."""

from __future__ import annotations

import time
from typing import Any

from harness.errors import MeterError
from harness.meters.base import DomainFault, PowerIntegrator, Reading
from harness.meters.counter import TickLock, detect_tick_period

ASSUMED_TICK_S = 0.1  # when detection sees too few ticks: the Hopper/Ampere period
RETRIES = 3  # consecutive transient failures of one GPU before it is a fault
RESET_AFTER = 5  # consecutive readings below the last one before it counts as a counter reset
PROBE_TRIES = 5  # reads of a failing energy field at open before that GPU is a fault


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


class NvmlGpu:
    """One GPU: its fields, counter state (reset-safe), and its own error and skip counts."""

    def __init__(self, nvml, handle, allow_mig: bool):
        self.nvml, self.handle = nvml, handle
        self.index = nvml.nvmlDeviceGetIndex(handle)
        self.domain = f"gpu:{self.index}"
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
        self.has_counter = True
        self.tick_s: float | None = None
        self.tick_detected = False
        self.counts = dict.fromkeys(
            (
                "zero_power_skipped",
                "power_read_failed",
                "counter_regressions_skipped",
                "transient_retries",
                "counter_resets",
            ),
            0,
        )
        self.failed = False
        self.open_fault: str | None = None  # the counter failed at open: a fault at first poll
        self.lock: TickLock | None = None  # reads timed around the counter's ticks
        self.reads = 0
        self._first_mj: int | None = None
        self._last_mj: int | None = None
        self._offset_j = 0.0
        self._below = 0  # consecutive readings below the last one
        self._errors = 0  # consecutive transient errors
        self._integrator = PowerIntegrator()

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

    def _energy_mj(self) -> int | None:
        """One read of the counter alone (tick detection): mJ, or None when it failed."""
        try:
            energy = self.fields()[0]
        except self.nvml.NVMLError:
            return None
        return energy.value.ullVal if energy.nvmlReturn == self.nvml.NVML_SUCCESS else None

    def probe(self, tick_s: float | None, tick_lock: bool = False) -> None:
        """At open: has it a counter (NotSupported: no, it samples power); its first value; its
        tick period (given, or detected). Any other per-field error is retried; one that
        persists makes this GPU a fault, never a counter of zero."""
        nvml, cause = self.nvml, None
        for attempt in range(PROBE_TRIES):
            try:
                energy = self.fields()[0]
            except nvml.NVMLError as exc:
                cause = f"nvmlDeviceGetFieldValues failed: {exc}"
            else:
                if energy.nvmlReturn == nvml.NVML_ERROR_NOT_SUPPORTED:
                    self.has_counter = False
                    return
                if energy.nvmlReturn == nvml.NVML_SUCCESS:
                    break
                cause = f"its energy field returned {nvml.NVMLError(energy.nvmlReturn)}"
            if attempt + 1 < PROBE_TRIES:
                time.sleep(0.02)
        else:
            self.open_fault = f"{cause} ({PROBE_TRIES} reads at open)"
            return
        self._first_mj = self._last_mj = energy.value.ullVal
        if tick_s is not None:
            self.tick_s = tick_s
        else:
            detected = detect_tick_period(self._energy_mj)
            self.tick_detected = detected is not None
            self.tick_s = detected or ASSUMED_TICK_S
        if tick_lock:
            self.lock = TickLock(self.tick_s)

    def _transient(self, cause: str) -> DomainFault | None:
        self._errors += 1
        self.counts["transient_retries"] += 1
        if self._errors > RETRIES:
            self.failed = True
            return DomainFault(self.domain, f"{cause} ({RETRIES} retries)")
        return None

    def _watts(self, field) -> float | None:
        if field.nvmlReturn != self.nvml.NVML_SUCCESS:
            self.counts["power_read_failed"] += 1
            return None
        if field.value.uiVal == 0:
            self.counts["zero_power_skipped"] += 1
            return None
        return field.value.uiVal / 1000.0

    def _joules(self, mj: int) -> float | None:
        """Cumulative joules from a counter value; None for a reading to skip."""
        if mj < self._last_mj:
            self._below += 1
            if self._below < RESET_AFTER:  # a glitch: skip it, keep the last good value
                self.counts["counter_regressions_skipped"] += 1
                return None
            # it stayed lower: the counter restarted (driver reload, GPU reset); keep what we had
            self.counts["counter_resets"] += 1
            self._offset_j += (self._last_mj - self._first_mj) / 1000.0
            self._first_mj = mj
        self._below = 0
        self._last_mj = mj
        return self._offset_j + (mj - self._first_mj) / 1000.0

    def read(self, clock) -> Reading | DomainFault | None:
        nvml = self.nvml
        if self.open_fault is not None:
            self.failed = True
            return DomainFault(self.domain, self.open_fault)
        before = clock()
        self.reads += 1
        try:
            energy, power = self.fields()
        except nvml.NVMLError as exc:
            if self.lock is not None:
                self.lock.observe(clock(), None)
            if isinstance(
                exc, (nvml.NVMLError_NotSupported, nvml.NVMLError_Unknown, nvml.NVMLError_Timeout)
            ):
                return self._transient(str(exc))
            self.failed = True
            return DomainFault(self.domain, str(exc))
        after = clock()
        watts = self._watts(power)
        if not self.has_counter:
            self._errors = 0
            if watts is None:
                return None
            return Reading(self.domain, self._integrator.add(after, watts), watts, after)
        if energy.nvmlReturn != nvml.NVML_SUCCESS:
            if self.lock is not None:
                self.lock.observe(after, None)
            return self._transient(str(nvml.NVMLError(energy.nvmlReturn)))
        self._errors = 0
        stamp = self._stamp(energy.timestamp, before, after)
        joules = self._joules(energy.value.ullVal)
        if self.lock is not None:  # a skipped glitch is no tick: the lock sees the last value
            self.lock.observe(stamp, self._last_mj)
        if joules is None:
            return None
        return Reading(self.domain, joules, watts, stamp)

    @staticmethod
    def _stamp(timestamp_us: int, before: int, after: int) -> int:
        """NVML's timestamp (CPU wall clock, microseconds) on the meter's clock, clamped to
        the call: the value was read during it."""
        if timestamp_us <= 0:
            return after
        age_ns = time.time_ns() - timestamp_us * 1000
        return min(after, max(before, after - age_ns))
