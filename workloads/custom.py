"""framework=custom: your own Workload class, named `module:Class` in framework.target.

The class is built as `Class(bench, framework, seed)`, the way joulebench builds its own
adapters, and runs under the same runner, meters, multirun, torchrun and SLURM. It must have
the methods that do the training (`next_batch`, `train_step`, `sync`, `evaluate`); `warmup`,
`read_step_stats` and `peak_memory_bytes` are optional (no warm-up; a numeric train_step result
is read as the step's train loss; no memory figure). Its `info` may be a WorkloadInfo or a dict
of WorkloadInfo's fields: whatever it leaves out (FLOPs, parameters, tokens) is null in the
result, never guessed, and what depends on it (MFU, throughput) is null with a warning.
"""

from __future__ import annotations

import importlib
import numbers
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from workloads.base import WorkloadInfo

REQUIRED_METHODS = ("next_batch", "train_step", "sync", "evaluate")
FIX = "give framework.target=package.module:ClassName, a class with " + ", ".join(REQUIRED_METHODS)


def load_class(target: str | None) -> type:
    """The class `module:Class` names; one ConfigError for every way it can fail to."""
    if not target or ":" not in target:
        raise ConfigError(f"framework.target={target} does not name module:Class.", FIX)
    module_name, _, class_name = target.partition(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # a user's module beside where they run, as python -m
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - a user's module may fail in any way on import
        raise ConfigError(
            f"framework.target={target}: module {module_name} does not import "
            f"({type(exc).__name__}: {exc}).",
            "check the module path (run from the folder that holds it) and its imports.",
        ) from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ConfigError(
            f"framework.target={target}: {module_name} has no class {class_name}.", FIX
        )
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(
            f"framework.target={target}: {class_name} lacks {', '.join(missing)} of the "
            "Workload protocol (workloads/base.py).",
            FIX,
        )
    return cls


def workload_info(given: Any, framework_name: str = "custom") -> WorkloadInfo:
    """A WorkloadInfo from what a custom class says about itself, null where it says nothing."""
    if isinstance(given, WorkloadInfo):
        return given
    given = dict(given or {})
    known = {f.name for f in fields(WorkloadInfo)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"the custom workload's info has unknown fields: {', '.join(unknown)}.",
            f"use WorkloadInfo's fields: {', '.join(sorted(known))}.",
        )
    from workloads.device import cpu_model_name

    device_kind = given.get("device_kind", "cpu")
    defaults: dict[str, Any] = {
        "framework": framework_name,
        "framework_version": "",
        "model_kind": "custom",
        "params_total": None,
        "params_active": given.get("params_total"),
        "flops_per_token": None,
        "tokens_per_step": None,
        "precision": "unspecified",
        "compiled": False,
        "device_kind": device_kind,
        "device_name": cpu_model_name() if device_kind == "cpu" else "unspecified",
        "device_count": 1,
        "peak_flops_per_s": None,
        "loss_floor_nats": None,
        "extra": {},
    }
    return WorkloadInfo(**{**defaults, **given})


class CustomWorkload:
    """The user's object, with the optional parts of the protocol filled in."""

    def __init__(self, inner: Any, target: str):
        self.inner = inner
        self.info = workload_info(getattr(inner, "info", None))
        self.info.extra = {**self.info.extra, "custom_target": target}
        self.group = getattr(inner, "group", None)

    def warmup(self, steps: int) -> None:
        if hasattr(self.inner, "warmup"):
            self.inner.warmup(steps)

    def next_batch(self) -> Any:
        return self.inner.next_batch()

    def train_step(self, batch: Any) -> Any:
        return self.inner.train_step(batch)

    def sync(self) -> None:
        self.inner.sync()

    def read_step_stats(self, handles: list[Any]) -> list[dict]:
        if hasattr(self.inner, "read_step_stats"):
            return self.inner.read_step_stats(handles)
        return [{"train_loss": float(h)} if isinstance(h, numbers.Real) else {} for h in handles]

    def evaluate(self) -> float:
        return float(self.inner.evaluate())

    def peak_memory_bytes(self) -> int | None:
        if hasattr(self.inner, "peak_memory_bytes"):
            return self.inner.peak_memory_bytes()
        return None


def build_custom(bench, framework, seed: int) -> CustomWorkload:
    """The class named by framework.target, wrapped; its equivalence verdict (if any) is the
    harness's business (harness/equivalence.py: build_with_verdict)."""
    cls = load_class(framework.target)
    return CustomWorkload(cls(bench, framework, seed), framework.target)
