"""The multi-domain synthetic corpus: exact per-token NLL (the loss floor) by hand and by law."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.errors import ConfigError
from workloads.corpus import (
    FAMILIES,
    FIRST_CONTENT,
    SEP,
    CopyFamily,
    DyckFamily,
    MarkovFamily,
    MultiDomainCorpus,
)

C = FIRST_CONTENT


def _markov1_two_states():
    fam = MarkovFamily(2, np.random.default_rng(0), order=1, successors=2, concentration=1.0)
    fam.succ_SK = np.array([[0, 1], [0, 1]])
    fam.prob_SK = np.array([[0.5, 0.5], [1.0, 0.0]])
    return fam


def test_markov_nll_by_hand():
    fam = _markov1_two_states()
    nll = fam.nll(np.array([[0, 0, 1, 0]]) + C)
    # uniform first token, then 0->0 (1/2), 0->1 (1/2), 1->0 (1)
    assert nll[0].tolist() == pytest.approx([math.log(2), math.log(2), math.log(2), 0.0])


def test_copy_nll_by_hand():
    fam = CopyFamily(10, np.random.default_rng(0), min_span=3, max_span=4)
    a, b, c, d = C + 1, C + 2, C + 3, C + 4
    three = fam.nll(np.array([[a, b, c, SEP, a, b, c, SEP]]))[0]
    # three uniform tokens; the span ends at 3 w.p. 1/2 (lengths 3 or 4); the rest is a copy
    assert three.tolist() == pytest.approx([math.log(10)] * 3 + [math.log(2)] + [0.0] * 4)
    four = fam.nll(np.array([[a, b, c, d, SEP, a, b, c]]))[0]
    # the 4th token: span goes on (1/2) and is uniform (1/10); the separator is then certain
    assert four.tolist() == pytest.approx([math.log(10)] * 3 + [math.log(20), 0.0] + [0.0] * 3)


def test_dyck_nll_by_hand():
    fam = DyckFamily(10, np.random.default_rng(0), types=2, max_depth=2, p_open=0.5)
    o0, o1, c0, c1 = C + 0, C + 1, C + 2, C + 3
    nll = fam.nll(np.array([[o0, o1, c1, c0, o1]]))[0]
    # depth 0 must open (1/2 per type); depth 1 opens w.p. 1/2 (1/4 per type); depth 2 = max
    # must close its top (certain); depth 1 closes w.p. 1/2; depth 0 opens again
    assert nll.tolist() == pytest.approx([math.log(2), math.log(4), 0.0, math.log(2), math.log(2)])


@pytest.mark.parametrize("family", FAMILIES)
def test_scorer_is_a_normalised_distribution_matching_the_sampler(family):
    corpus = MultiDomainCorpus(24, seed=3, families=(family,))
    docs = corpus.sample(64, 20, np.random.default_rng(1))
    nll = corpus.optimal_nll(docs)
    assert np.isfinite(nll).all()  # the sampler never emits what the scorer calls impossible
    for doc in docs[:4]:
        for t in (1, 7, 15):  # p(next | prefix) over every possible next token sums to 1
            variants = np.repeat(doc[None, :], 24, axis=0)
            variants[:, t] = np.arange(24)
            p = np.exp(-corpus.optimal_nll(variants)[:, t - 1])
            assert p.sum() == pytest.approx(1.0, abs=1e-9)


def test_markov1_sampler_frequencies_follow_the_table():
    fam = MarkovFamily(6, np.random.default_rng(0), order=1, successors=3, concentration=1.0)
    x = fam.sample(4000, 30, np.random.default_rng(1)) - C
    counts = np.zeros((6, 6))
    np.add.at(counts, (x[:, :-1].ravel(), x[:, 1:].ravel()), 1)
    freq = counts / counts.sum(axis=1, keepdims=True)
    table = np.zeros((6, 6))
    np.add.at(table, (np.arange(6)[:, None], fam.succ_SK), fam.prob_SK)
    np.testing.assert_allclose(freq, table, atol=0.02)


def test_documents_start_with_their_family_and_the_floor_is_deterministic():
    corpus = MultiDomainCorpus(64, seed=1234)
    a = corpus.sample(200, 33, np.random.default_rng(5))
    b = MultiDomainCorpus(64, seed=1234).sample(200, 33, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a[:, 0])) <= set(range(len(FAMILIES)))
    floor = corpus.optimal_nll(a).mean()
    assert 0.3 < floor < math.log(64)  # structured, far below a uniform guess


def test_facts_floor_and_table_size_by_hand():
    """Facts over a 3-token alphabet: 9 two-token keys, each with a two-token value. A record
    costs 2 ln 3 nats (its key tokens are uniform; its value is determined), so 8 content
    tokens (two records) cost 4 ln 3, and a truncated record's key still costs ln 3 a token."""
    from workloads.corpus import START, FactsFamily

    corpus = MultiDomainCorpus(vocab_size=FIRST_CONTENT + 3, seed=7, families=("facts",))
    facts = corpus.families["facts"]
    assert isinstance(facts, FactsFamily) and facts.table_KV.shape == (9, 2)
    assert facts.bits() == pytest.approx(9 * 2 * np.log2(3))
    docs = corpus.sample(50, 1 + 8, np.random.default_rng(0))
    assert (docs[:, 0] == START["facts"]).all()
    nll = corpus.optimal_nll(docs)
    assert nll.sum(axis=1) == pytest.approx(np.full(50, 4 * np.log(3)))
    assert nll[:, [0, 1, 4, 5]] == pytest.approx(np.full((50, 4), np.log(3)))
    assert (nll[:, [2, 3, 6, 7]] == 0).all()
    # the value really is the table's: a key (a, b) is a * 3 + b, and its value follows it
    content = docs[:, 1:].astype(np.int64) - FIRST_CONTENT
    key = content[:, 0] * 3 + content[:, 1]
    assert (content[:, 2:4] == facts.table_KV[key]).all()
    wrong = docs.copy()
    wrong[:, 3] = FIRST_CONTENT + (wrong[:, 3] - FIRST_CONTENT + 1) % 3
    assert np.isinf(corpus.optimal_nll(wrong)[:, 2]).all()
    short = corpus.sample(20, 1 + 6, np.random.default_rng(1))  # k k v v k k
    assert corpus.optimal_nll(short).sum(axis=1) == pytest.approx(np.full(20, 4 * np.log(3)))


