"""Intel Data Center GPU Max and Arc through Linux hwmon (drivers i915 and xe); no vendor library.

Each GPU's hwmon directory (`name` is `i915` or `xe`) has `energy1_input`, the card's energy in
microjoules, and a `device` link to its PCI function, which names its BDF. Per-tile hwmons
(`i915_gtN`, `xe_gtN`) measure parts of the same card: they are nested in its total, recorded
beside it, and never added to it, as RAPL's core and uncore zones are never added to a package.
The drivers give no instant power, so the trust check at open is inconclusive here and says so.
Since Linux 5.10-era hardening the energy files may be root only: that is one line with the fix.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import MeterError
from harness.meters.counter_device import CounterDevice, CounterSource, Sample
from harness.meters.trust import TrustSettings, check_source

DRIVERS = ("i915", "xe")
TILE = re.compile(r"(i915|xe)_gt(\d+)$")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except PermissionError as exc:
        raise MeterError(
            f"cannot read {path}: permission denied (the GPU's energy is readable by root only).",
            f"run as root, or `sudo chmod o+r {path}` for the run.",
        ) from exc


def _bdf(hwmon: Path) -> str:
    """The PCI function the hwmon belongs to: its `device` link's target, 0000:03:00.0."""
    return (hwmon / "device").resolve().name


def discover(root: Path) -> tuple[list[tuple[str, Path]], dict[str, list[str]]]:
    """(BDF, hwmon dir) of each card, and each card's nested tile hwmons by BDF."""
    if not root.is_dir():
        raise MeterError(
            f"no hwmon: {root} does not exist.", "this is not a Linux host with sysfs."
        )
    cards, tiles = [], {}
    for hwmon in sorted(root.glob("hwmon*"), key=lambda p: int(p.name[5:] or 0)):
        try:
            name = (hwmon / "name").read_text().strip()
        except OSError:
            continue
        if name in DRIVERS and (hwmon / "energy1_input").exists():
            cards.append((_bdf(hwmon), hwmon))
        elif TILE.match(name):
            tiles.setdefault(_bdf(hwmon), []).append(hwmon.name + f" ({name})")
    if not cards:
        raise MeterError(
            f"no Intel GPU energy under {root}: no i915 or xe hwmon with energy1_input.",
            "load the i915 or xe driver (Linux 6.2+ for i915's hwmon energy).",
        )
    return sorted(cards), tiles


def available(root: Path) -> tuple[bool, str]:
    try:
        cards, _ = discover(root)
        for _, hwmon in cards:
            int(_read(hwmon / "energy1_input"))
    except MeterError as exc:
        return False, exc.problem + (" Fix: " + exc.fix if exc.fix else "")
    return True, f"Intel GPU hwmon: {', '.join(bdf for bdf, _ in cards)}"


class HwmonGpu(CounterDevice):
    joules_per_unit = 1e-6  # energy1_input: microjoules
    assumed_tick_s = None  # detected, never assumed
    vendor_errors = (OSError, ValueError)  # a busy or half-written sysfs read

    def __init__(self, domain: str, bdf: str, hwmon: Path):
        super().__init__(domain)
        self.bdf, self.hwmon = bdf, hwmon
        self.path = hwmon / "energy1_input"

    def first_counter(self) -> int:
        return int(_read(self.path))

    def is_transient(self, exc: BaseException) -> bool:
        return True

    def sample(self, clock) -> Sample:
        return Sample(int(_read(self.path)), None, clock())


class IntelHwmonSource(CounterSource):
    name = "intel-hwmon"
    fixed_hz = 10.0  # no ticks placed (tick_period_s): CounterSource polls at this rate

    def __init__(
        self,
        root: str | Path = "/sys/class/hwmon",
        bdfs: list[str] | None = None,
        trust: TrustSettings | None = None,
    ):
        self.root = Path(root)
        cards, self.tiles = discover(self.root)
        if bdfs:
            known = dict(cards)
            missing = [b for b in bdfs if b not in known]
            if missing:
                raise MeterError(
                    f"no Intel GPU at {missing[0]}: hwmon has {', '.join(known)}.",
                    "fix meter.intel_hwmon.bdfs.",
                )
            cards = [(b, known[b]) for b in bdfs]
        self.devices = [HwmonGpu(f"gpu:{k}", bdf, path) for k, (bdf, path) in enumerate(cards)]
        self.trust = trust

    def covers(self) -> set[str]:
        return {f"gpu:{d.bdf}" for d in self.devices}

    def tick_period_s(self) -> dict[str, float]:
        """None: i915 and xe compute energy1_input at each read from the GPU's energy status
        register, so it is read as a continuous counter, interpolated between reads at a fixed
        10 Hz, as RAPL's millisecond ticks are at 10 Hz; the detected period is recorded."""
        return {}

    def open(self, t_ns: int) -> None:
        for device in self.devices:
            _read(device.path)  # a root-only file is one line now, not a fault later
            device.probe(None, tick_lock=False, record=self.trust is not None)
        check_source(self, self.devices, self.trust)

    def details(self) -> dict:
        return {
            "root": str(self.root),
            "gpus": [
                {
                    **d.describe(),
                    "bdf": d.bdf,
                    "hwmon": str(d.hwmon),
                    "tiles_nested_not_added": self.tiles.get(d.bdf, []),
                }
                for d in self.devices
            ],
        }
