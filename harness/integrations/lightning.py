"""PyTorch Lightning: meter `trainer.fit` with joulebench.

    from harness.integrations.lightning import JoulebenchCallback

    meter = JoulebenchCallback("my-model", monitor="val_loss", target=("val_loss", 0.3, "lower"),
                               tokens_per_batch=4096, run_dir="runs/x")
    Trainer(callbacks=[meter], ...).fit(model, train_loader, val_loader)

Each training batch is a step (a window closes every `window_steps`), each validation reports
`monitor` from the trainer's callback metrics as the eval, and the trainer stops at the first
validation that meets the target, as `joulebench run` does. An exception in fit writes an
`aborted` result. Sanity-check validation, before training starts, is not an eval.
"""

from __future__ import annotations

from typing import Any

from harness.api import Measurement

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    import pytorch_lightning as pl


class JoulebenchCallback(pl.Callback):
    def __init__(
        self,
        benchmark: str,
        monitor: str = "val_loss",
        tokens_per_batch: int | None = None,
        **measurement: Any,
    ):
        super().__init__()
        self.monitor, self.tokens_per_batch = monitor, tokens_per_batch
        self._settings = {"benchmark": benchmark, **measurement}
        self.measurement: Measurement | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.measurement = Measurement(**self._settings).start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.measurement is None:
            return
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss = loss.detach() if hasattr(loss, "detach") else loss
        self.measurement.step(tokens=self.tokens_per_batch, loss=loss)

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.measurement is None or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and self.measurement.evaluate(float(value)):
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        self._close(None)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._close(exception)

    def _close(self, exc: BaseException | None) -> None:
        if self.measurement is not None:
            self.measurement.close(exc)
