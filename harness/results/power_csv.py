"""power.csv, the run's power trace: its one definition.

Columns `t_ns,domain,watts,joules`: the monotonic time of the read (ns), the domain, instant
watts (empty where the read gave none) and cumulative joules (a counter's reading; for a
source with no counter, the trapezoid integral of its watts). The meter streams rows as it reads
(harness/meters/meter.py), rank 0 merges ranks' rows (harness/runner.py), and the validator,
the report and the replay meter read them back (harness/results/trace.py). Every one of them
formats, parses and integrates through here.
"""

from __future__ import annotations

import numpy as np

HEADER = "t_ns,domain,watts,joules\n"
COLUMNS = ("t_ns", "domain", "watts", "joules")


def row(t_ns: int, domain: str, watts: float | None, joules: float) -> str:
    """One line: watts to 0.1 mW (empty when absent or NaN), joules to the microjoule."""
    shown = "" if watts is None or watts != watts else f"{watts:.4f}"
    return f"{t_ns},{domain},{shown},{joules:.6f}\n"


def cumulative_trapezoid_j(t_ns: np.ndarray, watts: np.ndarray) -> np.ndarray:
    """Cumulative joules at each sample from instant power, by the trapezoid rule (0 at the
    first sample): the energy of a domain that has no counter."""
    t = np.asarray(t_ns, dtype=np.float64)
    w = np.asarray(watts, dtype=np.float64)
    return np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(t) / 1e9)])
