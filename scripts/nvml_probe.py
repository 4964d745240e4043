#!/usr/bin/env python3
"""First contact with a GPU's NVML: what the metering layer relies on, measured, into one JSON.

Sections, each written to the JSON as soon as it ends (a hang or a crash loses that section):
  gpus        name, UUID, index, MIG mode and state (driver, power limit, clocks, persistence,
              compute mode, ECC) of every GPU, read only
  uuid_match  the CUDA device's UUID (torch) found in NVML, and at which index
  fields      nvmlDeviceGetFieldValues for energy + instant power, and for energy alone:
              per-field return codes, value types, values, the field timestamp's age, and the
              cost of one call (wall and CPU time, median of --calls)
  tick        the energy counter read back to back for --tick-seconds: when it changes, the
              detected period, the spread of the intervals, how the field timestamp moves
  source      harness.meters' NvmlSource end to end (reads timed to the ticks) over a few
              seconds, under a matrix-product load where torch has CUDA: counter energy
              against the integral of instant power, reads a second, the sampler's CPU time
Usage, from the repository root:

    PYTHONPATH=. python3 scripts/nvml_probe.py --out probe.json
Exit 0 when every section ran and found what the meter needs; 1 otherwise (the JSON says why).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


class Report:
    """The probe's JSON, rewritten atomically after every section."""

    def __init__(self, path: Path | None):
        self.path, self.data, self.problems = path, {"date_utc": _utc()}, []
        self.put("started", True)  # a probe killed by its step's timeout still leaves a file

    def put(self, key: str, value) -> None:
        self.data[key] = value
        self.data["problems"] = self.problems
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
            os.replace(tmp, self.path)
        print(f"probe: {key}: {_short(value)}", flush=True)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        print(f"probe: PROBLEM {text}", flush=True)


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) < 400 else text[:400] + "..."


def _stats(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "median": float(np.median(a)),
        "p5": float(np.percentile(a, 5)),
        "p95": float(np.percentile(a, 95)),
        "min": float(a.min()),
        "max": float(a.max()),
    }


def gpus_section(nvml) -> list[dict]:
    from harness.meters.nvml_gpu import gpu_state
    from harness.meters.nvml_gpu import text as _text

    out = []
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        try:
            mig = nvml.nvmlDeviceGetMigMode(h)[0] == nvml.NVML_DEVICE_MIG_ENABLE
        except nvml.NVMLError:
            mig = False
        out.append(
            {
                "index": i,
                "name": _text(nvml.nvmlDeviceGetName(h)),
                "uuid": _text(nvml.nvmlDeviceGetUUID(h)),
                "mig": mig,
                "state": gpu_state(nvml, h),
            }
        )
    return out


