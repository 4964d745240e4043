"""The Redfish meter against a BMC on loopback (tests/fake_bmc.py), through DMTF's client."""

from __future__ import annotations

import time

import numpy as np
import pytest

from harness.cli import main
from harness.errors import MeterError
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


def test_a_hung_bmc_a_stuck_reading_and_a_restarted_counter(bmc, tmp_path):
    bmc.hang_after_s = time.monotonic() - bmc.t0 + 0.3
    meter, _, _ = metered_span(RedfishSource(bmc.url, timeout_s=0.2), tmp_path, 1.1, hz=20)
    (fault,) = meter.faults
    assert "node:bmc: GET /redfish/v1/Chassis/1U/EnvironmentMetrics failed" in fault.cause
    assert fault.cause.endswith("(3 retries)")

    stuck = FakeBmc()
    stuck.stuck_after_s = 0.3
    try:
        source = RedfishSource(stuck.url, freeze_after_s=0.3)
        meter, _, _ = metered_span(source, tmp_path, 1.0, hz=20)
    finally:
        stuck.close()
    assert "frozen counter" in meter.faults[0].cause

    reset = FakeBmc()
    reset.reset_at_s = 0.4
    try:
        source = RedfishSource(reset.url)
        meter, _, _ = metered_span(source, tmp_path, 0.9, hz=40)
    finally:
        reset.close()
    assert meter.faults == [] and source.quality()["counter_resets"] == 1
    joules = meter.series["node:bmc"].arrays().joules
    assert np.all(np.diff(joules) >= 0)  # the energy so far is kept
    assert joules[-1] == pytest.approx(400 * 0.9, abs=400 * 0.2)


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
