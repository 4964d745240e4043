"""`joulebench history` on real runs: ten lm-dense-tiny runs with the simulated meter, the first
six at 100 W and the last four at 110 W, stored as ten commits, in SQLite and in PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.history.store import MIGRATIONS, SCHEMA_VERSION, Store
from tests.helpers import REPO, short_run

WATTS = [100] * 6 + [110] * 4


def commit(i: int) -> str:
    return f"{i + 1:02d}" + hashlib.sha1(str(i).encode()).hexdigest()[:38]


@pytest.fixture(scope="module")
def ten_runs(tiny_package, tmp_path_factory) -> list[Path]:
    """The shared package's five 100 W runs (the same config: seeds are not part of a series),
    then one more at 100 W and four at 110 W."""
    top = tmp_path_factory.mktemp("history-runs")
    for i, watts in enumerate(WATTS[5:], start=5):
        short_run(str(top / f"r{i}"), f"meter.watts={watts}", "benchmark.eval_every_steps=20")
    return [*tiny_package[0], *(top / f"r{i}" for i in range(5, 10))]


def add_all(db: str, runs: list[Path], capsys=None) -> None:
    for i, run in enumerate(runs):
        assert main(["history", "add", str(run), "--db", db, "--commit", commit(i),
                     "--time", f"2026-11-{i + 1:02d}T12:00:00Z"]) == 0  # fmt: skip
    if capsys:
        capsys.readouterr()


def check(db: str, capsys, *extra: str) -> tuple[int, str]:
    code = main(["history", "check", "--db", db, "--metric", "avg_power_w", *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_the_seventh_commit_is_named_as_a_ten_percent_regression(ten_runs, tmp_path, capsys):
    db = str(tmp_path / "history.db")
    add_all(db, ten_runs[:6], capsys)
    code, out = check(db, capsys)
    assert code == 0, out
    assert out.startswith("OK lm-dense-tiny/torch") and "simulated" in out
    add_all(db, ten_runs, capsys)  # the first six again change nothing: keyed by run id
    assert len(Store(db).rows()) == 10
    code, out = check(db, capsys)
    assert code == 1, out
    change, verdict = out.strip().splitlines()
    assert f"avg_power_w at {commit(6)} (commit 7 of 10, 2026-11-07T12:00:00Z): up +10.0%" in change
    assert "100 -> 110 W: code change" in change and "p<1e-12" in change
    assert verdict.startswith("REGRESSION") and f"+10.0% worse since {commit(6)[:12]}" in verdict
    assert check(db, capsys, "--since", commit(6)[:10])[0] == 1  # a PR whose base is commit 6
    code, out = check(db, capsys, "--since", commit(7))  # the regression is older than the range
    assert code == 0 and out.strip().endswith(f"it began before {commit(7)}"), out


def test_the_same_step_on_a_new_gpu_is_a_runner_change(ten_runs, tmp_path, capsys):
    db = str(tmp_path / "history.db")
    copies = []
    for i, run in enumerate(ten_runs):
        result = json.loads((run / "result.json").read_text())
        result["system"]["accelerator"]["driver"] = "550.54.15"
        result["system"]["accelerator"]["state"] = {
            "gpu:0": {
                "uuid": "GPU-aaaa" if i < 6 else "GPU-bbbb",
                "at_start": {"power_limit_w": 700.0, "max_sm_clock_mhz": 1980},
                "at_end": None,
            }
        }
        (tmp_path / f"u{i}").mkdir()
        (tmp_path / f"u{i}" / "result.json").write_text(json.dumps(result))
        copies.append(tmp_path / f"u{i}")
    add_all(db, copies, capsys)
    code, out = check(db, capsys)
    change, verdict = out.strip().splitlines()
    assert "up +10.0%" in change
    assert change.endswith("runner change (device uuids GPU-aaaa -> GPU-bbbb)")
    assert verdict.startswith("RUNNER CHANGE") and code == 0, out
    rows = Store(db).rows()
    assert {r["driver"] for r in rows} == {"550.54.15"} and rows[0]["power_limit_w"] == "700"
    assert rows[0]["clocks"] == "sm max 1980 MHz" and rows[0]["device_uuids"] == "GPU-aaaa"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line_exit_2(argv: list[str], capsys, wanted: str) -> None:
    code = main(argv)
    out = capsys.readouterr()
    assert code == 2, out
    assert out.out == "" and len(out.err.strip().splitlines()) == 1, out.err
    assert wanted in out.err, out.err


def test_bad_input_is_one_line_and_exit_2_and_changes_nothing(ten_runs, tmp_path, capsys):
    db = tmp_path / "history.db"
    add_all(str(db), ten_runs[:3], capsys)
    before = digest(db)
    broken = tmp_path / "broken"
    shutil.copytree(ten_runs[3], broken)
    (broken / "result.json").write_text('{"schema_version": "1", "metrics": {}}')
    add = ["history", "add", str(ten_runs[4]), str(broken), "--db", str(db), "--commit", "abc"]
    one_line_exit_2(add, capsys, "is not a joulebench result")  # a failed add adds nothing
    one_line_exit_2(["history", "check", "--db", str(db), "--metric", "joules"], capsys,
                    "--metric joules is not a history metric")  # fmt: skip
    assert digest(db) == before

    corrupt = tmp_path / "corrupt.db"
    data = bytearray(db.read_bytes())
    data[4096:8192] = os.urandom(4096)  # the runs table's page
    corrupt.write_bytes(bytes(data))
    text = tmp_path / "notes.db"
    text.write_text("this is a text file, not a database\n" * 100)
    newer = tmp_path / "newer.db"
    shutil.copy(db, newer)
    with sqlite3.connect(newer) as conn:
        conn.execute("UPDATE joulebench_schema SET version = ?", (SCHEMA_VERSION + 1,))
    cases = [
        (corrupt, "is not a readable SQLite history database"),
        (text, "file is not a database"),
        (newer, f"has history schema v{SCHEMA_VERSION + 1}, newer than this joulebench reads"),
    ]
    for path, wanted in cases:
        kept = digest(path)
        for argv in (["check", "--db", str(path)], ["add", str(ten_runs[5]), "--db", str(path),
                     "--commit", "abc"], ["export", "--db", str(path), "--csv", str(tmp_path / "x.csv")]):  # fmt: skip
            one_line_exit_2(["history", *argv], capsys, wanted)
        assert digest(path) == kept, path
    one_line_exit_2(["history", "check", "--db", str(tmp_path / "none.db")], capsys,
                    "no history database at")  # fmt: skip
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "x.csv").exists()


def test_an_older_schema_is_migrated_and_keeps_its_rows(ten_runs, tmp_path, capsys):
    db = tmp_path / "v1.db"
    with sqlite3.connect(db) as conn:  # what joulebench's first schema wrote
        conn.execute("CREATE TABLE joulebench_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO joulebench_schema VALUES (1)")
        for statement in MIGRATIONS[1]:
            conn.execute(statement)
    add_all(str(db), ten_runs[:1], capsys)  # through version 1's table, then migrated
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT version FROM joulebench_schema").fetchall() == [(2,)]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"runs_by_branch", "runs_by_commit"} <= indexes
    assert len(Store(str(db)).rows()) == 1


CONCURRENT = """
import json, sys
from pathlib import Path
from harness.cli import main
db, template, top, worker = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
result = json.loads(template.read_text())
for i in range(50):
    run = top / f"w{worker}-{i}"
    run.mkdir()
    result["run_id"] = f"w{worker}-{i:03d}"
    (run / "result.json").write_text(json.dumps(result))
