#!/usr/bin/env python3
"""The reference dense/MoE pair on one GPU, calibrated, run, packaged, validated and reported.

1. Calibration: one dense and one MoE run (seed 0) to max_steps with a target no run meets,
   so each records its whole eval curve.
2. The target: for each curve, the highest eval loss between 65% and 75% of max_steps (eval
   curves near the end are not monotone); the pair's target is the higher of the two, rounded
   up to 0.001 nats. Dense therefore reaches it at about 70% of max_steps, well before the end,
   and the MoE at a quality its own curve also reaches: the pair is compared at equal quality.
3. Seeds 1..N of each model to that target, dense and MoE interleaved (a timeout leaves both
   partly done, not one), NVML-measured, every run through `joulebench run`. With
   --deadline-s, a seed that the slowest run so far says would not end before the deadline
   (less the time packaging needs) is not started: what ran is packaged, and pair.json says
   which seeds were left out (the package then fails validation for too few runs, which is
   the honest verdict).
4. `joulebench system` (filled in from this machine), `package --division closed`,
   `validate`, `report`.
pair.json, written after every run, holds the curves, the target and every run's outcome.
Usage, from the repository root on a GPU machine:

    PYTHONPATH=. python3 scripts/gpu_reference_pair.py --out /tmp/reference
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
from pathlib import Path

RANGE = (0.65, 0.75)  # where on the calibration curve the target is read, in max_steps
PACKAGE_S = 15.0  # what system + package + validate + report take, kept from the deadline


def cli(*argv: str) -> tuple[int, str]:
    """`joulebench ...` in this process; its exit code and what it printed."""
    from harness.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(list(argv))
    text = buf.getvalue()
    print(text, end="", flush=True)
    return code, text


def load(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def curve(result: dict) -> list[tuple[int, float]]:
    return [(e["step"], e["eval_loss"]) for e in result["metrics"]["evals"]]


def target_from(curves: dict[str, list[tuple[int, float]]], max_steps: int) -> float:
    """The pair's target: the higher of the curves' worst eval loss in RANGE of max_steps."""
    lo, hi = RANGE[0] * max_steps, RANGE[1] * max_steps
    worst = []
    for name, points in curves.items():
        inside = [loss for step, loss in points if lo <= step <= hi]
        if not inside:
            raise SystemExit(
                f"reference pair: {name}'s curve has no eval between {lo:.0f} and {hi:.0f}"
            )
        worst.append(max(inside))
    return math.ceil(max(worst) * 1000) / 1000


def outcome(result: dict, run_dir: Path) -> dict:
    m = result["metrics"] or {}
    return {
        "benchmark": result["benchmark"],
        "seed": result["seed"],
        "status": result["status"],
        "run_dir": str(run_dir),
        "steps": m.get("steps"),
        "steps_to_target": next(
            (e["step"] for e in m.get("evals", []) if e["reached_target"]), None
        ),
        "energy_to_target_j": m.get("energy_to_target_j"),
        "time_to_target_s": result["timing"]["time_to_target_s"],
        "energy_total_j": m.get("energy_total_j"),
        "avg_power_w": m.get("avg_power_w"),
        "tokens_per_s": m.get("throughput_tokens_per_s"),
        "mfu": m.get("mfu"),
        "dropped_frac": _dropped(result),
        "meters": [f"{s['provenance']} {s['name']} ({s['method']})" for s in result["meters"]],
    }


def _dropped(result: dict) -> float | None:
    values = [w["stats"].get("dropped_frac") for w in result.get("windows", []) if w.get("stats")]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def fill_system(path: Path, division: str, meter: str, run_dirs: list[Path]) -> None:
    """The fields `joulebench system` leaves to a person, filled in for a lent machine.

    The accelerator is the one the runs trained on. On a GPU machine that is the GPU NVML
    named; in the CPU rehearsal the runs train on the CPU while a fake NVML meters a fake
    H200, and the validator (SYS-003) rightly refuses a system that declares the H200: there
    the runs' device is declared, and this says so."""
    system = json.loads(path.read_text())
    ran_on = {load(d)["workload"]["device_name"] for d in run_dirs if (d / "result.json").is_file()}
    declared = str(system.get("accelerator_model_name", ""))
    if len(ran_on) == 1 and declared.lower() not in (used := ran_on.pop()).lower():
        print(
            f"gpu_reference_pair: NVML names {declared!r} but the runs trained on {used!r}: "
            "declaring the runs' device (the CPU rehearsal's fake GPU meters a CPU run)"
        )
        system["accelerator_model_name"] = used
    unknown = "N/A: a lent cloud machine; not disclosed to the tenant"
    fill = {
        "submitter": "joulebench",
        "division": division,
        "status": "Research, Development, or Internal (RDI)",
        "power_meter_model": "NVIDIA NVML total-energy counter (GPU board only)"
        if meter == "nvml"
        else meter,
        "power_meter_method": "NVML energy counter" if meter == "nvml" else meter,
        "power_supply_details": unknown,
        "pue_source": "not measured: GPU board energy only, PUE 1.0 (IT energy)",
        "cooling": unknown,
        "hw_notes": "one GPU of a lent machine (device tool); host not exclusive",
        "sw_notes": "joulebench GPU campaign (scripts/gpu_check.sh)",
    }
    for key, value in system.items():
        if value in ("", None):
            system[key] = fill.get(key, unknown)
    path.write_text(json.dumps(system, indent=2) + "\n")


