"""Every power result of MLPerf Training v4.0, v4.1 and v5.0: imported, validated, scored, reported,
and checked against MLCommons' own summarizer; the figures go to results/mlperf/.

    python scripts/mlperf_rounds.py --v4-0 <training_results_v4.0> --v4-1 <training_results_v4.1> \
        --v5-0 <training_results_v5.0> --logging-a9f4839 <mlcommons/logging at a9f4839> \
        --work /tmp/mlperf-rounds [--out results/mlperf]

Each import and each validation runs as its own `joulebench` process, timed (wall clock) and
measured (peak resident memory), under RLIMIT_AS of 1 GiB: the speed figures of results/README.md.
The imports stay in --work (the traces are not committed); results/mlperf/ gets the score table
(scores.csv, scores.json), the report's figures and summary.md, the validators' findings counted
by rule, the summarizer check, and the repositories' snapshots.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# (round, repository argument, org folder, --basis): SMC's files do not say how node power was
# taken; its system descriptions name the systems SMC-H100-AC-Power and SMC-H100-DC-Power
ORGS = [
    ("4.0", "v4_0", "smc-ac-power", "AC"),
    ("4.0", "v4_0", "smc-dc-power", "DC"),
    ("4.1", "v4_1", "Dell", None),
    ("5.0", "v5_0", "Lenovo", None),
]
SNAPSHOTS = {  # the repositories read, as fetched (fetch: github:mlcommons/<name>)
    "training_results_v4.0": "6fe954378efe4a1a1bd665550b18ff8f26018def (2024-06-11), Apache-2.0",
    "training_results_v4.1": "b87b9e396f771345d4ef122ba33456304f15228d (2024-12-11), no licence file: only numbers derived from it are committed",
    "training_results_v5.0": "0fdc28f013256aea84fa36fdaf1e0fa46094b18c (2025-05-30), Apache-2.0",
    "logging": "a9f4839db6fb18e8ad9e1f3584a7c2891a845f77 (2024-05-30) for v4.0; mlperf-logging 4.1.68 (PyPI) for v4.1 and v5.0",
}  # fmt: skip
LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""


def joulebench(*args) -> tuple[int, float, float, str]:
    """(exit code, seconds, peak RSS MiB, output) of one joulebench process under 1 GiB."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([sys.executable, "-c", LIMIT, *map(str, args)], stdout=log,
                                stderr=subprocess.STDOUT, text=True, cwd=REPO)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - t0
        log.seek(0)
        text = log.read()
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss / 1024, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("v4-0", "v4-1", "v5-0"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--logging-a9f4839", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "mlperf")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    timing, findings, outs = {}, {}, []
    for rnd, repo, org, basis in ORGS:
        src, out = getattr(args, repo) / org, args.work / org
        extra = ["--basis", basis] if basis else []
        code, s, mib, text = joulebench("import", "mlperf", src, "-o", out, "--round", rnd,
                                        "--source", f"mlcommons/training_results_v{rnd}", *extra)  # fmt: skip
        if code:
            print(text, file=sys.stderr)
            return code
        timing[f"import {org}"] = {"seconds": round(s, 2), "peak_rss_mib": round(mib, 1)}
        outs.append(out)
    for out in outs:
        code, s, mib, text = joulebench(
            "validate", out, "--json", args.work / f"{out.name}.findings.json"
        )
        if code not in (0, 1):
            print(text, file=sys.stderr)
            return code
        timing[f"validate {out.name}"] = {"seconds": round(s, 2), "peak_rss_mib": round(mib, 1),
                                          "verdict": "valid" if code == 0 else "invalid"}  # fmt: skip
        report = json.loads((args.work / f"{out.name}.findings.json").read_text())
        findings[out.name] = dict(
            sorted(Counter(f"{f['rule']} {f['severity']}" for f in report["findings"]).items())
        )
    args.out.mkdir(parents=True, exist_ok=True)
    for fmt in ("csv", "json"):
        code, _, _, text = joulebench("score", *outs, f"--{fmt}")
        lines = [x for x in text.splitlines() if not x.startswith("note:")]
        (args.out / f"scores.{fmt}").write_text("\n".join(lines) + "\n")
    code, _, _, text = joulebench("report", *outs, "-o", args.out / "report")
    if code:
        print(text, file=sys.stderr)
        return code
    checks = {}
    for rnd, ruleset, logging, orgs in (
        ("4.0", "4.0.0", args.logging_a9f4839, [o for o in outs if o.name.startswith("smc")]),
        ("4.1", "4.1.0", None, [args.work / "Dell"]),
        ("5.0", "5.0.0", None, [args.work / "Lenovo"]),
    ):
        ref = args.work / f"reference-{rnd}.json"
        srcs = [getattr(args, repo) / org for r, repo, org, _ in ORGS if r == rnd]
        cmd = [sys.executable, REPO / "scripts" / "mlperf_reference.py", "summarize", "--ruleset", ruleset,
               "-o", ref, *srcs] + (["--logging", logging] if logging else [])  # fmt: skip
        subprocess.run(cmd, check=True, cwd=REPO)
        proc = subprocess.run([sys.executable, REPO / "scripts" / "mlperf_reference.py", "check", ref, *orgs],
                              capture_output=True, text=True, cwd=REPO)  # fmt: skip
        checks[rnd] = json.loads(proc.stdout)
    record = {"snapshots": SNAPSHOTS, "speed": timing, "findings": findings, "summarizer_check": checks,
              "date": time.strftime("%Y-%m-%d"), "machine": "2 CPU cores, 24 GiB (the development machine)"}  # fmt: skip
    (args.out / "rounds.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({"speed": timing, "summarizer_check": checks}, indent=1))
    return 0 if all(not c["problems"] for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
