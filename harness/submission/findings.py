"""Findings, the report that holds them, and hostile-input-safe JSON reading."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.results.run_dir import (  # noqa: F401 - RUN_FILES: where the submission code finds it
    RUN_FILES,
    run_total_domains,
)
from harness.results.safe_files import read_json  # noqa: F401 - the validator's JSON reader
from harness.results.trace import TraceCurve

ACCEPTED_STATUS = ("success", "target_not_reached")


@dataclass
class Finding:
    rule: str
    severity: str  # error | warning
    file: str
    message: str


@dataclass
class Run:
    rel: str  # results/<system>/<benchmark>/<framework>/run_<k>
    system: str
    benchmark: str
    framework: str
    result: dict | None = None  # set when result.json passed the schema
    energy_j: float | None = None  # the trace's energy over run_start..run_stop (derived)
    fingerprint: tuple | None = None  # an import's log, node files and run times: IMP-006


@dataclass
class RunFiles:
    """One run as every run check sees it (each check is `check(files) -> None`): its files,
    read, and what the checks compare against, derived once before any check runs, so no check
    depends on another having run."""

    run: Run
    folder: Path
    result: dict  # result.json, schema-checked
    trace: TraceCurve | None = None  # power.csv when readable and its domains are the meters'
    broken_domains: set[str] = field(default_factory=set)  # timestamps repeat, or gaps at the ends

    @property
    def rel(self) -> str:
        return self.run.rel

    @property
    def whole_trace(self) -> TraceCurve | None:
        """The trace when every domain covers the timed window: the one energy is checked on."""
        return self.trace if self.trace is not None and not self.broken_domains else None


@dataclass
class Report:
    submission: str
    division: str | None
    ruleset: str | None
    runs: list[Run] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def rule_ids(self) -> set[str]:
        return {f.rule for f in self.findings if f.severity == "error"}

    def to_dict(self) -> dict:
        return {
            "submission": self.submission,
            "valid": self.valid,
            "division": self.division,
            "ruleset": self.ruleset,
            "runs": [r.rel for r in self.runs],
            "findings": [asdict(f) for f in self.findings],
        }


def close_enough(a: float, b: float, rel: float, abs_tol: float = 1e-9) -> bool:
    """a and b agree within `rel` (or `abs_tol`); never for NaN or an infinity, which a
    plain `abs(a - b) > tol` would let through."""
    if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return False
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)
