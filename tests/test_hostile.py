"""A stranger's submission, tried as an attacker would: every tool, every trick.

One genuine package is built, then copied and broken one way per case: links to files, folders
and /dev/zero, FIFOs, hard links, `..` in every field that reaches a path, deep JSON, NaN,
Infinity and 1e400, bytes that are not UTF-8, a legal-sized sparse 2 GiB trace, and the lies a
careful tamperer would tell (with the hashes fixed up). Each case runs the real CLI in its own
process, under a time limit, and the large ones under RLIMIT_AS of 1 GiB. Every case must end in
its rule id (validate, exit 1) or one line and exit 2 (the other tools); never a traceback, a
hang, or a byte of the canary file outside the submission in what a tool prints or writes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.cli_process import GIB, REPO, SECRET, tool
from tests.submission_helpers import copy_submission, rehash, runs_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def genuine(tiny_package, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    run_dirs, system, sub = tiny_package
    canary = root / "outside" / "secret.txt"
    canary.parent.mkdir()
    canary.write_text(f"{SECRET}\nline two\n")
    return sub, run_dirs, system, canary


@pytest.fixture
def case(genuine, tmp_path):
    """A fresh copy of the genuine package; after the test, the canary is as it was."""
    sub, _, _, canary = genuine
    before = (canary.read_bytes(), canary.stat().st_mtime_ns)
    yield copy_submission(sub, tmp_path / "sub"), canary
    assert (canary.read_bytes(), canary.stat().st_mtime_ns) == before, "the canary was written"


def validate(sub: Path, *rules: str, mem: int = 0) -> str:
    code, out = tool("validate", sub, mem=mem)
    assert code == 1, out[-3000:]
    for rule in rules:
        assert rule in out, f"{rule} not in:\n{out[-3000:]}"
    return out


def view_of(sub: Path) -> Path:
    """results/<system>/<benchmark>: where the MLCommons view's files live."""
    return runs_of(sub)[0].parents[1]


def edit_result(run: Path, fn) -> None:
    data = json.loads((run / "result.json").read_text())
    fn(data)
    (run / "result.json").write_text(json.dumps(data, indent=2))


def test_the_genuine_package_validates_with_no_finding(genuine):
    code, out = tool("validate", genuine[0])
    assert code == 0 and "VALID" in out


# -- links, special files, hard links: refused, never followed -------------------------------
@pytest.mark.parametrize("name", ["result.json", "mllog.txt", "power.csv", "config.yaml"])
def test_a_run_file_linked_to_a_file_outside(case, name):
    sub, canary = case
    run = runs_of(sub)[1]
    (run / name).unlink()
    (run / name).symlink_to(canary)
    out = validate(sub, "SUB-005")
    assert f"{run.relative_to(sub)}/{name}" in out


def test_a_run_folder_linked_outside(case, tmp_path):
    sub, canary = case
    run = runs_of(sub)[2]
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(run, elsewhere)
    (elsewhere / "mllog.txt").write_text(canary.read_text())
    shutil.rmtree(run)
    run.symlink_to(elsewhere, target_is_directory=True)
    validate(sub, "SUB-005", "RUNS-001")


def test_a_folder_of_the_mlcommons_view_linked_outside(case, tmp_path):
    sub, canary = case
    power = view_of(sub) / "power"
    elsewhere = tmp_path / "power"
    shutil.copytree(power, elsewhere)
    (elsewhere / "result_0" / "node_0.txt").write_text(canary.read_text())
    shutil.rmtree(power)
    power.symlink_to(elsewhere, target_is_directory=True)
    validate(sub, "SUB-005", "MLC-001")


def test_a_trace_linked_to_dev_zero(case):
    sub, _ = case
    run = runs_of(sub)[0]
    (run / "power.csv").unlink()
    (run / "power.csv").symlink_to("/dev/zero")
    validate(sub, "SUB-005", mem=GIB)


def test_a_fifo_for_a_trace_and_for_a_result(case):
    sub, _ = case
    runs = runs_of(sub)
    (runs[0] / "power.csv").unlink()
    os.mkfifo(runs[0] / "power.csv")
    (runs[1] / "result.json").unlink()
    os.mkfifo(runs[1] / "result.json")
    out = validate(sub, "SUB-005")
    assert "is a FIFO" in out


def test_a_hard_link_to_a_file_outside(case):
    sub, canary = case
    run = runs_of(sub)[3]
    (run / "mllog.txt").unlink()
    os.link(canary, run / "mllog.txt")
    try:
        validate(sub, "SUB-005")
    finally:
        (run / "mllog.txt").unlink()  # the canary keeps one link


# -- what a parser must survive ----------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # RecursionError in a naive parser
        '{"a": ' * 80 + "1" + "}" * 80,  # deeper than any result, within recursion
        '{"schema_version": "1", "x": NaN}',
        '{"schema_version": "1", "x": Infinity}',
        '{"schema_version": "1", "x": 1e400}',
        '{"schema_version": "1", "x": ' + "9" * 5000 + "}",
        '{"schema_version": "1", "x": "\udcff"}',
    ],
    ids=["deep", "deep80", "nan", "infinity", "1e400", "huge-int", "lone-surrogate"],
)
def test_hostile_json_in_result_json(case, text):
    sub, _ = case
    (runs_of(sub)[0] / "result.json").write_text(text, errors="surrogatepass")
    validate(sub, "RES-001")


