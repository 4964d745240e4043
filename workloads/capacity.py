"""How much knowledge a benchmark's corpus holds against how much its model can store.

A pair compares dense and sparse models fairly only where the data rewards parameters: the
`facts` family (workloads/corpus.py) holds a table of `table_bits`; a model stores at best about
2 bits per parameter after ~1000 exposures of each fact, and about 1 bit after ~100 (Allen-Zhu &
Li 2024, Physics of Language Models 3.3). `exposures` is how often a run of `max_steps` shows
each fact. A table over 2 bits per parameter of the dense model but under that of the MoE's
total is storage-bound (only the MoE can hold it); a smaller one, seen a few hundred times, is
learning-bound: both could hold it in the end, and the model with more parameters learns it in
fewer steps. Both favour the MoE; the figures go into result.json (workload.extra.knowledge) so
a reader sees which regime a comparison ran in."""

from __future__ import annotations

import math
from typing import Any

from workloads.corpus import FIRST_CONTENT

BEST_BITS_PER_PARAM = 2.0  # Allen-Zhu & Li 2024, at ~1000 exposures per fact


def knowledge_budget(bench, params_total: int) -> dict[str, Any] | None:
    """The facts table's size, how often a full run shows each fact, and the table's bits per
    parameter; None where the benchmark's data has no facts family."""
    data, model = bench.data, bench.model
    if data.kind != "synthetic" or "facts" not in data.families:
        return None
    alphabet = model.vocab_size - FIRST_CONTENT
    keys = data.facts_keys or alphabet**data.facts_key_tokens
    table_bits = keys * data.facts_value_tokens * math.log2(alphabet)
    period = data.facts_key_tokens + data.facts_value_tokens
    # one document per sequence, its family drawn uniformly; the start token is not a record
    fact_tokens = bench.max_steps * bench.global_batch * model.seq_len / len(data.families)
    bits_per_param = table_bits / params_total
    return {
        "facts_keys": keys,
        "facts_table_bits": table_bits,
        "exposures_per_fact": fact_tokens / (keys * period),
        "table_bits_per_param": bits_per_param,
        "regime": "storage-bound" if bits_per_param > BEST_BITS_PER_PARAM else "learning-bound",
    }


def knowledge_extra(bench, params_total: int) -> dict[str, Any]:
    """{"knowledge": budget} for WorkloadInfo.extra, or {} where there is no facts table."""
    budget = knowledge_budget(bench, params_total)
    return {"knowledge": budget} if budget else {}
