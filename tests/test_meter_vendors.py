"""AMD (amdsmi), Intel Gaudi (pyhlml) and Intel GPU (hwmon) meters over fakes at the C seam.

The vendors' real Python modules run unchanged over C libraries built here with gcc
(tests/fake_vendor_libs.py): their own parameter checks, struct parsing and exceptions. The
fakes' energy follows the monotonic clock, so every figure is checked against what the
scenario says for the reading's own time, within one counter step, whatever the CPU's load."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from harness.cli import main
from harness.errors import MeterError
from harness.meters.meter import Meter
from harness.meters.trust import TrustSettings
from tests.fake_vendor_libs import amd_scenario, build_libamd_smi, build_libhlml
from tests.helpers import metered_span

TRUST = TrustSettings(span_s=0.1, tolerance=0.05, pause_s=0.0005)
MI300 = "AMD Instinct MI300X"


@pytest.fixture(scope="module")
def rocm(tmp_path_factory):
    root = tmp_path_factory.mktemp("rocm")
    build_libamd_smi(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROCM_PATH", str(root))
        yield root


@pytest.fixture
def amd(rocm, tmp_path, monkeypatch):
    """Writes a scenario and returns a function that opens AmdSmiSource over it."""
    for var in ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)

    def open_source(devices, lib="26 0 2", **kw):
        monkeypatch.setenv("JB_FAKE_AMDSMI", str(amd_scenario(tmp_path / "s.txt", devices, lib)))
        from harness.meters.amdsmi import AmdSmiSource

        return AmdSmiSource(**kw)

    return open_source


def test_amd_energy_is_the_scripted_energy_in_the_kernels_unit(amd, tmp_path):
    source = amd([f"0 0c 0 0 0 500 0.01 ok 0 SPX GPU-a {MI300}"], trust=TRUST)
    meter, t0, t1 = metered_span(source, tmp_path, 0.6)
    assert meter.faults == []
    energy = meter.energy_between(t0, t1)["gpu:0"]
    assert abs(energy - 500.0 * (t1 - t0) / 1e9) <= 500.0 * 0.01  # within one counter step
    gpu = source.details()["gpus"][0]
    # the library says 15.3 uJ; the kernel's 2^-16 J is used, and the result says which
    assert gpu["counter_resolution_reported_uj"] == pytest.approx(15.3)
    assert gpu["unit_used_uj"] == pytest.approx(15.258789) and "documented" in gpu["unit_source"]
    assert gpu["trust"]["verdict"] == "pass" and gpu["tick_detected"]
    # judged on the reads that detected the tick: the check added no time at open
    assert gpu["trust"]["reads"] == len(source.devices[0].probe_rows) > 10
    assert gpu["counter_tick_s"] == pytest.approx(0.01, rel=0.05)
    assert source.details()["library"] == "26.0.2" and gpu["power_cap_w"] == 750.0


def test_amd_counters_that_go_backwards_or_freeze_are_faults_never_energy(amd, tmp_path):
    source = amd(
        [
            f"0 0c 0 0 0 500 0.01 back 0.4 SPX GPU-a {MI300}",
            f"0 41 0 0 1 500 0.01 freeze 0.4 SPX GPU-b {MI300}",
        ],
        freeze_after_s=0.2,
    )
    meter, _, _ = metered_span(source, tmp_path, seconds=0.9)
    causes = sorted(f.cause for f in meter.faults)
    assert len(causes) == 2
    assert causes[0].startswith("gpu:0: its energy counter went backwards")
    assert causes[1].startswith("gpu:1: its energy counter stood at") and "frozen" in causes[1]
    for domain in ("gpu:0", "gpu:1"):
        joules = meter.series[domain].arrays().joules
        assert np.all(np.diff(joules) >= 0) and joules.min() >= 0


def test_amd_counter_ten_percent_high_fails_the_check_at_open(amd, tmp_path):
    source = amd([f"0 0c 0 0 0 500 0.01 scale 1.1 SPX GPU-a {MI300}"], trust=TRUST)
    source.open(0)
    trust = source.devices[0].trust
    assert trust["verdict"] == "fail" and trust["counter_over_power"] == pytest.approx(
        0.1, abs=0.02
    )
    assert source.provenance == "estimated" and not source.devices[0].has_counter
    source.close()


def test_amd_unsupported_power_sentinels_are_never_readings(amd, tmp_path):
    source = amd(
        [
            f"0 0c 0 0 0 500 0.01 sentinel32 0 SPX GPU-a {MI300}",
            f"0 41 0 0 1 500 0.01 sentinel16 0 SPX GPU-b {MI300}",
        ]
    )
    meter, _, _ = metered_span(source, tmp_path, seconds=0.4)
    assert meter.faults == []
    for domain in ("gpu:0", "gpu:1"):
        assert np.all(np.isnan(meter.series[domain].arrays().watts))
    assert source.quality()["power_unsupported_skipped"] > 0
    watts = [r.split(",")[2] for r in (tmp_path / "power.csv").read_text().splitlines()[1:]]
    assert "4294967295" not in "".join(watts) and all(w in ("", "nan") for w in watts)


def test_an_mi250_pair_is_one_domain_and_a_zero_elsewhere_is_a_fault(amd, tmp_path):
    pair = [
        "0 29 0 0 0 300 0.01 ok 0 none GPU-p AMD Instinct MI250X",
        "0 2c 0 0 1 0 0.01 secondary 0 none GPU-s AMD Instinct MI250X",
    ]
    source = amd(pair)
    assert source.domains() == ["gpu:0"]
    assert source.devices[0].bdfs == ["0000:29:00.0", "0000:2c:00.0"]
    assert source.covers() == {"gpu:0000:29:00.0", "gpu:0000:2c:00.0"}
    meter, t0, t1 = metered_span(source, tmp_path, seconds=0.4)
    assert meter.faults == [] and source.devices[0].power_key == "average_socket_power"
    assert abs(meter.energy_between(t0, t1)["gpu:0"] - 300 * (t1 - t0) / 1e9) <= 3.0
    zero = amd([f"0 0c 0 0 0 500 0.01 zero 0 SPX GPU-z {MI300}"])
    meter = Meter([zero])
    meter.start(tmp_path / "z.csv")
    meter.stop()
    assert "reads 0 J: a fault" in meter.faults[0].cause


def test_amd_devices_are_the_visible_ones_in_hip_order_by_bdf(amd, monkeypatch):
    shuffled = [  # bus order differs from HIP order
        f"0 c1 0 0 1 500 0.01 ok 0 SPX GPU-c1 {MI300}",
        f"0 0c 0 0 2 500 0.01 ok 0 SPX GPU-0c {MI300}",
        f"0 41 0 0 0 500 0.01 ok 0 SPX GPU-41 {MI300}",
    ]
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "2,0")
    source = amd(shuffled)
    assert [g.bdfs[0] for g in source.devices] == ["0000:0c:00.0", "0000:41:00.0"]
    assert source.domains() == ["gpu:0", "gpu:1"]
    source.close()
    monkeypatch.delenv("HIP_VISIBLE_DEVICES")
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "GPU-c1")
    assert [g.bdfs[0] for g in amd(shuffled).devices] == ["0000:c1:00.0"]
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "5")
    with pytest.raises(MeterError, match="ROCR_VISIBLE_DEVICES=5 names 5"):
        amd(shuffled)
    monkeypatch.delenv("ROCR_VISIBLE_DEVICES")
    by_bdf = amd(shuffled, bdfs=["0000:41:00.0"])
    assert [g.bdfs[0] for g in by_bdf.devices] == ["0000:41:00.0"]


def test_amd_an_unknown_library_or_a_partition_is_refused_with_one_line(amd):
    device = [f"0 0c 0 0 0 500 0.01 ok 0 SPX GPU-a {MI300}"]
    with pytest.raises(MeterError) as exc:
        amd(device, lib="25 3 0")
    line = exc.value.one_line()
    assert "amdsmi package 7.0.2 does not know libamd_smi 25.3.0" in line and "\n" not in line
    assert amd(device, lib="25 3 0", accept_library="25.3").library == "25.3.0"
    cpx = [f"0 0c 0 0 0 500 0.01 ok 0 CPX GPU-a {MI300}"]
    with pytest.raises(MeterError, match="CPX compute-partition mode"):
        amd(cpx)
    labelled = amd(cpx, allow_partition=True)
    labelled.open(0)
    assert labelled.details()["gpus"][0]["partition"] == "CPX"


@pytest.fixture
def gaudi(tmp_path, monkeypatch):
    lib = build_libhlml(tmp_path / "hl")
    monkeypatch.delenv("HABANA_VISIBLE_MODULES", raising=False)

    def open_source(devices, **kw):
        (tmp_path / "g.txt").write_text("".join(f"dev {d}\n" for d in devices))
        monkeypatch.setenv("JB_FAKE_HLML", str(tmp_path / "g.txt"))
        from harness.meters.hlml import HlmlSource

        return HlmlSource(library=str(lib), **kw)

    return open_source


def test_gaudi_energy_matching_and_errors_through_pyhlml(gaudi, tmp_path, monkeypatch):
    devices = [
        "1 1a 600 0.01 ok 0 HL-325L",
        "3 4f 550 0.01 ok 0 HL-325L",
        "0 b3 500 0.01 ok 0 HL-325L",
    ]
    monkeypatch.setenv("HABANA_VISIBLE_MODULES", "3,1")
    source = gaudi(devices, trust=TRUST)
    assert [d.module_id for d in source.devices] == [1, 3]
    assert [d.bus_id for d in source.devices] == ["0000:1a:00.0", "0000:4f:00.0"]
    meter, t0, t1 = metered_span(source, tmp_path, 0.6)
    energy = meter.energy_between(t0, t1)
    for domain, watts in (("hpu:0", 600.0), ("hpu:1", 550.0)):
        assert abs(energy[domain] - watts * (t1 - t0) / 1e9) <= watts * 0.01
    d = source.details()
    assert d["devices"][0]["trust"]["verdict"] == "pass" and d["hlml_version"] == "1.24.2"
    monkeypatch.setenv("HABANA_VISIBLE_MODULES", "7")
    with pytest.raises(MeterError, match="Gaudi module 7 is not here"):
        gaudi(devices)


def test_gaudi_a_busy_counter_is_retried_then_a_fault(gaudi, tmp_path):
    source = gaudi(["0 1a 600 0.01 busy 0.3 HL-325L"])
    meter, _, _ = metered_span(source, tmp_path, seconds=0.7)
    (fault,) = meter.faults
    assert fault.cause == "hpu:0: HLML Error with code 10 (3 retries)"
    assert source.quality()["transient_retries"] == 4


def _hwmon_tree(root, cards):
    """/sys/class/hwmon with a card hwmon per BDF, each with a tile hwmon, and a coretemp."""
    devices = root / "devices"
    paths = []
    for i, (bdf, driver) in enumerate(cards):
        (devices / bdf).mkdir(parents=True)
        for j, name in ((2 * i, driver), (2 * i + 1, f"{driver}_gt0")):
            h = root / "hwmon" / f"hwmon{j}"
            h.mkdir(parents=True)
            (h / "name").write_text(name + "\n")
            (h / "device").symlink_to(devices / bdf)
            (h / "energy1_input").write_text("1000000\n")
            if name == driver:
                paths.append(h / "energy1_input")
    other = root / "hwmon" / "hwmon9"
    other.mkdir()
    (other / "name").write_text("coretemp\n")
    return root / "hwmon", paths


def test_intel_gpu_hwmon_counts_cards_never_their_tiles(tmp_path, monkeypatch):
    from harness.meters.intel_hwmon import IntelHwmonSource

    hwmon, paths = _hwmon_tree(tmp_path, [("0000:3a:00.0", "xe"), ("0000:9a:00.0", "i915")])
    stop = threading.Event()
    written: list[tuple[int, int]] = []  # (when, uJ): what the fake kernel wrote

    def tick():  # the cards draw 200 W, their energy rewritten every 5 ms (atomically)
        t_start = time.monotonic_ns()
        while not stop.is_set():
            now = time.monotonic_ns()
            uj = 1_000_000 + 200 * (now - t_start) // 1000
            for p in paths:
                (p.parent / "e.tmp").write_text(f"{uj}\n")
                (p.parent / "e.tmp").replace(p)
            written.append((now, uj))
            time.sleep(0.005)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        source = IntelHwmonSource(hwmon, trust=TRUST)
        meter, t0, t1 = metered_span(source, tmp_path, seconds=0.5)
    finally:
        stop.set()
        thread.join()
    assert source.domains() == ["gpu:0", "gpu:1"]
    d = source.details()["gpus"]
    assert d[0]["bdf"] == "0000:3a:00.0" and d[0]["tiles_nested_not_added"] == ["hwmon1 (xe_gt0)"]
    assert d[0]["trust"]["verdict"] == "inconclusive"  # no instant power in hwmon
    when, uj = np.array(written).T
    scripted = float(np.diff(np.interp([t0, t1], when, uj))[0]) / 1e6
    for energy in meter.energy_between(t0, t1).values():  # within a few updates of the file
        assert abs(energy - scripted) <= 200.0 * 0.02

    real_read = type(paths[0]).read_text

    def root_only(self, *a, **k):
        if self.name == "energy1_input":
            raise PermissionError(13, "Permission denied")
        return real_read(self, *a, **k)

    monkeypatch.setattr(type(paths[0]), "read_text", root_only)
    with pytest.raises(MeterError) as exc:
        IntelHwmonSource(hwmon).open(0)
    assert "permission denied" in exc.value.one_line() and "sudo chmod o+r" in exc.value.one_line()


def test_without_the_vendor_library_the_cli_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROCM_PATH", str(tmp_path))  # no lib/libamd_smi.so: the child inherits it
    assert main(["meters"]) == 0
    out = capsys.readouterr().out
    for name in ("amdsmi", "hlml", "intel-hwmon", "redfish"):
        assert any(line.startswith(name + " ") for line in out.splitlines()), name
    # amdsmi prints and raises KeyError at import without its library: imported afresh here,
    # the module built over the fake library put back afterwards
    saved = {k: v for k, v in sys.modules.items() if k == "amdsmi" or k.startswith("amdsmi.")}
    for name in saved:
        del sys.modules[name]
    try:
        code = main(["run", "meter=amdsmi", "benchmark.max_steps=2", f"run_dir={tmp_path / 'a'}"])
    finally:
        for name in [k for k in sys.modules if k == "amdsmi" or k.startswith("amdsmi.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1 and "found no libamd_smi.so" in lines[0], lines
    assert "Unable to find" not in captured.out + captured.err
    # pyhlml loads (and prints on failing to load) its library at hlmlInit: in this process
    assert main(["run", "meter=hlml", "benchmark.max_steps=2", f"run_dir={tmp_path / 'h'}"]) == 3
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert len(lines) == 1 and "libhlml.so" in lines[0] and "Failed to load" not in lines[0]
