"""CLI for submissions: system, package, validate, score, compare, report."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import json
import sys
from pathlib import Path

from harness.errors import ConfigError, SubmissionError


def cmd_system(args: argparse.Namespace) -> int:
    from harness.results.writer import atomic_write_json
    from harness.submission.package import (
        SYSTEM_STATUSES,
        system_fields_to_fill,
        system_template,
    )

    if args.nodes < 1:
        raise SubmissionError(
            f"--nodes {args.nodes} is not a node count.", "give --nodes 1 or more."
        )
    template = system_template(args.name, args.nodes)
    todo = system_fields_to_fill(template)
    if args.output:
        atomic_write_json(Path(args.output), template)
    else:
        print(json.dumps(template, indent=2))
    where = args.output or "the template above"
    print(
        f"joulebench: fill in {len(todo)} fields of {where}: {', '.join(todo)}. "
        f"status is one of: {'; '.join(SYSTEM_STATUSES)}. division is closed or open "
        "(`joulebench package --org --division` sets submitter and division). "
        "Use N/A where a field does not apply.",
        file=sys.stderr if not args.output else sys.stdout,
    )
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from harness.submission.package import package

    out = package(
        [Path(p) for p in args.runs],
        Path(args.system),
        args.org,
        args.division,
        Path(args.output),
        agreement=Path(args.agreement) if args.agreement else None,
    )
    print(
        f"joulebench: packaged {len(args.runs)} runs into {out}; check it with `joulebench validate {out}`."
    )
    from harness.submission.ruleset import load_ruleset

    mlc = load_ruleset("v1").mlcommons_ruleset  # the training ruleset MLCommons' checkers use
    print(
        f"joulebench: MLCommons' checkers read it too: `python -m mlperf_logging.system_desc_checker"
        f" {out}/systems/<system>.json training {mlc}` and `python -m "
        f"mlperf_logging.compliance_checker --usage training --ruleset {mlc} "
        f"{out}/results/<system>/<benchmark>/result_0.txt`."
    )
    return 0


def cmd_agree(args: argparse.Namespace) -> int:
    from harness.submission.agreement import agree
    from harness.submission.ruleset import load_ruleset

    phases = [(name, Path(ref), Path(cand)) for name, ref, cand in args.phase]
    doc = agree(
        phases, Path(args.output), load_ruleset(args.ruleset), args.reference, args.candidate
    )
    for p in doc["phases"]:
        print(
            f"{p['name']:<16} {args.candidate} vs {args.reference}: "
            f"{p['olympic_candidate_over_reference']:+.2%} (olympic over {len(p['windows'])} "
            f"windows of {doc['window_s']:g} s) {'agrees' if p['agrees'] else 'DISAGREES'}"
        )
    why = f": {'; '.join(doc['problems'])}" if doc["problems"] else ""
    print(f"joulebench: meter agreement {doc['verdict']}{why}; written to {args.output}.")
    return 0 if doc["verdict"] == "pass" else 1


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.results.writer import atomic_write_json
    from harness.submission.validate import validate_submission

    if args.rules is not None:
        from harness.submission.ruleset import load_ruleset

        rules = load_ruleset(args.rules)
        for rule, meaning in rules.rule_ids.items():
            print(f"{rule:11} {meaning}")
        return 0
    if args.submission is None:
        raise SubmissionError("no submission given.", "joulebench validate <submission folder>.")
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


def _score_rows(paths: list[str]) -> tuple[list[dict], list[str]]:
    from harness.submission.score import basis_note, load_results, pooling_notes, scores

    results = load_results([Path(p) for p in paths])
    if not results:
        raise SubmissionError(
            f"no result.json under {', '.join(paths)}.", "give run directories or a submission."
        )
    rows = scores(results)
    notes = pooling_notes(results) + [n for n in [basis_note(rows)] if n]
    return [dataclasses.asdict(s) for s in rows], notes


NESTED_SCORE_FIELDS = ("energy_to_target_spread_j", "spread", "kept_seeds")


def _results_of_the_wrong_shape(command):
    """score, compare and report read result.json files that anyone may have written: one whose
    fields have the wrong types or shape (a string where a number goes, a list for a record)
    ends the command in one line and exit 2, never a traceback. `joulebench validate` names the
    file and the field."""

    @functools.wraps(command)
    def guarded(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (
            TypeError,
            KeyError,
            AttributeError,
            IndexError,
            ValueError,
            ArithmeticError,
        ) as exc:
            raise SubmissionError(
                f"a result.json under the given folders is not shaped as joulebench writes it "
                f"({type(exc).__name__}: {str(exc)[:120]}).",
                "give unedited run directories or a submission; `joulebench validate` names "
                "the file and the field.",
            ) from exc

    return guarded


@_results_of_the_wrong_shape
def cmd_score(args: argparse.Namespace) -> int:
    rows, notes = _score_rows(args.paths)
    for note in notes:  # on stderr, so --json and --csv stay machine-readable
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.csv:
        buf = io.StringIO()
        flat = [
            {
                **{k: v for k, v in r.items() if k not in NESTED_SCORE_FIELDS},
                **{f"{k}_min": v[0] for k, v in r["spread"].items()},
                **{f"{k}_max": v[1] for k, v in r["spread"].items()},
            }
            for r in rows
        ]
        names = list(dict.fromkeys(k for r in flat for k in r))
        writer = csv.DictWriter(buf, fieldnames=names)
        writer.writeheader()
        writer.writerows(flat)
        print(buf.getvalue(), end="")
        return 0

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    def pm(r, name, spec):
        """value [min-max] over the kept runs"""
        low, high = r["spread"].get(name, (None, None))
        cell = f(r[name], spec)
        return cell if low is None else f"{cell} [{f(low, spec)}-{f(high, spec)}]"

    print(
        "means over the runs the time ranking keeps, [min-max] over the same runs\n"
        f"{'system':<20} {'benchmark':<22} {'fw':<6} {'runs':>5} {'energy to target J':>30} "
        f"{'time s':>20} {'J/step':>24} {'tokens/J':>9} {'kgCO2e':>9}  energy basis"
    )
    for r in rows:
        name = r["benchmark"] + (f" ({r['variant']})" if r["variant"] else "")
        print(
            f"{r['system'][:20]:<20} {name:<22} {r['framework']:<6} "
            f"{r['converged']}/{r['runs']:<3} {pm(r, 'energy_to_target_j', ',.1f'):>30} "
            f"{pm(r, 'time_to_target_s', '.2f'):>20} {pm(r, 'energy_per_step_j', '.4g'):>24} "
            f"{f(r['tokens_per_joule'], ',.0f'):>9} {f(r['kg_co2e'], '.3g'):>9}  {r['basis']}"
            + (f" (x{r['scaling_factor']:.4g} scaling)" if r["scaling_factor"] != 1.0 else "")
        )
    return 0


def parse_tolerance(text: str) -> float:
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError as exc:
        raise ConfigError(
            f"--tolerance {text} is not a number or percentage.", "use e.g. --tolerance 5%."
        ) from exc
    if not 0 <= value < 10:
        raise ConfigError(f"--tolerance {text} is out of range.", "use e.g. --tolerance 5%.")
    return value


EXIT_INCONCLUSIVE = 4  # compare: the noise is larger than the tolerance


@_results_of_the_wrong_shape
def cmd_compare(args: argparse.Namespace) -> int:
    from harness.submission.compare import compare
    from harness.submission.score import load_results

    base, cand = load_results([Path(args.baseline)]), load_results([Path(args.candidate)])
    for name, found, path in (
        ("baseline", base, args.baseline),
        ("candidate", cand, args.candidate),
    ):
        if not found:
            raise SubmissionError(
                f"no result.json under the {name} {path}.", "give run directories or a submission."
            )
    comparisons, notes = compare(base, cand, parse_tolerance(args.tolerance))
    for note in notes:
        print(f"note: {note}")
    for comparison in comparisons:
        print(comparison.line())
    verdicts = {c.verdict for c in comparisons}
    if not comparisons:
        raise SubmissionError(
            "the baseline and the candidate share no benchmark and framework with a metric.",
            "compare runs of the same benchmark and framework.",
        )
    if "regression" in verdicts:
        return 1
    if "inconclusive" in verdicts:
        print(
            "INCONCLUSIVE: no regression shown, but the noise hides whether there is one; "
            "add runs (see above) or loosen --tolerance."
        )
        return EXIT_INCONCLUSIVE
    print(
        f"OK: no regression beyond {args.tolerance} ({len(base)} baseline and "
        f"{len(cand)} candidate runs)."
    )
    return 0


@_results_of_the_wrong_shape
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
    p.add_argument("--agreement", help="a `joulebench agree` folder to include (agreement/)")
    p.set_defaults(func=cmd_package)

    p = sub.add_parser(
        "agree",
        help="MLPerf's meter-agreement test: a candidate meter against a reference (exit 0 pass)",
        description="Each phase is NAME REFERENCE.csv CANDIDATE.csv: power.csv traces of the "
        "same interval on one host. Give idle and at least two benchmarks.",
    )
    p.add_argument(
        "--phase", nargs=3, action="append", required=True, metavar=("NAME", "REF", "CAND")
    )
    p.add_argument("--reference", required=True, help="the reference meter's name (ptdaemon)")
    p.add_argument("--candidate", required=True, help="the candidate meter's name (redfish)")
    p.add_argument("--ruleset", default="v1")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_agree)

    p = sub.add_parser(
        "validate", help="check a submission against its ruleset (exit 0 valid, 1 invalid)"
    )
    p.add_argument("submission", nargs="?")
    p.add_argument("--json", help="also write the findings to this file")
    p.add_argument(
        "--rules", metavar="RULESET", nargs="?", const="v1",
        help="print the ruleset's rule ids and what each means (default v1), and exit",
    )  # fmt: skip
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
        "compare",
        help="CI gate: exit 0 no regression, 1 regression, 4 inconclusive (noise > tolerance)",
    )
    p.add_argument("baseline")
    p.add_argument("candidate")
    p.add_argument("--tolerance", default="5%")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="plots and a Markdown summary of runs or a submission")
    p.add_argument("paths", nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=cmd_report)
