"""Fakes at the hardware seam only: an autospecced pynvml, a sysfs RAPL tree, a PTDaemon."""

from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace
from unittest import mock

import pynvml


class Staircase:
    """A total-energy counter that ticks: constant `watts`, a new value every `tick_s`, in mJ.

    Reads the clock it is given (real monotonic time by default), so a real sampler thread
    polling it sees what it would see on an H100: the same value until the next tick."""

    def __init__(self, watts: float, tick_s: float, phase_s: float = 0.0, clock=None):
        self.watts, self.tick_s, self.phase_s = watts, tick_s, phase_s
        self.clock = clock or time.monotonic_ns
        self.t0 = self.clock()

    def ticks_at(self, t_ns: int) -> int:
        return int(((t_ns - self.t0) / 1e9 + self.phase_s) // self.tick_s)

    def __call__(self) -> int:
        return 1_000_000 + int(round(self.ticks_at(self.clock()) * self.watts * self.tick_s * 1000))


class FakeGpuState:
    """What one fake GPU reports through nvmlDeviceGetFieldValues.

    `energy_mj` is a list (one value per energy read, the last repeated) or a callable such as
    a Staircase. Scripts of return codes and raised errors model what NVML does when it fails:
    `energy_codes` / `power_codes` give the per-field nvmlReturn of successive reads (then
    NVML_SUCCESS), `call_errors` exceptions raised by successive calls (None: no error), and
    `fail_after` loses the GPU after that many energy reads."""

    def __init__(
        self,
        uuid: str,
        energy_mj,
        power_mw=300_000,
        counter: bool = True,
        name: str = "NVIDIA H100 80GB HBM3",
        mig: bool = False,
        gpu_scope: bool = True,
    ):
        self.uuid, self.counter, self.name, self.mig, self.gpu_scope = (
            uuid,
            counter,
            name,
            mig,
            gpu_scope,
        )
        self.energy_mj = energy_mj if callable(energy_mj) else list(energy_mj)
        self.power_mw = power_mw if isinstance(power_mw, int) else list(power_mw)
        self.energy_codes: list[int] = []
        self.power_codes: list[int] = []
        self.call_errors: list[Exception | None] = []
        self.calls = 0
        self.fail_after: int | None = None
        self.scopes_asked: list[int] = []

    def energy(self) -> int:
        if callable(self.energy_mj):
            return self.energy_mj()
        return self.energy_mj.pop(0) if len(self.energy_mj) > 1 else self.energy_mj[0]

    def power(self) -> int:
        if isinstance(self.power_mw, int):
            return self.power_mw
        return self.power_mw.pop(0) if len(self.power_mw) > 1 else self.power_mw[0]


# what each field's value is in NVML (nvml.h): the energy counter an unsigned long long of mJ,
# instant power an unsigned int of mW
_VALUE_TYPES = {
    pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION: (
        pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
        "ullVal",
    ),
    pynvml.NVML_FI_DEV_POWER_INSTANT: (pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, "uiVal"),
}


def _field(field_id, scope, code, value: int, timestamp_us: int | None = None):
    """One c_nvmlFieldValue_t, pynvml's own ctypes struct, filled as the driver fills it."""
    out = pynvml.c_nvmlFieldValue_t()
    out.fieldId, out.scopeId = field_id, scope
    out.timestamp = (
        time.time_ns() // 1000 if timestamp_us is None else timestamp_us
    )  # CPU wall clock, us
    out.latencyUsec = 0
    out.nvmlReturn = code
    value_type, member = _VALUE_TYPES.get(
        field_id, (pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "ullVal")
    )
    out.valueType = value_type
    if code == pynvml.NVML_SUCCESS:
        setattr(out.value, member, value)
    return out


def _field_array(fields):
    """What nvmlDeviceGetFieldValues returns: a ctypes array of the structs."""
    array = (pynvml.c_nvmlFieldValue_t * len(fields))()
    for i, f in enumerate(fields):
        array[i] = f
    return array


def fake_pynvml(gpus: list[FakeGpuState]):
    """`mock.create_autospec(pynvml)` with real constants and errors, wired to `gpus`.

    The real NvmlSource code runs against it; only the C library behind pynvml is replaced.
    """
    nvml = mock.create_autospec(pynvml, instance=False)
    for name in dir(pynvml):
        if name.startswith(("NVML_", "NVMLError")):
            setattr(nvml, name, getattr(pynvml, name))
    handles = [SimpleNamespace(index=i, state=g) for i, g in enumerate(gpus)]
    nvml.nvmlDeviceGetCount.return_value = len(gpus)
    nvml.nvmlDeviceGetHandleByIndex.side_effect = lambda i: handles[i]

    def by_uuid(u):
        for h in handles:
            if h.state.uuid == u:
                return h
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    nvml.nvmlDeviceGetHandleByUUID.side_effect = by_uuid
    nvml.nvmlDeviceGetIndex.side_effect = lambda h: h.index
    nvml.nvmlDeviceGetUUID.side_effect = lambda h: h.state.uuid
    nvml.nvmlDeviceGetName.side_effect = lambda h: h.state.name
    nvml.nvmlSystemGetDriverVersion.return_value = "580.159.04"
    nvml.nvmlDeviceGetEnforcedPowerLimit.return_value = 700_000
    nvml.nvmlDeviceGetTemperature.return_value = 41
    nvml.nvmlDeviceGetPowerManagementDefaultLimit.return_value = 700_000
    clocks = {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 3201}
    nvml.nvmlDeviceGetClockInfo.side_effect = lambda h, kind: clocks[kind]
    nvml.nvmlDeviceGetMaxClockInfo.side_effect = lambda h, kind: clocks[kind]
    nvml.nvmlDeviceGetPerformanceState.return_value = 0
    nvml.nvmlDeviceGetPersistenceMode.return_value = pynvml.NVML_FEATURE_ENABLED
    nvml.nvmlDeviceGetComputeMode.return_value = pynvml.NVML_COMPUTEMODE_DEFAULT
    nvml.nvmlDeviceGetEccMode.return_value = [pynvml.NVML_FEATURE_ENABLED] * 2
    nvml.nvmlDeviceGetCurrentClocksEventReasons.return_value = 0
    nvml.nvmlDeviceGetMigMode.side_effect = lambda h: (
        (pynvml.NVML_DEVICE_MIG_ENABLE, pynvml.NVML_DEVICE_MIG_ENABLE)
        if h.state.mig
        else (pynvml.NVML_DEVICE_MIG_DISABLE, pynvml.NVML_DEVICE_MIG_DISABLE)
    )

    def energy_field(s: FakeGpuState, field_id, scope):
        if not s.counter:
            return _field(field_id, scope, pynvml.NVML_ERROR_NOT_SUPPORTED, 0)
        s.calls += 1
        if s.fail_after is not None and s.calls > s.fail_after:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        code = s.energy_codes.pop(0) if s.energy_codes else pynvml.NVML_SUCCESS
        value = s.energy() if code == pynvml.NVML_SUCCESS else 0
        return _field(field_id, scope, code, value)

    def power_field(s: FakeGpuState, field_id, scope, scripted: bool):
        s.scopes_asked.append(scope)
        if scope == pynvml.NVML_POWER_SCOPE_GPU and not s.gpu_scope:
            return _field(field_id, scope, pynvml.NVML_ERROR_NOT_SUPPORTED, 0)
        # the scripted codes are for reads beside the counter, not the open-time scope probe
        code = s.power_codes.pop(0) if scripted and s.power_codes else pynvml.NVML_SUCCESS
        return _field(field_id, scope, code, s.power() if code == pynvml.NVML_SUCCESS else 0)

    def fields(h, ids):
        s = h.state
        if s.call_errors:
            error = s.call_errors.pop(0)
            if error is not None:
                raise error
        out = []
        for entry in ids:
            field_id, scope = entry if isinstance(entry, tuple) else (entry, 0)
            if field_id == pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
                out.append(energy_field(s, field_id, scope))
            else:
                out.append(power_field(s, field_id, scope, scripted=len(ids) > 1))
        return _field_array(out)

    nvml.nvmlDeviceGetFieldValues.side_effect = fields
    nvml.nvmlDeviceGetPowerUsage.side_effect = lambda h: h.state.power()
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
    """A PTDaemon on loopback that speaks the protocol power-dev drives and checks.

    Derived from mlcommons/power-dev: ptd_client_server/lib/server.py (the commands it sends and
    how it reads RL's "Last N samples" header and lines, RR's "Ranges,..." reply) and
    compliance/check.py (the exact replies it accepts to SR, Go and Stop, Identify's
    "<model>,version=<v>-..." form). While a measurement runs it logs a sample every interval
    (scaled by `time_scale`, so a "1000 ms" interval takes 20 ms here), with the power the
    script gives; `Watts` answers with the next scripted power. A command that is one of
    `refuse` (or has one as its leading fields) is answered with an Error, as a real daemon
    answers a range it cannot set.
    """

    IDENTITY = "YokogawaWT310E,version=1.11.1-5c7b0f6e-2020-11-23,Multichannel=0"

    def __init__(
        self,
        watts: list[float],
        close_after_watts: int | None = None,
        refuse: tuple[str, ...] = (),
        initial_ranges: str = "Ranges,0,5.000000,0,300.000000",
        time_scale: float = 0.02,
    ):
        self.watts, self.close_after_watts, self.refuse = list(watts), close_after_watts, refuse
        self.initial_ranges, self.time_scale = initial_ranges, time_scale
        self.received: list[str] = []
        self.ranges = {"A": "5.000000", "V": "300.000000"}
        self.samples: list[str] = []  # logged, not yet read by RL
        self.measuring: str | None = None  # the mark of the running measurement
        self._lock = threading.Lock()
        self._sampler: threading.Thread | None = None
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _current_watts(self) -> float:
        return self.watts[0]

    def _log_samples(self, interval_s: float, mark: str) -> None:
        n = 0
        while self.measuring == mark:
            time.sleep(interval_s * self.time_scale)
            with self._lock:
                if self.measuring != mark:
                    return
                w = self._current_watts()
                volts, pf = 230.1 + 0.1 * (n % 3), 0.98
                amps = w / (volts * pf)
                self.samples.append(
                    f"Time,22-11-2026 17:00:{n % 60:02d}.000,Watts,{w:.6f},Volts,{volts:.6f},"
                    f"Amps,{amps:.6f},PF,{pf:.6f},Mark,{mark}"
                )
                n += 1

    def _reply(self, line: str) -> str | list[str] | None:
        if any(line == r or line.startswith(r + ",") for r in self.refuse):
            return "Error: command refused by the analyzer"
        cmd, *args = line.split(",")
        if cmd == "Hello":
            return "Hello, PTDaemon here!"
        if cmd == "Identify":
            return self.IDENTITY
        if cmd == "RR":
            return self.initial_ranges
        if cmd == "SR" and len(args) == 2 and args[0] in ("V", "A"):
            value = args[1]
            if value != "Auto":
                try:
                    float(value)
                except ValueError:
                    return f"Error: invalid range {value!r}"
            self.ranges[args[0]] = value
            return f"Range {args[0]} changed"
        if cmd == "Go" and len(args) == 3:
            if self.measuring is not None:
                return "Error: measurement already running"
            interval_ms, mark = int(args[0]), args[2]
            self.measuring = mark
            self._sampler = threading.Thread(
                target=self._log_samples, args=(interval_ms / 1000.0, mark), daemon=True
            )
            self._sampler.start()
            return (
                f"Starting untimed measurement, maximum 500000 samples at {interval_ms}ms "
                "with 0 rampup samples"
            )
        if cmd == "Stop":
            if self.measuring is None:
                return "Error: no measurement to stop"
            self.measuring = None
            return "Stopping untimed measurement"
        if cmd == "Watts":
            served = sum(1 for r in self.received if r == "Watts")
            if self.close_after_watts is not None and served > self.close_after_watts:
                return None
            value = self.watts.pop(0) if len(self.watts) > 1 else self.watts[0]
            return f"Watts,{value:.3f}"
        if cmd == "Uncertainty":
            return "Uncertainty,0.310%"
        if cmd == "RL":
            with self._lock:
                unread, self.samples = self.samples, []
            return [f"Last {len(unread)} samples", *unread]
        return "Error: Unknown command"

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
                    lines = reply if isinstance(reply, list) else [reply]
                    conn.sendall(b"".join(x.encode() + b"\r\n" for x in lines))

    def close(self) -> None:
        self.measuring = None
        self.server.close()
