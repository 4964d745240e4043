"""`joulebench import mlperf` judged by MLCommons' own result summarizer, on files cut from the
published Apache-2.0 rounds (tests/fixtures/mlperf/SOURCES.md): every run's energy, the benchmark
score, then validate, score, report, recost and compare on the imports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.cli import main
from harness.imports.mlperf import import_mlperf
from harness.submission.score import load_results, scores
from harness.submission.validate import validate_submission

rs = pytest.importorskip("mlperf_logging.result_summarizer.result_summarizer")
from mlperf_logging.compliance_checker.mlp_parser import parse_file  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mlperf"
SMC = FIXTURES / "v4.0" / "smc-ac-power"
LENOVO = FIXTURES / "v5.0" / "Lenovo"
RETINANET = LENOVO / "results" / "SR780aV3-8xB200_SXM_180GB" / "retinanet"
A9F4839 = json.loads((FIXTURES / "expected_a9f4839.json").read_text())


@pytest.fixture(scope="module")
def imports(tmp_path_factory):
    root = tmp_path_factory.mktemp("imports")
    import_mlperf(SMC, root / "smc", "4.0", basis="AC", region="AUS", pue=1.1)
    import_mlperf(LENOVO, root / "lenovo", "5.0")
    return root / "smc", root / "lenovo"


def _by_log(out: Path) -> dict[str, dict]:
    """Imported results by the published log's path below its repository (as the summarizer's
    reference keys them)."""
    found = {}
    for r in load_results([out]):
        files = r["meters"][0]["details"]["files"]
        found[next(k for k in files if k.endswith("/" + r["imported"]["result_file"]))] = r
    return found


def _summarizer(folder: Path, log: Path, ruleset: str) -> float:
    start, stop = rs._query_run_start_stop(parse_file(str(log), ruleset)[0])
    return rs._compute_total_power(str(folder), str(log), stop - start, ruleset)


def test_v40_runs_equal_the_rule_v40_was_scored_by(imports):
    """mlcommons/logging a9f4839's figures (recorded by scripts/mlperf_reference.py), to 1e-9."""
    smc, _ = imports
    ours = _by_log(smc)
    assert set(ours) == set(A9F4839["runs"]) and len(ours) == 5
    for key, theirs in A9F4839["runs"].items():
        assert ours[key]["metrics"]["energy_total_j"] == pytest.approx(theirs["energy_j"], rel=1e-9)
        assert ours[key]["timing"]["duration_s"] == pytest.approx(theirs["time_to_train_ms"] / 1e3)


def test_v50_runs_equal_todays_summarizer(imports):
    _, lenovo = imports
    ours = _by_log(lenovo)
    assert len(ours) == 5
    for n in range(5):
        theirs = _summarizer(RETINANET, RETINANET / f"result_{n}.txt", "5.0.0")
        key = f"Lenovo/results/SR780aV3-8xB200_SXM_180GB/retinanet/result_{n}.txt"
        assert ours[key]["metrics"]["energy_total_j"] == pytest.approx(theirs, rel=1e-9)
        assert ours[key]["imported"]["basis"] == "AC x efficiency"  # conversion_eff 0.94, AC


def test_the_rules_differ_only_where_the_rounds_did(imports):
    """SMC's ssd run logs power_measurement_stop at _start in all 8 node files: today's summarizer
    divides by zero, the v4.0 rule scores it; where a file is in order, the two agree."""
    folder = SMC / "results" / "8xSMC-H100-SXM-80GB"
    with pytest.raises(ZeroDivisionError):
        _summarizer(
            folder / "ssd", folder / "ssd" / "result_4957-240509201759121706710_2.txt", "4.0.0"
        )
    smc, _ = imports
    ours = _by_log(smc)
    for name in ("result_5742-240517053836692164828_5", "result_5742-240517053836692164828_9"):
        log = folder / "llama2_70b_lora" / f"{name}.txt"
        key = f"smc-ac-power/results/8xSMC-H100-SXM-80GB/llama2_70b_lora/{name}.txt"
        today = _summarizer(folder / "llama2_70b_lora", log, "4.0.0")
        assert ours[key]["metrics"]["energy_total_j"] == pytest.approx(today, rel=1e-9)


