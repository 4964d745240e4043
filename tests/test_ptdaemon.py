"""PTDaemon the way mlcommons/power-dev drives it: the session's commands in order, the replies
checked, a ranging pass before fixed ranges, RL's "Last N samples", uncertainty and identity
recorded, the analyzer's ranges restored. Against a fake daemon derived from power-dev."""

from __future__ import annotations

import pytest

from harness.errors import MeterError
from harness.meters.meter import Meter
from harness.meters.wall import (
    PtdaemonSource,
    parse_identity,
    parse_ranges,
    parse_uncertainty,
)
from tests.fakes import FakePtDaemon

S = 1_000_000_000


@pytest.fixture
def daemon():
    d = FakePtDaemon([400.0])
    yield d
    d.close()


def _session(received: list[str]) -> list[str]:
    """The commands other than the sampler's Watts polls."""
    return [c for c in received if c != "Watts"]


def _wait_for_samples(daemon, n: int) -> None:
    import time

    deadline = time.monotonic() + 10
    while len(daemon.samples) < n and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_whole_session_follows_power_dev(tmp_path, daemon):
    source = PtdaemonSource("127.0.0.1", daemon.port, interval_ms=500, mark="jb", settle_s=0)
    meter = Meter([source])
    meter.start(tmp_path / "power.csv")
    _wait_for_samples(daemon, 4)  # the warm-up's load, logged by the ranging pass
    meter.prepare_timed_run()
    _wait_for_samples(daemon, 3)
    meter.stop()
    # the fake logs 400 W at 230.1-230.3 V and PF 0.98: at most 400 / (230.1 x 0.98) A
    max_amps = 400.0 / (230.1 * 0.98)
    assert _session(daemon.received) == [
        "Hello",
        "Identify",
        "RR",
        "SR,V,Auto",
        "SR,A,Auto",
        "Go,1000,0,jb_ranging",
        "Stop",
        "RL",
        "SR,V,230.3",
        f"SR,A,{1.1 * round(max_amps, 6):.6g}",
        "Go,500,0,jb_testing",
        "Uncertainty",
        "Stop",
        "RL",
        "SR,V,300.000000",  # the ranges RR reported at the start, put back
        "SR,A,5.000000",
    ]
    d = source.details()
    assert d["analyzer"] == "YokogawaWT310E" and d["ptd_version"] == "1.11.1"
    assert d["ranging"]["volts"] == 230.3 and d["ranging"]["samples"] >= 4
    assert d["voltage_range"] == "230.3" and d["uncertainty_pct"] == 0.31
    assert d["analyzer_samples"] >= 3 and d["analyzer_mean_w"] == pytest.approx(400.0)
    assert d["initial_ranges"] == {"amps": "5.000000", "volts": "300.000000"}
    assert meter.faults == []


def test_fixed_ranges_skip_the_ranging_pass(tmp_path, daemon):
    source = PtdaemonSource(
        "127.0.0.1", daemon.port, voltage_range="300", current_range="10", settle_s=0
    )
    meter = Meter([source], sample_hz=50)
    meter.start(tmp_path / "power.csv")
    meter.prepare_timed_run()  # nothing to do: the ranges were fixed at open
    meter.stop()
    session = _session(daemon.received)
    assert session[3:6] == ["SR,V,300", "SR,A,10", "Go,1000,0,joulebench_testing"]
    assert "Go,1000,0,joulebench_ranging" not in session
    assert source.details()["ranging"].startswith("skipped")


@pytest.mark.parametrize("refused", ["SR,A,10", "Go", "SR,V,300"])
def test_an_error_reply_is_a_failure(daemon, refused):
    daemon.refuse = (refused,)
    source = PtdaemonSource(
        "127.0.0.1", daemon.port, voltage_range="300", current_range="10", settle_s=0
    )
    with pytest.raises(MeterError, match="PTDaemon refused") as info:
        source.open(0)
    assert "Error" in info.value.problem
    source.close()  # still puts the analyzer's ranges back
    assert daemon.received[-2:] == ["SR,V,300.000000", "SR,A,5.000000"]


def test_a_ranging_pass_without_samples_is_a_clear_error(tmp_path):
    daemon = FakePtDaemon([400.0], time_scale=1000.0)  # it never logs a sample in time
    try:
        source = PtdaemonSource("127.0.0.1", daemon.port, settle_s=0)
        meter = Meter([source], sample_hz=50)
        meter.start(tmp_path / "power.csv")
        meter.prepare_timed_run()
        meter.stop()
        (fault,) = meter.faults
        assert "ranging pass logged 0 usable samples" in fault.cause
    finally:
        daemon.close()


def test_rl_reads_the_n_lines_its_header_announces(daemon):
    source = PtdaemonSource("127.0.0.1", daemon.port, settle_s=0)
    source.open(0)
    _wait_for_samples(daemon, 3)
    header, lines = source.client.command("RL", lines_after=True)
    assert header == f"Last {len(lines)} samples" and len(lines) >= 3
    assert all(x.startswith("Time,") and ",Mark,joulebench_ranging" in x for x in lines)
    assert source.client.command("Watts") == "Watts,400.000"  # the stream is still in step
    source.close()


def test_reply_parsers_match_power_devs_reading():
    assert parse_identity("YokogawaWT310E,version=1.11.1-5c7b0f6e-2020-11-23") == {
        "model": "YokogawaWT310E",
        "ptd_version": "1.11.1",
    }
    assert parse_ranges("Ranges,0,5.000000,0,300.000000") == ("5.000000", "300.000000")
    assert parse_ranges("Ranges,1,-1.000000,1,-1.000000") == ("Auto", "Auto")
    assert parse_ranges("garbage") == ("Auto", "Auto")
    assert parse_uncertainty("Uncertainty,0.310%") == 0.31
    assert parse_uncertainty("Error: Uncertainty unknown") is None
