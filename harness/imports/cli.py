"""`joulebench import mlperf`: the command line of harness/imports/mlperf.py."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_import_mlperf(args: argparse.Namespace) -> int:
    from harness.imports.mlperf import import_mlperf

    done = import_mlperf(
        Path(args.src), Path(args.output), args.round, args.system, args.benchmark,
        args.region, args.pue, args.basis, args.source,
    )  # fmt: skip
    runs = sum(n for _, _, n in done)
    for system, benchmark, n in done:
        print(f"joulebench: imported {n} runs of {benchmark} on {system}")
    print(
        f"joulebench: {runs} runs of MLPerf Training {args.round} in {args.output}; check them "
        f"with `joulebench validate {args.output}`, score them with `joulebench score {args.output}`."
    )
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "import", help="turn another tool's records into joulebench runs (MLPerf power results)"
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    m = kinds.add_parser(
        "mlperf",
        help="MLPerf Training power results: an org folder, or a system or benchmark folder in one",
        description="Each result_<X>.txt with power logs becomes a joulebench run directory; the "
        "published files stay beside them, as the MLCommons view.",
    )
    m.add_argument(
        "src", help="<org>, <org>/results/<system> or <org>/results/<system>/<benchmark>"
    )
    m.add_argument("-o", "--output", required=True, help="a new folder: the imported submission")
    m.add_argument("--round", required=True,
                   help="the MLPerf round, one configs/ruleset names (4.0, 4.1, 5.0): it decides "
                   "the summarizer rule")  # fmt: skip
    m.add_argument("--system", help="only this system folder")
    m.add_argument("--benchmark", help="only this benchmark folder")
    m.add_argument("--region", help="the grid for CO2e (default: world average, labelled)")
    m.add_argument("--pue", type=float, help="the datacenter's PUE (default 1.0, labelled)")
    m.add_argument("--basis", choices=["AC", "DC"],
                   help="how node power was measured, where the files do not say (conversion_eff)")  # fmt: skip
    m.add_argument("--source", help="where SRC came from, recorded (e.g. a repository and commit)")
    m.set_defaults(func=cmd_import_mlperf)