def test_the_facts_pair_is_sized_as_its_yaml_says():
    from harness.compose import compose_config

    for name in ("lm-dense-facts-tiny", "lm-moe-facts-tiny"):
        cfg, _ = compose_config([f"benchmark={name}"])
        d, m = cfg.benchmark.data, cfg.benchmark.model
        corpus = MultiDomainCorpus(
            m.vocab_size,
            d.seed,
            d.successors,
            d.concentration,
            tuple(d.families),
            (d.facts_key_tokens, d.facts_value_tokens),
        )
        facts = corpus.families["facts"]
        assert facts.table_KV.shape == (123, 60)
        assert facts.bits() == pytest.approx(123 * 60 * np.log2(123))  # 51.2 kbit
        assert round(facts.bits()) == 51_236
    assert cfg.benchmark.model.n_experts == 8 and cfg.benchmark.target.threshold == 0.72


def _budget(name: str, *overrides: str):
    from harness.compose import compose_config
    from workloads.capacity import knowledge_budget
    from workloads.flops import transformer_param_counts

    cfg, _ = compose_config([f"benchmark={name}", *overrides])
    params = transformer_param_counts(cfg.benchmark.model).total
    return params, knowledge_budget(cfg.benchmark, params)


def test_knowledge_budgets_of_the_facts_pairs_by_hand():
    """The figures the YAML comments state, computed by hand from the shapes."""
    # facts-tiny: 123 one-token keys x 60 value tokens; 2000 steps x 16 x 64 tokens, half facts
    params, tiny = _budget("lm-dense-facts-tiny")
    assert params == 106_816
    assert tiny["facts_keys"] == 123
    assert tiny["facts_table_bits"] == pytest.approx(123 * 60 * math.log2(123))
    assert tiny["exposures_per_fact"] == pytest.approx(2000 * 16 * 64 / 2 / (123 * 61))  # 136.5
    assert tiny["table_bits_per_param"] == pytest.approx(51_235.7 / 106_816, rel=1e-5)  # 0.48
    assert tiny["regime"] == "learning-bound"
    moe_params, moe = _budget("lm-moe-facts-tiny")
    assert moe["facts_table_bits"] == tiny["facts_table_bits"] and moe_params == 336_704
    # small v3: 2,740 two-token keys x 60 value tokens; 2000 steps x 128 x 256, half facts
    params, small = _budget("lm-dense-small")
    # 4 layers x (4 x 256^2 + 2 x 256 x 1024 + 2 x 256) + 512 x 256 + 256
    assert params == 4 * (4 * 256**2 + 2 * 256 * 1024 + 2 * 256) + 512 * 256 + 256 == 3_279_104
    assert small["facts_keys"] == 2740
    assert small["facts_table_bits"] == pytest.approx(2740 * 60 * math.log2(507))  # 1.48 Mbit
    assert small["exposures_per_fact"] == pytest.approx(2000 * 128 * 256 / 2 / (2740 * 62))
    assert 0.45 < small["table_bits_per_param"] < 0.46
    moe_params, moe = _budget("lm-moe-small")
    # two MoE layers each add 7 more experts' FFNs and a 256 x 8 router
    assert moe_params == params + 2 * (7 * 2 * 256 * 1024 + 256 * 8) == 10_623_232
    assert moe["table_bits_per_param"] == pytest.approx(small["facts_table_bits"] / 10_623_232)


