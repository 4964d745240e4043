"""Intel Gaudi accelerators through HLML (the `pyhlml` package, `habana-pyhlml`, extra `.[gaudi]`).

- Energy: hlmlDeviceGetTotalEnergyConsumption, mJ since the driver loaded; power:
  hlmlDeviceGetPowerUsage, mW. The counter's period is undocumented: detected at open, never
  assumed (only Gaudi hardware can settle it).
- Which devices: HABANA_VISIBLE_MODULES (module ids) when set, else every device; each matched
  by module id and recorded with its PCI bus id, in module-id order.
- pyhlml's HLMLError_* subclasses exist only after the first hlmlInit(), so errors are caught as
  HLMLError and told apart by their `value` (hlml.h codes). pyhlml loads libhlml.so at hlmlInit
  from /usr/lib/habanalabs (or meter.hlml.library), printing a line when it cannot: that line is
  swallowed and the failure named.
- Gaudi training runs through `Measurement` (the user's own loop): the meter is all it needs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os

from harness.errors import MeterError
from harness.meters.counter_device import CounterDevice, CounterSource, Sample
from harness.meters.trust import TrustSettings, check_source

DEFAULT_LIBRARY = "/usr/lib/habanalabs/libhlml.so"  # pyhlml's own default
TRANSIENT_CODES = {10, 21}  # HLML_ERROR_TIMEOUT, HLML_ERROR_NO_DATA
CODE_NAMES = {1: "uninitialized", 3: "not supported", 6: "not found", 9: "driver not loaded"}
CODE_NAMES.update({10: "timeout", 15: "AIP lost", 21: "no data", 49: "unknown"})


def load_pyhlml(library: str | None = None):
    if importlib.util.find_spec("pyhlml") is None:
        raise MeterError(
            "HLML is unavailable: the pyhlml package is not installed.",
            'pip install -e ".[gaudi]" (or pip install habana-pyhlml).',
        )
    import pyhlml
    from pyhlml import hlml_lib, main

    if library:  # pyhlml takes its library's path only as LibHLML's default argument
        main.LibHLML = functools.partial(hlml_lib.LibHLML, path=library)
    return pyhlml


def _error(pyhlml):
    from pyhlml.hlml_error import HLMLError

    return HLMLError


def init(pyhlml, library: str | None) -> None:
    """hlmlInit, its printed line swallowed, its failure one MeterError."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            pyhlml.hlmlInit()
    except _error(pyhlml) as exc:
        code = getattr(exc, "value", None)
        raise MeterError(
            f"HLML does not initialise ({CODE_NAMES.get(code, code)}): no Habana driver or "
            f"libhlml.so at {library or DEFAULT_LIBRARY}.",
            "install the Habana driver (habanalabs-firmware/-dkms), or set meter.hlml.library "
            "to your libhlml.so.",
        ) from exc


def available(library: str | None = None) -> tuple[bool, str]:
    try:
        pyhlml = load_pyhlml(library)
        init(pyhlml, library)
        try:
            count = pyhlml.hlmlDeviceGetCount()
        finally:
            pyhlml.hlmlShutdown()
    except MeterError as exc:
        return False, exc.problem + (" Fix: " + exc.fix if exc.fix else "")
    return (True, f"HLML sees {count} Gaudi device(s)") if count else (False, "HLML finds none")


class GaudiDevice(CounterDevice):
    joules_per_unit = 1e-3  # mJ
    assumed_tick_s = None  # undocumented: detected, never assumed

    def __init__(self, pyhlml, handle, domain: str, freeze_after_s: float):
        super().__init__(domain)
        self.hl, self.handle = pyhlml, handle
        self.vendor_errors = (_error(pyhlml),)
        self.freeze_after_s = freeze_after_s
        self.module_id = pyhlml.hlmlDeviceGetModuleID(handle)
        self.name = _text(pyhlml.hlmlDeviceGetName(handle))
        self.bus_id = _text(pyhlml.hlmlDeviceGetPCIInfo(handle).bus_id)

    def first_counter(self) -> int:
        return self.hl.hlmlDeviceGetTotalEnergyConsumption(self.handle)

    def is_transient(self, exc: BaseException) -> bool:
        return getattr(exc, "value", None) in TRANSIENT_CODES

    def open_error(self, exc: BaseException) -> str:
        code = getattr(exc, "value", None)
        return f"hlmlDeviceGetTotalEnergyConsumption failed ({CODE_NAMES.get(code, code)})"

    def sample(self, clock) -> Sample:
        counter = (
            self.hl.hlmlDeviceGetTotalEnergyConsumption(self.handle) if self.has_counter else None
        )
        try:
            watts = self.classify_watts(self.hl.hlmlDeviceGetPowerUsage(self.handle) / 1000.0)
        except self.vendor_errors:
            watts = self.classify_watts(None, failed=True)
        return Sample(counter, watts, clock())


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _visible_modules() -> list[int] | None:
    env = os.environ.get("HABANA_VISIBLE_MODULES")
    if env is None:
        return None
    try:
        return [int(m) for m in env.split(",") if m.strip()]
    except ValueError as exc:
        raise MeterError(
            f"HABANA_VISIBLE_MODULES={env} is not a list of module ids.", "e.g. 0,1,2,3."
        ) from exc


class HlmlSource(CounterSource):
    name = "hlml"

    def __init__(
        self,
        library: str | None = None,
        modules: list[int] | None = None,
        tick_s: float | None = None,
        tick_lock: bool = True,
        trust: TrustSettings | None = None,
        freeze_after_s: float = 2.0,
    ):
        self.hl = load_pyhlml(library)
        self.library = library or DEFAULT_LIBRARY
        self.tick_s, self.tick_lock, self.trust = tick_s, tick_lock, trust
        init(self.hl, library)
        try:
            handles = [
                self.hl.hlmlDeviceGetHandleByIndex(i) for i in range(self.hl.hlmlDeviceGetCount())
            ]
            wanted = modules if modules is not None else _visible_modules()
            found = {self.hl.hlmlDeviceGetModuleID(h): h for h in handles}
            if wanted is None:
                wanted = sorted(found)
            missing = [m for m in wanted if m not in found]
            if missing:
                raise MeterError(
                    f"Gaudi module {missing[0]} is not here: HLML sees modules "
                    f"{', '.join(map(str, sorted(found)))}.",
                    "fix HABANA_VISIBLE_MODULES or meter.hlml.modules.",
                )
            self.devices = [
                GaudiDevice(self.hl, found[m], f"hpu:{k}", freeze_after_s)
                for k, m in enumerate(sorted(wanted))
            ]
            self.driver = _text(self.hl.hlmlGetDriverVersion())
            self.version = _text(self.hl.hlmlGetHLMLVersion())
        except BaseException:
            self.hl.hlmlShutdown()
            raise

    def covers(self) -> set[str]:
        return {f"hpu:{d.bus_id}" for d in self.devices}

    def open(self, t_ns: int) -> None:
        for device in self.devices:
            device.probe(self.tick_s, self.tick_lock, record=self.trust is not None)
        check_source(self, self.devices, self.trust)

    def close(self) -> None:
        self.hl.hlmlShutdown()

    def details(self) -> dict:
        return {
            "driver": self.driver,
            "hlml_version": self.version,
            "library": self.library,
            "matched_by": "module id (HABANA_VISIBLE_MODULES)"
            if os.environ.get("HABANA_VISIBLE_MODULES")
            else "module id (every device)",
            "devices": [
                {**d.describe(), "module_id": d.module_id, "pci_bus_id": d.bus_id, "name": d.name}
                for d in self.devices
            ],
        }
