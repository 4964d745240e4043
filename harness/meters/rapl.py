"""CPU package and DRAM energy from Linux powercap RAPL (/sys/class/powercap), Intel and AMD.

Top-level zones (`intel-rapl:N`, named `package-N`) are the CPU packages; their `dram` subzone
is memory. `core` and `uncore` subzones are parts of the package and are never added to it, and
`psys` (the whole platform) and the MMIO duplicates of the packages are skipped, so nothing is
counted twice. `energy_uj` wraps at `max_energy_range_uj`; a decrease is a wrap.

The counters tick about every millisecond (Intel SDM vol. 3B, 15.10.1: the energy status
registers update every ~976 us); the period is detected at open and used to place each value
(harness/meters/counter.py): at a 10 Hz poll a value is at most one tick old, so it sits just
before its poll. A read that fails (sysfs busy) is retried on the next polls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import MeterError
from harness.meters.base import MeterSource, Reading
from harness.meters.counter import detect_tick_period

RAPL_TICK_S = 0.000976  # Intel SDM 15.10.1; used when detection sees no tick (a static file)

ROOT_ONLY_FIX = (
    "energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694): run as root, or "
    "`sudo chmod o+r /sys/class/powercap/*rapl*/energy_uj` for the run"
)


@dataclass
class Zone:
    domain: str
    path: Path
    max_range_uj: int
    last_uj: int = 0
    joules: float = 0.0


def discover_zones(root: Path) -> list[Zone]:
    """Package and DRAM zones under a powercap root; raises MeterError with the reason if none."""
    if not root.is_dir():
        raise MeterError(
            f"no RAPL: {root} does not exist (a VM or container without powercap).",
            "use the NVML meter for GPUs, or meter=cpu-model for an estimate.",
        )
    zones = []
    for top in sorted(root.glob("*rapl:*")):
        if "mmio" in top.name or not re.fullmatch(r"[a-z-]*rapl:\d+", top.name):
            continue
        name = _read(top / "name")
        if not name.startswith("package-"):
            continue  # psys and friends overlap the packages
        package = name.split("-", 1)[1]
        zones.append(_zone(f"cpu:{package}", top))
        for sub in sorted(top.glob(f"{top.name}:*")):
            if _read(sub / "name") == "dram":
                zones.append(_zone(f"dram:{package}", sub))
    if not zones:
        raise MeterError(
            f"no RAPL package zones under {root}.", "check that the intel_rapl driver is loaded."
        )
    return zones


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError as exc:
        raise MeterError(f"cannot read {path}: permission denied.", ROOT_ONLY_FIX) from exc


def _zone(domain: str, path: Path) -> Zone:
    return Zone(domain=domain, path=path, max_range_uj=int(_read(path / "max_energy_range_uj")))


def available(root: Path) -> tuple[bool, str]:
    try:
        zones = discover_zones(root)
        for zone in zones:
            int(_read(zone.path / "energy_uj"))
    except MeterError as exc:
        return False, exc.problem + (" " + exc.fix if exc.fix else "")
    return True, f"RAPL zones: {', '.join(z.domain for z in zones)}"


class RaplSource(MeterSource):
    name = "rapl"
    method = "rapl"
    provenance = "measured"

    def __init__(self, root: str | Path = "/sys/class/powercap"):
        self.root = Path(root)
        self.zones = discover_zones(self.root)
        self.wraps = 0
        self.tick_s: float | None = None  # detected at open
        self.tick_detected = False

    def domains(self) -> list[str]:
        return [z.domain for z in self.zones]

    def covers(self) -> set[str]:
        return {"cpu", "dram"}  # the host's CPUs and memory, whichever way they are named

    def open(self, t_ns: int) -> None:
        for zone in self.zones:
            zone.last_uj = int(_read(zone.path / "energy_uj"))
        first = self.zones[0].path / "energy_uj"
        detected = detect_tick_period(
            lambda: _read(first), min_ticks=30, max_duration_s=0.05, pause_s=0.0001
        )
        self.tick_s = detected if detected is not None else RAPL_TICK_S
        self.tick_detected = detected is not None

    def tick_period_s(self) -> dict[str, float]:
        return {z.domain: self.tick_s for z in self.zones} if self.tick_s else {}

    def is_transient(self, exc: Exception) -> bool:
        return isinstance(exc, (OSError, ValueError))  # a busy or half-written sysfs read

    def poll(self, t_ns: int) -> list[Reading]:
        out = []
        for zone in self.zones:
            now = int(_read(zone.path / "energy_uj"))
            stamp = self.clock()
            delta = now - zone.last_uj
            if delta < 0:  # wrapped past max_energy_range_uj
                delta += zone.max_range_uj
                self.wraps += 1
            zone.joules += delta / 1e6
            zone.last_uj = now
            out.append(Reading(zone.domain, zone.joules, None, stamp))
        return out

    def details(self) -> dict:
        return {
            "root": str(self.root),
            "zones": {z.domain: str(z.path) for z in self.zones},
            "wraps": self.wraps,
            "counter_tick_s": self.tick_s,
            "tick_detected": self.tick_detected,
        }
