"""Fakes at the hardware seam only: an autospecced pynvml, a sysfs RAPL tree, a PTDaemon."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace
from unittest import mock

import pynvml


class FakeGpuState:
    """What one fake GPU reports: an energy counter in mJ and instant power in mW."""

    def __init__(
        self, uuid: str, energy_mj: list[int], power_mw: int = 300_000, counter: bool = True
    ):
        self.uuid, self.energy_mj, self.power_mw, self.counter = (
            uuid,
            list(energy_mj),
            power_mw,
            counter,
        )
        self.calls = 0
        self.fail_after: int | None = None


def fake_pynvml(gpus: list[FakeGpuState]):
    """`mock.create_autospec(pynvml)` with real constants and errors, wired to `gpus`.

    The real NvmlSource code runs against it; only the C library behind pynvml is replaced.
    """
    nvml = mock.create_autospec(pynvml, instance=False)
    for name in (
        "NVMLError",
        "NVMLError_NotSupported",
        "NVML_FI_DEV_POWER_INSTANT",
        "NVML_SUCCESS",
        "NVML_TEMPERATURE_GPU",
        "NVML_ERROR_NOT_SUPPORTED",
    ):
        setattr(nvml, name, getattr(pynvml, name))
    handles = [SimpleNamespace(index=i, state=g) for i, g in enumerate(gpus)]
    nvml.nvmlDeviceGetCount.return_value = len(gpus)
    nvml.nvmlDeviceGetHandleByIndex.side_effect = lambda i: handles[i]
    nvml.nvmlDeviceGetHandleByUUID.side_effect = lambda u: next(
        h for h in handles if h.state.uuid == u
    )
    nvml.nvmlDeviceGetIndex.side_effect = lambda h: h.index
    nvml.nvmlDeviceGetUUID.side_effect = lambda h: h.state.uuid
    nvml.nvmlDeviceGetName.side_effect = lambda h: "NVIDIA H100 80GB HBM3"
    nvml.nvmlSystemGetDriverVersion.return_value = "580.159.04"
    nvml.nvmlDeviceGetEnforcedPowerLimit.return_value = 700_000
    nvml.nvmlDeviceGetTemperature.return_value = 41

    def energy(h):
        s = h.state
        if not s.counter:
            raise pynvml.NVMLError_NotSupported()
        s.calls += 1
        if s.fail_after is not None and s.calls > s.fail_after:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return s.energy_mj.pop(0) if len(s.energy_mj) > 1 else s.energy_mj[0]

    def fields(h, ids):
        value = SimpleNamespace(uiVal=h.state.power_mw)
        return [SimpleNamespace(nvmlReturn=pynvml.NVML_SUCCESS, value=value)]

    nvml.nvmlDeviceGetTotalEnergyConsumption.side_effect = energy
    nvml.nvmlDeviceGetFieldValues.side_effect = fields
    nvml.nvmlDeviceGetPowerUsage.side_effect = lambda h: h.state.power_mw
    return nvml


def make_rapl_tree(root, packages: int = 1, dram: bool = True, max_uj: int = 262_143_328_850):
    """A /sys/class/powercap lookalike: package zones with core and dram subzones, plus psys."""
    root.mkdir(parents=True, exist_ok=True)

    def zone(path, name, energy):
        path.mkdir()
        (path / "name").write_text(name + "\n")
        (path / "energy_uj").write_text(f"{energy}\n")
        (path / "max_energy_range_uj").write_text(f"{max_uj}\n")

    for p in range(packages):
        top = root / f"intel-rapl:{p}"
        zone(top, f"package-{p}", 1_000_000)
        zone(top / f"intel-rapl:{p}:0", "core", 500_000)
        if dram:
            zone(top / f"intel-rapl:{p}:1", "dram", 200_000)
    zone(root / f"intel-rapl:{packages}", "psys", 9_000_000)
    zone(root / "intel-rapl-mmio:0", "package-0", 1_000_000)
    return root


class FakePtDaemon:
    """A PTDaemon on loopback answering the commands joulebench sends, with a scripted power."""

    def __init__(self, watts: list[float], close_after_watts: int | None = None):
        self.watts, self.close_after_watts = list(watts), close_after_watts
        self.received: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _reply(self, line: str) -> str | None:
        cmd = line.split(",")[0]
        if cmd == "Hello":
            return "Hello, PTDaemon here!"
        if cmd == "Identify":
            return "Yokogawa WT310E, firmware 2.01"
        if cmd in ("SR", "Go", "Stop"):
            return "OK"
        if cmd == "Watts":
            served = sum(1 for r in self.received if r == "Watts")
            if self.close_after_watts is not None and served > self.close_after_watts:
                return None
            value = self.watts.pop(0) if len(self.watts) > 1 else self.watts[0]
            return f"Watts,{value:.3f}"
        if cmd == "RL":
            return "Time,22-11-2026 17:00:00.000,Watts,412.500,Volts,230.10,Amps,1.793,PF,0.998,Mark,joulebench"
        return "Error: unknown command"

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:  # closed before anyone connected
            return
        buf = b""
        with conn:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
                while b"\r\n" in buf:
                    line, _, buf = buf.partition(b"\r\n")
                    self.received.append(line.decode())
                    reply = self._reply(line.decode())
                    if reply is None:
                        return  # the daemon goes away mid-run
                    conn.sendall(reply.encode() + b"\r\n")

    def close(self) -> None:
        self.server.close()