for i in range(50):
    assert main(["history", "add", str(top / f"w{worker}-{i}"), "--db", db,
                 "--commit", f"c{worker}-{i}"]) == 0
"""


def add_concurrently(db: str, template: Path, top: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, db, str(template), str(top), str(w)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for w in range(4)
    ]
    for w in workers:
        _, err = w.communicate(timeout=300)
        assert w.returncode == 0, err[-2000:]


def test_four_jobs_adding_at_once_lose_no_row(ten_runs, tmp_path):
    db = str(tmp_path / "history.db")
    add_concurrently(db, ten_runs[0] / "result.json", tmp_path)
    rows = Store(db).rows()
    assert len(rows) == 200 and len({r["run_id"] for r in rows}) == 200


def test_export_and_plot(ten_runs, tmp_path, capsys):
    db = str(tmp_path / "history.db")
    add_all(db, ten_runs, capsys)
    out = tmp_path / "history.csv"
    assert main(["history", "export", "--db", db, "--csv", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["avg_power_w"]) for r in rows] == pytest.approx(WATTS)
    assert [r["commit_sha"] for r in rows] == [commit(i) for i in range(10)]
    assert {r["provenance"] for r in rows} == {"simulated"}
    plots = tmp_path / "plots"
    assert main(["history", "plot", "--db", db, "-o", str(plots)]) == 0
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert len(pngs) == 5 and "lm-dense-tiny__avg_power_w.png" in pngs
    assert all((plots / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    summary = (plots / "summary.md").read_text()
    assert len(summary) < 65536 and summary.index("❌ regression") < summary.index("| avg_power_w")
    assert f"avg_power_w at {commit(6)}" in summary


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A PostgreSQL server: the one .ci/run started (JOULEBENCH_TEST_POSTGRES_URL), else one
    started here from the distribution's binaries, else the test is skipped and says why."""
    url = os.environ.get("JOULEBENCH_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="joulebench-pg.", dir="/tmp"))
    script = REPO / "scripts" / "ci" / "postgres.sh"
    env = {**os.environ, "JB_PG_PORT": "54339"}
    started = subprocess.run(["bash", str(script), "start", str(where)], capture_output=True,
                             text=True, env=env, timeout=120)  # fmt: skip
    if started.returncode != 0:
        shutil.rmtree(where, ignore_errors=True)
        pytest.skip(f"no PostgreSQL server here: {started.stderr.strip()[-300:]}")
    yield started.stdout.strip()
    subprocess.run(["bash", str(script), "stop", str(where)], env=env, timeout=120)
    shutil.rmtree(where, ignore_errors=True)


def fresh_database(url: str, name: str) -> str:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return url.replace("/postgres?", f"/{name}?")


def test_postgresql_keeps_the_same_history(postgres, ten_runs, tmp_path, capsys):
    url = fresh_database(postgres, "jb_history")
    add_all(url, ten_runs, capsys)
    add_all(url, ten_runs[:2], capsys)
    code, out = check(url, capsys)
    assert code == 1 and f"avg_power_w at {commit(6)} (commit 7 of 10" in out, out
    add_concurrently(
        fresh_database(postgres, "jb_concurrent"), ten_runs[0] / "result.json", tmp_path
    )
    assert len(Store(postgres.replace("/postgres?", "/jb_concurrent?")).rows()) == 200
    import sqlalchemy

    engine = sqlalchemy.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE joulebench_schema SET version = 99"))
    engine.dispose()
    one_line_exit_2(["history", "check", "--db", url], capsys, "has history schema v99")


def test_the_example_workflow_replayed_over_ten_pushes(ten_runs, tmp_path, monkeypatch, capsys):
    """scripts/ci/energy-history.yml's `joulebench history` commands, as written there, run for
    ten pushes to main whose benchmark step made one run each. The check and the plot read
    average power only (the simulated meter's exact watts; its energy per step follows this
    CPU's speed)."""
    import shlex

    import yaml

    workflow = yaml.safe_load((REPO / "scripts" / "ci" / "energy-history.yml").read_text())
    steps = workflow["jobs"]["energy"]["steps"]
    lines = [
        line.strip().split(" | ")[0]
        for step in steps
        for line in step.get("run", "").splitlines()
        if line.strip().startswith("joulebench history")
    ]
    assert [shlex.split(line)[2] for line in lines] == ["add", "check", "plot", "export"]
    monkeypatch.chdir(tmp_path)
    codes = []
    for i, run in enumerate(ten_runs):
        shutil.rmtree("runs", ignore_errors=True)
        shutil.copytree(run, Path("runs") / run.name)
        env = {"DB": workflow["jobs"]["energy"]["env"]["DB"], "GITHUB_SHA": commit(i)}
        for line in lines:
            line = line.replace('"$(git show -s --format=%cI HEAD)"', f"2026-11-{i + 1:02d}T12:00Z")
            argv = [os.path.expandvars(a) if "$" in a else a for a in shlex.split(line)]
            for name, value in env.items():
                argv = [a.replace(f"${name}", value) for a in argv]
            if argv[2] in ("check", "plot"):  # plot: one PNG a push, not five (time)
                argv += ["--metric", "avg_power_w"]
            code = main(argv[1:])
            if argv[2] == "check":
                codes.append(code)
            else:
                assert code == 0, capsys.readouterr()
    # six alike; the step with one and two commits after it cannot be judged; then it is +10%
    assert codes == [0, 0, 0, 0, 0, 0, 4, 4, 1, 1]
    summary = Path("history-plots/summary.md").read_text()
    assert "❌ regression" in summary and Path("history-plots/history.csv").is_file()


def test_history_loads_no_workload_or_framework(ten_runs, tmp_path, capsys):
    """Like validate, the history reads result files only: add, check, plot and export in one
    fresh process import nothing of torch, JAX or the workloads."""
    db = str(tmp_path / "history.db")
    add_all(db, ten_runs, capsys)
    code = (
        "import sys; from harness.cli import main\n"
        f"main(['history', 'add', {str(ten_runs[0])!r}, '--db', {db!r}, '--commit', 'x1'])\n"
        f"main(['history', 'check', '--db', {db!r}])\n"
        f"main(['history', 'plot', '--db', {db!r}, '-o', {str(tmp_path / 'p')!r}])\n"
        f"main(['history', 'export', '--db', {db!r}, '--csv', {str(tmp_path / 'h.csv')!r}])\n"
        "print(sorted(m for m in sys.modules if m.startswith(('workloads', 'torch', 'jax'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "[]", (
        out.stdout + out.stderr
    )
