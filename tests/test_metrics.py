"""Metrics from a timeline and an energy curve, against hand-computed numbers."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from harness.metrics import compute_metrics, energy_per_step_stats
from harness.timeline import EvalPoint, Timeline, Window
from workloads.base import WorkloadInfo

S = 1_000_000_000


def _info(peak=None):
    return WorkloadInfo(
        framework="torch",
        framework_version="x",
        model_kind="dense",
        params_total=10,
        params_active=10,
        flops_per_token=1e9,
        tokens_per_step=1000,
        precision="bf16",
        compiled=True,
        device_kind="gpu",
        device_name="NVIDIA H100 80GB HBM3",
        device_count=1,
        peak_flops_per_s=peak,
    )


def _timeline():
    tl = Timeline(
        anchor_ns=0,
        anchor_utc=datetime(2026, 1, 1, tzinfo=timezone.utc),
        init_start_ns=0,
        warmup_start_ns=0,
        warmup_stop_ns=2 * S,
        run_start_ns=2 * S,
        run_stop_ns=9 * S,
        steps=25,
    )
    # two full windows of 10 steps (2 s and 3 s), an eval (1 s), a partial window of 5 steps
    tl.windows = [
        Window(0, 10, 2 * S, 4 * S, 1.0),
        Window(10, 20, 4 * S, 7 * S, 0.9),
        Window(20, 25, 8 * S, 9 * S, 0.8),
    ]
    tl.evals = [EvalPoint(20, 7 * S, 8 * S, 0.5, True)]
    return tl


def _power_200w(t_ns):  # 200 W from t=0, on one domain
    return {"gpu:0": 200.0 * t_ns / S}


def test_energy_per_step_and_to_target_by_hand():
    m, windows, warnings = compute_metrics(_timeline(), _power_200w, 210.0, _info(peak=1e12), 10)
    assert [w.energy_j for w in windows] == pytest.approx([400.0, 600.0, 200.0])
    # per-step energy over the two full windows: 40 J and 60 J
    assert m.energy_per_step.mean_j == pytest.approx(50.0)
    assert m.energy_per_step.windows == 2
    assert m.energy_per_step.std_j == pytest.approx(14.1421356, rel=1e-6)
    assert m.energy_total_j == pytest.approx(200.0 * 7)
    assert m.energy_to_target_j == pytest.approx(200.0 * 6)  # run_start (2 s) to eval end (8 s)
    assert m.evals[0].t_s == pytest.approx(6.0)
    assert m.warmup_energy_j == pytest.approx(400.0)
    # throughput over full windows: 20 steps x 1000 tokens / 5 s
    assert m.throughput_tokens_per_s == pytest.approx(4000.0)
    assert m.joules_per_token == pytest.approx(0.05)
    assert m.tokens_per_joule == pytest.approx(20.0)
    assert m.mfu == pytest.approx(1e9 * 4000 / 1e12)
    assert m.avg_power_w == pytest.approx(200.0)
    assert m.reached_target and warnings == []


def test_unknown_peak_gives_null_mfu_and_a_warning():
    m, _, warnings = compute_metrics(_timeline(), _power_200w, None, _info(peak=None), 10)
    assert m.mfu is None
    assert any("MFU is null" in w for w in warnings)


def test_energy_per_step_stats_spread():
    stats = energy_per_step_stats([10.0, 20.0, 30.0], 10)
    assert (stats.mean_j, stats.median_j, stats.min_j, stats.max_j) == (2.0, 2.0, 1.0, 3.0)
    assert stats.cv == pytest.approx(0.5)
    assert energy_per_step_stats([], 10) is None
