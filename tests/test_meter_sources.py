"""Each power source against its hardware seam: fake pynvml, sysfs RAPL, PTDaemon, ipmitool."""

from __future__ import annotations

import sys

import pytest

from harness.errors import MeterError
from harness.meters import factory, nvml, rapl
from harness.meters.meter import Meter
from harness.meters.simulated import SimulatedSource
from harness.meters.tpu import TpuSource
from harness.meters.wall import (
    IpmiDcmiSource,
    PtdaemonSource,
    parse_dcmi_power,
    parse_sample,
    parse_watts,
)
from harness.metrics import energy_between
from tests.fakes import FakeGpuState, FakePtDaemon, fake_pynvml, make_rapl_tree

pynvml = pytest.importorskip("pynvml")

S = 1_000_000_000


class Clock:
    def __init__(self):
        self.t = 0

    def __call__(self):
        return self.t


def _poll_at(meter: Meter, clock: Clock, seconds: list[float]) -> None:
    for s in seconds:
        clock.t = int(s * S)
        meter.poll()


# -- NVML -------------------------------------------------------------------------------------
def test_nvml_window_energy_is_the_counter_through_its_ticks(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    # counter in mJ at polls t=0,1,2,3 s (the first value is read at open): 0, 250, 600, 900 J
    gpu = FakeGpuState("GPU-aaaa", [5_000_000, 5_000_000, 5_250_000, 5_600_000, 5_900_000])
    source = nvml.NvmlSource(nvml=fake_pynvml([gpu]), tick_s=0.1)
    clock = Clock()
    meter = Meter([source], sample_hz=1e-3, clock=clock)
    meter.start(tmp_path / "power.csv")  # open() reads the counter, then a first poll at t=0
    _poll_at(meter, clock, [1, 2, 3])
    meter._stop.set()
    # each new value ticked in (max(previous poll, poll - 0.1 s), poll]: placed at poll - 0.05 s,
    # so the points are (0, 0) (0.95 s, 250 J) (1.95 s, 600 J) (2.95 s, 900 J)
    # window [0.5 s, 2.5 s]: 250 x 0.5/0.95 J at the start edge, 600 + 300 x 0.55 J at the end
    assert energy_between(meter.energy_at, S // 2, 5 * S // 2) == {
        "gpu:0": pytest.approx(765.0 - 250 * 0.5 / 0.95)
    }
    assert source.method == "energy-counter" and source.provenance == "measured"
    assert meter.series["gpu:0"].arrays().watts[-1] == 300.0  # instant power, in W
    d = source.details()
    assert d["driver"] == "580.159.04" and d["gpus"][0]["uuid"] == "GPU-aaaa"
    assert d["gpus"][0]["at_start"] == {
        "temperature_c": 41,
        "power_limit_w": 700.0,
        "default_power_limit_w": 700.0,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 3201,
        "max_sm_clock_mhz": 1980,
        "max_mem_clock_mhz": 3201,
        "performance_state": "P0",
        "persistence_mode": "on",
        "compute_mode": "default",
        "ecc": "on",
        "clocks_event_reasons": "0x0",
    }
    # locked to its 100 ms ticks: two reads a tick (meter.sample_hz here fixed the rate)
    assert source.tick_period_s() == {"gpu:0": 0.1} and source.default_hz() == 20.0


def test_nvml_reads_energy_and_power_in_one_field_values_call():
    gpu = FakeGpuState("GPU-aaaa", [1_000_000, 1_000_000, 1_100_000])
    fake = fake_pynvml([gpu])
    source = nvml.NvmlSource(nvml=fake, tick_s=0.1)
    source.open(0)
    fake.nvmlDeviceGetFieldValues.reset_mock()
    (reading,) = source.poll(0)
    ((handle, ids), _), *rest = fake.nvmlDeviceGetFieldValues.call_args_list
    assert rest == [] and not fake.nvmlDeviceGetTotalEnergyConsumption.called
    assert ids == [
        (pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, 0),
        (pynvml.NVML_FI_DEV_POWER_INSTANT, pynvml.NVML_POWER_SCOPE_GPU),
    ]
    assert (reading.joules, reading.watts) == (0.0, 300.0)


def test_nvml_without_counter_integrates_power_and_says_so():
    gpu = FakeGpuState("GPU-aaaa", [0], power_mw=200_000, counter=False)
    source = nvml.NvmlSource(nvml=fake_pynvml([gpu]))
    clock = Clock()
    source.clock = clock
    source.open(0)
    readings = []
    for t in (0, 1, 3):
        clock.t = t * S
        readings.append(source.poll(t * S)[0].joules)
    assert readings == pytest.approx([0.0, 200.0, 600.0])
    assert source.method == "power-sampling" and source.tick_period_s() == {}


def test_nvml_honours_cuda_visible_devices(monkeypatch):
    gpus = [FakeGpuState(f"GPU-{i}", [0]) for i in range(4)]
    fake = fake_pynvml(gpus)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-3")
    source = nvml.NvmlSource(nvml=fake, tick_s=0.1)
    assert source.domains() == ["gpu:2", "gpu:3"]
    only_second = nvml.NvmlSource(cuda_indices=[1], nvml=fake, tick_s=0.1)  # cuda:1 = GPU-3
    assert only_second.domains() == ["gpu:3"] and only_second.covers() == {"gpu:GPU-3"}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-abc")
    with pytest.raises(MeterError, match="MIG"):
        nvml.NvmlSource(nvml=fake)


def test_nvml_unavailable_without_the_driver():
    fake = fake_pynvml([])
    fake.nvmlInit.side_effect = nvml_error = sys.modules["pynvml"].NVMLError(9)  # driver not loaded
    ok, why = nvml.available(fake)
    assert not ok and "does not initialise" in why
    del nvml_error


# -- RAPL -------------------------------------------------------------------------------------
def test_rapl_reads_packages_and_dram_without_nested_or_platform_zones(tmp_path):
    root = make_rapl_tree(tmp_path / "powercap", packages=2)
    source = rapl.RaplSource(root)
    assert source.domains() == ["cpu:0", "dram:0", "cpu:1", "dram:1"]  # no core, psys or mmio


def test_rapl_wraparound(tmp_path):
    root = make_rapl_tree(tmp_path / "powercap", packages=1, dram=False, max_uj=10_000_000)
    source = rapl.RaplSource(root)
    energy = root / "intel-rapl:0" / "energy_uj"
    energy.write_text("9000000\n")
    source.open(0)
    energy.write_text("9500000\n")
    assert source.poll(1)[0].joules == pytest.approx(0.5)
    energy.write_text("1500000\n")  # wrapped: 0.5 J to the top, then 1.5 J
    assert source.poll(2)[0].joules == pytest.approx(2.5)
    assert source.details()["wraps"] == 1


def test_rapl_missing_and_root_only_give_clear_reasons(tmp_path):
    ok, why = rapl.available(tmp_path / "nope")
    assert not ok and "does not exist" in why
    root = make_rapl_tree(tmp_path / "powercap")
    (root / "intel-rapl:0" / "energy_uj").chmod(0)
    import os

    if os.geteuid() != 0:  # root reads anything; the message is then checked through a mock
        ok, why = rapl.available(root)
        assert not ok and "root only" in why
    else:
        from unittest import mock

        with mock.patch("pathlib.Path.read_text", side_effect=PermissionError("denied")):
            ok, why = rapl.available(root)
        assert not ok and "root only" in why


# -- TPU --------------------------------------------------------------------------------------
def test_tpu_estimate_uses_the_cited_table_or_the_users_figure():
    v3 = TpuSource("TPU v3", chips=8)
    v3.open(0)
    assert v3.poll(10 * S)[0].joules == pytest.approx(8 * 283.0 * 10)
    assert "Patterson" in v3.details()["watts_source"] and v3.provenance == "estimated"
    with pytest.raises(MeterError, match="no cited average power") as info:
        TpuSource("TPU v5 lite", chips=4)
    assert "meter.tpu.watts_per_chip" in info.value.fix
    v5e = TpuSource("TPU v5 lite", chips=4, watts_per_chip=150.0, duty_cycle=0.5)
    v5e.open(0)
    assert v5e.poll(2 * S)[0].joules == pytest.approx(4 * 150 * 0.5 * 2)
    assert v5e.domains() == ["tpu:0-3"]


# -- wall meters ------------------------------------------------------------------------------
def test_ptdaemon_integrates_the_wall_power(tmp_path):
    daemon = FakePtDaemon([400.0, 400.0, 500.0])
    try:
        source = PtdaemonSource("127.0.0.1", daemon.port, interval_ms=500, settle_s=0)
        clock = Clock()
        meter = Meter([source], sample_hz=1e-3, clock=clock)
        meter.start(tmp_path / "power.csv")  # open + first poll (400 W at t=0)
        _poll_at(meter, clock, [1, 2])  # 400 W at 1 s, 500 W at 2 s
        meter._stop.set()
        meter.stop()
        assert meter.energy_at(2 * S)["node:wall"] == pytest.approx(400 + 450)
        assert source.role == "total" and source.method == "wall-meter"
        assert source.default_hz() == 4.0  # twice the analyzer's 500 ms interval
    finally:
        daemon.close()


def test_ptdaemon_closing_mid_run_is_a_fault_and_the_trace_is_kept(tmp_path):
    daemon = FakePtDaemon([300.0], close_after_watts=2)
    try:
        clock = Clock()
        meter = Meter(
            [PtdaemonSource("127.0.0.1", daemon.port, timeout_s=2, settle_s=0)],
            sample_hz=1e-3,
            clock=clock,
        )
        meter.start(tmp_path / "power.csv")
        _poll_at(meter, clock, [1, 2, 3])
        meter._stop.set()
        meter.stop()
        assert len(meter.faults) == 1 and "closed the connection" in meter.faults[0].cause
        assert meter.faults[0].t_ns == 2 * S
        assert (tmp_path / "power.csv").read_text().count("node:wall") == 2
    finally:
        daemon.close()


def test_ptdaemon_unreachable_is_a_meter_error():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(MeterError, match="cannot reach PTDaemon"):
        PtdaemonSource("127.0.0.1", port).open(0)


def test_ptd_reply_parsing():
    assert parse_watts("Watts,123.456") == 123.456
    assert parse_watts("Time,x,Watts,1.5e2,Volts,230") == 150.0
    assert parse_sample("Time,t,Watts,1.5,Mark,m") == {"Time": "t", "Watts": 1.5, "Mark": "m"}
    with pytest.raises(MeterError):
        parse_watts("Error: no data")


DCMI_OUTPUT = """
    Instantaneous power reading:                   412 Watts
    Minimum during sampling period:                 88 Watts
    Maximum during sampling period:                604 Watts
    Average power reading over sample period:      395 Watts
    IPMI timestamp:                           Sun Nov 22 17:00:00 2026
    Sampling period:                          00000001 Seconds.
    Power reading state is:                   activated
"""


def test_ipmi_dcmi_parsing_and_source(tmp_path):
    assert parse_dcmi_power(DCMI_OUTPUT) == 412.0
    with pytest.raises(MeterError, match="Instantaneous"):
        parse_dcmi_power("Error: DCMI not supported")
    fake_tool = tmp_path / "ipmitool"
    fake_tool.write_text("#!/bin/sh\ncat <<'EOF'\n" + DCMI_OUTPUT + "EOF\n")
    fake_tool.chmod(0o755)
    source = IpmiDcmiSource(f"{fake_tool} dcmi power reading")
    clock = Clock()
    source.clock = clock  # each reading is stamped after its read, on the meter's clock
    source.open(0)
    source.poll(0)
    clock.t = 2 * S
    assert source.poll(2 * S)[0].joules == pytest.approx(824.0)
    assert source.default_hz() == 1.0
    with pytest.raises(MeterError, match="not installed"):
        IpmiDcmiSource("/nonexistent/ipmitool dcmi power reading").open(0)


# -- composite --------------------------------------------------------------------------------
def test_composite_refuses_one_device_twice(tmp_path):
    from harness.meters.cpu_model import CpuModelSource

    root = make_rapl_tree(tmp_path / "powercap")
    with pytest.raises(MeterError, match="both measure cpu"):
        Meter([rapl.RaplSource(root), CpuModelSource(85.0)], sample_hz=10)
    # the same GPU under two names (index 0 in one process's view, index 1 in another's)
    gpu, other = FakeGpuState("GPU-aaaa", [0]), FakeGpuState("GPU-bbbb", [0])
    first = nvml.NvmlSource(nvml=fake_pynvml([gpu]), tick_s=0.1)
    second = nvml.NvmlSource(cuda_indices=[1], nvml=fake_pynvml([other, gpu]), tick_s=0.1)
    assert first.domains() == ["gpu:0"] and second.domains() == ["gpu:1"]
    with pytest.raises(MeterError, match="both measure gpu:GPU-aaaa"):
        Meter([first, second], sample_hz=10)


def test_wall_meter_is_the_total_and_devices_its_breakdown(tmp_path):
    daemon = FakePtDaemon([1000.0])
    try:
        wall = PtdaemonSource("127.0.0.1", daemon.port, settle_s=0)
        meter = Meter([SimulatedSource(300.0, "gpu:0"), wall], sample_hz=10)
        assert meter.total_domains == ["node:wall"]
        assert Meter([SimulatedSource(300.0, "gpu:0")], sample_hz=10).total_domains == ["gpu:0"]
    finally:
        daemon.close()


def test_auto_picks_measured_sources_and_falls_back_to_the_estimate(tmp_path, monkeypatch):
    from harness.config import MeterConfig

    cfg = MeterConfig()
    cfg.rapl.root = str(tmp_path / "none")
    monkeypatch.setattr(nvml, "load_pynvml", lambda: fake_pynvml([]))  # NVML present, no GPU
    names = [s.name for s in factory.build_sources(cfg)]
    assert names == ["cpu-model"]
    cfg.rapl.root = str(make_rapl_tree(tmp_path / "powercap"))
    monkeypatch.setattr(nvml, "load_pynvml", lambda: fake_pynvml([FakeGpuState("GPU-a", [0])]))
    cfg.nvml.tick_s = 0.1
    assert [s.name for s in factory.build_sources(cfg)] == ["nvml", "rapl"]
    cfg.source = "simulated+rapl"
    assert [s.name for s in factory.build_sources(cfg)] == ["simulated", "rapl"]


def test_the_sampler_records_its_reads_and_its_own_cpu_time(tmp_path, monkeypatch):
    """A real sampler thread timed to a ticking counter (the fake at the pynvml seam): the
    result's quality holds the hardware reads, reads a second over the span it ran, and the
    thread's own CPU time as a fraction of one core, all consistent with each other."""
    import time

    from tests.fakes import Staircase

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = FakeGpuState("GPU-aaaa", Staircase(500.0, 0.05))
    source = nvml.NvmlSource(nvml=fake_pynvml([gpu]), tick_s=0.05)
    meter = Meter([source])  # sample_hz unset: the reads are timed to the ticks
    meter.start(tmp_path / "power.csv")
    assert meter.timed_by_source(source)  # locked once open() knew the period
    time.sleep(0.6)
    meter.stop()
    (desc, polls_per_s), *_ = meter.describe()
    q = desc.quality
    count, first, last = meter._polls[id(source)]
    span_s = (last - first) / 1e9
    assert 4 <= q["reads"] <= count  # a poll reads the GPU at most once (none if not due)
    assert q["reads_per_s"] == pytest.approx(q["reads"] / span_s, rel=1e-2)
    assert 0 < q["sampler_cpu_s"] <= span_s + 0.5  # one thread: at most the wall time it ran
    assert q["sampler_cpu_core_fraction"] == pytest.approx(q["sampler_cpu_s"] / span_s, rel=1e-2)


def test_a_sampler_over_its_cpu_budget_is_a_warning_with_its_cost():
    from harness.results.assemble import sampler_over_budget

    # 23 reads/s at 3.5 ms of CPU each (the cost the first H100 probe measured): 8.05% of a
    # core for one GPU, over 5%; for two GPUs the budget is 10%, and 8.05% is within it
    one_gpu = {"reads_per_s": 23.0, "sampler_cpu_core_fraction": 0.0805}
    said = sampler_over_budget(one_gpu, devices=1)
    assert said.startswith("its sampler thread used 8.1% of one core, 3.50 ms of CPU a read")
    assert "over the budget of 5% per device (5% for 1)" in said
    assert sampler_over_budget(one_gpu, devices=2) is None
    assert sampler_over_budget({"reads": 10}, devices=1) is None  # the cost was not measured
