"""Least squares by minibatch SGD in plain numpy: the maths both examples share, and the same
maths as a joulebench Workload class (`framework=custom`).

The data are y = X w* + noise (sigma 0.1) from a seed, so no model beats an eval loss (mean
squared error) of sigma^2 = 0.01; the least-squares fit on 32768 rows of 512 features expects
about sigma^2 (1 + d/n) = 0.0102. SGD with batch 512 and learning rate 0.002 reaches the
target of 0.0115 in about 900 steps, about a second of numpy on one core.
"""

from __future__ import annotations

import numpy as np

NOISE_SIGMA = 0.1
FEATURES = 512
BATCH, LEARNING_RATE, TARGET_MSE = 512, 0.002, 0.0115


def make_problem(seed: int, n_train: int = 32768, n_eval: int = 2048, d: int = FEATURES):
    rng = np.random.default_rng(seed)
    w_true = rng.normal(size=d) / np.sqrt(d)
    x = rng.normal(size=(n_train + n_eval, d))
    y = x @ w_true + NOISE_SIGMA * rng.normal(size=n_train + n_eval)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def sgd_step(w, x_b, y_b, lr: float):
    """One step on the batch's mean squared error; returns the new weights and the batch loss."""
    residual = x_b @ w - y_b
    return w - lr * 2.0 * x_b.T @ residual / len(y_b), float(np.mean(residual**2))


def mse(w, x, y) -> float:
    return float(np.mean((x @ w - y) ** 2))


class LeastSquaresWorkload:
    """The same maths as a Workload: `joulebench run framework=custom
    framework.target=examples.least_squares:LeastSquaresWorkload benchmark.name=lsq ...`.
    Batch size and learning rate come from the benchmark (global_batch, optim.lr: constant, the
    benchmark's schedule is not used) and the data from its data.seed."""

    def __init__(self, bench, framework, seed: int):
        self.x, self.y, self.x_eval, self.y_eval = make_problem(bench.data.seed)
        self.batch, self.lr = bench.global_batch, bench.optim.lr
        self.rng = np.random.default_rng(seed)
        self.w = np.zeros(self.x.shape[1])
        d = self.x.shape[1]
        # per sample: the residual (2d) and the gradient (2d) multiply-adds, the update (2d / batch)
        self.info = {
            "framework": "numpy",
            "framework_version": np.__version__,
            "model_kind": "linear",
            "params_total": d,
            "params_active": d,
            "flops_per_token": 4.0 * d,
            "tokens_per_step": self.batch,
            "precision": "fp64",
            "loss_floor_nats": None,
        }

    def next_batch(self):
        idx = self.rng.integers(0, len(self.y), size=self.batch)
        return self.x[idx], self.y[idx]

    def train_step(self, batch) -> float:
        self.w, loss = sgd_step(self.w, *batch, self.lr)
        return loss  # read as the step's train loss

    def sync(self) -> None:
        pass  # numpy is synchronous

    def evaluate(self) -> float:
        return mse(self.w, self.x_eval, self.y_eval)
