"""The result schema checks what it writes: a real record passes, corruptions are named."""

from __future__ import annotations

import copy
import math

import pytest

from harness.results.schema import check_result
from tests.helpers import short_run


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return short_run(str(tmp_path_factory.mktemp("schema") / "r"))


def test_a_written_result_conforms(good):
    assert check_result(good) == []


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda r: r.pop("run_id"), "result.run_id: missing"),
        (lambda r: r.__setitem__("status", "great"), "result.status"),
        (lambda r: r.__setitem__("schema_version", "0"), "schema_version"),
        (
            lambda r: r["metrics"].__setitem__("energy_total_j", "12"),
            "result.metrics.energy_total_j: expected a number",
        ),
        (lambda r: r["metrics"].__setitem__("energy_total_j", math.inf), "not a finite number"),
        (lambda r: r["windows"][0].__setitem__("t_start_ns", 1.5), "expected an integer"),
        (lambda r: r["meters"][0].__setitem__("domains", "sim:0"), "expected a list"),
        (lambda r: r.__setitem__("metrics", []), "result.metrics: expected an object"),
    ],
)
def test_corruptions_are_reported(good, mutate, needle):
    bad = copy.deepcopy(good)
    mutate(bad)
    problems = check_result(bad)
    assert any(needle in p for p in problems), problems


def test_non_objects_are_findings_not_crashes():
    assert check_result(None) and check_result([1, 2]) and check_result("x")
