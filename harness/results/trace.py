"""Read a power.csv back into per-domain cumulative-energy curves (the validator's side of the meter).

A domain with a `joules` column is a counter, interpolated at any timestamp exactly as the
runner did: through its ticks when result.json says it ticks (meters[].counter_tick_s), by
harness/meters/counter.py. A domain with only `watts` is integrated (trapezoid). Malformed
input raises TraceError with a sentence a submitter can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.meters.counter import EnergyCurve


class TraceError(ValueError):
    pass


@dataclass
class DomainTrace:
    t_ns: np.ndarray  # int64, as recorded
    joules: np.ndarray  # cumulative
    watts: np.ndarray  # NaN where not recorded
    counter: bool  # True when joules came from the file, False when integrated here


class TraceCurve:
    def __init__(
        self, domains: dict[str, DomainTrace], counter_tick_s: dict[str, float] | None = None
    ):
        self.domains = domains
        self.counter_tick_s = dict(counter_tick_s or {})
        self._curve: EnergyCurve | None = None

    @classmethod
    def read(cls, path: Path, counter_tick_s: dict[str, float] | None = None) -> TraceCurve:
        import pandas as pd

        try:
            frame = pd.read_csv(
                path,
                dtype={
                    "t_ns": "int64",
                    "domain": "string",
                    "watts": "float64",
                    "joules": "float64",
                },
                engine="c",
            )
        except (
            ValueError,
            TypeError,
            OverflowError,
            pd.errors.ParserError,
            UnicodeDecodeError,
        ) as exc:
            raise TraceError(
                f"cannot parse as t_ns,domain,watts,joules: {str(exc).splitlines()[0][:160]}"
            ) from exc
        if list(frame.columns) != ["t_ns", "domain", "watts", "joules"]:
            raise TraceError(
                f"header is {list(frame.columns)}, expected ['t_ns', 'domain', 'watts', 'joules']"
            )
        if frame.empty:
            raise TraceError("the trace has no samples")
        if frame["domain"].isna().any():
            raise TraceError("a row has no domain")
        domains = {}
        for name, group in frame.groupby("domain", sort=False):
            t = group["t_ns"].to_numpy(dtype=np.int64)
            w = group["watts"].to_numpy(dtype=float)
            j = group["joules"].to_numpy(dtype=float)
            counter = not np.isnan(j).any()
            if not counter:
                if np.isnan(w).any():
                    raise TraceError(f"domain {name} has rows with neither watts nor joules")
                dt = np.diff(t.astype(float)) / 1e9
                j = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * dt)])
            if not (np.isfinite(j).all() and np.isfinite(w[~np.isnan(w)]).all()):
                raise TraceError(f"domain {name} holds non-finite values")
            domains[str(name)] = DomainTrace(t, j, w, counter)
        return cls(domains, counter_tick_s)

    @property
    def curve(self) -> EnergyCurve:
        if self._curve is None:
            ticks = {
                d: p
                for d, p in self.counter_tick_s.items()
                if self.domains.get(d) and self.domains[d].counter
            }
            self._curve = EnergyCurve.from_polls(
                {d: (tr.t_ns, tr.joules) for d, tr in self.domains.items()}, ticks
            )
        return self._curve

    def energy_at(self, t_ns):
        """Cumulative joules per domain at t_ns (a time, or an array of times at once)."""
        return self.curve.energy_at(t_ns)
