"""The Redfish meter against a BMC on loopback (tests/fake_bmc.py), through DMTF's client."""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.cli import main
from harness.errors import MeterError
from harness.meters.meter import Meter
from harness.meters.redfish import RedfishSource
from harness.results.schema import check_result
from tests.fake_bmc import FakeBmc
from tests.helpers import load_result, metered_span

pytest.importorskip("redfish")


@pytest.fixture
def bmc(monkeypatch):
    server = FakeBmc()
    monkeypatch.setenv("JOULEBENCH_REDFISH_USER", server.user)
    monkeypatch.setenv("JOULEBENCH_REDFISH_PASSWORD", server.password)
    yield server
    server.close()


def test_redfish_energy_is_the_bmcs_within_one_reading(bmc, tmp_path):
    source = RedfishSource(bmc.url, timeout_s=1.0)
    meter, t0, t1 = metered_span(source, tmp_path, 0.8, hz=50.0)
    assert meter.faults == [] and source.role == "total"
    energy = meter.energy_between(t0, t1)["node:bmc"]
    # one reading's resolution: the energy of one sensor refresh
    assert abs(energy - bmc.watts * (t1 - t0) / 1e9) <= bmc.watts * bmc.refresh_s
    d = source.details()
    assert d["resource"] == "/redfish/v1/Chassis/1U/EnvironmentMetrics"
    assert d["energy_field"] == "EnergyJoules" and d["tls"] == "plain http (no TLS)"
    assert d["credentials_from"] == "environment"


def test_tls_is_verified_unless_the_user_says_otherwise(bmc):
    verified = RedfishSource("https://bmc.example", client=_Offline(bmc))
    assert verified._tls().startswith("verified (CA file ")
    unverified = RedfishSource("https://bmc.example", verify_tls=False, client=_Offline(bmc))
    assert unverified._tls() == "not verified (meter.redfish.verify_tls=false)"


class _Offline:
    """DMTF's client pointed at the loopback BMC, standing in for one at an https address."""

    def __init__(self, bmc):
        import redfish

        self._c = redfish.redfish_client(
            base_url=bmc.url, username=bmc.user, password=bmc.password, max_retry=0
        )

    def __getattr__(self, name):
        return getattr(self._c, name)


def test_bad_credentials_are_one_line(bmc, monkeypatch):
    monkeypatch.setenv("JOULEBENCH_REDFISH_PASSWORD", "wrong")
    with pytest.raises(MeterError) as exc:
        RedfishSource(bmc.url)
    line = exc.value.one_line()
    assert "refused the Redfish credentials (HTTP 401)" in line and "wrong" not in line
    monkeypatch.delenv("JOULEBENCH_REDFISH_USER")
    with pytest.raises(MeterError, match="needs the BMC's credentials"):
        RedfishSource(bmc.url)


def _until(meter, done, limit_s=20.0):
    """Polls by hand until `done()` holds (or `limit_s`, generous: a slow machine is slower,
    not different); the sampler thread is not started, so every read is one of these."""
    deadline = time.monotonic() + limit_s
    while not done() and time.monotonic() < deadline:
        meter.poll()
        time.sleep(0.01)


def _manual(source, tmp_path):
    meter = Meter([source], sample_hz=1e-3)  # the sampler waits 1000 s: polls are by hand
    meter.start(tmp_path / f"{id(source)}.csv")
    return meter


def test_a_hung_bmc_a_stuck_reading_and_a_restarted_counter(bmc, tmp_path):
    hung = _manual(RedfishSource(bmc.url, timeout_s=0.2), tmp_path)
    bmc.hang = True
    _until(hung, lambda: hung.faults)
    (fault,) = hung.faults
    assert "node:bmc: GET /redfish/v1/Chassis/1U/EnvironmentMetrics failed" in fault.cause
    assert fault.cause.endswith("(3 retries)")
    bmc.hang = False
    hung.stop()

    bmc.stuck_after_s = time.monotonic() - bmc.t0  # the reading stands still from now on
    stuck = _manual(RedfishSource(bmc.url, freeze_after_s=0.3), tmp_path)
    _until(stuck, lambda: stuck.faults)
    stuck.stop()
    assert "frozen counter" in stuck.faults[0].cause and "stood at" in stuck.faults[0].cause

    bmc.stuck_after_s = None
    source = RedfishSource(bmc.url)
    meter = _manual(source, tmp_path)
    series = meter.series["node:bmc"]
    _until(meter, lambda: series.committed() >= 5)
    bmc.reset = True
    _until(meter, lambda: source.quality()["counter_resets"] == 1)
    _until(meter, lambda: series.arrays().joules[-1] > 10.0, limit_s=2.0)
    meter.stop()
    assert meter.faults == [] and source.quality()["counter_resets"] == 1
    joules = series.arrays().joules
    assert np.all(np.diff(joules) >= 0) and joules[-1] > 0  # the energy so far is kept


def test_a_run_metered_by_redfish_writes_no_password(bmc, in_tmp):
    code = main(
        [
            "run",
            "meter=redfish",
            f"meter.redfish.host={bmc.url}",
            "meter.sample_hz=20",
            "meter.trust.span_s=0.3",
            "benchmark.max_steps=20",
            "benchmark.target.threshold=9",
            "run_dir=r",
        ]
    )
    assert code == 0
    r = load_result(in_tmp / "r")
    (m,) = r["meters"]
    assert m["name"] == "redfish" and m["provenance"] == "measured" and m["role"] == "total"
    for path in (in_tmp / "r").rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert bmc.password.encode() not in text and b"Authorization" not in text, path
    assert check_result(r) == []
    assert m["details"]["devices"][0]["trust"]["verdict"] == "pass"  # 400 W both ways
