"""Scores (MLPerf-style olympic means over seeds) and the CI regression comparison.

A score pools the runs of one (system, benchmark, framework) that share meter provenance,
carbon basis and config (seed aside); unlike runs become separate rows, with a note. Its run
set is MLPerf's: rank by time to target, drop the fastest and the slowest; energy, CO2e and the
rest are means over that same set, each with its [min, max]. A run that missed the target
ranks slowest, so it is dropped when it is alone; two such runs leave the score undefined.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_RULESET = "v1"  # the ruleset scores follow when none is named


def olympic_mean(values: list[float], trim: int) -> float | None:
    ordered = sorted(values)
    kept = ordered[trim : len(ordered) - trim] if len(ordered) > 2 * trim else []
    if not kept or any(math.isinf(v) for v in kept):
        return None
    return statistics.fmean(kept)


RESULT_LIMIT_BYTES = 64 << 20  # ruleset v1's max_json_bytes; a result.json is ~100 kB


def load_results(paths: list[Path]) -> list[dict]:
    """Every result.json under the given run directories, submissions or files, found without
    following links and read through the safe reader (regular files only, size-limited, finite
    numbers): a link, FIFO, device or hostile file under the folder is skipped, never opened.
    A result of the wrong shape that gets this far stops the tool in one line (the CLI's
    guard, harness/submission/cli.py), never with a traceback."""
    from harness.results import safe_files

    found = []
    for path in paths:
        top = Path(path)
        for f in safe_files.find_files(top, "result.json"):
            root = top if f != top else f.parent
            try:
                data = safe_files.read_json(f, RESULT_LIMIT_BYTES, root)
            except (OSError, ValueError):
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
    variant: str  # "" unless runs of this (system, benchmark, framework) had to be split
    runs: int
    converged: int
    kept_seeds: list[int]  # the runs the time ranking keeps; every mean below is over them
    energy_to_target_j: float | None
    energy_to_target_kwh: float | None
    time_to_target_s: float | None
    energy_per_step_j: float | None
    tokens_per_joule: float | None
    kg_co2e: float | None
    energy_to_target_spread_j: list[float]
    spread: dict[str, list[float]]  # metric -> [min, max] over the kept runs


def group_key(r: dict) -> tuple[str, str, str]:
    parts = Path(r["_path"]).parts
    system = (
        parts[-4]
        if len(parts) >= 5 and parts[-5] == "results"
        else r["system"]["accelerator"]["model"]
    )
    return system, r["benchmark"], r["workload"]["framework"]


# config keys that differ between the runs of one score by design
UNPOOLED_CONFIG_KEYS = ("seed", "output_dir", "run_dir", "progress")


def _flat(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(value, sort_keys=True)}


def provenance(r: dict) -> str:
    return "+".join(sorted({m.get("provenance", "?") for m in r.get("meters") or []})) or "?"


def carbon_basis(r: dict) -> str:
    c = r.get("carbon") or {}
    lb = c.get("location_based") or {}
    return f"{lb.get('region', '?')} {lb.get('year', '?')} {lb.get('basis', '?')}, PUE {c.get('pue', '?')}"


def _config(r: dict) -> dict[str, str]:
    config = {k: v for k, v in (r.get("config") or {}).items() if k not in UNPOOLED_CONFIG_KEYS}
    return _flat(config)


def _pool(r: dict) -> tuple[str, str, str]:
    return provenance(r), carbon_basis(r), json.dumps(_config(r), sort_keys=True)


def _variant_labels(runs: list[dict]) -> tuple[dict[tuple, str], str | None]:
    """Runs of one (system, benchmark, framework) that may share a score have the same meter
    provenance, carbon basis and config (seed aside). A label per pool, and a note when there
    are several."""
    pools = sorted({_pool(r) for r in runs})
    if len(pools) == 1:
        return {pools[0]: ""}, None
    configs = [json.loads(p[2]) for p in pools]
    differing = sorted(k for k in set().union(*configs) if len({c.get(k) for c in configs}) > 1)
    labels = {}
    for pool, config in zip(pools, configs, strict=True):
        parts = []
        if len({p[0] for p in pools}) > 1:
            parts.append(pool[0])
        if len({p[1] for p in pools}) > 1:
            parts.append(f"carbon {pool[1]}")
        keys = [k for k in differing if not k.startswith(("meter.", "carbon."))] or differing
        if len({p[2] for p in pools}) > 1 and keys:
            shown = ", ".join(f"{k}={config.get(k, 'unset')}" for k in keys[:3])
            parts.append(shown + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""))
        labels[pool] = "; ".join(parts) or "config"
    dims = [
        name
        for name, i in (("meter provenance", 0), ("carbon basis", 1), ("config", 2))
        if len({p[i] for p in pools}) > 1
    ]
    return labels, f"split into {len(pools)} rows: the runs differ in {', '.join(dims)}"


def grouped(results: list[dict]) -> dict[tuple[str, str, str, str], list[dict]]:
    """Results by (system, benchmark, framework, variant): runs pool only where they share
    meter provenance, carbon basis and config (seed aside); `variant` names a split."""
    by_key: dict[tuple[str, str, str], list[dict]] = {}
    for r in results:
        by_key.setdefault(group_key(r), []).append(r)
    out: dict[tuple[str, str, str, str], list[dict]] = {}
    for key, runs in by_key.items():
        labels, _ = _variant_labels(runs)
        for r in runs:
            out.setdefault((*key, labels[_pool(r)]), []).append(r)
    return out


def pooling_notes(results: list[dict]) -> list[str]:
    """One line per (system, benchmark, framework) whose runs could not share one score."""
    by_key: dict[tuple[str, str, str], list[dict]] = {}
    for r in results:
        by_key.setdefault(group_key(r), []).append(r)
    notes = []
    for key, runs in sorted(by_key.items()):
        _, note = _variant_labels(runs)
        if note:
            notes.append(f"{key[1]}/{key[2]} on {key[0]}: {note}")
    return notes


def ruleset_trim(ruleset: str = DEFAULT_RULESET) -> int:
    """How many best and worst runs an olympic mean drops: the ruleset's olympic_trim."""
    from harness.submission.ruleset import load_ruleset

    return load_ruleset(ruleset).olympic_trim


