"""`joulebench run` end to end on CPU: the issue's acceptance points, through the CLI."""

from __future__ import annotations

import json
import signal
import statistics
import time
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.results.mllog import parse_mllog
from harness.results.schema import check_result
from harness.results.writer import sha256_file
from tests.helpers import cli_subprocess, load_result

pytestmark = pytest.mark.slow


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.glob("results/runs/*/*/*/result.json"))


@pytest.fixture(scope="module")
def simulated_run(tmp_path_factory):
    """One default run with the simulated 100 W meter, shared by the checks below."""
    root = tmp_path_factory.mktemp("sim")
    import os

    old = os.getcwd()
    os.chdir(root)
    try:
        code = main(["run", "meter=simulated", "meter.watts=100"])
    finally:
        os.chdir(old)
    (run_dir,) = _run_dirs(root)
    return code, run_dir, load_result(run_dir)


def test_default_layout_and_files(simulated_run):
    code, run_dir, result = simulated_run
    assert code == 0
    assert run_dir.parent.name == "torch" and run_dir.parent.parent.name == "lm-dense-tiny"
    assert run_dir.name.endswith(result["run_id"])
    assert {p.name for p in run_dir.iterdir()} == {
        "result.json",
        "power.csv",
        "mllog.txt",
        "config.yaml",
    }
    assert check_result(result) == []
    assert result["status"] == "success" and result["metrics"]["reached_target"]


def test_energy_per_step_is_watts_times_window_time(simulated_run):
    _, _, r = simulated_run
    k = r["metrics"]["energy_per_step"]["steps_per_window"]
    full = [w for w in r["windows"] if w["step_end"] - w["step_start"] == k]
    mean_window_s = statistics.fmean((w["t_end_ns"] - w["t_start_ns"]) / 1e9 for w in full)
    assert r["metrics"]["energy_per_step"]["mean_j"] == pytest.approx(
        100.0 * mean_window_s / k, rel=0.01
    )


def test_energy_to_target_is_watts_times_time_to_target(simulated_run):
    _, _, r = simulated_run
    assert r["metrics"]["energy_to_target_j"] == pytest.approx(
        100.0 * r["timing"]["time_to_target_s"], rel=0.01
    )
    first_hit = next(e for e in r["metrics"]["evals"] if e["reached_target"])
    assert first_hit["eval_loss"] <= r["target_threshold"]
    assert all(
        not e["reached_target"] for e in r["metrics"]["evals"][:-1]
    )  # stops at the first hit


def test_result_records_config_hashes_and_provenance(simulated_run):
    _, run_dir, r = simulated_run
    for name, digest in r["files"].items():
        assert sha256_file(run_dir / name) == digest
    assert r["config_sha256"] == sha256_file(run_dir / "config.yaml")
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == r["config"]
    (meter,) = r["meters"]
    assert (meter["name"], meter["provenance"], meter["domains"]) == (
        "simulated",
        "simulated",
        ["sim:0"],
    )
    assert r["schema_version"] == "1"
    c = r["carbon"]
    assert c["location_based"]["kg_co2e"] == pytest.approx(
        r["metrics"]["energy_total_j"] / 3.6e6 * c["pue"] * 475.0 / 1000.0
    )


def test_trace_covers_the_run(simulated_run):
    _, run_dir, r = simulated_run
    rows = (run_dir / "power.csv").read_text().splitlines()[1:]
    t = [int(row.split(",")[0]) for row in rows]
    assert t == sorted(t)
    assert t[0] <= r["timing"]["run_start_ns"] and t[-1] >= r["timing"]["run_stop_ns"]


def test_mllog_is_mlperf_format_and_agrees_with_result(simulated_run):
    _, run_dir, r = simulated_run
    text = (run_dir / "mllog.txt").read_text()
    assert all(line.startswith(":::MLLOG {") for line in text.splitlines())
    records = parse_mllog(text)
    keys = [rec["key"] for rec in records]
    for key in ("submission_benchmark", "seed", "run_start", "eval_accuracy", "run_stop"):
        assert key in keys
    assert all(isinstance(rec["time_ms"], int) for rec in records)
    by_key = {rec["key"]: rec for rec in records}
    assert by_key["submission_benchmark"]["value"] == "lm-dense-tiny"
    assert by_key["run_stop"]["metadata"]["status"] == "success"
    span_ms = by_key["run_stop"]["time_ms"] - by_key["run_start"]["time_ms"]
    assert span_ms == pytest.approx(r["timing"]["duration_s"] * 1000, abs=2)
    evals = [rec["value"] for rec in records if rec["key"] == "eval_accuracy"]
    assert evals == pytest.approx([e["eval_loss"] for e in r["metrics"]["evals"]])


