"""Findings, the report that holds them, and hostile-input-safe JSON reading."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RUN_FILES = ("result.json", "power.csv", "mllog.txt", "config.yaml")
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
    energy_j: float | None = None  # the trace's energy over run_start..run_stop, once checked


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


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name} (JSON has no NaN or Infinity)")


def read_json(path: Path, limit: int) -> Any:
    """Parse JSON that may be hostile: size-limited, no NaN/Infinity, bounded nesting."""
    if path.stat().st_size > limit:
        raise ValueError(f"{path.stat().st_size} bytes, over the {limit}-byte limit")
    try:
        return json.loads(path.read_bytes().decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason})") from exc


def close_enough(a: float, b: float, rel: float, abs_tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)
