"""The MLPerf rules as the ruleset states them, checked against mlperf-logging's own code and
tables, and against energies worked by hand; the readers of MLPerf's line format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.meters.replay import ReplaySource
from harness.results import mlperf_power as mp
from harness.results.mllog import parse_mllog
from harness.submission.ruleset import load_ruleset

RULES = load_ruleset("v1").mlperf
V40 = RULES.rounds["4.0"].rule
V41 = RULES.rounds["4.1"].rule
mlperf_logging = pytest.importorskip("mlperf_logging")
from mlperf_logging.benchmark_meta import get_result_file_counts  # noqa: E402
from mlperf_logging.compliance_checker.mlp_parser import parse_file  # noqa: E402
from mlperf_logging.result_summarizer import result_summarizer as rs  # noqa: E402


def line(key, t, value=None, metadata=""):
    record = {"namespace": "", "time_ms": t, "event_type": "POINT_IN_TIME", "key": key,
              "value": value, "metadata": metadata}  # fmt: skip
    return ":::MLLOG " + json.dumps(record)


def node(*lines) -> str:
    return "\n".join(lines) + "\n"


# readings 100 W at 2 s, 300 W at 3 s, from a start at 1 s: 100 x 1 + 300 x 1 = 400 J over 2 s
ORDERED = node(line("power_measurement_start", 1000), line("power_reading", 2000, 100),
               line("power_reading", 3000, 300), line("power_measurement_stop", 3000))  # fmt: skip
# SMC's stop == start, written last: v4.0 stops at the latest reading (400 J over 2 s)
STOP_AT_START = node(line("power_measurement_start", 1000), line("power_reading", 2000, 100),
                     line("power_reading", 3000, 300), line("power_measurement_stop", 1000))  # fmt: skip
# a reading out of order: v4.0 adds 50 W x (1.5 - 3) s, today's summarizer sorts first
REORDERED = node(line("power_measurement_start", 1000), line("power_reading", 2000, 100),
                 line("power_reading", 3000, 300), line("power_reading", 1500, 50),
                 line("power_measurement_stop", 3000))  # fmt: skip
# conversion_eff after the stop: v4.0 never reads it, today's summarizer does
EFF_AFTER = node(line("power_measurement_start", 1000), line("power_reading", 2000, 100),
                 line("power_reading", 3000, 300), line("power_measurement_stop", 3000),
                 line("conversion_eff", 3000, 0.5, {"measurement_type": "AC"}))  # fmt: skip


@pytest.mark.parametrize(
    ("text", "v40_j", "v41_j"),
    [
        (ORDERED, 400 * 4 / 2, 400 * 4 / 2),  # x time to train 4 s / power window 2 s
        (STOP_AT_START, 400 * 4 / 2, None),  # today's summarizer divides by zero
        (REORDERED, (100 + 300 + 50 * -1.5) * 4 / 2, (50 * 0.5 + 100 * 0.5 + 300) * 4 / 2),
        (EFF_AFTER, 400 * 4 / 2, 0.5 * 400 * 4 / 2),
    ],
)
def test_node_energy_by_hand_and_by_todays_summarizer(tmp_path, text, v40_j, v41_j):
    records = mp.parse(text).records
    assert mp.node_energy_j(records, 4000, V40).energy_j == pytest.approx(v40_j)
    path = tmp_path / "node_0.txt"
    path.write_text(text)
    loglines = parse_file(str(path), "5.0.0")[0]
    if v41_j is None:
        with pytest.raises(mp.PowerLogError, match="divides by zero"):
            mp.node_energy_j(records, 4000, V41)
        with pytest.raises(ZeroDivisionError):
            rs._compute_power_node(loglines, 4000)
        return
    ours = mp.node_energy_j(records, 4000, V41).energy_j
    assert ours == pytest.approx(v41_j) and ours == rs._compute_power_node(loglines, 4000)


def test_a_switch_counts_its_estimate_and_never_its_readings():
    estimate = node(line("conversion_eff", 0, 0.9), line("interconnect_power_est", 0, 1000))
    assert mp.switch_energy_j(mp.parse(estimate).records, 2000) == (0.9 * 1000 * 2, 1000)
    measured = node(line("power_measurement_start", 0), line("power_reading", 1000, 700))
    assert mp.switch_energy_j(mp.parse(measured).records, 2000) == (0.0, None)


def test_lines_are_read_as_mlcommons_parser_reads_them(tmp_path):
    text = "\n".join([
        "0: " + line("run_start", 1000),  # rank-prefixed
        "garbage",  # no token: not a record
        ":::MLLOG {not json",  # bad JSON: skipped
        line("run_stop", "1.2.3"),  # bad time: skipped
        "  12: " + line("run_stop", 5000),
    ])  # fmt: skip
    log = mp.parse(text)
    assert [(r.key, r.time_ms) for r in log.records] == [
        ("run_start", 1000.0),
        ("run_stop", 5000.0),
    ]
    assert log.skipped == 2
    path = tmp_path / "result_0.txt"
    path.write_text(text)
    theirs, failed = parse_file(str(path), "5.0.0")
    assert [(x.key, x.timestamp) for x in theirs] == [("run_start", 1000.0), ("run_stop", 5000.0)]
    assert len(failed) == log.skipped
    assert mp.run_times_ms(log.records) == rs._query_run_start_stop(theirs)
    assert [r["key"] for r in parse_mllog(text)] == ["run_start", "run_stop", "run_stop"]


@pytest.mark.parametrize("bad", ['"NaN"', "NaN", "1e400", '"x"', "true"])
def test_a_value_the_summarizer_cannot_add_is_refused(bad):
    text = node(line("interconnect_power_est", 0, 1).replace('"value": 1', f'"value": {bad}'))
    with pytest.raises(mp.PowerLogError):
        mp.switch_energy_j(mp.parse(text).records, 1000)


def test_the_ruleset_tables_are_mlperf_loggings():
    """Result file counts from mlperf_logging.benchmark_meta, quality targets from the closed
    compliance rules of each round, and the olympic drop from the summarizer's own code."""
    import inspect

    counts = get_result_file_counts("training")
    source = inspect.getsource(rs._compute_strong_score_standalone)
    assert 'max_dropped_scores = 4 if benchmark == "unet3d" else 1' in source
    rules_dir = Path(mlperf_logging.__file__).parent / "compliance_checker"
    for name, b in RULES.benchmarks.items():
        assert b.runs == counts[name], name
        assert b.drop == (4 if name == "unet3d" else 1), name
        for rnd in RULES.rounds.values():
            path = rules_dir / f"training_{rnd.mlcommons_ruleset}" / f"closed_{name}.yaml"
            if not path.is_file():
                continue  # not a benchmark of that round
            text = path.read_text()
            if name == "stable_diffusion":
                assert "v['value']['FID'] <= 90.0" in text and b.threshold == 90.0
                continue
            check = re.search(r"ATLEAST_ONE_CHECK: \"\(?\s*v\['value'\] (<=|>=) ([0-9.]+)", text)
            assert check, (name, rnd.id)
            assert b.direction == {"<=": "lower", ">=": "higher"}[check.group(1)], name
            assert b.threshold == float(check.group(2)), (name, rnd.id)


def test_replay_reads_a_published_node_file():
    path = (Path(__file__).parent / "fixtures/mlperf/v5.0/Lenovo/results/SR780aV3-8xB200_SXM_180GB"
            / "retinanet/power/result_0/node_0.txt")  # fmt: skip
    source = ReplaySource(path)
    assert source.domains() == ["node0/node:wall"]
    series = mp.reading_series(mp.parse(path.read_text()).records)
    source.open(0)
    (reading,) = source.poll(int(10e9))
    # 10 s in: the trapezoid of the first readings, as power.csv of the import integrates them
    t = [(x - series.t_ns[0]) / 1e9 for x in series.t_ns]
    k = next(i for i, x in enumerate(t) if x > 10)
    area = sum(
        0.5 * (series.watts[i] + series.watts[i + 1]) * (t[i + 1] - t[i]) for i in range(k - 1)
    )
    area += 0.5 * (series.watts[k - 1] + reading.watts) * (10 - t[k - 1])
    assert reading.joules == pytest.approx(area, rel=1e-6)