def cuda_uuid() -> tuple[str | None, str]:
    """torch's UUID of cuda:0 as NVML spells it ("GPU-" + lowercase), and where it came from."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"GPU-{torch.cuda.get_device_properties(0).uuid}", "torch cuda:0"
    except Exception as exc:  # noqa: BLE001 - torch missing or broken: say so
        return None, f"torch: {exc}"
    env = os.environ.get("JB_PROBE_UUID")  # the CPU rehearsal names the UUID torch would give
    return (env, "JB_PROBE_UUID") if env else (None, "no CUDA device")


def uuid_section(nvml, report: Report) -> dict:
    uuid, origin = cuda_uuid()
    out = {"uuid": uuid, "from": origin}
    if uuid is None:
        return out
    try:
        h = nvml.nvmlDeviceGetHandleByUUID(uuid)
        out["nvml_index"] = nvml.nvmlDeviceGetIndex(h)
        out["matched"] = True
    except nvml.NVMLError as exc:
        out["matched"] = False
        out["error"] = str(exc)
        report.problem(f"NVML knows no GPU {uuid} ({exc}): the meter falls back to indices")
    return out


def _call_cost(fn, calls: int) -> dict:
    wall, cpu = [], []
    for _ in range(calls):
        w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        fn()
        cpu.append((time.thread_time_ns() - c0) / 1e9)
        wall.append((time.perf_counter_ns() - w0) / 1e9)
    return {"wall_s": _stats(wall), "cpu_s": _stats(cpu)}


def fields_section(nvml, handle, calls: int, report: Report) -> dict:
    from harness.meters.nvml_gpu import NvmlGpu

    scope = NvmlGpu(nvml, handle, allow_mig=True).scope
    both = [(nvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, 0), (nvml.NVML_FI_DEV_POWER_INSTANT, scope)]
    energy_only = both[:1]
    codes: dict[str, dict[str, int]] = {"energy": {}, "power": {}}
    types: dict[str, set] = {"energy": set(), "power": set()}
    ages_us, watts, mj = [], [], []
    for _ in range(calls):
        values = nvml.nvmlDeviceGetFieldValues(handle, both)
        now_us = time.time_ns() // 1000
        for name, f in zip(("energy", "power"), values, strict=True):
            codes[name][str(f.nvmlReturn)] = codes[name].get(str(f.nvmlReturn), 0) + 1
            types[name].add(int(f.valueType))
            if f.nvmlReturn != nvml.NVML_SUCCESS:
                continue
            if name == "energy":
                ages_us.append(now_us - f.timestamp)
                mj.append(f.value.ullVal)
            else:
                watts.append(f.value.uiVal / 1000.0)
    bad = {k: v for k, v in codes.items() if set(v) != {str(nvml.NVML_SUCCESS)}}
    if bad:
        report.problem(f"field reads returned error codes: {bad}")
    out = {
        "power_scope": int(scope),
        "return_codes": codes,
        "value_types": {k: sorted(v) for k, v in types.items()},
        "expected_value_types": {
            "energy": nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG,
            "power": nvml.NVML_VALUE_TYPE_UNSIGNED_INT,
        },
        "timestamp_age_s": _stats([a / 1e6 for a in ages_us]),
        "instant_power_w": _stats(watts),
        "energy_mj_first_last": [mj[0], mj[-1]] if mj else None,
        "call_energy_and_power": _call_cost(
            lambda: nvml.nvmlDeviceGetFieldValues(handle, both), calls
        ),
        "call_energy_only": _call_cost(
            lambda: nvml.nvmlDeviceGetFieldValues(handle, energy_only), calls
        ),
    }
    return out


def tick_section(nvml, handle, seconds: float) -> dict:
    from harness.meters.counter import tick_period_from_changes

    ids = [(nvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, 0)]
    changes, stamp_at_change, reads = [], [], 0
    last = None
    end = time.monotonic_ns() + int(seconds * 1e9)
    while time.monotonic_ns() < end:
        f = nvml.nvmlDeviceGetFieldValues(handle, ids)[0]
        t = time.monotonic_ns()
        reads += 1
        if f.nvmlReturn != nvml.NVML_SUCCESS:
            continue
        if last is not None and f.value.ullVal != last:
            changes.append(t)
            stamp_at_change.append((t, time.time_ns() // 1000 - f.timestamp))
        last = f.value.ullVal
    gaps = np.diff(changes) / 1e9 if len(changes) > 1 else np.zeros(0)
    period = tick_period_from_changes(changes)
    return {
        "seconds": seconds,
        "reads": reads,
        "reads_per_s": reads / seconds,
        "changes": len(changes),
        "tick_s": period,
        "interval_s": _stats(gaps.tolist()),
        # if NVML stamps a value when it was updated, its age right after a change is ~0 and
        # grows to a tick; if it stamps the read, the age stays ~0
        "timestamp_age_at_change_s": _stats([age / 1e6 for _, age in stamp_at_change]),
    }


def source_section(uuid: str | None, seconds: float, tmp: Path) -> dict:
    from harness.meters.counter import bracket_widths_s, power_integral_j
    from harness.meters.meter import Meter
    from harness.meters.nvml import NvmlSource

    load = _matmul_load()
    source = NvmlSource(uuids=[uuid] if uuid else None)
    meter = Meter([source])
    meter.start(tmp / "power.csv")
    t0 = meter.clock()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        load()
    t1 = meter.clock()
    meter.stop()
    (domain, *_rest) = list(meter.series)
    s = meter.series[domain].arrays()
    counter_j = meter.energy_between(t0, t1)[domain]
    integral_j = power_integral_j(s.t_ns, s.watts, t0, t1)
    ((desc, rate),) = meter.describe()
    tick = desc.counter_tick_s.get(domain)
    widths = bracket_widths_s(s.t_ns, s.joules, tick)
    return {
        "domain": domain,
        "matched_by": source.matched_by,
        "seconds": (t1 - t0) / 1e9,
        "load": "bf16 8192^2 matmuls" if load.__name__ == "matmuls" else "none (no CUDA)",
        "counter_j": counter_j,
        "power_integral_j": integral_j,
        "integral_over_counter": integral_j / counter_j if integral_j and counter_j else None,
        "avg_power_w": counter_j / ((t1 - t0) / 1e9),
        "tick_s": tick,
        "bracket_width_s": _stats(widths.tolist()),
        "measured_sample_hz": rate,
        "quality": desc.quality,
        "faults": [f.cause for f in meter.faults],
        "details": desc.details,
    }


def _matmul_load():
    try:
        import torch

        if torch.cuda.is_available():
            a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)

            def matmuls():
                nonlocal a
                for _ in range(10):
                    a = (a @ a).clamp_(-1, 1)
                torch.cuda.synchronize()

            return matmuls
    except Exception:  # noqa: BLE001 - no torch: the source runs against an idle GPU
        pass

    def idle():
        time.sleep(0.05)

    return idle


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--tick-seconds", type=float, default=2.0)
    parser.add_argument("--source-seconds", type=float, default=4.0)
    args = parser.parse_args()
    report = Report(args.out)
    from harness.meters.nvml import load_pynvml
    from harness.meters.nvml_gpu import text as _text

    nvml = load_pynvml()
    nvml.nvmlInit()
    try:
        report.put("driver", _text(nvml.nvmlSystemGetDriverVersion()))
        report.put("nvml_version", _text(nvml.nvmlSystemGetNVMLVersion()))
        report.put("gpus", gpus_section(nvml))
        match = uuid_section(nvml, report)
        report.put("uuid_match", match)
        index = match.get("nvml_index", 0)
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        fields = fields_section(nvml, handle, args.calls, report)
        report.put("fields", fields)
        report.put(
            "nvml_field_values_call_s",
            fields["call_energy_and_power"]["wall_s"]["median"],
        )
        tick = tick_section(nvml, handle, args.tick_seconds)
        report.put("tick", tick)
        if tick["tick_s"] is None:
            report.problem("the energy counter did not tick during the tick section")
    finally:
        nvml.nvmlShutdown()
    with tempfile.TemporaryDirectory() as tmp:
        src = source_section(
            match.get("uuid") if match.get("matched") else None, args.source_seconds, Path(tmp)
        )
    report.put("source", src)
    if src["faults"]:
        report.problem(f"the NVML source faulted: {src['faults']}")
    ratio = src["integral_over_counter"]
    if ratio is not None and abs(ratio - 1) > 0.05:
        report.problem(
            f"instant power integral / counter = {ratio:.4f} over {src['seconds']:.1f} s"
        )
    report.put("done", True)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
