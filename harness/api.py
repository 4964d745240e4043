"""Meter any Python training loop with joulebench's rules and files.

    from harness.api import Measurement

    with Measurement(benchmark="my-model", meter="auto", run_dir="runs/x",
                     target=("eval_loss", 2.0, "lower"), carbon={"region": "FRA"}) as m:
        for batch in data:
            train_step(batch)
            m.step(tokens=4096)                # windows close every window_steps steps
            if due and m.evaluate(loss):       # True once the target is met
                break

The block is a joulebench run: `run_start` on entry, a window edge (device sync, timestamp)
every `window_steps` steps, an eval whenever you report one, `run_stop` on exit. It writes the
same result.json, power.csv, mllog.txt and config.yaml as `joulebench run`, through the same
runner code, so `joulebench package` and `validate` take the directory as they take any run.

What differs from `joulebench run`, because the loop is yours:
- `sync` (default: torch.cuda.synchronize or a JAX barrier when those are loaded) is called at
  each window edge and eval, so the device has finished the steps the edge closes.
- An eval you report lands where you report it: a window still open then is closed there
  (with fewer than window_steps steps it is left out of energy per step, as the last partial
  window of any run is), and energy to target runs from run_start to that moment, your eval
  included, as MLPerf's time to train does.
- An exception or Ctrl-C inside the block writes an `aborted` result with the trace kept, then
  goes on up to you.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.session import WindowMeasurement
from harness.timeline import Timeline

DIRECTIONS = ("lower", "higher")


def default_sync() -> Callable[[], None]:
    """Wait for the accelerator the loop uses: torch's CUDA stream, or JAX's devices."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.synchronize
    jax = sys.modules.get("jax")
    if jax is not None:
        # work runs in stream order per device: a trivial computation queued behind it (not a
        # transfer, which may take another stream) finishes after it
        return lambda: [
            (jax.device_put(0.0, d) + 0).block_until_ready() for d in jax.local_devices()
        ]
    return lambda: None


