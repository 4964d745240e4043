"""What machine and code produced a run: host, OS, frameworks, git state."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from harness import __version__
from harness.results.schema import Accelerator, CodeVersion, SystemInfo
from workloads.device import cpu_model_name  # noqa: F401 - what the system record names a CPU

REPO_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version() -> CodeVersion:
    sha = _git("rev-parse", "HEAD")
    dirty = None
    if sha is not None:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = bool(status) if status is not None else None
    return CodeVersion(package_version=__version__, git_sha=sha, git_dirty=dirty)


def framework_versions() -> dict[str, str]:
    versions = {}
    for dist in ("torch", "jax", "jaxlib", "hydra-core", "numpy", "nvidia-ml-py"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def collect_system(
    device_kind: str,
    device_name: str,
    device_count: int,
    driver: str | None = None,
    world_size: int = 1,
) -> SystemInfo:
    import psutil

    vendor = None  # a CPU-only run has no accelerator vendor
    if device_kind == "tpu":
        vendor = "Google"
    elif device_kind == "gpu":
        vendor = next(
            (v for v in ("NVIDIA", "AMD", "Intel") if v.lower() in device_name.lower()), None
        )
    return SystemInfo(
        accelerator=Accelerator(
            vendor=vendor, model=device_name, count=device_count, driver=driver
        ),
        host_cpu=cpu_model_name(),
        host_cpu_count=psutil.cpu_count(logical=True) or 0,
        host_memory_gb=round(psutil.virtual_memory().total / 2**30, 2),
        os=f"{platform.system()} {platform.release()}",
        python=sys.version.split()[0],
        frameworks=framework_versions(),
        world_size=world_size,
    )
