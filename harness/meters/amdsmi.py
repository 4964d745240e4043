"""AMD Instinct GPUs through AMD SMI (the `amdsmi` package, extra `.[amd]`), one CounterDevice each.

- Energy: amdsmi_get_energy_count's 64-bit `energy_accumulator` times a unit. The library reports
  `counter_resolution` (15.3 uJ, the figure rocm_smi hard-codes); the kernel documents the SMU
  13.0.6 parts' unit (MI300 family) as 2^-16 J = 15.259 uJ (drivers/gpu/drm/amd/pm/swsmu/smu13/
  smu_v13_0_6_ppt.c), so the reported figure reads 0.27% high there. Where the driver documents
  the unit it is used, else the reported one; both, and which was used, go in the result.
- Power: amdsmi_get_power_info's integer watts, `current_socket_power` on MI300 and later,
  `average_socket_power` on MI200. 0xFFFF and 0xFFFFFFFF mean unsupported; amdsmi 7.0.2 maps only
  the first to "N/A", so 4,294,967,295 W comes through: both are no reading here.
- One lock around every amdsmi call: the library is not thread-safe before ROCm 7.2.
- Devices are matched by PCI BDF. amd-smi lists them in bus order, not HIP's, so HIP order comes
  from each device's enumeration info (hip_id); the visible ones from ROCR_VISIBLE_DEVICES, then
  HIP_VISIBLE_DEVICES or CUDA_VISIBLE_DEVICES (ROCm torch) as indices into what is left.
- MI250/MI250X: the primary die reports both dies' energy and the secondary reads 0, so the pair
  is one domain labelled with both BDFs; a 0 on any other device is a fault.
- A partitioned device (MI300X CPX, ...) has one counter for every partition: refused unless
  meter.amdsmi.allow_partition, then labelled.
- The counter's period is undocumented: detected at open, never assumed. A counter that goes
  backwards (ROCm/amdsmi#115) or freezes under load (ROCm/amdsmi#38) is a fault.
- The Python package's struct layouts belong to one library version: a library outside the
  versions this meter knows is refused with one line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import threading

from harness.errors import MeterError
from harness.meters.counter_device import CounterDevice, CounterSource, Sample
from harness.meters.trust import TrustSettings, check_source

DOCUMENTED_UNIT_J = 2.0**-16  # smu_v13_0_6_ppt.c: the energy accumulator counts 15.259 uJ
DOCUMENTED_UNIT_PARTS = ("MI300", "MI308", "MI325")  # SMU 13.0.6
UNSUPPORTED_W = (0xFFFF, 0xFFFFFFFF)
# The library versions whose structs match each Python package's layouts: ROCm 7.0's amd-smi-lib
# is 26.0.x (amd-smi changelog). Override with meter.amdsmi.accept_library once checked.
KNOWN_LIBRARIES = {"7.0": ("26.0",)}
_LOCK = threading.Lock()  # every amdsmi call, every thread: not thread-safe before ROCm 7.2


def load_amdsmi():
    """The amdsmi module, or one MeterError naming what is missing. Its import prints a line
    and raises KeyError when libamd_smi.so is absent: the line is swallowed, the error named."""
    if importlib.util.find_spec("amdsmi") is None:
        raise MeterError(
            "AMD SMI is unavailable: the amdsmi package is not installed.",
            'pip install -e ".[amd]" (or pip install amdsmi matching your ROCm).',
        )
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            import amdsmi
        except (KeyError, OSError, AttributeError) as exc:
            raise MeterError(
                "AMD SMI is unavailable: the amdsmi package found no libamd_smi.so "
                f"({type(exc).__name__}: {exc}); it looks in $ROCM_PATH/lib and the linker path.",
                "install ROCm's amd-smi-lib, or set ROCM_PATH to the ROCm that has "
                "lib/libamd_smi.so.",
            ) from exc
    return amdsmi


def call(fn, *args):
    with _LOCK:
        return fn(*args)


def available(smi=None) -> tuple[bool, str]:
    try:
        smi = smi or load_amdsmi()
        call(smi.amdsmi_init)
        try:
            count = len(call(smi.amdsmi_get_processor_handles))
        finally:
            call(smi.amdsmi_shut_down)
    except MeterError as exc:
        return False, exc.problem + (" Fix: " + exc.fix if exc.fix else "")
    except Exception as exc:  # noqa: BLE001 - AmdSmiLibraryException: no driver, no device
        return False, f"AMD SMI does not initialise ({exc}): no AMD GPU driver here"
    return (True, f"AMD SMI sees {count} GPU(s)") if count else (False, "AMD SMI finds no GPU")


def check_library(smi, accept: str | None) -> str:
    """The library version, if the package's layouts fit it; else one MeterError."""
    v = call(smi.amdsmi_get_lib_version)
    library = f"{v['major']}.{v['minor']}.{v['release']}"
    package = getattr(smi, "__version__", "unknown")
    fits = KNOWN_LIBRARIES.get(".".join(package.split(".")[:2]), ())
    if accept:
        fits = (*fits, accept)
    if not any(library == f or library.startswith(f + ".") for f in fits):
        raise MeterError(
            f"amdsmi package {package} does not know libamd_smi {library}: its struct layouts "
            f"are those of {', '.join(fits) or 'another library'}, and a mismatch reads garbage.",
            "install the amdsmi package of your ROCm release (ROCm ships it in "
            "/opt/rocm/share/amd_smi), or set meter.amdsmi.accept_library="
            f"{v['major']}.{v['minor']} once you have checked the layouts match.",
        )
    return library


