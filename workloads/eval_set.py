"""The synthetic corpus's eval set: `data.eval_tokens` worth of documents in fixed family
shares, whose facts documents hold every key of the table once (workloads/data.py uses it)."""

from __future__ import annotations

import numpy as np

from harness.errors import ConfigError
from workloads.corpus import START, MultiDomainCorpus


def eval_docs(
    corpus: MultiDomainCorpus, n_docs: int, doc_len: int, rng: np.random.Generator
) -> np.ndarray:
    """An eval set of (n_docs, doc_len) token ids in fixed family shares: the facts family
    gets exactly the documents that hold every key's record once (FactsFamily.cover), the
    other families split the rest equally (the first ones take the remainder)."""
    names = list(corpus.families)
    facts = corpus.families.get("facts")
    n_facts = facts.cover_docs(doc_len - 1) if facts is not None else 0
    others = [x for x in names if x != "facts"]
    if n_facts + len(others) > n_docs or (not others and n_facts != n_docs):
        need = n_facts + len(others)
        raise ConfigError(
            f"the eval set has {n_docs} sequences, but covering the facts table's "
            f"{facts.table_KV.shape[0]} keys once takes {n_facts}"
            + (f", and {len(others)} other families need one each." if others else "."),
            f"set benchmark.data.eval_tokens to {need} sequences x seq_len "
            f"({need * (doc_len - 1)} tokens) or more"
            + ("." if others else ", exactly (a facts-only eval set holds the table once)."),
        )
    dtype = np.uint16 if corpus.vocab_size <= 65536 else np.uint32
    docs = np.empty((n_docs, doc_len), dtype=dtype)
    rest = n_docs - n_facts
    counts = {x: rest // len(others) + (i < rest % len(others)) for i, x in enumerate(others)}
    row = 0
    for name in names:
        k = n_facts if name == "facts" else counts[name]
        docs[row : row + k, 0] = START[name]
        family = corpus.families[name]
        content = (
            family.cover(doc_len - 1, rng)
            if name == "facts"
            else family.sample(k, doc_len - 1, rng)
        )
        docs[row : row + k, 1:] = content
        row += k
    return docs
