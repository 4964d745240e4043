"""A plain numpy training loop metered with joulebench: `python -m examples.numpy_least_squares`."""

import numpy as np

from examples.least_squares import BATCH, LEARNING_RATE, TARGET_MSE, make_problem, mse, sgd_step
from harness.api import Measurement


def train(run_dir: str = "runs/lsq", meter: str = "auto", seed: int = 1, **settings) -> bool:
    x, y, x_eval, y_eval = make_problem(seed=1234)
    w, rng = np.zeros(x.shape[1]), np.random.default_rng(seed)
    with Measurement(
        benchmark="lsq-numpy",
        meter=meter,
        run_dir=run_dir,
        seed=seed,
        batch_size=BATCH,
        target=("eval_loss", TARGET_MSE, "lower"),
        carbon={"region": "FRA"},
        **settings,
    ) as m:
        for step in range(1, 5001):
            idx = rng.integers(0, len(y), size=BATCH)
            w, loss = sgd_step(w, x[idx], y[idx], LEARNING_RATE)
            m.step(tokens=BATCH, flops=4 * x.shape[1] * BATCH, loss=loss)
            if step % 100 == 0 and m.evaluate(mse(w, x_eval, y_eval)):
                break
    return m.reached


if __name__ == "__main__":
    raise SystemExit(0 if train() else 1)
