"""The Lightning callback, the Hugging Face TrainerCallback and MLflow logging, each with its
library: thin wrappers over Measurement that write the same run directories."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from tests.helpers import load_result

pytestmark = pytest.mark.slow
SIM = {"meter": {"watts": 100.0, "sample_hz": 200}}


def _teacher_data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(16, 3, generator=torch.Generator().manual_seed(99))
    x = torch.randn(n, 16, generator=g)
    return x, (x @ teacher).argmax(-1)


def test_the_lightning_callback_meters_fit_and_stops_at_the_target(tmp_path):
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader, TensorDataset

    from harness.integrations.lightning import JoulebenchCallback

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 3))

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    torch.manual_seed(0)
    train = DataLoader(TensorDataset(*_teacher_data(8192, 1)), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(*_teacher_data(1024, 2)), batch_size=1024)
    meter = JoulebenchCallback(
        "teacher-lightning",
        monitor="val_loss",
        tokens_per_batch=64,
        target=("val_loss", 0.3, "lower"),
        meter="simulated",
        run_dir=tmp_path / "r",
        config=SIM,
        progress="off",
    )
    trainer = pl.Trainer(
        max_epochs=20,
        val_check_interval=40,
        callbacks=[meter],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Classifier(), train, val)
    r = load_result(tmp_path / "r")
    assert r["status"] == "success" and meter.measurement.status == "success"
    evals = r["metrics"]["evals"]
    assert [e["step"] for e in evals] == [40 * (i + 1) for i in range(len(evals))]
    assert evals[-1]["eval_loss"] <= 0.3 and all(e["eval_loss"] > 0.3 for e in evals[:-1])
    assert trainer.global_step == evals[-1]["step"]  # stopped at the first eval that met it
    assert r["metrics"]["tokens"] == 64 * r["metrics"]["steps"]
    assert all(w["train_loss"] is not None for w in r["windows"])


def test_the_hugging_face_callback_meters_train_and_keeps_an_aborted_run(tmp_path):
    pytest.importorskip("accelerate")
    transformers = pytest.importorskip("transformers")
    from torch.utils.data import Dataset

    from harness.integrations.huggingface import JoulebenchTrainerCallback

    class Pairs(Dataset):
        def __init__(self, n, seed):
            self.x, self.y = _teacher_data(n, seed)

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 3))

        def forward(self, x, labels=None):
            logits = self.net(x)
            return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}

    def trainer(callback, steps, out):
        args = transformers.TrainingArguments(
            output_dir=str(out),
            max_steps=steps,
            per_device_train_batch_size=64,
            learning_rate=1e-2,
            eval_strategy="steps",
            eval_steps=40,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
            logging_strategy="no",
        )
        return transformers.Trainer(
            model=Net(),
            args=args,
            train_dataset=Pairs(8192, 1),
            eval_dataset=Pairs(1024, 2),
            callbacks=[callback],
        )

    torch.manual_seed(0)
    common = {"meter": "simulated", "config": SIM, "progress": "off", "tokens_per_step": 64}
    with JoulebenchTrainerCallback(
        "teacher-hf", target=("eval_loss", 0.3, "lower"), run_dir=tmp_path / "r", **common
    ) as meter:
        t = trainer(meter, 2000, tmp_path / "out")
        t.train()
    r = load_result(tmp_path / "r")
    assert r["status"] == "success"
    evals = r["metrics"]["evals"]
    assert evals[-1]["eval_loss"] <= 0.3 and t.state.global_step == evals[-1]["step"]
    assert [e["step"] for e in evals] == [40 * (i + 1) for i in range(len(evals))]

    class Boom(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 25:
                raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):  # noqa: SIM117 - the callback's block
        with JoulebenchTrainerCallback("teacher-hf", run_dir=tmp_path / "a", **common) as meter:
            t = trainer(meter, 100, tmp_path / "out2")
            t.add_callback(Boom())
            t.train()
    aborted = load_result(tmp_path / "a")
    assert aborted["status"] == "aborted" and aborted["error"] == "RuntimeError: disk full"
    assert aborted["metrics"]["steps"] == 25


def test_mlflow_logs_each_window_and_the_totals(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps it behind a switch
    import mlflow

    from examples.numpy_least_squares import train

    store = f"file:{tmp_path / 'mlruns'}"
    assert train(run_dir=str(tmp_path / "r"), meter="simulated", config=SIM, mlflow=store)
    r = load_result(tmp_path / "r")
    client = mlflow.MlflowClient(tracking_uri=store)
    (run,) = client.search_runs(experiment_ids=["0"])
    history = client.get_metric_history(run.info.run_id, "window_energy_j")
    assert [(h.step, h.value) for h in history] == [
        (w["step_end"], pytest.approx(w["energy_j"])) for w in r["windows"]
    ]
    losses = client.get_metric_history(run.info.run_id, "eval_loss")
    assert [h.value for h in losses] == pytest.approx(
        [e["eval_loss"] for e in r["metrics"]["evals"]]
    )
    assert run.data.metrics["energy_total_j"] == pytest.approx(r["metrics"]["energy_total_j"])
    assert run.data.metrics["kg_co2e"] == pytest.approx(r["carbon"]["location_based"]["kg_co2e"])
    assert (
        run.data.params["benchmark"] == "lsq-numpy" and run.data.params["provenance"] == "simulated"
    )
    assert run.data.tags["joulebench.status"] == "success"
    artifact = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="result.json",
        tracking_uri=store,
        dst_path=str(tmp_path / "dl"),
    )
    with open(artifact) as f:
        assert json.load(f)["run_id"] == r["run_id"]
