"""How fast `joulebench history` is at CI scale: with 100,000 rows stored, add 1,000 runs and check
every series, each as the CLI a CI job runs (a fresh process, Python's start included).

    python scripts/bench_history.py [--db URL] [--out results/history/speed.json]

The stored rows are 200 series (10 benchmarks x 4 systems x 5 configs) of 500 commits each,
with 2% noise and, in every fifth series, an 8% step at commit 400 (energy per step, energy to
target and power up, tokens/J down, tokens/s up); they are written through
joulebench's own store from one real lm-dense-tiny result (run here with the simulated meter).
The 1,000 runs to add are copies of that result with their own run ids. Goal (issue 36): each
of the two commands under 5 s on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.history.rows import load_rows  # noqa: E402
from harness.history.store import Store  # noqa: E402

SERIES = [
    (f"bench-{b}", f"system-{s}", f"cfg{c:07d}")
    for b in range(10)
    for s in range(4)
    for c in range(5)
]
COMMITS = 500


def template_run(top: Path) -> Path:
    from harness.cli import main

    run = top / "template"
    code = main(["run", "meter=simulated", "benchmark.max_steps=20", "benchmark.target.threshold=9",
                 "progress=off", f"run_dir={run}"])  # fmt: skip
    if code != 0:
        sys.exit("bench_history: the template run failed")
    return run


def fill(db: str, template: Path) -> None:
    (row,), _ = load_rows([template])
    rng = np.random.default_rng(36)
    store = Store(db, create=True)
    for c in range(COMMITS):
        rows = []
        for n, (bench, system, cfg) in enumerate(SERIES):
            step = 1.08 if n % 5 == 0 and c >= 400 else 1.0
            noise = 1.0 + 0.02 * rng.standard_normal(5)
            metrics = {k: (v * noise[i] * (step if k != "tokens_per_joule" else 1 / step))
                       if v else None for i, (k, v) in enumerate(row.metrics.items())}  # fmt: skip
            rows.append(dataclasses.replace(row, run_id=f"s{n:03d}c{c:04d}", benchmark=bench,
                                            system=system, config_hash=cfg, metrics=metrics))  # fmt: skip
        store.add(rows, {"commit_sha": f"{c:040x}", "branch": "main",
                         "committed_at": f"2026-01-01T00:00:{c % 60:02d}Z",
                         "committed_ts": 1.7e9 + 3600 * c, "added_at": "2026-12-07T00:00:00Z"})  # fmt: skip


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(
            line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")
        )
    except (OSError, StopIteration):
        return platform.machine()


def timed(argv: list[str]) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", *argv], capture_output=True,
                          text=True, env=env, cwd=REPO)  # fmt: skip
    return time.perf_counter() - t0, proc.returncode, (proc.stdout + proc.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a database URL (default: an SQLite file in a temp folder)")
    parser.add_argument("--out", default=str(REPO / "results" / "history" / "speed.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        db = args.db or str(top / "history.db")
        template = template_run(top)
        t0 = time.perf_counter()
        fill(db, template)
        fill_s = time.perf_counter() - t0
        stored = len(Store(db).rows())
        result = json.loads((template / "result.json").read_text())
        runs = top / "new"
        for i in range(1000):
            (runs / f"r{i}").mkdir(parents=True)
            result["run_id"] = f"new{i:04d}"
            (runs / f"r{i}" / "result.json").write_text(json.dumps(result))
        add_s, add_code, add_out = timed(
            ["history", "add", str(runs), "--db", db, "--commit", "f" * 40]
        )
        check_s, check_code, check_out = timed(["history", "check", "--db", db])
        size = os.path.getsize(db) if not args.db else None
    figures = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "database": "postgresql" if args.db else "sqlite",
        "rows_stored": stored,
        "db_bytes": size,
        "fill_s": round(fill_s, 2),
        "add_1000_runs_s": round(add_s, 3),
        "add_exit": add_code,
        "check_all_series_s": round(check_s, 3),
        "check_exit": check_code,
        "check_lines": len(check_out.splitlines()),
        # the stepped series are config cfg0000000; four of their five metrics get worse
        "regressions_in_stepped_series": sum(
            line.startswith("REGRESSION") and "cfg0000000" in line
            for line in check_out.splitlines()
        ),
        "regressions_expected": 4 * len(SERIES) // 5,
        "regressions_in_flat_series": sum(
            line.startswith("REGRESSION") and "cfg0000000" not in line
            for line in check_out.splitlines()
        ),
        "verdicts": {
            v: sum(line.startswith(v) for line in check_out.splitlines())
            for v in ("OK", "REGRESSION", "INCONCLUSIVE", "RUNNER CHANGE")
        },
        "command": "python scripts/bench_history.py" + (" --db URL" if args.db else ""),
    }
    if add_code != 0:
        print(add_out[-2000:], file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0 if add_code == 0 and add_s < 5 and check_s < 5 else 1


if __name__ == "__main__":
    sys.exit(main())
