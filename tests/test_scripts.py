"""The GPU scripts run end to end on CPU with a simulated meter (their logic, not their numbers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.slow


def _script(name: str, *args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_meter_bench_reports_overhead_agreement_and_spread(tmp_path):
    proc = _script(
        "meter_bench.py",
        "--benchmark",
        "lm-dense-tiny",
        "--meter",
        "simulated",
        "--pairs",
        "3",
        "--steps",
        "20",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "meter_bench.json").read_text())
    assert [p["order"] for p in report["pairs"]] == ["off-on", "on-off", "off-on"]
    s = report["summary"]
    assert s["pairs_done"] == 3
    overheads = [p["on"]["step_s"] / p["off_step_s"] - 1 for p in report["pairs"]]
    assert s["overhead_fraction"] == pytest.approx(sorted(overheads)[1])  # the median pair
    # a constant 100 W: the power integral equals the counter exactly, and each block's
    # J/step = 100 W x its step time
    assert s["power_integral_over_counter_mean"] == pytest.approx(1.0, abs=1e-6)
    for p in report["pairs"]:
        assert p["on"]["energy_per_step_j"] == pytest.approx(100.0 * p["on"]["step_s"], rel=0.02)
    per_step = [p["on"]["energy_per_step_j"] for p in report["pairs"]]
    mean = sum(per_step) / 3
    sd = (sum((x - mean) ** 2 for x in per_step) / 2) ** 0.5
    assert s["energy_per_step_cv"] == pytest.approx(sd / mean)
    assert "metering overhead on step time" in proc.stdout


def test_gpu_bench_table_on_cpu(tmp_path):
    proc = _script(
        "gpu_bench_torch.py",
        "--benchmarks",
        "lm-dense-tiny",
        "lm-moe-tiny",
        "--steps",
        "20",
        "--out",
        str(tmp_path),
        "meter=simulated",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "bench_torch.json").read_text())
    assert [r["benchmark"] for r in rows] == ["lm-dense-tiny", "lm-moe-tiny"]
    for r in rows:
        assert r["energy_per_step_j"] == pytest.approx(100.0 * r["step_ms"] / 1000, rel=0.05)
        assert r["energy_source"] == "simulated simulated" and r["mfu"] is None
    assert "| lm-moe-tiny |" in (tmp_path / "bench_torch.md").read_text()