def test_bytes_that_are_not_utf8(case):
    sub, _ = case
    runs = runs_of(sub)
    (runs[0] / "result.json").write_bytes(b'{"schema_version": "\xff\xfe"}')
    with open(runs[1] / "mllog.txt", "ab") as f:
        f.write(b"\xff\xfe\xfa not utf-8\n")
    rehash(runs[1])
    out = validate(sub, "RES-001", "MLLOG-001")
    assert "not UTF-8" in out


def test_a_sparse_trace_of_the_legal_size(case):
    """2 GiB, the ruleset's max_trace_bytes, nearly all a hole: read in bounded memory and
    refused at its first over-long line, well within the time limit."""
    sub, _ = case
    run = runs_of(sub)[0]
    with open(run / "power.csv", "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.truncate(2 * GIB)
    validate(sub, "TRACE-001", "HASH-002", mem=GIB)


def test_a_trace_of_too_many_rows_is_refused_in_bounded_memory(case):
    """Legal bytes, more rows than the ruleset checks in memory: a finding, not an OOM."""
    sub, _ = case
    run = runs_of(sub)[0]
    lines = (run / "power.csv").read_text().splitlines()
    row = lines[-1]
    with open(run / "power.csv", "a") as f:
        block = (row + "\n") * 100_000
        for _ in range(101):  # 10.1M more rows of ~40 bytes: ~400 MB
            f.write(block)
    validate(sub, "TRACE-001", mem=GIB)


# -- names that would become paths ---------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("benchmark", "../../../escaped"),
        ("benchmark", "/tmp/escaped-abs"),
        ("framework", "../../escaped"),
        ("framework", ".."),
    ],
)
def test_package_refuses_a_path_in_a_name(genuine, tmp_path, field, value):
    _, run_dirs, system, _ = genuine
    runs = []
    for i, src in enumerate(run_dirs):
        dst = tmp_path / "runs" / f"r{i}"
        shutil.copytree(src, dst)
        runs.append(dst)

    def lie(r):
        if field == "benchmark":
            r["benchmark"] = value
        else:
            r["workload"]["framework"] = value

    edit_result(runs[2], lie)
    out_dir = tmp_path / "deep" / "er" / "pkg"
    code, out = tool("package", *runs, "--system", system, "--org", "x", "--division", "open",
                     "-o", out_dir)  # fmt: skip
    assert code == 2 and "not a safe name" in out
    assert len(out.strip().splitlines()) == 1
    assert not out_dir.exists()  # refused before anything was written
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/escaped-abs").exists()


def test_a_ruleset_id_that_is_a_path(case):
    sub, _ = case
    meta = json.loads((sub / "submission.json").read_text())
    meta["ruleset"] = "../../../etc/passwd"
    (sub / "submission.json").write_text(json.dumps(meta))
    validate(sub, "SUB-003")


def test_package_copies_no_linked_file(genuine, tmp_path):
    _, run_dirs, system, canary = genuine
    run = tmp_path / "run"
    shutil.copytree(run_dirs[0], run)
    (run / "mllog.txt").unlink()
    (run / "mllog.txt").symlink_to(canary)
    out_dir = tmp_path / "pkg"
    code, out = tool("package", run, "--system", system, "--org", "x", "--division", "open",
                     "-o", out_dir)  # fmt: skip
    assert code == 2 and "symbolic link" in out
    assert not out_dir.exists() or SECRET not in "".join(
        p.read_text(errors="replace") for p in out_dir.rglob("*") if p.is_file()
    )


# -- lies that must not pass -------------------------------------------------------------
def test_provenance_that_the_meter_cannot_give(case):
    sub, _ = case
    run = runs_of(sub)[0]
    edit_result(run, lambda r: r["meters"][0].update(provenance="measured"))
    out = validate(sub, "DIV-002")
    assert "gives simulated energy, not 'measured'" in out


def test_one_run_submitted_twice(case):
    sub, _ = case
    runs = runs_of(sub)
    for name in ("result.json", "power.csv", "mllog.txt", "config.yaml"):
        shutil.copy(runs[0] / name, runs[1] / name)
    out = validate(sub, "RUNS-002")
    assert "same run id" in out and "same seed" in out


def test_negative_watts(case):
    sub, _ = case
    run = runs_of(sub)[0]
    lines = (run / "power.csv").read_text().splitlines()
    t, domain, watts, joules = lines[5].split(",")
    lines[5] = f"{t},{domain},-{watts},{joules}"
    (run / "power.csv").write_text("\n".join(lines) + "\n")
    rehash(run)
    validate(sub, "TRACE-008")


