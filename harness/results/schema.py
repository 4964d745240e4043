"""The result.json schema, defined once: it drives writing (dataclasses -> JSON) and checking
(`check_result`, which walks the same dataclasses against a parsed file).

Numbers carry their unit in the key: _j, _w, _s, _ns, _kwh, _kg, _g_per_kwh.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from harness.results.typecheck import type_problems

SCHEMA_VERSION = "1"
IN_EVERY_FILE = {"required": True}  # a field with a default in code that every file must hold
STATUSES = ("running", "success", "target_not_reached", "aborted", "meter_error")


@dataclass
class CodeVersion:
    package_version: str
    git_sha: str | None
    git_dirty: bool | None


@dataclass
class Accelerator:
    vendor: str | None
    model: str
    count: int
    driver: str | None
    # per device domain, its settings and clocks as read (never set) at meter start and end:
    # power limit, SM and memory clocks, persistence and compute mode, ECC (meters/nvml.py)
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class SystemInfo:
    accelerator: Accelerator
    host_cpu: str
    host_cpu_count: int
    host_memory_gb: float
    os: str
    python: str
    frameworks: dict[str, str]
    world_size: int


@dataclass
class WorkloadInfo:
    """What a workload says about itself, and the result's `workload` record: one type, filled
    in by the workload (workloads/base.py re-exports it) and written as it is."""

    framework: str
    framework_version: str
    model_kind: str  # dense | moe
    # None where a custom workload does not say (workloads/custom.py): null, never guessed
    params_total: int | None
    params_active: int | None  # parameters one token passes through (== total for dense)
    flops_per_token: float | None  # training FLOPs per token, convention in workloads/flops.py
    tokens_per_step: int | None
    precision: str  # fp32 | bf16
    compiled: bool
    device_kind: str  # cpu | gpu | tpu
    device_name: str
    device_count: int
    # dense bf16 (or fp32 on CPU) peak of all devices, None if unknown
    peak_flops_per_s: float | None
    # best achievable eval loss, when the data makes it computable (synthetic corpus)
    loss_floor_nats: float | None = field(default=None, metadata=IN_EVERY_FILE)
    extra: dict[str, Any] = field(default_factory=dict, metadata=IN_EVERY_FILE)


@dataclass
class MeterSourceRecord:
    name: str
    method: str
    provenance: str
    role: str  # device | total (a wall meter: the system total, device meters its breakdown) |
    # beside (measured, not part of the total: an imported switch the summarizer does not count)
    domains: list[str]
    sample_hz: float
    measured_sample_hz: float | None
    idle_power_w: dict[str, float] | None
    details: dict[str, Any]
    # ticking counters' update periods: how power.csv's rows are placed into ticks
    counter_tick_s: dict[str, float] = field(default_factory=dict)
    # readings skipped (0 W, counter regressions) or retried (transient errors), by kind
    quality: dict[str, float] = field(default_factory=dict)


@dataclass
class MeterFaultRecord:
    t_ns: int
    source: str
    cause: str


@dataclass
class Timing:
    clock: str
    anchor_utc: str
    anchor_monotonic_ns: int
    run_start_ns: int
    run_stop_ns: int | None
    run_start_utc: str
    run_stop_utc: str | None
    duration_s: float | None
    time_to_target_s: float | None
    warmup_steps: int
    warmup_s: float
    init_s: float


@dataclass
class EnergyPerStep:
    mean_j: float
    median_j: float
    std_j: float
    min_j: float
    max_j: float
    cv: float
    windows: int
    steps_per_window: int
    counter_tick_s: float | None = None  # the slowest ticking counter among the total domains
    window_ticks_median: float | None = None  # counter ticks in the median window
    # the energy of one tick relative to a median window: spread at or below it is granularity
    tick_resolution: float | None = None
    tick_limited: bool = False  # median window under TICK_LIMITED_BELOW ticks: cv is not spread


@dataclass
class EvalRecord:
    step: int
    t_s: float  # eval end, seconds after run_start
    energy_j: float  # cumulative energy from run_start to the eval's end
    eval_loss: float
    reached_target: bool


@dataclass
class WindowRecord:
    step_start: int
    step_end: int
    t_start_ns: int
    t_end_ns: int
    energy_j: float
    train_loss: float | None
    stats: dict[str, float]
    expert_load: list[float] | None


@dataclass
class SpanRecord:
    """A window the caller named (harness.api Measurement.window), like Zeus's windows."""

    name: str
    t_start_ns: int
    t_end_ns: int
    duration_s: float
    energy_j: float


@dataclass
class CrossingRecord:
    """Where the eval curve crosses the target, interpolated linearly between the two evals
    that bracket it (harness/results/run_dir.py interpolated_crossing); MLPerf's rule, the first
    eval that meets it, stays the headline (energy_to_target_j, timing.time_to_target_s)."""

    step: float
    t_s: float
    energy_j: float
    bracketed: bool  # False: the first eval already met the target; its own values


