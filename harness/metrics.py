"""From a timeline and a cumulative-energy curve to the run's metrics.

`energy_at(times_ns) -> {domain: cumulative J at each time}` is all this needs, so the validator
can recompute the same numbers from a trace file that the runner computed from the live meter.
Every edge of the run (windows, evals, warm-up) is looked up in one vectorised call, so the cost
is linear in the trace's length, not its length times the number of edges.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import numpy as np

from harness.results.run_dir import interpolated_crossing
from harness.results.schema import (
    CrossingRecord,
    EnergyPerStep,
    EvalRecord,
    Metrics,
    SpanRecord,
    WindowRecord,
    WorkloadInfo,
)
from harness.timeline import Timeline

EnergyAt = Callable[[np.ndarray], dict[str, np.ndarray]]
TICK_LIMITED_BELOW = 10  # a median window shorter than this many counter ticks is tick-limited


def energy_between(energy_at: EnergyAt, t0_ns: int, t1_ns: int) -> dict[str, float]:
    e = energy_at(np.array([t0_ns, t1_ns], dtype=np.int64))
    return {domain: float(v[1] - v[0]) for domain, v in e.items()}


def energy_per_step_stats(
    window_energies_j: list[float],
    steps_per_window: int,
    window_durations_s: list[float] | None = None,
    counter_tick_s: float | None = None,
) -> EnergyPerStep | None:
    """Mean, median and spread of per-step energy over full windows of `steps_per_window` steps.

    With a ticking counter, a window only a few ticks long has an energy uncertain by about one
    tick at each edge, so its spread says more about the counter than about the run: the result
    says how many ticks the median window spans and flags fewer than TICK_LIMITED_BELOW."""
    if not window_energies_j:
        return None
    per_step = [e / steps_per_window for e in window_energies_j]
    mean = statistics.fmean(per_step)
    std = statistics.stdev(per_step) if len(per_step) > 1 else 0.0
    ticks = resolution = None
    if counter_tick_s and window_durations_s:
        ticks = statistics.median(window_durations_s) / counter_tick_s
        resolution = 1.0 / ticks if ticks > 0 else None
    return EnergyPerStep(
        mean_j=mean,
        median_j=statistics.median(per_step),
        std_j=std,
        min_j=min(per_step),
        max_j=max(per_step),
        cv=std / mean if mean > 0 else 0.0,
        windows=len(per_step),
        steps_per_window=steps_per_window,
        counter_tick_s=counter_tick_s,
        window_ticks_median=ticks,
        tick_resolution=resolution,
        tick_limited=ticks is not None and ticks < TICK_LIMITED_BELOW,
    )


class EdgeEnergy:
    """Every time the metrics need, looked up in one call; then differences by index."""

    def __init__(self, energy_at: EnergyAt, times: list[int], totals: list[str] | None):
        self.index = {t: i for i, t in enumerate(sorted(set(times)))}
        by_domain = energy_at(np.array(sorted(self.index), dtype=np.int64))
        self.by_domain = {d: np.asarray(v, dtype=float) for d, v in by_domain.items()}
        keys = self.by_domain if totals is None else [d for d in totals if d in self.by_domain]
        self.total = sum((self.by_domain[d] for d in keys), np.zeros(len(self.index)))

    def domains(self, t0: int, t1: int) -> dict[str, float]:
        i, j = self.index[t0], self.index[t1]
        return {d: float(v[j] - v[i]) for d, v in self.by_domain.items()}

    def between(self, t0: int, t1: int) -> float:
        return float(self.total[self.index[t1]] - self.total[self.index[t0]])


def compute_metrics(
    tl: Timeline,
    energy_at: EnergyAt,
    peak_power_w: float | None,
    info: WorkloadInfo,
    steps_per_window: int,
    total_domains: list[str] | None = None,
    idle_power_w: dict[str, float] | None = None,
    counter_tick_s: float | None = None,
    target: tuple[float, str] | None = None,
) -> tuple[Metrics, list[WindowRecord], list[str]]:
    """`total_domains` are summed for every total (all domains when None: with a wall meter
    only its domain counts, the device meters being its breakdown). `idle_power_w` gives
    `energy_above_idle_j`, reported beside the gross energy, never instead of it.
    `counter_tick_s` is the slowest ticking counter's period among the total domains.
    `target` (threshold, direction) gives the interpolated crossing of the eval curve."""
    assert tl.run_start_ns is not None and tl.run_stop_ns is not None
    warnings: list[str] = []
    start, stop = tl.run_start_ns, tl.run_stop_ns
    times = [start, stop, *(t for w in tl.windows for t in (w.t_start_ns, w.t_end_ns))]
    times += [e.t_end_ns for e in tl.evals]
    times += [t for s in tl.spans for t in (s.t_start_ns, s.t_end_ns)]
    warmup = tl.warmup_start_ns is not None and tl.warmup_stop_ns is not None
    if warmup:
        times += [tl.warmup_start_ns, tl.warmup_stop_ns]
    edges = EdgeEnergy(energy_at, times, total_domains)

    def total(by_domain: dict[str, float]) -> float:
        keys = by_domain if total_domains is None else total_domains
        return sum(by_domain.get(k, 0.0) for k in keys)

    by_domain = edges.domains(start, stop)
    total_j = total(by_domain)
    duration_s = (stop - start) / 1e9

    windows = [
        WindowRecord(
            w.step_start,
            w.step_end,
            w.t_start_ns,
            w.t_end_ns,
            edges.between(w.t_start_ns, w.t_end_ns),
            w.train_loss,
            w.stats,
            w.expert_load,
        )
        for w in tl.windows
    ]
    full = [w for w in windows if w.step_end - w.step_start == steps_per_window]
    per_step = energy_per_step_stats(
        [w.energy_j for w in full],
        steps_per_window,
        [(w.t_end_ns - w.t_start_ns) / 1e9 for w in full],
        counter_tick_s,
    )
    if per_step is None:
        warnings.append(
            "no complete metered window: energy per step is unavailable; run more steps."
        )
    elif per_step.tick_limited:
        step_s = statistics.median((w.t_end_ns - w.t_start_ns) / 1e9 for w in full) / max(
            1, steps_per_window
        )
        needed = int(np.ceil(TICK_LIMITED_BELOW * counter_tick_s / step_s)) if step_s > 0 else 0
        warnings.append(
            f"energy per step is tick-limited: the median window spans "
            f"{per_step.window_ticks_median:.1f} counter ticks of {counter_tick_s * 1e3:.0f} ms "
            f"(< {TICK_LIMITED_BELOW}), so its spread (cv {per_step.cv:.3f}) is counter "
            f"granularity (one tick is {per_step.tick_resolution:.3f} of a window), not run "
            f"variation; set benchmark.window_steps >= {needed}."
        )

    window_time_s = sum((w.t_end_ns - w.t_start_ns) / 1e9 for w in full)
    tokens_per_step = info.tokens_per_step
    throughput = (
        steps_per_window * len(full) * tokens_per_step / window_time_s
        if window_time_s > 0 and tokens_per_step
        else None
    )
    joules_per_token = per_step.mean_j / tokens_per_step if per_step and tokens_per_step else None
    mfu = None
    if tokens_per_step is None:
        warnings.append(
            "throughput, joules per token and MFU are null: the workload gives no tokens per step."
        )
    elif throughput is not None and info.flops_per_token is None:
        warnings.append("MFU is null: the workload gives no FLOPs per token.")
    elif throughput is not None and info.peak_flops_per_s:
        mfu = info.flops_per_token * throughput / info.peak_flops_per_s
    elif throughput is not None:
        warnings.append(
            f"MFU is null: no peak FLOP/s is known for '{info.device_name}' "
            "(see workloads/flops.py PEAK_TFLOPS)."
        )

    evals = [
        EvalRecord(
            step=e.step,
            t_s=(e.t_end_ns - start) / 1e9,
            energy_j=edges.between(start, e.t_end_ns),
            eval_loss=e.eval_loss,
            reached_target=e.reached_target,
        )
        for e in tl.evals
    ]
    crossing = None
    if target is not None:
        points = [(e.eval_loss, e.step, e.t_s, e.energy_j) for e in evals]
        found = interpolated_crossing(points, *target)
        if found is not None:
            (step, t_s, energy_j), bracketed = found
            crossing = CrossingRecord(step, t_s, energy_j, bracketed)
    target = next((e for e in evals if e.reached_target), None)
    warmup_j = edges.between(tl.warmup_start_ns, tl.warmup_stop_ns) if warmup else None
    above_idle_j = None
    if idle_power_w:
        above_idle_j = total_j - duration_s * total({d: w for d, w in idle_power_w.items()})

    metrics = Metrics(
        steps=tl.steps,
        tokens=tl.steps * tokens_per_step if tokens_per_step is not None else None,
        energy_total_j=total_j,
        energy_by_domain_j=by_domain,
        energy_per_step=per_step,
        joules_per_token=joules_per_token,
        tokens_per_joule=1.0 / joules_per_token if joules_per_token else None,
        avg_power_w=total_j / duration_s if duration_s > 0 else None,
        peak_power_w=peak_power_w,
        throughput_tokens_per_s=throughput,
        mfu=mfu,
        energy_to_target_j=target.energy_j if target else None,
        reached_target=target is not None,
        final_eval_loss=evals[-1].eval_loss if evals else None,
        warmup_energy_j=warmup_j,
        peak_device_memory_gb=None,  # filled by the runner from the workload
        energy_above_idle_j=above_idle_j,
        evals=evals,
        spans=[
            SpanRecord(
                s.name,
                s.t_start_ns,
                s.t_end_ns,
                (s.t_end_ns - s.t_start_ns) / 1e9,
                edges.between(s.t_start_ns, s.t_end_ns),
            )
            for s in tl.spans
        ],
        target_crossing=crossing,
    )
    return metrics, windows, warnings
