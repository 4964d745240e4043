#!/usr/bin/env python3
"""Whether a GPU campaign step's run measured what it should: one line, exit 0 or 1.

A step of scripts/gpu_check.sh that trains (`joulebench run`, a Measurement loop) passes when
its result.json says the run ended normally (`success`, or `target_not_reached` where the step
asks for a fixed number of steps: --missed-target-ok), every joule in it is `measured`, and no
meter domain failed. A run that exits 0 with a lost GPU meter fails here, which its exit code
alone would not show. Usage:

    python3 scripts/run_status.py RUN_DIR [--missed-target-ok]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def verdict(run_dir: Path, missed_target_ok: bool) -> tuple[bool, str]:
    try:
        result = json.loads((run_dir / "result.json").read_text())
    except (OSError, ValueError) as exc:
        return False, f"{run_dir}: no readable result.json ({exc})"
    status = result.get("status")
    faults = "; ".join(str(f.get("cause")) for f in result.get("meter_faults") or [])
    allowed = {"success", "target_not_reached"} if missed_target_ok else {"success"}
    if status not in allowed:
        why = result.get("error") or (f"meter faults: {faults}" if faults else "no error recorded")
        return False, f"{run_dir}: status {status} ({why})"
    meters = result.get("meters") or []
    unmeasured = [m.get("name") for m in meters if m.get("provenance") != "measured"]
    if not meters or unmeasured:
        return False, f"{run_dir}: energy not measured (sources {unmeasured or 'none'})"
    if faults:
        return False, f"{run_dir}: meter faults: {faults}"
    sources = ", ".join(f"{m.get('name')} ({m.get('method')})" for m in meters)
    energy = (result.get("metrics") or {}).get("energy_total_j")
    return True, f"{run_dir}: {status}, {energy} J measured by {sources}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--missed-target-ok", action="store_true")
    args = parser.parse_args()
    ok, line = verdict(args.run_dir, args.missed_target_ok)
    print(("run_status: ok " if ok else "run_status: FAILED ") + line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
