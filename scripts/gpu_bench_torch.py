#!/usr/bin/env python3
"""GPU benchmark of the PyTorch workloads: each small and medium benchmark for a fixed number of
steps, one table of tokens/s, MFU, step time, peak memory and energy per step.

Runs through the real harness (`joulebench run`), so energy comes from `meter=auto`: the NVML
counter where the metering layer finds it, else whatever source it labels. Each row says how
the energy was obtained. Usage, on a GPU machine from the repository root:

    PYTHONPATH=. python3 scripts/gpu_bench_torch.py --steps 300 --out results/bench
    PYTHONPATH=. python3 scripts/gpu_bench_torch.py --benchmarks lm-dense-small --steps 100

Writes each run directory under --out and the table as bench_torch.md and bench_torch.json,
both rewritten after every benchmark (a crash keeps the rows done). Each benchmark compiles its
own graphs (the adapter clears the compile cache when shapes change, so no later benchmark
trains with dynamic-shape kernels). With --profile-below F, a torch benchmark whose MFU falls
under F gets a profiler table of its top kernels over a few steps (profile_<benchmark>.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

BENCHMARKS = ("lm-dense-small", "lm-moe-small", "lm-dense-medium", "lm-moe-medium")


def run_one(benchmark: str, steps: int, out: Path, extra: list[str]) -> dict:
    from harness.compose import compose_config
    from harness.runner import run_benchmark

    # eval only at the end, target unreachable: a fixed number of timed training steps
    overrides = [
        f"benchmark={benchmark}",
        f"benchmark.max_steps={steps}",
        "benchmark.target.threshold=0",
        f"output_dir={out}",
        "progress=off",
        *extra,
    ]
    cfg, dict_cfg = compose_config(overrides)
    window = cfg.benchmark.window_steps
    overrides.append(f"benchmark.eval_every_steps={window * max(1, steps // window)}")
    cfg, dict_cfg = compose_config(overrides)
    outcome = run_benchmark(cfg, dict_cfg)
    r = outcome.result
    m = r.metrics
    eps = m.energy_per_step
    step_s = (
        (r.workload.tokens_per_step / m.throughput_tokens_per_s)
        if m.throughput_tokens_per_s
        else None
    )
    return {
        "benchmark": benchmark,
        "device": r.workload.device_name,
        "precision": r.workload.precision,
        "compiled": r.workload.compiled,
        "params_active_m": r.workload.params_active / 1e6,
        "params_total_m": r.workload.params_total / 1e6,
        "tokens_per_s": m.throughput_tokens_per_s,
        "mfu": m.mfu,
        "step_ms": step_s * 1e3 if step_s else None,
        "peak_memory_gb": m.peak_device_memory_gb,
        "energy_per_step_j": eps.mean_j if eps else None,
        "energy_per_step_cv": eps.cv if eps else None,
        "tokens_per_joule": m.tokens_per_joule,
        "energy_source": ", ".join(f"{s.provenance} {s.name}" for s in r.meters),
        "run_dir": str(outcome.run_dir),
        "status": r.status,
        "framework": r.workload.framework,
        "flops_per_token": r.workload.flops_per_token,
        "steps": m.steps,
        "date_utc": r.timing.run_start_utc,
    }


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict]) -> str:
    head = (
        "| benchmark | active/total M params | tokens/s | MFU | step ms | peak GB | J/step (cv) | "
        "tokens/J | energy source |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        mfu = "-" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        cv = fmt(
            r["energy_per_step_cv"] * 100 if r["energy_per_step_cv"] is not None else None, ".1f"
        )
        lines.append(
            f"| {r['benchmark']} | {r['params_active_m']:.1f}/{r['params_total_m']:.1f} | "
            f"{fmt(r['tokens_per_s'], ',.0f')} | {mfu} | {fmt(r['step_ms'], '.1f')} | "
            f"{fmt(r['peak_memory_gb'], '.1f')} | {fmt(r['energy_per_step_j'], '.2f')} ({cv}%) | "
            f"{fmt(r['tokens_per_joule'], ',.0f')} | {r['energy_source']} |"
        )
    return "\n".join(lines)


def profile_table(benchmark: str, extra: list[str], steps: int = 8, rows: int = 20) -> str:
    """The top kernels of a few steps, by device time (torch.profiler), for a short MFU."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from harness.compose import compose_config
    from workloads.build import build_workload

    cfg, _ = compose_config([f"benchmark={benchmark}", *extra])
    workload = build_workload(cfg.benchmark, cfg.framework, cfg.seed)  # reuses the compiled graphs
    workload.warmup(3)
    activities = [ProfilerActivity.CPU] + (
        [ProfilerActivity.CUDA] if torch.cuda.is_available() else []
    )
    with profile(activities=activities) as prof:
        for _ in range(steps):
            workload.train_step(workload.next_batch())
        workload.sync()
    key = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    return f"{benchmark}: {steps} steps, top {rows} by {key}\n" + prof.key_averages().table(
        sort_by=key, row_limit=rows
    )


def write_tables(out: Path, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("bench_torch.json", json.dumps(rows, indent=2) + "\n"),
        ("bench_torch.md", table(rows) + "\n"),
    ):
        tmp = out / f"{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument(
        "--profile-below",
        type=float,
        default=None,
        help="profile a torch run whose MFU is under this",
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    rows = []
    for benchmark in args.benchmarks:
        print(f"== {benchmark}: {args.steps} steps", flush=True)
        rows.append(run_one(benchmark, args.steps, args.out, args.overrides))
        write_tables(args.out, rows)
        print(table(rows[-1:]), flush=True)
        mfu = rows[-1]["mfu"]
        torch_run = not any(
            o.startswith("framework=") and o != "framework=torch" for o in args.overrides
        )
        if (
            args.profile_below is not None
            and torch_run
            and (mfu is None or mfu < args.profile_below)
        ):
            text = profile_table(benchmark, args.overrides)
            (args.out / f"profile_{benchmark}.txt").write_text(text)
            print(text, flush=True)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
