"""Scores (MLPerf-style olympic means over seeds) and the CI regression comparison.

Energy to target per (system, benchmark, framework): sort the runs, drop the best and the worst
(`olympic_trim`), average the rest. A run that missed the target counts as infinitely costly,
so it is dropped as the worst when it is alone; two such runs leave the score undefined.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path


def olympic_mean(values: list[float], trim: int) -> float | None:
    ordered = sorted(values)
    kept = ordered[trim : len(ordered) - trim] if len(ordered) > 2 * trim else []
    if not kept or any(math.isinf(v) for v in kept):
        return None
    return statistics.fmean(kept)


def load_results(paths: list[Path]) -> list[dict]:
    """Every result.json under the given run directories, submissions or files."""
    found = []
    for path in paths:
        files = [path] if path.is_file() else sorted(path.rglob("result.json"))
        for f in files:
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
                data["_path"] = str(f.parent)
                found.append(data)
    return found


@dataclass
class Score:
    system: str
    benchmark: str
    framework: str
    runs: int
    converged: int
    energy_to_target_j: float | None
    energy_to_target_kwh: float | None
    time_to_target_s: float | None
    energy_per_step_j: float | None
    tokens_per_joule: float | None
    kg_co2e: float | None
    energy_to_target_spread_j: list[float]


def group_key(r: dict) -> tuple[str, str, str]:
    parts = Path(r["_path"]).parts
    system = (
        parts[-4]
        if len(parts) >= 5 and parts[-5] == "results"
        else r["system"]["accelerator"]["model"]
    )
    return system, r["benchmark"], r["workload"]["framework"]


def grouped(results: list[dict]) -> dict[tuple[str, str, str], list[dict]]:
    """Results by (system, benchmark, framework)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in results:
        groups.setdefault(group_key(r), []).append(r)
    return groups


def scores(results: list[dict], trim: int = 1) -> list[Score]:
    groups = grouped(results)
    out = []
    for (system, benchmark, framework), runs in sorted(groups.items()):
        ms = [r["metrics"] for r in runs]
        energy = [m["energy_to_target_j"] if m.get("reached_target") else math.inf for m in ms]
        time_s = [
            r["timing"]["time_to_target_s"] if r["metrics"].get("reached_target") else math.inf
            for r in runs
        ]
        e = (
            olympic_mean(energy, trim)
            if len(runs) > 2 * trim
            else (statistics.fmean(energy) if runs else None)
        )
        e = None if e is not None and math.isinf(e) else e
        t = (
            olympic_mean(time_s, trim)
            if len(runs) > 2 * trim
            else (statistics.fmean(time_s) if runs else None)
        )
        t = None if t is not None and math.isinf(t) else t
        eps = [m["energy_per_step"]["mean_j"] for m in ms if m.get("energy_per_step")]
        tpj = [m["tokens_per_joule"] for m in ms if m.get("tokens_per_joule")]
        co2 = [r["carbon"]["location_based"]["kg_co2e"] for r in runs if r.get("carbon")]
        out.append(
            Score(
                system,
                benchmark,
                framework,
                len(runs),
                sum(1 for x in energy if math.isfinite(x)),
                e,
                e / 3.6e6 if e is not None else None,
                t,
                statistics.fmean(eps) if eps else None,
                statistics.fmean(tpj) if tpj else None,
                statistics.fmean(co2) if co2 else None,
                sorted(x for x in energy if math.isfinite(x)),
            )
        )
    return out


# -- regression comparison ------------------------------------------------------------------
METRICS = (  # (name, how to read it from a result, True if higher is better)
    (
        "energy_per_step_j",
        lambda r: (r["metrics"].get("energy_per_step") or {}).get("mean_j"),
        False,
    ),
    ("tokens_per_joule", lambda r: r["metrics"].get("tokens_per_joule"), True),
    ("throughput_tokens_per_s", lambda r: r["metrics"].get("throughput_tokens_per_s"), True),
    ("energy_to_target_j", lambda r: r["metrics"].get("energy_to_target_j"), False),
)


@dataclass
class Regression:
    benchmark: str
    framework: str
    metric: str
    baseline: float
    candidate: float
    allowed: float

    def line(self) -> str:
        change = 100 * (self.candidate / self.baseline - 1) if self.baseline else math.inf
        return (
            f"{self.benchmark}/{self.framework}: {self.metric} regressed {change:+.1f}% "
            f"({self.baseline:.6g} -> {self.candidate:.6g}; allowed change {self.allowed:.3g})"
        )


def compare(
    baseline: list[dict], candidate: list[dict], tolerance: float
) -> tuple[list[Regression], list[str]]:
    """Regressions of the candidate against the baseline, per (benchmark, framework).

    A metric regresses when it is worse than the baseline mean by more than tolerance x baseline
    plus twice the standard error of the difference (from the spread across runs, when either
    side has several), so one noisy run does not fail CI.
    """

    def by_key(results):
        out: dict[tuple[str, str], list[dict]] = {}
        for r in results:
            out.setdefault((r["benchmark"], r["workload"]["framework"]), []).append(r)
        return out

    base, cand = by_key(baseline), by_key(candidate)
    regressions, notes = [], []
    for key in sorted(set(base) | set(cand)):
        if key not in base or key not in cand:
            notes.append(
                f"{key[0]}/{key[1]}: only in {'candidate' if key in cand else 'baseline'}; not compared"
            )
            continue
        for name, read, higher_better in METRICS:
            b = [v for v in map(read, base[key]) if isinstance(v, (int, float))]
            c = [v for v in map(read, cand[key]) if isinstance(v, (int, float))]
            if not b or not c:
                continue
            mb, mc = statistics.fmean(b), statistics.fmean(c)
            se = math.sqrt(
                (statistics.variance(b) / len(b) if len(b) > 1 else 0.0)
                + (statistics.variance(c) / len(c) if len(c) > 1 else 0.0)
            )
            allowed = tolerance * abs(mb) + 2.0 * se
            worse = (mb - mc) if higher_better else (mc - mb)
            if worse > allowed:
                regressions.append(Regression(key[0], key[1], name, mb, mc, allowed))
    return regressions, notes
