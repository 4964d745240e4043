"""Build valid submissions for validator tests: real tiny runs, or long synthetic runs written
with the same schema, metrics and carbon code as the runner (for the speed test)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness.carbon import compute_carbon
from harness.config import CarbonConfig
from harness.metrics import compute_metrics
from harness.results.mllog import INTERVAL_END, INTERVAL_START, MLLogger
from harness.results.writer import sha256_file, sha256_text
from harness.submission.package import package
from harness.timeline import EvalPoint, Timeline, Window
from workloads.base import WorkloadInfo


def build_submission(
    root: Path, overrides: list[str], division: str = "open"
) -> tuple[list[Path], Path, Path]:
    """Five seeds of lm-dense-tiny (simulated meter) run in `root`, packaged: (runs, system, submission)."""
    import os

    from harness.cli import main

    old = os.getcwd()
    os.chdir(root)
    try:
        assert main(["run", "-m", "seed=1,2,3,4,5", "meter=simulated", *overrides]) == 0
    finally:
        os.chdir(old)
    run_dirs = sorted(  # by seed, as `package` numbers them (names tie within one second)
        (p.parent for p in root.glob("results/runs/*/*/*/result.json")),
        key=lambda d: json.loads((d / "result.json").read_text())["seed"],
    )
    device = json.loads((run_dirs[0] / "result.json").read_text())["workload"]["device_name"]
    system = write_system(root / "ci-box.json", device, 1)
    return run_dirs, system, package_runs(run_dirs, system, root / division, division)


def write_system(path: Path, accelerator: str, count: int) -> Path:
    """A complete system description: MLCommons' required fields (strings) and joulebench's."""
    from harness.submission.ruleset import load_ruleset

    system = {k: "N/A" for k in load_ruleset("v1").mlcommons_system_fields}
    system.update(
        {
            "submitter": "ci",
            "division": "open",
            "status": "Research, Development, or Internal (RDI)",
            "system_name": "ci box",
            "number_of_nodes": "1",
            "host_processor_model_name": accelerator,
            "host_processors_per_node": "1",
            "host_memory_capacity": "24 GB",
            "accelerator_model_name": accelerator,
            "accelerators_per_node": str(count),
            "framework": "torch",
            "operating_system": "Linux",
            "power_meter_model": "simulated",
            "power_meter_method": "simulated",
            "pue": 1.0,
            "pue_source": "none",
        }
    )
    path.write_text(json.dumps(system))
    return path


def rehash(run_dir: Path) -> None:
    """Update result.json's file hashes after a deliberate edit, so only content rules can fire."""
    result = json.loads((run_dir / "result.json").read_text())
    for name in result["files"]:
        result["files"][name] = sha256_file(run_dir / name)
    result["config_sha256"] = sha256_file(run_dir / "config.yaml")
    (run_dir / "result.json").write_text(json.dumps(result, indent=2))


def synthetic_run(
    template: Path,
    out: Path,
    seed: int,
    hours: float,
    sample_hz: float = 20.0,
    watts: float = 100.0,
) -> Path:
    """A consistent run directory of `hours` length with a constant-power counter trace."""
    result = json.loads((template / "result.json").read_text())
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(
        (template / "config.yaml").read_text().replace("seed: 0", f"seed: {seed}")
    )
    config_yaml = (out / "config.yaml").read_text()
    import yaml

    config = yaml.safe_load(config_yaml)
    anchor_ns, start = 10**12, 10**12 + 5 * 10**9
    stop = start + int(hours * 3600e9)
    t = np.arange(anchor_ns, stop + int(2e9 / sample_hz), int(1e9 / sample_hz), dtype=np.int64)
    joules = watts * (t - anchor_ns) / 1e9
    lines = ["t_ns,domain,watts,joules"] + [
        f"{a},sim:0,{watts:.4f},{b:.6f}" for a, b in zip(t, joules, strict=True)
    ]
    (out / "power.csv").write_text("\n".join(lines) + "\n")

    k, step_s = result["metrics"]["energy_per_step"]["steps_per_window"], 0.5
    tl = Timeline(
        anchor_ns=anchor_ns,
        anchor_utc=datetime(2026, 11, 22, tzinfo=timezone.utc),
        init_start_ns=anchor_ns,
        warmup_start_ns=anchor_ns,
        warmup_stop_ns=start,
        run_start_ns=start,
        run_stop_ns=stop,
    )
    edges = np.arange(start, stop + 1, int(k * step_s * 1e9))
    tl.windows = [
        Window(i * k, (i + 1) * k, int(a), int(b), 1.0)
        for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    ]
    tl.steps = len(tl.windows) * k
    threshold = result["target_threshold"]
    tl.evals = [EvalPoint(tl.steps, stop, stop, threshold - 0.01, True)]
    info = WorkloadInfo(
        **{k2: v for k2, v in result["workload"].items() if k2 in WorkloadInfo.__dataclass_fields__}
    )

    def curve(x):
        return {"sim:0": watts * (x - anchor_ns) / 1e9}

    metrics, windows, _ = compute_metrics(tl, curve, watts, info, k, ["sim:0"])
    import dataclasses

    result.update(
        run_id=f"{result['run_id']}-s{seed}",  # distinct runs (RUNS-002)
        seed=seed,
        config=config,
        config_sha256=sha256_text(config_yaml),
        metrics=dataclasses.asdict(metrics),
        windows=[dataclasses.asdict(w) for w in windows],
        carbon=dataclasses.asdict(compute_carbon(metrics.energy_total_j, CarbonConfig())),
    )
    result["timing"].update(
        run_start_ns=start,
        run_stop_ns=stop,
        duration_s=(stop - start) / 1e9,
        time_to_target_s=(stop - start) / 1e9,
        anchor_monotonic_ns=anchor_ns,
        # the MLPerf log below is anchored here too (MLLOG-002 ties the two clocks)
        anchor_utc=datetime.fromtimestamp(1.7e9, tz=timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z"),
    )
    log = MLLogger(out / "mllog.txt", 1.7e12, anchor_ns)
    log.event("submission_benchmark", result["benchmark"], anchor_ns)
    log.event("run_start", None, start, INTERVAL_START)
    log.event("eval_accuracy", threshold - 0.01, stop, metadata={"step": tl.steps})
    log.event("run_stop", None, stop, INTERVAL_END, {"status": "success"})
    log.close()
    result["files"] = {n: sha256_file(out / n) for n in ("power.csv", "mllog.txt", "config.yaml")}
    (out / "result.json").write_text(json.dumps(result, indent=2))
    return out


def copy_submission(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def runs_of(sub: Path) -> list[Path]:
    return sorted(p.parent for p in sub.glob("results/*/*/*/run_*/result.json"))


def package_runs(run_dirs: list[Path], system: Path, out: Path, division: str = "open") -> Path:
    return package(run_dirs, system, "ci", division, out)


__all__ = [
    "build_submission",
    "copy",
    "copy_submission",
    "package_runs",
    "rehash",
    "runs_of",
    "synthetic_run",
    "write_system",
]
