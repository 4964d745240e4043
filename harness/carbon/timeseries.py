"""Time-resolved carbon: a user's (UTC time, gCO2e/kWh) series integrated against a power trace.

Each intensity value holds from its timestamp until the next one (hourly data from a grid
operator or Electricity Maps, say). The run's energy in each trace interval is charged at the
intensity in force at the interval's midpoint.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness.errors import ConfigError
from harness.results.schema import TimeResolvedCarbon


def read_intensity_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(UTC epoch seconds, g/kWh), sorted. Columns: an ISO-8601 UTC time, then g/kWh."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read carbon.time_resolved_csv={path}: {exc}.",
            "give a CSV with columns time (ISO-8601, UTC) and g_co2e_per_kwh.",
        ) from exc
    if frame.shape[1] < 2 or frame.empty:
        raise ConfigError(
            f"{path} needs two columns, time and g_co2e_per_kwh.", "fix the CSV header."
        )
    try:
        times = pd.to_datetime(frame.iloc[:, 0], utc=True)
        values = frame.iloc[:, 1].astype(float).to_numpy()
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path}: {exc}.", "times as ISO-8601 (2026-11-22T17:00:00Z), values as numbers."
        ) from exc
    seconds = (times - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    order = np.argsort(seconds)
    return seconds[order], values[order]


def intensity_at(t_s: np.ndarray, series_t_s: np.ndarray, series_g: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(series_t_s, t_s, side="right") - 1
    return series_g[np.clip(idx, 0, len(series_g) - 1)]


def time_resolved_carbon(
    csv_path: str | Path, trace_utc_s: np.ndarray, trace_cum_j: np.ndarray, pue: float
) -> TimeResolvedCarbon:
    series_t, series_g = read_intensity_csv(csv_path)
    t, j = np.asarray(trace_utc_s, dtype=float), np.asarray(trace_cum_j, dtype=float)
    if t.size < 2:
        raise ConfigError("the power trace has fewer than two samples to integrate.", "run longer.")
    if t[0] < series_t[0]:
        first = datetime.fromtimestamp(series_t[0], timezone.utc).isoformat()
        start = datetime.fromtimestamp(t[0], timezone.utc).isoformat()
        raise ConfigError(
            f"{csv_path} starts at {first}, after the run began ({start}).",
            "give intensities that cover the whole run.",
        )
    mid = 0.5 * (t[1:] + t[:-1])
    facility_kwh = np.diff(j) / 3.6e6 * pue
    grams = facility_kwh * intensity_at(mid, series_t, series_g)
    total_kwh = float(facility_kwh.sum())
    return TimeResolvedCarbon(
        kg_co2e=float(grams.sum()) / 1000.0,
        source_csv=str(csv_path),
        mean_intensity_g_per_kwh=float(grams.sum() / total_kwh) if total_kwh else 0.0,
    )
