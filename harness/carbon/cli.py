"""`joulebench estimate` (Patterson et al.'s formula) and `joulebench recost` (re-cost results).

Both read numbers and files only; neither imports the runner or a framework.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from harness.errors import ConfigError, SubmissionError

DEFAULT_RECOST_REGIONS = ("gcp:us-central1", "gcp:europe-north1", "gcp:asia-south1", "world")


def _positive(name: str, value: float | None) -> None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise ConfigError(
            f"--{name}={value} must be a positive number.", f"give --{name} a value > 0."
        )


def cmd_estimate(args: argparse.Namespace) -> int:
    from harness.carbon import kg_to_lbs
    from harness.carbon.estimate import hours_from_flops, patterson_estimate
    from harness.carbon.intensity import lookup

    for name in (
        "processors",
        "hours",
        "days",
        "avg_power_w",
        "flops",
        "peak_tflops",
        "utilization",
    ):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.pue < 1.0:
        raise ConfigError(
            f"--pue={args.pue} must be >= 1.0.", "PUE is facility over IT energy; 1.0 means none."
        )
    given = [x is not None for x in (args.hours, args.days, args.flops)]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --hours, --days or --flops.", "e.g. --days 14.8.")
    if args.flops is not None:
        if args.peak_tflops is None or args.utilization is None:
            raise ConfigError(
                "--flops needs --peak-tflops and --utilization.",
                "e.g. --peak-tflops 125 --utilization 0.2.",
            )
        hours = hours_from_flops(args.flops, args.processors, args.peak_tflops, args.utilization)
    else:
        hours = args.hours if args.hours is not None else args.days * 24.0
    if (args.intensity_kg_per_kwh is None) == (args.region is None):
        raise ConfigError(
            "give exactly one of --intensity-kg-per-kwh or --region.", "e.g. --region USA."
        )
    intensity = (
        args.intensity_kg_per_kwh if args.region is None else lookup(args.region).g_per_kwh / 1000.0
    )
    est = patterson_estimate(args.processors, hours, args.avg_power_w, args.pue, intensity)
    if args.json:
        print(
            json.dumps(
                {
                    **est.to_dict(),
                    "co2e_lbs": kg_to_lbs(est.co2e_t * 1000.0),
                    "region": args.region,
                },
                indent=2,
            )
        )
    else:
        print(
            f"{est.processors} processors x {est.hours:,.1f} h x {est.avg_power_w:g} W x PUE {est.pue:g} "
            f"= {est.energy_mwh:,.1f} MWh; x {est.intensity_kg_per_kwh:g} kgCO2e/kWh = {est.co2e_t:,.1f} tCO2e"
        )
    return 0


def _load_result(run_dir: Path) -> dict:
    from harness.results import safe_files

    path = run_dir / "result.json" if run_dir.is_dir() else run_dir
    try:  # the safe reader: a regular file, no link, size-limited, finite numbers
        data = safe_files.read_json(path, 64 << 20)
    except (OSError, ValueError) as exc:
        raise SubmissionError(
            f"cannot read {path}: {exc}.", "point recost at a run directory with a result.json."
        ) from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("metrics"), dict)
        or not isinstance(data["metrics"].get("energy_total_j"), (int, float))
    ):
        raise SubmissionError(
            f"{path} has no metrics.energy_total_j.", "re-cost a finished run's result.json."
        )
    return data


def recost_rows(
    results: list[tuple[str, dict]],
    regions: list[str],
    pues: list[float | None],
    supplier_g_per_kwh: float | None,
) -> list[dict]:
    from harness.carbon.intensity import lookup

    rows = []
    for name, r in results:
        it_kwh = r["metrics"]["energy_total_j"] / 3.6e6
        for region in regions:
            grid = lookup(region)
            for pue in pues:
                pue = pue if pue is not None else (r.get("carbon") or {}).get("pue", 1.0)
                facility = it_kwh * pue
                rows.append(
                    {
                        "run": name,
                        "benchmark": r.get("benchmark"),
                        "region": grid.region,
                        "dataset": grid.dataset,
                        "intensity_g_per_kwh": grid.g_per_kwh,
                        "basis": grid.basis,
                        "year": grid.year,
                        "pue": pue,
                        "it_energy_kwh": it_kwh,
                        "facility_energy_kwh": facility,
                        "location_kg_co2e": facility * grid.g_per_kwh / 1000.0,
                        "market_kg_co2e": None
                        if supplier_g_per_kwh is None
                        else facility * supplier_g_per_kwh / 1000.0,
                    }
                )
    return rows


def cmd_recost(args: argparse.Namespace) -> int:
    results = [(str(p), _load_result(Path(p))) for p in args.results]
    rows = recost_rows(
        results,
        args.region or list(DEFAULT_RECOST_REGIONS),
        args.pue or [None],
        args.supplier_g_per_kwh,
    )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'run':<40} {'region':<20} {'g/kWh':>8} {'basis, year':<18} {'PUE':>5} "
        f"{'facility kWh':>13} {'kgCO2e (location)':>18}"
        + ("  kgCO2e (market)" if args.supplier_g_per_kwh is not None else "")
    )
    for row in rows:
        market = f"  {row['market_kg_co2e']:.6g}" if row["market_kg_co2e"] is not None else ""
        print(
            f"{Path(row['run']).name[-40:]:<40} {row['region']:<20} {row['intensity_g_per_kwh']:>8.1f} "
            f"{row['basis'] + ', ' + str(row['year']):<18} "
            f"{row['pue']:>5.2f} {row['facility_energy_kwh']:>13.6g} {row['location_kg_co2e']:>18.6g}{market}"
        )
    for line in spread_lines(rows):
        print(line)
    return 0


def spread_lines(rows: list[dict]) -> list[str]:
    """The max/min CO2e ratio, only between like figures: one line per intensity basis
    (operational cloud figures and lifecycle country figures measure different things)."""

    def end(row):
        return f"{row['region']} ({row['basis']} {row['year']}, PUE {row['pue']:g})"

    out = []
    bases = sorted({row["basis"] for row in rows})
    for basis in bases:
        same = [row for row in rows if row["basis"] == basis]
        lo = min(same, key=lambda x: x["location_kg_co2e"])
        hi = max(same, key=lambda x: x["location_kg_co2e"])
        if lo["location_kg_co2e"] > 0 and len(same) > 1:
            out.append(
                f"spread ({basis} intensities): "
                f"{hi['location_kg_co2e'] / lo['location_kg_co2e']:.1f}x between {end(lo)} "
                f"and {end(hi)}"
            )
    if len(bases) > 1:
        out.append(
            f"note: these rows mix {' and '.join(bases)} intensities, which are not comparable; "
            "no spread is given across them."
        )
    return out


def register(sub) -> None:
    est = sub.add_parser(
        "estimate",
        help="Patterson et al. 2021's energy and CO2e estimate for an unmetered run",
        description="MWh = hours x processors x avg W x PUE / 1e6; tCO2e = MWh x kgCO2e/kWh.",
    )
    est.add_argument("--processors", type=int, required=True)
    est.add_argument("--hours", type=float)
    est.add_argument("--days", type=float)
    est.add_argument("--flops", type=float, help="total training FLOPs, instead of --hours")
    est.add_argument("--peak-tflops", type=float, help="peak TFLOP/s per processor, with --flops")
    est.add_argument("--utilization", type=float, help="achieved fraction of peak, with --flops")
    est.add_argument(
        "--avg-power-w", type=float, required=True, help="average power per processor, watts"
    )
    est.add_argument("--pue", type=float, default=1.0)
    est.add_argument("--intensity-kg-per-kwh", type=float)
    est.add_argument("--region", help="ISO3 country, cloud region (gcp:us-central1) or world")
    est.add_argument("--json", action="store_true")
    est.set_defaults(func=cmd_estimate)

    rc = sub.add_parser(
        "recost",
        help="re-cost measured results under other regions, PUEs or market factors",
        description="Location-based kgCO2e = energy x PUE x intensity, for each scenario.",
    )
    rc.add_argument("results", nargs="+", help="run directories (or result.json files)")
    rc.add_argument(
        "--region", action="append", help="repeatable; default: Iowa, Finland, Mumbai, world"
    )
    rc.add_argument(
        "--pue", action="append", type=float, help="repeatable; default: each result's own PUE"
    )
    rc.add_argument(
        "--supplier-g-per-kwh", type=float, help="a contractual factor for a market-based column"
    )
    rc.add_argument("--json", action="store_true")
    rc.set_defaults(func=cmd_recost)
