"""Framework-neutral token batches: the synthetic multi-domain corpus, or real data.

Every source yields `(inputs_BT, targets_BT)` int64 numpy arrays; adapters move them to devices.
The synthetic corpus (workloads/corpus.py) comes with its exact loss floor on the eval set;
real data (a byte-level text file, or a nanoGPT-style .bin of token ids) has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import ConfigError
from workloads.corpus import MultiDomainCorpus
from workloads.eval_set import eval_docs


@dataclass(frozen=True)
class Batch:
    inputs_BT: np.ndarray
    targets_BT: np.ndarray


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

    @property
    def train_sequences(self) -> int:
        """Distinct seq_len windows the training split holds (MLPerf's train_samples)."""
        return int(self.train.size // self.seq_len)

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


def _synthetic(data, model, n_eval_sequences: int) -> TokenSource:
    corpus = MultiDomainCorpus(
        model.vocab_size,
        data.seed,
        data.successors,
        data.concentration,
        tuple(data.families),
        (data.facts_key_tokens, data.facts_value_tokens, data.facts_keys),
    )
    doc_len = model.seq_len + 1  # one document per sequence: the family token starts every window
    train = corpus.sample(
        max(1, -(-data.train_tokens // doc_len)), doc_len, np.random.default_rng([data.seed, 1])
    )
    evals = eval_docs(corpus, n_eval_sequences, doc_len, np.random.default_rng([data.seed, 2]))
    floor = float(corpus.optimal_nll(evals).mean())
    return TokenSource(train, evals, model.seq_len, model.vocab_size, floor)


def _split_tail(tokens: np.ndarray, eval_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    n_eval = min(eval_tokens, len(tokens) // 10)
    return tokens[:-n_eval], tokens[-n_eval:]


def _real(data, model, n_eval_sequences: int) -> TokenSource:
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
    if tokens.size < 2 * (model.seq_len + 1):
        raise ConfigError(
            f"{path} holds {tokens.size} tokens, too few for sequences of {model.seq_len}.",
            "give more text (joulebench data prepare), or a shorter benchmark.model.seq_len.",
        )
    top = int(tokens.max())
    if top >= model.vocab_size:
        raise ConfigError(
            f"{path} holds token id {top}, beyond benchmark.model.vocab_size={model.vocab_size}.",
            f"set benchmark.model.vocab_size={256 if top < 256 else top + 1} "
            "(byte-level text needs 256).",
        )
    train, evals = _split_tail(tokens, data.eval_tokens)
    return TokenSource(train, evals, model.seq_len, model.vocab_size, None)


def eval_batch_count(bench) -> int:
    """Global batches per eval. Synthetic data: as many as `data.eval_tokens` fills (rounded up
    to whole batches), so the eval set is the size the config says; real data:
    `benchmark.eval_batches` windows' worth, spread over the file's `eval_tokens` tail."""
    if bench.data.kind != "synthetic":
        return bench.eval_batches
    sequences = -(-bench.data.eval_tokens // bench.model.seq_len)
    return max(1, -(-sequences // bench.global_batch))


_last_built: tuple[str, TokenSource] | None = None  # runs of one benchmark share its data


def build_token_source(data, model, n_eval_sequences: int) -> TokenSource:
    """Build the benchmark's data from its `DataConfig` and `ModelConfig`.

    `n_eval_sequences` (global batch x eval batches) sizes the synthetic eval set exactly, so
    the loss floor is computed on the very tokens the evals score. The last source built is
    kept: the seeds of a sweep (one process) reuse it instead of generating the same corpus
    again (seconds a run for the small benchmarks). Sources are never written to, and a
    file's data is keyed by its path, size and modification time.
    """
    global _last_built
    key = repr((data, model.vocab_size, model.seq_len, n_eval_sequences, _file_stamp(data)))
    if _last_built is not None and _last_built[0] == key:
        return _last_built[1]
    build = _synthetic if data.kind == "synthetic" else _real
    source = build(data, model, n_eval_sequences)
    _last_built = (key, source)
    return source


def _file_stamp(data) -> tuple | None:
    if data.kind == "synthetic" or not data.path:
        return None
    try:
        st = Path(data.path).stat()
    except OSError:
        return None
    return (str(Path(data.path).resolve()), st.st_size, st.st_mtime_ns)
