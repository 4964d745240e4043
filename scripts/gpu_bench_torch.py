#!/usr/bin/env python3
"""GPU benchmark of the PyTorch workloads: each small and medium benchmark for a fixed number of
steps, one table of tokens/s, MFU, step time, peak memory and energy per step.

Runs through the real harness (`joulebench run`), so energy comes from `meter=auto`: the NVML
counter where the metering layer finds it, else whatever source it labels. Each row says how
the energy was obtained. Usage, on a GPU machine from the repository root:

    PYTHONPATH=. python3 scripts/gpu_bench_torch.py --steps 300 --out results/bench
    PYTHONPATH=. python3 scripts/gpu_bench_torch.py --benchmarks lm-dense-small --steps 100

Writes each run directory under --out and the table as bench_torch.md and bench_torch.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCHMARKS = ("lm-dense-small", "lm-moe-small", "lm-dense-medium", "lm-moe-medium")


def run_one(benchmark: str, steps: int, out: Path, extra: list[str]) -> dict:
    from harness.config import compose_config
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    rows = []
    for benchmark in args.benchmarks:
        print(f"== {benchmark}: {args.steps} steps", flush=True)
        rows.append(run_one(benchmark, args.steps, args.out, args.overrides))
        print(table(rows[-1:]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_torch.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / "bench_torch.md").write_text(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
