"""Build the run's meter from `meter` config.

`meter.source` is one source, several joined by "+" (a composite), or `auto`: every measured
source this machine offers (NVML, RAPL, and a PTDaemon wall meter when its host is set), the
TPU estimate on a TPU run, and the estimated CPU model only when nothing better exists. The
simulated and replay sources are never picked automatically.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, MeterError
from harness.meters.base import MeterSource
from harness.meters.meter import Meter


@dataclass(frozen=True)
class SourceKind:
    name: str
    summary: str
    available: Callable  # (meter_cfg, workload_info | None) -> (bool, reason)
    build: Callable  # (meter_cfg, workload_info | None, topology | None) -> MeterSource
    auto: bool  # may meter=auto pick it
    # "device": every rank meters its own devices; "node": one per node, on local rank 0
    scope: str = "device"


def _gpu_indices(cfg, info) -> list[int] | None:
    if cfg.nvml.devices is not None:
        return list(cfg.nvml.devices)
    return None if info is None else info.extra.get("cuda_device_indices")


def _trust(cfg):
    """The trust check's settings (None: off), for every counter meter."""
    from harness.meters.trust import TrustSettings

    t = cfg.trust
    if not t.check:
        return None
    return TrustSettings(span_s=t.span_s, tolerance=t.tolerance, on_mismatch=t.on_mismatch)


def _nvml_available(cfg, info):
    from harness.meters import nvml

    return nvml.available()


def _nvml_build(cfg, info, topology=None):
    from harness.meters.nvml import NvmlSource

    # the workload's own GPUs by UUID (torch knows them); configured indices override
    uuids = None
    if cfg.nvml.devices is None and info is not None:
        uuids = info.extra.get("cuda_device_uuids")
    return NvmlSource(
        _gpu_indices(cfg, info),
        uuids=uuids,
        tick_s=cfg.nvml.tick_s,
        allow_mig=cfg.nvml.allow_mig,
        tick_lock=cfg.nvml.tick_lock and cfg.sample_hz is None,
        trust=_trust(cfg),
    )


def _amdsmi_available(cfg, info):
    from harness.meters import amdsmi

    return amdsmi.available()


def _amdsmi_build(cfg, info, topology=None):
    from harness.meters.amdsmi import AmdSmiSource

    a = cfg.amdsmi
    bdfs = a.devices or (info.extra.get("pci_bdfs") if info is not None else None)
    return AmdSmiSource(
        bdfs=list(bdfs) if bdfs else None,
        tick_s=a.tick_s,
        tick_lock=cfg.sample_hz is None,
        trust=_trust(cfg),
        freeze_after_s=a.freeze_after_s,
        accept_library=a.accept_library,
        allow_partition=a.allow_partition,
    )


def _hlml_available(cfg, info):
    from harness.meters import hlml

    return hlml.available(cfg.hlml.library)


def _hlml_build(cfg, info, topology=None):
    from harness.meters.hlml import HlmlSource

    h = cfg.hlml
    return HlmlSource(
        library=h.library,
        modules=list(h.modules) if h.modules is not None else None,
        tick_s=h.tick_s,
        tick_lock=cfg.sample_hz is None,
        trust=_trust(cfg),
        freeze_after_s=h.freeze_after_s,
    )


def _hwmon_available(cfg, info):
    from harness.meters import intel_hwmon

    return intel_hwmon.available(Path(cfg.intel_hwmon.root))


def _hwmon_build(cfg, info, topology=None):
    from harness.meters.intel_hwmon import IntelHwmonSource

    devices = cfg.intel_hwmon.devices
    return IntelHwmonSource(
        cfg.intel_hwmon.root, list(devices) if devices else None, trust=_trust(cfg)
    )


def _redfish_available(cfg, info):
    if not cfg.redfish.host:
        return False, "no BMC configured (set meter.redfish.host and its credentials)"
    return True, f"Redfish BMC at {cfg.redfish.host}"


