"""Config composition through Hydra, the structured schema, and one-line errors with exit 2."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.compose import compose_config, expand_sweeps
from harness.config import JoulebenchConfig
from harness.errors import ConfigError


def test_defaults_compose_to_the_typed_schema():
    cfg, dict_cfg = compose_config([])
    assert isinstance(cfg, JoulebenchConfig)
    assert cfg.benchmark.name == "lm-dense-tiny"
    assert cfg.framework.name == "torch"
    assert cfg.meter.source == "auto"
    assert cfg.carbon.region == "world" and cfg.carbon.intensity_g_per_kwh is None
    assert dict_cfg.benchmark.model.d_model == cfg.benchmark.model.d_model


def test_overrides_reach_nested_keys_and_groups():
    cfg, _ = compose_config(
        ["meter=simulated", "meter.watts=250", "benchmark.max_steps=7", "seed=3"]
    )
    assert (cfg.meter.source, cfg.meter.watts, cfg.benchmark.max_steps, cfg.seed) == (
        "simulated",
        250.0,
        7,
        3,
    )


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("benchmark=nope", "benchmark=nope does not exist"),
        ("meter.watts=-5", "meter.watts=-5.0 must be > 0"),
        ("meter.foo=1", "Key 'foo' not in 'MeterConfig'"),
        ("meter.watts=abc", "could not be converted"),
        ("benchmark.eval_every_steps=15", "multiple of benchmark.window_steps"),
        ("carbon.pue=0.9", "carbon.pue=0.9 must be >= 1.0"),
        ("framework.precision=fp8", "framework.precision=fp8 is unknown"),
    ],
)
def test_bad_config_is_one_config_error(override, needle):
    with pytest.raises(ConfigError) as info:
        compose_config([override])
    assert needle in info.value.one_line()
    assert "\n" not in info.value.one_line()


@pytest.mark.parametrize(
    "override", ["benchmark=nope", "meter.watts=-5", "meter.foo=1", "seed=1,2"]
)
def test_cli_prints_one_line_and_exits_2(override, capsys, in_tmp):
    assert main(["run", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("joulebench: config error: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (in_tmp / "results").exists()  # nothing written for a rejected config


def test_missing_option_lists_the_choices(capsys):
    main(["run", "meter=nvml-nope"])
    assert (
        "choose one of: amdsmi, auto, cpu-model, hlml, intel-hwmon, ipmi, nvml, ptdaemon, rapl, "
        "redfish, replay, simulated, tpu" in capsys.readouterr().err
    )


def test_sweeps_expand_to_the_cartesian_product():
    assert expand_sweeps(["seed=1,2", "meter=simulated", "benchmark.max_steps=10,20"]) == [
        ["seed=1", "meter=simulated", "benchmark.max_steps=10"],
        ["seed=1", "meter=simulated", "benchmark.max_steps=20"],
        ["seed=2", "meter=simulated", "benchmark.max_steps=10"],
        ["seed=2", "meter=simulated", "benchmark.max_steps=20"],
    ]
    assert expand_sweeps([]) == [[]]


def test_print_config_shows_resolved_yaml(capsys):
    assert main(["run", "--print-config", "meter=simulated", "meter.watts=42"]) == 0
    out = capsys.readouterr().out
    assert "watts: 42.0" in out and "name: lm-dense-tiny" in out


def _choice_fields(node_type, path=""):
    """(dotted key, options) of every field declared with harness.config.choice."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(node_type)
    for f in dataclasses.fields(node_type):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _choice_fields(hints[f.name], f"{path}{f.name}.")
        elif "choices" in f.metadata:
            yield f"{path}{f.name}", f.metadata


CHOICES = sorted(_choice_fields(JoulebenchConfig), key=lambda kv: kv[0])


def test_choices_are_declared_on_their_fields():
    keys = {k for k, _ in CHOICES}
    assert {"benchmark.model.kind", "framework.precision", "submission.status", "progress"} <= keys
    assert len(CHOICES) == 15


@pytest.mark.parametrize("key,meta", CHOICES, ids=[k for k, _ in CHOICES])
def test_every_declared_choice_is_enforced(key, meta):
    """A value outside a field's options is one ConfigError naming the field, its rule and a
    fix that lists the options, whichever field it is."""
    with pytest.raises(ConfigError) as err:
        compose_config([f"{key}=bogus"])
    text = err.value.one_line()
    assert f"{meta['key'] or key}=bogus {meta['rule']}" in text
    assert all(option in text for option in meta["choices"] if option != "external")
