"""The scale-out pieces by hand: merging rank views, meter ownership, launch commands, and the
SLURM launcher config through Hydra's composition."""

from __future__ import annotations

import numpy as np
import pytest

from harness.compose import compose_config
from harness.errors import MeterError
from harness.meters.base import SourceDescription
from harness.meters.factory import build_sources
from harness.meters.view import ClockMap, DomainSeries, MeterView, Owner, merge_views
from workloads.process_group import ProcessGroup, Topology


def _view(domains: dict[str, float], role: str = "device", t0: int = 0) -> MeterView:
    """Constant-power domains polled every second for 10 s, counters from 0."""
    t = np.arange(11, dtype=np.int64) * 1_000_000_000 + t0
    series = {
        d: DomainSeries(t, w * (t - t0) / 1e9, np.full(t.size, w)) for d, w in domains.items()
    }
    desc = SourceDescription("sim", "energy-counter", "simulated", list(domains), role)
    return MeterView(series, [(desc, 1.0)], list(domains))


def test_merge_moves_every_rank_onto_rank0s_clock_and_names_domains_by_node():
    rank0 = (Owner(0, 0, 0, "a"), _view({"gpu:0": 300.0}, t0=5_000), ClockMap())
    # rank 1's clock reads 2 s behind: offset +2 s puts its polls on rank 0's time line
    behind = ClockMap(0, 2_000_000_000)
    rank1 = (Owner(1, 0, 1, "b"), _view({"gpu:0": 100.0}, t0=-2_000_000_000), behind)
    merged = merge_views([rank1, rank0])
    assert sorted(merged.series) == ["node0/gpu:0", "node1/gpu:0"]
    assert merged.total_domains == ["node0/gpu:0", "node1/gpu:0"]
    # 1 s .. 3 s on rank 0's clock: 300 W x 2 s and 100 W x 2 s
    e1, e3 = merged.energy_at(1_000_005_000), merged.energy_at(3_000_005_000)
    assert e3["node0/gpu:0"] - e1["node0/gpu:0"] == pytest.approx(600.0)
    assert e3["node1/gpu:0"] - e1["node1/gpu:0"] == pytest.approx(200.0)
    assert merged.owners["node1/gpu:0"].rank == 1
    assert [d.details["rank"] for d, _ in merged.sources] == [0, 1]
    assert merged.power_peak_w(0, 10_000_000_000) == pytest.approx(400.0)


def test_both_barrier_edges_land_exactly_on_rank0s_and_drift_is_taken_out():
    s = 1_000_000_000
    # rank 0 timed 10 s .. 20 s; rank 1's clock is 3 s behind and runs 100 ppm fast, and it
    # left each barrier a little late: its run_start read 7 s, its run_stop 17.001 s
    clock = ClockMap.between((7 * s, 17_001_000_000), (10 * s, 20 * s))
    assert clock.offset_ns == 3 * s and clock.scale == pytest.approx(10 / 10.001, rel=1e-15)
    edges = clock(np.array([7 * s, 17_001_000_000, 12_000_500_000], dtype=np.int64))
    assert edges.tolist() == [10 * s, 20 * s, 15 * s]  # both edges to the nanosecond
    # a 100 W device counted on rank 1's clock, polled every 0.5 s from 6.9 s to 17.4 s
    t = np.arange(6_900_000_000, 17_400_000_001, 500_000_000, dtype=np.int64)
    series = {"sim:0": DomainSeries(t, 100.0 * (t - t[0]) / 1e9, np.full(t.size, 100.0))}
    desc = SourceDescription("sim", "energy-counter", "simulated", ["sim:0"], "device")
    view = MeterView(series, [(desc, 2.0)], ["sim:0"])
    merged = merge_views([(Owner(1, 1, 0), view, clock)])
    e = merged.energy_at
    # its own 10.001 s between the two barriers, though rank 0's window is 10 s
    assert e(20 * s)["node0/sim:0"] - e(10 * s)["node0/sim:0"] == pytest.approx(1000.1, rel=1e-9)
    # the trace covers rank 0's window: its first poll maps before 10 s, its last after 20 s
    mapped = merged.series["node0/sim:0"].t_ns
    assert mapped[0] < 10 * s and mapped[-1] > 20 * s
    # until run_stop is known (provisional results) the map is the run_start offset alone
    assert ClockMap.between((7 * s, None), (10 * s, None)) == ClockMap(7 * s, 10 * s, 1.0)


def test_a_nodes_wall_meter_is_its_total_and_its_gpus_the_breakdown():
    same = ClockMap()
    gpu0 = (Owner(0, 0, 0), _view({"gpu:0": 300.0}), same)
    wall = (Owner(0, 0, 0), _view({"node:wall": 900.0}, role="total"), same)
    gpu1 = (Owner(1, 1, 0), _view({"gpu:1": 300.0}), same)
    other_node = (Owner(2, 0, 1), _view({"gpu:0": 250.0}), same)
    merged = merge_views([gpu0, wall, gpu1, other_node])
    # node 0 counts its wall meter only; node 1 has no wall meter: its GPU is its total
    assert merged.total_domains == ["node0/node:wall", "node1/gpu:0"]
    peak = merged.power_peak_w(0, 10_000_000_000)
    assert peak == pytest.approx(900.0 + 250.0)


class _FakeGroup(ProcessGroup):
    """Two ranks on one node, answering gathers with what the 'other rank' would send."""

    def __init__(self, other):
        super().__init__(Topology(rank=0, world_size=2, local_world_size=2))
        self.other = other

    def all_gather_object(self, obj):
        return [obj, self.other]