def _redfish_build(cfg, info, topology=None):
    from harness.meters.redfish import RedfishSource

    r = cfg.redfish
    if not r.host:
        raise MeterError(
            "meter=redfish needs the BMC's address.", "set meter.redfish.host=<bmc address>."
        )
    return RedfishSource(
        r.host,
        chassis=r.chassis,
        credentials_file=r.credentials_file,
        verify_tls=r.verify_tls,
        ca_file=r.ca_file,
        timeout_s=r.timeout_s,
        trust=_trust(cfg),
        freeze_after_s=r.freeze_after_s,
    )


def _rapl_available(cfg, info):
    from harness.meters import rapl

    return rapl.available(Path(cfg.rapl.root))


def _rapl_build(cfg, info, topology=None):
    from harness.meters.rapl import RaplSource

    return RaplSource(cfg.rapl.root)


def _tpu_available(cfg, info):
    if info is None or info.device_kind != "tpu":
        return False, "the workload does not run on a TPU"
    return True, f"{info.device_count} x {info.device_name}"


def _tpu_build(cfg, info, topology=None):
    from harness.meters.tpu import TpuSource

    ok, why = _tpu_available(cfg, info)
    if not ok:
        raise MeterError(f"meter=tpu but {why}.", "run with framework=jax on a Cloud TPU VM.")
    return TpuSource(
        info.device_name, info.device_count, cfg.tpu.watts_per_chip, cfg.tpu.duty_cycle
    )


def _ptd_available(cfg, info):
    if not cfg.ptdaemon.host:
        return False, "no wall meter configured (set meter.ptdaemon.host)"
    return True, f"PTDaemon at {cfg.ptdaemon.host}:{cfg.ptdaemon.port}"


def _ptd_build(cfg, info, topology=None):
    from harness.meters.wall import PtdaemonSource

    if not cfg.ptdaemon.host:
        raise MeterError(
            "meter=ptdaemon needs the daemon's address.",
            "set meter.ptdaemon.host=<director> (and port).",
        )
    p = cfg.ptdaemon
    return PtdaemonSource(
        p.host,
        p.port,
        p.interval_ms,
        p.voltage_range,
        p.current_range,
        timeout_s=p.timeout_s,
        settle_s=p.settle_s,
    )


def _ipmi_available(cfg, info):
    tool = cfg.ipmi.command.split()[0] if cfg.ipmi.command.split() else ""
    if not shutil.which(tool):
        return False, f"{tool or 'ipmitool'} is not on PATH"
    return True, f"{cfg.ipmi.command} (needs a BMC with DCMI)"


def _ipmi_build(cfg, info, topology=None):
    from harness.meters.wall import IpmiDcmiSource

    return IpmiDcmiSource(cfg.ipmi.command)


def _cpu_available(cfg, info):
    from harness.meters.cpu_model import CpuModelSource

    return CpuModelSource.available()


def _cpu_build(cfg, info, topology=None):
    from harness.meters.cpu_model import CpuModelSource

    ok, why = CpuModelSource.available()
    if not ok:
        raise MeterError(
            f"the cpu-model meter is unavailable: {why}.", "install psutil or pick meter=simulated."
        )
    return CpuModelSource(cfg.cpu.tdp_w)


def _sim_build(cfg, info, topology=None):
    from harness.meters.simulated import SimulatedSource

    domain = cfg.domain
    if topology is not None and topology.world_size > 1:  # each rank simulates its own device
        domain = f"{domain.split(':')[0]}:{topology.local_rank}"
    return SimulatedSource(cfg.watts, domain)


def _replay_available(cfg, info):
    if not cfg.replay.path:
        return False, "no trace given (set meter.replay.path)"
    return Path(cfg.replay.path).is_file(), f"replays {cfg.replay.path}"


def _replay_build(cfg, info, topology=None):
    from harness.meters.replay import ReplaySource

    if not cfg.replay.path:
        raise MeterError(
            "meter=replay needs a trace.", "set meter.replay.path=<run dir>/power.csv."
        )
    return ReplaySource(cfg.replay.path)


