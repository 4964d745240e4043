"""Composition: Hydra's config tree (configs/) and its overrides into one typed JoulebenchConfig,
checked (harness/config_checks.py), and sweeps expanded into jobs. The schema is
harness/config.py; this is the only module that talks to Hydra's compose API.
"""

from __future__ import annotations

import itertools
import types
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.config import JoulebenchConfig
from harness.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
PRIMARY_CONFIG = "joulebench"


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="joulebench_schema", node=JoulebenchConfig)


def group_options(group: str) -> list[str]:
    folder = CONFIG_DIR / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _explain_hydra_error(exc: Exception, overrides: list[str]) -> ConfigError:
    """Turn a Hydra/OmegaConf exception into one actionable ConfigError."""
    from hydra.errors import MissingConfigException

    if isinstance(exc, MissingConfigException):
        missing = str(getattr(exc, "missing_cfg_file", "") or "")
        group, _, option = missing.rpartition("/")
        if group:
            choices = ", ".join(group_options(group)) or "(none)"
            return ConfigError(
                f"{group}={option} does not exist.", f"choose one of: {choices} (configs/{group}/)."
            )
    first_line = next(
        (line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__
    )
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        first_line = str(cause).strip().splitlines()[0]
    return ConfigError(
        f"{first_line} (overrides: {' '.join(overrides) or 'none'}).",
        "check the key names and types; `joulebench run --print-config` shows every key and its value.",
    )


def _unknown_keys(node: DictConfig, cls: type, prefix: str = "") -> list[str]:
    """Keys of `node` that the dataclass `cls` (and its nested dataclasses) does not declare:
    Hydra adds `+key=value` overrides even to a typed config, so they would pass unread."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    unknown = []
    for key in node:
        if key not in hints:
            unknown.append(f"{prefix}{key}")
            continue
        kind = hints[key]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        child = node._get_node(key)
        if (
            dataclasses.is_dataclass(kind)
            and isinstance(child, DictConfig)
            and not child._is_missing()
        ):
            unknown += _unknown_keys(child, kind, f"{prefix}{key}.")
    return unknown


def compose_config(
    overrides: list[str], values: dict | None = None
) -> tuple[JoulebenchConfig, DictConfig]:
    """Compose configs/ with `overrides` (Hydra's strings, as on the command line), merge
    `values` (Python values from the API, kept as the values they are), check types and
    values, return (object, DictConfig)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf.errors import OmegaConfBaseException

    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            config_dir=str(CONFIG_DIR), version_base="1.3", job_name="joulebench"
        ):
            dict_cfg = compose(config_name=PRIMARY_CONFIG, overrides=list(overrides))
        if values:
            dict_cfg = OmegaConf.merge(dict_cfg, values)
        unknown = _unknown_keys(dict_cfg, JoulebenchConfig)
        if unknown:
            raise ConfigError(
                f"{', '.join(unknown)} is not a joulebench setting (added with +).",
                "drop it, or check its spelling: `joulebench run --print-config` shows every key.",
            )
        OmegaConf.resolve(dict_cfg)
        obj = OmegaConf.to_object(dict_cfg)
    except ConfigError:
        raise
    except (OmegaConfBaseException, ValueError, TypeError, KeyError, OSError) as exc:
        raise _explain_hydra_error(exc, overrides) from exc
    except Exception as exc:  # Hydra's own exceptions have no common public base
        if type(exc).__module__.startswith(("hydra", "omegaconf")):
            raise _explain_hydra_error(exc, overrides) from exc
        raise
    finally:
        GlobalHydra.instance().clear()
    assert isinstance(obj, JoulebenchConfig)
    from harness.config_checks import validate

    validate(obj)
    return obj, dict_cfg


def expand_sweeps(overrides: list[str]) -> list[list[str]]:
    """Expand `key=a,b` sweep overrides into the Cartesian product of jobs, as Hydra's basic sweeper does."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
    except OverrideParseException as exc:
        raise ConfigError(
            f"cannot parse overrides: {str(exc).splitlines()[0]}.",
            "write overrides as key=value, sweeps as key=a,b,c.",
        ) from exc
    axes: list[list[str]] = []
    for override in parsed:
        if override.is_sweep_override():
            if (
                override.value_type == ValueType.GLOB_CHOICE_SWEEP
            ):  # benchmark=glob(lm-*-tiny): the group's matching options
                key = override.get_key_element()
                if not group_options(key):
                    raise ConfigError(
                        f"{override.input_line}: glob() picks options of a config group, and "
                        f"{key} is not one.",
                        "list the values instead, e.g. seed=1,2,3.",
                    )
                options = override.value().filter(group_options(key))
                if not options:
                    raise ConfigError(
                        f"{override.input_line} matches no option of {key}.",
                        f"choose from: {', '.join(group_options(key)) or '(none)'}.",
                    )
                axes.append([f"{key}={name}" for name in options])
            elif override.is_discrete_sweep():
                key = override.get_key_element()
                axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
            else:
                raise ConfigError(
                    f"{override.input_line}: only discrete sweeps (a,b,c) are supported.",
                    "list the values, e.g. seed=1,2,3.",
                )
        else:
            axes.append([override.input_line])
    return [list(job) for job in itertools.product(*axes)] if axes else [[]]


def to_yaml(dict_cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(dict_cfg, resolve=True, sort_keys=False)
