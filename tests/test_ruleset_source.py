"""The ruleset is the one source: scores, pairs and the validator read it; runs name it."""

from __future__ import annotations

import dataclasses

import pytest

from harness.cli import main
from harness.submission import compare, score
from harness.submission import ruleset as ruleset_module


def _runs(values):
    return [
        {
            "benchmark": "b", "seed": i, "workload": {"framework": "torch"},
            "system": {"accelerator": {"model": "x"}}, "_path": f"/r/{i}",
            "metrics": {"reached_target": True, "energy_to_target_j": v},
            "timing": {"time_to_target_s": v},
        }
        for i, v in enumerate(values)
    ]  # fmt: skip


@pytest.fixture
def trim_two(monkeypatch):
    """A ruleset whose olympic trim is 2 (v1's is 1)."""
    real = ruleset_module.load_ruleset

    def load(ruleset_id="v1"):
        return dataclasses.replace(real(ruleset_id), olympic_trim=2)

    monkeypatch.setattr(ruleset_module, "load_ruleset", load)


def test_the_olympic_trim_comes_from_the_ruleset(trim_two):
    values = [10.0, 20.0, 30.0, 40.0, 1000.0, 1.0, 35.0]
    # 1, 10, 20, 30, 35, 40, 1000 with two dropped at each end: 20, 30, 35
    kept = score.kept_by_time(_runs(values))
    assert sorted(r["timing"]["time_to_target_s"] for r in kept) == [20.0, 30.0, 35.0]
    assert compare.trimmed(values) == [20.0, 30.0, 35.0]


def test_v1_trims_one_of_five():
    assert compare.trimmed([5.0, 1.0, 3.0, 2.0, 4.0]) == [2.0, 3.0, 4.0]
    assert compare.trimmed([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]  # below five runs, none dropped


def test_validate_prints_the_rule_ids_and_their_meanings(capsys):
    assert main(["validate", "--rules"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("DIV-002") and "meter source" in line for line in out)
    assert len(out) == len(ruleset_module.load_ruleset("v1").rule_ids)


def test_a_run_names_its_ruleset_and_an_unknown_one_is_a_config_error(in_tmp, capsys):
    from tests.helpers import load_result

    common = ["run", "meter=simulated", "benchmark.max_steps=20", "progress=off"]
    assert main([*common, "submission.ruleset=v9", "run_dir=bad"]) == 2
    assert "submission.ruleset" in capsys.readouterr().err
    assert main([*common, "benchmark.target.threshold=9", "run_dir=r"]) == 0
    assert load_result(in_tmp / "r")["ruleset"] == "v1"
