#!/usr/bin/env python3
"""The staircase experiment: how far off ~1 s windows read from a counter that ticks.

A constant-power GPU (700 W by default) whose total-energy counter ticks every 93-100 ms (an
H100's counter ticks about every 100 ms, the exact period varying by board), polled by a
sampler with a busy host's jitter. For many random tick periods, phases and windows it
compares each window's energy with the truth (watts x duration) under two readings of the same
polls:

  before   linear interpolation between raw polls (joulebench up to 0.1.0);
  after    the counter placed through its ticks (harness/meters/counter.py), the tick period
           detected as the meter does, and polls thinned as the sampler keeps them.

each at 10 Hz (the old default poll rate) and at the default rate chosen from the detected tick
period. Everything is simulated on a fixed, seeded timeline: the numbers are the method's, not
this machine's speed. Usage:

    PYTHONPATH=. python3 scripts/tick_experiment.py [--trials 400] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from harness.meters.counter import EnergyCurve, poll_hz_for_tick


def staircase_mj(t_s: np.ndarray, watts: float, tick_s: float, phase_s: float) -> np.ndarray:
    """The counter's reading at each time: the energy up to its latest tick, in mJ."""
    ticks = np.floor((t_s + phase_s) / tick_s)
    return np.round(1e6 + ticks * watts * tick_s * 1000).astype(np.int64)


def poll_times(rate_hz: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """A sampler's read times: a nominal grid, each read late by a busy host's jitter (mostly
    sub-millisecond, one read in twenty up to 5 ms later), never drifting (the meter's loop
    re-anchors to the grid)."""
    grid = np.arange(0.0, duration_s, 1.0 / rate_hz)
    late = rng.exponential(0.0003, grid.size)
    late += np.where(rng.random(grid.size) < 0.05, rng.uniform(0, 0.005, grid.size), 0.0)
    return np.sort(grid + late)


def detected_tick_s(watts: float, tick_s: float, phase_s: float) -> float:
    """What the meter's detection (harness/meters/counter.py) finds: fast reads for 0.5 s, the
    median interval between changes."""
    t = np.arange(0.0, 0.5, 0.0006)  # a read about every 0.6 ms (a sleep of 0.5 ms plus the read)
    values = staircase_mj(t, watts, tick_s, phase_s)
    changes = t[1:][np.diff(values) != 0]
    return float(np.median(np.diff(changes)))


def thinned(t_ns: np.ndarray, joules: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows the meter's own series keeps of a ticking counter (each change, the poll before
    it, a row every 0.25 s while it stands still), through the meter's code."""
    from harness.meters.meter import _Series

    series = _Series()
    series.ticking = True
    for t, j in zip(t_ns.tolist(), joules.tolist(), strict=True):
        series.add(t, j, None)
    kept = series.arrays()
    return kept.t_ns, kept.joules


def window_errors(
    method: str, rate_hz: float | None, trials: int, windows: int, watts: float, seed: int
) -> np.ndarray:
    """Relative errors of `windows` ~1 s windows in each of `trials` random set-ups."""
    rng = np.random.default_rng(seed)
    errors = []
    for _ in range(trials):
        tick_s = rng.uniform(0.093, 0.100)
        phase_s = rng.uniform(0, tick_s)
        tick_est = detected_tick_s(watts, tick_s, phase_s)
        hz = rate_hz if rate_hz is not None else poll_hz_for_tick(tick_est)
        t = poll_times(hz, 12.0, rng)
        joules = (staircase_mj(t, watts, tick_s, phase_s) - 1_000_000) / 1000.0
        t_ns = np.round(t * 1e9).astype(np.int64)
        if method == "before":
            curve = EnergyCurve({"gpu:0": (t_ns.astype(float), joules)})
        else:
            kept_t, kept_j = thinned(t_ns, joules)
            curve = EnergyCurve.from_polls({"gpu:0": (kept_t, kept_j)}, {"gpu:0": tick_est})
        starts = rng.uniform(2.0, 9.0, windows)
        lengths = rng.uniform(0.9, 1.1, windows)
        edges = np.round(np.concatenate([starts, starts + lengths]) * 1e9)
        e = curve.energy_at(edges)["gpu:0"]
        measured = e[windows:] - e[:windows]
        errors.append(measured / (watts * lengths) - 1.0)
    return np.concatenate(errors)


def summary(errors: np.ndarray) -> dict[str, float]:
    a = np.abs(errors)
    return {
        "median_abs_error": float(np.median(a)),
        "p95_abs_error": float(np.percentile(a, 95)),
        "max_abs_error": float(a.max()),
        "windows": int(a.size),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--windows", type=int, default=20, help="windows per trial")
    parser.add_argument("--watts", type=float, default=700.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", type=str, default=None)
    args = parser.parse_args()
    cases = {
        "before_10hz": ("before", 10.0),
        "before_default_rate": ("before", None),
        "after_10hz": ("after", 10.0),
        "after_default_rate": ("after", None),
    }
    report = {
        name: summary(window_errors(m, hz, args.trials, args.windows, args.watts, args.seed))
        for name, (m, hz) in cases.items()
    }
    report["setup"] = {
        "watts": args.watts,
        "tick_s": [0.093, 0.100],
        "window_s": [0.9, 1.1],
        "trials": args.trials,
        "seed": args.seed,
        "default_rate_hz": poll_hz_for_tick(0.0965),
    }
    print("| reading | poll rate | median error | p95 error | max error |")
    print("|---|---|---|---|---|")
    for name, (m, hz) in cases.items():
        r = report[name]
        rate = f"{hz:g} Hz" if hz else f"default ({report['setup']['default_rate_hz']:g} Hz)"
        print(
            f"| {m} | {rate} | {100 * r['median_abs_error']:.2f}% | "
            f"{100 * r['p95_abs_error']:.2f}% | {100 * r['max_abs_error']:.2f}% |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
