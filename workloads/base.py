"""The workload contract the runner relies on (DESIGN.md, "Workload")."""

from __future__ import annotations

from typing import Any, Protocol

from harness.results.schema import WorkloadInfo  # the result's workload record: one type
from workloads.data import Batch

__all__ = ["Workload", "WorkloadInfo", "model_facts", "step_stats_from_rows"]


class Workload(Protocol):
    info: WorkloadInfo

    def warmup(self, steps: int) -> None:
        """Run `steps` steps to compile and fill caches, then restore the initial model state."""

    def next_batch(self) -> Batch:
        """The next training batch (host side); drawn outside the metered step where possible."""

    def train_step(self, batch: Batch) -> Any:
        """One optimizer step. May return before the device finishes; returns a handle for read_step_stats."""

    def sync(self) -> None:
        """Block until the device is idle."""

    def read_step_stats(self, handles: list[Any]) -> list[dict]:
        """Per-step statistics (train_loss, and for MoE aux_loss, z_loss, dropped_frac,
        expert_load) from train_step handles. Call only after sync()."""

    def evaluate(self) -> float:
        """Mean eval loss in nats per token over the benchmark's fixed eval set."""

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory allocated so far, or None where the device does not say."""


STEP_STAT_NAMES = ("train_loss", "aux_loss", "z_loss", "dropped_frac")


def step_stats_from_rows(rows: list[list[float]]) -> list[dict]:
    """Per-step stat vectors ([ce, aux, z, dropped, expert load...], see training_loss) as dicts."""
    out = []
    for row in rows:
        stats = dict(zip(STEP_STAT_NAMES, row[: len(STEP_STAT_NAMES)], strict=False))
        if len(row) > len(STEP_STAT_NAMES):
            stats["expert_load"] = row[len(STEP_STAT_NAMES) :]
        out.append(stats)
    return out


def model_facts(bench, actual_params: int) -> dict[str, Any]:
    """The WorkloadInfo fields that follow from the benchmark's model, after checking that the
    FLOP maths counts exactly the parameters of the model that runs."""
    from harness.errors import WorkloadError
    from workloads.flops import train_flops_per_token, transformer_param_counts

    m = bench.model
    counts = transformer_param_counts(m)
    if actual_params != counts.total:
        raise WorkloadError(
            f"the model has {actual_params} parameters but the FLOP model counts {counts.total}.",
            "this is a bug in workloads/flops.py; please report it.",
        )
    return {
        "model_kind": m.kind,
        "params_total": counts.total,
        "params_active": counts.active,
        "flops_per_token": train_flops_per_token(
            counts.matmul_active, m.n_layers, m.seq_len, m.d_model
        ),
        "tokens_per_step": bench.global_batch * m.seq_len,
    }


def eval_sequences(bench) -> int:
    """Sequences one eval scores (MLPerf's eval_samples)."""
    from workloads.data import eval_batch_count

    return bench.global_batch * eval_batch_count(bench)
