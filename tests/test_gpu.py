"""GPU checks: run only where CUDA is present (`pytest -m gpu`); skipped on CPU machines and in CI."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("benchmark", ["lm-dense-tiny", "lm-moe-tiny"])
def test_tiny_benchmarks_on_gpu_are_measured_compiled_bf16(in_tmp, benchmark):
    from harness.cli import main

    code = main(
        ["run", f"benchmark={benchmark}", "meter=nvml", "run_dir=r", "benchmark.max_steps=400"]
    )
    r = json.loads((in_tmp / "r" / "result.json").read_text())
    assert code == 0 and r["status"] == "success"
    w = r["workload"]
    assert (w["device_kind"], w["precision"], w["compiled"]) == ("gpu", "bf16", True)
    assert r["meters"][0]["name"] == "nvml" and r["meters"][0]["provenance"] == "measured"
    assert r["metrics"]["energy_total_j"] > 0 and r["metrics"]["peak_device_memory_gb"] > 0
    gpu = r["meters"][0]["details"]["gpus"][0]
    assert gpu["energy_counter"] and gpu["at_start"]["power_limit_w"] > 0


def test_nvml_counter_agrees_with_instant_power_over_a_matmul_burst(tmp_path):
    import time

    from harness.meters.counter import power_integral_j
    from harness.meters.meter import Meter
    from harness.meters.nvml import NvmlSource
    from harness.metrics import energy_between

    meter = Meter([NvmlSource([torch.cuda.current_device()])])  # the rate follows the tick
    meter.start(tmp_path / "power.csv")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    t0 = meter.clock()
    end = time.monotonic() + 6.0
    while time.monotonic() < end:
        for _ in range(20):
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
    t1 = meter.clock()
    time.sleep(0.3)
    meter.stop()
    (domain,) = meter.series
    counter = energy_between(meter.energy_at, t0, t1)[domain]
    s = meter.series[domain].arrays()
    integral = power_integral_j(s.t_ns, s.watts, t0, t1)
    assert counter > 0 and integral == pytest.approx(counter, rel=0.05)
    # the tick was detected and the poll rate chosen from it (H100: ~100 ms, 100 Hz)
    ((desc, rate),) = meter.describe()
    assert 0.02 < desc.counter_tick_s[domain] < 0.2 and rate > 0.5 * desc.sample_hz
