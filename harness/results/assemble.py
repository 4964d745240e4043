"""Put a run's pieces together into one `Result` (the schema in schema.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from harness.carbon import compute_carbon
from harness.meters.base import SAMPLER_CPU_BUDGET
from harness.meters.view import ClockMap, MeterView, Owner
from harness.metrics import compute_metrics
from harness.results.run_dir import SIBLING_FILES
from harness.results.schema import (
    SCHEMA_VERSION,
    CodeVersion,
    DistributedRecord,
    MeterFaultRecord,
    MeterSourceRecord,
    NodeRecord,
    RankRecord,
    Result,
    SystemInfo,
    Timing,
    WorkloadInfo,
)
from harness.results.writer import sha256_file
from harness.timeline import Timeline


def _timing(tl: Timeline, warmup_steps: int) -> Timing:
    start = tl.run_start_ns if tl.run_start_ns is not None else tl.init_start_ns
    target = tl.first_target_eval()
    warmup_s = 0.0
    if tl.warmup_start_ns is not None and tl.warmup_stop_ns is not None:
        warmup_s = (tl.warmup_stop_ns - tl.warmup_start_ns) / 1e9
    return Timing(
        clock="monotonic_ns",
        anchor_utc=tl.utc_iso(tl.anchor_ns) or "",
        anchor_monotonic_ns=tl.anchor_ns,
        run_start_ns=start,
        run_stop_ns=tl.run_stop_ns,
        run_start_utc=tl.utc_iso(start) or "",
        run_stop_utc=tl.utc_iso(tl.run_stop_ns),
        duration_s=(tl.run_stop_ns - start) / 1e9 if tl.run_stop_ns is not None else None,
        time_to_target_s=(target.t_end_ns - start) / 1e9 if target else None,
        warmup_steps=warmup_steps,
        warmup_s=warmup_s,
        init_s=(start - tl.init_start_ns) / 1e9,
    )


def _carbon_trace(meter: MeterView, tl: Timeline, start_ns: int, stop_ns: int):
    """(UTC seconds, cumulative system joules) at every poll inside the run, for time-resolved CO2e."""
    import numpy as np

    totals = [d for d in meter.total_domains if d in meter.series and meter.series[d].t_ns.size]
    polls = [meter.series[d].t_ns for d in totals]
    times = np.unique(np.concatenate([[start_ns, stop_ns], *polls]))
    times = times[(times >= start_ns) & (times <= stop_ns)]
    energy = meter.energy_at(times)
    cumulative = sum((energy[d] for d in totals), np.zeros(times.size))
    return tl.anchor_utc.timestamp() + (times - tl.anchor_ns) / 1e9, cumulative


def _meter_records(meter: MeterView) -> list[MeterSourceRecord]:
    return [
        MeterSourceRecord(
            name=d.name,
            method=d.method,
            provenance=d.provenance,
            role=d.role,
            domains=d.domains,
            sample_hz=d.sample_hz,
            measured_sample_hz=rate,
            idle_power_w={k: v for k, v in meter.idle_power_w.items() if k in d.domains} or None,
            details=d.details,
            counter_tick_s=dict(d.counter_tick_s),
            quality=dict(d.quality),
        )
        for d, rate in meter.describe()
    ]


# quality entries that describe the sampler, not readings lost or retried: never a warning
SAMPLER_STATS = (
    "reads",
    "reads_per_s",
    "sampler_cpu_s",
    "sampler_cpu_core_fraction",
    "tick_relocks",
)


def _disclosed(system: SystemInfo, meter: MeterView) -> SystemInfo:
    """The system with what the GPU meter read of the devices: the driver version and each
    GPU's state at start and end (NVML's details; a run without NVML keeps what it had)."""
    driver, state = system.accelerator.driver, dict(system.accelerator.state)
    for d, _ in meter.describe():
        if d.name != "nvml":
            continue
        driver = driver or d.details.get("driver")
        for g in d.details.get("gpus", []):
            state[g["domain"]] = {
                "uuid": g["uuid"],
                "at_start": g["at_start"],
                "at_end": g["at_end"],
            }
    accelerator = dataclasses.replace(system.accelerator, driver=driver, state=state)
    return dataclasses.replace(system, accelerator=accelerator)


def _quality_warnings(meter: MeterView) -> list[str]:
    """One line per source that skipped or retried readings (the counts are in the result),
    and one per sampler that cost more CPU than its budget."""
    out = []
    for d, _ in meter.describe():
        counts = {k: n for k, n in d.quality.items() if n and k not in SAMPLER_STATS}
        if counts:
            said = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(counts.items()))
            out.append(f"{d.name} ({', '.join(d.domains)}): {said} (meters[].quality).")
        over = sampler_over_budget(d.quality, len(d.domains))
        if over:
            out.append(f"{d.name} ({', '.join(d.domains)}): {over}")
    return out


def sampler_over_budget(quality: dict[str, float], devices: int) -> str | None:
    """A sentence when a sampler thread used more of a core than SAMPLER_CPU_BUDGET per device
    it read (its CPU time over the span it ran), else None."""
    used = quality.get("sampler_cpu_core_fraction")
    budget = SAMPLER_CPU_BUDGET * max(devices, 1)
    if used is None or used <= budget:
        return None
    reads = quality.get("reads_per_s")
    per_read = f", {1e3 * used / reads:.2f} ms of CPU a read at {reads:g} reads/s" if reads else ""
    return (
        f"its sampler thread used {used:.1%} of one core{per_read}, over the budget of "
        f"{SAMPLER_CPU_BUDGET:.0%} per device ({budget:.0%} for {devices}): the host pays for "
        "the metering; leave meter.sample_hz unset (reads timed to the counter's ticks)."
    )


def slowest_tick_s(ticks: dict[str, float], domains: list[str]) -> float | None:
    """The longest counter tick among `domains`: what limits a window's resolution."""
    periods = [ticks[d] for d in domains if d in ticks]
    return max(periods) if periods else None


