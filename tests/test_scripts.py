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
        "--repeats",
        "2",
        "--steps",
        "20",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "meter_bench.json").read_text())
    assert len(report["step_s_meter_on"]) == len(report["step_s_meter_off"]) == 2
    # a constant 100 W: the power integral equals the counter exactly, and J/step = 100 W x step time
    assert report["power_integral_over_counter"] == pytest.approx([1.0, 1.0], abs=1e-6)
    for j, s in zip(report["energy_per_step_j"], report["step_s_meter_on"], strict=True):
        assert j == pytest.approx(100.0 * s, rel=0.05)
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
