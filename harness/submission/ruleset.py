"""Load a versioned ruleset (configs/ruleset/<id>.yaml): the single source of thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import SubmissionError
from harness.results.mlperf_power import SummarizerRule

RULESET_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "ruleset"


@dataclass(frozen=True)
class TraceRules:
    """The trace thresholds one meter source's runs are held to (trace.by_source, else trace)."""

    min_sample_hz: float
    max_gap_s: float
    coverage_is_fact: bool  # the power window against the run is reported (IMP-002), not failed


@dataclass(frozen=True)
class MLPerfRound:
    id: str  # "4.0"
    rule: SummarizerRule  # the result_summarizer version that scored it
    mlcommons_ruleset: str  # the training ruleset its checkers ran with ("4.0.0")


@dataclass(frozen=True)
class MLPerfBenchmark:
    runs: int  # result files MLPerf requires (mlperf_logging.benchmark_meta)
    drop: int  # runs the olympic score drops at each end (the summarizer's max_dropped_scores)
    metric: str  # the eval_accuracy record's metric (metadata.metric where one logs several)
    threshold: float
    direction: str  # lower | higher


@dataclass(frozen=True)
class MLPerfImportRules:
    rules: dict[str, SummarizerRule]  # every version of the summarizer's energy rule, by id
    rounds: dict[str, MLPerfRound]
    benchmarks: dict[str, MLPerfBenchmark]
    trust: dict[str, dict]  # IMP rule id -> severity and bounds
    max_line_bytes: int
    max_file_bytes: int
    max_files: int
    energy_tolerance: float  # energy_total_j against the summarizer rule re-applied

    def round(self, round_id: str) -> MLPerfRound:
        if round_id not in self.rounds:
            raise SubmissionError(
                f"MLPerf round {round_id!r} is not in the ruleset.",
                f"use one of: {', '.join(sorted(self.rounds))}.",
            )
        return self.rounds[round_id]


@dataclass(frozen=True)
class Ruleset:
    id: str
    runs_per_benchmark: int
    olympic_trim: int
    max_non_converged: int
    min_sample_hz: float
    max_gap_s: float
    coverage_slack_s: float
    counter_max_decrease_j: float
    counter_vs_power_tolerance: float
    counter_vs_power_min_samples: int
    max_edge_skew_s: float
    max_clock_drift_ppm: float
    energy_tolerance: float
    co2e_tolerance: float
    divisions: dict[str, list[str]]
    same_config_except: list[str]
    max_json_bytes: int
    max_trace_bytes: int
    max_mllog_bytes: int
    max_trace_rows: int
    max_run_hours: float
    mllog_time_tolerance_s: float
    meter_sources: dict[str, dict]
    meter_trust_tolerance: float  # a counter against its power at open (meters/trust.py)
    meter_agreement: dict  # MLPerf's meter-agreement test (submission/agreement.py)
    system_required_fields: list[str]
    equivalence_steps: int
    equivalence_initial_tolerance: float
    equivalence_final_tolerance: float
    mlcommons_ruleset: str
    mlcommons_availability: list[str]
    mlcommons_system_fields: list[str]
    mlcommons_text_fields: list[str]  # the system fields its checker needs as strings
    mlcommons_rule: SummarizerRule  # the energy rule its result summarizer applies
    mlperf: MLPerfImportRules
    trace_by_source: dict[str, TraceRules]
    rule_ids: dict[str, str]  # every finding's id and what it means

    def trace_for(self, sources: list[str]) -> TraceRules:
        """The trace thresholds of a run whose meters are `sources`: a source's own
        (trace.by_source) when one of them has them, else the ruleset's."""
        for name in sources:
            if name in self.trace_by_source:
                return self.trace_by_source[name]
        return TraceRules(self.min_sample_hz, self.max_gap_s, False)


def available_rulesets() -> list[str]:
    return sorted(p.stem for p in RULESET_DIR.glob("*.yaml"))


