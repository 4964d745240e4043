"""The CI regression comparison (`joulebench compare`): each metric of each benchmark and
framework, candidate against baseline, olympic-trimmed alike, with a bootstrap interval of the
relative change and a verdict (regression, ok, inconclusive)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.submission.score import DEFAULT_RULESET, energy_basis

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
    system: str = ""  # an imported benchmark's system; native comparisons pool systems

    def line(self) -> str:
        pct = lambda v: f"{100 * v:+.1f}%"  # noqa: E731
        head = {"regression": "REGRESSION", "ok": "OK", "inconclusive": "INCONCLUSIVE"}[
            self.verdict
        ]
        text = (
            f"{head} {self.benchmark}/{self.framework}{f' on {self.system}' if self.system else ''}: "
            f"{self.metric} {pct(self.effect)} worse, "
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
        """(benchmark, framework, system): an imported run's system is part of its key (one
        MLPerf benchmark on 1, 8 and 64 nodes is three series); a native run's is not (a
        baseline package and a CI runner's run directories name one system differently)."""
        from harness.submission.score import group_key

        out: dict[tuple[str, str, str], list[dict]] = {}
        for r in results:
            system = group_key(r)[0] if r.get("imported") else ""
            out.setdefault((r["benchmark"], r["workload"]["framework"], system), []).append(r)
        return out

    base, cand = by_key(baseline), by_key(candidate)
    comparisons, notes = [], []
    for key in sorted(set(base) | set(cand)):
        if key not in base or key not in cand:
            notes.append(
                f"{key[0]}/{key[1]}{f' on {key[2]}' if key[2] else ''}: only in "
                f"{'candidate' if key in cand else 'baseline'}; not compared"
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
                    effect, low, high, tolerance, needed, key[2],
                )
            )  # fmt: skip
        bases = ({energy_basis(r) for r in base[key]}, {energy_basis(r) for r in cand[key]})
        if bases[0] != bases[1]:
            notes.append(
                f"{key[0]}/{key[1]}{f' on {key[2]}' if key[2] else ''}: the baseline is on "
                f"{' + '.join(sorted(bases[0]))}, the candidate on {' + '.join(sorted(bases[1]))}: "
                "the change includes the difference of bases"
            )
    return comparisons, notes
