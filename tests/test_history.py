"""`joulebench history`'s statistics on synthetic series, judged against ruptures itself.

"The library's own answer" is ruptures' KernelCPD (linear kernel, PELT) told the true noise of
the series, with the same penalty form; joulebench estimates the noise from the data and keeps
only changes Welch's test supports, so on these series the two must agree. Every series comes
from a fixed seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import ruptures

from harness.history.changes import (
    BETA,
    MIN_SEGMENT,
    Points,
    check_series,
    commits_of,
    detect,
    points_of,
    relative,
)

KEY = ("sys", "lm-dense-tiny", "torch", "measured", "cfg")
NOISE = 0.02


def library(values: np.ndarray, sigma: float) -> list[int]:
    """ruptures on its own, told the true noise: the first index of each new segment."""
    y = relative(values).reshape(-1, 1)
    algo = ruptures.KernelCPD(kernel="linear", min_size=MIN_SEGMENT).fit(y)
    return algo.predict(pen=BETA * sigma**2 * math.log(len(values)))[:-1]


def series(seed: int, n: int = 30, steps: tuple[tuple[int, float], ...] = ()) -> np.ndarray:
    """n commits of 100 W with NOISE relative noise; each (commit, factor) multiplies the
    commits from that one (1-based) on."""
    x = 100.0 * (1.0 + NOISE * np.random.default_rng(seed).standard_normal(n))
    for commit, factor in steps:
        x[commit - 1 :] *= factor
    return x


def points(values, metric: str = "avg_power_w") -> Points:
    """One run per commit, on one runner, through the path `check` takes from stored rows."""
    runner = {"device_uuids": "GPU-1", "driver": "550.54", "power_limit_w": "700",
              "clocks": "sm max 1980 MHz, mem max 2619 MHz"}  # fmt: skip
    rows = [
        {"commit_sha": f"{i + 1:040x}", "committed_at": "", "committed_ts": float(i), **runner,
         metric: float(v)}
        for i, v in enumerate(values)
    ]  # fmt: skip
    return points_of(commits_of(rows), metric)


@pytest.mark.parametrize("seed", [0, 1, 3, 4, 5])
def test_a_five_percent_step_at_commit_20_is_found_at_20_as_the_library_finds_it(seed):
    x = series(seed, steps=((20, 1.05),))
    found, sigma = detect(x)
    assert found == library(x, NOISE)
    assert len(found) == 1 and abs((found[0] + 1) - 20) <= 1  # commit 20 is index 19
    assert 0.5 * NOISE < sigma < 1.5 * NOISE  # the noise it estimated is the noise put in
    check = check_series(KEY, "avg_power_w", points(x), 0.02)
    (change,) = check.changes
    assert change.direction == "up" and change.low < 0.05 < change.high  # +5% inside its interval
    assert change.p_value < 1e-3 and change.runner == ""
    assert check.verdict.status == "regression"  # +5% is beyond a 2% tolerance, all of it


def test_two_steps_are_both_found_where_the_library_finds_them():
    for seed in (0, 1, 2):
        x = series(seed, n=40, steps=((15, 1.08), (30, 0.92)))
        found, _ = detect(x)
        assert found == library(x, NOISE)
        assert [i + 1 for i in found] in ([15, 30], [14, 30], [15, 31], [16, 30], [15, 29])
        changes = check_series(KEY, "avg_power_w", points(x), 0.05).changes
        assert [c.direction for c in changes] == ["up", "down"]


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_a_one_percent_step_under_two_percent_noise_is_inconclusive(seed):
    """Neither ruptures nor joulebench finds a change this small; whether the newest commits
    regressed by the tolerance (1%) the noise cannot say, so the verdict is inconclusive. At a
    5% tolerance the same series is ok: whatever the step is, it is within 5%."""
    x = series(seed, steps=((20, 1.01),))
    assert detect(x)[0] == library(x, NOISE) == []
    tight = check_series(KEY, "avg_power_w", points(x), 0.01).verdict
    assert tight.status == "inconclusive" and "noise hides" in tight.reason
    assert check_series(KEY, "avg_power_w", points(x), 0.05).verdict.status == "ok"


def test_at_most_five_percent_of_200_flat_series_show_a_change():
    flagged = sum(bool(detect(series(1000 + i))[0]) for i in range(200))
    assert flagged <= 10, flagged  # joulebench's answer (measured: 3 of 200)
    raw = sum(bool(library(series(1000 + i), NOISE)) for i in range(200))
    assert raw <= 10, raw  # the library told the true noise (measured: 2 of 200)
    oks = sum(
        check_series(KEY, "avg_power_w", points(series(1000 + i)), 0.05).verdict.status == "ok"
        for i in range(200)
    )
    assert oks >= 190, oks  # flat is ok at a 5% tolerance (measured: 198 of 200)


def test_higher_is_better_metrics_read_worse_the_other_way_and_exact_values_need_no_noise():
    x = np.r_[[500.0] * 6, [400.0] * 4]  # tokens/J down 20%: energy per token up 25%
    check = check_series(KEY, "tokens_per_joule", points(x, "tokens_per_joule"), 0.05)
    (change,) = check.changes
    assert change.index == 6 and change.direction == "down"
    assert change.effect == pytest.approx(-0.2) and change.low == change.high == change.effect
    assert check.verdict.status == "regression"
    assert check.verdict.worse[0] == pytest.approx(0.25)  # 500/400 - 1
    better = check_series(KEY, "tokens_per_joule", points(x[::-1], "tokens_per_joule"), 0.05)
    assert better.verdict.status == "ok" and better.changes[0].direction == "up"


def test_a_change_too_close_to_the_newest_commit_is_inconclusive():
    x = np.r_[[100.0] * 8, [120.0] * 2]
    check = check_series(KEY, "avg_power_w", points(x), 0.05)
    assert [c.index for c in check.changes] == [8]
    assert check.verdict.status == "inconclusive"
    assert "2 commit(s) after it; 3 are needed" in check.verdict.reason
