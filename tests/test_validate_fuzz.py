"""Property test: random corruptions of result.json and power.csv always give findings, never a crash."""

from __future__ import annotations

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.submission.validate import validate_submission
from tests.submission_helpers import runs_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def valid_sub(tiny_package):
    _, _, sub = tiny_package  # copied before each corruption, never written
    assert validate_submission(sub).valid
    return sub


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            if path[-1:] in (("details",), ("extra",)):
                continue  # free-form by design
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path, node


def _wrong_type(old):
    """A replacement of a different JSON type than `old`, so the schema must object."""
    if isinstance(old, bool):
        return st.one_of(st.text(min_size=1), st.just(["x"]))
    if isinstance(old, (int, float)):
        return st.one_of(st.text(min_size=1), st.just(["x"]), st.just({"x": "y"}), st.booleans())
    if isinstance(old, str):
        return st.one_of(st.integers(), st.just(["x"]), st.just({"x": "y"}), st.booleans())
    return st.one_of(st.just({"x": "y"}), st.just(["x"]))


corruption = st.one_of(
    st.tuples(st.just("truncate-result"), st.floats(0.0, 0.999)),
    st.tuples(st.just("retype-result"), st.integers(0, 10**6)),
    st.tuples(st.just("nan-result"), st.integers(0, 10**6)),
    st.tuples(st.just("truncate-trace"), st.floats(0.05, 0.999)),
    st.tuples(st.just("garbage-trace"), st.binary(min_size=1, max_size=64)),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(which=st.integers(0, 4), how=corruption, data=st.data())
def test_random_corruption_gives_findings_and_never_raises(
    valid_sub, tmp_path_factory, which, how, data
):
    sub = tmp_path_factory.mktemp("c") / "sub"
    shutil.copytree(valid_sub, sub)
    run = runs_of(sub)[which]
    kind, arg = how
    result_path, trace_path = run / "result.json", run / "power.csv"
    if kind == "truncate-result":
        raw = result_path.read_bytes()
        result_path.write_bytes(raw[: int(len(raw) * arg)])
    elif kind in ("retype-result", "nan-result"):
        result = json.loads(result_path.read_text())
        leaves = [(p, v) for p, v in _leaves(result) if p]
        path, old = leaves[arg % len(leaves)]
        node = result
        for key in path[:-1]:
            node = node[key]
        if kind == "nan-result":
            node[path[-1]] = float("nan")
            result_path.write_text(json.dumps(result))  # writes the non-JSON token NaN
        else:
            node[path[-1]] = data.draw(_wrong_type(old))
            result_path.write_text(json.dumps(result))
    elif kind == "truncate-trace":
        raw = trace_path.read_bytes()
        trace_path.write_bytes(raw[: max(1, int(len(raw) * arg))])
    else:
        lines = trace_path.read_bytes().splitlines(keepends=True)
        lines.insert(1 + len(lines) // 2, arg + b"\n")
        trace_path.write_bytes(b"".join(lines))
    report = validate_submission(sub)  # must not raise
    assert report.findings, f"{kind} {arg!r} went unnoticed"
    assert not report.valid
