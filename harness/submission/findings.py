"""Findings, the report that holds them, and hostile-input-safe JSON reading."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from harness.results.run_dir import (  # noqa: F401 - RUN_FILES: where the submission code finds it
    RUN_FILES,
    run_total_domains,
)
from harness.results.safe_files import read_json  # noqa: F401 - the validator's JSON reader

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
