"""The workload contract the runner relies on (DESIGN.md, "Workload")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from workloads.data import Batch


@dataclass
class WorkloadInfo:
    framework: str
    framework_version: str
    model_kind: str  # dense | moe
    params_total: int
    params_active: int  # parameters one token passes through (== total for dense)
    flops_per_token: float  # training FLOPs per token, convention in workloads/flops.py
    tokens_per_step: int
    precision: str  # fp32 | bf16
    compiled: bool
    device_kind: str  # cpu | gpu | tpu
    device_name: str
    device_count: int
    peak_flops_per_s: (
        float | None
    )  # dense bf16 (or fp32 on CPU) peak of all devices, None if unknown
    extra: dict[str, Any] = field(default_factory=dict)


class Workload(Protocol):
    info: WorkloadInfo

    def warmup(self, steps: int) -> None:
        """Run `steps` steps to compile and fill caches, then restore the initial model state."""

    def next_batch(self) -> Batch:
        """The next training batch (host side); drawn outside the metered step where possible."""

    def train_step(self, batch: Batch) -> Any:
        """One optimizer step. May return before the device finishes; returns a device loss handle."""

    def sync(self) -> None:
        """Block until the device is idle."""

    def read_loss(self, handle: Any) -> float:
        """Turn a handle from train_step into a float. Call only after sync()."""

    def evaluate(self) -> float:
        """Mean eval loss in nats per token over the benchmark's fixed eval set."""