def test_mllog_discloses_what_mlcommons_common_rules_ask(simulated_run):
    """training_6.1.0/common.yaml's keys, blocks that pair up, samples counted, real callers."""
    _, run_dir, r = simulated_run
    records = parse_mllog((run_dir / "mllog.txt").read_text())
    first = {}
    for rec in records:
        first.setdefault(rec["key"], rec)
    cfg = r["config"]["benchmark"]
    batch = cfg["global_batch"]
    expected = {
        "submission_org": "",
        "submission_division": "open",
        "submission_status": "onprem",
        "cache_clear": False,
        "train_samples": r["workload"]["extra"]["train_sequences"],
        # synthetic data: the eval set is data.eval_tokens' worth, in whole batches
        "eval_samples": batch * -(-cfg["data"]["eval_tokens"] // (cfg["model"]["seq_len"] * batch)),
        "gradient_accumulation_steps": 1,
        "micro_batch_size": batch,
        "lowest_numerical_precision_in_linear": "fp32",  # CPU trains in fp32
        "lowest_numerical_precision_in_comm": "fp32",
        "tensor_parallelism": 1,
        "expert_parallelism": 1,
        "config_filename": "config.yaml",
        "opt_end_learning_rate": pytest.approx(cfg["optim"]["lr"] * cfg["optim"]["min_lr_ratio"]),
        "opt_learning_rate_decay_steps": cfg["max_steps"] - cfg["optim"]["lr_warmup_steps"],
        "max_sequence_length": cfg["model"]["seq_len"],
    }
    assert {k: first[k]["value"] for k in expected} == expected
    assert r["workload"]["extra"]["train_sequences"] == cfg["data"]["train_tokens"] // 64
    keys = [rec["key"] for rec in records]
    assert keys.index("init_start") > keys.index("config_filename")  # disclosed before init
    blocks = [rec for rec in records if rec["key"] in ("block_start", "block_stop")]
    assert [b["key"] for b in blocks] == ["block_start", "block_stop"] * (len(blocks) // 2)
    assert blocks[0]["time_ms"] == first["run_start"]["time_ms"]
    assert blocks[-1]["key"] == "block_stop" and blocks[0]["metadata"]["samples_count"] == 0
    steps = [e["step"] for e in r["metrics"]["evals"]]
    stops = [b["metadata"]["samples_count"] for b in blocks if b["key"] == "block_stop"]
    assert stops == [s * batch for s in steps]  # each block ends at an eval
    accuracy = [rec["metadata"] for rec in records if rec["key"] == "eval_accuracy"]
    assert [m["samples_count"] for m in accuracy] == [s * batch for s in steps]
    root = Path(__file__).resolve().parent.parent
    for rec in (first["run_start"], first["eval_accuracy"], first["block_stop"]):
        line = (
            (root / rec["metadata"]["file"]).read_text().splitlines()[rec["metadata"]["lineno"] - 1]
        )
        assert "mllog.event(" in line  # the call that logged it, as mlcommons/logging records


def test_multirun_gives_one_directory_per_seed(in_tmp, capsys):
    assert main(
        [
            "run",
            "-m",
            "seed=1,2,3",
            "meter=simulated",
            "benchmark.max_steps=20",
            "benchmark.eval_every_steps=10",
            "benchmark.warmup_steps=1",
        ]
    ) in (0, 1)
    dirs = _run_dirs(in_tmp)
    assert len(dirs) == 3
    assert sorted(load_result(d)["seed"] for d in dirs) == [1, 2, 3]
    assert "job 3/3: seed=3" in capsys.readouterr().out


def test_max_steps_without_target_is_target_not_reached(in_tmp):
    assert (
        main(
            [
                "run",
                "meter=simulated",
                "benchmark.max_steps=20",
                "benchmark.target.threshold=0.01",
                "run_dir=out",
            ]
        )
        == 1
    )
    r = load_result(in_tmp / "out")
    assert r["status"] == "target_not_reached"
    assert r["metrics"]["reached_target"] is False and r["metrics"]["energy_to_target_j"] is None
    assert r["metrics"]["steps"] == 20
    assert r["metrics"]["evals"][-1]["step"] == 20  # a final eval at max_steps


def test_auto_meter_is_the_estimated_cpu_model_here(in_tmp):
    main(["run", "benchmark.max_steps=10", "benchmark.target.threshold=0.01", "run_dir=auto"])
    (meter,) = load_result(in_tmp / "auto")["meters"]
    assert (meter["name"], meter["provenance"], meter["method"]) == (
        "cpu-model",
        "estimated",
        "tdp-model",
    )


def test_console_script_summary_and_exit_codes(tmp_path):
    ok = cli_subprocess(
        ["run", "meter=simulated", "benchmark.max_steps=20", "benchmark.target.threshold=9"],
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert "energy per step" in ok.stdout and "energy to target" in ok.stdout
    assert "simulated: simulated (energy-counter) on sim:0" in ok.stdout
    assert "\r" not in ok.stderr  # no progress line when output is not a terminal
    for bad in ("benchmark=nope", "meter.watts=-5"):
        proc = cli_subprocess(["run", bad], cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_sigint_leaves_an_aborted_result_and_the_trace(tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "meter=simulated",
            "benchmark.max_steps=100000",
            "benchmark.target.threshold=0",
            "run_dir=sig",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    result_file = tmp_path / "sig" / "result.json"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the timed run has started
        if (
            result_file.exists()
            and json.loads(result_file.read_text())["timing"]["run_start_ns"] > 0
            and len((tmp_path / "sig" / "power.csv").read_text().splitlines()) > 3
        ):
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    r = load_result(tmp_path / "sig")
    assert r["status"] == "aborted"
    assert r["timing"]["run_stop_ns"] is not None and r["metrics"]["steps"] > 0
    assert len((tmp_path / "sig" / "power.csv").read_text().splitlines()) > 3
    assert check_result(r) == []
    assert "Traceback" not in err


def test_tiny_moe_reaches_its_target_and_logs_router_stats(in_tmp):
    assert main(["run", "benchmark=lm-moe-tiny", "meter=simulated", "run_dir=moe"]) == 0
    r = load_result(in_tmp / "moe")
    assert r["status"] == "success" and r["metrics"]["reached_target"]
    assert r["workload"]["model_kind"] == "moe"
    assert r["workload"]["params_total"] > r["workload"]["params_active"]
    window = r["windows"][-1]
    assert set(window["stats"]) == {"train_loss", "aux_loss", "z_loss", "dropped_frac"}
    assert len(window["expert_load"]) == 4 and sum(window["expert_load"]) == pytest.approx(1.0)
    # per-step router statistics in the MLPerf log, one line per step
    steps = [
        rec
        for rec in parse_mllog((in_tmp / "moe" / "mllog.txt").read_text())
        if rec["key"] == "tracked_stats"
    ]
    assert [rec["metadata"]["step"] for rec in steps] == list(range(1, r["metrics"]["steps"] + 1))
    aux = [rec["value"]["aux_loss"] for rec in steps]
    assert all(0 < a <= 0.01 * 4 for a in aux)  # alpha * N * sum f P lies in (0, alpha * N]
    assert sum(aux) / len(aux) == pytest.approx(0.01, rel=0.1)  # near alpha: routing stays balanced
    assert all(0.0 <= rec["value"]["dropped_frac"] < 0.5 for rec in steps)


@pytest.mark.parametrize("benchmark", ["lm-dense-tiny", "lm-moe-tiny"])
def test_jax_tiny_benchmarks_reach_their_targets(in_tmp, benchmark):
    pytest.importorskip("jax")
    assert (
        main(["run", "framework=jax", f"benchmark={benchmark}", "meter=simulated", "run_dir=j"])
        == 0
    )
    r = load_result(in_tmp / "j")
    assert r["status"] == "success" and r["workload"]["framework"] == "jax"
    assert r["workload"]["compiled"] is True and r["workload"]["device_count"] == 1
    assert r["metrics"]["evals"][-1]["eval_loss"] <= r["target_threshold"]
