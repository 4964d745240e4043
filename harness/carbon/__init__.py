"""Carbon accounting of a run (Patterson et al. 2021, section 2):

facility kWh = IT kWh x PUE
location-based kgCO2e = facility kWh x grid intensity (g/kWh) / 1000
market-based kgCO2e   = facility kWh x contractual factor / 1000, only from factors the user
                        supplies (GHG Protocol Scope 2 guidance); null otherwise
time-resolved kgCO2e  = sum over the trace of facility energy x the intensity in force then
embodied kgCO2e       = per-accelerator manufacturing carbon x count x run time / lifetime,
                        its own line, never added to the operational figures
"""

from __future__ import annotations

from harness.carbon.embodied import embodied_carbon
from harness.carbon.intensity import GridIntensity, explicit, lookup
from harness.carbon.timeseries import time_resolved_carbon
from harness.errors import ConfigError
from harness.results.schema import Carbon, LocationCarbon, MarketCarbon

J_PER_KWH = 3.6e6
KG_PER_LB = 0.45359237  # international avoirdupois pound


def kg_to_lbs(kg: float) -> float:
    return kg / KG_PER_LB


def grid_intensity(carbon_cfg) -> GridIntensity:
    if carbon_cfg.intensity_g_per_kwh is not None:
        return explicit(
            carbon_cfg.intensity_g_per_kwh, carbon_cfg.intensity_source, carbon_cfg.region
        )
    return lookup(carbon_cfg.region)


def market_based(facility_kwh: float, market) -> MarketCarbon | None:
    """Supplier-specific factor, or EAC-covered share at zero plus the rest at the residual mix."""
    if market.supplier_g_per_kwh is not None:
        return MarketCarbon(
            kg_co2e=facility_kwh * market.supplier_g_per_kwh / 1000.0,
            method="supplier-specific",
            factor_g_per_kwh=market.supplier_g_per_kwh,
            covered_fraction=None,
        )
    if market.eac_covered_fraction is not None:
        if market.residual_mix_g_per_kwh is None:
            raise ConfigError(
                "carbon.market.eac_covered_fraction needs carbon.market.residual_mix_g_per_kwh.",
                "give the residual-mix factor of your market for the uncovered energy.",
            )
        uncovered = 1.0 - market.eac_covered_fraction
        return MarketCarbon(
            kg_co2e=facility_kwh * uncovered * market.residual_mix_g_per_kwh / 1000.0,
            method="energy-attribute-certificates+residual-mix",
            factor_g_per_kwh=market.residual_mix_g_per_kwh,
            covered_fraction=market.eac_covered_fraction,
        )
    return None


def compute_carbon(
    it_energy_j: float,
    carbon_cfg,
    *,
    accelerator_model: str = "",
    accelerator_count: int = 0,
    run_hours: float = 0.0,
    trace=None,
) -> Carbon:
    """`trace`: (UTC seconds, cumulative IT joules) arrays for the time-resolved figure, if asked."""
    it_kwh = it_energy_j / J_PER_KWH
    facility_kwh = it_kwh * carbon_cfg.pue
    grid = grid_intensity(carbon_cfg)
    time_resolved = None
    if carbon_cfg.time_resolved_csv:
        if trace is None:
            raise ConfigError(
                "carbon.time_resolved_csv is set but this run has no power trace to integrate.",
                "re-cost a result directory whose power.csv exists.",
            )
        time_resolved = time_resolved_carbon(
            carbon_cfg.time_resolved_csv, trace[0], trace[1], carbon_cfg.pue
        )
    embodied = None
    if carbon_cfg.embodied.enabled:
        embodied = embodied_carbon(
            accelerator_model, accelerator_count, run_hours, carbon_cfg.embodied
        )
    return Carbon(
        it_energy_kwh=it_kwh,
        pue=carbon_cfg.pue,
        pue_source=carbon_cfg.pue_source,
        facility_energy_kwh=facility_kwh,
        location_based=LocationCarbon(
            kg_co2e=facility_kwh * grid.g_per_kwh / 1000.0,
            intensity_g_per_kwh=grid.g_per_kwh,
            region=grid.region,
            dataset=grid.dataset,
            year=grid.year,
            basis=grid.basis,
            source=grid.source,
        ),
        market_based=market_based(facility_kwh, carbon_cfg.market),
        time_resolved=time_resolved,
        embodied=embodied,
    )
