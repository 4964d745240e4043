"""Grid carbon intensity: the shipped tables (data/, see data/SOURCES.md) and region lookup.

A region is an ISO 3166-1 alpha-3 country code (`USA`, `FIN`), a cloud region with its
provider prefix (`gcp:us-central1`), or `world` for the labelled IEA 2019 world average. An
unknown region is an error that lists close matches; there is no silent fallback.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from harness.errors import ConfigError

DATA = Path(__file__).resolve().parent / "data"
WORLD = (
    "world",
    475.0,
    "IEA 2019 world average (labelled fallback: not your grid)",
    2019,
    "operational",
    "IEA, Global Energy & CO2 Status Report 2019, as cited by Patterson et al. 2021",
)


@dataclass(frozen=True)
class GridIntensity:
    g_per_kwh: float
    region: str
    dataset: str
    year: int
    basis: str  # operational | lifecycle
    source: str


@lru_cache(maxsize=1)
def _tables() -> dict[str, GridIntensity]:
    import pandas as pd

    out: dict[str, GridIntensity] = {}
    tables = [  # (file, key column, key case, how the dataset is described)
        (
            "country_intensity.csv",
            "iso3",
            str.upper,
            lambda r: f"country grid intensity ({r.country})",
        ),
        (
            "cloud_region_intensity.csv",
            "region",
            str.lower,
            lambda r: f"{r.provider} region grid intensity ({r.location})",
        ),
    ]
    for file, key_column, case, describe in tables:
        for row in pd.read_csv(DATA / file).itertuples(index=False):
            key = case(getattr(row, key_column))
            out[key] = GridIntensity(
                float(row.g_co2e_per_kwh), key, describe(row), int(row.year), row.basis, row.source
            )
    return out


def known_regions() -> list[str]:
    return ["world", *sorted(_tables())]


def lookup(region: str) -> GridIntensity:
    """The intensity of `region`, or a ConfigError naming close matches."""
    key = region.strip()
    if key.lower() == "world":
        return GridIntensity(WORLD[1], WORLD[0], WORLD[2], WORLD[3], WORLD[4], WORLD[5])
    tables = _tables()
    found = tables.get(key.upper()) or tables.get(key.lower())
    if found:
        return found
    # match against codes and place names alike, answer with codes
    by_name = {k.lower(): k for k in tables}
    by_name.update({g.dataset.rsplit("(", 1)[-1].rstrip(")").lower(): k for k, g in tables.items()})
    close = difflib.get_close_matches(key.lower(), list(by_name), n=5, cutoff=0.6)
    suggestions = list(dict.fromkeys(by_name[c] for c in close))
    hint = (
        f"did you mean {', '.join(suggestions)}?"
        if suggestions
        else "see harness/carbon/data/*.csv."
    )
    raise ConfigError(
        f"carbon.region={region} is not in joulebench's intensity tables.",
        f"{hint} Or give carbon.intensity_g_per_kwh=<value> with carbon.intensity_source.",
    )


def explicit(value: float, source: str | None, region: str) -> GridIntensity:
    return GridIntensity(
        float(value),
        region if region != "world" else "user-supplied",
        "user-supplied intensity",
        0,
        "operational",
        source or "user-supplied (uncited)",
    )
