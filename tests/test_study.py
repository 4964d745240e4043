"""The dense/sparse study's parts: crossings, eval-set coverage, routing and drops, the command."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.results.run_dir import interpolated_crossing
from workloads.corpus import FIRST_CONTENT, START, FactsFamily, MultiDomainCorpus
from workloads.eval_set import eval_docs
from workloads.moe_rules import expert_capacity, scaled_routing

REPO = Path(__file__).resolve().parents[1]


# -- crossings -------------------------------------------------------------------------------
def test_the_crossing_is_interpolated_between_the_evals_that_bracket_it():
    # (loss, step, time s, energy J): 0.80 at step 100 misses 0.72, 0.70 at step 150 meets it
    curve = [(1.20, 50, 1.0, 100.0), (0.80, 100, 2.0, 200.0), (0.70, 150, 3.0, 310.0)]
    (step, t_s, energy), bracketed = interpolated_crossing(curve, 0.72, "lower")
    # (0.80 - 0.72) / (0.80 - 0.70) = 0.8 of the way from the eval at 100 to the one at 150
    assert bracketed
    assert step == pytest.approx(140.0)
    assert t_s == pytest.approx(2.8)
    assert energy == pytest.approx(288.0)


def test_a_curve_that_dips_and_recovers_crosses_at_its_first_bracket():
    # 0.728 -> 0.745 -> 0.704 (the non-monotone curve): the first eval that meets 0.72
    # is the one at 0.704, bracketed by 0.745 before it
    curve = [(0.728, 1300, 0.0), (0.745, 1350, 0.0), (0.704, 1400, 0.0)]
    (step, _), bracketed = interpolated_crossing(curve, 0.72, "lower")
    assert bracketed and step == pytest.approx(1350 + 50 * (0.745 - 0.72) / (0.745 - 0.704))


def test_higher_is_better_crossings_and_the_edge_cases():
    (step,), bracketed = interpolated_crossing([(0.5, 10), (0.9, 20)], 0.8, "higher")
    assert bracketed and step == pytest.approx(17.5)
    assert interpolated_crossing([(0.9, 10), (0.95, 20)], 0.8, "higher") == ((10,), False)
    assert interpolated_crossing([(0.5, 10), (0.6, 20)], 0.8, "higher") is None
    # met exactly at an eval: the crossing is that eval
    assert interpolated_crossing([(1.0, 10), (0.72, 20)], 0.72, "lower") == ((20.0,), True)


# -- the eval set ----------------------------------------------------------------------------
def _records(docs: np.ndarray, period: int) -> list[tuple[int, tuple[int, ...]]]:
    """Whole (key, value) records of facts documents, in order."""
    out = []
    for doc in docs:
        content = doc[1:].astype(np.int64) - FIRST_CONTENT
        for r in range(len(content) // period):
            rec = content[r * period : (r + 1) * period]
            out.append((int(rec[0]), tuple(int(x) for x in rec[1:])))
    return out


@pytest.mark.parametrize("value_tokens,doc_len", [(60, 65), (30, 65), (20, 65)])
def test_the_eval_set_holds_every_fact_exactly_once(value_tokens, doc_len):
    corpus = MultiDomainCorpus(128, 7, families=("markov1", "facts"), facts_shape=(1, value_tokens))
    facts = corpus.families["facts"]
    keys, period = facts.table_KV.shape[0], facts.period
    docs = eval_docs(corpus, 128, doc_len, np.random.default_rng(3))
    fact_docs = docs[docs[:, 0] == START["facts"]]
    per_doc = (doc_len - 1) // period  # 1, 2 and 3 whole records a document
    assert len(fact_docs) == math.ceil(keys / per_doc)
    records = _records(fact_docs, period)[:keys]  # the first `keys` slots: the cover
    assert sorted(k for k, _ in records) == list(range(keys))  # every key once
    for key, value in records:  # and each with its table value
        assert value == tuple(int(x) for x in facts.table_KV[key])
    assert (docs[:, 0] == START["markov1"]).sum() == 128 - len(fact_docs)


def test_an_eval_set_too_small_for_the_table_is_one_config_error():
    corpus = MultiDomainCorpus(128, 7, families=("markov1", "facts"), facts_shape=(1, 60))
    with pytest.raises(ConfigError) as err:
        eval_docs(corpus, 100, 65, np.random.default_rng(0))  # 123 keys need 123 documents
    assert "123" in err.value.problem and "eval_tokens" in err.value.fix


def test_the_synthetic_eval_set_is_the_size_eval_tokens_says():
    from harness.compose import compose_config
    from workloads.data import eval_batch_count

    def batches(tokens):
        cfg, _ = compose_config(["benchmark=lm-dense-tiny", f"benchmark.data.eval_tokens={tokens}"])
        return eval_batch_count(cfg.benchmark)

    assert batches(8192) == 8  # 128 sequences of 64 = 8 batches of 16
    assert batches(8193) == 9  # 129 sequences: rounded up to whole batches
    assert batches(65536) == 64


def test_a_facts_family_longer_than_a_document_cannot_be_covered():
    facts = FactsFamily(16, np.random.default_rng(0), key_tokens=1, value_tokens=80)
    with pytest.raises(ConfigError):
        facts.cover_docs(64)


# -- routing ---------------------------------------------------------------------------------
def test_routing_grows_with_the_experts_by_hand():
    # 16 sequences of 64 = 1024 tokens a step, 64 tokens per expert wanted
    assert scaled_routing(2, 16, 64) == (8, 1.25)  # 128-token groups: 64 per expert
    assert scaled_routing(16, 16, 64) == (1, 1.25)  # one 1024-token group: 64 per expert
    # 32 experts: one group of 1024 is 32 per expert; cf = 1 + 2/sqrt(32) = 1.35355...
    assert scaled_routing(32, 16, 64) == (1, 1.3536)
    assert expert_capacity(1024, 32, 1.3536) == 44  # ceil(1.3536 * 32)


def test_each_moe_result_records_its_capacity():
    from harness.compose import compose_config
    from workloads.moe_rules import routing_extra

    over = ["benchmark=lm-moe-tiny", "benchmark.model.n_experts=32",
            "benchmark.model.routing_groups=1", "benchmark.model.capacity_factor_train=1.3536"]  # fmt: skip
    cfg, _ = compose_config(over)
    assert routing_extra(cfg.benchmark)["routing"] == {
        "experts": 32, "routing_groups": 1, "tokens_per_group": 1024,
        "capacity_factor_train": 1.3536, "capacity_train": 44,  # ceil(1.3536 x 1024 / 32)
        "capacity_factor_eval": 2.0, "capacity_eval": 64,  # ceil(2.0 x 1024 / 32)
    }  # fmt: skip
    dense, _ = compose_config(["benchmark=lm-dense-tiny"])
    assert routing_extra(dense.benchmark) == {}


def test_the_dropped_fraction_of_a_routing_is_the_hand_count():
    torch = pytest.importorskip("torch")
    from workloads.torch.moe import SwitchFFN

    class M:  # 2 groups of 8 tokens, 2 experts, capacity ceil(1.0 * 8 / 2) = 4
        n_experts, routing_groups = 2, 2
        capacity_factor_train, capacity_factor_eval = 1.0, 1.0
        aux_loss_coef, z_loss_coef, jitter = 0.0, 0.0, 0.0

    layer = SwitchFFN(4, 8, M())
    for p in layer.parameters():
        torch.nn.init.normal_(p)
    # group 0 sends 6 tokens to expert 0 (2 over capacity), group 1 sends 5 to expert 1 (1 over)
    experts = torch.tensor([[0, 0, 0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0]])
    probs = torch.nn.functional.one_hot(experts, 2).float() * 0.5 + 0.25

    def route(x_GSD):
        return experts, torch.full(experts.shape, 0.75), probs, probs.log()

    layer.route = route
    y, stats = layer(torch.randn(2, 8, 4))
    assert float(stats["dropped_frac"]) == pytest.approx(3 / 16)
    # the dropped tokens (the 5th and 6th of group 0, the 5th of group 1) get no expert output
    assert torch.all(y[0, 4:6] == 0) and torch.all(y[1, 4] == 0)
    assert torch.all(y[0, :4].abs().sum(-1) > 0)


# -- the command -----------------------------------------------------------------------------
SPEC = """
name: mini
dense: lm-dense-tiny
moe: lm-moe-tiny
overrides: [benchmark.max_steps=40, benchmark.eval_every_steps=20, benchmark.optim.decay_steps=400,
            benchmark.target.threshold=3.0, benchmark.warmup_steps=1]
