"""Cluster sweeps through Hydra's own launchers (hydra-submitit-launcher for SLURM).

`joulebench run -m hydra/launcher=slurm hydra.launcher.partition=gpu seed=1,2,3,4,5` hands the
sweep to Hydra's multirun, whose launcher submits one job per point; on the compute node the job
is `hydra_job` below: the same config checks and the same runner as a local run. A SLURM job
with several tasks becomes one torch.distributed world (submitit exports MASTER_ADDR, RANK,
WORLD_SIZE, LOCAL_RANK from SLURM's variables).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from harness.config import _register_schema

_register_schema()


def hydra_overrides(overrides: list[str]) -> list[str]:
    """The overrides that configure Hydra itself (its launcher, sweep dir...), not joulebench."""
    return [o for o in overrides if o.lstrip("+~").startswith(("hydra/", "hydra."))]


def _export_slurm_world() -> None:
    """Under submitit with several tasks: the torch.distributed variables from SLURM's."""
    try:
        import submitit
    except ImportError:
        return
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job
        return
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export()


@hydra.main(config_path="../configs", config_name="joulebench", version_base="1.3")
def hydra_job(dict_cfg: DictConfig) -> int:
    from harness.config_checks import validate
    from harness.errors import JoulebenchError
    from harness.runner import run_benchmark

    _export_slurm_world()
    try:
        obj = OmegaConf.to_object(dict_cfg)
        validate(obj)
        outcome = run_benchmark(obj, dict_cfg)
    except JoulebenchError as exc:
        print(f"joulebench: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    if outcome.result is not None:
        print(f"joulebench: {outcome.status} -> {outcome.run_dir}", flush=True)
    return 0 if outcome.status == "success" else 1


def run_with_hydra(overrides: list[str], multirun: bool) -> int:
    """Run through Hydra's app machinery (sweeper and launcher) with these overrides."""
    argv = ["joulebench", *(["-m"] if multirun else []), *overrides]
    saved, sys.argv = sys.argv, argv
    try:
        hydra_job()
    finally:
        sys.argv = saved
    return 0
