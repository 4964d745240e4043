"""A multi-domain synthetic language whose best achievable loss is computable exactly.

Each document is one training sequence of seq_len+1 tokens. Its first token names the
generator family; the rest is that family's output:

  markov1  order-1 Markov chain, sparse random transitions (local statistics)
  markov2  order-2 Markov chain, sparse random transitions (longer local context)
  copy     a random span, a separator, then the span repeated (in-context recall)
  dyck     nested brackets of several types, a context-free language (long-range matching)
  facts    key -> value records from a large random table (knowledge: heavy to store)

Every family can score a document exactly: -log p(x_t | x_<t) under the generating process,
given that the family is known from the first token. The mean of that over the fixed eval set
is the Bayes-optimal eval loss, the floor no model can beat on average; a quality target of
"floor + margin" is then meaningful on any hardware. (Cover & Thomas, Elements of
Information Theory, 2nd ed., ch. 4 and 5: expected code length >= entropy.)

Token ids: 0..3 start the first four families' documents, 4 is the copy separator and also starts
a facts document (a separator never starts a document, so the two cannot be confused, and the
older families' token ids, hence their data for a seed, are unchanged), content uses 5..V-1.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from harness.errors import ConfigError

FAMILIES = ("markov1", "markov2", "copy", "dyck", "facts")
SEP = 4
FIRST_CONTENT = SEP + 1
START = {"markov1": 0, "markov2": 1, "copy": 2, "dyck": 3, "facts": SEP}  # a document's first token


class Family(ABC):
    def __init__(self, alphabet: int, rng: np.random.Generator):
        self.alphabet = alphabet  # content tokens are FIRST_CONTENT + [0, alphabet)

    @abstractmethod
    def sample(self, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """n documents' content, `length` global token ids each."""

    @abstractmethod
    def probs(self, docs_NL: np.ndarray) -> np.ndarray:
        """p(x_t | x_<t) for every token, shape (n, length); 0 where the family cannot emit x_t."""

    def nll(self, docs_NL: np.ndarray) -> np.ndarray:
        """-log p(x_t | x_<t) in nats (inf for a token the family cannot emit)."""
        with np.errstate(divide="ignore"):
            return -np.log(self.probs(docs_NL))

    def _local(self, docs_NL: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Content ids shifted to [0, alphabet), and a mask of tokens inside that range."""
        local = docs_NL.astype(np.int64) - FIRST_CONTENT
        valid = (local >= 0) & (local < self.alphabet)
        return np.where(valid, local, 0), valid


def _sparse_table(n_states: int, alphabet: int, successors: int, concentration: float, rng):
    succ_SK = np.stack([rng.choice(alphabet, successors, replace=False) for _ in range(n_states)])
    prob_SK = rng.dirichlet(np.full(successors, concentration), size=n_states)
    cdf_SK = np.cumsum(prob_SK, axis=1)
    cdf_SK[:, -1] = 1.0
    return succ_SK, prob_SK, cdf_SK


def _draw(succ_SK, cdf_SK, state_N, rng) -> np.ndarray:
    u_N = rng.random(state_N.shape[0])
    k_N = np.minimum((cdf_SK[state_N] < u_N[:, None]).sum(axis=1), succ_SK.shape[1] - 1)
    return succ_SK[state_N, k_N]


def _prob_of(succ_SK, prob_SK, state_N, next_N) -> np.ndarray:
    return (prob_SK[state_N] * (succ_SK[state_N] == next_N[:, None])).sum(axis=1)


class MarkovFamily(Family):
    """Order-`order` chain: the first `order` tokens are uniform, then sparse transitions."""

    def __init__(self, alphabet: int, rng, order: int, successors: int, concentration: float):
        super().__init__(alphabet, rng)
        self.order = order
        self.succ_SK, self.prob_SK, self.cdf_SK = _sparse_table(
            alphabet**order, alphabet, min(successors, alphabet), concentration, rng
        )

    def _state(self, local_NL: np.ndarray, t: int) -> np.ndarray:
        state = np.zeros(local_NL.shape[0], dtype=np.int64)
        for j in range(t - self.order, t):
            state = state * self.alphabet + local_NL[:, j]
        return state

    def sample(self, n, length, rng):
        local = np.empty((n, length), dtype=np.int64)
        local[:, : self.order] = rng.integers(0, self.alphabet, size=(n, min(self.order, length)))
        for t in range(self.order, length):
            local[:, t] = _draw(self.succ_SK, self.cdf_SK, self._state(local, t), rng)
        return local + FIRST_CONTENT

    def probs(self, docs_NL):
        local, valid = self._local(docs_NL)
        out = np.empty(local.shape)
        out[:, : self.order] = 1.0 / self.alphabet
        for t in range(self.order, local.shape[1]):
            out[:, t] = _prob_of(self.succ_SK, self.prob_SK, self._state(local, t), local[:, t])
        return np.where(valid, out, 0.0)


class CopyFamily(Family):
    """A span of uniform length in [min_span, max_span] of uniform tokens, SEP, then repeats."""

    def __init__(self, alphabet: int, rng, min_span: int = 3, max_span: int = 12):
        super().__init__(alphabet, rng)
        self.min_span, self.max_span = min_span, max_span

    def sample(self, n, length, rng):
        spans = rng.integers(self.min_span, self.max_span + 1, size=n)
        content = rng.integers(0, self.alphabet, size=(n, self.max_span)) + FIRST_CONTENT
        period = spans + 1  # span then separator
        pos_NL = np.arange(length)[None, :] % period[:, None]
        span_tokens = np.take_along_axis(content, np.minimum(pos_NL, self.max_span - 1), axis=1)
        return np.where(pos_NL == spans[:, None], SEP, span_tokens)

    def probs(self, docs_NL):
        _, valid = self._local(docs_NL)
        n, length = docs_NL.shape
        is_sep = docs_NL == SEP
        first_sep = np.where(is_sep.any(axis=1), np.argmax(is_sep, axis=1), length)
        out = np.zeros((n, length))
        for t in range(length):
            in_span = t <= first_sep
            # hazard of the span ending after t tokens, for a uniform length in [min, max]
            hazard = 0.0 if t < self.min_span else 1.0 / max(1, self.max_span - t + 1)
            hazard = 1.0 if t >= self.max_span else hazard
            first = np.where(
                is_sep[:, t], hazard, np.where(valid[:, t], (1.0 - hazard) / self.alphabet, 0.0)
            )
            # after the first separator the document repeats with period first_sep + 1
            source = np.maximum(t - (first_sep + 1), 0)
            copy = (docs_NL[np.arange(n), source] == docs_NL[:, t]).astype(float)
            out[:, t] = np.where(in_span, first, copy)
        return out


class DyckFamily(Family):
    """Brackets of `types` kinds: open w.p. p_open (uniform type), else close the top; depth <= max_depth."""

    def __init__(self, alphabet: int, rng, types: int = 4, max_depth: int = 8, p_open: float = 0.5):
        super().__init__(alphabet, rng)
        self.types = min(types, alphabet // 2)
        if self.types < 1:
            raise ConfigError(
                "the dyck family needs at least 2 content tokens.", "raise model.vocab_size."
            )
        self.max_depth, self.p_open = max_depth, p_open

    def _step_probs(self, depth_N):
        p_open = np.where(depth_N == 0, 1.0, np.where(depth_N >= self.max_depth, 0.0, self.p_open))
        return p_open

    def sample(self, n, length, rng):
        stack = np.zeros((n, self.max_depth + 1), dtype=np.int64)
        depth = np.zeros(n, dtype=np.int64)
        out = np.empty((n, length), dtype=np.int64)
        rows = np.arange(n)
        for t in range(length):
            opens = rng.random(n) < self._step_probs(depth)
            kind = rng.integers(0, self.types, size=n)
            top = stack[rows, np.maximum(depth - 1, 0)]
            out[:, t] = np.where(opens, kind, self.types + top)
            stack[rows, np.where(opens, depth, 0)] = np.where(opens, kind, stack[rows, 0])
            depth = np.where(opens, depth + 1, depth - 1)
        return out + FIRST_CONTENT

    def probs(self, docs_NL):
        local, valid = self._local(docs_NL)
        n, length = local.shape
        stack = np.zeros((n, self.max_depth + 1), dtype=np.int64)
        depth = np.zeros(n, dtype=np.int64)
        out = np.empty((n, length))
        rows = np.arange(n)
        for t in range(length):
            p_open = self._step_probs(depth)
            opens = local[:, t] < self.types
            top = stack[rows, np.maximum(depth - 1, 0)]
            closes_top = (local[:, t] == self.types + top) & (depth > 0)
            out[:, t] = np.where(
                opens, p_open / self.types, np.where(closes_top, 1.0 - p_open, 0.0)
            )
            stack[rows, np.where(opens, depth, 0)] = np.where(opens, local[:, t], stack[rows, 0])
            depth = np.clip(np.where(opens, depth + 1, depth - 1), 0, self.max_depth)
        return np.where(valid, out, 0.0)


class FactsFamily(Family):
    """Facts: records of a key (`key_tokens` tokens) then its value (`value_tokens` tokens),
    back to back. The table maps each key to a value drawn once from the seed. By default every
    one of the alphabet^key_tokens strings is a key; with `keys` set, that many distinct strings
    drawn from the seed are. The table holds keys x value_tokens x log2(alphabet) bits: what a
    model must store, in parameters, to predict values. Exact to score: a key token has the
    probability of its prefix among the keys (1/alphabet when every string is a key), a value
    token p = 1 (its table entry) or 0.

    This is the family that makes a corpus capacity-bound, as web text is (knowledge grows
    with parameters): a dense model with too few parameters cannot hold the table, a sparse one
    with more total parameters can (Allen-Zhu & Li 2024, Physics of Language Models 3.3: about
    2 bits of knowledge per parameter at best)."""

    def __init__(
        self,
        alphabet: int,
        rng,
        key_tokens: int = 2,
        value_tokens: int = 2,
        keys: int | None = None,
    ):
        super().__init__(alphabet, rng)
        self.key_tokens, self.value_tokens = key_tokens, value_tokens
        strings = alphabet**key_tokens
        if keys is not None and not 1 <= keys <= strings:
            raise ConfigError(
                f"benchmark.data.facts_keys={keys} but {key_tokens}-token keys over "
                f"{alphabet} content tokens allow 1..{strings}.",
                "pick facts_keys in that range, or null for every string.",
            )
        self.keys = keys
        if keys is None:
            self.table_KV = rng.integers(0, alphabet, size=(strings, value_tokens))
            self.key_ids_K = None
        else:  # a subset of the strings: row r of the table belongs to key string key_ids_K[r]
            self.key_ids_K = np.sort(rng.choice(strings, size=keys, replace=False))
            self.table_KV = rng.integers(0, alphabet, size=(keys, value_tokens))
            self._prefix_counts = [
                np.bincount(self.key_ids_K // alphabet ** (key_tokens - j), minlength=alphabet**j)
                for j in range(key_tokens + 1)
            ]  # [j][p]: how many keys start with the j-token prefix p (j = 0: all of them)

    @property
    def period(self) -> int:
        return self.key_tokens + self.value_tokens

    def bits(self) -> float:
        """Information in the table: what storing every fact takes."""
        return float(self.table_KV.size * np.log2(self.alphabet))

    def full_records(self, length: int) -> int:
        """Whole records a document of `length` content tokens holds (each starts a record)."""
        return length // self.period

    def cover_docs(self, length: int) -> int:
        """Documents `cover` needs to hold every key's record once."""
        per_doc = self.full_records(length)
        if per_doc == 0:
            raise ConfigError(
                f"a facts record ({self.period} tokens) is longer than a document ({length}).",
                "use a longer benchmark.model.seq_len or fewer facts_value_tokens.",
            )
        return -(-self.table_KV.shape[0] // per_doc)

    def cover(self, length: int, rng) -> np.ndarray:
        """The eval documents of the table: every key's whole record exactly once, in an order
        drawn from `rng`. Where the keys do not fill the last document's whole records, those
        take keys drawn at random; every document's partial tail record is drawn at random.
        Returns (cover_docs(length), length) global token ids."""
        n, per_doc = self.cover_docs(length), self.full_records(length)
        records = -(-length // self.period)
        rows_NR = rng.integers(0, self.table_KV.shape[0], size=(n, records))
        order = rng.permutation(self.table_KV.shape[0])
        slots = rows_NR[:, :per_doc].reshape(-1)
        slots[: order.size] = order
        rows_NR[:, :per_doc] = slots.reshape(n, per_doc)
        return self._records(rows_NR, length)

    def sample(self, n, length, rng):
        records = -(-length // self.period)
        rows_NR = rng.integers(0, self.table_KV.shape[0], size=(n, records))
        return self._records(rows_NR, length)

    def _records(self, rows_NR: np.ndarray, length: int) -> np.ndarray:
        n = rows_NR.shape[0]
        key_NR = rows_NR if self.key_ids_K is None else self.key_ids_K[rows_NR]
        digits = [(key_NR // self.alphabet**p) % self.alphabet for p in range(self.key_tokens)]
        key_part = np.stack(digits[::-1], axis=2)  # most significant token first
        out = np.concatenate([key_part, self.table_KV[rows_NR]], axis=2).reshape(n, -1)
        return out[:, :length] + FIRST_CONTENT

    def _key_token_prob(self, prefix: np.ndarray, token: np.ndarray, j: int) -> np.ndarray:
        """p(the key's j-th token | its first j tokens), among the keys."""
        if self.key_ids_K is None:
            return np.full(prefix.shape, 1.0 / self.alphabet)
        counts = self._prefix_counts
        return counts[j + 1][prefix * self.alphabet + token] / np.maximum(counts[j][prefix], 1)

    def _rows_of(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Table rows of key strings, and whether each string is a key at all."""
        if self.key_ids_K is None:
            return key, np.ones(key.shape, dtype=bool)
        row = np.minimum(np.searchsorted(self.key_ids_K, key), self.key_ids_K.size - 1)
        return row, self.key_ids_K[row] == key

    def probs(self, docs_NL):
        local, valid = self._local(docs_NL)
        n, length = local.shape
        out = np.empty((n, length))
        for t in range(length):
            record, within = divmod(t, self.period)
            key = np.zeros(n, dtype=np.int64)
            for j in range(min(within, self.key_tokens)):
                key = key * self.alphabet + local[:, record * self.period + j]
            if within < self.key_tokens:
                out[:, t] = self._key_token_prob(key, local[:, t], within)
                continue
            row, known = self._rows_of(key)
            hit = self.table_KV[row, within - self.key_tokens] == local[:, t]
            out[:, t] = (hit & known).astype(float)
        return np.where(valid, out, 0.0)


class MultiDomainCorpus:
    """Documents from a mix of families; the family is the document's first token."""

    def __init__(
        self,
        vocab_size: int,
        seed: int,
        successors: int = 4,
        concentration: float = 0.5,
        families: tuple[str, ...] = FAMILIES[:4],
        facts_shape: tuple[int, ...] = (2, 2),  # facts: (key tokens, value tokens[, keys])
    ):
        alphabet = vocab_size - FIRST_CONTENT
        if alphabet < 2:
            raise ConfigError(
                f"model.vocab_size={vocab_size} leaves no content tokens for the synthetic corpus.",
                f"use vocab_size >= {FIRST_CONTENT + 2}.",
            )
        unknown = set(families) - set(FAMILIES)
        if unknown or not families:
            raise ConfigError(
                f"benchmark.data.families has unknown entries {sorted(unknown)}.",
                f"choose from {', '.join(FAMILIES)}.",
            )
        rng = np.random.default_rng(seed)
        # markov2's table has alphabet^2 states; cap its alphabet so big vocabularies stay cheap
        m2_alphabet = min(alphabet, 256)
        builders = {
            "markov1": lambda: MarkovFamily(alphabet, rng, 1, successors, concentration),
            "markov2": lambda: MarkovFamily(m2_alphabet, rng, 2, successors, concentration),
            "copy": lambda: CopyFamily(alphabet, rng),
            "dyck": lambda: DyckFamily(alphabet, rng),
            "facts": lambda: FactsFamily(alphabet, rng, *facts_shape),
        }
        self.families = {name: builders[name]() for name in families}
        self.vocab_size = vocab_size

    def sample(self, n_docs: int, doc_len: int, rng: np.random.Generator) -> np.ndarray:
        """(n_docs, doc_len) token ids: a start token then doc_len-1 content tokens."""
        names = list(self.families)
        which = rng.integers(0, len(names), size=n_docs)
        dtype = np.uint16 if self.vocab_size <= 65536 else np.uint32
        docs = np.empty((n_docs, doc_len), dtype=dtype)
        for i, name in enumerate(names):
            rows = np.flatnonzero(which == i)
            docs[rows, 0] = START[name]
            docs[rows, 1:] = self.families[name].sample(rows.size, doc_len - 1, rng)
        return docs

    def optimal_nll(self, docs: np.ndarray) -> np.ndarray:
        """Per-target Bayes-optimal NLL (n_docs, doc_len-1): the loss floor on exactly these docs.

        The family is known from the start token, so p(x_t | x_<t) is the family's own."""
        out = np.empty((docs.shape[0], docs.shape[1] - 1))
        for name, family in self.families.items():
            rows = np.flatnonzero(docs[:, 0] == START[name])
            out[rows] = family.nll(docs[rows, 1:].astype(np.int64))
        return out
