"""Faults stay local, samplers never starve each other, and GPUs are the workload's own.

All at the hardware seam: the real Meter and NvmlSource against an autospecced pynvml."""

from __future__ import annotations

import threading
import time

import pytest

from harness.errors import MeterError
from harness.meters import factory, nvml, nvml_gpu
from harness.meters.base import MeterSource, Reading
from harness.meters.cpu_model import CpuModelSource
from harness.meters.meter import Meter
from harness.meters.simulated import SimulatedSource
from tests.fakes import FakeGpuState, fake_pynvml

pynvml = pytest.importorskip("pynvml")
S = 1_000_000_000


class Clock:
    def __init__(self, step_ns: int = 0):
        self.t, self.step_ns = 0, step_ns

    def __call__(self):
        self.t += self.step_ns  # a clock that moves a little at every read
        return self.t


def _meter(tmp_path, gpus, clock=None, **kw):
    source = nvml.NvmlSource(nvml=fake_pynvml(gpus), tick_s=0.1, **kw)
    meter = Meter([source], sample_hz=1e-3, clock=clock or Clock(1_000_000))
    meter.start(tmp_path / "power.csv")  # the sampler threads wait 1000 s: polls are manual
    return meter, source


def _counter(n=50, step_mj=30_000):
    return [1_000_000 + i * step_mj for i in range(n)]


@pytest.fixture(autouse=True)
def _no_cuda_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_a_failed_power_read_never_stops_the_counter(tmp_path):
    gpu = FakeGpuState("GPU-a", _counter())
    # the read at open succeeds; the next three power reads fail
    gpu.power_codes = [pynvml.NVML_SUCCESS] + [pynvml.NVML_ERROR_NOT_SUPPORTED] * 3
    meter, source = _meter(tmp_path, [gpu])
    for _ in range(5):
        meter.poll()
    series = meter.series["gpu:0"].arrays()
    # six polls (one at start), each a new counter value 30 J on; the first three without
    # watts, the rest with the 300 W instant power
    assert series.joules.tolist() == [30.0, 60.0, 90.0, 120.0, 150.0, 180.0]
    assert [w == w for w in series.watts.tolist()] == [False] * 3 + [True] * 3
    assert meter.faults == [] and source.quality()["power_read_failed"] == 3


def test_one_gpu_lost_leaves_the_others_metered(tmp_path):
    lost, fine = FakeGpuState("GPU-a", _counter()), FakeGpuState("GPU-b", _counter())
    lost.fail_after = 3  # the probe and two polls, then it falls off the bus
    meter, _ = _meter(tmp_path, [lost, fine])
    for _ in range(6):
        meter.poll()
    (fault,) = meter.faults
    assert (
        fault.source == "nvml"
        and fault.cause.startswith("gpu:0: ")
        and "GPU is lost" in fault.cause
    )
    assert meter.series["gpu:0"].committed() == 2
    assert meter.series["gpu:1"].arrays().joules[-1] == pytest.approx(7 * 30.0)  # start + 6


def test_transient_errors_are_retried_before_a_fault(tmp_path):
    flaky, broken = FakeGpuState("GPU-a", _counter()), FakeGpuState("GPU-b", _counter())
    unknown = pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)
    flaky.call_errors = [None, None, unknown, pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)]
    broken.call_errors = [None, None] + [unknown] * 6  # (the first two: scope probe and probe)
    meter, source = _meter(tmp_path, [flaky, broken])
    for _ in range(5):
        meter.poll()
    # flaky: two retried polls, then it reads again; broken: three retries, the fourth is a fault
    assert [f.cause for f in meter.faults] == ["gpu:1: Unknown Error (3 retries)"]
    assert meter.series["gpu:0"].arrays().joules.tolist() == [30.0, 60.0, 90.0, 120.0]
    assert source.quality()["transient_retries"] == 2 + 4
    # an energy field that answers NotSupported for a moment is retried the same way
    blip = FakeGpuState("GPU-c", _counter())
    blip.energy_codes = [pynvml.NVML_SUCCESS, pynvml.NVML_ERROR_NOT_SUPPORTED]
    (tmp_path / "b").mkdir()
    meter, source = _meter(tmp_path / "b", [blip])
    meter.poll()
    assert meter.faults == [] and source.quality()["transient_retries"] == 1


def test_zero_power_and_a_counter_going_back_are_skipped_and_counted(tmp_path):
    gpu = FakeGpuState(
        "GPU-a",
        [1_000_000, 1_000_000, 1_100_000, 900_000, 1_200_000],
        power_mw=[300_000, 300_000, 0, 250_000],  # scope probe, probe, then a 0 mW reading
    )
    meter, source = _meter(tmp_path, [gpu])
    for _ in range(3):
        meter.poll()
    s = meter.series["gpu:0"].arrays()
    assert s.joules.tolist() == [0.0, 100.0, 200.0]  # 900 J below 1100 J: skipped
    assert s.watts[0] != s.watts[0] and s.watts[-1] == 250.0  # the 0 mW reading has no watts
    q = source.quality()
    assert q["zero_power_skipped"] == 1 and q["counter_regressions_skipped"] == 1


