"""Trust at open: a counter is believed only once it agrees with the same device's power.

The real NvmlSource over an autospecced pynvml, on a fake clock, so the span and the counter's
ticks are the same on a busy machine and an idle one."""

from __future__ import annotations

import re

import pytest

from harness.errors import MeterError
from harness.meters import nvml
from harness.meters.meter import Meter
from harness.meters.trust import TrustSettings, judge
from tests.fakes import FakeGpuState, Staircase, fake_pynvml

pytest.importorskip("pynvml")


class Clock:
    def __init__(self, step_ns: int = 1_000_000):
        self.t, self.step_ns = 0, step_ns

    def __call__(self):
        self.t += self.step_ns
        return self.t


def _source(counter_w: float, power_w: float, on_mismatch="estimate", tmp_path=None):
    clock = Clock()
    gpu = FakeGpuState("GPU-a", Staircase(counter_w, 0.05, clock=clock), int(power_w * 1000))
    trust = TrustSettings(span_s=1.0, tolerance=0.05, on_mismatch=on_mismatch, pause_s=0.0)
    source = nvml.NvmlSource(nvml=fake_pynvml([gpu]), tick_s=0.05, trust=trust)
    meter = Meter([source], sample_hz=1e-3, clock=clock)
    return meter, source


def test_a_counter_that_agrees_with_power_passes_and_the_figures_are_recorded(tmp_path):
    meter, source = _source(300.0, 300.0)
    meter.start(tmp_path / "power.csv")
    meter.stop()
    trust = source.gpus[0].trust
    assert trust["verdict"] == "pass" and trust["ticks"] >= 15
    # 300 W over the interval between the first and last tick, by both
    assert trust["counter_j"] == pytest.approx(300.0 * trust["interval_s"], rel=5e-3)
    assert abs(trust["counter_over_power"]) < 5e-3
    assert source.provenance == "measured" and source.gpus[0].has_counter
    assert source.details()["gpus"][0]["trust"]["verdict"] == "pass"


def test_a_counter_ten_percent_high_is_estimated_from_power(tmp_path):
    meter, source = _source(330.0, 300.0)
    meter.start(tmp_path / "power.csv")
    meter.poll()
    meter.stop()
    trust = source.gpus[0].trust
    assert trust["verdict"] == "fail" and trust["counter_over_power"] == pytest.approx(
        0.1, abs=3e-3
    )
    assert trust["energy_from"] == "power (estimated)"
    assert source.provenance == "estimated" and source.method == "power-sampling"
    assert not source.gpus[0].has_counter  # its energy is the power integral from now on
    rows = meter.series["gpu:0"].arrays()
    span_s = (rows.t_ns[-1] - rows.t_ns[0]) / 1e9
    assert rows.joules[-1] - rows.joules[0] == pytest.approx(300.0 * span_s, rel=1e-6)


def test_a_counter_ten_percent_high_is_refused_with_its_figures_on_one_line(tmp_path):
    meter, _ = _source(330.0, 300.0, on_mismatch="refuse")
    with pytest.raises(MeterError) as exc:
        meter.start(tmp_path / "power.csv")
    line = exc.value.one_line()
    assert (
        "\n" not in line and "gpu:0" in line and re.search(r"counter \+(9\.[5-9]|10\.[0-4])%", line)
    )
    assert "J by the counter" in line and "on_mismatch=estimate" in line


def test_judge_by_hand():
    ms = 1_000_000
    # a 1 J-per-tick counter ticking every 100 ms, read every 10 ms; power 10 W: agrees
    rows = [(i * 10 * ms, 1000 * (i // 10), 10.0) for i in range(101)]
    verdict = judge(rows, 1e-3, 0.05, tick_s=0.1)
    assert verdict["verdict"] == "pass" and verdict["ticks"] == 10
    assert verdict["counter_j"] == pytest.approx(9.0)  # ticks 1..10: 9 J over 0.9 s
    assert verdict["power_integral_j"] == pytest.approx(9.0, rel=1e-3)
    # the same counter read against 9 W: +11%
    worse = judge([(t, c, 9.0) for t, c, _ in rows], 1e-3, 0.05, tick_s=0.1)
    assert worse["verdict"] == "fail" and worse["counter_over_power"] == pytest.approx(1 / 9, 1e-3)
    backwards = [*rows[:50], (rows[50][0], 0, 10.0), *rows[51:]]
    assert judge(backwards, 1e-3, 0.05)["verdict"] == "fail"
    slow = [(i * 10 * ms, 5000, 10.0) for i in range(100)]  # a kWh register that never moved
    assert judge(slow, 1e-3, 0.05)["verdict"] == "inconclusive"
    no_power = [(t, c, float("nan")) for t, c, _ in rows]
    assert judge(no_power, 1e-3, 0.05)["verdict"] == "inconclusive"


def test_div_002_rejudges_the_recorded_trust_check():
    """A meter claiming measured with a failed or out-of-tolerance check is a finding; the
    estimated fallback and a passing check are not."""
    from types import SimpleNamespace

    from harness.submission.group_checks import GroupChecks
    from harness.submission.ruleset import load_ruleset

    class Checks(GroupChecks):
        def __init__(self):
            self.rules, self.found = load_ruleset("v1"), []

        def add(self, rule, file, message):
            self.found.append((rule, message))

    def findings(provenance, trust, name="amdsmi"):
        meter = {"name": name, "method": "energy-counter", "provenance": provenance}
        meter["details"] = {"gpus": [{"domain": "gpu:0", "trust": trust}]}
        checks = Checks()
        checks._check_meter_claims(SimpleNamespace(rel="r", result={"meters": [meter]}))
        return checks.found

    assert findings("measured", {"verdict": "pass", "counter_over_power": 0.01}) == []
    assert findings("estimated", {"verdict": "fail", "counter_over_power": 0.1}) == []
    ((rule, message),) = findings("measured", {"verdict": "pass", "counter_over_power": 0.08})
    assert rule == "DIV-002" and "0.08 against its power" in message and "tolerance 0.05" in message
    assert findings("measured", {"verdict": "fail", "reason": "went backwards"})[0][0] == "DIV-002"
    assert findings("estimated", {"verdict": "pass"}, name="ptdaemon")[0][0] == "DIV-002"
