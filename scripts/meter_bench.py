#!/usr/bin/env python3
"""Metering quality on a GPU, in one process: overhead, counter vs. power integral, repeatability.

Trains `lm-dense-small` (by default) and alternates blocks of steps with the meter off and on,
in pairs whose order flips each time (off-on, on-off, ...), so a drift in clocks or temperature
falls on both sides:
  (a) overhead: the median over pairs of (step time metered / step time unmetered - 1)
      (goal < 0.5%), with the spread of the pairs;
  (b) the energy counter over each metered block vs. the integral of the instant-power trace
      over the same span (goal: within 2%);
  (c) energy per step across the metered blocks, each block one window of at least
      --min-ticks counter ticks: coefficient of variation (goal < 2%).
The JSON is rewritten after every pair, so a crash or a timeout keeps the pairs done.
Usage on a GPU machine, from the repository root:

    PYTHONPATH=. python3 scripts/meter_bench.py --pairs 7 --steps 400 --out results/meter_bench
    PYTHONPATH=. python3 scripts/meter_bench.py --benchmark lm-dense-tiny --meter simulated   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def timed_block(workload, steps: int) -> tuple[float, int, int]:
    """`steps` steps between two syncs: (seconds per step, start ns, end ns)."""
    workload.sync()
    t0 = time.monotonic_ns()
    for _ in range(steps):
        workload.train_step(workload.next_batch())
    workload.sync()
    t1 = time.monotonic_ns()
    return (t1 - t0) / 1e9 / steps, t0, t1


def metered_block(workload, meter_cfg, steps: int, trace: Path) -> dict:
    from harness.meters.counter import power_integral_j
    from harness.meters.factory import build_meter

    meter = build_meter(meter_cfg, workload.info)
    meter.start(trace)
    try:
        step_s, t0, t1 = timed_block(workload, steps)
    finally:
        meter.stop()
    view = meter.view()
    energy = view.energy_between(t0, t1)
    block_j = sum(energy[d] for d in view.total_domains)
    ratios = {}
    for domain, series in view.series.items():
        integral = power_integral_j(series.t_ns, series.watts, t0, t1)
        if integral is not None and energy.get(domain):
            ratios[domain] = integral / energy[domain]
    ticks = [desc.counter_tick_s.get(d) for desc, _ in meter.describe() for d in desc.domains]
    tick_s = max((t for t in ticks if t), default=None)
    described = meter.describe()
    return {
        "step_s": step_s,
        "seconds": (t1 - t0) / 1e9,
        "energy_j": block_j,
        "energy_per_step_j": block_j / steps,
        "ticks_in_block": (t1 - t0) / 1e9 / tick_s if tick_s else None,
        "power_integral_over_counter": ratios,
        "faults": [f.cause for f in meter.faults],
        "sources": [f"{d.provenance} {d.name} ({d.method})" for d, _ in described],
        "quality": [d.quality for d, _ in described],
    }


def summarize(report: dict) -> dict:
    pairs = report["pairs"]
    overheads = [p["on"]["step_s"] / p["off_step_s"] - 1.0 for p in pairs]
    per_step = [p["on"]["energy_per_step_j"] for p in pairs]
    ratios = [r for p in pairs for r in p["on"]["power_integral_over_counter"].values()]
    out = {"pairs_done": len(pairs)}
    if overheads:
        out["overhead_fraction"] = statistics.median(overheads)
        out["overhead_fraction_pairs"] = [min(overheads), max(overheads)]
        out["step_s_meter_off_median"] = statistics.median(p["off_step_s"] for p in pairs)
        out["step_s_meter_on_median"] = statistics.median(p["on"]["step_s"] for p in pairs)
    if len(per_step) > 1:
        out["energy_per_step_mean_j"] = statistics.fmean(per_step)
        out["energy_per_step_cv"] = statistics.stdev(per_step) / statistics.fmean(per_step)
    if ratios:
        out["power_integral_over_counter_mean"] = statistics.fmean(ratios)
        out["counter_vs_power_integral_frac"] = max(abs(r - 1.0) for r in ratios)
    ticks = [p["on"]["ticks_in_block"] for p in pairs if p["on"]["ticks_in_block"]]
    out["min_ticks_per_window"] = min(ticks) if ticks else None
    return out


def write(path: Path | None, report: dict) -> None:
    if path is None:
        return
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "meter_bench.json.tmp"
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path / "meter_bench.json")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--benchmark", default="lm-dense-small")
    parser.add_argument("--framework", default="torch")
    parser.add_argument("--meter", default="auto", help="meter.source for the metered blocks")
    parser.add_argument("--pairs", "--repeats", type=int, default=5, dest="pairs")
    parser.add_argument("--steps", type=int, default=300, help="steps per block")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args()

    from harness.compose import compose_config
    from workloads.build import build_workload

    cfg, _ = compose_config(
        [
            f"benchmark={args.benchmark}",
            f"framework={args.framework}",
            f"meter.source={args.meter}",
            *args.overrides,
        ]
    )
    workload = build_workload(cfg.benchmark, cfg.framework, cfg.seed)
    workload.warmup(max(cfg.benchmark.warmup_steps, 5))
    timed_block(workload, max(10, args.steps // 10))  # clocks up before the first pair
    report = {
        "benchmark": args.benchmark,
        "framework": args.framework,
        "device": workload.info.device_name,
        "steps_per_block": args.steps,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
        "pairs": [],
    }
    trace_dir = Path(tempfile.mkdtemp(prefix="meter_bench_"))
    failed = False
    for i in range(args.pairs):
        pair = {}
        for metered in (False, True) if i % 2 == 0 else (True, False):
            if metered:
                pair["on"] = metered_block(workload, cfg.meter, args.steps, trace_dir / f"p{i}.csv")
                failed |= bool(pair["on"]["faults"])
            else:
                pair["off_step_s"] = timed_block(workload, args.steps)[0]
        pair["order"] = "off-on" if i % 2 == 0 else "on-off"
        report["pairs"].append(pair)
        report["summary"] = summarize(report)
        write(args.out, report)
        on = pair["on"]
        print(
            f"pair {i + 1}/{args.pairs} ({pair['order']}): step off {pair['off_step_s'] * 1e3:.3f} ms, "
            f"on {on['step_s'] * 1e3:.3f} ms, {on['energy_per_step_j']:.4f} J/step over "
            f"{on['seconds']:.2f} s{'; METER FAULT ' + '; '.join(on['faults']) if on['faults'] else ''}",
            flush=True,
        )
    s = report["summary"]
    print(
        f"\n| check | value | goal |\n|---|---|---|\n"
        f"| metering overhead on step time (median of {s['pairs_done']} pairs) | "
        f"{100 * s['overhead_fraction']:+.3f}% [{100 * s['overhead_fraction_pairs'][0]:+.3f}%, "
        f"{100 * s['overhead_fraction_pairs'][1]:+.3f}%] | < 0.5% |\n"
        f"| instant-power integral / counter | {s.get('power_integral_over_counter_mean', float('nan')):.4f} | "
        f"within 2% of 1 |\n"
        f"| energy per step CV over {s['pairs_done']} windows of >= "
        f"{s['min_ticks_per_window'] or 0:.0f} ticks | {100 * s.get('energy_per_step_cv', float('nan')):.2f}% | < 2% |\n"
        f"device {workload.info.device_name}; energy from {', '.join(report['pairs'][-1]['on']['sources'])}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
