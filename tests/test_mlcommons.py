"""MLCommons' own tools judge a packaged tiny submission: the training compliance checker reads
each result_N.txt, system_desc_checker the system file, and the result summarizer's energy
equals joulebench's. The validator's MLC rules catch a package whose two views disagree."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import SubmissionError
from harness.submission.mlcommons import node_log_energy_j
from harness.submission.ruleset import load_ruleset
from harness.submission.validate import validate_submission
from tests.submission_helpers import copy_submission, package_runs, write_system

mlp_compliance = pytest.importorskip("mlperf_logging.compliance_checker.mlp_compliance")
from mlperf_logging.compliance_checker.mlp_parser import parse_file  # noqa: E402
from mlperf_logging.package_checker.power_checker import PowerChecker  # noqa: E402
from mlperf_logging.result_summarizer import result_summarizer  # noqa: E402
from mlperf_logging.system_desc_checker.system_desc_checker import (  # noqa: E402
    check_system_desc,
)

pytestmark = pytest.mark.slow
RULESET = load_ruleset("v1").mlcommons_ruleset  # "6.1.0": the ruleset file says which
COMMON = f"training_{RULESET}/common.yaml"
BENCH = "results/box/lm-dense-tiny"


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """Two seeds of lm-dense-tiny (simulated meter), packaged by ACME in the open division."""
    import os

    root = tmp_path_factory.mktemp("mlc")
    old = os.getcwd()
    os.chdir(root)
    try:
        common = ["meter=simulated", "progress=off", "benchmark.max_steps=100"]
        common += ["benchmark.target.threshold=9"]  # met at the first eval, step 50
        assert main(["run", "-m", "seed=1,2", *common, "benchmark.eval_every_steps=50"]) == 0
    finally:
        os.chdir(old)
    # by seed, as `package` numbers them (run_1 is seed 1, its view result_0): two runs that
    # start in the same second have directory names that sort by their random run id
    runs = sorted(
        (p.parent for p in root.glob("results/runs/*/*/*/result.json")),
        key=lambda d: json.loads((d / "result.json").read_text())["seed"],
    )
    device = json.loads((runs[0] / "result.json").read_text())["workload"]["device_name"]
    system = write_system(root / "box.json", device, 1)
    return runs, system, package_runs(runs, system, root / "sub")


def _check(log: Path) -> tuple[bool, list[str]]:
    mlp_compliance.enqueued_configs.clear()  # the checker keeps its queue in a module global
    checker = mlp_compliance.make_checker("training", RULESET, True, False)
    valid = checker.check_file(str(log), COMMON)
    return valid, [*checker.overwritable.values(), *checker.not_overwritable]


def _swap_benchmark(log: Path, out: Path, name: str) -> Path:
    lines = []
    for line in log.read_text().splitlines():
        record = json.loads(line[len(":::MLLOG ") :])
        if record["key"] == "submission_benchmark":
            record["value"] = name
            line = ":::MLLOG " + json.dumps(record)
        lines.append(line)
    out.write_text("\n".join(lines) + "\n")
    return out


def test_the_compliance_checker_objects_only_to_the_benchmark_name(packaged, tmp_path):
    _, _, sub = packaged
    log = sub / BENCH / "result_0.txt"
    # as packaged: the checker knows no rules file for joulebench's benchmark, and says only that
    mlp_compliance.enqueued_configs.clear()
    checker = mlp_compliance.make_checker("training", RULESET, True, False)
    with pytest.raises(FileNotFoundError, match="open_lm-dense-tiny.yaml"):
        checker.check_file(str(log), COMMON)
    assert list(checker.overwritable) == ["submission_benchmark"]
    assert [m.rsplit("/", 1)[1] for m in checker.not_overwritable] == ["open_lm-dense-tiny.yaml"]
    # named as an MLPerf open benchmark, the only rule left is that benchmark's accuracy target
    valid, messages = _check(_swap_benchmark(log, tmp_path / "llama.txt", "llama31_8b"))
    assert not valid
    assert messages == ["Failed checks for eval_accuracy : v['value'] < 1.0"]


def test_the_package_fills_in_the_submission_keys(packaged):
    runs, _, sub = packaged
    records = {}
    for line in (sub / BENCH / "result_1.txt").read_text().splitlines():
        record = json.loads(line[len(":::MLLOG ") :])
        records.setdefault(record["key"], record)
    assert records["submission_org"]["value"] == "ci"
    assert records["submission_division"]["value"] == "open"
    assert records["submission_platform"]["value"] == "box"
    run_log = (runs[1] / "mllog.txt").read_text()
    assert '"key": "submission_org", "value": ""' in run_log  # the run's own log is untouched


def test_the_system_file_passes_mlcommons_system_desc_checker(packaged, tmp_path):
    runs, _, sub = packaged
    valid, name, _, _ = check_system_desc(str(sub / "systems" / "box.json"), "training", RULESET)
    assert valid and name == "ci box"
    # an old-style description (integers, status "onprem") is put in MLCommons' schema
    legacy = json.loads((sub / "systems" / "box.json").read_text())
    legacy.update(status="onprem", number_of_nodes=1, accelerators_per_node=1)
    (tmp_path / "old.json").write_text(json.dumps(legacy))
    out = package_runs(runs, tmp_path / "old.json", tmp_path / "sub")
    desc = json.loads((out / "systems" / "old.json").read_text())
    assert desc["status"] == "Available on-premise" and desc["number_of_nodes"] == "1"
    assert check_system_desc(str(out / "systems" / "old.json"), "training", RULESET)[0]
    assert desc["pue"] == 1.0 and desc["power_meter_model"] == "simulated"  # ours kept


def test_a_system_file_missing_mlcommons_fields_is_refused_in_one_line(packaged, tmp_path):
    runs, system, _ = packaged
    desc = json.loads(system.read_text())
    del desc["cooling"], desc["host_storage_type"]
    (tmp_path / "short.json").write_text(json.dumps(desc))
    with pytest.raises(SubmissionError, match="host_storage_type, cooling") as err:
        package_runs(runs, tmp_path / "short.json", tmp_path / "sub")
    assert "joulebench system" in err.value.fix and not (tmp_path / "sub").exists()


def test_the_result_summarizer_gives_joulebench_energy(packaged):
    runs, _, sub = packaged
    folder = str(sub / BENCH)
    result_files = sorted(str(p) for p in (sub / BENCH).glob("result_*.txt"))
    assert [Path(f).name for f in result_files] == ["result_0.txt", "result_1.txt"]
    ok, errors = PowerChecker(RULESET).check_power(str(sub / BENCH / "power"), result_files)
    assert ok and errors == set()  # the package checker's power rules: one node file per run
    for n, path in enumerate(result_files):
        start, stop = result_summarizer._query_run_start_stop(parse_file(path, RULESET)[0])
        theirs = result_summarizer._compute_total_power(folder, path, stop - start, RULESET)
        ours = json.loads((runs[n] / "result.json").read_text())["metrics"]["energy_total_j"]
        assert theirs == pytest.approx(ours, rel=0.01)  # the bound
        # exactly: the view's edges are whole milliseconds, each off by at most 0.5 ms x 100 W
        assert abs(theirs - ours) <= 2 * 0.5e-3 * 100.0 + 1e-9
        node = (sub / BENCH / "power" / f"result_{n}" / "node_0.txt").read_text()
        assert node_log_energy_j(node, stop - start) == pytest.approx(theirs, rel=1e-12)


def test_node_log_energy_by_hand():
    def line(key, t, value=None):
        record = {"key": key, "time_ms": t, "value": value, "metadata": {"host": "n0"}}
        return ":::MLLOG " + json.dumps(record)

    text = "\n".join(
        [
            line("power_measurement_start", 1000),
            line("conversion_eff", 1000, 0.9),
            line("power_reading", 2000, 100.0),  # 100 W for 1 s
            line("power_reading", 2500, 300.0),  # 300 W for 0.5 s
            line("power_measurement_stop", 2500),
        ]
    )
    # (100 x 1 + 300 x 0.5) J = 250 J over 1.5 s, scaled to a 3 s time to train, x 0.9
    assert node_log_energy_j(text, 3000) == pytest.approx(450.0)
    with pytest.raises(ValueError, match="power_measurement_start"):
        node_log_energy_j(line("power_reading", 2000, 1.0), 1000)


def _mlc_rules(sub: Path) -> set[str]:
    return {r for r in validate_submission(sub).rule_ids() if r != "RUNS-001"}


def test_the_validator_catches_views_that_disagree(packaged, tmp_path):
    _, _, sub = packaged
    assert _mlc_rules(sub) == set()
    edited = copy_submission(sub, tmp_path / "a")
    node = edited / BENCH / "power" / "result_1" / "node_0.txt"
    lines = node.read_text().splitlines()
    for i, text in enumerate(lines):
        record = json.loads(text[len(":::MLLOG ") :])
        if record["key"] == "power_reading":
            record["value"] *= 1.1
            lines[i] = ":::MLLOG " + json.dumps(record)
    node.write_text("\n".join(lines) + "\n")
    report = validate_submission(edited)
    assert _mlc_rules(edited) == {"MLC-001"}
    (finding,) = [f for f in report.findings if f.rule == "MLC-001"]
    assert finding.file == f"{BENCH}/power/result_1" and "summarizer" in finding.message

    missing = copy_submission(sub, tmp_path / "b")
    (missing / BENCH / "result_0.txt").unlink()
    assert _mlc_rules(missing) == {"MLC-001"}
    extra = copy_submission(sub, tmp_path / "c")
    shutil.copy(extra / BENCH / "result_0.txt", extra / BENCH / "result_7.txt")
    assert _mlc_rules(extra) == {"MLC-001"}
    other = copy_submission(sub, tmp_path / "d")
    shutil.copy(other / BENCH / "result_0.txt", other / BENCH / "result_1.txt")
    assert _mlc_rules(other) == {"MLC-001"}  # run_2's copy holds run_1's log
    status = copy_submission(sub, tmp_path / "e")
    desc = json.loads((status / "systems" / "box.json").read_text())
    desc["status"] = "onprem"
    (status / "systems" / "box.json").write_text(json.dumps(desc))
    assert _mlc_rules(status) == {"MLC-002"}


def test_runs_of_two_frameworks_become_two_mlcommons_systems(packaged, tmp_path, monkeypatch):
    runs, system, _ = packaged
    monkeypatch.chdir(tmp_path)
    jax_run = tmp_path / "jax-run"
    args = ["run", "framework=jax", "meter=simulated", "progress=off", f"run_dir={jax_run}"]
    args += ["benchmark.target.threshold=9"]
    assert main([*args, "benchmark.max_steps=50", "benchmark.eval_every_steps=50"]) == 0
    sub = package_runs([*runs, jax_run], system, tmp_path / "sub")
    names = sorted(p.name for p in (sub / "systems").iterdir())
    assert names == ["box-jax.json", "box-torch.json", "box.json"]
    assert json.loads((sub / "systems" / "box-jax.json").read_text())["framework"].startswith(
        "jax "
    )
    assert (sub / "results/box-jax/lm-dense-tiny/result_0.txt").is_file()
    assert (sub / "results/box-torch/lm-dense-tiny/power/result_1/node_0.txt").is_file()
    assert _mlc_rules(sub) == set()


def test_submission_keys_are_checked_like_any_config(capsys):
    assert main(["run", "submission.division=semi", "meter=simulated"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "submission.division=semi is not closed or open" in err
    assert main(["run", "submission.status=onprem-ish", "meter=simulated"]) == 2
    assert "onprem, cloud, research, preview" in capsys.readouterr().err


def test_the_system_template_lists_what_to_fill_in(tmp_path, capsys):
    from harness.submission.ruleset import load_ruleset

    assert main(["system", "-o", str(tmp_path / "s.json")]) == 0
    template = json.loads((tmp_path / "s.json").read_text())
    fields = load_ruleset("v1").mlcommons_system_fields
    assert set(fields) <= set(template)
    assert all(isinstance(template[k], str) for k in fields)
    out = capsys.readouterr().out
    assert "Available on-premise; Available cloud" in out and "cooling" in out


def test_each_node_file_holds_its_own_nodes_total_by_hand(tmp_path):
    """Two nodes, counters at 100 W and 250 W for 2.5 s: node files of 250 J and 625 J, with a
    reading each second (the last one half a second), on the MLPerf clock of the run's log."""
    from harness.results.trace import TraceCurve
    from harness.submission.mlcommons import node_logs

    t0 = 5_000_000_000
    rows = ["t_ns,domain,watts,joules"]
    for i in range(0, 31):  # every 0.1 s from t0 - 0.25 s to t0 + 2.75 s
        t = t0 - 250_000_000 + i * 100_000_000
        s = (t - t0) / 1e9
        rows += [f"{t},node0/gpu:0,100,{100 * s + 1000}", f"{t},node1/gpu:0,250,{250 * s + 7}"]
    (tmp_path / "power.csv").write_text("\n".join(rows) + "\n")
    trace = TraceCurve.read(tmp_path / "power.csv")
    result = {
        "timing": {
            "anchor_utc": "2026-12-03T00:00:00.000000Z",
            "anchor_monotonic_ns": t0 - 1_000_000_000,  # run_start is 1 s after the anchor
            "run_start_ns": t0,
            "run_stop_ns": t0 + 2_500_000_000,
        },
        "meters": [],
        "distributed": {
            "nodes": [
                {"hostname": "a", "total_domains": ["node0/gpu:0"]},
                {"hostname": "b", "total_domains": ["node1/gpu:0"]},
            ]
        },
    }
    logs = node_logs(result, trace, host="unused")
    assert len(logs) == 2
    anchor_ms = 1_796_256_000_000  # 2026-12-03T00:00:00Z
    for log, watts, host in zip(logs, (100.0, 250.0), ("a", "b"), strict=True):
        records = [json.loads(line[len(":::MLLOG ") :]) for line in log.splitlines()]
        readings = [(r["time_ms"], r["value"]) for r in records if r["key"] == "power_reading"]
        start = anchor_ms + 1000
        assert readings == [
            (start + 1000, pytest.approx(watts)),
            (start + 2000, pytest.approx(watts)),
            (start + 2500, pytest.approx(watts)),
        ]
        assert records[0]["key"] == "power_measurement_start" and records[0]["time_ms"] == start
        assert (
            records[-1]["key"] == "power_measurement_stop"
            and records[-1]["time_ms"] == start + 2500
        )
        assert {r["metadata"]["host"] for r in records} == {host}
        assert node_log_energy_j(log, 2500) == pytest.approx(watts * 2.5)


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mlperf"


