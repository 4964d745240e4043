"""A result.json as one history row: which series it belongs to, which runner it ran on, and
the metrics `compare` uses plus average power.

A series is one (system, benchmark, framework, provenance, config hash): measured and simulated
energy are never one series, and neither are two configurations of a benchmark. The config hash
covers what the run trains and how (the benchmark, the framework settings, the launcher's
shape); the seed, the paths, the meter and the carbon settings are not part of it, so a meter's
reading can change across commits within one series. The runner is what the result discloses of
the devices: their UUIDs, the driver, the enforced power limit and the maximum clocks.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HistoryError
from harness.submission.compare import METRICS as COMPARE_METRICS
from harness.submission.score import RESULT_LIMIT_BYTES

# `compare`'s metrics (name, how to read it from a result, True if higher is better) and power
METRICS = (
    *COMPARE_METRICS,
    ("avg_power_w", lambda r: r["metrics"].get("avg_power_w"), False),
)
UNITS = {
    "energy_per_step_j": "J/step",
    "tokens_per_joule": "tokens/J",
    "throughput_tokens_per_s": "tokens/s",
    "energy_to_target_j": "J",
    "avg_power_w": "W",
}
METRIC_NAMES = tuple(name for name, *_ in METRICS)
HIGHER_IS_BETTER = {name: better for name, _, better in METRICS}
SERIES_KEY = ("system", "benchmark", "framework", "provenance", "config_hash")
RUNNER_KEY = ("device_uuids", "driver", "power_limit_w", "clocks")
USABLE_STATUSES = ("success", "target_not_reached")  # a run that ended, whatever its target


@dataclass(frozen=True)
class Row:
    run_id: str
    result_sha256: str
    source: str
    status: str
    seed: int | None
    system: str
    benchmark: str
    framework: str
    provenance: str
    config_hash: str
    device_model: str
    device_count: int | None
    device_uuids: str
    driver: str
    power_limit_w: str
    clocks: str
    metrics: dict[str, float | None]


def config_hash(config: dict) -> str:
    """What the run trains and how, hashed: the benchmark, the framework settings and the
    launcher's shape. Twelve hex digits, like a run id."""
    launcher = config.get("launcher") or {}
    shape = {
        "benchmark": config.get("benchmark"),
        "framework": config.get("framework"),
        "launcher": {k: launcher.get(k) for k in ("nnodes", "nproc_per_node")},
    }
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:12]


def _joined(values) -> str:
    return ",".join(sorted({str(v) for v in values if v not in (None, "")}))


def runner_of(accelerator: dict) -> dict[str, str]:
    """The runner a result discloses: every device's UUID, the driver, the enforced power limits
    and the maximum SM and memory clocks at the run's start (NVML's disclosure; empty where the
    meter read none, as on a CPU). Current clocks are not part of it: they follow the load."""
    state = [s for s in (accelerator.get("state") or {}).values() if isinstance(s, dict)]
    start = [s.get("at_start") or {} for s in state]
    limits = _joined(f"{v:g}" for s in start if isinstance(v := s.get("power_limit_w"), float))
    sm = _joined(s.get("max_sm_clock_mhz") for s in start)
    mem = _joined(s.get("max_mem_clock_mhz") for s in start)
    return {
        "device_uuids": _joined(s.get("uuid") for s in state),
        "driver": str(accelerator.get("driver") or ""),
        "power_limit_w": limits,
        "clocks": ", ".join(f"{name} max {v} MHz" for name, v in (("sm", sm), ("mem", mem)) if v),
    }


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def _system(result: dict, source: str) -> str:
    """An import's system as its submission names it; a native run's from its devices, so the
    same machine is one system wherever its run directories were written."""
    from harness.submission.score import system_of

    if result.get("imported"):
        return system_of({**result, "_path": source})
    accelerator = result["system"]["accelerator"]
    return f"{accelerator.get('count') or 1} x {accelerator.get('model') or 'unknown device'}"


def row_of(result: dict, source: str, digest: str) -> Row:
    """One row from a parsed, schema-checked result."""
    from harness.submission.score import provenance

    accelerator = result["system"]["accelerator"]
    values = {name: _number(read(result)) for name, read, _ in METRICS}
    if not result["metrics"].get("reached_target"):
        values["energy_to_target_j"] = None
    return Row(
        run_id=str(result["run_id"]),
        result_sha256=digest,
        source=source,
        status=result["status"],
        seed=result.get("seed") if isinstance(result.get("seed"), int) else None,
        system=_system(result, source),
        benchmark=result["benchmark"],
        framework=result["workload"]["framework"],
        provenance=provenance(result),
        config_hash=config_hash(result.get("config") or {}),
        device_model=str(accelerator.get("model") or ""),
        device_count=accelerator.get("count"),
        **runner_of(accelerator),
        metrics=values,
    )


def load_rows(paths: list[Path]) -> tuple[list[Row], list[str]]:
    """A row for every result.json under the given run directories or submissions, read through
    the safe reader and checked against the schema. Any file that cannot be read, or a path with
    no result at all, ends the add before the database is touched (HistoryError, one line).
    Also a note for each run left out: one that was aborted or lost its meter has no figure."""
    from harness.results import safe_files
    from harness.results.schema import check_result

    rows: dict[str, Row] = {}
    notes: list[str] = []
    for top in paths:
        if not top.exists():
            raise HistoryError(f"{top} does not exist.", "give run directories or submissions.")
        found = safe_files.find_files(top, "result.json")
        if not found:
            raise HistoryError(
                f"no result.json under {top}.", "give run directories or submissions."
            )
        for f in found:
            root = top if f != top else f.parent
            try:
                raw = safe_files.read_bytes(f, RESULT_LIMIT_BYTES, root)  # one read: parse, hash
                data = safe_files.parse_json(raw.decode("utf-8"), f.name)
                digest = hashlib.sha256(raw).hexdigest()
            except (OSError, ValueError) as exc:  # UnicodeDecodeError and UnsafeFile included
                raise HistoryError(
                    f"{f} cannot be read ({exc}); nothing was added.",
                    "give unedited run directories or submissions.",
                ) from exc
            problems = check_result(data)
            if problems:
                raise HistoryError(
                    f"{f} is not a joulebench result ({problems[0]}); nothing was added.",
                    "`joulebench validate` names every problem; give unedited run directories.",
                )
            if data["status"] not in USABLE_STATUSES or not isinstance(data["metrics"], dict):
                notes.append(f"{f.parent}: status {data['status']}, not added")
                continue
            row = row_of(data, str(f.parent), digest)
            rows.setdefault(row.run_id, row)
    return list(rows.values()), notes
