"""One MLPerf power run as a joulebench result: its energy by the round's summarizer rule, its
trace on the log's clock, and the record of where every number came from.

The clock: MLPerf logs stamp UTC epoch milliseconds, so the result's clock is `utc_epoch_ns`,
anchored at run_start (anchor_monotonic_ns is run_start's epoch time in ns): log and trace
times agree exactly, as a native run's do.

Domains: node_<K>.txt is `node<K>/node:wall` (K as the file names it), a measured switch file
`sw<K>/switch:wall`; an estimated switch has no trace, and its energy is `sw<K>/switch:estimated`
in metrics.energy_by_domain_j, which sums to energy_total_j.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from harness.errors import SubmissionError
from harness.imports.mlperf_source import BenchmarkSource, RunSource
from harness.results import mlperf_power as mp
from harness.results import power_csv
from harness.results.run_dir import target_met
from harness.results.schema import (
    EvalRecord,
    ImportRecord,
    MeterSourceRecord,
    Metrics,
    Timing,
)
from harness.submission.ruleset import MLPerfBenchmark, MLPerfRound

TIMEZONE_STEP_S = 900.0  # clocks set to another time zone differ by whole quarter hours
TIMEZONE_SLACK_S = 60.0


@dataclass
class Nodes:
    """What the run's power files hold, read once."""

    energy_by_domain_j: dict[str, float]
    series: dict[str, mp.Series]  # the trace's domains: nodes, then measured switches
    switch_domains: list[str]  # measured switches among them (not counted by the summarizer)
    efficiency: dict[str, float]
    measurement_type: dict[str, str | None]
    switch_estimate_w: dict[str, float]
    clock_offset_s: dict[str, float]  # a measured switch moved onto the run's clock
    node_starts_ms: list[float]
    skipped_lines: int
    stop_equals_start: list[str]  # node files whose stop was logged at their start


def _parse(text: str, name: str) -> mp.LogFile:
    try:
        return mp.parse(text, name)
    except mp.PowerLogError as exc:
        raise SubmissionError(f"{exc}.", "import MLPerf logs as published.") from exc


def read_power(run: RunSource, where: str, ttt_ms: float, rnd: MLPerfRound) -> Nodes:
    out = Nodes({}, {}, [], {}, {}, {}, {}, [], 0, [])
    try:
        for name in sorted(run.nodes, key=mp.natural_key):
            log = _parse(run.nodes[name], f"{where}/{name}")
            out.skipped_lines += log.skipped
            node = mp.node_energy_j(log.records, ttt_ms, rnd.rule, f"{where}/{name}")
            domain = mp.domain_of(name)
            out.energy_by_domain_j[domain] = node.energy_j
            out.series[domain] = mp.reading_series(log.records, f"{where}/{name}")
            out.efficiency[domain] = node.efficiency
            out.measurement_type[domain] = mp.measurement_type(log.records)
            out.node_starts_ms.append(node.start_ms)
            if node.stop_equals_start:
                out.stop_equals_start.append(name)
        for name in sorted(run.switches, key=mp.natural_key):
            log = _parse(run.switches[name], f"{where}/{name}")
            out.skipped_lines += log.skipped
            energy, estimate = mp.switch_energy_j(log.records, ttt_ms, f"{where}/{name}")
            key = mp.energy_domain(name, estimate)
            out.energy_by_domain_j[key] = (
                energy  # 0 unless estimated: the summarizer reads no readings
            )
            series = mp.reading_series(log.records, f"{where}/{name}")
            if estimate is not None:
                out.switch_estimate_w[key] = float(estimate)
            elif series.t_ns:
                out.series[key] = series
                out.switch_domains.append(key)
    except mp.PowerLogError as exc:
        raise SubmissionError(f"{exc}.", "import MLPerf logs as published.") from exc
    return out


def align_switches(nodes: Nodes, start_ms: float, stop_ms: float) -> None:
    """A measured switch whose readings miss the run entirely, on a clock that differs from the
    nodes' by whole quarter hours (a time zone), moved onto the run's clock; the offset is kept."""
    if not nodes.node_starts_ms:
        return
    reference_ms = statistics.median(nodes.node_starts_ms)
    for domain in nodes.switch_domains:
        s = nodes.series[domain]
        if s.t_ns[0] / 1e6 <= stop_ms and s.t_ns[-1] / 1e6 >= start_ms:
            continue
        offset_s = (reference_ms - s.t_ns[0] / 1e6) / 1e3
        zones = round(offset_s / TIMEZONE_STEP_S)
        if zones and abs(offset_s - zones * TIMEZONE_STEP_S) <= TIMEZONE_SLACK_S:
            shift = int(zones * TIMEZONE_STEP_S * 1e9)
            nodes.series[domain] = mp.Series(
                [t + shift for t in s.t_ns], s.watts, s.repeated, s.reordered
            )
            nodes.clock_offset_s[domain] = zones * TIMEZONE_STEP_S


