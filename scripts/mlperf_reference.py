"""MLCommons' result_summarizer as the judge of `joulebench import mlperf`.

    # the summarizer's figures for every power run under ORG folders (one JSON)
    python scripts/mlperf_reference.py summarize --ruleset 4.0.0 [--logging CHECKOUT] -o ref.json ORG...
    # every imported run and benchmark against them
    python scripts/mlperf_reference.py check ref.json OUT...

`summarize` runs the summarizer in a child process: the installed mlperf-logging (PyPI), or the
mlcommons/logging checkout given with --logging (for v4.0, its commit a9f4839: `git archive
a9f4839` of the repository). Per run it records time to train (_query_run_start_stop) and energy
(_compute_total_power); per benchmark the power score (_compute_strong_score_standalone in
mlperf-logging >= 4.1, _compute_strong_scaling_scores before), which runs MLCommons' compliance
checker on each log as the summarizer does. Keys are paths below each ORG's parent, as the import
records them (meters[].details.files).

`check` exits 1 when any imported run or score differs by more than --tolerance (1e-9) relative.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import contextlib, glob, io, json, os, sys
from mlperf_logging.compliance_checker.mlp_parser import parse_file
from mlperf_logging.result_summarizer import result_summarizer as rs
ruleset, orgs = sys.argv[1], sys.argv[2:]
out = {"summarizer": rs.__file__, "runs": {}, "scores": {}}
for org in orgs:
    base = os.path.dirname(os.path.abspath(org))
    for folder in sorted(glob.glob(os.path.join(org, "results", "*", "*"))):
        if not os.path.isdir(os.path.join(folder, "power")):
            continue
        bench, system = os.path.basename(folder), os.path.basename(os.path.dirname(folder))
        for log in sorted(glob.glob(os.path.join(folder, "result_*.txt"))):
            start, stop = rs._query_run_start_stop(parse_file(log, ruleset)[0])
            try:
                energy = rs._compute_total_power(folder, log, stop - start, ruleset)
            except ZeroDivisionError:
                energy = None
            out["runs"][os.path.relpath(log, base)] = {"time_to_train_ms": stop - start, "energy_j": energy}
        key = os.path.relpath(folder, base)
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                if hasattr(rs, "_compute_strong_score_standalone"):
                    _, score, _ = rs._compute_strong_score_standalone(bench, system, True, folder, "training", ruleset)
                else:
                    _, power = rs._compute_strong_scaling_scores({"submitter": None}, os.path.dirname(folder), "training", ruleset)
                    score = power.get(rs._benchmark_alias(bench) if hasattr(rs, "_benchmark_alias") else bench)
            except ZeroDivisionError:
                score = None
        out["scores"][key] = score
json.dump(out, sys.stdout)
"""


def summarize(args) -> int:
    env = dict(os.environ)
    if args.logging:
        env["PYTHONPATH"] = str(Path(args.logging).resolve())
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, args.ruleset, *(str(Path(o).resolve()) for o in args.orgs)],
        capture_output=True, text=True, env=env, cwd="/",
    )  # fmt: skip
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        return proc.returncode
    data = json.loads(proc.stdout)
    data["ruleset"] = args.ruleset
    data["summarizer"] = args.label or data["summarizer"]
    base = Path(args.orgs[0]).resolve().parent
    data["orgs"] = [str(Path(o).resolve().relative_to(base)) for o in args.orgs]
    Path(args.output).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{len(data['runs'])} runs, {len(data['scores'])} benchmarks, by {data['summarizer']}")
    return 0


def check(args) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from harness.submission.score import load_results, scores

    ref = json.loads(Path(args.reference).read_text())
    worst, problems, seen = 0.0, [], 0
    results = load_results([Path(p) for p in args.outs])
    for r in results:
        imp = r["imported"]
        files = r["meters"][0]["details"]["files"]
        key = next(k for k in files if k.endswith("/" + imp["result_file"]) and "/power/" not in k)
        theirs = ref["runs"].get(key, {}).get("energy_j")
        if theirs is None:
            continue
        seen += 1
        rel = abs(r["metrics"]["energy_total_j"] - theirs) / abs(theirs)
        worst = max(worst, rel)
        if rel > args.tolerance:
            problems.append(
                f"{key}: {r['metrics']['energy_total_j']!r} J, the summarizer {theirs!r} J"
            )
    score_worst, score_seen = 0.0, 0
    rows = []
    for out in args.outs:  # one import, one org folder: its rows are that org's
        mine = load_results([Path(out)])
        if mine:
            org = next(iter(mine[0]["meters"][0]["details"]["files"])).split("/")[0]
            rows += [(org, s) for s in scores(mine)]
    for org, s in rows:
        theirs = ref["scores"].get(f"{org}/results/{s.system}/{s.benchmark}")
        if theirs is None or s.energy_to_target_j is None:
            continue
        score_seen += 1
        rel = abs(s.energy_to_target_j - theirs) / abs(theirs)
        score_worst = max(score_worst, rel)
        if rel > args.tolerance:
            problems.append(
                f"{s.system}/{s.benchmark} score: {s.energy_to_target_j!r}, the summarizer {theirs!r}"
            )
    summary = {"runs": seen, "worst_run_relative": worst, "scores": score_seen,
               "worst_score_relative": score_worst, "problems": problems}  # fmt: skip
    print(json.dumps(summary, indent=1))
    return 1 if problems or not seen else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("orgs", nargs="+", type=Path)
    s.add_argument("--ruleset", required=True, help="the training ruleset, e.g. 4.0.0")
    s.add_argument("--logging", help="a mlcommons/logging checkout (default: the installed one)")
    s.add_argument(
        "--label", help="what to call the summarizer in the output (a commit, a version)"
    )
    s.add_argument("-o", "--output", required=True)
    c = sub.add_parser("check")
    c.add_argument("reference")
    c.add_argument("outs", nargs="+")
    c.add_argument("--tolerance", type=float, default=1e-9)
    args = parser.parse_args()
    return summarize(args) if args.cmd == "summarize" else check(args)


if __name__ == "__main__":
    sys.exit(main())
