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

each at 10 Hz (the old default poll rate) and at the fixed rate chosen from the detected tick
period (ten polls a tick, 100 Hz), and

  locked   the reads timed around each predicted tick by the meter's TickLock
           (harness/meters/counter.py): about two a tick.

Every case reports its reads a second beside its errors: the cost of an NVML read is CPU
time (milliseconds on an H100), so fewer reads for the same error is the point of the lock.
Everything is simulated on a fixed, seeded timeline: the numbers are the method's, not this
machine's speed. Usage:

    PYTHONPATH=. python3 scripts/tick_experiment.py [--trials 400] [--json out.json] [--png fig.png]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from harness.meters.counter import EnergyCurve, TickLock, poll_hz_for_tick


def staircase_mj(t_s: np.ndarray, watts: float, tick_s: float, phase_s: float) -> np.ndarray:
    """The counter's reading at each time: the energy up to its latest tick, in mJ."""
    ticks = np.floor((t_s + phase_s) / tick_s)
    return np.round(1e6 + ticks * watts * tick_s * 1000).astype(np.int64)


def read_delay_s(rng: np.random.Generator, n: int) -> np.ndarray:
    """How late a busy host's sampler reads: mostly sub-millisecond, one read in twenty up
    to 5 ms later."""
    late = rng.exponential(0.0003, n)
    return late + np.where(rng.random(n) < 0.05, rng.uniform(0, 0.005, n), 0.0)


def poll_times(rate_hz: float, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """A fixed-rate sampler's read times: a nominal grid, each read late by the host's jitter,
    never drifting (the meter's loop re-anchors to the grid)."""
    grid = np.arange(0.0, duration_s, 1.0 / rate_hz)
    return np.sort(grid + read_delay_s(rng, grid.size))


def locked_polls(
    watts: float, tick_s: float, phase_s: float, tick_est: float, duration_s: float, rng
) -> tuple[np.ndarray, float]:
    """The read times the TickLock asks for, each late by the host's jitter, and the lock's
    refined period at the end."""
    lock = TickLock(tick_est)
    t, times = 0.0, []
    while t < duration_s:
        t = lock.next_read_ns(int(t * 1e9)) / 1e9 + read_delay_s(rng, 1)[0]
        times.append(t)
        lock.observe(int(t * 1e9), int(staircase_mj(np.array([t]), watts, tick_s, phase_s)[0]))
    return np.array(times), lock.tick_s


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
    from harness.meters.series import Series

    series = Series()
    series.ticking = True
    for t, j in zip(t_ns.tolist(), joules.tolist(), strict=True):
        series.add(t, j, None)
    kept = series.arrays()
    return kept.t_ns, kept.joules


def window_errors(
    method: str, rate_hz: float | None, trials: int, windows: int, watts: float, seed: int
) -> tuple[np.ndarray, float]:
    """Relative errors of `windows` ~1 s windows in each of `trials` random set-ups, and the
    mean reads a second."""
    rng = np.random.default_rng(seed)
    errors, rates = [], []
    duration_s = 12.0
    for _ in range(trials):
        tick_s = rng.uniform(0.093, 0.100)
        phase_s = rng.uniform(0, tick_s)
        tick_est = detected_tick_s(watts, tick_s, phase_s)
        if method == "locked":
            t, tick_est = locked_polls(watts, tick_s, phase_s, tick_est, duration_s, rng)
        else:
            hz = rate_hz if rate_hz is not None else poll_hz_for_tick(tick_est)
            t = poll_times(hz, duration_s, rng)
        rates.append(t.size / duration_s)
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
    return np.concatenate(errors), float(np.mean(rates))


def summary(errors: np.ndarray, reads_per_s: float) -> dict[str, float]:
    a = np.abs(errors)
    return {
        "median_abs_error": float(np.median(a)),
        "p95_abs_error": float(np.percentile(a, 95)),
        "max_abs_error": float(a.max()),
        "windows": int(a.size),
        "reads_per_s": reads_per_s,
    }


def figure(report: dict, cases: dict, path: str) -> None:
    """p95 window error against reads a second, one point per reading of the polls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, (method, _hz) in cases.items():
        r = report[name]
        label = {"before": "raw polls, linear", "after": "ticks placed", "locked": "ticks placed,"}[
            method
        ]
        label += (
            " reads timed to ticks (issue 23)"
            if method == "locked"
            else f" at {r['reads_per_s']:.0f}/s"
        )
        ax.scatter(r["reads_per_s"], 100 * r["p95_abs_error"], s=60, label=label)
    ax.axhline(0.5, color="grey", ls="--", lw=1)
    ax.axvline(25, color="grey", ls=":", lw=1)
    ax.text(26, 0.55, "goal: p95 <= 0.5% at <= 25 reads/s", fontsize=8, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ax.yaxis.set_major_locator(FixedLocator([0.1, 0.2, 0.5, 1, 2, 5, 10]))
    ax.xaxis.set_major_locator(FixedLocator([10, 25, 50, 100]))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("counter reads per second per GPU")
    ax.set_ylabel("p95 |error| of ~1 s windows (%)")
    ax.set_title("A 93-100 ms energy counter read by a busy host", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--windows", type=int, default=20, help="windows per trial")
    parser.add_argument("--watts", type=float, default=700.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--json", type=str, default=None)
    parser.add_argument("--png", type=str, default=None, help="the figure: error against reads/s")
    args = parser.parse_args()
    cases = {
        "before_10hz": ("before", 10.0),
        "before_default_rate": ("before", None),
        "after_10hz": ("after", 10.0),
        "after_default_rate": ("after", None),
        "after_tick_locked": ("locked", None),
    }
    report = {
        name: summary(*window_errors(m, hz, args.trials, args.windows, args.watts, args.seed))
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
    print("| reading | reads | reads/s | median error | p95 error | max error |")
    print("|---|---|---|---|---|---|")
    for name, (m, hz) in cases.items():
        r = report[name]
        if m == "locked":
            rate = "timed to the ticks"
        else:
            rate = f"{hz:g} Hz" if hz else f"default ({report['setup']['default_rate_hz']:g} Hz)"
        print(
            f"| {m} | {rate} | {r['reads_per_s']:.1f} | {100 * r['median_abs_error']:.2f}% | "
            f"{100 * r['p95_abs_error']:.2f}% | {100 * r['max_abs_error']:.2f}% |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    if args.png:
        figure(report, cases, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
