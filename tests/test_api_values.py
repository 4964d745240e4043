"""Measurement's Python settings are merged as values, never rendered into override strings."""

from __future__ import annotations

import pytest

from harness.api import Measurement
from harness.errors import ConfigError


def test_a_string_with_a_comma_and_a_boolean_looking_string_stay_what_they_are(tmp_path):
    # as override strings, "site A, 2025" was a list ("Ambiguous value") and "true" became 'True'
    m = Measurement(
        "mine",
        "simulated",
        tmp_path / "r",
        carbon={"pue_source": "site A, 2025", "pue": 1.25},
        config={"meter": {"watts": 50.0}, "submission": {"org": "true"}},
    )
    assert m.cfg.carbon.pue_source == "site A, 2025"
    assert m.cfg.carbon.pue == 1.25
    assert m.cfg.meter.watts == 50.0
    assert m.cfg.submission.org == "true"


def test_a_group_option_by_name_still_picks_its_file(tmp_path):
    m = Measurement("mine", "simulated", tmp_path / "r", config={"carbon": "hyperscale"})
    assert m.cfg.carbon.pue == pytest.approx(1.10)  # configs/carbon/hyperscale.yaml


@pytest.mark.parametrize(
    ("carbon", "said"),
    [({"nonsense": 1}, "Key 'nonsense' not in 'CarbonConfig'"), ({"pue": "high"}, "'high'")],
)
def test_a_wrong_value_is_one_config_error(tmp_path, carbon, said):
    with pytest.raises(ConfigError, match=said):
        Measurement("mine", "simulated", tmp_path / "r", carbon=carbon)


def test_counts_a_loop_reports_are_means_and_a_varying_count_is_said(tmp_path):
    import json

    with Measurement("mine", "simulated", tmp_path / "r", window_steps=2) as m:
        for tokens in (100, 200, 100, 200):  # mean 150 tokens a step
            m.step(tokens=tokens, flops=300.0 * tokens)  # 300 FLOPs a token
    r = json.loads((tmp_path / "r" / "result.json").read_text())
    assert r["workload"]["tokens_per_step"] == 150
    # the FLOPs reported over the 4 steps, per step, per token of the mean step: 300 * 150 / 150
    assert r["workload"]["flops_per_token"] == pytest.approx(300.0)
    assert any("tokens per step varied" in w and "150" in w for w in r["warnings"])
