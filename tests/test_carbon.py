"""Carbon: Patterson et al. 2021 Table 4 reproduced, lookups, PUE, market, time-resolved, embodied."""

from __future__ import annotations

import json

import pytest

from harness.carbon import compute_carbon, kg_to_lbs
from harness.carbon.estimate import hours_from_flops, patterson_estimate
from harness.carbon.intensity import lookup
from harness.carbon.timeseries import time_resolved_carbon
from harness.cli import main
from harness.config import CarbonConfig, EmbodiedConfig, MarketConfig
from harness.errors import ConfigError
from tests.helpers import short_run


# -- Patterson et al. 2021, Table 4 --------------------------------------------------------------
def test_gpt3_row_of_table_4():
    est = patterson_estimate(
        processors=10_000, hours=14.8 * 24, avg_power_w=330, pue=1.10, intensity_kg_per_kwh=0.429
    )
    assert est.energy_mwh == pytest.approx(1287, rel=0.01)
    assert est.co2e_t == pytest.approx(552.1, rel=0.01)


def test_t5_row_of_table_4():
    est = patterson_estimate(
        processors=512, hours=20 * 24, avg_power_w=310, pue=1.12, intensity_kg_per_kwh=0.545
    )
    assert est.energy_mwh == pytest.approx(85.7, rel=0.01)
    assert est.co2e_t == pytest.approx(46.7, rel=0.01)


