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

DEFAULT_RULESET = "v1"  # the ruleset scores follow when none is named
NATIVE_BASIS = "joulebench meters"  # the energy basis of a run joulebench measured itself


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
    basis: str = NATIVE_BASIS  # how the energy was obtained (energy_basis): rows pool only alike
    scaling_factor: float = 1.0  # MLPerf's RCP scaling (scaling.json) on energy, time and CO2e
    energy_window_j: float | None = None  # an import's trace over each run, the same mean


def group_key(r: dict) -> tuple[str, str, str]:
    parts = Path(r["_path"]).parts
    system = (
        parts[-4]
        if len(parts) >= 5 and parts[-5] == "results"
        else r["system"]["accelerator"]["model"]
    )
    return system, r["benchmark"], r["workload"]["framework"]


def system_of(r: dict) -> str:
    """The system a result's score row is for (group_key's first part)."""
    return group_key(r)[0]


# config keys that differ between the runs of one score by design
UNPOOLED_CONFIG_KEYS = ("seed", "output_dir", "run_dir", "progress")


def _flat(value, prefix: str = "") -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(value, sort_keys=True)}


def energy_basis(r: dict) -> str:
    """How a run's energy was obtained, for pooling like with like: a native run's by its own
    meters; an import's by how node power was taken (AC raw, DC, AC x efficiency) and what its
    switch adds (estimated, measured but not counted, none)."""
    imported = r.get("imported")
    if not imported:
        return NATIVE_BASIS
    return f"{imported['basis']}; switch {imported['switch_basis']}"


def provenance(r: dict) -> str:
    return "+".join(sorted({m.get("provenance", "?") for m in r.get("meters") or []})) or "?"


def carbon_basis(r: dict) -> str:
    c = r.get("carbon") or {}
    lb = c.get("location_based") or {}
    return f"{lb.get('region', '?')} {lb.get('year', '?')} {lb.get('basis', '?')}, PUE {c.get('pue', '?')}"


def _config(r: dict) -> dict[str, str]:
    config = {k: v for k, v in (r.get("config") or {}).items() if k not in UNPOOLED_CONFIG_KEYS}
    return _flat(config)


def _pool(r: dict) -> tuple[str, str, str, str]:
    return provenance(r), carbon_basis(r), json.dumps(_config(r), sort_keys=True), energy_basis(r)


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
        keys = [k for k in differing if not k.startswith(("meter.", "carbon.", "import."))]
        keys = keys or ([] if len({p[3] for p in pools}) > 1 else differing)
        if len({p[2] for p in pools}) > 1 and keys:
            shown = ", ".join(f"{k}={config.get(k, 'unset')}" for k in keys[:3])
            parts.append(shown + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""))
        if len({p[3] for p in pools}) > 1:
            parts.append(pool[3])
        labels[pool] = "; ".join(parts) or "config"
    dims = [
        name
        for name, i in (
            ("meter provenance", 0), ("carbon basis", 1), ("config", 2), ("energy basis", 3)
        )
        if len({p[i] for p in pools}) > 1
    ]  # fmt: skip
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


def basis_note(rows: list[Score]) -> str | None:
    """One line when the rows of a table are not all on one energy basis."""
    bases: dict[str, int] = {}
    for row in rows:
        bases[row.basis] = bases.get(row.basis, 0) + 1
    if len(bases) < 2:
        return None
    shown = "; ".join(f"{b} ({n} row{'s' if n > 1 else ''})" for b, n in sorted(bases.items()))
    return (
        f"the rows are on {len(bases)} energy bases, {shown}: compare rows of one basis (AC "
        "raw and DC differ by the power supplies' loss, an estimated switch adds its estimate)"
    )


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


def imported_rules(runs: list[dict]) -> tuple[int, float] | None:
    """(runs dropped at each end, scaling factor) of an imported MLPerf benchmark: MLPerf's
    olympic drop for it (the ruleset's mlperf_import table) and its scaling.json; None for
    native runs, which the ruleset's olympic_trim ranks."""
    if not runs or not all(r.get("imported") for r in runs):
        return None
    from harness.submission.ruleset import load_ruleset

    table = load_ruleset(DEFAULT_RULESET).mlperf.benchmarks.get(runs[0]["benchmark"])
    factors = {float(r["imported"]["scaling_factor"]) for r in runs}
    if table is None or len(factors) != 1:
        return None
    return table.drop, factors.pop()


def scores(results: list[dict], trim: int | None = None) -> list[Score]:
    """One row per pool. An imported MLPerf benchmark is scored as MLCommons' summarizer does:
    its runs ranked by time, MLPerf's drop at each end, the mean times its scaling factor."""
    default_trim = ruleset_trim() if trim is None else trim
    out = []
    for (system, benchmark, framework, variant), runs in sorted(grouped(results).items()):
        mlperf = imported_rules(runs)
        kept = kept_by_time(runs, mlperf[0] if mlperf else default_trim)
        scale = mlperf[1] if mlperf else 1.0

        def reached(r):
            return bool(r["metrics"].get("reached_target"))

        readers = {
            "energy_to_target_j": lambda r: r["metrics"]["energy_to_target_j"] if reached(r) else None,
            "time_to_target_s": lambda r: r["timing"]["time_to_target_s"] if reached(r) else None,
            "energy_per_step_j": lambda r: (r["metrics"].get("energy_per_step") or {}).get("mean_j"),
            "tokens_per_joule": lambda r: r["metrics"].get("tokens_per_joule"),
            "kg_co2e": lambda r: ((r.get("carbon") or {}).get("location_based") or {}).get("kg_co2e"),
            "energy_window_j": lambda r: r["metrics"].get("energy_window_j"),
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
        for name in ("energy_to_target_j", "time_to_target_s", "kg_co2e", "energy_window_j"):
            if means[name] is not None:
                means[name] *= scale
                spread[name] = [v * scale for v in spread[name]]
        energy_all = [x * scale if x is not None else None for x in energy_all]
        e = means["energy_to_target_j"]
        out.append(
            Score(
                system, benchmark, framework, variant, len(runs),
                sum(1 for r in runs if reached(r)), [r.get("seed") for r in kept],
                e, e / 3.6e6 if e is not None else None, means["time_to_target_s"],
                means["energy_per_step_j"], means["tokens_per_joule"], means["kg_co2e"],
                sorted(x for x in energy_all if x is not None), spread,
                energy_basis(runs[0]), scale, means["energy_window_j"],
            )
        )  # fmt: skip
    return out