def kept_by_time(runs: list[dict], trim: int | None = None) -> list[dict]:
    """MLPerf's run set: rank the runs by time to target (a run that missed it is the slowest)
    and drop the `trim` (the ruleset's olympic_trim) fastest and slowest; energy and every
    other mean use the same runs."""
    trim = ruleset_trim() if trim is None else trim

    def t(r):
        reached = r["metrics"].get("reached_target")
        return r["timing"]["time_to_target_s"] if reached else math.inf

    ordered = sorted(runs, key=t)
    return ordered[trim : len(ordered) - trim] if len(ordered) > 2 * trim else ordered


def _mean(values: list[float | None]) -> float | None:
    if not values or any(v is None or not math.isfinite(v) for v in values):
        return None
    return statistics.fmean(values)


def scores(results: list[dict], trim: int | None = None) -> list[Score]:
    trim = ruleset_trim() if trim is None else trim
    out = []
    for (system, benchmark, framework, variant), runs in sorted(grouped(results).items()):
        kept = kept_by_time(runs, trim)

        def reached(r):
            return bool(r["metrics"].get("reached_target"))

        readers = {
            "energy_to_target_j": lambda r: r["metrics"]["energy_to_target_j"] if reached(r) else None,
            "time_to_target_s": lambda r: r["timing"]["time_to_target_s"] if reached(r) else None,
            "energy_per_step_j": lambda r: (r["metrics"].get("energy_per_step") or {}).get("mean_j"),
            "tokens_per_joule": lambda r: r["metrics"].get("tokens_per_joule"),
            "kg_co2e": lambda r: ((r.get("carbon") or {}).get("location_based") or {}).get("kg_co2e"),
        }  # fmt: skip
        values = {name: [read(r) for r in kept] for name, read in readers.items()}
        # energy and time must exist for every kept run; the others average what is there
        means = {
            name: _mean(v if name.endswith("_to_target_j") or name == "time_to_target_s"
                        else [x for x in v if x is not None])
            for name, v in values.items()
        }  # fmt: skip
        spread = {name: [min(v), max(v)] for name, v in values.items() if means[name] is not None}
        energy_all = [readers["energy_to_target_j"](r) for r in runs]
        e = means["energy_to_target_j"]
        out.append(
            Score(
                system, benchmark, framework, variant, len(runs),
                sum(1 for r in runs if reached(r)), [r.get("seed") for r in kept],
                e, e / 3.6e6 if e is not None else None, means["time_to_target_s"],
                means["energy_per_step_j"], means["tokens_per_joule"], means["kg_co2e"],
                sorted(x for x in energy_all if x is not None), spread,
            )
        )  # fmt: skip
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


VERDICTS = ("regression", "ok", "inconclusive")
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 20261202  # fixed: the same runs always give the same interval and verdict


def trimmed(values: list[float], ruleset: str = DEFAULT_RULESET) -> list[float]:
    """The runs an olympic mean keeps: all but the ruleset's olympic_trim best and worst once
    there are the ruleset's runs_per_benchmark (MLPerf: one of five), all of them below that."""
    from harness.submission.ruleset import load_ruleset

    rules = load_ruleset(ruleset)
    ordered, trim = sorted(values), rules.olympic_trim
    if len(ordered) >= rules.runs_per_benchmark and len(ordered) > 2 * trim:
        return ordered[trim : len(ordered) - trim]
    return ordered


