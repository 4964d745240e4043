"""Dense against sparse: for each FLOP-matched pair, steps and energy to the shared target, the
MoE/dense ratio with its spread over seeds, and which effect decides it.

Patterson et al. 2021 claim sparse models reach a dense model's quality for far less energy.
Energy to target factors exactly into two effects:

    E_moe / E_dense = (S_moe / S_dense) x (e_moe / e_dense)

with S the steps to the target and e = E / S the energy per step on the way there (evals
included). A Switch MoE wins by needing fewer steps; it loses by costlier steps (routing,
dispatch, capacity padding). The reading says which of the two factors is further from 1.

Runs that miss the target count as infinitely costly (as in the olympic score): a side with
too many of them has no finite mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.submission.score import grouped, olympic_mean, ruleset_trim


@dataclass
class PairComparison:
    system: str
    framework: str
    dense: str  # benchmark names
    moe: str
    dense_runs: int
    moe_runs: int
    dense_steps: float | None  # olympic mean of steps to target
    moe_steps: float | None
    dense_energy_j: float | None  # olympic mean of energy to target
    moe_energy_j: float | None
    steps_ratio: float | None  # MoE / dense
    step_cost_ratio: float | None  # (E/S) MoE / (E/S) dense
    energy_ratio: float | None  # of the olympic means
    seed_ratios: list[float]  # per seed (matched seeds, else every MoE run against every dense)
    ratio_olympic: float | None  # olympic mean of seed_ratios
    ratio_min: float | None
    ratio_max: float | None
    seed_matched: bool
    reading: str
    variant: str = ""  # the scores' split label, when runs of one benchmark could not pool


def steps_to_target(run: dict) -> float:
    """The step of the first eval that met the target; inf for a run that never did."""
    hit = next((e for e in run["metrics"]["evals"] if e["reached_target"]), None)
    return float(hit["step"]) if hit else math.inf


def energy_to_target(run: dict) -> float:
    m = run["metrics"]
    return float(m["energy_to_target_j"]) if m.get("reached_target") else math.inf


def _olympic(values: list[float], trim: int) -> float | None:
    if len(values) > 2 * trim:
        mean = olympic_mean(values, trim)
    else:
        mean = sum(values) / len(values) if values else None
    return None if mean is None or math.isinf(mean) else mean


def declared(run: dict) -> tuple[str, str] | None:
    """(pair, role) as the run's benchmark config declares them (benchmark.pair, .role), or
    None: pairs are declared, never guessed from benchmark names."""
    bench = (run.get("config") or {}).get("benchmark") or {}
    pair, role = bench.get("pair"), bench.get("role")
    return (pair, role) if isinstance(pair, str) and role in ("dense", "moe") else None


def reading(steps: float | None, cost: float | None, energy: float | None) -> str:
    """One line: what the energy ratio is, and which factor dominates it."""
    if steps is None or cost is None or energy is None:
        return "no reading: a side has no finite energy to target (too many runs missed it)."
    verdict = "less" if energy < 1 else "more"
    effect_steps, effect_cost = abs(math.log(steps)), abs(math.log(cost))
    fewer = f"{'fewer' if steps < 1 else 'more'} steps ({steps:.2f}x)"
    costlier = f"{'costlier' if cost > 1 else 'cheaper'} steps ({cost:.2f}x per step)"
    first, second = (fewer, costlier) if effect_steps >= effect_cost else (costlier, fewer)
    return (
        f"MoE uses {energy:.2f}x dense's energy to target ({verdict}): {first} dominate {second}."
    )


def compare_pairs(results: list[dict], trim: int | None = None) -> list[PairComparison]:
    trim = ruleset_trim() if trim is None else trim
    groups = grouped(results)
    sides: dict[tuple[str, str, str, str, str], str] = {}  # (system, pair, role, fw, variant)
    for (system, benchmark, framework, variant), runs in groups.items():
        if (d := declared(runs[0])) is not None:
            sides[(system, d[0], d[1], framework, variant)] = benchmark
    out = []
    for (system, pair, role, framework, variant), moe in sorted(sides.items()):
        dense = sides.get((system, pair, "dense", framework, variant))
        if role != "moe" or dense is None:
            continue
        moe_runs, dense_runs = groups[(system, moe, framework, variant)], None
        dense_runs = groups[(system, dense, framework, variant)]
        s_d = _olympic([steps_to_target(r) for r in dense_runs], trim)
        s_m = _olympic([steps_to_target(r) for r in moe_runs], trim)
        e_d = _olympic([energy_to_target(r) for r in dense_runs], trim)
        e_m = _olympic([energy_to_target(r) for r in moe_runs], trim)
        steps_ratio = s_m / s_d if s_d and s_m else None
        energy_ratio = e_m / e_d if e_d and e_m else None
        cost_ratio = energy_ratio / steps_ratio if energy_ratio and steps_ratio else None
        by_seed_d = {r["seed"]: energy_to_target(r) for r in dense_runs}
        by_seed_m = {r["seed"]: energy_to_target(r) for r in moe_runs}
        common = sorted(set(by_seed_d) & set(by_seed_m))
        pairs = (
            [(by_seed_m[s], by_seed_d[s]) for s in common]
            if common
            else [(m, d) for m in by_seed_m.values() for d in by_seed_d.values()]
        )
        ratios = sorted(m / d for m, d in pairs if math.isfinite(m) and math.isfinite(d))
        out.append(
            PairComparison(
                system,
                framework,
                dense,
                moe,
                len(dense_runs),
                len(moe_runs),
                s_d,
                s_m,
                e_d,
                e_m,
                steps_ratio,
                cost_ratio,
                energy_ratio,
                ratios,
                _olympic(ratios, trim),
                ratios[0] if ratios else None,
                ratios[-1] if ratios else None,
                bool(common),
                reading(steps_ratio, cost_ratio, energy_ratio),
                variant,
            )
        )
    return out
