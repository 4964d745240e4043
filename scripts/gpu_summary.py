#!/usr/bin/env python3
"""results/gpu/summary.json from a GPU campaign's outputs (never typed in).

Reads, under --gpu: probe.json (scripts/nvml_probe.py), meter_bench.json (scripts/meter_bench.py),
bench/<name>/bench_torch.json (scripts/gpu_bench_torch.py: torch-dense-medium, torch-moe-medium,
jax-dense-medium); and the packaged reference pair under --reference (its submission/). A figure
whose source is missing or failed is null, and `not_measured` says which and why. Usage:

    PYTHONPATH=. python3 scripts/gpu_summary.py --gpu results/gpu --reference results/reference \
        --out results/gpu/summary.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from harness.results import safe_files

KEYS = (
    "device",
    "date",
    "nvml_field_values_call_s",
    "nvml_tick_s",
    "meter_overhead_frac",
    "counter_vs_power_integral_frac",
    "energy_per_step_cv",
    "mfu_dense_medium_torch",
    "mfu_moe_medium_torch",
    "jax_over_torch_tokens_per_s_dense_medium",
    "moe_over_dense_energy_to_target",
)


def _json(path: Path):
    try:
        return safe_files.read_json(path, 64 << 20)
    except (OSError, ValueError):
        return None


def _bench_row(gpu: Path, name: str) -> dict | None:
    rows = _json(gpu / "bench" / name / "bench_torch.json")
    return rows[0] if rows else None


def summarize(gpu: Path, reference: Path, relative_to: Path) -> dict:
    out: dict = dict.fromkeys(KEYS)
    missing: dict[str, str] = {}
    sources: list[str] = []

    def source(path: Path) -> None:
        sources.append(os.path.relpath(path, relative_to))

    probe = _json(gpu / "probe.json")
    if probe:
        source(gpu / "probe.json")
        gpus = probe.get("gpus") or []
        out["device"] = gpus[0]["name"] if gpus else None
        out["date"] = probe.get("date_utc")
        out["nvml_field_values_call_s"] = probe.get("nvml_field_values_call_s")
        out["nvml_tick_s"] = (probe.get("tick") or {}).get("tick_s")
    else:
        missing["nvml_field_values_call_s"] = missing["nvml_tick_s"] = "no probe.json"
    bench = _json(gpu / "meter_bench.json")
    s = (bench or {}).get("summary", {})
    for key, field in (
        ("meter_overhead_frac", "overhead_fraction"),
        ("counter_vs_power_integral_frac", "counter_vs_power_integral_frac"),
        ("energy_per_step_cv", "energy_per_step_cv"),
    ):
        out[key] = s.get(field)
        if out[key] is None:
            missing[key] = "meter_bench.json has no such figure" if bench else "no meter_bench.json"
    if bench:
        source(gpu / "meter_bench.json")
        out["device"] = out["device"] or bench.get("device")
    rows = {
        n: _bench_row(gpu, n)
        for n in ("torch-dense-medium", "torch-moe-medium", "jax-dense-medium")
    }
    for name, row in rows.items():
        if row:
            source(gpu / "bench" / name / "bench_torch.json")
    for key, name in (
        ("mfu_dense_medium_torch", "torch-dense-medium"),
        ("mfu_moe_medium_torch", "torch-moe-medium"),
    ):
        out[key] = rows[name]["mfu"] if rows[name] else None
        if out[key] is None:
            missing[key] = f"no {name} run" if not rows[name] else "MFU not computed"
    torch_row, jax_row = rows["torch-dense-medium"], rows["jax-dense-medium"]
    if torch_row and jax_row and torch_row["tokens_per_s"] and jax_row["tokens_per_s"]:
        out["jax_over_torch_tokens_per_s_dense_medium"] = (
            jax_row["tokens_per_s"] / torch_row["tokens_per_s"]
        )
    else:
        missing["jax_over_torch_tokens_per_s_dense_medium"] = "a dense-medium run is missing"
    out["moe_over_dense_energy_to_target"] = _pair(reference, missing, source)
    out["not_measured"] = missing
    out["sources"] = sources
    return out


def _pair(reference: Path, missing: dict, source) -> dict | None:
    submission = reference / "submission"
    if not (submission / "submission.json").is_file():
        missing["moe_over_dense_energy_to_target"] = "no packaged reference pair"
        return None
    from harness.submission.pairs import compare_pairs
    from harness.submission.score import load_results

    pairs = compare_pairs(load_results([submission]))
    if not pairs:
        missing["moe_over_dense_energy_to_target"] = "the submission holds no dense/MoE pair"
        return None
    source(submission / "submission.json")
    p = pairs[0]
    return {
        "olympic": p.ratio_olympic,
        "min": p.ratio_min,
        "max": p.ratio_max,
        "seed_ratios": p.seed_ratios,
        "steps_ratio": p.steps_ratio,
        "step_cost_ratio": p.step_cost_ratio,
        "dense": p.dense,
        "moe": p.moe,
        "reading": p.reading,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpu", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--relative-to", type=Path, default=Path.cwd(), help="sources are relative to this"
    )
    args = parser.parse_args()
    summary = summarize(args.gpu, args.reference, args.relative_to)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps({k: summary[k] for k in KEYS}, indent=2))
    if summary["not_measured"]:
        print(f"not measured: {summary['not_measured']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