@dataclass
class Comparison:
    """One metric of one (benchmark, framework), candidate against baseline.

    `effect` is the relative change in the worse direction (+0.2: 20% worse; for higher-better
    metrics baseline/candidate - 1, so a 3x energy regression reads +200% on every metric),
    of the olympic means; `low`, `high` its 95% percentile-bootstrap interval over the kept runs.
    Verdict: regression when the whole interval is beyond the tolerance, ok when all of it is
    within, inconclusive when it straddles the tolerance (the noise is too large to say), with
    `runs_needed` a side that would narrow the interval enough."""

    benchmark: str
    framework: str
    metric: str
    verdict: str
    baseline: float
    candidate: float
    baseline_runs: tuple[int, int]  # (kept, all)
    candidate_runs: tuple[int, int]
    effect: float
    low: float
    high: float
    tolerance: float
    runs_needed: int | None = None

    def line(self) -> str:
        pct = lambda v: f"{100 * v:+.1f}%"  # noqa: E731
        head = {"regression": "REGRESSION", "ok": "OK", "inconclusive": "INCONCLUSIVE"}[
            self.verdict
        ]
        text = (
            f"{head} {self.benchmark}/{self.framework}: {self.metric} {pct(self.effect)} worse, "
            f"95% interval [{pct(self.low)}, {pct(self.high)}] against a {100 * self.tolerance:g}% "
            f"tolerance ({self.baseline:.6g} -> {self.candidate:.6g}: olympic means of "
            f"{self.baseline_runs[0]} of {self.baseline_runs[1]} baseline and "
            f"{self.candidate_runs[0]} of {self.candidate_runs[1]} candidate runs)"
        )
        if self.verdict == "inconclusive":
            text += "; the run-to-run noise is larger than the room to the tolerance" + (
                f": about {self.runs_needed} runs a side would resolve it"
                if self.runs_needed
                else ": at least 2 kept runs a side are needed for an interval"
            )
        return text


def _worse(b: np.ndarray, c: np.ndarray, higher_better: bool) -> np.ndarray:
    return b / c - 1.0 if higher_better else c / b - 1.0


def compare_metric(
    b_all: list[float], c_all: list[float], tolerance: float, higher_better: bool
) -> tuple[str, float, float, float, int | None, float, float]:
    """(verdict, effect, low, high, runs_needed, baseline mean, candidate mean)."""
    b, c = np.array(trimmed(b_all)), np.array(trimmed(c_all))
    mb, mc = float(b.mean()), float(c.mean())
    effect = float(_worse(np.array(mb), np.array(mc), higher_better))
    if len(b) < 2 or len(c) < 2:  # no spread on a side: no interval, no verdict
        return "inconclusive", effect, effect, effect, None, mb, mc
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    rb = b[rng.integers(0, len(b), size=(BOOTSTRAP_RESAMPLES, len(b)))].mean(axis=1)
    rc = c[rng.integers(0, len(c), size=(BOOTSTRAP_RESAMPLES, len(c)))].mean(axis=1)
    low, high = (float(x) for x in np.percentile(_worse(rb, rc, higher_better), [2.5, 97.5]))
    if low > tolerance:
        return "regression", effect, low, high, None, mb, mc
    if high <= tolerance:
        return "ok", effect, low, high, None, mb, mc
    # the interval narrows as 1/sqrt(runs): runs a side for its half-width to clear the tolerance
    half, room = max(high - effect, effect - low), abs(effect - tolerance)
    n = max(len(b), len(c))
    needed = math.ceil(n * (half / room) ** 2) if room > 0 else 1000
    extra = len(b_all) - len(b) if len(b_all) >= len(c_all) else len(c_all) - len(c)  # trimmed
    return "inconclusive", effect, low, high, min(needed + extra, 1000), mb, mc


def compare(
    baseline: list[dict], candidate: list[dict], tolerance: float
) -> tuple[list[Comparison], list[str]]:
    """Every metric of every (benchmark, framework) both sides ran, candidate against baseline,
    and notes on what could not be compared."""

    def by_key(results):
        out: dict[tuple[str, str], list[dict]] = {}
        for r in results:
            out.setdefault((r["benchmark"], r["workload"]["framework"]), []).append(r)
        return out

    base, cand = by_key(baseline), by_key(candidate)
    comparisons, notes = [], []
    for key in sorted(set(base) | set(cand)):
        if key not in base or key not in cand:
            notes.append(
                f"{key[0]}/{key[1]}: only in {'candidate' if key in cand else 'baseline'}; not compared"
            )
            continue
        for name, read, higher_better in METRICS:
            b = [v for v in map(read, base[key]) if isinstance(v, (int, float)) and v > 0]
            c = [v for v in map(read, cand[key]) if isinstance(v, (int, float)) and v > 0]
            if not b or not c:
                continue
            verdict, effect, low, high, needed, mb, mc = compare_metric(
                b, c, tolerance, higher_better
            )
            comparisons.append(
                Comparison(
                    key[0], key[1], name, verdict, mb, mc,
                    (len(trimmed(b)), len(b)), (len(trimmed(c)), len(c)),
                    effect, low, high, tolerance, needed,
                )
            )  # fmt: skip
    return comparisons, notes
