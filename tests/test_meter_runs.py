"""Meters inside real runs: a GPU lost mid-run, the idle baseline, a wall meter as the total."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.meters import nvml
from harness.results.schema import check_result
from tests.fakes import FakeGpuState, FakePtDaemon, fake_pynvml
from tests.helpers import load_result

pytestmark = pytest.mark.slow


def _counter_mj(n: int, step_mj: int = 50_000) -> list[int]:
    return [1_000_000 + i * step_mj for i in range(n)]


@pytest.mark.parametrize(("on_error", "expect_full_run"), [("continue", True), ("stop", False)])
def test_gpu_lost_mid_run_gives_meter_error_and_keeps_the_trace(
    in_tmp, monkeypatch, on_error, expect_full_run
):
    gpu = FakeGpuState("GPU-lost", _counter_mj(10_000))
    gpu.fail_after = 6  # the counter answers six reads, then the GPU falls off the bus
    monkeypatch.setattr(nvml, "load_pynvml", lambda: fake_pynvml([gpu]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    code = main(
        [
            "run",
            "meter=nvml",
            "meter.sample_hz=20",
            "meter.nvml.tick_s=0.05",
            "meter.trust.check=false",  # the counter is scripted per read: no span to check
            f"meter.on_error={on_error}",
            "benchmark.max_steps=60",
            "benchmark.target.threshold=0.01",
            "run_dir=r",
        ]
    )
    r = load_result(in_tmp / "r")
    assert code == 1 and r["status"] == "meter_error"
    (fault,) = r["meter_faults"]
    assert fault["source"] == "nvml" and "GPU is lost" in fault["cause"].replace("_", " ")
    rows = (in_tmp / "r" / "power.csv").read_text().splitlines()[1:]
    # six counter reads: one at open, five polls; what was measured stays
    assert len(rows) == 5 and all(row.split(",")[1] == "gpu:0" for row in rows)
    assert (r["metrics"]["steps"] == 60) is expect_full_run
    assert check_result(r) == []


def test_idle_baseline_is_reported_not_subtracted(in_tmp):
    assert (
        main(
            [
                "run",
                "meter=simulated",
                "meter.watts=80",
                "meter.idle_seconds=0.3",
                "benchmark.max_steps=20",
                "benchmark.target.threshold=9",
                "run_dir=r",
            ]
        )
        == 0
    )
    r = load_result(in_tmp / "r")
    (meter,) = r["meters"]
    assert meter["idle_power_w"] == {"sim:0": pytest.approx(80.0, rel=1e-6)}
    m = r["metrics"]
    assert m["energy_total_j"] == pytest.approx(
        80.0 * r["timing"]["duration_s"], rel=1e-6
    )  # gross stays gross
    assert m["energy_above_idle_j"] == pytest.approx(
        0.0, abs=1e-6
    )  # constant power: nothing above idle


def test_wall_meter_total_with_device_breakdown(in_tmp):
    daemon = FakePtDaemon([500.0])
    try:
        assert (
            main(
                [
                    "run",
                    "meter.source=simulated+ptdaemon",
                    f"meter.ptdaemon.port={daemon.port}",
                    "meter.ptdaemon.host=127.0.0.1",
                    "meter.ptdaemon.settle_s=0",
                    "meter.watts=200",
                    "meter.domain=gpu:0",
                    "meter.sample_hz=20",
                    "benchmark.max_steps=20",
                    "benchmark.target.threshold=9",
                    "run_dir=r",
                ]
            )
            == 0
        )
    finally:
        daemon.close()
    r = load_result(in_tmp / "r")
    roles = {m["name"]: m["role"] for m in r["meters"]}
    assert roles == {"simulated": "device", "ptdaemon": "total"}
    m = r["metrics"]
    # the total is the wall reading (500 W), the simulated GPU (200 W) is its breakdown
    assert m["energy_total_j"] == pytest.approx(m["energy_by_domain_j"]["node:wall"])
    assert m["energy_total_j"] == pytest.approx(500.0 * r["timing"]["duration_s"], rel=0.02)
    assert m["energy_by_domain_j"]["gpu:0"] == pytest.approx(
        200.0 * r["timing"]["duration_s"], rel=1e-6
    )


def test_meters_command_lists_every_source(capsys):
    assert main(["meters"]) == 0
    out = capsys.readouterr().out
    for name in ("nvml", "rapl", "ptdaemon", "ipmi", "tpu", "cpu-model", "simulated", "replay"):
        assert f"\n{name} " in out
    assert "meter=auto uses" in out
