"""NVIDIA GPUs through NVML (package nvidia-ml-py, imported as pynvml).

Per GPU, the total-energy counter (nvmlDeviceGetTotalEnergyConsumption, mJ since the driver
loaded) is the measurement: it advances about every 100 ms on an H100, and window energy is
its difference interpolated at the window edges. Instant power (NVML_FI_DEV_POWER_INSTANT)
is sampled for the trace; nvmlDeviceGetPowerUsage is a 1 s average on Hopper and integrating
it under-reads bursts (about 5% on an 8 s matmul burst, measured on an H100), so it is only a
last resort. A GPU without the counter falls back to integrating instant power, and the
source then says `power-sampling`.

Which GPUs: the ones the workload uses (as CUDA-visible indices), mapped through
CUDA_VISIBLE_DEVICES to NVML devices; indices in CUDA_VISIBLE_DEVICES are read as NVML
(PCI bus) order, so set CUDA_DEVICE_ORDER=PCI_BUS_ID when you use them, or give UUIDs.
"""

from __future__ import annotations

import os
from typing import Any

from harness.errors import MeterError
from harness.meters.base import MeterSource, PowerIntegrator, Reading


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_pynvml():
    try:
        import pynvml
    except ImportError as exc:
        raise MeterError(
            "NVML is unavailable: the nvidia-ml-py package is not installed.",
            'pip install -e ".[nvml]" (or pip install nvidia-ml-py).',
        ) from exc
    return pynvml


def available(nvml=None) -> tuple[bool, str]:
    try:
        nvml = nvml or load_pynvml()
        nvml.nvmlInit()
        try:
            count = nvml.nvmlDeviceGetCount()
        finally:
            nvml.nvmlShutdown()
    except MeterError as exc:
        return False, exc.problem
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return False, f"NVML does not initialise ({exc}): no NVIDIA driver here"
    if count == 0:
        return False, "NVML finds no GPU"
    return True, f"NVML sees {count} GPU(s)"


def _visible_handles(nvml, cuda_indices: list[int] | None) -> list:
    """NVML handles of the CUDA-visible GPUs the workload uses (all visible ones by default)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip() == "":
        raise MeterError(
            "CUDA_VISIBLE_DEVICES is empty: this process sees no GPU.", "unset it or list GPUs."
        )
    entries = (
        [e.strip() for e in env.split(",")]
        if env
        else [str(i) for i in range(nvml.nvmlDeviceGetCount())]
    )
    chosen = (
        entries if cuda_indices is None else [entries[i] for i in cuda_indices if i < len(entries)]
    )
    handles = []
    for entry in chosen:
        if entry.startswith("MIG-"):
            raise MeterError(
                f"GPU {entry} is a MIG instance; NVML has no energy counter per MIG slice.",
                "meter the whole GPU, or use meter=cpu-model for an estimate.",
            )
        if entry.startswith("GPU-"):
            handles.append(nvml.nvmlDeviceGetHandleByUUID(entry))
        else:
            handles.append(nvml.nvmlDeviceGetHandleByIndex(int(entry)))
    return handles


class _Gpu:
    """One GPU's counter state: reset-safe cumulative joules, or integrated power without a counter."""

    def __init__(self, nvml, handle):
        self.nvml, self.handle = nvml, handle
        self.index = nvml.nvmlDeviceGetIndex(handle)
        self.domain = f"gpu:{self.index}"
        self.uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        self.name = _text(nvml.nvmlDeviceGetName(handle))
        self.has_counter = True
        self.resets = 0
        self._first_mj: int | None = None
        self._last_mj: int | None = None
        self._offset_j = 0.0
        self._integrator = PowerIntegrator()

    def probe_counter(self) -> None:
        try:
            self._first_mj = self._last_mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(
                self.handle
            )
        except self.nvml.NVMLError_NotSupported:
            self.has_counter = False

    def power_w(self) -> float:
        nvml = self.nvml
        field = nvml.nvmlDeviceGetFieldValues(self.handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
        if field.nvmlReturn == nvml.NVML_SUCCESS:
            return field.value.uiVal / 1000.0
        return nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0  # a 1 s average on Hopper

    def read(self, t_ns: int) -> Reading:
        watts = self.power_w()
        if not self.has_counter:
            return Reading(self.domain, self._integrator.add(t_ns, watts), watts)
        mj = self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        if mj < self._last_mj:  # the counter restarted (driver reload or reset): keep what we had
            self.resets += 1
            self._offset_j += (self._last_mj - self._first_mj) / 1000.0
            self._first_mj = 0
        self._last_mj = mj
        return Reading(self.domain, self._offset_j + (mj - self._first_mj) / 1000.0, watts)


class NvmlSource(MeterSource):
    name = "nvml"
    method = "energy-counter"
    provenance = "measured"

    def __init__(self, cuda_indices: list[int] | None = None, nvml=None):
        self.nvml = nvml or load_pynvml()
        try:
            self.nvml.nvmlInit()
            self.gpus = [_Gpu(self.nvml, h) for h in _visible_handles(self.nvml, cuda_indices)]
        except self.nvml.NVMLError as exc:
            raise MeterError(
                f"NVML failed while opening the GPUs: {exc}.",
                "check nvidia-smi works here, or pick another meter.",
            ) from exc
        if not self.gpus:
            raise MeterError(
                "NVML found none of the workload's GPUs.", "check CUDA_VISIBLE_DEVICES."
            )
        self.driver = _text(self.nvml.nvmlSystemGetDriverVersion())
        self._start: dict[str, dict] = {}
        self._end: dict[str, dict] = {}

    def domains(self) -> list[str]:
        return [g.domain for g in self.gpus]

    def covers(self) -> set[str]:
        return {f"gpu:{g.uuid}" for g in self.gpus}

    def _snapshot(self, gpu: _Gpu) -> dict:
        nvml = self.nvml
        return {
            "temperature_c": nvml.nvmlDeviceGetTemperature(gpu.handle, nvml.NVML_TEMPERATURE_GPU),
            "power_limit_w": nvml.nvmlDeviceGetEnforcedPowerLimit(gpu.handle) / 1000.0,
        }

    def open(self, t_ns: int) -> None:
        for gpu in self.gpus:
            gpu.probe_counter()
            self._start[gpu.domain] = self._snapshot(gpu)
        if not all(g.has_counter for g in self.gpus):
            self.method = "power-sampling"

    def poll(self, t_ns: int) -> list[Reading]:
        return [gpu.read(t_ns) for gpu in self.gpus]

    def close(self) -> None:
        try:
            for gpu in self.gpus:
                self._end[gpu.domain] = self._snapshot(gpu)
        finally:
            self.nvml.nvmlShutdown()

    def details(self) -> dict:
        return {
            "driver": self.driver,
            "gpus": [
                {
                    "domain": g.domain,
                    "index": g.index,
                    "uuid": g.uuid,
                    "name": g.name,
                    "energy_counter": g.has_counter,
                    "counter_resets": g.resets,
                    "at_start": self._start.get(g.domain),
                    "at_end": self._end.get(g.domain),
                }
                for g in self.gpus
            ],
        }