class Pair:
    def __init__(self, out: Path, args):
        self.out, self.args = out, args
        self.t0 = time.monotonic()
        self.slowest_s = 0.0  # the longest run so far, the estimate for the next one
        self.report = {
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(sys.argv),
            "dense": args.dense,
            "moe": args.moe,
            "framework": args.framework,
            "meter": args.meter,
            "calibration": {},
            "runs": [],
        }

    def save(self) -> None:
        tmp = self.out / "pair.json.tmp"
        tmp.write_text(json.dumps(self.report, indent=2) + "\n")
        os.replace(tmp, self.out / "pair.json")

    def fits(self) -> bool:
        """Whether one more run (as long as the slowest so far) ends before the deadline."""
        if self.args.deadline_s is None:
            return True
        left = self.args.deadline_s - (time.monotonic() - self.t0) - PACKAGE_S
        return self.slowest_s <= left

    def run(self, benchmark: str, seed: int, threshold: float, run_dir: Path) -> dict:
        start = time.monotonic()
        code, _ = cli(
            "run",
            f"benchmark={benchmark}",
            f"framework={self.args.framework}",
            f"meter={self.args.meter}",
            f"seed={seed}",
            f"benchmark.target.threshold={threshold}",
            f"run_dir={run_dir}",
            "progress=off",
            "submission.division=closed",
            "submission.org=joulebench",
            "submission.status=cloud",
            *self.args.overrides,
        )
        seconds = time.monotonic() - start
        self.slowest_s = max(self.slowest_s, seconds)
        result = load(run_dir)
        return outcome(result, run_dir) | {"exit_code": code, "wall_s": round(seconds, 2)}

    def calibrate(self) -> float:
        curves, floors = {}, {}
        for name in (self.args.dense, self.args.moe):
            run_dir = self.out / "runs" / "calibration" / name
            row = self.run(name, 0, 0.0, run_dir)  # eval loss never reaches 0: the whole curve
            result = load(run_dir)
            curves[name] = curve(result)
            floors[name] = result["workload"]["loss_floor_nats"]
            self.report["calibration"][name] = {"curve": curves[name], "run": row}
            self.save()
        max_steps = load(self.out / "runs" / "calibration" / self.args.dense)["config"][
            "benchmark"
        ]["max_steps"]
        target = target_from(curves, max_steps)
        self.report["target"] = {
            "threshold": target,
            "rule": f"the higher of the two curves' worst eval loss in {RANGE} x max_steps, "
            "rounded up to 0.001",
            "max_steps": max_steps,
            "loss_floor_nats": floors,
            "margin_over_floor_nats": target - floors[self.args.dense],
        }
        self.save()
        print(f"reference pair: target {target} (floor {floors[self.args.dense]:.4f})", flush=True)
        return target

    def seeds(self, target: float) -> list[Path]:
        dirs = []
        for seed in range(1, self.args.seeds + 1):
            for name in (self.args.dense, self.args.moe):
                if not self.fits():
                    self.report.setdefault("left_out", []).append(f"{name} seed {seed}")
                    self.save()
                    continue
                run_dir = self.out / "runs" / name / f"seed{seed}"
                row = self.run(name, seed, target, run_dir)
                self.report["runs"].append(row)
                self.save()
                dirs.append(run_dir)
        return dirs

    def package(self, run_dirs: list[Path]) -> int:
        system = self.out / "system" / f"{self.args.system}.json"
        system.parent.mkdir(parents=True, exist_ok=True)
        cli("system", "--name", self.args.system, "-o", str(system))
        fill_system(system, "closed", self.args.meter, run_dirs)
        sub = self.out / "submission"
        code, _ = cli(
            "package", *map(str, run_dirs), "--system", str(system), "--org", "joulebench",
            "--division", "closed", "-o", str(sub),
        )  # fmt: skip
        self.report["package_exit"] = code
        code, text = cli("validate", str(sub), "--json", str(self.out / "validate.json"))
        (self.out / "validate.txt").write_text(text)
        self.report["validate_exit"] = code
        report_code, _ = cli("report", str(sub), "-o", str(self.out / "report"))
        self.report["report_exit"] = report_code
        self.save()
        return code or report_code


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dense", default="lm-dense-small")
    parser.add_argument("--moe", default="lm-moe-small")
    parser.add_argument("--seeds", type=int, default=5, help="the ruleset asks 5 runs a benchmark")
    parser.add_argument("--framework", default="torch")
    parser.add_argument("--meter", default="nvml")
    parser.add_argument("--system", default="h200-lent", help="system id of the package")
    parser.add_argument(
        "--deadline-s", type=float, help="start no run that would end later than this"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pair = Pair(args.out, args)
    target = pair.calibrate()
    run_dirs = pair.seeds(target)
    return pair.package(run_dirs)


if __name__ == "__main__":
    sys.exit(main())