def test_the_score_equals_the_summarizers_with_its_scaling(tmp_path):
    """retinanet's five whole logs pass MLCommons' compliance checker, so the summarizer scores
    the benchmark (olympic over the time ranking, x scaling.json); joulebench's score is equal."""
    org = tmp_path / "Lenovo"
    shutil.copytree(LENOVO, org)
    bench = org / "results" / "SR780aV3-8xB200_SXM_180GB" / "retinanet"
    (bench / "scaling.json").write_text('{"scaling_factor": 1.0377}')
    _, theirs, factor = rs._compute_strong_score_standalone(
        "retinanet", "SR780aV3-8xB200_SXM_180GB", True, str(bench), "training", "5.0.0"
    )
    assert factor == 1.0377 and theirs is not None
    import_mlperf(org, tmp_path / "out", "5.0")
    (row,) = scores(load_results([tmp_path / "out"]))
    assert row.energy_to_target_j == pytest.approx(theirs, rel=1e-9)
    assert row.scaling_factor == 1.0377 and len(row.kept_seeds) == 3


def test_what_the_import_records(imports):
    smc, _ = imports
    r = _by_log(smc)[
        "smc-ac-power/results/8xSMC-H100-SXM-80GB/ssd/result_4957-240509201759121706710_2.txt"
    ]
    meter = r["meters"][0]
    assert (meter["name"], meter["method"], meter["provenance"]) == (
        "mlperf-import",
        "wall-meter",
        "measured",
    )
    assert (
        meter["details"]["meter"] == "undeclared" and meter["details"]["rule"] == "logging-a9f4839"
    )
    assert meter["domains"] == [f"node{k}/node:wall" for k in range(8)]
    assert len(meter["details"]["stop_equals_start"]) == 8  # named in the result, and warned of
    assert any("takes the latest reading as the stop" in w for w in r["warnings"])
    llama = _by_log(smc)[
        "smc-ac-power/results/8xSMC-H100-SXM-80GB/llama2_70b_lora/result_5742-240517053836692164828_5.txt"
    ]
    assert llama["meters"][0]["domains"] == [f"node{k}/node:wall" for k in range(1, 9)]  # as named
    assert r["imported"]["switch_basis"] == "estimated" and r["imported"]["basis"] == "AC raw"
    by_domain = r["metrics"]["energy_by_domain_j"]
    assert sum(by_domain.values()) == pytest.approx(r["metrics"]["energy_total_j"], rel=1e-12)
    switch = by_domain["sw0/switch:estimated"]
    assert switch == pytest.approx(meter["details"]["switch_estimate_w"]["sw0/switch:estimated"]
                                   * r["timing"]["duration_s"], rel=1e-12)  # fmt: skip
    assert r["carbon"]["pue"] == 1.1 and r["carbon"]["location_based"]["region"] == "AUS"
    lb = r["carbon"]["location_based"]
    assert lb["kg_co2e"] == pytest.approx(
        r["metrics"]["energy_total_j"] / 3.6e6 * 1.1 * lb["intensity_g_per_kwh"] / 1e3
    )
    assert r["timing"]["clock"] == "utc_epoch_ns" and r["metrics"]["energy_window_j"] > 0
    dlrm = _by_log(smc)[
        "smc-ac-power/results/1xSMC-H100-SXM-80GB/dlrm_dcnv2/result_4952-240509201759124491233_08.txt"
    ]
    assert "the log records no seed" in " ".join(dlrm["warnings"])


def _findings(report, rule):
    return [f for f in report.findings if f.rule == rule]


def test_validate_reports_the_trust_facts_with_their_numbers(imports):
    smc, lenovo = imports
    report = validate_submission(lenovo)
    assert report.valid, [f for f in report.findings if f.severity == "error"]
    rates = _findings(report, "IMP-001")
    assert len(rates) == 5 and all(f.severity == "warning" for f in rates)
    assert all(f.message.startswith("0.94") for f in rates)  # 0.95 Hz, under MLPerf's 1 Hz
    cover = _findings(report, "IMP-002")  # node files cut to 300 readings: 23.5% of the run
    assert len(cover) == 5 and all(
        f.severity == "warning" and "cover 23." in f.message for f in cover
    )
    report = validate_submission(smc)
    errors = {f.rule for f in report.findings if f.severity == "error"}
    assert errors == {"TRACE-008", "RUNS-001"}  # the ssd run's node2 and node5 read -9 to -43 W
    counts = {f.file.split("/")[2]: f.message for f in _findings(report, "RUNS-001")}
    assert (
        counts["llama2_70b_lora"]
        == "2 runs; MLPerf Training (llama2_70b_lora, ruleset v1) needs 10."
    )
    assert counts["ssd"] == "1 runs; MLPerf Training (ssd, ruleset v1) needs 5."
    (same,) = [f for f in _findings(report, "IMP-004") if "/ssd/" in f.file]
    assert "8 of 8 node files" in same.message and "logging-a9f4839" in same.message
    (estimate,) = [f for f in _findings(report, "IMP-005") if "ssd" in f.file]
    assert estimate.severity == "info" and "16100 W" in estimate.message
    twins = [f.message for f in _findings(report, "IMP-006")]
    assert any("byte-identical" in m for m in twins)  # nodes of one run, copies of each other
    assert any("same node files as result_4952-240509201759124491233_08.txt" in m for m in twins)
    placeholders = _findings(report, "IMP-007")
    assert any("submission_org" in f.message for f in placeholders)
    assert any("'cloud'" in f.message for f in placeholders)  # the system's status
    assert not _findings(report, "MLC-002")  # MLCommons' checker takes an object stack too


