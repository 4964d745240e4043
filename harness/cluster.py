"""Cluster sweeps through Hydra's own launchers (hydra-submitit-launcher for SLURM).

`joulebench run -m hydra/launcher=slurm hydra.launcher.partition=gpu seed=1,2,3,4,5` hands the
sweep to Hydra's multirun, whose launcher submits one job per point; on the compute node the job
is `hydra_job` below: the same config checks and the same runner as a local run. A SLURM job
with several tasks becomes one torch.distributed world (submitit exports MASTER_ADDR, RANK,
WORLD_SIZE, LOCAL_RANK from SLURM's variables).
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from harness.compose import register_schema

register_schema()


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
        return _record_exit(exc.exit_code)
    if outcome.result is not None:
        print(f"joulebench: {outcome.status} -> {outcome.run_dir}", flush=True)
    return _record_exit(
        0 if outcome.status == "success" else 130 if outcome.status == "aborted" else 1
    )


EXIT_FILE = "joulebench_exit_code"


def _record_exit(code: int) -> int:
    """Write the job's exit code into its Hydra output folder (on the sweep's shared filesystem):
    Hydra's multirun drops task return values, so the submitting process reads these instead."""
    from hydra.core.hydra_config import HydraConfig

    try:
        folder = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not under Hydra
        return code
    folder.mkdir(parents=True, exist_ok=True)
    (folder / EXIT_FILE).write_text(f"{code}\n")
    return code


def sweep_exit_code(sweep_dir: Path, jobs: int) -> tuple[int, str]:
    """The README's contract for a sweep: the worst job's code (130 first), and 1 for each job
    that never reported one (it crashed or was cancelled); with a one-line account."""
    codes = []
    for f in sorted(sweep_dir.glob(f"**/{EXIT_FILE}")):
        try:
            codes.append(int(f.read_text().strip()))
        except (OSError, ValueError):
            codes.append(1)
    missing = max(0, jobs - len(codes))
    codes += [1] * missing
    failed = sum(1 for c in codes if c != 0)
    worst = 130 if 130 in codes else max(codes, default=1)
    line = f"{jobs - failed} of {jobs} sweep jobs succeeded" + (
        f"; {missing} never reported an exit code (see the logs under {sweep_dir})"
        if missing
        else ""
    )
    return worst, line


def _logging_state() -> dict:
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    return {lg: (list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers}


def _restore_logging(state: dict) -> None:
    for lg in [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]:
        handlers, level, propagate, disabled = state.get(lg, ([], logging.NOTSET, True, False))
        for h in lg.handlers:
            if h not in handlers:
                h.close()
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


@contextmanager
def _existing_handlers_kept_open():
    """logging.config.dictConfig closes every handler this process already has (Hydra's log
    configs call it, and so does submitit's logger module on import); absl's handler, which JAX
    installs, closes its stream with it: stderr. Hide those handlers from it for the sweep."""
    with logging._lock:  # the registry logging.shutdown and dictConfig walk
        earlier = list(logging._handlerList)
        logging._handlerList[:] = []
    try:
        yield
    finally:
        with logging._lock:
            logging._handlerList[:0] = earlier


def run_with_hydra(overrides: list[str], jobs: int, output_dir: str) -> int:
    """Run a sweep through Hydra's multirun (its sweeper and launcher) and return the README's
    exit code for it: 0 only when every one of the `jobs` succeeded."""
    if not any(o.lstrip("+~").startswith("hydra.sweep.dir=") for o in overrides):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        overrides = [*overrides, f"hydra.sweep.dir={Path(output_dir) / 'sweeps' / stamp}"]
    sweep_dir = Path(
        next(o for o in overrides if o.lstrip("+~").startswith("hydra.sweep.dir=")).split("=", 1)[1]
    )
    argv = ["joulebench", "-m", *overrides]
    launcher = next(
        (o.split("=", 1)[1] for o in overrides if o.lstrip("+~").startswith("hydra/launcher=")),
        "basic",
    )
    print(
        f"joulebench: {jobs} sweep jobs through Hydra's {launcher} launcher; "
        f"its files under {sweep_dir}",
        flush=True,
    )
    saved, sys.argv = sys.argv, argv
    logs = _logging_state()
    try:
        with _existing_handlers_kept_open():
            hydra_job()
    except SystemExit as exc:  # Hydra exits 1 after printing a launcher or sweeper failure
        if exc.code not in (0, None):
            return 1
    finally:
        sys.argv = saved
        _restore_logging(logs)  # Hydra's handlers hold this process's stdout; drop them
    code, line = sweep_exit_code(sweep_dir, jobs)
    print(f"joulebench: {line}.", flush=True)
    return code
