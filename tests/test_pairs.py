"""The dense/MoE comparison against hand-computed steps, energies, ratios and readings."""

from __future__ import annotations

import math

import pytest

from harness.submission.pairs import compare_pairs, reading


def _run(benchmark: str, seed: int, steps: float, energy_j: float) -> dict:
    reached = math.isfinite(steps)
    return {
        "_path": f"/runs/{benchmark}/{seed}",
        "benchmark": benchmark,
        # the pair is declared in the run's config (lm-dense-x and lm-moe-x are pair "x")
        "config": {
            "benchmark": {
                "pair": benchmark.split("-", 2)[-1],
                "role": "moe" if "-moe-" in benchmark else "dense",
            }
        },
        "seed": seed,
        "system": {"accelerator": {"model": "cpu"}},
        "workload": {"framework": "torch"},
        "metrics": {
            "reached_target": reached,
            "energy_to_target_j": energy_j if reached else None,
            "evals": [
                {"step": 50, "reached_target": False},
                *([{"step": int(steps), "reached_target": True}] if reached else []),
            ],
        },
    }


def test_steps_energy_ratio_and_spread_by_hand():
    dense = [
        _run("lm-dense-x", s, st, e)
        for s, st, e in zip(
            range(1, 6), [200, 180, 220, 200, 240], [100, 90, 110, 100, 120], strict=True
        )
    ]
    # the MoE's seed 5 never reached the target: it counts as infinitely costly
    moe = [
        _run("lm-moe-x", s, st, e)
        for s, st, e in zip(
            range(1, 6), [150, 140, 160, 150, math.inf], [90, 84, 96, 90, 0], strict=True
        )
    ]
    (p,) = compare_pairs(dense + moe)
    assert (p.dense, p.moe, p.dense_runs, p.moe_runs) == ("lm-dense-x", "lm-moe-x", 5, 5)
    # olympic means: drop the best and worst run of each side
    assert p.dense_steps == pytest.approx((200 + 200 + 220) / 3)
    assert p.moe_steps == pytest.approx((150 + 150 + 160) / 3)
    assert p.dense_energy_j == pytest.approx((100 + 100 + 110) / 3)
    assert p.moe_energy_j == pytest.approx((90 + 90 + 96) / 3)
    assert p.steps_ratio == pytest.approx(460 / 620)
    assert p.energy_ratio == pytest.approx(276 / 310)
    assert p.step_cost_ratio == pytest.approx(1.2)  # 0.6 J a step against 0.5
    # per seed, matched: 0.9, 84/90, 96/110, 0.9 (seed 5 has no finite MoE energy)
    assert p.seed_matched and p.seed_ratios == pytest.approx(sorted([0.9, 84 / 90, 96 / 110, 0.9]))
    assert (p.ratio_olympic, p.ratio_min, p.ratio_max) == pytest.approx((0.9, 96 / 110, 84 / 90))
    assert p.reading == (
        "MoE uses 0.89x dense's energy to target (less): fewer steps (0.74x) dominate "
        "costlier steps (1.20x per step)."
    )


def test_the_reading_names_the_dominant_effect():
    assert reading(0.95, 1.3, 1.24) == (
        "MoE uses 1.24x dense's energy to target (more): costlier steps (1.30x per step) "
        "dominate fewer steps (0.95x)."
    )
    assert reading(None, None, None).startswith("no reading")


def test_unmatched_seeds_compare_every_run_and_lone_sides_are_skipped():
    runs = [
        _run("lm-dense-y", 1, 100, 10.0),
        _run("lm-moe-y", 7, 80, 12.0),
        _run("lm-moe-z", 1, 5, 1),
    ]
    (p,) = compare_pairs(runs)
    assert not p.seed_matched and p.seed_ratios == pytest.approx([1.2])
    assert p.steps_ratio == pytest.approx(0.8) and p.step_cost_ratio == pytest.approx(1.5)


def test_the_pair_plot_draws_both_sides(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from harness.report import plot_pairs, summary_markdown

    runs = [_run("lm-dense-x", s, 200 + 10 * s, 100.0 + s) for s in range(1, 4)]
    runs += [_run("lm-moe-x", s, 150 + 10 * s, 90.0 + s) for s in range(1, 4)]
    plot_pairs(runs, tmp_path / "pairs.png")
    assert (tmp_path / "pairs.png").stat().st_size > 10_000
    for r in runs:
        r["meters"] = [{"provenance": "simulated"}]
    text = summary_markdown(runs, [])
    assert "| cpu | lm-dense-x vs lm-moe-x | torch | 220 / 170 (0.77x) |" in text
    assert "n=3" in text and "fewer steps (0.77x) dominate" in text


def test_pairs_are_declared_never_guessed_from_names():
    dense = [_run("lm-dense-x", s, 200, 100) for s in range(1, 4)]
    moe = [_run("lm-moe-x", s, 150, 90) for s in range(1, 4)]
    for r in dense + moe:
        r["config"] = {"benchmark": {}}  # names that look like a pair, nothing declared
    assert compare_pairs(dense + moe) == []
    # declared under other names, they pair
    for r in dense:
        r["benchmark"], r["config"]["benchmark"] = "a", {"pair": "p", "role": "dense"}
    for r in moe:
        r["benchmark"], r["config"]["benchmark"] = "b", {"pair": "p", "role": "moe"}
    (c,) = compare_pairs(dense + moe)
    assert (c.dense, c.moe) == ("a", "b") and c.steps_ratio == pytest.approx(0.75)


def test_a_role_that_is_not_the_model_kind_is_a_config_error(capsys):
    from harness.cli import main

    assert main(["run", "benchmark=lm-moe-tiny", "benchmark.role=dense", "--print-config"]) == 2
    assert "benchmark.role" in capsys.readouterr().err