def load_ruleset(ruleset_id: str) -> Ruleset:
    if not isinstance(ruleset_id, str) or ruleset_id not in available_rulesets():
        raise SubmissionError(
            f"unknown ruleset {ruleset_id!r}.", f"use one of: {', '.join(available_rulesets())}."
        )
    raw = yaml.safe_load((RULESET_DIR / f"{ruleset_id}.yaml").read_text())
    mlperf = _mlperf_rules(raw["mlperf_import"])
    return Ruleset(
        id=raw["id"],
        runs_per_benchmark=int(raw["runs_per_benchmark"]),
        olympic_trim=int(raw["olympic_trim"]),
        max_non_converged=int(raw["max_non_converged"]),
        min_sample_hz=float(raw["trace"]["min_sample_hz"]),
        max_gap_s=float(raw["trace"]["max_gap_s"]),
        coverage_slack_s=float(raw["trace"]["coverage_slack_s"]),
        counter_max_decrease_j=float(raw["trace"]["counter_max_decrease_j"]),
        counter_vs_power_tolerance=float(raw["trace"]["counter_vs_power_tolerance"]),
        counter_vs_power_min_samples=int(raw["trace"]["counter_vs_power_min_samples"]),
        max_edge_skew_s=float(raw["distributed"]["max_edge_skew_s"]),
        max_clock_drift_ppm=float(raw["distributed"]["max_clock_drift_ppm"]),
        energy_tolerance=float(raw["energy_tolerance"]),
        co2e_tolerance=float(raw["co2e_tolerance"]),
        divisions={k: list(v) for k, v in raw["divisions"].items()},
        same_config_except=list(raw["same_config_except"]),
        max_json_bytes=int(raw["limits"]["max_json_bytes"]),
        max_trace_bytes=int(raw["limits"]["max_trace_bytes"]),
        max_mllog_bytes=int(raw["limits"]["max_mllog_bytes"]),
        max_trace_rows=int(raw["limits"]["max_trace_rows"]),
        max_run_hours=float(raw["limits"]["max_run_hours"]),
        mllog_time_tolerance_s=float(raw["mllog_time_tolerance_s"]),
        meter_sources={k: dict(v) for k, v in raw["meter_sources"].items()},
        meter_trust_tolerance=float(raw["meter_trust"]["tolerance_frac"]),
        meter_agreement=dict(raw["meter_agreement"]),
        system_required_fields=list(raw["system_required_fields"]),
        equivalence_steps=int(raw["equivalence"]["steps"]),
        equivalence_initial_tolerance=float(raw["equivalence"]["initial_loss_tolerance"]),
        equivalence_final_tolerance=float(raw["equivalence"]["final_loss_tolerance"]),
        mlcommons_ruleset=str(raw["mlcommons"]["ruleset"]),
        mlcommons_availability=list(raw["mlcommons"]["availability"]),
        mlcommons_system_fields=list(raw["mlcommons"]["system_fields"]),
        mlcommons_text_fields=list(raw["mlcommons"]["text_fields"]),
        mlcommons_rule=mlperf.rules[raw["mlcommons"]["summarizer_rule"]],
        mlperf=mlperf,
        trace_by_source={
            name: TraceRules(
                float(t["min_sample_hz"]), float(t["max_gap_s"]), t.get("coverage") == "fact"
            )
            for name, t in (raw["trace"].get("by_source") or {}).items()
        },
        rule_ids={str(k): str(v) for k, v in raw["rule_ids"].items()},
    )


def _mlperf_rules(raw: dict) -> MLPerfImportRules:
    rules = {
        name: SummarizerRule(
            id=name,
            reading_order=r["reading_order"],
            before_start=r["before_start"],
            after_stop=r["after_stop"],
            stop_time=r["stop_time"],
            missing_start=r["missing_start"],
        )
        for name, r in raw["summarizer_rules"].items()
    }
    return MLPerfImportRules(
        rules=rules,
        rounds={
            str(k): MLPerfRound(str(k), rules[v["rule"]], str(v["mlcommons_ruleset"]))
            for k, v in raw["rounds"].items()
        },
        benchmarks={
            name: MLPerfBenchmark(
                int(b["runs"]),
                int(b["drop"]),
                str(b["metric"]),
                float(b["threshold"]),
                str(b["direction"]),
            )
            for name, b in raw["benchmarks"].items()
        },  # fmt: skip
        trust={str(k): dict(v) for k, v in raw["trust"].items()},
        max_line_bytes=int(raw["limits"]["max_line_bytes"]),
        max_file_bytes=int(raw["limits"]["max_file_bytes"]),
        max_files=int(raw["limits"]["max_files"]),
        energy_tolerance=float(raw["energy_tolerance"]),
    )