def test_the_cli_validates_an_import_to_json(imports, tmp_path, capsys):
    _, lenovo = imports
    assert main(["validate", str(lenovo), "--json", str(tmp_path / "f.json")]) == 0
    findings = json.loads((tmp_path / "f.json").read_text())["findings"]
    rules = {f["rule"] for f in findings}
    assert {"IMP-001", "IMP-002", "IMP-003"} <= rules
    assert "VALID" in capsys.readouterr().out


def test_a_changed_published_file_fails_mlc001(imports, tmp_path):
    _, lenovo = imports
    sub = tmp_path / "sub"
    shutil.copytree(lenovo, sub)
    node = sub / "results/SR780aV3-8xB200_SXM_180GB/retinanet/power/result_2/node_0.txt"
    node.write_text(node.read_text().replace('"value": 10148.0', '"value": 20148.0', 1))
    messages = [f.message for f in _findings(validate_submission(sub), "MLC-001")]
    assert any("differs from the file the import read" in m for m in messages)
    assert any("energy_total_j" in m and "mlperf-logging-4.1" in m for m in messages)


def test_score_report_recost_and_compare_on_imports(imports, tmp_path, capsys):
    smc, lenovo = imports
    assert main(["score", str(smc), str(lenovo)]) == 0
    out = capsys.readouterr()
    assert "energy bases" in out.err and "AC x efficiency; switch none" in out.out
    assert main(["report", str(smc), str(lenovo), "-o", str(tmp_path / "r")]) == 0
    summary = (tmp_path / "r" / "summary.md").read_text()
    assert "## Imported results" in summary and "AUS, PUE 1.1" in summary
    assert (tmp_path / "r" / "energy_vs_time.png").stat().st_size > 10_000
    capsys.readouterr()
    run = next((lenovo / "results").glob("*/retinanet/*/run_1"))
    assert main(["recost", str(run), "--region", "FRA", "--pue", "1.25", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    energy = json.loads((run / "result.json").read_text())["metrics"]["energy_total_j"]
    assert row["facility_energy_kwh"] == pytest.approx(energy / 3.6e6 * 1.25)
    assert row["location_kg_co2e"] == pytest.approx(
        row["facility_energy_kwh"] * row["intensity_g_per_kwh"] / 1e3
    )
    assert main(["compare", str(lenovo), str(lenovo)]) in (0, 4)


def _log(lines: list[tuple], prefix: str = "") -> str:
    out = []
    for key, t, value, meta in lines:
        record = {"namespace": "", "time_ms": t, "event_type": "POINT_IN_TIME", "key": key,
                  "value": value, "metadata": meta}  # fmt: skip
        out.append(prefix + ":::MLLOG " + json.dumps(record))
    return "\n".join(out) + "\n"


def _synthetic_org(root: Path, offset_ms: int) -> Path:
    """Dell's shape (v4.1, no licence, so made here): two nodes at 1 Hz with an AC conversion
    efficiency, and a switch measured on a clock `offset_ms` off the run's."""
    org = root / "Acme"
    desc = {k: "N/A" for k in load_ruleset_fields()}
    desc.update(submitter="Acme", division="closed", status="Available on-premise",
                system_name="2xBox", number_of_nodes="2", accelerators_per_node="8",
                accelerator_model_name="NVIDIA H100-SXM5-80GB", framework="NGC PyTorch 24.09",
                other_software_stack=[{"cuda_driver_version": "550.90.12"}])  # fmt: skip
    (org / "systems").mkdir(parents=True)
    (org / "systems" / "2xBox.json").write_text(json.dumps(desc))
    bench = org / "results" / "2xBox" / "llama2_70b_lora"
    power = bench / "power" / "result_0"
    power.mkdir(parents=True)
    t0 = 1_728_509_259_000
    (bench / "result_0.txt").write_text(_log([
        ("submission_benchmark", t0 - 5000, "llama2_70b_lora", {}),
        ("submission_org", t0 - 5000, "Acme", {}),
        ("seed", t0 - 5000, 1234, {}),
        ("run_start", t0 + 500, None, {}),
        ("eval_accuracy", t0 + 50_000, 0.95, {"samples_count": 1536}),
        ("eval_accuracy", t0 + 100_000, 0.92, {"samples_count": 3072}),
        ("run_stop", t0 + 100_500, 0.92, {"status": "success"}),
    ], prefix="0: "))  # fmt: skip
    for k, watts in enumerate((5000.0, 6000.0)):
        lines = [("power_measurement_start", t0, None, {}),
                 ("conversion_eff", t0, 0.96, {"measurement_type": "AC"})]  # fmt: skip
        lines += [
            ("power_reading", t0 + 1000 * i, watts, {"host": f"node_{k}"}) for i in range(1, 102)
        ]
        lines.append(("power_measurement_stop", t0 + 101_000, None, {}))
        (power / f"node_{k}.txt").write_text(_log(lines))
    sw = [("power_measurement_start", t0 + offset_ms, None, {})]
    sw += [("power_reading", t0 + offset_ms + 1000 * i, 700.0, {}) for i in range(1, 102)]
    (power / "sw_0.txt").write_text(_log(sw))
    return org


def load_ruleset_fields():
    from harness.submission.ruleset import load_ruleset

    return load_ruleset("v1").mlcommons_system_fields


def test_a_measured_switch_on_another_clock(tmp_path):
    org = _synthetic_org(tmp_path, offset_ms=-5 * 3600 * 1000 + 20)  # 5 h off, as Dell's was
    import_mlperf(org, tmp_path / "out", "4.1")
    (r,) = load_results([tmp_path / "out"])
    # each node: 0.96 x sum(W x 1 s over 101 s of readings) x 100 s / 101 s; the switch counts 0
    by_hand = sum(0.96 * w * 101 * 100.0 / 101 for w in (5000.0, 6000.0))
    assert r["metrics"]["energy_total_j"] == pytest.approx(by_hand, rel=1e-12)
    bench = org / "results" / "2xBox" / "llama2_70b_lora"  # the v4.1 summarizer agrees
    theirs = _summarizer(bench, bench / "result_0.txt", "4.1.0")
    assert r["metrics"]["energy_total_j"] == pytest.approx(theirs, rel=1e-9)
    assert r["imported"]["switch_basis"] == "measured-not-counted"
    assert (
        r["imported"]["basis"] == "AC x efficiency"
        and r["system"]["accelerator"]["driver"] == "550.90.12"
    )
    beside = r["meters"][1]
    assert beside["role"] == "beside" and beside["details"]["clock_offset_s"] == {
        "sw0/switch:wall": 18000.0
    }
    # the nodes' trace over the run where read: the first reading comes 0.5 s after run_start
    assert r["metrics"]["energy_window_j"] == pytest.approx(99.5 * 11000.0)
    assert r["metrics"]["energy_by_domain_j"]["sw0/switch:wall"] == 0.0
    report = validate_submission(tmp_path / "out")
    (switch,) = _findings(report, "IMP-005")
    assert switch.severity == "warning" and "+5.000 h off the run's" in switch.message
    assert "mean 700 W: about 70,000 J over the run" in switch.message
    assert {f.rule for f in report.findings if f.severity == "error"} == {"RUNS-001"}


def test_the_import_says_what_it_is_not_told(tmp_path):
    org = _synthetic_org(tmp_path, offset_ms=0)
    with pytest.raises(Exception, match="contradicts the node files' measurement_type AC"):
        import_mlperf(org, tmp_path / "out", "4.1", basis="DC")
    with pytest.raises(Exception, match="unknown|not in"):
        import_mlperf(org, tmp_path / "out", "4.1", region="Atlantis")
    import_mlperf(org, tmp_path / "out", "4.1")
    (r,) = load_results([tmp_path / "out"])
    assert (
        r["carbon"]["pue_source"].startswith("default 1.0")
        and r["carbon"]["location_based"]["region"] == "world"
    )
    assert any("give --pue" in w for w in r["warnings"]) and any(
        "--region" in w for w in r["warnings"]
    )
    assert r["imported"]["switch_basis"] == "measured-not-counted"
    assert r["meters"][1]["details"]["clock_offset_s"] == {}  # on the run's clock already


def test_a_switch_file_without_readings_or_estimate_counts_zero(tmp_path):
    """The summarizer adds such a file as 0 J; the import keys it as the validator re-derives it."""
    org = _synthetic_org(tmp_path, offset_ms=0)
    sw = org / "results" / "2xBox" / "llama2_70b_lora" / "power" / "result_0" / "sw_0.txt"
    sw.write_text(_log([("power_measurement_start", 0, None, {})]))
    import_mlperf(org, tmp_path / "out", "4.1")
    (r,) = load_results([tmp_path / "out"])
    assert r["metrics"]["energy_by_domain_j"]["sw0/switch:wall"] == 0.0
    assert r["imported"]["switch_basis"] == "none" and len(r["meters"]) == 1
    assert not _findings(validate_submission(tmp_path / "out"), "MLC-001")
