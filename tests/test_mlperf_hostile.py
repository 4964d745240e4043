"""`joulebench import mlperf` on a stranger's folder, and `validate` on an import someone edited:
each trick ends in one line and exit 2 (import) or a finding (validate), in bounded memory and
time, with nothing written outside OUT and no half-written OUT left behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.cli_process import GIB, tool

LENOVO = Path(__file__).resolve().parent / "fixtures" / "mlperf" / "v5.0" / "Lenovo"
SYSTEM = "SR780aV3-8xB200_SXM_180GB"


@pytest.fixture
def org(tmp_path):
    out = tmp_path / "Lenovo"
    shutil.copytree(LENOVO, out)
    return out


def _bench(org: Path) -> Path:
    return org / "results" / SYSTEM / "retinanet"


def _node(org: Path, n: int = 0) -> Path:
    return _bench(org) / "power" / f"result_{n}" / "node_0.txt"


def _switch(org: Path, value: str) -> None:
    record = {"namespace": "", "time_ms": 1, "event_type": "POINT_IN_TIME",
              "key": "interconnect_power_est", "value": 1, "metadata": {}}  # fmt: skip
    text = ":::MLLOG " + json.dumps(record).replace('"value": 1', f'"value": {value}')
    (_bench(org) / "power" / "result_1" / "sw_0.txt").write_text(text + "\n")


def _link_node(org, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_text("CANARY-7f3a9-do-not-leak\n")
    _node(org).unlink()
    _node(org).symlink_to(secret)


def _fifo(org, tmp_path):
    _node(org).unlink()
    os.mkfifo(_node(org))


def _huge_line(org, tmp_path):
    with open(_node(org), "a") as f:
        f.write(":::MLLOG " + "x" * (2 << 20) + "\n")


def _not_utf8(org, tmp_path):
    _node(org).write_bytes(_node(org).read_bytes() + b'\xff\xfe:::MLLOG {"bad": 1}\n')


def _orphan(org, tmp_path):
    shutil.copytree(_bench(org) / "power" / "result_0", _bench(org) / "power" / "result_9")


def _linked_benchmark(org, tmp_path):
    shutil.move(_bench(org), tmp_path / "elsewhere")
    _bench(org).symlink_to(tmp_path / "elsewhere")


def _sparse_giant(org, tmp_path):
    with open(_node(org), "r+b") as f:
        f.truncate(100 << 20)  # over the 64 MiB a power log may be


def _stop_at_start(org, tmp_path):
    text = _node(org).read_text().splitlines()
    start = next(json.loads(x[x.index("{") :]) for x in text if "power_measurement_start" in x)
    lines = [x for x in text if "power_measurement_stop" not in x]
    stop = {**start, "key": "power_measurement_stop", "event_type": "INTERVAL_END"}
    _node(org).write_text("\n".join([*lines, ":::MLLOG " + json.dumps(stop)]) + "\n")


def _missing_power(org, tmp_path):
    shutil.rmtree(_bench(org) / "power" / "result_3")


def _linked_system(org, tmp_path):
    target = org / "systems" / f"{SYSTEM}.json"
    shutil.move(target, tmp_path / "system.json")
    target.symlink_to(tmp_path / "system.json")


# the tricks that could hang or exhaust memory run in their own process under 1 GiB and a time
# limit; the rest run in this one, through the same CLI entry point
ISOLATED = {_fifo, _huge_line, _sparse_giant, _link_node}


@pytest.mark.parametrize(
    ("trick", "said"),
    [
        (_link_node, "symbolic link"),
        (_fifo, "FIFO"),
        (_huge_line, "a line of"),
        (_not_utf8, "not UTF-8"),
        (lambda org, tmp: _switch(org, "NaN"), "non-finite number NaN"),
        (lambda org, tmp: _switch(org, "1e400"), "not a finite number"),
        (lambda org, tmp: _switch(org, '"16100"'), "not a finite number"),
        (_orphan, "no result_9.txt beside it"),
        (_linked_benchmark, "symbolic link"),
        (_sparse_giant, "over the"),
        (_stop_at_start, "divides by zero"),
        (_missing_power, "has no power/result_3/"),
        (_linked_system, "symbolic link"),
    ],
)
def test_import_refuses_in_one_line(org, tmp_path, capsys, trick, said):
    trick(org, tmp_path)
    out = tmp_path / "out"
    args = ("import", "mlperf", org, "-o", out, "--round", "5.0")
    if trick in ISOLATED:
        code, text = tool(*args, mem=GIB, timeout=60)
    else:
        from harness.cli import main

        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        text = captured.out + captured.err
    assert code == 2 and len(text.strip().splitlines()) == 1, text
    assert said in text, text
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from harness.imports.mlperf import import_mlperf

    root = tmp_path_factory.mktemp("imported")
    import_mlperf(LENOVO, root / "out", "5.0")
    return root / "out"


def _edit_result(sub: Path, edit) -> None:
    from tests.submission_helpers import rehash

    run = next((sub / "results" / SYSTEM / "retinanet").glob("*/run_1"))
    path = run / "result.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    rehash(run)


@pytest.mark.parametrize(
    ("edit", "rule", "said"),
    [
        (lambda r: r["imported"].update(result_file="../../../../etc/passwd"), "MLC-001", "is not a run log's name"),
        (lambda r: r["imported"].update(rule="mlperf-logging-4.1-lenient"), "MLC-001", "the ruleset scores it by"),
        (lambda r: r["imported"].update(round="9.9"), "MLC-001", "does not know the round"),
        (lambda r: r["metrics"].update(energy_total_j=r["metrics"]["energy_total_j"] * 1.000001), "MLC-001", "by mlperf-logging-4.1"),
        (lambda r: r["imported"].update(scaling_factor=0.5), "MLC-001", "scaling_factor"),
        (lambda r: r["imported"].update(nodes=[1]), "RES-002", "imported.nodes"),
    ],
)  # fmt: skip
def test_validate_finds_an_edited_import(imported, tmp_path, capsys, edit, rule, said):
    sub = tmp_path / "sub"
    shutil.copytree(imported, sub)
    _edit_result(sub, edit)
    code, text = _validate(sub, capsys)
    assert code == 1 and rule in text and said in text, text[-2000:]


def _validate(sub: Path, capsys) -> tuple[int, str]:
    from harness.cli import main

    code = main(["validate", str(sub)])
    return code, capsys.readouterr().out


def test_validate_finds_a_published_file_gone_or_poisoned(imported, tmp_path, capsys):
    sub = tmp_path / "sub"
    shutil.copytree(imported, sub)
    power = sub / "results" / SYSTEM / "retinanet" / "power"
    (power / "result_1" / "node_0.txt").unlink()
    node = power / "result_2" / "node_0.txt"
    node.write_text(node.read_text().replace('"value": 10148.0', '"value": NaN', 1))
    code, text = _validate(sub, capsys)
    assert code == 1, text
    assert "result_1/node_0.txt: was read by the import but is missing" in text
    assert "result_2/node_0.txt: unreadable as MLCommons reads it" in text
