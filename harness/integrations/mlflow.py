"""MLflow: log a joulebench run's per-window energy and final metrics to a tracking server.

    from harness.integrations.mlflow import log_run
    log_run("runs/x", tracking_uri="file:./mlruns", experiment="energy")

or `Measurement(..., mlflow="file:./mlruns")`, which logs when the block ends. Windows go in
as step-indexed metrics (`window_energy_j`, `window_train_loss` at each window's last step),
evals as `eval_loss` and `eval_energy_j`, the totals as final metrics, what identifies the run
as params and tags, and result.json as an artifact.
"""

from __future__ import annotations

import math
from pathlib import Path

from harness.results import safe_files

FINAL_METRICS = (
    "energy_total_j",
    "energy_to_target_j",
    "avg_power_w",
    "peak_power_w",
    "joules_per_token",
    "tokens_per_joule",
    "throughput_tokens_per_s",
    "mfu",
)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def log_run(
    run_dir: str | Path, tracking_uri: str | None = None, experiment: str | None = None
) -> str:
    """Log one run directory; returns the MLflow run id."""
    import mlflow
    from mlflow.entities import Metric

    run_dir = Path(run_dir)
    result = safe_files.read_json(run_dir / "result.json", 64 << 20)
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if experiment:
        mlflow.set_experiment(experiment)
    m = result["metrics"] or {}
    t0_ms = int(result["timing"]["run_start_ns"] // 1_000_000)
    series = []
    for w in result["windows"]:
        stamp = int(w["t_end_ns"] // 1_000_000) - t0_ms
        series.append(Metric("window_energy_j", w["energy_j"], stamp, w["step_end"]))
        if _finite(w["train_loss"]):
            series.append(Metric("window_train_loss", w["train_loss"], stamp, w["step_end"]))
    for e in m.get("evals", []):
        stamp = int(e["t_s"] * 1000)
        series.append(Metric("eval_loss", e["eval_loss"], stamp, e["step"]))
        series.append(Metric("eval_energy_j", e["energy_j"], stamp, e["step"]))
    carbon = (result.get("carbon") or {}).get("location_based") or {}
    finals = {k: m.get(k) for k in FINAL_METRICS} | {"kg_co2e": carbon.get("kg_co2e")}
    with mlflow.start_run(run_name=f"{result['benchmark']}-{result['run_id']}") as run:
        mlflow.log_params(
            {
                "benchmark": result["benchmark"],
                "framework": result["workload"]["framework"],
                "seed": result["seed"],
                "config_sha256": result["config_sha256"],
                "provenance": ",".join(sorted({s["provenance"] for s in result["meters"]})),
            }
        )
        mlflow.set_tags({"joulebench.status": result["status"], "joulebench.run_dir": str(run_dir)})
        client = mlflow.MlflowClient()
        for i in range(0, len(series), 1000):  # MLflow takes at most 1000 metrics a batch
            client.log_batch(run.info.run_id, metrics=series[i : i + 1000])
        mlflow.log_metrics({k: float(v) for k, v in finals.items() if _finite(v)})
        mlflow.log_artifact(str(run_dir / "result.json"))
        return run.info.run_id
