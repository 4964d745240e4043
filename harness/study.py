"""`joulebench study SPEC`: a dense/sparse scaling study from one command, resumable.

A study spec (configs/study/*.yaml) names a dense and a MoE benchmark and the overrides every
arm shares; the study runs, for every model seed and data seed:

    dense                the dense benchmark
    moe-<E>              the MoE benchmark with E experts, routing scaled to E
                         (workloads/moe_rules.py scaled_routing: drops stay rare)
    dense-bound          a dense model with the largest MoE's total parameters (bound: true)
    control-dense/-moe   the same comparison on a control corpus (control:)

Each run is `joulebench run` in its own process (`--jobs` at a time), in a directory of its
own under `<out>/runs/<arm>/m<seed>-d<data seed>/`; a run whose result.json says it finished
is reused if it ran with the overrides the spec gives it now (`<run>.overrides.json`), any
other is run again from scratch. `study.json` records every arm's overrides,
parameters and routing; the report (harness/study_report.py) reads them and the results.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from harness.errors import ConfigError
from harness.results import safe_files
from harness.results.writer import atomic_write_json
from harness.submission.findings import ACCEPTED_STATUS as FINISHED  # finished runs

SPEC_KEYS = {
    "name", "dense", "moe", "overrides", "experts", "routing", "bound", "control",
    "model_seeds", "data_seeds", "meter",
}  # fmt: skip


@dataclass
class Arm:
    name: str  # dense, moe-8, dense-bound, control-dense, control-moe
    role: str  # dense | moe
    group: str  # study | bound | control
    experts: int | None
    overrides: list[str]
    params_total: int = 0
    params_active: int = 0
    routing: dict | None = None  # routing_groups, tokens per group, capacity factor


@dataclass
class Study:
    name: str
    arms: list[Arm]
    model_seeds: list[int]
    data_seeds: list[int]
    meter: str
    spec_path: str
    runs: list[dict] = field(default_factory=list)  # filled in by the report

    def run_dir(self, out: Path, arm: Arm, seed: int, data_seed: int) -> Path:
        return out / "runs" / arm.name / f"m{seed}-d{data_seed}"


def _bad(spec: Path, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"study {spec}: {problem}", fix)


def load_spec(path: str | Path) -> dict:
    spec = Path(path)
    try:
        data = yaml.safe_load(spec.read_text())
    except OSError as exc:
        raise _bad(spec, f"cannot be read ({exc.strerror}).", "give a study YAML file.") from exc
    except yaml.YAMLError as exc:
        raise _bad(spec, "is not valid YAML.", "fix the file's syntax.") from exc
    if not isinstance(data, dict) or not {"dense", "moe", "experts"} <= set(data):
        raise _bad(spec, "needs dense, moe and experts.", "see configs/study/facts-experts.yaml.")
    unknown = set(data) - SPEC_KEYS
    if unknown:
        raise _bad(spec, f"has unknown keys {sorted(unknown)}.", f"use {sorted(SPEC_KEYS)}.")
    experts = data["experts"]
    if not isinstance(experts, list) or not all(isinstance(e, int) and e >= 2 for e in experts):
        raise _bad(spec, f"experts={experts!r} is not a list of counts >= 2.", "e.g. [2, 4, 8].")
    for key in ("model_seeds", "data_seeds"):
        seeds = data.get(key, [0])
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
            raise _bad(spec, f"{key}={seeds!r} is not a list of integers.", "e.g. [1, 2, 3].")
    return data


def _model_of(overrides: list[str]):
    from harness.compose import compose_config

    cfg, _ = compose_config(overrides)
    return cfg.benchmark


def _counts(bench) -> tuple[int, int]:
    from workloads.flops import transformer_param_counts

    c = transformer_param_counts(bench.model)
    return c.total, c.active


def _arm(name: str, group: str, overrides: list[str]) -> Arm:
    """An arm, its config composed once: its kind, experts, parameters and routing record."""
    from workloads.moe_rules import routing_extra

    bench = _model_of(overrides)
    moe = bench.model.kind == "moe"
    total, active = _counts(bench)
    routing = None
    if moe:
        r = routing_extra(bench)["routing"]
        routing = {k: r[k] for k in ("routing_groups", "tokens_per_group", "capacity_factor_train")}
        routing["capacity"] = r["capacity_train"]
    experts = bench.model.n_experts if moe else None
    role = "moe" if moe else "dense"
    return Arm(name, role, group, experts, overrides, total, active, routing)


def _routed(base: list[str], experts: int, routing: dict) -> list[str]:
    """`base` with `experts` experts, routed by workloads/moe_rules.py scaled_routing."""
    from workloads.moe_rules import scaled_routing

    bench = _model_of(base)  # the batch and sequence length do not depend on the experts
    groups, cf = scaled_routing(
        experts,
        bench.global_batch,
        bench.model.seq_len,
        int(routing.get("tokens_per_expert", 64)),
        float(routing.get("capacity_factor", 1.25)),
        float(routing.get("slack_sigmas", 2.0)),
    )
    return [
        *base,
        f"benchmark.model.n_experts={experts}",
        f"benchmark.model.routing_groups={groups}",
        f"benchmark.model.capacity_factor_train={cf}",
    ]


def _matched_d_ff(base: list[str], target_total: int) -> int:
    """The d_ff at which the dense model has `target_total` parameters (they grow linearly)."""
    lo = _counts(_model_of([*base, "benchmark.model.d_ff=256"]))[0]
    hi = _counts(_model_of([*base, "benchmark.model.d_ff=512"]))[0]
    per = (hi - lo) / 256
    return max(8, int(round((256 + (target_total - lo) / per) / 8)) * 8)


def plan(spec_path: str | Path) -> Study:
    """Every arm with its overrides and parameter counts (composing each config once)."""
    data = load_spec(spec_path)
    common = [str(o) for o in data.get("overrides") or []]
    routing = data.get("routing") or {}
    dense_base = [f"benchmark={data['dense']}", *common]
    moe_base = [f"benchmark={data['moe']}", *common]
    arms = [_arm("dense", "study", dense_base)]
    arms += [
        _arm(f"moe-{e}", "study", _routed(moe_base, e, routing)) for e in sorted(data["experts"])
    ]
    if data.get("bound"):
        d_ff = _matched_d_ff(dense_base, arms[-1].params_total)
        arms.append(_arm("dense-bound", "bound", [*dense_base, f"benchmark.model.d_ff={d_ff}"]))
    control = data.get("control")
    if control:
        extra = [str(o) for o in control.get("overrides") or []]
        c_routing = {**routing, **(control.get("routing") or {})}
        c_moe = _routed(
            [f"benchmark={control['moe']}", *extra], int(control.get("experts", 8)), c_routing
        )
        arms.append(_arm("control-dense", "control", [f"benchmark={control['dense']}", *extra]))
        arms.append(_arm("control-moe", "control", c_moe))
    return Study(
        name=str(data.get("name") or Path(spec_path).stem),
        arms=arms,
        model_seeds=list(data.get("model_seeds", [0])),
        data_seeds=list(data.get("data_seeds", [1234])),
        meter=str(data.get("meter", "auto")),
        spec_path=str(spec_path),
    )


def finished(run_dir: Path, overrides: list[str] | None = None) -> dict | None:
    """The run's result when it finished (success or target_not_reached) and, with
    `overrides`, was run with exactly those (its `.overrides.json` beside it), else None."""
    try:
        result = safe_files.read_json(run_dir / "result.json", 64 << 20)
        recorded = (
            safe_files.read_json(_sidecar(run_dir), 1 << 20) if overrides is not None else None
        )
    except (OSError, ValueError):
        return None
    if overrides is not None and recorded != overrides:
        return None  # the spec changed since: the arm is another experiment now
    return result if isinstance(result, dict) and result.get("status") in FINISHED else None


def _sidecar(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ".overrides.json")


def _run_overrides(study: Study, arm: Arm, seed: int, data_seed: int) -> list[str]:
    """What makes the run the experiment it is (not where it writes, nor its threads)."""
    return [
        *arm.overrides,
        f"seed={seed}",
        f"benchmark.data.seed={data_seed}",
        f"meter={study.meter}",
    ]


def _command(overrides: list[str], run_dir: Path, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "harness.cli", "run", *overrides,
        f"run_dir={run_dir}", "progress=off", f"framework.threads={threads}",
    ]  # fmt: skip


def _line(done: int, total: int, reused: int, t0: float, text: str) -> str:
    elapsed = time.monotonic() - t0
    fresh = done - reused
    eta = f", about {(total - done) * elapsed / fresh / 60:.0f} min left" if fresh else ""
    return f"study: {done}/{total} runs ({reused} reused), {elapsed / 60:.1f} min{eta} | {text}"


def run_study(study: Study, out: Path, jobs: int = 1, threads: int = 1, log=print) -> int:
    """Run every (arm, seed, data seed) not already finished; returns how many failed."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"name": study.name, "spec": study.spec_path, "meter": study.meter,
                "model_seeds": study.model_seeds, "data_seeds": study.data_seeds,
                "arms": [asdict(a) for a in study.arms]}  # fmt: skip
    atomic_write_json(out / "study.json", manifest)
    todo, reused = [], 0
    for arm in study.arms:
        for seed in study.model_seeds:
            for data_seed in study.data_seeds:
                run_dir = study.run_dir(out, arm, seed, data_seed)
                if finished(run_dir, _run_overrides(study, arm, seed, data_seed)) is not None:
                    reused += 1
                    continue
                todo.append((arm, seed, data_seed, run_dir))
    total, done, failed, t0 = reused + len(todo), reused, 0, time.monotonic()
    log(_line(done, total, reused, t0, f"{len(todo)} to run, {jobs} at a time"))
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    running: list[tuple] = []
    try:
        while todo or running:
            while todo and len(running) < jobs:
                arm, seed, data_seed, run_dir = todo.pop(0)
                if run_dir.exists():
                    shutil.rmtree(run_dir)  # an unfinished run starts again from scratch
                run_dir.parent.mkdir(parents=True, exist_ok=True)
                overrides = _run_overrides(study, arm, seed, data_seed)
                atomic_write_json(_sidecar(run_dir), overrides)
                log_file = (logs / f"{arm.name}-m{seed}-d{data_seed}.log").open("w")
                cmd = _command(overrides, run_dir, threads)
                proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
                running.append((proc, log_file, arm, seed, data_seed, run_dir))
            time.sleep(0.5)
            for entry in [r for r in running if r[0].poll() is not None]:
                running.remove(entry)
                proc, log_file, arm, seed, data_seed, run_dir = entry
                log_file.close()
                done += 1
                result = finished(run_dir)
                if result is None:
                    failed += 1
                    text = f"{arm.name} m{seed} d{data_seed}: FAILED (exit {proc.returncode}), see {log_file.name}"
                else:
                    crossing = (result["metrics"] or {}).get("target_crossing")
                    where = (
                        f"crossed at step {crossing['step']:.0f}"
                        if crossing
                        else "target not reached"
                    )
                    text = f"{arm.name} m{seed} d{data_seed}: {result['status']}, {where}"
                log(_line(done, total, reused, t0, text))
    except KeyboardInterrupt:
        for proc, log_file, *_ in running:
            proc.terminate()
            proc.wait()
            log_file.close()
        raise
    return failed


