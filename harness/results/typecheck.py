"""Parsed JSON checked against a dataclass type, field by field (harness/results/schema.py's
check_result). A field with a default in code is optional in the file unless its metadata says
`required`; numbers must be finite."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any


@functools.cache
def _hints(tp: type) -> dict[str, Any]:
    """A dataclass's resolved field types, once per class (resolving them compiles every
    annotation string: most of a check's time before this cache)."""
    return typing.get_type_hints(tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check(value: Any, tp: Any, path: str, problems: list[str]) -> None:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return
        non_none = [t for t in options if t is not type(None)]
        if len(non_none) == 1:
            _check(value, non_none[0], path, problems)
        elif not any(not type_problems(value, t, path) for t in non_none):
            problems.append(
                f"{path}: {value!r} matches none of {[_type_name(t) for t in non_none]}"
            )
        return
    if tp is Any:
        return
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        hints = _hints(tp)
        for f in dataclasses.fields(tp):
            required = f.metadata.get("required") or (
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            )
            if f.name not in value:
                if required:
                    problems.append(f"{path}.{f.name}: missing")
                continue
            _check(value[f.name], hints[f.name], f"{path}.{f.name}", problems)
        return
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        (item_tp,) = typing.get_args(tp)
        for i, item in enumerate(value):
            _check(item, item_tp, f"{path}[{i}]", problems)
        return
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        _key_tp, val_tp = typing.get_args(tp)
        for k, v in value.items():
            _check(v, val_tp, f"{path}.{k}", problems)
        return
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            problems.append(f"{path}: {value!r} is not a finite number")
        elif not ok:
            problems.append(f"{path}: expected a number, got {type(value).__name__}")
        return
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {type(value).__name__}")
        return
    if tp in (str, bool) and not isinstance(value, tp):
        problems.append(f"{path}: expected {tp.__name__}, got {type(value).__name__}")


def type_problems(value: Any, tp: Any, path: str) -> list[str]:
    """Every way `value` (parsed JSON) departs from the type `tp` (dataclasses, unions, lists,
    dicts, finite numbers), each named by its path under `path`."""
    problems: list[str] = []
    _check(value, tp, path, problems)
    return problems
