"""`joulebench history add | check | plot | export`.

Exit codes of `check`: 0 the newest segment of every series is within the tolerance of the one
before, 1 a regression (the line names the commit it starts at), 4 inconclusive (too few
commits after the last change, or noise wider than the tolerance), 2 a usage error or a bad
database. A change that comes with a change of runner is reported as one, not as a regression.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gc
import io
import re
from pathlib import Path

from harness.errors import ConfigError, HistoryError
from harness.history.rows import METRIC_NAMES, SERIES_KEY

EXIT_REGRESSION, EXIT_INCONCLUSIVE = 1, 4
COMMIT = re.compile(r"[0-9A-Za-z._/-]{1,100}")


def _when(text: str | None) -> tuple[str, float]:
    """(ISO 8601 in UTC, seconds since the epoch) of --time; now when not given. A time without
    a zone is UTC."""
    if text is None:
        when = dt.datetime.now(dt.timezone.utc)
    else:
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(
                f"--time {text} is not an ISO 8601 time.", "e.g. --time 2026-12-07T10:00:00Z."
            ) from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
    when = when.astimezone(dt.timezone.utc)
    return when.isoformat().replace("+00:00", "Z"), when.timestamp()


def cmd_add(args: argparse.Namespace) -> int:
    from harness.history.rows import load_rows
    from harness.history.store import Store

    for name, value in (("--commit", args.commit), ("--branch", args.branch)):
        if not COMMIT.fullmatch(value):
            raise ConfigError(
                f"{name} {value!r} is not a commit or branch name.",
                f"give {name} as git prints it (letters, digits, . _ / -).",
            )
    committed_at, committed_ts = _when(args.time)
    rows, notes = load_rows([Path(p) for p in args.runs])  # every file read before the database
    store = Store(args.db, create=True)
    commit = {
        "commit_sha": args.commit,
        "branch": args.branch,
        "committed_at": committed_at,
        "committed_ts": committed_ts,
        "added_at": _when(None)[0],
    }
    added, stored = store.add(rows, commit)
    for note in notes + stored:
        print(f"note: {note}")
    print(
        f"joulebench: history {store.name}: {added} run(s) of {args.commit} on {args.branch} "
        f"added, {len(rows) - added} already there"
    )
    return 0


def _metrics(text: str | None) -> tuple[str, ...]:
    if text is None:
        return METRIC_NAMES
    if text not in METRIC_NAMES:
        raise ConfigError(
            f"--metric {text} is not a history metric.", f"use one of {', '.join(METRIC_NAMES)}."
        )
    return (text,)


def series_checks(args: argparse.Namespace) -> tuple[list, float | None]:
    """Every (series, metric) of the branch (and benchmark) checked, in a stable order, and the
    time of --since's commit (None without it). The cyclic garbage collector is paused while
    the rows become points: they hold no cycles, and its passes over 100,000 rows' objects
    took half the time."""
    gc.disable()
    try:
        return _series_checks(args)
    finally:
        gc.enable()


def _series_checks(args: argparse.Namespace) -> tuple[list, float | None]:
    from harness.history.changes import check_series, commits_of, points_of
    from harness.history.rows import RUNNER_KEY
    from harness.history.store import Store
    from harness.submission.cli import parse_tolerance

    metrics, tolerance = _metrics(args.metric), parse_tolerance(args.tolerance)
    store = Store(args.db)
    needed = ("commit_sha", "committed_at", "committed_ts", *SERIES_KEY, *RUNNER_KEY, *metrics)
    rows = store.rows(args.branch, args.benchmark, needed)
    if not rows:
        on = f"of {args.benchmark} " if args.benchmark else ""
        raise HistoryError(
            f"{store.name} holds no runs {on}on branch {args.branch}.",
            f"branches stored: {', '.join(store.branches()) or 'none'}; give --branch or "
            "--benchmark that `history add` used.",
        )
    since = None
    if getattr(args, "since", None):
        times = [r["committed_ts"] for r in rows if r["commit_sha"].startswith(args.since)]
        if len(args.since) < 4 or not times:
            raise HistoryError(
                f"--since {args.since}: no such commit on branch {args.branch}.",
                "give a commit `history add` stored (at least 4 characters of it).",
            )
        since = min(times)
    series: dict[tuple, list[dict]] = {}
    for row in rows:
        series.setdefault(tuple(row[k] for k in SERIES_KEY), []).append(row)
    checks = []
    for key in sorted(series):
        commits = commits_of(series[key])
        for metric in metrics:
            points = points_of(commits, metric)
            if points:
                checks.append(check_series(key, metric, points, tolerance))
    return checks, since


def cmd_check(args: argparse.Namespace) -> int:
    from harness.history.changes import change_line, label

    checks, since = series_checks(args)
    worst = 0
    for check in checks:
        for change in check.changes:
            print(change_line(check, change))
        marked = {c.index for c in check.changes}
        for i in check.runner_changes:
            if i not in marked and check.metric == checks[0].metric:
                p = check.points[i]
                print(f"note: {label(check.key)}: the runner changed at {p.commit} with no change")
        v = check.verdict
        if v.status == "regression" and since is not None:
            started = check.points[check.changes[-1].index]
            if started.committed_ts < since:  # an old regression, not this range's
                v.status, v.reason = "ok", f"{v.reason}; it began before {args.since}"
        head = {"regression": "REGRESSION", "ok": "OK", "inconclusive": "INCONCLUSIVE"}
        print(
            f"{head.get(v.status, 'RUNNER CHANGE')} {label(check.key)} {check.metric}: {v.reason}"
        )
        if v.status == "regression":
            worst = EXIT_REGRESSION
        elif v.status == "inconclusive" and worst == 0:
            worst = EXIT_INCONCLUSIVE
    return worst


def cmd_plot(args: argparse.Namespace) -> int:
    from harness.history.plot import write_plots

    for path in write_plots(series_checks(args)[0], Path(args.output), args.tolerance):
        print(f"joulebench: wrote {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from harness.history.store import COLUMN_NAMES, Store
    from harness.results.writer import atomic_write_text

    rows = Store(args.db).rows(args.branch)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMN_NAMES, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    out = Path(args.csv)
    if out.is_dir():
        raise HistoryError(f"--csv {out} is a folder.", "give a file name, e.g. history.csv.")
    atomic_write_text(out, buf.getvalue())
    print(f"joulebench: wrote {len(rows)} rows to {out}")
    return 0


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, help="an SQLite file, or a postgresql:// URL")
    p.add_argument("--branch", default="main", help="the branch's series (default main)")
    p.add_argument("--benchmark", help="only this benchmark")
    p.add_argument("--metric", help=f"only this metric: {', '.join(METRIC_NAMES)}")
    p.add_argument("--tolerance", default="5%", help="how much worse is a regression (5%%)")


def register(sub) -> None:
    history = sub.add_parser(
        "history",
        help="energy history across commits: add runs, find change points, plot, export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = history.add_subparsers(dest="history_command", required=True)
    p = commands.add_parser("add", help="store run directories or submissions for a commit")
    p.add_argument("runs", nargs="+", help="run directories or submissions")
    p.add_argument("--db", required=True, help="an SQLite file (made if absent) or a URL")
    p.add_argument("--commit", required=True, help="the commit the runs measured")
    p.add_argument("--branch", default="main")
    p.add_argument("--time", help="the commit's time, ISO 8601 (default: now); orders commits")
    p.set_defaults(func=cmd_add)

    p = commands.add_parser(
        "check", help="change points per series (exit 0 ok, 1 regression, 4 inconclusive)"
    )
    _selection(p)
    p.add_argument(
        "--since", help="count only regressions that begin at or after this commit (a PR's base)"
    )
    p.set_defaults(func=cmd_check)

    p = commands.add_parser("plot", help="one PNG per benchmark and metric, and summary.md")
    _selection(p)
    p.add_argument("-o", "--output", required=True, help="folder for the PNGs and summary.md")
    p.set_defaults(func=cmd_plot)

    p = commands.add_parser("export", help="every stored row as CSV")
    p.add_argument("--db", required=True)
    p.add_argument("--branch", default=None, help="only this branch (default: every branch)")
    p.add_argument("--csv", required=True, help="the file to write")
    p.set_defaults(func=cmd_export)