def trace_rows(nodes: Nodes) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """power.csv's text, and each domain's (t_ns, cumulative trapezoid joules)."""
    rows, curves = [power_csv.HEADER], {}
    for domain, s in nodes.series.items():
        t, w = np.array(s.t_ns, dtype=np.int64), np.array(s.watts, dtype=float)
        joules = power_csv.cumulative_trapezoid_j(t, w)
        curves[domain] = (t, joules)
        rows += [power_csv.row(int(a), domain, float(b), float(c)) for a, b, c in zip(t, w, joules, strict=True)]  # fmt: skip
    return "".join(rows), curves


def window_energy(curves, domains: list[str], t0_ns: int, t1_ns: int) -> float:
    """The trace's energy over t0..t1, summed over `domains` (held flat outside a domain's
    readings: only what was read counts), as the validator reads power.csv back."""
    total = 0.0
    for d in domains:
        t, j = curves[d]
        a, b = np.interp([t0_ns, t1_ns], t.astype(np.float64), j)
        total += float(b - a)
    return total


def peak_power_w(nodes: Nodes, domains: list[str], t0_ns: int, t1_ns: int) -> float | None:
    grid = np.unique(np.concatenate([np.array(nodes.series[d].t_ns) for d in domains]))
    grid = grid[(grid >= t0_ns) & (grid <= t1_ns)]
    if grid.size == 0:
        return None
    total = sum(np.interp(grid, nodes.series[d].t_ns, nodes.series[d].watts) for d in domains)
    return float(np.max(total))


def basis_of(nodes: Nodes, declared: str | None) -> tuple[str, str]:
    """(basis, where it was read) of the node power: the files' measurement_type and
    conversion_eff, else what the importer was told (--basis), else undeclared."""
    types = {t for t in nodes.measurement_type.values() if t}
    converted = any(e != 1.0 for e in nodes.efficiency.values())
    if len(types) > 1:
        return "mixed", "conversion_eff measurement_type"
    if types:
        kind = types.pop().upper()
        if declared and declared != kind:
            raise SubmissionError(
                f"--basis {declared} contradicts the node files' measurement_type {kind}.",
                "drop --basis: the files say how their power was measured.",
            )
        return (
            f"{kind} x efficiency" if converted else _raw(kind)
        ), "conversion_eff measurement_type"
    if declared:
        return (
            f"{declared} x efficiency" if converted else _raw(declared)
        ), "--basis (the importer)"
    return ("undeclared x efficiency" if converted else "undeclared"), "nothing in the files"


def _utc(ms: float) -> str:
    stamp = datetime.fromtimestamp(ms / 1e3, tz=timezone.utc)
    return stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass
class RunParts:
    """Everything of one run the writer needs but the shared records (system, code, carbon)."""

    status: str
    seed: int
    warnings: list[str]
    timing: Timing
    metrics: Metrics
    meters: list[MeterSourceRecord]
    imported: ImportRecord
    power_csv: str


