"""CLI for submissions: system, package, validate, score, compare, report."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from pathlib import Path

from harness.errors import ConfigError, SubmissionError


def cmd_system(args: argparse.Namespace) -> int:
    from harness.results.writer import atomic_write_json
    from harness.submission.package import system_template

    if args.nodes < 1:
        raise SubmissionError(
            f"--nodes {args.nodes} is not a node count.", "give --nodes 1 or more."
        )
    template = system_template(args.name, args.nodes)
    if args.output:
        atomic_write_json(Path(args.output), template)
        print(
            f"joulebench: wrote {args.output}; fill in submitter, power_meter_model, power_meter_method, pue_source."
        )
    else:
        print(json.dumps(template, indent=2))
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from harness.submission.package import package

    out = package(
        [Path(p) for p in args.runs], Path(args.system), args.org, args.division, Path(args.output)
    )
    print(
        f"joulebench: packaged {len(args.runs)} runs into {out}; check it with `joulebench validate {out}`."
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.results.writer import atomic_write_json
    from harness.submission.validate import validate_submission

    report = validate_submission(Path(args.submission))
    for f in report.findings:
        print(f"{f.severity.upper():7} {f.rule:10} {f.file}: {f.message}")
    verdict = "VALID" if report.valid else "INVALID"
    errors = sum(f.severity == "error" for f in report.findings)
    print(
        f"{verdict}: {args.submission} ({report.division or '?'} division, ruleset {report.ruleset or '?'}, "
        f"{len(report.runs)} runs, {errors} errors)"
    )
    if args.json:
        atomic_write_json(Path(args.json), report.to_dict())
    return 0 if report.valid else 1


def _score_rows(paths: list[str]) -> list[dict]:
    from harness.submission.score import load_results, scores

    results = load_results([Path(p) for p in paths])
    if not results:
        raise SubmissionError(
            f"no result.json under {', '.join(paths)}.", "give run directories or a submission."
        )
    return [dataclasses.asdict(s) for s in scores(results)]


def cmd_score(args: argparse.Namespace) -> int:
    rows = _score_rows(args.paths)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.csv:
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=[k for k in rows[0] if k != "energy_to_target_spread_j"]
        )
        writer.writeheader()
        writer.writerows(
            [{k: v for k, v in r.items() if k != "energy_to_target_spread_j"} for r in rows]
        )
        print(buf.getvalue(), end="")
        return 0

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    print(
        f"{'system':<20} {'benchmark':<16} {'fw':<6} {'runs':>4} {'energy to target':>17} {'kWh':>10} "
        f"{'time s':>8} {'J/step':>9} {'tokens/J':>9} {'kgCO2e':>9}"
    )
    for r in rows:
        print(
            f"{r['system'][:20]:<20} {r['benchmark']:<16} {r['framework']:<6} {r['converged']}/{r['runs']:<2} "
            f"{f(r['energy_to_target_j'], ',.1f'):>15} J {f(r['energy_to_target_kwh'], '.3g'):>10} "
            f"{f(r['time_to_target_s'], '.2f'):>8} {f(r['energy_per_step_j'], '.4g'):>9} "
            f"{f(r['tokens_per_joule'], ',.0f'):>9} {f(r['kg_co2e'], '.3g'):>9}"
        )
    return 0


def _tolerance(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError as exc:
        raise ConfigError(
            f"--tolerance {text} is not a number or percentage.", "use e.g. --tolerance 5%."
        ) from exc
    if not 0 <= value < 10:
        raise ConfigError(f"--tolerance {text} is out of range.", "use e.g. --tolerance 5%.")
    return value


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.submission.score import compare, load_results

    base, cand = load_results([Path(args.baseline)]), load_results([Path(args.candidate)])
    for name, found, path in (
        ("baseline", base, args.baseline),
        ("candidate", cand, args.candidate),
    ):
        if not found:
            raise SubmissionError(
                f"no result.json under the {name} {path}.", "give run directories or a submission."
            )
    regressions, notes = compare(base, cand, _tolerance(args.tolerance))
    for note in notes:
        print(f"note: {note}")
    for reg in regressions:
        print(f"REGRESSION {reg.line()}")
    if not regressions:
        print(
            f"OK: no regression beyond {args.tolerance} plus run-to-run noise "
            f"({len(base)} baseline and {len(cand)} candidate runs)."
        )
    return 1 if regressions else 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import write_report

    written = write_report([Path(p) for p in args.paths], Path(args.output))
    for path in written:
        print(f"joulebench: wrote {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "system", help="write a system-description template pre-filled from this machine"
    )
    p.add_argument("-o", "--output", help="file to write (default: print)")
    p.add_argument("--name", help="system name")
    p.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="nodes in the system, each like this one (accelerators_per_node comes from here)",
    )
    p.set_defaults(func=cmd_system)

    p = sub.add_parser("package", help="arrange run directories into a submission")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument(
        "--system", required=True, help="system description JSON (its file name is the system id)"
    )
    p.add_argument("--org", required=True)
    p.add_argument("--division", required=True, choices=["closed", "open"])
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_package)

    p = sub.add_parser(
        "validate", help="check a submission against its ruleset (exit 0 valid, 1 invalid)"
    )
    p.add_argument("submission")
    p.add_argument("--json", help="also write the findings to this file")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "score", help="olympic-mean energy to target and more, per benchmark and framework"
    )
    p.add_argument("paths", nargs="+", help="a submission or run directories")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true")
    fmt.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "compare", help="CI gate: fail on regressions of candidate runs against baseline runs"
    )
    p.add_argument("baseline")
    p.add_argument("candidate")
    p.add_argument("--tolerance", default="5%")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="plots and a Markdown summary of runs or a submission")
    p.add_argument("paths", nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_report)
