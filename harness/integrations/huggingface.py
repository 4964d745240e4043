"""Hugging Face Trainer: meter `trainer.train()` with joulebench.

    from harness.integrations.huggingface import JoulebenchTrainerCallback

    with JoulebenchTrainerCallback("my-model", target=("eval_loss", 2.0, "lower"),
                                   tokens_per_step=4096, run_dir="runs/x") as meter:
        Trainer(model, args, callbacks=[meter], ...).train()

Each optimizer step is a step, each `evaluate` reports `metric` (eval_loss by default) as the
eval, and training stops at the first one that meets the target. The Trainer has no hook for a
failed train(), so use the callback as a context manager to turn an exception into an
`aborted` result (it is re-raised). Meter one process: in a multi-process Trainer, only the
main process measures.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from harness.api import Measurement


class JoulebenchTrainerCallback(TrainerCallback):
    def __init__(
        self,
        benchmark: str,
        metric: str = "eval_loss",
        tokens_per_step: int | None = None,
        **measurement: Any,
    ):
        self.metric, self.tokens_per_step = metric, tokens_per_step
        self._settings = {"benchmark": benchmark, **measurement}
        self.measurement: Measurement | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.measurement = Measurement(**self._settings).start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.measurement is not None:
            self.measurement.step(tokens=self.tokens_per_step)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.metric)
        measured = self.measurement is not None and value is not None
        if measured and self.measurement.evaluate(float(value)):
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self._close(None)

    def __enter__(self) -> JoulebenchTrainerCallback:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._close(exc)
        return False

    def _close(self, exc: BaseException | None) -> None:
        if self.measurement is not None:
            self.measurement.close(exc)