@dataclass
class Metrics:
    steps: int
    tokens: int | None
    energy_total_j: float
    energy_by_domain_j: dict[str, float]
    energy_per_step: EnergyPerStep | None
    joules_per_token: float | None
    tokens_per_joule: float | None
    avg_power_w: float | None
    peak_power_w: float | None
    throughput_tokens_per_s: float | None
    mfu: float | None
    energy_to_target_j: float | None
    reached_target: bool
    final_eval_loss: float | None
    warmup_energy_j: float | None
    peak_device_memory_gb: float | None
    energy_above_idle_j: float | None  # gross minus idle power x duration; gross stays the headline
    evals: list[EvalRecord]
    spans: list[SpanRecord] = field(default_factory=list)
    target_crossing: CrossingRecord | None = None
    # the trace integrated over exactly run_start..run_stop where energy_total_j follows another
    # tool's rule (an import: MLCommons' summarizer); None where energy_total_j is that integral
    energy_window_j: float | None = None


@dataclass
class LocationCarbon:
    kg_co2e: float
    intensity_g_per_kwh: float
    region: str
    dataset: str
    year: int
    basis: str  # operational | lifecycle
    source: str


@dataclass
class MarketCarbon:
    kg_co2e: float
    method: str  # supplier-specific | energy-attribute-certificates+residual-mix
    factor_g_per_kwh: float
    covered_fraction: float | None


@dataclass
class TimeResolvedCarbon:
    kg_co2e: float
    source_csv: str
    mean_intensity_g_per_kwh: float  # energy-weighted over the run


@dataclass
class EmbodiedCarbon:
    kg_co2e: float
    kg_per_accelerator: float
    accelerators: int
    lifetime_years: float
    run_hours: float
    source: str


@dataclass
class Carbon:
    it_energy_kwh: float
    pue: float
    pue_source: str
    facility_energy_kwh: float
    location_based: LocationCarbon
    market_based: MarketCarbon | None  # only from user-supplied contractual factors
    time_resolved: TimeResolvedCarbon | None
    embodied: EmbodiedCarbon | None  # its own line, never added to the operational figures


@dataclass
class RankRecord:
    rank: int
    local_rank: int
    node_rank: int
    hostname: str
    devices: list[str]  # accelerators this rank trained on
    domains: list[str]  # meter domains this rank owned (node-level ones on local rank 0)
    energy_j: float | None  # sum of its domains over the timed run


@dataclass
class NodeRecord:
    node_rank: int
    hostname: str
    ranks: list[int]
    total_domains: list[str]  # the node's wall meter, else all its device domains
    energy_j: float | None


@dataclass
class DistributedRecord:
    launcher: str  # torchrun | jax.distributed | slurm ...
    backend: str  # nccl | gloo | jax
    world_size: int
    nnodes: int
    ranks_per_node: int
    clock_offsets_ns: list[int]  # per rank: rank 0's run_start minus this rank's
    clock_scales: list[float]  # per rank: rank 0's run_start..run_stop over this rank's
    ranks: list[RankRecord]
    nodes: list[NodeRecord]


@dataclass
class ImportRecord:
    """A run another tool measured, imported (harness/imports/): where it came from and by which
    rule its energy_total_j was computed. Native runs carry none."""

    tool: str  # mlperf-training
    round: str  # "4.0": the MLPerf round, whose summarizer rule the ruleset names
    rule: str  # that rule (configs/ruleset: mlperf_import.summarizer_rules)
    result_file: str  # result_<X>.txt: this run in the MLCommons view beside it
    nodes: int  # node files: each node's own wall-power log
    scaling_factor: float  # scaling.json's (1.0 without one); the benchmark score applies it
    basis: str  # how node power was taken: AC raw | DC | AC x efficiency | undeclared
    basis_source: str  # where that was read (conversion_eff's measurement_type, --basis)
    switch_basis: str  # estimated | measured-not-counted | none


@dataclass
class Result:
    schema_version: str
    run_id: str
    status: str
    benchmark: str
    benchmark_version: str
    ruleset: str | None
    seed: int
    target_metric: str
    target_threshold: float
    target_direction: str
    config: dict[str, Any]
    config_sha256: str
    code: CodeVersion
    system: SystemInfo
    workload: WorkloadInfo
    meters: list[MeterSourceRecord]
    timing: Timing
    metrics: Metrics | None
    windows: list[WindowRecord]
    carbon: Carbon | None
    files: dict[str, str]  # sibling file name -> sha256
    warnings: list[str] = field(default_factory=list)
    meter_faults: list[MeterFaultRecord] = field(default_factory=list)
    error: str | None = None
    distributed: DistributedRecord | None = None  # multi-process runs: who measured what
    imported: ImportRecord | None = None  # a run measured by another tool (joulebench import)


def to_json_dict(result: Result) -> dict[str, Any]:
    """Dataclasses to plain JSON types; non-finite floats become null (JSON has no NaN)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(result))


def check_result(data: Any) -> list[str]:
    """Every way `data` (parsed result.json) departs from the schema; empty when it conforms."""
    problems = type_problems(data, Result, "result")
    if isinstance(data, dict):
        if data.get("schema_version") != SCHEMA_VERSION:
            problems.append(
                f"result.schema_version: {data.get('schema_version')!r}, expected {SCHEMA_VERSION!r}"
            )
        if data.get("status") not in STATUSES:
            problems.append(f"result.status: {data.get('status')!r} is not one of {list(STATUSES)}")
    return problems
