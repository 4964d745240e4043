"""`joulebench agree`: MLPerf's meter-agreement test on replayed traces of two meters, hand-checked,
and the verdict file carried by a package and re-judged by validate."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from harness.cli import main
from harness.results import power_csv
from harness.submission.agreement import copy_into, olympic_mean
from harness.submission.validate import validate_submission

PHASES = {"idle": 300.0, "lm-dense-small": 1500.0, "lm-moe-small": 2000.0}
S = 1_000_000_000


def _trace(path, domain, watts, offset, seed):
    """330 s at 1 Hz from t = 1000 s: `watts` x (1 + offset), 1% noise, with a counter."""
    rng = np.random.default_rng(seed)
    t = (1000 + np.arange(331)) * S
    w = watts * (1 + offset) * (1 + 0.01 * rng.standard_normal(t.size))
    j = power_csv.cumulative_trapezoid_j(t, w)
    path.write_text(
        power_csv.HEADER
        + "".join(power_csv.row(int(a), domain, b, c) for a, b, c in zip(t, w, j, strict=True))
    )
    return path


def _phases(tmp_path, offset):
    args = []
    for k, (name, watts) in enumerate(PHASES.items()):
        ref = _trace(tmp_path / f"{name}-ptd.csv", "node:wall", watts, 0.0, 2 * k)
        cand = _trace(tmp_path / f"{name}-bmc.csv", "node:bmc", watts, offset, 2 * k + 1)
        args += ["--phase", name, str(ref), str(cand)]
    return args


def _agree(tmp_path, offset, out):
    return main(
        [
            "agree",
            *_phases(tmp_path, offset),
            "--reference",
            "ptdaemon",
            "--candidate",
            "redfish",
            "-o",
            str(out),
        ]
    )


def test_olympic_mean_by_hand():
    assert olympic_mean([0.01, 0.02, 0.10, -0.05, 0.03]) == pytest.approx(0.02)


def test_a_meter_three_percent_off_agrees_and_seven_percent_off_does_not(tmp_path, capsys):
    assert _agree(tmp_path, 0.03, tmp_path / "ok") == 0
    doc = json.loads((tmp_path / "ok" / "agreement.json").read_text())
    assert doc["verdict"] == "pass" and doc["windows"] == 5 and doc["window_s"] == 60
    for phase in doc["phases"]:
        assert len(phase["windows"]) == 5 and phase["agrees"]
        assert phase["olympic_candidate_over_reference"] == pytest.approx(0.03, abs=0.003)
        w = phase["windows"][0]  # 60 s at the phase's power, by hand
        assert w["reference_j"] == pytest.approx(60 * PHASES[phase["name"]], rel=0.01)
        assert w["t1_ns"] - w["t0_ns"] == 60 * S
    assert _agree(tmp_path, 0.07, tmp_path / "bad") == 1
    bad = json.loads((tmp_path / "bad" / "agreement.json").read_text())
    assert bad["verdict"] == "fail" and len(bad["problems"]) == 3
    out = capsys.readouterr().out
    assert "DISAGREES" in out and "meter agreement fail" in out


def test_too_short_an_overlap_is_one_line_exit_2(tmp_path, capsys):
    ref = _trace(tmp_path / "r.csv", "node:wall", 300.0, 0.0, 1)
    lines = ref.read_text().splitlines()[:200]
    ref.write_text("\n".join(lines) + "\n")
    cand = _trace(tmp_path / "c.csv", "node:bmc", 300.0, 0.0, 2)
    code = main(
        [
            "agree",
            "--phase",
            "idle",
            str(ref),
            str(cand),
            "--reference",
            "a",
            "--candidate",
            "b",
            "-o",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "overlap for 198.0 s" in err and not (tmp_path / "o").exists()


def test_the_verdict_file_validates_in_a_package_and_tampering_is_caught(tiny_package, tmp_path):
    _, _, submission = tiny_package
    assert _agree(tmp_path, 0.03, tmp_path / "ok") == 0
    base = validate_submission(submission).rule_ids()
    sub = tmp_path / "sub"
    shutil.copytree(submission, sub)
    copy_into(tmp_path / "ok", sub)
    assert validate_submission(sub).rule_ids() == base  # no AGREE finding

    trace = sub / "agreement" / "traces" / "idle-candidate.csv"
    trace.write_text(trace.read_text().replace(",node:bmc,3", ",node:bmc,4", 1))
    assert "AGREE-001" in validate_submission(sub).rule_ids()

    shutil.rmtree(sub / "agreement")
    copy_into(tmp_path / "ok", sub)
    doc_path = sub / "agreement" / "agreement.json"
    doc = json.loads(doc_path.read_text())
    doc["phases"][1]["windows"][2]["candidate_j"] *= 0.9
    doc_path.write_text(json.dumps(doc))
    assert "AGREE-001" in validate_submission(sub).rule_ids()

    assert _agree(tmp_path, 0.07, tmp_path / "bad") == 1
    shutil.rmtree(sub / "agreement")
    copy_into(tmp_path / "bad", sub)
    report = validate_submission(sub)
    assert "AGREE-002" in report.rule_ids() and "AGREE-001" not in report.rule_ids()