experts: [2]
bound: true
model_seeds: [1]
data_seeds: [1234]
meter: simulated
"""


def _study(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "study", str(tmp_path / "mini.yaml"),
         "--out", str(tmp_path / "out"), *args],
        capture_output=True, text=True, cwd=REPO, timeout=900,
    )  # fmt: skip


def test_a_study_runs_reports_and_resumes(tmp_path):
    (tmp_path / "mini.yaml").write_text(SPEC)
    first = _study(tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "3/3 runs (0 reused)" in first.stderr
    out = tmp_path / "out"
    manifest = json.loads((out / "study.json").read_text())
    assert [a["name"] for a in manifest["arms"]] == ["dense", "moe-2", "dense-bound"]
    moe = manifest["arms"][1]
    assert moe["routing"] == {"routing_groups": 8, "tokens_per_group": 128,
                              "capacity_factor_train": 1.25, "capacity": 80}  # fmt: skip
    bound = manifest["arms"][2]
    assert abs(bound["params_total"] - moe["params_total"]) / moe["params_total"] < 0.01
    summary = (out / "summary.md").read_text()
    assert "| moe-2 | 2 |" in summary and "8 x 128 tok, cf 1.25, cap 80" in summary
    assert (out / "speedup.png").stat().st_size > 10_000
    # resumable: everything finished is reused; a run left unfinished runs again
    run = out / "runs" / "moe-2" / "m1-d1234"
    data = json.loads((run / "result.json").read_text())
    data["status"] = "running"
    (run / "result.json").write_text(json.dumps(data))
    again = _study(tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "3/3 runs (2 reused)" in again.stderr and "moe-2 m1 d1234" in again.stderr
    assert json.loads((run / "result.json").read_text())["status"] in (
        "success",
        "target_not_reached",
    )
    # a spec that changes an arm reruns that arm only: its runs are another experiment now
    (tmp_path / "mini.yaml").write_text(SPEC + "routing: {capacity_factor: 2.0}\n")
    changed = _study(tmp_path)
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "3/3 runs (2 reused)" in changed.stderr and "moe-2 m1 d1234" in changed.stderr
    assert "cf 2, cap 128" in (out / "summary.md").read_text()


def test_a_bad_study_spec_is_one_line(tmp_path):
    (tmp_path / "mini.yaml").write_text("dense: lm-dense-tiny\nmoe: lm-moe-tiny\nexperts: [1]\n")
    bad = _study(tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "experts=[1]" in bad.stderr


def _fake_run(folder: Path, steps: int, reached: bool, energy: float) -> None:
    folder.mkdir(parents=True)
    evals = [{"step": steps, "t_s": 1.0, "energy_j": energy, "eval_loss": 0.5 if reached else 0.9,
              "reached_target": reached}]  # fmt: skip
    crossing = {"step": steps - 10.0, "t_s": 0.9, "energy_j": energy - 5, "bracketed": True}
    metrics = {"evals": evals, "steps": steps, "energy_total_j": energy,
               "energy_to_target_j": energy if reached else None,
               "target_crossing": crossing if reached else None, "final_eval_loss": 0.5}  # fmt: skip
    result = {"status": "success" if reached else "target_not_reached", "metrics": metrics,
              "windows": [], "workload": {"loss_floor_nats": 0.4}}  # fmt: skip
    (folder / "result.json").write_text(json.dumps(result))


def test_a_run_that_missed_the_target_bounds_its_speed_up(tmp_path):
    from harness.study_report import analyse, summary_text

    arms = [{"name": "dense", "role": "dense", "group": "study", "experts": None},
            {"name": "moe-2", "role": "moe", "group": "study", "experts": 2}]  # fmt: skip
    for arm in arms:
        arm.update(overrides=[], params_total=1, params_active=1, routing=None)
    study = {"name": "t", "spec": "t.yaml", "meter": "simulated", "model_seeds": [1, 2],
             "data_seeds": [7], "arms": arms}  # fmt: skip
    (tmp_path / "study.json").write_text(json.dumps(study))
    _fake_run(tmp_path / "runs/dense/m1-d7", 100, True, 1000.0)
    _fake_run(tmp_path / "runs/dense/m2-d7", 120, True, 1200.0)
    _fake_run(tmp_path / "runs/moe-2/m1-d7", 80, True, 900.0)
    _fake_run(tmp_path / "runs/moe-2/m2-d7", 200, False, 2000.0)  # missed: 200 steps and more
    a = analyse(tmp_path)
    speed = a["arms"][1]["speedup"]["steps_crossing"]
    # crossings: dense 90 and 110; moe 70, and more than its 200 steps for the one that missed
    assert speed["per_seed"] == pytest.approx([90 / 70, 110 / 200])
    assert speed["upper_bound"] == [False, True] and speed["bounded"]
    assert speed["olympic"] == pytest.approx((90 / 70 + 110 / 200) / 2)  # 2 runs: no trim
    assert f"at most {(90 / 70 + 110 / 200) / 2:.2f}" in summary_text(a, "cmd")
    assert a["arms"][1]["reached"] == 1


def test_the_mlperf_log_names_the_fixed_decay_horizon():
    from harness.compose import compose_config
    from harness.results.mlperf_keys import run_header
    from workloads.custom import workload_info

    info = workload_info({"framework": "external"})
    for over, horizon in (([], 600 - 20), (["benchmark.optim.decay_steps=4000"], 4000 - 20)):
        cfg, _ = compose_config(["benchmark=lm-dense-tiny", *over])
        logged = {k: v for k, v, _ in run_header(cfg, info)}
        assert logged["opt_learning_rate_decay_steps"] == horizon