def build_run(bench: BenchmarkSource, run: RunSource, k: int, rnd: MLPerfRound,
              table: MLPerfBenchmark, declared_basis: str | None,
              label: str | None = None) -> RunParts:  # fmt: skip
    where = f"{bench.folder}/power/{run.name}"
    log = _parse(run.log, f"{bench.folder}/{run.name}.txt")
    if log.skipped:
        raise SubmissionError(
            f"{bench.folder}/{run.name}.txt: {log.skipped} MLLOG lines do not parse, and "
            "MLCommons' summarizer drops such a run ('Parse error').",
            "import MLPerf logs as published.",
        )
    times = mp.run_times_ms(log.records)
    if times is None or not times[1] > times[0]:
        raise SubmissionError(
            f"{bench.folder}/{run.name}.txt has no run_start before a run_stop: the run did not "
            "finish, and MLCommons' summarizer drops it.",
            "import finished runs.",
        )
    start_ms, stop_ms = times
    ttt_ms = stop_ms - start_ms
    nodes = read_power(run, where, ttt_ms, rnd)
    align_switches(nodes, start_ms, stop_ms)
    text, curves = trace_rows(nodes)
    start_ns, stop_ns = int(round(start_ms * 1e6)), int(round(stop_ms * 1e6))
    node_domains = [d for d in nodes.series if d not in nodes.switch_domains]
    window_j = window_energy(curves, node_domains, start_ns, stop_ns)
    energy_j = 0.0
    for value in nodes.energy_by_domain_j.values():  # nodes, then switches: the summarizer's order
        energy_j += value
    warnings: list[str] = []
    evals, first = [], None
    for i, r in enumerate(mp.eval_records(log.records, table.metric)):
        meta = r.metadata if isinstance(r.metadata, dict) else {}
        step = next((meta[c] for c in ("samples_count", "epoch_num") if isinstance(meta.get(c), int)), i + 1)  # fmt: skip
        t_ns = min(int(round(r.time_ms * 1e6)), stop_ns)
        met = target_met(r.value, table.threshold, table.direction)
        reached = met and first is None
        first = i if reached else first
        evals.append(EvalRecord(step, (r.time_ms - start_ms) / 1e3,
                                window_energy(curves, node_domains, start_ns, max(t_ns, start_ns)),
                                float(r.value), reached))  # fmt: skip
    stop_status = next(
        (r.metadata.get("status") for r in log.records
         if r.key == "run_stop" and isinstance(r.metadata, dict)), None,
    )  # fmt: skip
    success = stop_status == "success" and first is not None
    if stop_status == "success" and first is None:
        warnings.append(
            f"the log's run_stop says success, but no {table.metric} eval meets the ruleset's "
            f"target ({table.direction} {table.threshold:g}): counted as not reaching it."
        )
    if nodes.stop_equals_start:
        warnings.append(
            f"{len(nodes.stop_equals_start)} node files log power_measurement_stop at their "
            f"power_measurement_start; {rnd.rule.id} (round {rnd.id}) takes the latest reading as "
            "the stop."
        )
    seed = next((r.value for r in log.records if r.key == "seed"), None)
    if isinstance(seed, bool) or not isinstance(seed, int):
        seed = k
        warnings.append("the log records no seed: seed is this run's number in the import.")
    init = next((r.time_ms for r in log.records if r.key == "init_start"), None)
    duration_s = ttt_ms / 1e3
    timing = Timing(
        clock="utc_epoch_ns",
        anchor_utc=_utc(start_ms),
        anchor_monotonic_ns=start_ns,
        run_start_ns=start_ns,
        run_stop_ns=stop_ns,
        run_start_utc=_utc(start_ms),
        run_stop_utc=_utc(stop_ms),
        duration_s=duration_s,
        time_to_target_s=duration_s if success else None,
        warmup_steps=0,
        warmup_s=0.0,
        init_s=(start_ms - init) / 1e3 if init is not None and init <= start_ms else 0.0,
    )
    metrics = Metrics(
        steps=0,  # MLPerf logs count samples (evals[].step is samples_count), not steps
        tokens=None,
        energy_total_j=energy_j,
        energy_by_domain_j=dict(nodes.energy_by_domain_j),
        energy_per_step=None,
        joules_per_token=None,
        tokens_per_joule=None,
        avg_power_w=energy_j / duration_s,
        peak_power_w=peak_power_w(nodes, node_domains, start_ns, stop_ns),
        throughput_tokens_per_s=None,
        mfu=None,
        energy_to_target_j=energy_j if success else None,
        reached_target=first is not None,
        final_eval_loss=evals[-1].eval_loss if evals else None,
        warmup_energy_j=None,
        peak_device_memory_gb=None,
        energy_above_idle_j=None,
        evals=evals,
        energy_window_j=window_j,
    )
    basis, basis_source = basis_of(nodes, declared_basis)
    switch_basis = (
        "estimated" if nodes.switch_estimate_w
        else "measured-not-counted" if nodes.switch_domains else "none"
    )  # fmt: skip
    rates = [_rate(nodes.series[d], start_ns, stop_ns) for d in node_domains]
    details = {
        "meter": "undeclared",  # nothing in MLPerf's files names the power meter
        "round": rnd.id,
        "rule": rnd.rule.id,
        "source": label,  # where SRC came from, as the importer said (--source)
        "files": dict(run.sha256),  # every file read, by its path in the repository
        "not_read": sorted(run.not_read),
        "conversion_eff": nodes.efficiency,
        "measurement_type": nodes.measurement_type,
        "switch_estimate_w": nodes.switch_estimate_w,
        "skipped_lines": nodes.skipped_lines,
        "stop_equals_start": nodes.stop_equals_start,  # the rule's stop_time says what it did
    }
    meters = [
        MeterSourceRecord("mlperf-import", "wall-meter", "measured", "total", node_domains,
                          min(rates), min(rates), None, details,
                          quality={"repeated_times": sum(nodes.series[d].repeated for d in node_domains),
                                   "reordered_readings": sum(nodes.series[d].reordered for d in node_domains)})
    ]  # fmt: skip
    if nodes.switch_domains:
        meters.append(
            MeterSourceRecord(
                "mlperf-import", "wall-meter", "measured", "beside", nodes.switch_domains,
                min(_rate(nodes.series[d], start_ns, stop_ns) for d in nodes.switch_domains),
                None, None,
                {"meter": "undeclared", "counted": False, "clock_offset_s": nodes.clock_offset_s},
            )
        )  # fmt: skip
    imported = ImportRecord(
        tool="mlperf-training", round=rnd.id, rule=rnd.rule.id, result_file=f"{run.name}.txt",
        nodes=len(run.nodes), scaling_factor=bench.scaling_factor, basis=basis,
        basis_source=basis_source, switch_basis=switch_basis,
    )  # fmt: skip
    return RunParts("success" if success else "target_not_reached", seed, warnings, timing,
                    metrics, meters, imported, text)  # fmt: skip


def _rate(series: mp.Series, start_ns: int, stop_ns: int) -> float:
    """Readings a second inside the timed window."""
    inside = sum(1 for t in series.t_ns if start_ns <= t <= stop_ns)
    return inside / max((stop_ns - start_ns) / 1e9, 1e-9)


def _raw(kind: str) -> str:
    """AC read at the wall with no conversion is `AC raw`; DC is DC."""
    return "AC raw" if kind == "AC" else kind