def test_an_mlperf_log_from_another_time(case):
    sub, _ = case
    run = runs_of(sub)[0]
    records = []
    for line in (run / "mllog.txt").read_text().splitlines():
        prefix, _, body = line.partition("{")
        record = json.loads("{" + body)
        if record["key"] in ("run_start", "run_stop"):
            record["time_ms"] += 10_000  # 10 s later than result.json's timeline
        records.append(prefix + json.dumps(record))
    (run / "mllog.txt").write_text("\n".join(records) + "\n")
    rehash(run)
    # the MLCommons copy moved with it, so only the clock tie can catch it
    view = view_of(sub) / "result_0.txt"
    view.write_text((run / "mllog.txt").read_text())
    out = validate(sub, "MLLOG-002")
    assert "run_start at time_ms" in out


def test_nan_readings_in_the_mlcommons_power_file(case):
    sub, _ = case
    node = view_of(sub) / "power" / "result_0" / "node_0.txt"
    lines = node.read_text().splitlines()
    i = next(i for i, ln in enumerate(lines) if '"power_reading"' in ln)
    prefix, _, body = lines[i].partition("{")
    record = json.loads("{" + body)
    lines[i] = prefix + json.dumps(record).replace(str(record["value"]), "NaN", 1)
    node.write_text("\n".join(lines) + "\n")
    validate(sub, "MLC-001")


# -- the other tools on hostile folders: one line, exit 2 or a clean skip ------------------
@pytest.fixture
def hostile_folder(genuine, tmp_path):
    """A folder of runs: one genuine, one whose result.json is a FIFO, one linked to the
    canary, one whose trace is /dev/zero."""
    _, run_dirs, _, canary = genuine
    top = tmp_path / "runs"
    good = top / "good"
    shutil.copytree(run_dirs[0], good)
    (top / "fifo").mkdir()
    os.mkfifo(top / "fifo" / "result.json")
    (top / "link").mkdir()
    (top / "link" / "result.json").symlink_to(canary)
    zero = top / "zero"
    shutil.copytree(run_dirs[1], zero)
    (zero / "power.csv").unlink()
    (zero / "power.csv").symlink_to("/dev/zero")
    before = (canary.read_bytes(), canary.stat().st_mtime_ns)
    yield top, good
    assert (canary.read_bytes(), canary.stat().st_mtime_ns) == before, "the canary was written"


def test_score_and_compare_skip_what_they_cannot_read(hostile_folder):
    top, good = hostile_folder
    code, out = tool("score", top, mem=GIB)
    assert code == 0 and "lm-dense-tiny" in out
    code, out = tool("compare", top, good, mem=GIB)
    assert code in (0, 2, 4)


def test_report_draws_what_it_can_and_never_reads_dev_zero(hostile_folder, tmp_path):
    top, _ = hostile_folder
    code, out = tool("report", top, "-o", tmp_path / "report", mem=GIB)
    assert code == 0, out
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "report").glob("*.md"))
    assert SECRET not in written


@pytest.mark.parametrize("which", ["fifo", "link"])
def test_recost_refuses_in_one_line(hostile_folder, which):
    top, _ = hostile_folder
    code, out = tool("recost", top / which, "--region", "FRA")
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert "symbolic link" in out or "FIFO" in out


def test_every_rule_id_the_validator_gives_is_declared_in_the_ruleset():
    """The ruleset is where a reviewer looks a finding up: the code gives no id it lacks, and
    it lists none the code cannot give."""
    import re

    from harness.submission.ruleset import load_ruleset

    code = "".join(p.read_text() for p in (REPO / "harness" / "submission").glob("*.py"))
    used = set(re.findall(r'"([A-Z0-9]+-\d{3})"', code))
    declared = set(load_ruleset("v1").rule_ids)
    assert used == declared, (sorted(used - declared), sorted(declared - used))
    assert {"DIV-002", "RUNS-002", "TRACE-008", "MLLOG-002", "SUB-007"} <= declared


# -- every JSON read through the safe reader; submission.json typed before use ---------------
def test_a_deeply_nested_equivalence_verdict_is_one_line(tmp_path):
    deep = tmp_path / "verdict.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, out = tool("run", "framework=custom", "framework.target=examples.least_squares:LeastSquaresWorkload",
                     "meter=simulated", f"framework.equivalence={deep}", f"output_dir={tmp_path}/runs")  # fmt: skip
    assert code == 2 and len(out.strip().splitlines()) == 1 and "nested" in out, out


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [("division", ["closed"], "division must be text"), ("ruleset", {"id": "v1"}, "ruleset must be text"),
     ("org", 7, "org must be text"), ("systems", [1, 2], "systems must list"), ("ruleset", None, "ruleset must be text")],
)  # fmt: skip
def test_a_submission_json_field_of_the_wrong_type(case, field, value, said):
    sub, _ = case
    meta = json.loads((sub / "submission.json").read_text())
    meta[field] = value
    (sub / "submission.json").write_text(json.dumps(meta))
    out = validate(sub, "SUB-001")
    assert said in out
