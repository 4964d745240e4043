"""From a timeline and a cumulative-energy curve to the run's metrics.

`energy_at(t_ns) -> {domain: cumulative J}` is all this needs, so the validator can recompute
the same numbers from a trace file that the runner computed from the live meter.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from harness.results.schema import EnergyPerStep, EvalRecord, Metrics, WindowRecord
from harness.timeline import Timeline
from workloads.base import WorkloadInfo

EnergyAt = Callable[[int], dict[str, float]]


def energy_between(energy_at: EnergyAt, t0_ns: int, t1_ns: int) -> dict[str, float]:
    e0, e1 = energy_at(t0_ns), energy_at(t1_ns)
    return {domain: e1[domain] - e0.get(domain, 0.0) for domain in e1}


def energy_per_step_stats(
    window_energies_j: list[float], steps_per_window: int
) -> EnergyPerStep | None:
    """Mean, median and spread of per-step energy over full windows of `steps_per_window` steps."""
    if not window_energies_j:
        return None
    per_step = [e / steps_per_window for e in window_energies_j]
    mean = statistics.fmean(per_step)
    std = statistics.stdev(per_step) if len(per_step) > 1 else 0.0
    return EnergyPerStep(
        mean_j=mean,
        median_j=statistics.median(per_step),
        std_j=std,
        min_j=min(per_step),
        max_j=max(per_step),
        cv=std / mean if mean > 0 else 0.0,
        windows=len(per_step),
        steps_per_window=steps_per_window,
    )


def compute_metrics(
    tl: Timeline,
    energy_at: EnergyAt,
    peak_power_w: float | None,
    info: WorkloadInfo,
    steps_per_window: int,
    total_domains: list[str] | None = None,
    idle_power_w: dict[str, float] | None = None,
) -> tuple[Metrics, list[WindowRecord], list[str]]:
    """`total_domains` are summed for every total (all domains when None: with a wall meter
    only its domain counts, the device meters being its breakdown). `idle_power_w` gives
    `energy_above_idle_j`, reported beside the gross energy, never instead of it."""
    assert tl.run_start_ns is not None and tl.run_stop_ns is not None
    warnings: list[str] = []
    start, stop = tl.run_start_ns, tl.run_stop_ns

    def total(by_domain: dict[str, float]) -> float:
        keys = by_domain if total_domains is None else total_domains
        return sum(by_domain.get(k, 0.0) for k in keys)

    by_domain = energy_between(energy_at, start, stop)
    total_j = total(by_domain)
    duration_s = (stop - start) / 1e9

    windows = []
    for w in tl.windows:
        e = total(energy_between(energy_at, w.t_start_ns, w.t_end_ns))
        windows.append(
            WindowRecord(
                w.step_start,
                w.step_end,
                w.t_start_ns,
                w.t_end_ns,
                e,
                w.train_loss,
                w.stats,
                w.expert_load,
            )
        )
    full = [w for w in windows if w.step_end - w.step_start == steps_per_window]
    per_step = energy_per_step_stats([w.energy_j for w in full], steps_per_window)
    if per_step is None:
        warnings.append(
            "no complete metered window: energy per step is unavailable; run more steps."
        )

    window_time_s = sum((w.t_end_ns - w.t_start_ns) / 1e9 for w in full)
    throughput = (
        steps_per_window * len(full) * info.tokens_per_step / window_time_s
        if window_time_s > 0
        else None
    )
    joules_per_token = per_step.mean_j / info.tokens_per_step if per_step else None
    mfu = None
    if throughput is not None and info.peak_flops_per_s:
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
            energy_j=total(energy_between(energy_at, start, e.t_end_ns)),
            eval_loss=e.eval_loss,
            reached_target=e.reached_target,
        )
        for e in tl.evals
    ]
    target = next((e for e in evals if e.reached_target), None)
    warmup_j = None
    if tl.warmup_start_ns is not None and tl.warmup_stop_ns is not None:
        warmup_j = total(energy_between(energy_at, tl.warmup_start_ns, tl.warmup_stop_ns))
    above_idle_j = None
    if idle_power_w:
        above_idle_j = total_j - duration_s * total({d: w for d, w in idle_power_w.items()})

    metrics = Metrics(
        steps=tl.steps,
        tokens=tl.steps * info.tokens_per_step,
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
    )
    return metrics, windows, warnings