def test_a_table_over_two_bits_per_parameter_is_storage_bound():
    # every one of 507^3 three-token keys x 60 values = 70 Gbit against 3.3M parameters
    _, big = _budget(
        "lm-dense-small", "benchmark.data.facts_key_tokens=3", "benchmark.data.facts_keys=null"
    )
    assert big["table_bits_per_param"] > 200 and big["regime"] == "storage-bound"
    params, none = _budget("lm-dense-tiny")  # no facts family: nothing to budget
    assert none is None and params > 0
    _, text = _budget("lm-dense-text-small", "benchmark.data.path=x.bin")
    assert text is None  # real text: the table is unknown


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_result_json_records_the_knowledge_budget(tmp_path, framework):
    from tests.helpers import short_run

    result = short_run(str(tmp_path / "r"), "benchmark=lm-moe-facts-tiny", f"framework={framework}")
    knowledge = result["workload"]["extra"]["knowledge"]
    _, expected = _budget("lm-moe-facts-tiny", "benchmark.max_steps=20")  # short_run's
    assert knowledge == pytest.approx(expected) and knowledge["regime"] == "learning-bound"


def test_a_facts_table_of_fewer_keys_than_strings_scores_its_key_tokens_exactly():
    """facts_keys=7 of the 10^2 two-token strings: a key's first token has the probability of
    its prefix among the 7 keys, its second the share of that prefix's keys; values p = 1."""
    from workloads.corpus import FIRST_CONTENT, FactsFamily

    family = FactsFamily(10, np.random.default_rng(0), key_tokens=2, value_tokens=3, keys=7)
    keys = family.key_ids_K
    docs = family.sample(500, 20, np.random.default_rng(1))
    p = family.probs(docs)
    local = docs.astype(int) - FIRST_CONTENT
    firsts = keys // 10
    for n, t in [(0, 0), (3, 5), (7, 10)]:  # record starts: the key's first token
        expected = np.sum(firsts == local[n, t]) / 7
        assert p[n, t] == pytest.approx(expected)
        second = np.sum(keys == local[n, t] * 10 + local[n, t + 1]) / np.sum(firsts == local[n, t])
        assert p[n, t + 1] == pytest.approx(second)
    assert np.all(p[:, 2:5] == 1.0)  # the first record's value tokens
    assert set(local[:, 0] * 10 + local[:, 1]) <= set(keys.tolist())
    # a token no key starts with is impossible; a key outside the table has no value
    outside = docs.copy()
    outside[0, 0] = FIRST_CONTENT + next(d for d in range(10) if d not in set(firsts.tolist()))
    assert family.probs(outside)[0, 0] == 0.0
    assert family.bits() == pytest.approx(7 * 3 * math.log2(10))
    with pytest.raises(ConfigError, match="facts_keys=101"):
        FactsFamily(10, np.random.default_rng(0), key_tokens=2, keys=101)
