"""Load a versioned ruleset (configs/ruleset/<id>.yaml): the single source of thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import SubmissionError

RULESET_DIR = Path(__file__).resolve().parent.parent.parent / "configs" / "ruleset"


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
    system_required_fields: list[str]
    equivalence_steps: int
    equivalence_initial_tolerance: float
    equivalence_final_tolerance: float
    mlcommons_ruleset: str
    mlcommons_availability: list[str]
    mlcommons_system_fields: list[str]
    rule_ids: dict[str, str]  # every finding's id and what it means


def available_rulesets() -> list[str]:
    return sorted(p.stem for p in RULESET_DIR.glob("*.yaml"))


def load_ruleset(ruleset_id: str) -> Ruleset:
    if not isinstance(ruleset_id, str) or ruleset_id not in available_rulesets():
        raise SubmissionError(
            f"unknown ruleset {ruleset_id!r}.", f"use one of: {', '.join(available_rulesets())}."
        )
    raw = yaml.safe_load((RULESET_DIR / f"{ruleset_id}.yaml").read_text())
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
        system_required_fields=list(raw["system_required_fields"]),
        equivalence_steps=int(raw["equivalence"]["steps"]),
        equivalence_initial_tolerance=float(raw["equivalence"]["initial_loss_tolerance"]),
        equivalence_final_tolerance=float(raw["equivalence"]["final_loss_tolerance"]),
        mlcommons_ruleset=str(raw["mlcommons"]["ruleset"]),
        mlcommons_availability=list(raw["mlcommons"]["availability"]),
        mlcommons_system_fields=list(raw["mlcommons"]["system_fields"]),
        rule_ids={str(k): str(v) for k, v in raw["rule_ids"].items()},
    )
