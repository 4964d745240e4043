"""Scale-out on CPU: torchrun with 2 gloo ranks (data and expert parallel), JAX with 2 processes
of 4 devices each, and one result per run with per-rank and per-node energies."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, cli_subprocess, load_result

pytest.importorskip("torch")

STEPS = ["meter=simulated", "meter.watts=100", "progress=off"]


def _torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "harness.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def dense_two_ranks(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    proc = _torchrun(["run", *STEPS, "benchmark.max_steps=40", f"output_dir={root}"], root)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: target not reached in 40 steps
    return root, proc


def test_two_ranks_write_exactly_one_result_with_per_rank_energy(dense_two_ranks):
    root, proc = dense_two_ranks
    results = list(root.rglob("result.json"))
    assert len(results) == 1  # rank 0 writes the one result
    run_dir = results[0].parent
    r = load_result(run_dir)
    assert proc.stdout.count("joulebench: lm-dense-tiny") == 1  # one summary, from rank 0
    d = r["distributed"]
    assert (d["world_size"], d["nnodes"], d["ranks_per_node"], d["launcher"], d["backend"]) == (
        2,
        1,
        2,
        "torchrun",
        "gloo",
    )
    assert r["system"]["world_size"] == 2 and r["workload"]["device_count"] == 2
    assert [x["domains"] for x in d["ranks"]] == [["node0/sim:0"], ["node0/sim:1"]]
    duration_s = r["timing"]["duration_s"]
    per_rank = [x["energy_j"] for x in d["ranks"]]
    # each rank's simulated 100 W device between the run_start and run_stop barriers as its
    # own clock saw them: rank 0's window, and rank 1's is rank 0's over its clock scale
    scales = d["clock_scales"]
    assert scales[0] == 1.0 and scales[1] == pytest.approx(1.0, abs=0.1)  # barrier jitter
    own = [100.0 * duration_s / k for k in scales]
    assert per_rank == pytest.approx(own, rel=1e-6)
    assert r["metrics"]["energy_total_j"] == pytest.approx(sum(per_rank), rel=1e-9)
    assert d["nodes"][0]["energy_j"] == pytest.approx(sum(per_rank), rel=1e-9)
    assert r["metrics"]["avg_power_w"] == pytest.approx(sum(own) / duration_s, rel=1e-6)
    # one merged trace with both ranks' domains, and no per-rank leftovers
    header, *rows = (run_dir / "power.csv").read_text().splitlines()
    assert {row.split(",")[1] for row in rows} == {"node0/sim:0", "node0/sim:1"}
    assert not (run_dir / ".ranks").exists()
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.yaml",
        "mllog.txt",
        "power.csv",
        "result.json",
    ]


def test_the_validator_recomputes_a_two_rank_run_from_its_merged_trace(dense_two_ranks):
    from harness.submission.findings import Run
    from harness.submission.ruleset import load_ruleset
    from harness.submission.run_checks import RunChecks

    root, _ = dense_two_ranks
    run_dir = next(root.rglob("result.json")).parent
    rel = run_dir.relative_to(root)
    found = []
    checks = RunChecks(root, load_ruleset("v1"), lambda rule, file, msg: found.append((rule, msg)))
    checks.check(Run(str(rel), "sys", "lm-dense-tiny", "torch"))
    assert found == []

    r = json.loads((run_dir / "result.json").read_text())
    r["distributed"]["nodes"][0]["energy_j"] *= 1.05  # a node total that does not add up
    r["distributed"]["ranks"][1]["domains"] = ["node0/sim:0"]  # one device owned twice
    duration_s = r["timing"]["duration_s"]
    # rank 1 timed 1 s more than rank 0: allowed 0.5 s + 200 ppm of the window
    r["distributed"]["clock_scales"][1] = duration_s / (duration_s + 1.0)
    (run_dir / "result.json").write_text(json.dumps(r))
    found.clear()
    checks.check(Run(str(rel), "sys", "lm-dense-tiny", "torch"))
    assert {"DIST-001", "DIST-003", "DIST-004"} <= {rule for rule, _ in found}
    (msg,) = [m for rule, m in found if rule == "DIST-004"]
    allowed = 0.5 + 200e-6 * duration_s
    expected = f"rank 1 timed {duration_s + 1:.3f} s between run_start and run_stop, "
    assert msg.startswith(
        expected + f"rank 0 {duration_s:.3f} s (allowed difference {allowed:.3f} s)"
    )


MOE = ["run", "benchmark=lm-moe-tiny", *STEPS, "benchmark.max_steps=30"]


@pytest.fixture(scope="module")
def moe_one_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("moe1")
    proc = cli_subprocess([*MOE, f"run_dir={root / 'one'}"], root)
    assert proc.returncode == 1, proc.stderr[-2000:]  # finished, target not reached in 30 steps
    return load_result(root / "one")


@pytest.mark.parametrize(
    "ranks, expert_parallel, layout",
    [
        (2, 0, (2, 1)),  # the default: 4 experts split 2 + 2 over both ranks
        (4, 2, (2, 2)),  # two expert groups of 2 ranks, data parallel across them
        (2, 1, (1, 2)),  # every rank keeps every expert: plain DDP
    ],
)
def test_expert_parallel_moe_trains_like_one_process(
    moe_one_process, tmp_path, ranks, expert_parallel, layout
):
    """launcher=torchrun spawns the ranks; tokens reach their experts by all-to-all within an
    expert group. Capacity is per routing group, so the losses equal the one-process run's
    step by step, whatever the layout."""
    two = cli_subprocess(
        [
            *MOE,
            "launcher=torchrun",
            f"launcher.nproc_per_node={ranks}",
            f"framework.expert_parallel={expert_parallel}",
            f"run_dir={tmp_path / 'multi'}",
        ],
        tmp_path,
        timeout=300,
    )
    assert two.returncode == 1, two.stderr[-3000:]  # finished, target not reached in 30 steps
    assert "ChildFailedError" not in two.stderr  # a finished run is not a crashed job
    a, b = moe_one_process, load_result(tmp_path / "multi")
    extra = b["workload"]["extra"]
    assert (extra["expert_parallel"], extra["expert_replicas"]) == layout
    assert b["workload"]["params_total"] == a["workload"]["params_total"]
    for wa, wb in zip(a["windows"], b["windows"], strict=True):
        assert wb["train_loss"] == pytest.approx(wa["train_loss"], abs=1e-5)
        for key in ("aux_loss", "z_loss", "dropped_frac"):
            assert wb["stats"][key] == pytest.approx(wa["stats"][key], abs=1e-6)
        assert wb["expert_load"] == pytest.approx(wa["expert_load"], abs=1e-6)
    assert b["metrics"]["final_eval_loss"] == pytest.approx(
        a["metrics"]["final_eval_loss"], abs=1e-5
    )


def test_an_expert_layout_that_does_not_divide_is_one_clear_line(tmp_path):
    proc = cli_subprocess(
        [*MOE, "benchmark.model.n_experts=3", "framework.expert_parallel=2", "launcher=torchrun"],
        tmp_path,
    )
    assert proc.returncode == 3  # a workload that cannot be built here
    assert "framework.expert_parallel=2 must divide both the world size (2) and" in proc.stderr
    assert "Traceback" not in proc.stderr


def _start(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    """`python -m harness.cli <args>` in the background, its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jax_two_processes_of_four_devices_match_one_process(tmp_path):
    pytest.importorskip("jax")
    common = [
        "run",
        "framework=jax",
        "benchmark=lm-moe-tiny",
        "framework.mesh.data=2",
        "framework.mesh.expert=4",
        *STEPS,
        "benchmark.max_steps=20",
        "benchmark.eval_every_steps=20",
    ]
    port = _free_port()
    base = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    procs = []
    for pid in (0, 1):
        env = {
            **base,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(pid),
        }
        args = [*common, "framework.distributed.enabled=true", f"run_dir={tmp_path / 'multi'}"]
        procs.append(_start(args, tmp_path, env))
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], outs[0][1][-3000:]
    env = {**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    single = subprocess.run(
        [sys.executable, "-m", "harness.cli", *common, f"run_dir={tmp_path / 'single'}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 1, single.stderr[-2000:]
    multi, one = load_result(tmp_path / "multi"), load_result(tmp_path / "single")
    d = multi["distributed"]
    # both processes share this host: one node of two local ranks, each simulating its device
    assert (d["world_size"], d["nnodes"], d["ranks_per_node"]) == (2, 1, 2)
    assert d["launcher"] == "jax.distributed"
    assert multi["workload"]["extra"]["process_count"] == 2
    assert multi["workload"]["device_count"] == 8
    assert [n["total_domains"] for n in d["nodes"]] == [["node0/sim:0", "node0/sim:1"]]
    assert multi["metrics"]["energy_total_j"] == pytest.approx(
        sum(r["energy_j"] for r in d["ranks"]), rel=1e-9
    )
    for wa, wb in zip(one["windows"], multi["windows"], strict=True):
        assert wb["train_loss"] == pytest.approx(wa["train_loss"], abs=1e-4)
    assert multi["metrics"]["final_eval_loss"] == pytest.approx(
        one["metrics"]["final_eval_loss"], abs=1e-4
    )


def test_ctrl_c_stops_every_rank_at_an_edge_and_keeps_one_aborted_result(tmp_path):
    import signal
    import time

    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    # a target no run reaches: only Ctrl-C ends it, however fast this machine trains
    args = [
        "run",
        *STEPS,
        "launcher=torchrun",
        "benchmark.max_steps=1000000",
        "benchmark.target.threshold=0",
    ]
    proc = _start([*args, f"run_dir={run_dir}"], tmp_path, env)
    deadline = time.monotonic() + 120
    while not (run_dir / "result.json").exists() and time.monotonic() < deadline:
        time.sleep(0.5)  # the provisional result appears at run_start
    time.sleep(2)
    proc.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends to joulebench
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    r = load_result(run_dir)
    assert (r["status"], r["distributed"]["world_size"]) == ("aborted", 2)
    assert r["metrics"]["steps"] > 0 and r["metrics"]["steps"] % 10 == 0  # stopped at an edge
    assert r["files"]["power.csv"] and not (run_dir / ".ranks").exists()


def test_two_nodes_on_loopback_each_meter_their_own_node(tmp_path):
    """Two `joulebench run launcher=torchrun` processes joined by a c10d rendezvous stand in for
    two nodes: each node's local rank 0 owns its node-level meter (the CPU model here), and
    the result adds each node's energy once."""
    args = [
        "run",
        "launcher=torchrun",
        "launcher.nproc_per_node=1",
        "launcher.nnodes=2",
        f"launcher.rdzv_endpoint=127.0.0.1:{_free_port()}",
        "meter.source=simulated+cpu-model",
        "benchmark.max_steps=20",
        "progress=off",
        f"run_dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    nodes = [_start(args, tmp_path, env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in nodes]
    assert sorted(p.returncode for p in nodes) == [1, 1], outs[0][1][-3000:]
    r = load_result(tmp_path / "run")
    d = r["distributed"]
    assert (d["world_size"], d["nnodes"], d["ranks_per_node"]) == (2, 2, 1)
    assert [x["domains"] for x in d["ranks"]] == [
        ["node0/sim:0", "node0/cpu:host"],
        ["node1/sim:0", "node1/cpu:host"],
    ]
    by_domain = r["metrics"]["energy_by_domain_j"]
    for node in d["nodes"]:
        assert node["energy_j"] == pytest.approx(
            sum(by_domain[x] for x in node["total_domains"]), rel=1e-9
        )
    assert r["metrics"]["energy_total_j"] == pytest.approx(
        sum(n["energy_j"] for n in d["nodes"]), rel=1e-9
    )
    assert {m["name"] for m in r["meters"]} == {"simulated", "cpu-model"}


def test_the_system_description_must_declare_the_nodes_a_run_used(dense_two_ranks):
    from harness.submission.findings import Run
    from harness.submission.validate import Validator

    root, _ = dense_two_ranks
    result = load_result(next(root.rglob("result.json")).parent)
    run = Run("results/s/lm-dense-tiny/torch/run_1", "s", "lm-dense-tiny", "torch", result)
    two_gpus_one_node = {"accelerators_per_node": 2, "number_of_nodes": 1}
    model = {"accelerator_model_name": result["workload"]["device_name"]}
    v = Validator(root)
    v._check_system_matches("s", {**two_gpus_one_node, **model}, [run])
    assert v.report.findings == []
    result["distributed"]["nnodes"] = 2  # as if the two ranks had been on two nodes
    v._check_system_matches("s", {**two_gpus_one_node, **model}, [run])
    assert [(f.rule, f.message) for f in v.report.findings] == [
        ("SYS-003", "declares 1 node(s) but results/s/lm-dense-tiny/torch/run_1 ran on 2.")
    ]


def test_the_report_splits_a_two_rank_run_by_device(dense_two_ranks, tmp_path):
    from harness.report import _system_power, write_report
    from harness.submission.score import load_results

    root, _ = dense_two_ranks
    written = write_report([root], tmp_path / "report")
    assert (tmp_path / "report" / "energy_by_device.png").stat().st_size > 1000
    assert "energy_by_device.png" in (tmp_path / "report" / "summary.md").read_text()
    from harness.report import REPORT_FILES

    assert tuple(p.name for p in written) == REPORT_FILES and "dense_vs_moe.png" in REPORT_FILES
    (run,) = load_results([root])
    t, watts = _system_power(run)  # both ranks' 100 W devices: the system draws 200 W
    assert watts == pytest.approx(np.full(watts.size, 200.0), rel=1e-6)


def test_a_rank_that_fails_stops_the_others_in_one_line_each(tmp_path):
    """Rank 0 cannot reach its wall meter (a node-level source: rank 1 has none) and fails;
    torchrun stops rank 1, which was waiting for it in a collective: no hang, no traceback."""
    proc = cli_subprocess(
        [
            "run",
            *STEPS,
            "meter.source=simulated+ptdaemon",
            "meter.ptdaemon.host=127.0.0.1",
            f"meter.ptdaemon.port={_free_port()}",  # nothing listens there
            "launcher=torchrun",
            f"run_dir={tmp_path / 'run'}",
        ],
        tmp_path,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "meter error: cannot reach PTDaemon" in proc.stderr
    assert "Traceback" not in proc.stderr
    r = load_result(tmp_path / "run")  # rank 0 still leaves its record
    assert r["status"] == "aborted" and "PTDaemon" in r["error"]


def test_peer_loss_is_recognised_only_in_a_multi_process_run(monkeypatch):
    from workloads.process_group import lost_peer

    gone = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [::1]:4")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not lost_peer(gone)  # one process: no peer to lose, so it is a bug
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert lost_peer(gone)
    assert not lost_peer(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
