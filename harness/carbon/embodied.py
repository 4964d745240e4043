"""Embodied (manufacturing) carbon of the accelerators, amortised over their lifetime by run time.

LLMCarbon-style (Faiz et al. 2024): embodied kgCO2e of one chip x number of chips x run hours /
(lifetime hours). Reported as its own line, never folded into operational CO2e.
"""

from __future__ import annotations

from harness.errors import ConfigError
from harness.results.schema import EmbodiedCarbon

HOURS_PER_YEAR = 8760.0
# kgCO2e per accelerator die (Faiz et al. 2024, LLMCarbon, ICLR); substring of the device name
EMBODIED_KG_PER_ACCELERATOR = {
    "H100": (14.65, "Faiz et al. 2024, LLMCarbon"),
    "V100": (9.78, "Faiz et al. 2024, LLMCarbon"),
}


def embodied_carbon(accelerator_model: str, count: int, run_hours: float, cfg) -> EmbodiedCarbon:
    if cfg.kg_per_accelerator is not None:
        kg_each, source = cfg.kg_per_accelerator, "user-supplied carbon.embodied.kg_per_accelerator"
    else:
        match = next(
            (
                v
                for k, v in EMBODIED_KG_PER_ACCELERATOR.items()
                if k.lower() in accelerator_model.lower()
            ),
            None,
        )
        if match is None:
            raise ConfigError(
                f"no embodied-carbon figure for '{accelerator_model}'.",
                "set carbon.embodied.kg_per_accelerator to a figure you can cite.",
            )
        kg_each, source = match
    if cfg.lifetime_years <= 0:
        raise ConfigError(
            f"carbon.embodied.lifetime_years={cfg.lifetime_years} must be > 0.", "use e.g. 5."
        )
    share = run_hours / (cfg.lifetime_years * HOURS_PER_YEAR)
    return EmbodiedCarbon(
        kg_co2e=kg_each * count * share,
        kg_per_accelerator=kg_each,
        accelerators=count,
        lifetime_years=cfg.lifetime_years,
        run_hours=run_hours,
        source=source,
    )
