"""The GPU campaign's CPU rehearsal: `JB_DEVICE=cpu bash scripts/gpu_check.sh`, end to end.

Every step runs on tiny benchmarks against the fake NVIDIA H200 of tests/rehearsal_nvml.py (an
autospec of the real pynvml; field values in its own c_nvmlFieldValue_t). The fake is broken
three ways in three steps, as a lent machine could be: NVML hangs (`meters`, which its timeout
must end), the energy field starts failing mid-run (`torch_loop`, which must fail rather than
pass with a lost meter), and NVML knows no GPU by torch's UUID (`probe`, which must say so and
still write its report). Every other step must pass and every output must come back.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
BROKEN = {"meters": "hang", "torch_loop": "field_error", "probe": "unknown_uuid"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JB_", "PYTEST_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rehearsal")
    out, work = tmp / "out", tmp / "work"
    faults = ",".join(f"{step}:{kind}" for step, kind in BROKEN.items())
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=REPO,
        env=_env(
            JB_DEVICE="cpu",
            OUT=str(out),
            JB_WORK=str(work),
            JB_FAKE_NVML_FAULT=faults,
            JB_LIMIT_meters="8",
            JB_TIME_SCALE="4",  # a loaded CPU is slow, not broken
        ),  # fmt: skip
        capture_output=True,
        text=True,
        timeout=1500,
    )
    with open(out / "steps.tsv") as f:
        steps = {row["step"]: row for row in csv.DictReader(f, delimiter="\t")}
    return proc, out, steps


@pytest.mark.slow
def test_each_broken_step_fails_alone_and_every_other_step_passes(rehearsal):
    proc, out, steps = rehearsal
    log = (out / "gpu_check.log").read_text()
    assert proc.returncode == 1, log[-3000:]  # a step failed, so the campaign says so
    assert list(steps) == [
        "nvidia_smi", "probe", "meters", "gpu_tests", "jax_tiny_moe", "torch_loop",
        "meter_bench", "torchrun", "reference_pair", "torch_dense_medium", "torch_moe_medium",
        "jax_dense_medium",
    ]  # fmt: skip
    failed = {name for name, row in steps.items() if row["exit"] != "0"}
    assert failed == set(BROKEN), log[-6000:]
    # the hang was ended by its own timeout (timeout's 124, or the step's own SIGINT exit)
    assert steps["meters"]["exit"] in ("124", "130", "137")
    assert float(steps["meters"]["seconds"]) < 8 + 5 + 5  # its limit, the kill grace, slack
    # the loop reached its target, but its counter was lost: the step fails on the result
    failed_line = next(line for line in log.splitlines() if "run_status: FAILED" in line)
    assert "torch-loop: status meter_error (meter faults: gpu:0: Unknown Error" in failed_line


@pytest.mark.slow
def test_every_output_comes_back_and_fits_the_device_tool(rehearsal):
    _, out, _ = rehearsal
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "gpu.tar.gz", "gpu_check.log", "meter_bench.json", "probe.json", "reference.tar.gz",
        "steps.tsv", "summary.json",
    ]  # fmt: skip
    assert len(files) <= 8  # the device tool returns at most 8 files

    probe = json.loads((out / "probe.json").read_text())
    assert probe["uuid_match"]["matched"] is False  # the broken lookup is reported...
    assert any("knows no GPU" in p for p in probe["problems"])
    assert probe["fields"]["return_codes"]["energy"] == {"0": 200}  # ...and the rest measured
    # the fake ticks every 0.1 s of real time, and the probe sees it through a CPU that may be
    # busy: here only that a tick of that order was found and reported. How exactly ticks are
    # detected is pinned on replayed timelines (tests/test_counter_ticks.py), not on this clock.
    assert 0.05 < probe["tick"]["tick_s"] < 0.2

    bench = json.loads((out / "meter_bench.json").read_text())
    assert bench["summary"]["pairs_done"] == 3
    # the fake's counter is the exact integral of its power curve
    assert bench["summary"]["power_integral_over_counter_mean"] == pytest.approx(1.0, abs=0.03)


def probe_tick(out):
    return json.loads((out / "probe.json").read_text())["tick"]["tick_s"]


@pytest.mark.slow
def test_the_summary_has_every_key_from_the_run_outputs(rehearsal):
    _, out, _ = rehearsal
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "device", "date", "nvml_field_values_call_s", "nvml_tick_s", "meter_overhead_frac",
        "counter_vs_power_integral_frac", "energy_per_step_cv", "mfu_dense_medium_torch",
        "mfu_moe_medium_torch", "jax_over_torch_tokens_per_s_dense_medium",
        "moe_over_dense_energy_to_target", "sources",
    ):  # fmt: skip
        assert key in summary, key
    assert summary["device"] == "NVIDIA H200"  # what NVML (the fake) named
    assert summary["nvml_tick_s"] == probe_tick(out)  # copied from the probe, not measured again
    assert summary["jax_over_torch_tokens_per_s_dense_medium"] > 0
    ratio = summary["moe_over_dense_energy_to_target"]
    assert ratio["min"] <= ratio["olympic"] <= ratio["max"]
    # on a CPU there is no peak FLOP/s, and the summary says why instead of guessing
    assert summary["mfu_dense_medium_torch"] is None
    assert "mfu_dense_medium_torch" in summary["not_measured"]


@pytest.mark.slow
def test_the_reference_pair_is_packaged_valid_and_reported(rehearsal, tmp_path):
    _, out, steps = rehearsal
    assert steps["reference_pair"]["exit"] == "0"
    with tarfile.open(out / "reference.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    ref = tmp_path / "reference"
    pair = json.loads((ref / "pair.json").read_text())
    assert pair["validate_exit"] == 0 and pair["report_exit"] == 0
    assert (ref / "report" / "dense_vs_moe.png").stat().st_size > 1000
    # validated again here, from the archive alone: the package is self-contained
    from harness.cli import main

    assert main(["validate", str(ref / "submission")]) == 0


def test_print_plan_names_the_steps_the_wheels_and_the_device_call():
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--print-plan"], capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 0
    assert "reference_pair" in proc.stdout and "antlr4_python3_runtime-4.9.3" in proc.stdout
    assert 'run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=500)' in proc.stdout
    budgets = [line.split() for line in proc.stdout.splitlines()[2:14]]
    assert sum(int(b[1]) for b in budgets[:9]) <= 470  # everything but speed fits the budget


def test_without_hydra_or_wheels_it_stops_in_one_line(tmp_path):
    """The device image has no hydra-core: without .whl/ every step would die on an import,
    so the script refuses to start instead."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / "gpu_check.sh")
    shim = tmp_path / "bin"
    shim.mkdir()
    # the same interpreter without site-packages: no hydra-core, as on the device image
    (shim / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} -I -S "$@"\n')
    (shim / "python3").chmod(0o755)
    env = _env(OUT=str(tmp_path / "out"), JB_WORK=str(tmp_path / "work"))
    env["PATH"] = f"{shim}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "gpu_check.sh")], capture_output=True, text=True,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "gpu_check: hydra-core is not importable and .whl/ is missing: run 'bash "
        "scripts/device_wheels.sh' here and carry .whl in the device call."
    ]