@dataclass
class RankLayout:
    """How a multi-process run was spread: who measured what (harness/ranks.py)."""

    owners: list[Owner]
    clocks: list[ClockMap]
    launcher: str
    backend: str
    ranks_per_node: int


def _distributed(layout: RankLayout, meter: MeterView, by_domain: dict[str, float] | None):
    def energy(domains: list[str]) -> float | None:
        return None if by_domain is None else sum(by_domain.get(d, 0.0) for d in domains)

    ranks = []
    for o in layout.owners:
        domains = [d for d, owner in meter.owners.items() if owner.rank == o.rank]
        ranks.append(
            RankRecord(
                o.rank, o.local_rank, o.node_rank, o.hostname, o.devices, domains, energy(domains)
            )
        )
    nodes = []
    for node in sorted({o.node_rank for o in layout.owners}):
        members = [o for o in layout.owners if o.node_rank == node]
        totals = [d for d in meter.total_domains if d.startswith(f"node{node}/")]
        nodes.append(
            NodeRecord(node, members[0].hostname, [o.rank for o in members], totals, energy(totals))
        )
    return DistributedRecord(
        launcher=layout.launcher,
        backend=layout.backend,
        world_size=len(layout.owners),
        nnodes=len(nodes),
        ranks_per_node=layout.ranks_per_node,
        clock_offsets_ns=[c.offset_ns for c in layout.clocks],
        clock_scales=[c.scale for c in layout.clocks],
        ranks=ranks,
        nodes=nodes,
    )


def assemble_result(
    *,
    cfg,
    config_dict: dict,
    config_sha256: str,
    run_id: str,
    status: str,
    tl: Timeline,
    meter: MeterView,
    info: WorkloadInfo,
    code: CodeVersion,
    system: SystemInfo,
    run_dir: Path,
    final: bool,
    warnings: list[str],
    error: str | None,
    peak_memory_bytes: int | None = None,
    layout: RankLayout | None = None,
) -> Result:
    """Build the Result. `final` adds file hashes (only meaningful once the files are closed)."""
    bench = cfg.benchmark
    metrics = windows = carbon = None
    all_warnings = list(warnings)
    if tl.run_start_ns is not None:
        stop = tl.run_stop_ns if tl.run_stop_ns is not None else Timeline.now()
        tl_view = dataclasses.replace(tl, run_stop_ns=stop)
        metrics, windows, metric_warnings = compute_metrics(
            tl_view,
            meter.energy_at,
            meter.power_peak_w(tl.run_start_ns, stop),
            info,
            bench.window_steps,
            meter.total_domains,
            meter.idle_power_w or None,
            slowest_tick_s(meter.counter_tick_s, meter.total_domains),
            (bench.target.threshold, bench.target.direction),
        )
        all_warnings += metric_warnings
        if peak_memory_bytes is not None:
            metrics.peak_device_memory_gb = peak_memory_bytes / 2**30
        trace = (
            _carbon_trace(meter, tl, tl.run_start_ns, stop)
            if cfg.carbon.time_resolved_csv
            else None
        )
        carbon = compute_carbon(
            metrics.energy_total_j,
            cfg.carbon,
            accelerator_model=info.device_name,
            accelerator_count=info.device_count,
            run_hours=(stop - tl.run_start_ns) / 3.6e12,
            trace=trace,
        )
        if cfg.carbon.region == "world" and cfg.carbon.intensity_g_per_kwh is None:
            all_warnings.append(
                "CO2e uses the world-average grid intensity (IEA 2019), not your grid: "
                "set carbon.region (e.g. USA, gcp:us-central1) for a real figure."
            )
    all_warnings += meter.warnings + _quality_warnings(meter)
    provenances = {d.provenance for d, _ in meter.describe()}
    if provenances - {"measured"}:
        all_warnings.append(
            f"energy is {'/'.join(sorted(provenances))}, not measured: "
            "not valid for a closed submission."
        )
    files = (
        {name: sha256_file(run_dir / name) for name in SIBLING_FILES if (run_dir / name).is_file()}
        if final
        else {}
    )
    return Result(
        schema_version=SCHEMA_VERSION,
        run_id=run_id,
        status=status,
        benchmark=bench.name,
        benchmark_version=bench.version,
        ruleset=cfg.submission.ruleset,
        seed=cfg.seed,
        target_metric=bench.target.metric,
        target_threshold=bench.target.threshold,
        target_direction=bench.target.direction,
        config=config_dict,
        config_sha256=config_sha256,
        code=code,
        system=_disclosed(system, meter),
        workload=dataclasses.replace(info, extra=dict(info.extra)),
        meters=_meter_records(meter),
        timing=_timing(tl, bench.warmup_steps),
        metrics=metrics,
        windows=windows or [],
        carbon=carbon,
        files=files,
        warnings=all_warnings,
        meter_faults=[MeterFaultRecord(f.t_ns, f.source, f.cause) for f in meter.faults],
        error=error,
        distributed=None
        if layout is None
        else _distributed(layout, meter, metrics.energy_by_domain_j if metrics else None),
    )
