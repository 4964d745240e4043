"""Operational carbon of a run: IT energy -> facility energy (PUE) -> location-based CO2e.

Facility kWh = IT kWh x PUE; location-based kgCO2e = facility kWh x grid intensity / 1000
(Patterson et al. 2021, section 2). Market-based CO2e needs contractual factors the user
supplies, so it is null here rather than guessed; embodied carbon is opt-in and separate.
"""

from __future__ import annotations

from harness.results.schema import Carbon, LocationCarbon

J_PER_KWH = 3.6e6


def compute_carbon(it_energy_j: float, carbon_cfg) -> Carbon:
    it_kwh = it_energy_j / J_PER_KWH
    facility_kwh = it_kwh * carbon_cfg.pue
    return Carbon(
        it_energy_kwh=it_kwh,
        pue=carbon_cfg.pue,
        pue_source=carbon_cfg.pue_source,
        facility_energy_kwh=facility_kwh,
        location_based=LocationCarbon(
            kg_co2e=facility_kwh * carbon_cfg.intensity_g_per_kwh / 1000.0,
            intensity_g_per_kwh=carbon_cfg.intensity_g_per_kwh,
            region=carbon_cfg.region,
            dataset=carbon_cfg.dataset,
            year=carbon_cfg.year,
            basis=carbon_cfg.basis,
        ),
        market_based_kg_co2e=None,
        embodied_kg_co2e=None,
    )
