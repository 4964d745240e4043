"""What a device is called, for the workload's record and the system's (no harness import: the
workloads are a leaf)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
