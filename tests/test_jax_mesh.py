"""The MoE on a (data=2, expert=4) mesh of 8 fake CPU devices trains like it does on one device.

XLA_FLAGS must be set before JAX starts, so the check runs in a subprocess and other tests keep
their single CPU device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

pytest.importorskip("jax")
pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, os
from harness.compose import compose_config
from workloads.jax.adapter import JaxWorkload
out = {}
for data, expert in [(1, 1), (2, 4)]:
    cfg, _ = compose_config(["framework=jax", "benchmark=lm-moe-tiny",
                             f"framework.mesh.data={data}", f"framework.mesh.expert={expert}"])
    wl = JaxWorkload(cfg.benchmark, cfg.framework, 0)
    handles = [wl.train_step(wl.next_batch()) for _ in range(4)]
    wl.sync()
    w_in = wl.state[0]["blocks"][1]["moe"]["w_in_EDF"]
    out[f"{data}x{expert}"] = {
        "losses": [s["train_loss"] for s in wl.read_step_stats(handles)] + [wl.evaluate()],
        "devices": len(w_in.sharding.device_set),
        "expert_shard_rows": w_in.addressable_shards[0].data.shape[0],
    }
print(json.dumps(out))
"""


def test_expert_parallel_mesh_gives_the_single_device_losses():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "PYTHONPATH": str(REPO),
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one, mesh = out["1x1"], out["2x4"]
    assert (
        mesh["devices"] == 8 and mesh["expert_shard_rows"] == 1
    )  # 4 experts, one per expert-axis device
    assert one["expert_shard_rows"] == 4
    assert mesh["losses"] == pytest.approx(one["losses"], rel=1e-5)