def register(sub) -> None:
    p = sub.add_parser(
        "study",
        help="run and report a dense/sparse scaling study (resumable)",
        description="Run every arm of a study spec over its model and data seeds, reusing runs "
        "already finished, then write the study's figure and summary.md.",
    )
    p.add_argument("spec", help="a study YAML, e.g. configs/study/facts-experts.yaml")
    p.add_argument("--out", default=None, help="output folder (default results/studies/<name>)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one process each)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads per run")
    p.add_argument("--report-only", action="store_true", help="report the runs already there")
    p.add_argument("--plan", action="store_true", help="print the arms and exit")
    p.set_defaults(func=cmd_study)


def cmd_study(args) -> int:
    from harness.study_report import write_report

    if args.jobs < 1 or args.threads < 1:
        raise ConfigError(f"--jobs={args.jobs} --threads={args.threads}.", "give counts >= 1.")
    study = plan(args.spec)
    out = Path(args.out or f"results/studies/{study.name}")
    if args.plan:
        for arm in study.arms:
            print(f"{arm.name:14s} {arm.params_total:>9d} params ({arm.params_active} active) "
                  f"{arm.routing or ''}\n    {' '.join(arm.overrides)}")  # fmt: skip
        return 0
    failed = 0
    if not args.report_only:
        failed = run_study(
            study, out, args.jobs, args.threads, log=lambda s: print(s, file=sys.stderr)
        )
    summary = write_report(out)
    print(summary)
    return 1 if failed else 0