def test_a_counter_that_stays_lower_was_reset_and_keeps_the_energy_so_far(tmp_path):
    # +100 J, then the counter restarts near 0 (a GPU reset) and stays there: five readings below
    # the last good one make it a reset; the energy before it is kept and the counting goes on
    values = [1_000_000, 1_000_000, 1_100_000, 10_000, 20_000, 30_000, 40_000, 50_000, 80_000]
    meter, source = _meter(tmp_path, [FakeGpuState("GPU-a", values)])
    for _ in range(7):
        meter.poll()
    assert meter.series["gpu:0"].arrays().joules.tolist() == [0.0, 100.0, 100.0, 130.0]
    q = source.quality()
    assert q["counter_resets"] == 1 and q["counter_regressions_skipped"] == 4


def test_each_gpu_is_stamped_right_after_its_own_read(tmp_path):
    clock = Clock(1_000_000)  # 1 ms passes at every clock read
    gpus = [FakeGpuState(f"GPU-{i}", _counter()) for i in range(3)]
    meter, _ = _meter(tmp_path, gpus, clock)
    before = clock.t
    meter.poll()
    stamps = [meter.series[f"gpu:{i}"].arrays().t_ns[-1] for i in range(3)]
    assert stamps[0] > before and stamps[0] < stamps[1] < stamps[2]
    # NVML's own timestamp, clamped to the call: a value it read 50 ms ago is stamped at the
    # call's start, one it read just now at the call's end
    assert nvml_gpu.NvmlGpu._stamp(time.time_ns() // 1000 - 50_000, 10, 20) == 10
    assert nvml_gpu.NvmlGpu._stamp(time.time_ns() // 1000, 10, 20 * S) == pytest.approx(
        20 * S, abs=S // 100
    )
    assert nvml_gpu.NvmlGpu._stamp(0, 10, 20) == 20


class Stuck(MeterSource):
    """A wall meter whose read hangs (a slow BMC) until released."""

    name, method, provenance, role = "stuck", "wall-meter", "measured", "total"

    def __init__(self):
        self.inside, self.release, self.polls = threading.Event(), threading.Event(), 0

    def domains(self):
        return ["node:wall"]

    def default_hz(self):
        return 100.0

    def poll(self, t_ns):
        self.polls += 1
        if self.polls > 1:  # the first poll, at start, answers at once
            self.inside.set()
            self.release.wait(30)
        return [Reading("node:wall", 0.0, 500.0)]


def test_a_stuck_source_does_not_starve_the_others(tmp_path):
    stuck, fast = Stuck(), SimulatedSource(300.0, "gpu:0")
    meter = Meter([stuck, fast])  # each at its own rate: 100 Hz and 20 Hz
    meter.start(tmp_path / "power.csv")
    try:
        assert stuck.inside.wait(10)
        seen = meter.series["gpu:0"].committed()
        deadline = time.monotonic() + 20
        while meter.series["gpu:0"].committed() < seen + 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        # the GPU went on being read while the wall meter hung in a single poll
        assert meter.series["gpu:0"].committed() >= seen + 5
        assert stuck.polls == 2
    finally:
        stuck.release.set()
        meter.stop()


# -- which GPUs ------------------------------------------------------------------------------
def test_the_workloads_gpu_is_found_by_uuid_not_by_index(monkeypatch):
    gpus = [FakeGpuState(f"GPU-{c * 8}", [0]) for c in "abcd"]
    fake = fake_pynvml(gpus)
    # CUDA orders devices fastest first, NVML by PCI bus: cuda:0 can be NVML's GPU 2
    source = nvml.NvmlSource(nvml=fake, uuids=["cccccccc"], tick_s=0.1)
    assert source.domains() == ["gpu:2"] and source.covers() == {"gpu:GPU-cccccccc"}
    monkeypatch.setattr(nvml, "load_pynvml", lambda: fake)
    import dataclasses

    from harness.config import MeterConfig
    from tests.test_metrics import _info

    cfg = MeterConfig(source="nvml")
    cfg.nvml.tick_s = 0.1
    info = dataclasses.replace(
        _info(), extra={"cuda_device_indices": [0], "cuda_device_uuids": ["dddddddd"]}
    )
    (built,) = factory.build_sources(cfg, info)
    assert built.domains() == ["gpu:3"] and built.details()["matched_by"] == "uuid"
    # a UUID NVML does not know falls back to the CUDA-visible index, and says so
    lost = nvml.NvmlSource([1], nvml=fake, uuids=["eeeeeeee"], tick_s=0.1)
    assert lost.domains() == ["gpu:1"]
    assert lost.details()["matched_by"].endswith("(NVML knows no GPU eeeeeeee)")


def test_a_configured_gpu_that_does_not_exist_is_an_error(monkeypatch):
    fake = fake_pynvml([FakeGpuState("GPU-a", [0]), FakeGpuState("GPU-b", [0])])
    with pytest.raises(MeterError, match="GPU index 2 does not exist") as info:
        nvml.NvmlSource(cuda_indices=[0, 2], nvml=fake)
    assert "meter.nvml.devices" in info.value.fix
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.raises(MeterError, match="GPU index 1 does not exist"):
        nvml.NvmlSource(cuda_indices=[1], nvml=fake)


def test_a_mig_gpu_is_refused_or_labelled():
    fake = fake_pynvml([FakeGpuState("GPU-a", [0], mig=True)])
    with pytest.raises(MeterError, match="MIG mode") as info:
        nvml.NvmlSource(nvml=fake)
    assert "meter.nvml.allow_mig=true" in info.value.fix
    source = nvml.NvmlSource(nvml=fake, allow_mig=True, tick_s=0.1)
    assert source.details()["gpus"][0]["mig"].startswith("on: the whole GPU")


def test_grace_hopper_reads_module_power_and_labels_it():
    gpu = FakeGpuState("GPU-gh", _counter(), name="NVIDIA GH200 480GB", gpu_scope=False)
    source = nvml.NvmlSource(nvml=fake_pynvml([gpu]), tick_s=0.1)
    source.open(0)
    (reading,) = source.poll(0)
    assert reading.watts == 300.0 and gpu.scopes_asked[-1] == pynvml.NVML_POWER_SCOPE_MODULE
    assert source.details()["gpus"][0]["power_scope"].startswith("module (Grace CPU")
    # the module includes the Grace CPU: an estimate of the same CPU beside it is refused
    assert "cpu" in source.covers()
    with pytest.raises(MeterError, match="both measure cpu"):
        Meter([source, CpuModelSource(100.0)])


# -- issue 23: the NVML probe at open -----------------------------------------------------
def test_a_per_field_error_at_open_is_a_fault_of_that_gpu_not_a_counter_of_zero(tmp_path):
    """Only NotSupported means "no counter": any other per-field code (here Unknown, every
    read) is retried at open, then that GPU is a fault at its first poll; the other GPU goes on
    and no reading of 0 J is ever recorded for the broken one."""
    broken = FakeGpuState("GPU-bad", _counter())
    broken.energy_codes = [pynvml.NVML_ERROR_UNKNOWN] * 100
    good = FakeGpuState("GPU-good", _counter())
    meter, source = _meter(tmp_path, [broken, good])
    meter.poll()
    assert [f.cause for f in meter.faults] == [
        "gpu:0: its energy field returned Unknown Error (5 reads at open)"
    ]
    assert meter.series["gpu:0"].committed() == 0  # no zeros, no readings at all
    assert meter.series["gpu:1"].committed() >= 2
    assert source.method == "energy-counter" and source.gpus[1].tick_s == 0.1


def test_a_transient_field_error_at_open_is_retried(tmp_path):
    gpu = FakeGpuState("GPU-a", _counter())
    gpu.energy_codes = [pynvml.NVML_ERROR_TIMEOUT] * 2  # then success
    meter, source = _meter(tmp_path, [gpu])
    meter.poll()
    assert meter.faults == [] and source.gpus[0].has_counter
    # the first value is the counter's own (1000 J + 3 reads x 30 J), not a zero
    assert source.gpus[0]._first_mj == 1_000_000


def test_a_refused_state_query_never_stops_the_meter(tmp_path):
    """Temperature, power limit or clocks refused (NoPermission, NotSupported, GPU lost): that
    entry is null in the disclosure; Meter.start and stop go on."""
    gpu = FakeGpuState("GPU-a", _counter())
    fake = fake_pynvml([gpu])
    fake.nvmlDeviceGetTemperature.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    fake.nvmlDeviceGetEnforcedPowerLimit.side_effect = pynvml.NVMLError(
        pynvml.NVML_ERROR_GPU_IS_LOST
    )
    source = nvml.NvmlSource(nvml=fake, tick_s=0.1)
    meter = Meter([source], sample_hz=1e-3, clock=Clock(1_000_000))
    meter.start(tmp_path / "power.csv")
    meter.poll()
    meter.stop()
    start = source.details()["gpus"][0]["at_start"]
    assert start["temperature_c"] is None and start["power_limit_w"] is None
    assert start["sm_clock_mhz"] == 1980 and start["persistence_mode"] == "on"
    assert source.details()["gpus"][0]["at_end"]["ecc"] == "on"