def test_estimate_cli_json_and_flops_path(capsys):
    assert (
        main(
            [
                "estimate",
                "--processors",
                "10000",
                "--days",
                "14.8",
                "--avg-power-w",
                "330",
                "--pue",
                "1.1",
                "--intensity-kg-per-kwh",
                "0.429",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["energy_mwh"] == pytest.approx(1287, rel=0.01) and out["co2e_t"] == pytest.approx(
        552.1, rel=0.01
    )
    # 3.14e23 FLOPs on 10,000 chips of 125 TFLOP/s at 20% -> hours = F / (N x T x 1e12 x U) / 3600
    hours = hours_from_flops(3.14e23, 10_000, 125.0, 0.2)
    assert hours == pytest.approx(3.14e23 / (10_000 * 125e12 * 0.2) / 3600)
    assert (
        main(
            [
                "estimate",
                "--processors",
                "10000",
                "--flops",
                "3.14e23",
                "--peak-tflops",
                "125",
                "--utilization",
                "0.2",
                "--avg-power-w",
                "330",
                "--region",
                "USA",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["hours"] == pytest.approx(hours)
    assert out["intensity_kg_per_kwh"] == pytest.approx(0.3695)


@pytest.mark.parametrize(
    "argv",
    [
        [
            "--processors",
            "8",
            "--avg-power-w",
            "300",
            "--intensity-kg-per-kwh",
            "0.4",
        ],  # no duration
        [
            "--processors",
            "8",
            "--hours",
            "1",
            "--days",
            "1",
            "--avg-power-w",
            "300",
            "--region",
            "USA",
        ],
        ["--processors", "8", "--hours", "1", "--avg-power-w", "-3", "--region", "USA"],
        ["--processors", "8", "--hours", "1", "--avg-power-w", "300", "--region", "Atlantis"],
    ],
)
def test_estimate_bad_input_is_one_line_exit_2(argv, capsys):
    assert main(["estimate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


# -- lookup, PUE, units -------------------------------------------------------------------------
def test_region_lookup_by_country_cloud_and_world():
    usa = lookup("USA")
    assert (usa.g_per_kwh, usa.year, usa.basis) == (369.5, 2023, "lifecycle")
    assert lookup("fin").g_per_kwh == 79.2
    iowa = lookup("gcp:us-central1")
    assert (iowa.g_per_kwh, iowa.year, iowa.basis) == (412.72, 2024, "operational")
    assert "Apache-2.0" in iowa.source
    world = lookup("world")
    assert world.g_per_kwh == 475.0 and "IEA 2019" in world.dataset


def test_unknown_region_lists_close_matches():
    with pytest.raises(ConfigError) as info:
        lookup("gcp:us-centrl1")
    assert "gcp:us-central1" in info.value.fix
    with pytest.raises(ConfigError) as info:
        lookup("Frnace")
    assert "FRA" in info.value.fix


def test_pue_and_units_by_hand():
    # 7.2e6 J = 2 kWh IT; PUE 1.5 -> 3 kWh facility; France 56.0 g/kWh -> 168 g = 0.168 kg
    c = compute_carbon(7.2e6, CarbonConfig(region="FRA", pue=1.5))
    assert c.it_energy_kwh == pytest.approx(2.0)
    assert c.facility_energy_kwh == pytest.approx(3.0)
    assert c.location_based.kg_co2e == pytest.approx(0.168)
    assert c.location_based.region == "FRA" and c.location_based.basis == "lifecycle"
    assert kg_to_lbs(1.0) == pytest.approx(2.20462262)
    explicit = compute_carbon(
        3.6e6, CarbonConfig(intensity_g_per_kwh=250.0, intensity_source="my utility bill")
    )
    assert explicit.location_based.kg_co2e == pytest.approx(0.25)
    assert explicit.location_based.source == "my utility bill"


def test_market_based_only_from_supplied_factors():
    assert compute_carbon(3.6e6, CarbonConfig(region="USA")).market_based is None
    supplier = compute_carbon(
        3.6e6, CarbonConfig(region="USA", pue=1.2, market=MarketConfig(supplier_g_per_kwh=50.0))
    )
    assert supplier.market_based.kg_co2e == pytest.approx(1.2 * 50 / 1000)
    eac = compute_carbon(
        3.6e6,
        CarbonConfig(
            region="USA",
            market=MarketConfig(eac_covered_fraction=0.75, residual_mix_g_per_kwh=400.0),
        ),
    )
    assert eac.market_based.kg_co2e == pytest.approx(0.25 * 400 / 1000)
    assert eac.market_based.method == "energy-attribute-certificates+residual-mix"
    with pytest.raises(ConfigError, match="residual_mix"):
        compute_carbon(3.6e6, CarbonConfig(market=MarketConfig(eac_covered_fraction=0.5)))


def test_time_resolved_against_a_hand_computed_trace(tmp_path):
    csv = tmp_path / "grid.csv"
    csv.write_text("time,g_co2e_per_kwh\n2026-01-01T00:00:00Z,100\n2026-01-01T00:30:00Z,300\n")
    t0 = 1767225600.0  # 2026-01-01T00:00:00Z
    # 0.5 kWh in the first half hour (charged at 100 g), 1 kWh in the second (at 300 g): 350 g x PUE 1.2
    tr = time_resolved_carbon(csv, [t0, t0 + 1800, t0 + 3600], [0.0, 1.8e6, 5.4e6], pue=1.2)
    assert tr.kg_co2e == pytest.approx(0.42)
    assert tr.mean_intensity_g_per_kwh == pytest.approx(350 / 1.5)
    with pytest.raises(ConfigError, match="after the run began") as info:
        time_resolved_carbon(csv, [t0 - 60, t0 + 60], [0.0, 1.0], pue=1.0)
    assert "cover the whole run" in info.value.fix


def test_embodied_is_amortised_and_separate():
    cfg = CarbonConfig(region="USA", embodied=EmbodiedConfig(enabled=True, lifetime_years=5))
    c = compute_carbon(
        3.6e6, cfg, accelerator_model="NVIDIA H100 80GB HBM3", accelerator_count=8, run_hours=10
    )
    assert c.embodied.kg_co2e == pytest.approx(14.65 * 8 * 10 / (5 * 8760))
    assert c.location_based.kg_co2e == pytest.approx(0.3695)  # operational figure untouched
    with pytest.raises(ConfigError, match="no embodied-carbon figure"):
        compute_carbon(3.6e6, cfg, accelerator_model="AMD EPYC", accelerator_count=1, run_hours=1)


# -- through runs -------------------------------------------------------------------------------
@pytest.mark.slow
def test_recost_table_equals_energy_times_pue_times_intensity(in_tmp, capsys):
    short_run("r", "carbon.region=DEU", "carbon.pue=1.3")
    result = json.loads((in_tmp / "r" / "result.json").read_text())
    assert result["carbon"]["location_based"]["kg_co2e"] == pytest.approx(
        result["metrics"]["energy_total_j"] / 3.6e6 * 1.3 * 380.9 / 1000
    )
    capsys.readouterr()
    assert (
        main(
            [
                "recost",
                "r",
                "--region",
                "gcp:us-central1",
                "--region",
                "FIN",
                "--pue",
                "1.1",
                "--pue",
                "1.58",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    energy_kwh = result["metrics"]["energy_total_j"] / 3.6e6
    for row in rows:
        assert row["location_kg_co2e"] == pytest.approx(
            energy_kwh * row["pue"] * row["intensity_g_per_kwh"] / 1000
        )
    assert main(["recost", "r"]) == 0
    table = capsys.readouterr().out
    assert "gcp:europe-north1" in table and "gcp:asia-south1" in table
    assert "spread (operational intensities):" in table and "operational, 2024" in table
    # a cloud operational figure and a country lifecycle figure measure different things
    assert main(["recost", "r", "--region", "gcp:us-central1", "--region", "FIN"]) == 0
    table = capsys.readouterr().out
    assert "operational, 2024" in table and "lifecycle, 2023" in table
    assert "spread (" not in table
    assert "mix lifecycle and operational intensities, which are not comparable" in table
    assert main(["recost", "r", "--region", "DEU", "--region", "FIN"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("spread"))
    assert line == (
        "spread (lifecycle intensities): 4.8x between FIN (lifecycle 2023, PUE 1.3) "
        "and DEU (lifecycle 2023, PUE 1.3)"
    )


@pytest.mark.slow
def test_time_resolved_carbon_in_a_run(in_tmp):
    from datetime import datetime, timedelta, timezone

    start = datetime.now(timezone.utc) - timedelta(hours=1)
    csv = in_tmp / "grid.csv"
    csv.write_text(
        "time,g\n"
        + "".join(
            f"{(start + timedelta(minutes=m)).isoformat()},{200 + m}\n" for m in range(0, 180, 30)
        )
    )
    short_run("r", "carbon.region=USA", f"carbon.time_resolved_csv={csv}")
    c = json.loads((in_tmp / "r" / "result.json").read_text())["carbon"]
    # the run sits in the slot that starts at start + 60 min (260 g/kWh), beside the annual figure
    assert c["time_resolved"]["mean_intensity_g_per_kwh"] == pytest.approx(260.0)
    assert c["time_resolved"]["kg_co2e"] == pytest.approx(
        c["facility_energy_kwh"] * 260 / 1000, rel=1e-3
    )
    assert c["location_based"]["intensity_g_per_kwh"] == 369.5
