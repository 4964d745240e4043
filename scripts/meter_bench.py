#!/usr/bin/env python3
"""Metering quality on a GPU, in one process: overhead, counter vs. power integral, repeatability.

Trains `lm-dense-small` (by default) and alternates blocks of steps with the meter off and on:
  (a) overhead: median step time with the meter sampling vs. without (goal < 0.5%);
  (b) the energy counter over each window vs. the integral of the instant-power trace over the
      same window (goal: within 2%);
  (c) energy per step across the metered repeats: coefficient of variation (goal < 2%).
Usage on a GPU machine, from the repository root:

    PYTHONPATH=. python3 scripts/meter_bench.py --repeats 5 --steps 300 --out results/meter_bench
    PYTHONPATH=. python3 scripts/meter_bench.py --benchmark lm-dense-tiny --meter simulated   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def timed_block(workload, steps: int, window: int) -> tuple[float, list[tuple[int, int]]]:
    """Run `steps` steps with a sync and a timestamp every `window` steps, like the runner."""
    edges, t0 = [], time.monotonic_ns()
    start = t0
    for i in range(steps):
        workload.train_step(workload.next_batch())
        if (i + 1) % window == 0:
            workload.sync()
            now = time.monotonic_ns()
            edges.append((start, now))
            start = now
    workload.sync()
    return (time.monotonic_ns() - t0) / 1e9 / steps, edges


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--benchmark", default="lm-dense-small")
    parser.add_argument("--framework", default="torch")
    parser.add_argument("--meter", default="auto", help="meter.source for the metered blocks")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300, help="steps per block")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from harness.config import compose_config
    from harness.meters.counter import power_integral_j
    from harness.meters.factory import build_meter
    from workloads.build import build_workload

    cfg, _ = compose_config(
        [f"benchmark={args.benchmark}", f"framework={args.framework}", f"meter.source={args.meter}"]
    )
    workload = build_workload(cfg.benchmark, cfg.framework, cfg.seed)
    workload.warmup(max(cfg.benchmark.warmup_steps, 5))
    window = cfg.benchmark.window_steps
    off, on, energy_per_step, ratios, sources = [], [], [], [], []
    trace_dir = Path(tempfile.mkdtemp(prefix="meter_bench_"))
    for r in range(args.repeats):
        for metered in (False, True) if r % 2 == 0 else (True, False):  # alternate the order
            if not metered:
                off.append(timed_block(workload, args.steps, window)[0])
                continue
            meter = build_meter(cfg.meter, workload.info)
            meter.start(trace_dir / f"power_{r}.csv")
            step_s, edges = timed_block(workload, args.steps, window)
            meter.stop()
            on.append(step_s)
            sources = [f"{d.provenance} {d.name} ({d.method})" for d, _ in meter.describe()]
            view = meter.view()
            at = view.energy_at(np.array([t for edge in edges for t in edge], dtype=np.int64))
            window_j = [
                sum(at[d][2 * i + 1] - at[d][2 * i] for d in view.total_domains)
                for i in range(len(edges))
            ]
            energy_per_step.append(statistics.fmean(window_j) / window)
            for domain, series in view.series.items():
                if np.isnan(series.watts).all():
                    continue
                counter = sum(at[domain][1::2] - at[domain][::2])
                integral = sum(power_integral_j(series.t_ns, series.watts, a, b) for a, b in edges)
                ratios.append(integral / counter if counter else float("nan"))
        print(
            f"repeat {r + 1}/{args.repeats}: step off {off[-1] * 1e3:.2f} ms, on {on[-1] * 1e3:.2f} ms, "
            f"{energy_per_step[-1]:.3f} J/step",
            flush=True,
        )

    overhead = statistics.median(on) / statistics.median(off) - 1.0
    cv = (
        statistics.stdev(energy_per_step) / statistics.fmean(energy_per_step)
        if len(energy_per_step) > 1
        else 0.0
    )
    report = {
        "benchmark": args.benchmark,
        "framework": args.framework,
        "device": workload.info.device_name,
        "energy_sources": sources,
        "repeats": args.repeats,
        "steps_per_block": args.steps,
        "step_s_meter_off": off,
        "step_s_meter_on": on,
        "overhead_fraction": overhead,
        "energy_per_step_j": energy_per_step,
        "energy_per_step_cv": cv,
        "power_integral_over_counter": ratios,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    mean_ratio = statistics.fmean(ratios) if ratios else float("nan")
    print(
        f"\n| check | value | goal |\n|---|---|---|\n"
        f"| metering overhead on step time | {100 * overhead:+.3f}% | < 0.5% |\n"
        f"| instant-power integral / counter | {mean_ratio:.4f} | within 2% of 1 |\n"
        f"| energy per step CV over {len(energy_per_step)} repeats | {100 * cv:.2f}% | < 2% |\n"
        f"device {workload.info.device_name}; energy from {', '.join(sources)}"
    )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "meter_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