def _mlc002(desc: dict, tmp_path: Path) -> bool:
    """Whether joulebench's MLC-002 passes a native package's system file."""
    from harness.submission.mlcommons import check_view

    found = []
    check_view(tmp_path, [], {"box": desc}, load_ruleset("v1"), lambda rule, *a: found.append(rule))
    return "MLC-002" not in found


@pytest.mark.parametrize(
    ("source", "change"),
    [
        ("v5.0/Lenovo/systems/SR780aV3-8xB200_SXM_180GB.json", {}),  # a list for the stack
        ("v4.0/smc-ac-power/systems/8xSMC-H100-SXM-80GB.json", {}),  # an object; status "cloud"
        ("v4.0/smc-ac-power/systems/8xSMC-H100-SXM-80GB.json", {"status": "Available cloud"}),
        ("v5.0/Lenovo/systems/SR780aV3-8xB200_SXM_180GB.json", {"hw_notes": 7}),
        ("v5.0/Lenovo/systems/SR780aV3-8xB200_SXM_180GB.json", {"accelerators_per_node": 8}),
        ("v5.0/Lenovo/systems/SR780aV3-8xB200_SXM_180GB.json", {"cooling": None}),
    ],
)
def test_mlc002_agrees_with_mlcommons_checker_on_published_files(tmp_path, source, change):
    desc = {**json.loads((FIXTURES / source).read_text()), **change}
    if desc.get("cooling", "") is None:
        del desc["cooling"]
    path = tmp_path / "box.json"
    path.write_text(json.dumps(desc))
    try:
        theirs = check_system_desc(str(path), "training", RULESET)[0]
    except TypeError:  # their table join needs strings: a crash is a failed check
        theirs = False
    assert _mlc002(desc, tmp_path) == theirs


def test_published_view_files_are_never_stray(packaged, tmp_path):
    _, _, sub = packaged
    copy = copy_submission(sub, tmp_path / "sub")
    (copy / BENCH / "scaling.json").write_text('{"scaling_factor": 1.02}')
    rules = {(f.rule, f.file.rsplit("/", 1)[-1]) for f in validate_submission(copy).findings}
    assert not {r for r in rules if r[0] == "SUB-004"}
    (copy / BENCH / "result_4957-240509201759121706710_1.txt").write_text("")
    findings = validate_submission(copy).findings
    assert [f.rule for f in findings if f.file.endswith("_1.txt")] == [
        "MLC-001"
    ]  # no run, not stray