def test_two_ranks_metering_one_gpu_is_refused():
    from harness.ranks import check_ownership

    class _Meter:
        sources = [type("S", (), {"role": "device", "covers": lambda self: {"GPU-abc"}})()]

    with pytest.raises(MeterError, match="ranks 0 and 1 on node 0 both measure GPU-abc"):
        check_ownership(_FakeGroup((0, 1, ["GPU-abc"])), _Meter())
    check_ownership(_FakeGroup((0, 1, ["GPU-def"])), _Meter())  # different GPUs: fine
    check_ownership(_FakeGroup((1, 1, ["GPU-abc"])), _Meter())  # same UUID string, other node


def test_node_level_meters_belong_to_local_rank_0_only():
    cfg, _ = compose_config(["meter.source=simulated+cpu-model"])
    first = Topology(rank=2, world_size=4, local_rank=0, local_world_size=2, node_rank=1)
    second = Topology(rank=3, world_size=4, local_rank=1, local_world_size=2, node_rank=1)
    assert [s.name for s in build_sources(cfg.meter, None, first)] == ["simulated", "cpu-model"]
    only = build_sources(cfg.meter, None, second)
    assert [s.name for s in only] == ["simulated"]
    assert only[0].domains() == ["sim:1"]  # each rank simulates its own device


def test_torchrun_commands_for_one_node_and_many():
    from harness.launch import torchrun_command

    cfg, _ = compose_config(["launcher=torchrun", "launcher.nproc_per_node=8", "seed=3"])
    cmd = torchrun_command(cfg.launcher, ["launcher=torchrun", "seed=3"])
    assert cmd[1:5] == ["-m", "harness.launch", "--nproc_per_node=8", "--standalone"]
    assert cmd[-5:] == ["-m", "harness.cli", "run", "launcher=torchrun", "seed=3"]
    cfg, _ = compose_config(
        ["launcher=torchrun", "launcher.nnodes=2", "launcher.rdzv_endpoint=n0:29500"]
    )
    cmd = torchrun_command(cfg.launcher, [])
    assert "--standalone" not in cmd
    assert {"--nnodes=2", "--rdzv_endpoint=n0:29500", "--rdzv_backend=c10d"} <= set(cmd)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["launcher=torchrun", "launcher.nnodes=2"], "needs a rendezvous endpoint"),
        (["launcher=torchrun", "framework=jax"], "launches torch ranks, not framework=jax"),
        (["launcher=mpi"], "launcher=mpi does not exist"),
        (["benchmark=lm-moe-tiny", "benchmark.model.routing_groups=3"], "must be >= 1 and divide"),
    ],
)
def test_bad_launch_configs_are_one_line(overrides, message):
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        compose_config(overrides)


def test_the_slurm_preset_composes_into_submitits_launcher():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from harness.cluster import hydra_overrides
    from harness.compose import CONFIG_DIR, register_schema

    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "seed=1,2,3,4,5"]
    assert hydra_overrides(overrides) == overrides[:2]
    register_schema()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("joulebench", overrides=overrides[:2], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.tasks_per_node, launcher.max_num_timeout) == ("gpu", 1, 0)
    assert cfg.hydra.sweep.dir.startswith("results/runs/sweeps/")


def test_a_hydra_launcher_without_multirun_is_one_line(tmp_path):
    from tests.helpers import cli_subprocess

    proc = cli_subprocess(["run", "hydra/launcher=slurm"], tmp_path)
    assert proc.returncode == 2
    assert "configures Hydra's launcher, which runs sweeps" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_sweep_through_hydras_submitit_launcher_runs_every_point(tmp_path):
    """The cluster path end to end, with submitit's local executor standing in for SLURM."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    import json

    from tests.helpers import cli_subprocess

    proc = cli_subprocess(
        [
            "run",
            "-m",
            "hydra/launcher=submitit_local",
            "seed=1,2",
            "meter=simulated",
            "benchmark.max_steps=20",
            "benchmark.target.threshold=9",  # met at the first eval: both jobs succeed
            f"output_dir={tmp_path}",
            "progress=off",
        ],
        tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    seeds = sorted(json.loads(p.read_text())["seed"] for p in tmp_path.rglob("result.json"))
    assert seeds == [1, 2]
    assert "joulebench: 2 of 2 sweep jobs succeeded." in proc.stdout
    codes = [p.read_text().strip() for p in tmp_path.rglob("joulebench_exit_code")]
    assert codes == ["0", "0"]  # written by each submitit job, read by the submitting process


def test_nodes_and_local_ranks_follow_hostnames():
    from workloads.process_group import topology_from_hosts

    hosts = ["a", "a", "b", "a", "b"]  # a launcher that interleaves hosts
    tops = [topology_from_hosts(r, hosts, "jax.distributed", "jax") for r in range(5)]
    assert [(t.node_rank, t.local_rank, t.local_world_size) for t in tops] == [
        (0, 0, 3),
        (0, 1, 3),
        (1, 0, 2),
        (0, 2, 3),
        (1, 1, 2),
    ]
    assert {t.nnodes for t in tops} == {2} and {t.world_size for t in tops} == {5}


def test_the_system_template_declares_the_nodes_asked_for(tmp_path, capsys):
    import json

    from harness.cli import main

    assert main(["system", "--nodes", "4", "-o", str(tmp_path / "s.json")]) == 0
    desc = json.loads((tmp_path / "s.json").read_text())
    assert desc["number_of_nodes"] == "4" and int(desc["accelerators_per_node"]) >= 1
    assert main(["system", "--nodes", "0"]) == 2
    assert "--nodes 0 is not a node count" in capsys.readouterr().err
