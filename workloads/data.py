"""Framework-neutral token batches: a synthetic language with a known entropy floor, or real data.

Every source yields `(inputs_BT, targets_BT)` int64 numpy arrays; adapters move them to devices.

The synthetic corpus is an order-1 Markov language over `vocab_size` tokens. Each token has
`successors` possible next tokens with Dirichlet(`concentration`) probabilities. Sequences start
from the chain's stationary distribution pi, so every predicted token has the same conditional
entropy, and the best achievable eval loss (the entropy floor) is exactly the entropy rate
H = sum_i pi_i H(P_i) (Cover & Thomas, Elements of Information Theory, thm 4.2.4). A quality
target of "eval loss <= floor + margin" is therefore meaningful and seed-independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import ConfigError


@dataclass(frozen=True)
class Batch:
    inputs_BT: np.ndarray
    targets_BT: np.ndarray


class MarkovLanguage:
    """An order-1 Markov chain with sparse, random transitions and a closed-form entropy rate."""

    def __init__(self, vocab_size: int, successors: int, concentration: float, seed: int):
        if not 1 <= successors <= vocab_size:
            raise ConfigError(
                f"benchmark.data.successors={successors} must be in [1, vocab_size={vocab_size}].",
                "use fewer successors than tokens.",
            )
        if concentration <= 0:
            raise ConfigError(
                f"benchmark.data.concentration={concentration} must be > 0.",
                "use a positive Dirichlet concentration, e.g. 0.5.",
            )
        rng = np.random.default_rng(seed)
        self.vocab_size = vocab_size
        self.succ_VK = np.stack(
            [rng.choice(vocab_size, successors, replace=False) for _ in range(vocab_size)]
        )
        self.prob_VK = rng.dirichlet(np.full(successors, concentration), size=vocab_size)
        self.cdf_VK = np.cumsum(self.prob_VK, axis=1)
        self.cdf_VK[:, -1] = 1.0
        self.stationary_V = self._stationary()

    def transition_matrix(self) -> np.ndarray:
        p_VV = np.zeros((self.vocab_size, self.vocab_size))
        np.add.at(p_VV, (np.arange(self.vocab_size)[:, None], self.succ_VK), self.prob_VK)
        return p_VV

    def _stationary(self) -> np.ndarray:
        # Cesaro average of the uniform start's orbit: a stationary distribution even when the
        # chain is periodic or reducible (then it is one of several, which is all we need).
        p_VV = self.transition_matrix()
        dist, acc = np.full(self.vocab_size, 1.0 / self.vocab_size), np.zeros(self.vocab_size)
        for _ in range(2000):
            dist = dist @ p_VV
            acc += dist
        return acc / acc.sum()

    def entropy_rate_nats(self) -> float:
        """H(X_t+1 | X_t) under the stationary distribution: the floor of any model's eval loss."""
        with np.errstate(divide="ignore", invalid="ignore"):
            h_V = -np.nansum(
                np.where(self.prob_VK > 0, self.prob_VK * np.log(self.prob_VK), 0.0), axis=1
            )
        return float(self.stationary_V @ h_V)

    def sample(self, n_chains: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """n_chains independent stationary chains of `length` tokens, vectorised over chains."""
        out_NL = np.empty((n_chains, length), dtype=np.int64)
        cur_N = rng.choice(self.vocab_size, size=n_chains, p=self.stationary_V)
        out_NL[:, 0] = cur_N
        for t in range(1, length):
            u_N = rng.random(n_chains)
            k_N = np.minimum(
                (self.cdf_VK[cur_N] < u_N[:, None]).sum(axis=1), self.succ_VK.shape[1] - 1
            )
            cur_N = self.succ_VK[cur_N, k_N]
            out_NL[:, t] = cur_N
        return out_NL


class TokenSource:
    """Random training windows and a fixed eval set from a 2-D (rows, length) or 1-D token array."""

    def __init__(
        self,
        train_tokens: np.ndarray,
        eval_tokens: np.ndarray,
        seq_len: int,
        vocab_size: int,
        entropy_floor_nats: float | None,
    ):
        self.train, self.eval, self.seq_len = train_tokens, eval_tokens, seq_len
        self.entropy_floor_nats = entropy_floor_nats
        self.vocab_size = vocab_size
        for name, arr in (("train", train_tokens), ("eval", eval_tokens)):
            if arr.shape[-1] < seq_len + 1:
                raise ConfigError(
                    f"the {name} split has only {arr.shape[-1]} tokens per row, "
                    f"fewer than seq_len+1={seq_len + 1}.",
                    "give more data or a shorter seq_len.",
                )

    def _windows(self, arr: np.ndarray, rows: np.ndarray, starts: np.ndarray) -> Batch:
        idx_BT = starts[:, None] + np.arange(self.seq_len + 1)[None, :]
        tokens = arr[rows[:, None], idx_BT] if arr.ndim == 2 else arr[idx_BT]
        tokens = tokens.astype(np.int64)
        # Checked per batch rather than over the whole (possibly huge, memory-mapped) file.
        top = int(tokens.max())
        if top >= self.vocab_size:
            raise ConfigError(
                f"the data holds token id {top} but model.vocab_size={self.vocab_size}.",
                f"set benchmark.model.vocab_size>={top + 1}.",
            )
        return Batch(tokens[:, :-1], tokens[:, 1:])

    def train_batch(self, batch_size: int, rng: np.random.Generator) -> Batch:
        n_rows = self.train.shape[0] if self.train.ndim == 2 else 1
        rows = rng.integers(0, n_rows, size=batch_size)
        starts = rng.integers(0, self.train.shape[-1] - self.seq_len, size=batch_size)
        return self._windows(self.train, rows, starts)

    def eval_set(self, batch_size: int, n_batches: int) -> list[Batch]:
        """A fixed, seed-independent eval set: evenly spaced windows over the eval split."""
        n = batch_size * n_batches
        if self.eval.ndim == 2:
            rows = np.arange(n) % self.eval.shape[0]
            starts = (
                (np.arange(n) // self.eval.shape[0])
                * self.seq_len
                % (self.eval.shape[1] - self.seq_len)
            )
        else:
            rows = np.zeros(n, dtype=np.int64)
            starts = np.linspace(0, self.eval.shape[0] - self.seq_len - 1, n).astype(np.int64)
        full = self._windows(self.eval, rows, starts)
        return [
            Batch(
                full.inputs_BT[i * batch_size : (i + 1) * batch_size],
                full.targets_BT[i * batch_size : (i + 1) * batch_size],
            )
            for i in range(n_batches)
        ]


def _synthetic(data, model) -> TokenSource:
    lang = MarkovLanguage(model.vocab_size, data.successors, data.concentration, data.seed)
    chain_len = max(4 * (model.seq_len + 1), 1024)
    rng = np.random.default_rng([data.seed, 1])
    train = lang.sample(max(1, -(-data.train_tokens // chain_len)), chain_len, rng)
    eval_rng = np.random.default_rng([data.seed, 2])
    evals = lang.sample(max(1, -(-data.eval_tokens // chain_len)), chain_len, eval_rng)
    return TokenSource(train, evals, model.seq_len, model.vocab_size, lang.entropy_rate_nats())


def _split_tail(tokens: np.ndarray, eval_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    n_eval = min(eval_tokens, len(tokens) // 10)
    return tokens[:-n_eval], tokens[-n_eval:]


def _real(data, model) -> TokenSource:
    if not data.path:
        raise ConfigError(
            f"benchmark.data.kind={data.kind} needs benchmark.data.path.",
            "point benchmark.data.path at a text file or a nanoGPT-style .bin file.",
        )
    path = Path(data.path)
    if not path.is_file():
        raise ConfigError(f"benchmark.data.path={path} is not a readable file.", "check the path.")
    if data.kind == "text":
        tokens = np.frombuffer(path.read_bytes(), dtype=np.uint8)  # byte-level tokens, vocab 256
    else:
        if data.dtype not in ("uint16", "uint32"):
            raise ConfigError(
                f"benchmark.data.dtype={data.dtype} is not a token dtype.", "use uint16 or uint32."
            )
        tokens = np.memmap(
            path, dtype=np.dtype(data.dtype), mode="r"
        )  # nanoGPT layout: flat token ids
    train, evals = _split_tail(tokens, data.eval_tokens)
    return TokenSource(train, evals, model.seq_len, model.vocab_size, None)


def build_token_source(data, model) -> TokenSource:
    """Build the benchmark's data from its `DataConfig` and `ModelConfig`."""
    return _synthetic(data, model) if data.kind == "synthetic" else _real(data, model)