def _visible(entries: list[dict]) -> list[dict]:
    """The process's devices in HIP order: ROCR_VISIBLE_DEVICES first (indices or UUIDs), then
    HIP_VISIBLE_DEVICES or CUDA_VISIBLE_DEVICES as indices into what ROCR left."""
    devices = sorted(entries, key=lambda e: e["hip_id"])
    for var in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        env = os.environ.get(var)
        if env is None:
            continue
        if var == "CUDA_VISIBLE_DEVICES" and os.environ.get("HIP_VISIBLE_DEVICES") is not None:
            continue  # ROCm torch honours HIP_VISIBLE_DEVICES first
        picked = []
        for item in [e.strip() for e in env.split(",") if e.strip()]:
            match = [d for d in devices if d["uuid"] == item] or (
                [devices[int(item)]] if item.isdigit() and int(item) < len(devices) else []
            )
            if not match:
                raise MeterError(
                    f"{var}={env} names {item}, which is not one of the {len(devices)} "
                    "device(s) AMD SMI sees here.",
                    f"list indices below {len(devices)} or device UUIDs in {var}.",
                )
            picked += match
        devices = picked
    return devices


class AmdGpu(CounterDevice):
    assumed_tick_s = None  # undocumented: detected, never assumed
    regression_is_fault = True  # ROCm/amdsmi#115: concurrent calls read it backwards

    def __init__(self, smi, entry: dict, domain: str, freeze_after_s: float):
        super().__init__(domain)
        self.smi, self.handle, self.entry = smi, entry["handle"], entry
        self.vendor_errors = (smi.AmdSmiException,)
        self.freeze_after_s = freeze_after_s
        self.name = entry["name"]
        energy = call(smi.amdsmi_get_energy_count, self.handle)
        self.reported_uj = float(energy["counter_resolution"])
        documented = any(part in self.name for part in DOCUMENTED_UNIT_PARTS)
        self.joules_per_unit = DOCUMENTED_UNIT_J if documented else self.reported_uj * 1e-6
        self.unit_source = (
            "documented: 2^-16 J (kernel smu_v13_0_6_ppt.c)"
            if documented
            else "reported by amdsmi (counter_resolution)"
        )
        self.power_key = "average_socket_power" if "MI2" in self.name else "current_socket_power"
        self.counts["power_unsupported_skipped"] = 0

    def first_counter(self) -> int:
        return call(self.smi.amdsmi_get_energy_count, self.handle)["energy_accumulator"]

    def refuse_first(self, raw) -> str | None:
        if raw != 0:
            return None
        return (
            "its energy counter reads 0 J: a fault (only an MI250's secondary die reads 0, and "
            "its energy is its primary's)"
        )

    def is_transient(self, exc: BaseException) -> bool:
        smi = self.smi
        if isinstance(exc, (smi.AmdSmiRetryException, smi.AmdSmiTimeoutException)):
            return True
        return getattr(exc, "err_code", None) == 30  # AMDSMI_STATUS_BUSY

    def sample(self, clock) -> Sample:
        energy = call(self.smi.amdsmi_get_energy_count, self.handle)
        power = call(self.smi.amdsmi_get_power_info, self.handle)
        after = clock()
        raw = power.get(self.power_key)
        if not isinstance(raw, int) or raw in UNSUPPORTED_W:  # "N/A", 0xFFFF, 0xFFFFFFFF
            self.counts["power_unsupported_skipped"] += 1
            watts = None
        else:
            watts = self.classify_watts(float(raw))
        counter = energy["energy_accumulator"] if self.has_counter else None
        return Sample(counter, watts, after)


def _entries(smi) -> list[dict]:
    out = []
    for handle in call(smi.amdsmi_get_processor_handles):
        enum = call(smi.amdsmi_get_gpu_enumeration_info, handle)
        out.append(
            {
                "handle": handle,
                "bdf": call(smi.amdsmi_get_gpu_device_bdf, handle),
                "hip_id": enum["hip_id"],
                "uuid": call(smi.amdsmi_get_gpu_device_uuid, handle),
                "name": call(smi.amdsmi_get_gpu_asic_info, handle)["market_name"],
                "energy": call(smi.amdsmi_get_energy_count, handle)["energy_accumulator"],
            }
        )
    return out


