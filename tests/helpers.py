"""Helpers shared by tests: run the CLI like a user would, read results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cli_subprocess(
    args: list[str], cwd: Path, timeout: float = 180, **kwargs
) -> subprocess.CompletedProcess:
    """Run `python -m harness.cli ...` the way a user's shell would (no TTY, own process)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def load_result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


SHORT_RUN = ["run", "meter=simulated", "benchmark.max_steps=20", "benchmark.target.threshold=9"]


def short_run(run_dir: str, *overrides: str) -> dict:
    """A 20-step lm-dense-tiny run with the simulated meter whose target is met at once; its result."""
    from harness.cli import main

    assert main([*SHORT_RUN, *overrides, f"run_dir={run_dir}"]) == 0
    return load_result(Path(run_dir))


def metered_span(source, tmp_path: Path, seconds: float, hz: float | None = None):
    """A real Meter over `source` for `seconds` of wall time: (meter, t0, t1), the span's edges
    on the meter's clock. The fakes' energy follows the same clock, so a check against it holds
    on a busy machine too."""
    import time

    from harness.meters.meter import Meter

    meter = Meter([source], sample_hz=hz)
    meter.start(tmp_path / "power.csv")
    t0 = meter.clock()
    time.sleep(seconds)
    t1 = meter.clock()
    meter.stop()
    return meter, t0, t1
