"""The composite meter: energy differencing at window edges, interpolation, faults, sources."""

from __future__ import annotations

import pytest

from harness.errors import MeterError
from harness.meters.base import MeterSource, Reading
from harness.meters.cpu_model import CpuModelSource
from harness.meters.meter import Meter
from harness.meters.simulated import SimulatedSource
from harness.metrics import energy_between


class FakeClock:
    def __init__(self, t_ns: int = 0):
        self.t_ns = t_ns

    def __call__(self) -> int:
        return self.t_ns


class StepCounter(MeterSource):
    """A counter that ticks in 10 J steps, like NVML's ~100 ms counter granularity."""

    name, method, provenance = "step-counter", "energy-counter", "measured"

    def __init__(self, domain="gpu:0", fail_after: int | None = None):
        self.domain, self.polls, self.fail_after = domain, 0, fail_after
        self.values = iter([0.0, 10.0, 30.0, 60.0, 100.0, 150.0])

    def domains(self):
        return [self.domain]

    def poll(self, t_ns):
        self.polls += 1
        if self.fail_after is not None and self.polls > self.fail_after:
            raise RuntimeError("GPU is lost")
        return [Reading(self.domain, next(self.values), None)]


def _meter_with_polls(tmp_path, source, times_ns):
    clock = FakeClock(times_ns[0])
    meter = Meter([source], sample_hz=1e-3, clock=clock)  # the thread never fires; polls are manual
    meter.start(tmp_path / "power.csv")
    for t in times_ns[1:]:
        clock.t_ns = t
        meter.poll()
    meter._stop.set()
    return meter, clock


def test_window_energy_is_the_counter_interpolated_at_the_edges(tmp_path):
    # counter: t=0s 0 J, 1s 10 J, 2s 30 J, 3s 60 J, 4s 100 J
    meter, _ = _meter_with_polls(
        tmp_path, StepCounter(), [0, 1_000_000_000, 2_000_000_000, 3_000_000_000, 4_000_000_000]
    )
    # window [0.5 s, 2.5 s]: 5 J at the start edge, 45 J at the end edge -> 40 J
    assert energy_between(meter.energy_at, 500_000_000, 2_500_000_000) == {
        "gpu:0": pytest.approx(40.0)
    }
    # an edge exactly on a poll takes the poll's value
    assert meter.energy_at(3_000_000_000)["gpu:0"] == pytest.approx(60.0)
    # adjacent windows add up to the enclosing one: nothing lost or counted twice at an edge
    a = energy_between(meter.energy_at, 200_000_000, 1_700_000_000)["gpu:0"]
    b = energy_between(meter.energy_at, 1_700_000_000, 3_900_000_000)["gpu:0"]
    assert a + b == pytest.approx(
        energy_between(meter.energy_at, 200_000_000, 3_900_000_000)["gpu:0"]
    )
    assert a == pytest.approx(0.7 * 20 + 10 - 2)  # 24 J - 2 J at 0.2 s


def test_trace_streams_every_poll(tmp_path):
    meter, _ = _meter_with_polls(tmp_path, StepCounter(), [0, 1_000_000_000, 2_000_000_000])
    lines = (tmp_path / "power.csv").read_text().splitlines()
    assert lines[0] == "t_ns,domain,watts,joules"
    assert lines[1:] == [
        "0,gpu:0,,0.000000",
        "1000000000,gpu:0,,10.000000",
        "2000000000,gpu:0,,30.000000",
    ]


def test_a_failing_source_is_recorded_and_the_trace_kept(tmp_path):
    meter, clock = _meter_with_polls(
        tmp_path, StepCounter(fail_after=2), [0, 1_000_000_000, 2_000_000_000]
    )
    assert len(meter.faults) == 1
    fault = meter.faults[0]
    assert (fault.t_ns, fault.source) == (2_000_000_000, "step-counter")
    assert "GPU is lost" in fault.cause
    clock.t_ns = 3_000_000_000
    meter.poll()  # the dead source is no longer polled
    meter.stop()
    assert (tmp_path / "power.csv").read_text().count("gpu:0") == 2


def test_one_domain_from_two_sources_is_refused():
    with pytest.raises(MeterError, match="counting it twice"):
        Meter([SimulatedSource(10, "gpu:0"), SimulatedSource(20, "gpu:0")], sample_hz=10)


def test_simulated_counter_is_watts_times_time(tmp_path):
    clock = FakeClock(5_000_000_000)
    meter = Meter([SimulatedSource(100.0)], sample_hz=1e-3, clock=clock)
    meter.start(tmp_path / "power.csv")
    clock.t_ns = 7_500_000_000
    meter.stop()
    assert energy_between(meter.energy_at, 5_000_000_000, 7_500_000_000) == {
        "sim:0": pytest.approx(250.0)
    }
    assert meter.power_peak_w(0, 10_000_000_000) == 100.0


def test_cpu_model_is_tdp_times_utilisation(tmp_path):
    class FakePsutil:
        def __init__(self):
            self.values = iter([0.0, 50.0, 25.0])

        def cpu_percent(self, interval=None):
            return next(self.values)

        def cpu_count(self, logical=True):
            return 4

    source = CpuModelSource(tdp_w=80.0)
    source._psutil = FakePsutil()
    source.open(0)
    # 2 s at 50 % of 80 W = 80 J; then 1 s at 25 % = 20 J
    assert source.poll(2_000_000_000) == [Reading("cpu:host", 80.0, 40.0)]
    assert source.poll(3_000_000_000) == [Reading("cpu:host", 100.0, 20.0)]
    assert source.describe().provenance == "estimated"
    assert source.describe().method == "tdp-model"


def test_the_background_sampler_polls_at_its_rate(tmp_path):
    import time

    meter = Meter([SimulatedSource(1.0)], sample_hz=50)
    meter.start(tmp_path / "power.csv")
    time.sleep(0.5)
    meter.stop()
    ((desc, rate),) = meter.describe()
    assert 25 <= rate <= 60  # 50 Hz nominal, a loaded 2-core CI box jitters
    assert len(meter.series["sim:0"].arrays().t_ns) >= 15


def test_queries_while_the_sampler_appends_never_see_torn_series(tmp_path):
    import time

    meter = Meter([SimulatedSource(50.0, "a"), SimulatedSource(70.0, "b")], sample_hz=1000)
    meter.start(tmp_path / "power.csv")
    t_start = meter.clock()
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # what provisional result writes do during a run
        now = meter.clock()
        energy = meter.energy_at(now)
        assert set(energy) == {"a", "b"}
        peak = meter.power_peak_w(t_start, now)
        assert peak is None or peak == pytest.approx(120.0)
    meter.stop()
    assert energy_between(meter.energy_at, t_start, meter.clock() - 1)["b"] > 0
