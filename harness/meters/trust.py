"""Trust at open: a counter is believed only after it agrees with the same device's power.

Energy counters fail in ways that look like data: AMD's freeze (ROCm/amdsmi#38, MI100) or go
backwards under concurrent calls (ROCm/amdsmi#115); a unit can be misstated (rocm_smi's 15.3 uJ
against the kernel's 15.259 uJ). Zeus checks a counter against power before trusting it; so
does joulebench, for every counter meter, NVML included.

The check: read the device as fast as it answers for `span_s` (the reads that detected the tick
period at open serve, when they span that long: no time is added), place each counter tick in its
bracket (harness/meters/counter.py), and compare the counter's energy between its first and
last tick in the span with the trapezoid integral of the power readings over the same
interval. Within `tolerance`: pass. Beyond it: the domain's energy comes from power and the
source says `estimated` (on_mismatch=estimate), or the run is refused (on_mismatch=refuse).
A counter that ticks fewer than twice in the span (a BMC's kWh register) or a device with no
power reading cannot be checked this way: the verdict is `inconclusive`, with the reason.
Every verdict's figures go in the result (the device's `trust` in the meter's details), and
the validator re-judges them against the ruleset's `meter_trust.tolerance_frac`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from harness.errors import MeterError
from harness.meters.counter import power_integral_j, tick_period_from_changes, tick_points

VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class TrustSettings:
    span_s: float = 0.5
    tolerance: float = 0.05  # the ruleset's meter_trust.tolerance_frac
    on_mismatch: str = "estimate"  # or "refuse"
    pause_s: float = 0.001  # between reads during the span


def _collect(device, clock, span_s: float, pause_s: float):
    """(t_ns, raw counter, watts) of every good read over `span_s`; the device's counts are
    left as they were (the span is not part of the run)."""
    counts = dict(device.counts)
    rows = []
    deadline = clock() + int(span_s * 1e9)
    try:
        while clock() < deadline:
            try:
                s = device.sample(clock)
            except device.vendor_errors:
                s = None
            if s is not None and s.counter is not None:
                rows.append((s.t_ns, s.counter, np.nan if s.watts is None else s.watts))
            time.sleep(pause_s)
    finally:
        device.counts = counts
    return rows


def judge(rows, joules_per_unit: float, tolerance: float, tick_s: float | None = None) -> dict:
    """The verdict from a span's reads: counter energy between its first and last tick there
    against the power integral over the same interval."""
    if len(rows) < 3:
        return {"verdict": "inconclusive", "reason": f"{len(rows)} good reads in the span"}
    t = np.array([r[0] for r in rows], dtype=np.float64)
    raw = np.array([r[1] for r in rows], dtype=np.float64)
    w = np.array([r[2] for r in rows], dtype=np.float64)
    if np.any(np.diff(raw) < 0):
        return {
            "verdict": "fail",
            "reason": "the counter went backwards during the check",
            "reads": len(rows),
        }
    changes = t[1:][np.diff(raw) != 0]
    if changes.size < 2:
        return {
            "verdict": "inconclusive",
            "reason": f"the counter ticked {changes.size} time(s) in the span: too slow to check",
            "reads": len(rows),
        }
    if np.count_nonzero(~np.isnan(w)) < 2:
        return {"verdict": "inconclusive", "reason": "no power readings to check against"}
    period = tick_s or tick_period_from_changes(changes) or float(np.median(np.diff(changes)) / 1e9)
    tau, joules = tick_points(t, raw * joules_per_unit, period)
    t0, t1 = float(tau[1]), float(tau[-1])  # tau[0] is the first read, not a tick
    counter_j = float(joules[-1] - joules[1])
    power_j = power_integral_j(t, w, int(t0), int(t1))
    figures = {
        "span_s": round((t[-1] - t[0]) / 1e9, 4),
        "interval_s": round((t1 - t0) / 1e9, 4),
        "ticks": int(changes.size),
        "reads": len(rows),
        "counter_j": round(counter_j, 6),
        "power_integral_j": None if power_j is None else round(power_j, 6),
        "tolerance": tolerance,
    }
    if not power_j or power_j <= 0:
        return {"verdict": "inconclusive", "reason": "the device drew no power", **figures}
    ratio = counter_j / power_j - 1.0
    figures["counter_over_power"] = round(ratio, 6)
    if abs(ratio) <= tolerance:
        return {"verdict": "pass", **figures}
    return {
        "verdict": "fail",
        "reason": f"counter {ratio:+.1%} against its power integral (tolerance {tolerance:.0%})",
        **figures,
    }


def check_device(device, clock, settings: TrustSettings, source_name: str) -> dict:
    """Runs the check on one opened device, records it, and acts on a failure."""
    if not device.has_counter or device.open_fault is not None:
        return {}
    rows = device.probe_rows
    if not rows or (rows[-1][0] - rows[0][0]) / 1e9 < settings.span_s:
        rows = _collect(device, clock, settings.span_s, settings.pause_s)
    verdict = judge(rows, device.joules_per_unit, settings.tolerance, device.tick_s)
    verdict["on_mismatch"] = settings.on_mismatch
    device.trust = verdict
    if verdict["verdict"] != "fail":
        return verdict
    if settings.on_mismatch == "refuse":
        raise MeterError(
            f"{source_name} {device.domain}: the trust check at open failed: "
            f"{verdict['reason']} ({verdict.get('counter_j')} J by the counter, "
            f"{verdict.get('power_integral_j')} J by power over {verdict.get('interval_s')} s).",
            "check the device and its driver, or set meter.trust.on_mismatch=estimate to take "
            "its energy from power, labelled estimated.",
        )
    device.distrust()
    verdict["energy_from"] = "power (estimated)"
    return verdict


def check_source(source, devices, settings: TrustSettings | None) -> None:
    """The check on each of a source's devices; a rejected counter makes the source estimated."""
    if settings is None:
        return
    for device in devices:
        check_device(device, source.clock, settings, source.name)
    if any(d.trust and d.trust.get("energy_from") for d in devices):
        source.provenance = "estimated"
        if not any(d.has_counter for d in devices):
            source.method = "power-sampling"