KINDS = {
    k.name: k
    for k in [
        SourceKind(
            "nvml", "NVIDIA GPU energy counters (measured)", _nvml_available, _nvml_build, True
        ),
        SourceKind(
            "amdsmi",
            "AMD Instinct GPU energy counters via AMD SMI (measured)",
            _amdsmi_available,
            _amdsmi_build,
            True,
        ),
        SourceKind(
            "hlml",
            "Intel Gaudi energy counters via HLML (measured)",
            _hlml_available,
            _hlml_build,
            True,
        ),
        SourceKind(
            "intel-hwmon",
            "Intel GPU Max / Arc energy via Linux hwmon (measured)",
            _hwmon_available,
            _hwmon_build,
            True,
            "node",
        ),
        SourceKind(
            "rapl",
            "CPU package and DRAM RAPL counters (measured)",
            _rapl_available,
            _rapl_build,
            True,
            "node",
        ),
        SourceKind(
            "ptdaemon",
            "wall power analyzer via SPEC PTDaemon (measured, node total)",
            _ptd_available,
            _ptd_build,
            True,
            "node",
        ),
        SourceKind(
            "ipmi",
            "BMC DCMI power reading via ipmitool (measured, node total)",
            _ipmi_available,
            _ipmi_build,
            False,
            "node",
        ),
        SourceKind(
            "redfish",
            "node energy from the BMC over Redfish (measured, node total)",
            _redfish_available,
            _redfish_build,
            False,
            "node",
        ),
        SourceKind(
            "tpu", "TPU chips x cited average power (estimated)", _tpu_available, _tpu_build, True
        ),
        SourceKind(
            "cpu-model",
            "CPU TDP x utilisation (estimated)",
            _cpu_available,
            _cpu_build,
            False,
            "node",
        ),
        SourceKind(
            "simulated",
            "constant-power model for tests (simulated)",
            lambda c, i: (True, "always"),
            _sim_build,
            False,
        ),
        SourceKind(
            "replay",
            "replay of a recorded power.csv (simulated)",
            _replay_available,
            _replay_build,
            False,
        ),
    ]
}
SOURCES = ("auto", *KINDS)


def survey(meter_cfg, info=None) -> list[tuple[SourceKind, bool, str]]:
    """Every source kind with whether it is available here and why (for `joulebench meters`)."""
    out = []
    for kind in KINDS.values():
        try:
            ok, why = kind.available(meter_cfg, info)
        except Exception as exc:  # noqa: BLE001 - a probe that breaks means "unavailable", with the reason
            ok, why = False, f"probe failed: {exc}"
        out.append((kind, ok, why))
    return out


def _owned(kind: SourceKind, topology) -> bool:
    """Node-level sources (RAPL, wall meters, the CPU model) are read once per node."""
    return kind.scope == "device" or topology is None or topology.local_rank == 0


def _auto(meter_cfg, info, topology) -> list[MeterSource]:
    picked = [kind for kind, ok, _ in survey(meter_cfg, info) if ok and kind.auto]
    if not picked:  # nothing measured here: fall back to the estimate, and say so
        picked = [KINDS["cpu-model"]]
    return [kind.build(meter_cfg, info, topology) for kind in picked if _owned(kind, topology)]


def build_sources(meter_cfg, info=None, topology=None) -> list[MeterSource]:
    """The sources this process owns. `topology` (workloads/process_group.py) says which rank
    it is: in a multi-process run, device sources on every rank, node sources on local rank 0."""
    if meter_cfg.source == "auto":
        return _auto(meter_cfg, info, topology)
    names = [n.strip() for n in meter_cfg.source.split("+")]
    unknown = [n for n in names if n not in KINDS]
    if unknown or len(set(names)) != len(names):
        raise ConfigError(
            f"meter.source={meter_cfg.source} is not a meter source or composite.",
            f"use auto, one of {', '.join(KINDS)}, or several joined by '+'.",
        )
    kinds = [KINDS[n] for n in names]
    return [kind.build(meter_cfg, info, topology) for kind in kinds if _owned(kind, topology)]


def build_meter(meter_cfg, info=None, topology=None) -> Meter:
    return Meter(build_sources(meter_cfg, info, topology), meter_cfg.sample_hz)
