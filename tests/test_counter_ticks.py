"""Counters that tick: placing each tick, the staircase experiment, replayed staircases in real
runs, the tick period detection and rate, and energy-per-step spread that is tick-limited."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np
import pytest

from harness.meters.counter import (
    EnergyCurve,
    bracket_widths_s,
    detect_tick_period,
    poll_hz_for_tick,
    tick_points,
)
from harness.meters.meter import Meter
from harness.meters.series import Series
from harness.metrics import compute_metrics
from harness.timeline import Timeline, Window
from tests.fakes import FakeGpuState, Staircase, fake_pynvml
from tests.helpers import REPO, load_result

MS = 1_000_000


def test_each_new_value_sits_in_the_middle_of_its_bracket():
    # a 70 J tick every 100 ms (at 100 and 200 ms), polled every 40 ms: the first new value is
    # seen at 120 ms after a poll at 80 ms, the next at 200 ms after 160 ms. Each tick is one
    # period (give or take 2%) from the other, so each bracket is narrowed by the other's:
    # tick 1 in (160 - 102, 200 - 98] and (80, 120] -> (80, 102], placed at 91 ms;
    # tick 2 in (80 + 98, 120 + 102] and (160, 200] -> (178, 200], placed at 189 ms
    t = np.array([0, 40, 80, 120, 160, 200]) * MS
    j = np.array([0.0, 0.0, 0.0, 70.0, 70.0, 140.0])
    times, values = tick_points(t, j, 0.1)
    assert times.tolist() == pytest.approx([0.0, 91 * MS, 189 * MS])
    assert values.tolist() == [0.0, 70.0, 140.0]
    curve = EnergyCurve.from_polls({"gpu:0": (t, j)}, {"gpu:0": 0.1})
    assert curve.energy_at(140 * MS)["gpu:0"] == pytest.approx(70 + 70 * 49 / 98)
    assert bracket_widths_s(t, j, 0.1).tolist() == pytest.approx([0.022, 0.022])
    # without tick awareness the curve would go through the raw polls: 35 J at 100 ms, not 70 J
    assert np.interp(100 * MS, t, j) == pytest.approx(35.0)


def test_a_wide_bracket_between_tight_ones_is_narrowed_by_its_neighbours():
    """The tick lock's failure case: the read meant to precede the tick at 200 ms came late
    (205 ms), so tick 2's own bracket is (105, 205] and its midpoint 55 ms early. Its
    neighbours, bracketed to 5 ms, put it within (296 - 102, 301 - 98] = (194, 203]."""
    t = np.array([0, 96, 101, 205, 296, 301]) * MS
    j = np.array([0.0, 0.0, 70.0, 140.0, 140.0, 210.0])
    times, _ = tick_points(t, j, 0.1)
    assert times.tolist() == pytest.approx([0.0, 98.5 * MS, 198.5 * MS, 298.5 * MS])
    assert bracket_widths_s(t, j, 0.1).tolist() == pytest.approx([0.005, 0.009, 0.005])
    # a counter that is not regular (a tick 54 ms after the last): nothing is narrowed away
    # from its own bracket, whatever the period says
    t2 = np.array([0, 96, 101, 150, 155]) * MS
    j2 = np.array([0.0, 0.0, 70.0, 70.0, 140.0])
    assert tick_points(t2, j2, 0.1)[0].tolist() == pytest.approx([0.0, 98.5 * MS, 152.5 * MS])


def test_a_counter_faster_than_the_polls_sits_just_before_each_poll():
    # RAPL ticks every ~1 ms; polled every 100 ms each value is at most one tick old
    t = np.array([0, 100, 200]) * MS
    times, _ = tick_points(t, np.array([0.0, 10.0, 20.0]), 0.001)
    assert times.tolist() == [0.0, 99.5 * MS, 199.5 * MS]
    # a continuous domain (no tick) keeps every poll as it is
    assert tick_points(t, np.array([0.0, 10.0, 20.0]), None)[0].tolist() == [0, 100 * MS, 200 * MS]


def test_the_series_keeps_each_change_and_the_poll_before_it():
    series = Series()
    series.ticking = True
    rows = []
    for t, j in [(0, 0.0), (10, 0.0), (20, 0.0), (30, 5.0), (40, 5.0), (50, 5.0), (60, 9.0)]:
        rows += series.add(t * MS, j, 100.0)
    kept = series.arrays()
    assert kept.t_ns.tolist() == [0, 20 * MS, 30 * MS, 50 * MS, 60 * MS]
    assert [r[0] for r in rows] == kept.t_ns.tolist()  # streamed exactly what is kept
    series.add(70 * MS, 9.0, 100.0)
    assert series.arrays().t_ns[-1] == 70 * MS  # the latest poll shows while pending
    assert series.committed() == 5 and series.flush() == [(70 * MS, 9.0, 100.0)]
    series.add(400 * MS, 9.0, 100.0)  # standing still for 0.34 s: a row anyway (gaps stay short)
    assert series.committed() == 7


def test_the_staircase_experiment_before_and_after(tmp_path):
    """~1 s windows at 700 W, ticks every 93-100 ms: p95 error at most 1.5% at the default
    poll rate; the old reading (raw polls at 10 Hz) is several times worse."""
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "tick_experiment.py"),
            "--trials",
            "150",
            "--json",
            str(tmp_path / "tick.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "tick.json").read_text())
    assert "| after | default (100 Hz) |" in out.stdout
    assert report["setup"]["default_rate_hz"] == 100.0
    assert report["after_default_rate"]["p95_abs_error"] <= 0.015
    assert report["after_default_rate"]["median_abs_error"] <= 0.005
    assert report["before_10hz"]["p95_abs_error"] > 0.05  # the review's 7%
    assert report["before_10hz"]["median_abs_error"] > 0.02  # the review's 3%
    assert report["before_default_rate"]["p95_abs_error"] > 0.05  # rate alone does not fix it
    # issue 23: reads timed to the ticks hold p95 <= 0.5% at <= 25 reads a second, a quarter
    # of the fixed rate's reads for half its p95 error
    locked = report["after_tick_locked"]
    assert locked["p95_abs_error"] <= 0.005 and locked["reads_per_s"] <= 25.0
    assert report["after_default_rate"]["reads_per_s"] == pytest.approx(100.0, rel=0.01)
    assert locked["p95_abs_error"] < report["after_default_rate"]["p95_abs_error"]


def test_detection_finds_the_period_and_sets_the_rate():
    counter = Staircase(watts=700.0, tick_s=0.05)
    period = detect_tick_period(counter, max_duration_s=0.8)
    assert period == pytest.approx(0.05, rel=0.3)  # a loaded host delays a read or two
    assert poll_hz_for_tick(0.1) == 100.0 and poll_hz_for_tick(0.02) == 100.0
    assert poll_hz_for_tick(1.0) == 20.0
    static = detect_tick_period(lambda: 1, max_duration_s=0.05)
    assert static is None


@pytest.mark.parametrize(("tick_lock", "hz"), [(True, 2 / 0.04), (False, 100.0)])
def test_nvml_detects_the_tick_once_per_model_and_sets_its_read_rate(monkeypatch, tick_lock, hz):
    """Locked to the ticks: two reads a tick; a fixed rate: ten a tick (at most 100 Hz)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    from harness.meters.nvml import NvmlSource

    gpus = [FakeGpuState(f"GPU-{i}", Staircase(300.0, 0.04)) for i in range(2)]
    source = NvmlSource(nvml=fake_pynvml(gpus), tick_lock=tick_lock)
    source.open(0)
    ticks = source.tick_period_s()
    assert set(ticks) == {"gpu:0", "gpu:1"} and ticks["gpu:0"] == ticks["gpu:1"]
    assert ticks["gpu:0"] == pytest.approx(0.04, rel=0.05)
    assert source.default_hz() == pytest.approx(hz, rel=0.05)
    assert source.details()["gpus"][0]["tick_detected"] is True
    assert source.schedules_reads() is tick_lock


