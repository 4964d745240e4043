"""NVIDIA GPUs through NVML (package nvidia-ml-py, imported as pynvml), as Zeus reads them.

Per GPU, the total-energy counter (NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, mJ since the driver
loaded) is the measurement. It advances in ticks, about every 100 ms on an H100: the period is
detected at open by reading it fast (harness/meters/counter.py), the default poll rate follows
from it (100 Hz for 100 ms ticks), and window energy is the counter interpolated through its
ticks. Energy and instant power (NVML_FI_DEV_POWER_INSTANT) come from one
nvmlDeviceGetFieldValues call, stamped with the timestamp NVML returns (clamped to the call's
span). nvmlDeviceGetPowerUsage is a 1 s average on Hopper and integrating it under-reads bursts,
so a GPU without the counter integrates instant power and the source says `power-sampling`.

Faults stay local: a failed power read leaves the counter going (the reading has no watts);
a transient error (NotSupported, Unknown, Timeout) is retried on the next polls before that GPU
is declared failed; one GPU failing never stops the others. 0 mW readings and counter values
below the last one are skipped and counted (`quality` in the result).

Which GPUs: the ones the workload uses, matched by UUID (torch gives each CUDA device's UUID),
never by index order; failing that, CUDA-visible indices through CUDA_VISIBLE_DEVICES. A GPU
in MIG mode has one counter for all its slices: refused unless meter.nvml.allow_mig is set,
then labelled. On Grace Hopper, where GPU-scope power is not offered, the module-scope reading
(Grace CPU + GPU + memory) is used and labelled as module power.
"""

from __future__ import annotations

import os

from harness.errors import MeterError
from harness.meters.counter_device import CounterSource
from harness.meters.nvml_gpu import NvmlGpu, gpu_state, text
from harness.meters.trust import TrustSettings, check_source


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


def _visible_entries(nvml) -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and env.strip() == "":
        raise MeterError(
            "CUDA_VISIBLE_DEVICES is empty: this process sees no GPU.", "unset it or list GPUs."
        )
    if env:
        return [e.strip() for e in env.split(",")]
    return [str(i) for i in range(nvml.nvmlDeviceGetCount())]


def _handles(nvml, cuda_indices: list[int] | None, uuids: list[str] | None) -> list:
    """NVML handles of the workload's GPUs: by UUID when known, else by CUDA-visible index."""
    if uuids:
        entries = [u if u.startswith(("GPU-", "MIG-")) else f"GPU-{u}" for u in uuids]
    else:
        visible = _visible_entries(nvml)
        missing = [i for i in cuda_indices or [] if not 0 <= i < len(visible)]
        if missing:
            raise MeterError(
                f"GPU index {missing[0]} does not exist: this process sees {len(visible)} GPU(s) "
                f"({', '.join(visible)}).",
                "set meter.nvml.devices to CUDA-visible indices that exist, or leave it unset.",
            )
        entries = visible if cuda_indices is None else [visible[i] for i in cuda_indices]
    handles = []
    for entry in entries:
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


class NvmlSource(CounterSource):
    name = "nvml"

    def __init__(
        self,
        cuda_indices: list[int] | None = None,
        nvml=None,
        uuids: list[str] | None = None,
        tick_s: float | None = None,
        allow_mig: bool = False,
        tick_lock: bool = True,
        trust: TrustSettings | None = None,
    ):
        self.nvml = nvml or load_pynvml()
        self.trust = trust
        self.configured_tick_s = tick_s
        self.tick_lock = tick_lock
        try:
            self.nvml.nvmlInit()
            self.matched_by = "uuid" if uuids else "cuda-visible index"
            try:
                handles = _handles(self.nvml, cuda_indices, uuids)
            except self.nvml.NVMLError_NotFound:  # a UUID NVML does not know: say so, use indices
                self.matched_by = f"cuda-visible index (NVML knows no GPU {', '.join(uuids or [])})"
                handles = _handles(self.nvml, cuda_indices, None)
            self.gpus = [NvmlGpu(self.nvml, h, allow_mig) for h in handles]
        except self.nvml.NVMLError as exc:
            raise MeterError(
                f"NVML failed while opening the GPUs: {exc}.",
                "check nvidia-smi works here, or pick another meter.",
            ) from exc
        except MeterError:
            self.nvml.nvmlShutdown()
            raise
        if not self.gpus:
            raise MeterError(
                "NVML found none of the workload's GPUs.", "check CUDA_VISIBLE_DEVICES."
            )
        self.devices = self.gpus
        self.driver = text(self.nvml.nvmlSystemGetDriverVersion())
        self._start: dict[str, dict] = {}
        self._end: dict[str, dict] = {}

    def covers(self) -> set[str]:
        things = {f"gpu:{g.uuid}" for g in self.gpus}
        if any(g.module_scope for g in self.gpus):
            things.add("cpu")  # a Grace Hopper module's reading includes its Grace CPU
        return things

    def open(self, t_ns: int) -> None:
        detected: dict[str, float | None] = {}  # one detection per GPU model, as Zeus does
        for gpu in self.gpus:
            tick = self.configured_tick_s if self.configured_tick_s else detected.get(gpu.name)
            gpu.probe(tick, self.tick_lock, record=self.trust is not None)
            if gpu.has_counter and gpu.open_fault is None:
                detected.setdefault(gpu.name, gpu.tick_s)
            self._start[gpu.domain] = gpu_state(self.nvml, gpu.handle)
        check_source(self, self.gpus, self.trust)
        if not all(g.has_counter for g in self.gpus):
            self.method = "power-sampling"

    def close(self) -> None:
        try:
            for gpu in self.gpus:
                if not gpu.failed:
                    self._end[gpu.domain] = gpu_state(self.nvml, gpu.handle)
        finally:
            self.nvml.nvmlShutdown()

    def details(self) -> dict:
        return {
            "driver": self.driver,
            "matched_by": self.matched_by,
            "gpus": [
                {
                    **g.describe(),
                    "index": g.index,
                    "uuid": g.uuid,
                    "name": g.name,
                    "power_scope": "module (Grace CPU + GPU + memory)" if g.module_scope else "gpu",
                    "mig": "on: the whole GPU's energy, every slice's work" if g.mig else "off",
                    "at_start": self._start.get(g.domain),
                    "at_end": self._end.get(g.domain),
                }
                for g in self.gpus
            ],
        }