def detect_device() -> dict[str, Any]:
    """The device the loop trains on, as WorkloadInfo fields (the meter matches GPUs by it)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        index = torch.cuda.current_device()
        extra: dict[str, Any] = {"cuda_device_indices": [index]}
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            extra["cuda_device_uuids"] = [str(uuid)]
        name = torch.cuda.get_device_name(index)
        return {"device_kind": "gpu", "device_name": name, "device_count": 1, "extra": extra}
    jax = sys.modules.get("jax")
    if jax is not None:
        devices = jax.local_devices()
        if devices and devices[0].platform in ("gpu", "tpu"):
            kind = devices[0].platform
            return {
                "device_kind": kind,
                "device_name": devices[0].device_kind,
                "device_count": len(devices),
            }
    return {"device_kind": "cpu"}


class ExternalWorkload:
    """The Workload the runner sees for a loop it does not drive: info and sync, nothing else."""

    def __init__(self, info, sync: Callable[[], None]):
        self.info, self._sync, self.group = info, sync, None

    def warmup(self, steps: int) -> None:
        pass

    def sync(self) -> None:
        self._sync()

    def peak_memory_bytes(self) -> int | None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.max_memory_allocated())
        return None


def _overrides(
    benchmark: str,
    meter: str,
    run_dir: str | None,
    target: tuple[str, float, str] | None,
    carbon: dict[str, Any] | None,
    seed: int,
    window_steps: int,
    batch_size: int | None,
    config: dict[str, Any] | None,
    overrides: list[str],
) -> list[str]:
    from harness.compose import group_options

    out = ["benchmark=external", "framework=external", f"benchmark.name={benchmark}"]
    out.append(f"meter={meter}" if meter in group_options("meter") else f"meter.source={meter}")
    out += [f"seed={seed}", f"benchmark.window_steps={window_steps}"]
    out.append(f"benchmark.eval_every_steps={window_steps}")
    if batch_size is not None:
        out.append(f"benchmark.global_batch={batch_size}")
    if run_dir is not None:
        out.append(f"run_dir={run_dir}")
    if target is not None:
        if len(target) != 3 or target[2] not in DIRECTIONS or not math.isfinite(target[1]):
            raise ConfigError(
                f"target={target!r} is not (metric, threshold, direction).",
                'give e.g. target=("eval_loss", 2.0, "lower"): a finite threshold, lower or higher.',
            )
        metric, threshold, direction = target
        out += [f"benchmark.target.metric={metric}", f"benchmark.target.threshold={threshold}"]
        out += [f"benchmark.target.direction={direction}", "benchmark.target.note=''"]
    # a group's option chosen by name stays an override (it picks a file); every other value
    # is merged as the value it is (compose_config's `values`), never rendered into an
    # override string, where "site A, 2025" would be a list and "true" a boolean
    out += [f"{k}={v}" for k, v in (config or {}).items() if k in GROUPS and isinstance(v, str)]
    return out + list(overrides)


GROUPS = ("benchmark", "framework", "meter", "carbon", "launcher")  # configs/<group>/


def _values(carbon: dict[str, Any] | None, config: dict[str, Any] | None) -> dict[str, Any]:
    """The Python values of `carbon=` and `config=`, to merge into the composed config."""
    values = {k: v for k, v in (config or {}).items() if not (k in GROUPS and isinstance(v, str))}
    if carbon:
        values["carbon"] = {**(values.get("carbon") or {}), **carbon}
    return values


class Measurement:
    """A joulebench run around your own loop (see the module docstring).

    `meter` is a meter option (auto, nvml, simulated...) or a source list (nvml+rapl);
    `config` a dict of any other settings and `overrides` Hydra overrides, as on the command
    line. `info` may give WorkloadInfo fields the result should carry (params_total,
    flops_per_token, precision...); `step(tokens=, flops=)` fills in tokens and FLOPs per step.
    `mlflow` (a tracking URI, or True) logs the finished run there (harness/integrations/mlflow.py).
    """

    def __init__(
        self,
        benchmark: str,
        meter: str = "auto",
        run_dir: str | Path | None = None,
        target: tuple[str, float, str] | None = None,
        carbon: dict[str, Any] | None = None,
        seed: int = 0,
        window_steps: int = 10,
        batch_size: int | None = None,
        config: dict[str, Any] | None = None,
        overrides: list[str] = (),
        sync: Callable[[], None] | None = None,
        info: dict[str, Any] | None = None,
        progress: str = "auto",
        mlflow: str | bool | None = None,
    ):
        from harness.compose import compose_config

        args = _overrides(
            benchmark,
            meter,
            None if run_dir is None else str(run_dir),
            target,
            carbon,
            seed,
            window_steps,
            batch_size,
            config,
            [f"progress={progress}", *overrides],
        )
        self.cfg, self._dict_cfg = compose_config(args, _values(carbon, config))
        self._sync = sync or default_sync()
        self._given = dict(info or {})
        self._mlflow = mlflow  # a tracking URI, or True for MLflow's default
        self.reached = False
        self.status: str | None = None
        self.run_dir: Path | None = None
        self._session = None

    # -- the run ---------------------------------------------------------------------------
    def start(self) -> Measurement:
        """Start the run (what `with` does): for callers whose loop has start and end hooks
        rather than a with block (harness/integrations); end it with close()."""
        from harness.session import RunSession
        from workloads.custom import workload_info

        device = detect_device()
        info = workload_info({**device, "framework": "external", **self._given})
        info.extra = {**device.get("extra", {}), **info.extra}
        workload = ExternalWorkload(info, self._sync)
        self._session = s = RunSession(self.cfg, self._dict_cfg, workload, open_ended=True)
        self.run_dir = s.run_dir
        try:
            s.start()
            s.begin()
        except BaseException as exc:
            self._end(exc)
            raise
        self._window_start, self._window_first, self._losses = Timeline.now(), 0, []
        return self

    def __enter__(self) -> Measurement:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close(exc)
        return False  # an exception goes on up to the caller

    def close(self, exc: BaseException | None = None) -> None:
        """End the run, `aborted` when `exc` is given; a second call does nothing."""
        if self.status is not None:
            return
        if exc is None:
            self._edge()
        self._end(exc)

    def _end(self, exc: BaseException | None) -> None:
        outcome = self._session.stop(aborted=exc is not None, exc=exc)
        self.status = outcome.status
        if self._mlflow:
            from harness.integrations.mlflow import log_run

            log_run(outcome.run_dir, None if self._mlflow is True else str(self._mlflow))

    # -- what the loop reports -------------------------------------------------------------
    @property
    def steps(self) -> int:
        return self._session.steps

    def step(self, tokens: int | None = None, flops: float | None = None, loss=None) -> None:
        """One optimizer step done (launched: the edge syncs). `tokens` and `flops` are this
        step's; `loss` (a number, or a tensor read only at the window edge) its train loss."""
        self._session.step(tokens, flops)
        self._losses.append(loss)
        if len(self._losses) == self.cfg.benchmark.window_steps:
            self._sync()
            self._close_window(Timeline.now())

    def _close_window(self, now: int) -> None:
        stats = [{} if x is None else {"train_loss": float(x)} for x in self._losses]
        self._session.edge()
        self._session.window(self._window_first, self._window_start, now, stats)
        self._window_start, self._window_first, self._losses = now, self.steps, []

    def _edge(self) -> int:
        """Sync once and stamp; a window still open closes here (it may be short)."""
        self._sync()
        now = Timeline.now()
        if self._losses:
            self._close_window(now)
        return now

    def evaluate(self, value: float) -> bool:
        """Report an eval (the target's metric, already computed); True once the target is met."""
        now = self._edge()
        met = self._session.eval(now, now, float(value))
        self._window_start = Timeline.now()
        self.reached = self.reached or met
        return self.reached

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[WindowMeasurement]:
        """Time and meter a stretch of your own (data loading, a checkpoint...), synced at both
        ends like Zeus's begin_window/end_window, and, like end_window, give back its time and
        energy: the yielded WindowMeasurement is filled in when the block ends (the meter is
        read at that edge, and waits for a counter tick past it). result.json lists it in
        metrics.spans."""
        self._sync()
        start, measured = Timeline.now(), WindowMeasurement(name)
        try:
            yield measured
        finally:
            self._sync()
            done = self._session.span(name, start, Timeline.now())
            measured.time_s, measured.energy_j = done.time_s, done.energy_j
            measured.total_energy_j = done.total_energy_j