def _staircase_csv(path, watts=700.0, tick_s=0.097, seconds=60.0):
    """A recorded staircase: one row per tick, the counter's value at it."""
    taus = np.arange(0.0, seconds, tick_s)
    lines = ["t_ns,domain,watts,joules"] + [
        f"{int(round(t * 1e9))},gpu:0,{watts:.4f},{watts * t:.6f}" for t in taus
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
def test_a_replayed_staircase_under_a_real_run(in_tmp):
    """A real run metered by a replayed 700 W counter ticking every 97 ms: each window's energy
    is within the tick placement bound of 700 W x its duration, whatever this machine's speed:
    each edge is off by at most half the widest bracket, so a window by at most one bracket."""
    from harness.cli import main

    trace = _staircase_csv(in_tmp / "stair.csv")
    code = main(
        [
            "run",
            "meter=replay",
            f"meter.replay.path={trace}",
            "benchmark.max_steps=120",
            "benchmark.window_steps=20",
            "benchmark.eval_every_steps=120",
            "benchmark.target.threshold=9",
            "run_dir=r",
        ]
    )
    assert code == 0
    r = load_result(in_tmp / "r")
    (meter,) = r["meters"]
    assert meter["counter_tick_s"] == {"gpu:0": pytest.approx(0.097, rel=1e-6)}
    assert meter["sample_hz"] == 100.0
    rows = np.genfromtxt(in_tmp / "r" / "power.csv", delimiter=",", skip_header=1, usecols=(0, 3))
    widest = bracket_widths_s(rows[:, 0], rows[:, 1], 0.097).max()
    assert widest <= 0.097
    for w in r["windows"]:
        true_j = 700.0 * (w["t_end_ns"] - w["t_start_ns"]) / 1e9
        assert abs(w["energy_j"] - true_j) <= 700.0 * widest + 1e-6
    total = r["metrics"]["energy_total_j"]
    assert total == pytest.approx(700.0 * r["timing"]["duration_s"], abs=700.0 * widest + 1e-6)


def _timeline(window_s: float, windows: int = 6) -> Timeline:
    S = 1_000_000_000
    tl = Timeline(0, datetime(2026, 1, 1, tzinfo=timezone.utc), 0, 0, S, S)
    edges = [S + int(i * window_s * S) for i in range(windows + 1)]
    tl.windows = [
        Window(10 * i, 10 * i + 10, a, b, 1.0)
        for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    ]
    tl.run_stop_ns, tl.steps = edges[-1], 10 * windows
    return tl


def test_a_window_of_a_few_ticks_is_reported_as_tick_limited():
    from tests.test_metrics import _info

    def curve(t):
        return {"gpu:0": 700.0 * np.asarray(t) / 1e9}

    m, _, warnings = compute_metrics(
        _timeline(0.3), curve, 700.0, _info(), 10, ["gpu:0"], None, 0.1
    )
    eps = m.energy_per_step
    assert eps.tick_limited and eps.window_ticks_median == pytest.approx(3.0)
    assert eps.tick_resolution == pytest.approx(1 / 3)
    (line,) = [w for w in warnings if "tick-limited" in w]
    # 10 ticks of 100 ms at 30 ms a step: at least 34 steps a window
    assert "3.0 counter ticks of 100 ms" in line and "benchmark.window_steps >= 34" in line
    m, _, warnings = compute_metrics(
        _timeline(2.0), curve, 700.0, _info(), 10, ["gpu:0"], None, 0.1
    )
    assert not m.energy_per_step.tick_limited and m.energy_per_step.window_ticks_median == 20.0
    assert not [w for w in warnings if "tick-limited" in w]
    m, _, _ = compute_metrics(_timeline(0.3), curve, 700.0, _info(), 10, ["gpu:0"])
    assert not m.energy_per_step.tick_limited  # a continuous counter has no ticks to limit it


def test_stop_waits_for_a_tick_after_the_last_edge(tmp_path, monkeypatch):
    """The run's last edge is bracketed: the meter keeps polling until the counter ticks past it."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    from harness.meters.nvml import NvmlSource

    gpu = FakeGpuState("GPU-a", Staircase(500.0, 0.05))
    meter = Meter([NvmlSource(nvml=fake_pynvml([gpu]), tick_s=0.05)])
    meter.start(tmp_path / "power.csv")
    import time

    time.sleep(0.3)
    edge = meter.clock()
    meter.stop()
    series = meter.series["gpu:0"]
    assert series.last_change_ns is not None and series.last_change_ns > edge
    assert meter.warnings == []


def _drive(lock, tick_s: float, phase_s: float, seconds: float, late_s=lambda i: 0.0):
    """Read a staircase whenever the lock asks (each read `late_s(i)` late), on a fixed
    timeline: (read times in s, values)."""
    t, times, values, i = 0.0, [], [], 0
    while t < seconds:
        t = lock.next_read_ns(int(t * 1e9)) / 1e9 + late_s(i)
        value = int((t + phase_s) // tick_s)
        lock.observe(int(t * 1e9), value)
        times.append(t)
        values.append(value)
        i += 1
    return np.array(times), np.array(values)


def test_the_tick_lock_reads_twice_a_tick_and_brackets_each_within_its_margins():
    from harness.meters.counter import TickLock

    tick_s = 0.0973
    lock = TickLock(0.0966)  # detected 0.7% short, as a stalled detection read can leave it
    t, v = _drive(lock, tick_s, phase_s=0.031, seconds=20.0)
    steady = t > 2.0
    reads_per_tick = np.sum(steady) / 18.0 * tick_s
    assert 2.0 <= reads_per_tick <= 2.3  # a late tick costs a retry read or two
    widths = bracket_widths_s(t[steady] * 1e9, v[steady].astype(float), tick_s)
    # before 4 ms + after 1 ms, give or take the first retries
    assert np.median(widths) == pytest.approx(0.005, abs=0.0005) and widths.max() <= 0.0061
    assert lock.tick_s == pytest.approx(tick_s, rel=1e-3)  # re-estimated from its brackets
    assert lock.relocks == 0 and lock.locked


def test_the_tick_lock_relocks_after_a_late_read_and_a_phase_jump():
    from harness.meters.counter import TickLock

    lock = TickLock(0.1)
    late = {150: 0.02}  # the host delays read 150 by 20 ms: past the tick it was to precede
    t, v = _drive(lock, 0.1, 0.05, 10.0, late_s=lambda i: late.get(i, 0.0))
    assert lock.relocks == 1 and lock.locked
    widths = bracket_widths_s(t * 1e9, v.astype(float), 0.1)
    # that tick's own poll bracket is wide (the read came after it); its neighbours, locked
    # again at once, narrow it back under the lock's width
    changed = np.flatnonzero(np.diff(v)) + 1
    raw = t[changed] - np.maximum(t[changed - 1], t[changed] - 0.1)
    assert np.sum(raw > 0.012) == 1 and widths.max() <= 0.012
    # a counter whose phase moves by 40 ms (a driver that restarted its sampling loop)
    lock2 = TickLock(0.1)
    t1, _ = _drive(lock2, 0.1, 0.05, 5.0)
    t2, v2 = _drive_from(lock2, t1[-1], 0.1, 0.09, 5.0)
    assert lock2.relocks >= 1 and lock2.locked
    tail = t2 > t2[0] + 1.0
    w2 = bracket_widths_s(t2[tail] * 1e9, v2[tail].astype(float), 0.1)
    assert w2.max() <= 0.0061


def _drive_from(lock, t0: float, tick_s: float, phase_s: float, seconds: float):
    t, times, values = t0, [], []
    while t < t0 + seconds:
        t = lock.next_read_ns(int(t * 1e9)) / 1e9
        value = int((t + phase_s) // tick_s)
        lock.observe(int(t * 1e9), value)
        times.append(t)
        values.append(value)
    return np.array(times), np.array(values)


def test_tick_detection_is_not_fooled_by_a_stalled_read():
    """A stall of 0.3 s among 12 ticks of 100 ms (the audit's 0.63 s 'tick' under load): the
    period is still 100 ms; a failed read (None) is skipped, not taken for a value."""
    from harness.meters.counter import detect_tick_period, tick_period_from_changes

    changes = [i * 100e6 for i in range(6)] + [i * 100e6 + 3e4 for i in range(9, 15)]
    assert tick_period_from_changes(changes) == pytest.approx(0.1, rel=1e-3)
    assert tick_period_from_changes([0, 1e8]) is None
    clock = {"t": 0}

    def now():
        clock["t"] += 1_000_000  # 1 ms a read, on a fixed timeline
        return clock["t"]

    reads = iter(range(100000))

    def read():
        i = next(reads)
        return None if i % 7 == 3 else (clock["t"] // 100_000_000)  # every 7th read fails

    monkey_sleep = __import__("time").sleep
    try:
        __import__("time").sleep = lambda s: None
        assert detect_tick_period(read, clock=now) == pytest.approx(0.1, rel=0.02)
    finally:
        __import__("time").sleep = monkey_sleep