class AmdSmiSource(CounterSource):
    name = "amdsmi"

    def __init__(
        self,
        smi=None,
        bdfs: list[str] | None = None,
        tick_s: float | None = None,
        tick_lock: bool = True,
        trust: TrustSettings | None = None,
        freeze_after_s: float = 2.0,
        accept_library: str | None = None,
        allow_partition: bool = False,
    ):
        self.smi = smi or load_amdsmi()
        self.tick_s, self.tick_lock, self.trust = tick_s, tick_lock, trust
        try:
            call(self.smi.amdsmi_init)
        except self.smi.AmdSmiException as exc:
            raise MeterError(
                f"AMD SMI does not initialise: {exc}.", "check amd-smi works."
            ) from exc
        try:
            self.library = check_library(self.smi, accept_library)
            self._open_devices(bdfs, freeze_after_s, allow_partition)
        except BaseException:
            call(self.smi.amdsmi_shut_down)
            raise

    def _open_devices(self, bdfs, freeze_after_s, allow_partition) -> None:
        entries = _entries(self.smi)
        if bdfs:  # the workload's own devices, by BDF
            wanted = [b.lower() for b in bdfs]
            picked = [e for b in wanted for e in entries if e["bdf"].lower() == b]
            self.matched_by = "pci bdf (the workload's devices)"
        else:
            picked = _visible(entries)
            self.matched_by = "pci bdf (visible devices in HIP order)"
        self.devices, self.dies = [], {}
        for k, entry in enumerate(picked):
            partner = self._mi250_partner(entry, entries)
            if partner is not None and partner in picked:
                continue  # a secondary die whose primary is metered: its energy is there
            primary = partner or entry
            partition = self._partition(primary["handle"])
            if partition not in (None, "SPX") and not allow_partition:
                raise MeterError(
                    f"AMD GPU {primary['bdf']} is in {partition} compute-partition mode: its "
                    "energy counter covers every partition, not only this workload's.",
                    "meter an SPX device, or set meter.amdsmi.allow_partition=true to record "
                    "the whole device's energy, labelled as such.",
                )
            gpu = AmdGpu(self.smi, primary, f"gpu:{k}", freeze_after_s)
            gpu.partition = partition
            secondaries = [e["bdf"] for e in entries if self._mi250_partner(e, entries) is primary]
            gpu.bdfs = sorted({primary["bdf"], *secondaries})
            self.devices.append(gpu)
        if not self.devices:
            raise MeterError("AMD SMI found none of the workload's GPUs.", "check the BDFs given.")
        self.gpus = self.devices

    @staticmethod
    def _mi250_partner(entry: dict, entries: list[dict]) -> dict | None:
        """The primary die of an MI250's secondary (it reads 0 J): the MI250 just before it in
        bus order. None for anything else."""
        if "MI250" not in entry["name"] or entry["energy"] != 0:
            return None
        i = entries.index(entry)
        before = [e for e in entries[:i] if "MI250" in e["name"] and e["energy"] != 0]
        return before[-1] if before else None

    def _partition(self, handle) -> str | None:
        try:
            return call(self.smi.amdsmi_get_gpu_compute_partition, handle) or None
        except self.smi.AmdSmiException:  # NotSupported: an unpartitionable device
            return None

    def covers(self) -> set[str]:
        return {f"gpu:{bdf}" for g in self.devices for bdf in g.bdfs}

    def open(self, t_ns: int) -> None:
        for gpu in self.devices:
            gpu.probe(self.tick_s, self.tick_lock, record=self.trust is not None)
        check_source(self, self.devices, self.trust)
        self._states = {g.domain: self._state(g) for g in self.devices}

    def close(self) -> None:
        call(self.smi.amdsmi_shut_down)

    def _state(self, gpu) -> dict:
        def ask(fn):
            try:
                return call(fn, gpu.handle)
            except self.smi.AmdSmiException:
                return None

        cap = ask(self.smi.amdsmi_get_power_cap_info) or {}
        driver = ask(self.smi.amdsmi_get_gpu_driver_info) or {}
        return {
            "driver": driver.get("driver_version"),
            "power_cap_w": cap["power_cap"] / 1e6 if cap.get("power_cap") else None,  # uW
        }

    def details(self) -> dict:
        return {
            "library": self.library,
            "package": getattr(self.smi, "__version__", None),
            "matched_by": self.matched_by,
            "gpus": [
                {
                    **g.describe(),
                    "name": g.name,
                    "bdfs": g.bdfs,
                    "dies": "both dies of an MI250 (the primary reports the pair)"
                    if len(g.bdfs) > 1
                    else "one",
                    "counter_resolution_reported_uj": g.reported_uj,
                    "unit_used_uj": round(g.joules_per_unit * 1e6, 6),
                    "unit_source": g.unit_source,
                    "power_field": g.power_key,
                    "partition": g.partition or "none",
                    **getattr(self, "_states", {}).get(g.domain, {}),
                }
                for g in self.devices
            ],
        }
