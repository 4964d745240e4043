"""The run loop: warm-up, run_start, metered windows of k steps, evals, run_stop, result files.

    meter.start -> warm-up (untimed; weights restored) -> sync -> run_start
      -> [k steps -> sync -> window edge] ... eval every E steps (synced) ... -> run_stop
      -> metrics -> carbon -> result.json (atomic)

Window edges only read the clock: the meter's sampler thread does the hardware reads, and
energy at an edge is interpolated from its counter series afterwards.

Multi-process runs (torchrun, SLURM, jax.distributed): every rank runs this loop and meters
what it owns (harness/meters/factory.py). Edges (warm-up, run_start, every window edge) follow a
barrier at the same step, so all ranks stamp the same moment; stop requests and meter faults
are agreed there too. Rank 0 gathers every rank's measurements (harness/ranks.py), writes the
one result, mllog and merged power.csv; each rank streams its own trace to
`.ranks/power.rank<k>.csv` meanwhile, so a crash loses no measurement.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from harness.config import JoulebenchConfig
from harness.equivalence import build_with_verdict
from harness.errors import ConfigError
from harness.meters.factory import build_meter
from harness.meters.view import ClockMap
from harness.progress import Progress
from harness.ranks import ViewGather, check_ownership, on_primary, owner_of
from harness.results import power_csv
from harness.results.assemble import RankLayout, assemble_result
from harness.results.mllog import INTERVAL_END, INTERVAL_START, MLLogger
from harness.results.mlperf_keys import run_header, samples_metadata
from harness.results.run_dir import target_met
from harness.results.schema import Result, to_json_dict
from harness.results.writer import atomic_write_json, atomic_write_text, sha256_text
from harness.stop import StopRequest
from harness.system import code_version, collect_system
from harness.timeline import EvalPoint, Timeline, Window
from workloads.process_group import ProcessGroup


@dataclass
class RunOutcome:
    run_dir: Path
    result: Result | None  # None on ranks other than 0: rank 0 writes the one result
    status: str = ""


def make_run_dir(cfg: JoulebenchConfig, tl: Timeline, run_id: str) -> Path:
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(
                f"run_dir={run_dir} exists and is not empty.", "pick a new run_dir or remove it."
            )
    else:
        stamp = tl.anchor_utc.strftime("%Y%m%dT%H%M%SZ")
        run_dir = (
            Path(cfg.output_dir) / cfg.benchmark.name / cfg.framework.name / f"{stamp}-{run_id}"
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create run directory {run_dir}: {exc.strerror}.",
            "set output_dir (or run_dir) to a writable place.",
        ) from exc
    return run_dir


class Runner:
    def __init__(self, cfg: JoulebenchConfig, dict_cfg, workload=None):
        """`workload` None builds the config's; harness.api passes a loop it does not drive."""
        self.cfg = cfg
        self.config_yaml = OmegaConf.to_yaml(dict_cfg, resolve=True, sort_keys=False)
        self.config_dict = OmegaConf.to_container(dict_cfg, resolve=True)
        self.tl = Timeline.begin()
        # Build what can fail on bad input before anything is written.
        self.workload = workload or build_with_verdict(cfg)
        self.group: ProcessGroup = getattr(self.workload, "group", None) or ProcessGroup()
        topo = self.group.topology
        self.meter = build_meter(cfg.meter, self.workload.info, topo)
        try:
            self._set_up(cfg, topo)
        except BaseException:
            self.meter.release()
            raise

    def _set_up(self, cfg: JoulebenchConfig, topo) -> None:
        """Everything after the meter is built that can still fail before the run starts."""
        check_ownership(self.group, self.meter)
        self.run_id = self.group.broadcast_object(uuid.uuid4().hex[:12])
        self.run_dir = Path(
            on_primary(self.group, lambda: str(make_run_dir(cfg, self.tl, self.run_id)))
        )
        self.rank_dir = self.run_dir / ".ranks"  # per-rank trace streams (multi-process)
        if self.group.distributed:
            self.rank_dir.mkdir(parents=True, exist_ok=True)  # other nodes: their own disk
        info = self.workload.info
        self.owner = owner_of(
            self.group,
            [f"{info.device_kind}:{i}" for i in info.extra.get("cuda_device_indices", [])]
            or [info.device_kind],
        )
        self.code, self.system = (
            code_version(),
            collect_system(
                info.device_kind, info.device_name, info.device_count, world_size=topo.world_size
            ),
        )
        self.warnings: list[str] = []
        self.error: str | None = None
        self.status = "running"
        self._block_open = False  # an MLPerf block_start awaits its block_stop
        self.gather = ViewGather()  # rank 0 keeps every rank's measurements; ranks send deltas
        self._live = [0.0, 0.0]  # watts and joules so far, over all ranks, for the progress line
        self.progress_total: int | None = cfg.benchmark.max_steps  # None: the loop decides
        own = cfg.framework.name in ("custom", "external")  # their metric, in their units
        self._eval_unit = {} if own else {"unit": "nats_per_token"}

    def meter_live(self) -> list[float]:
        """This process's watts and joules so far (a loop the runner does not drive)."""
        self._live = [self.meter.latest_watts(), self.meter.latest_joules()]
        return self._live

    # -- result files ----------------------------------------------------------------------
    def _result(self, final: bool, local_only: bool = False) -> Result | None:
        """The result (rank 0; None elsewhere). A collective in a multi-process run unless
        `local_only`: after a failure rank 0 writes what it measured itself."""
        tl = self.tl
        edges = (tl.run_start_ns or tl.init_start_ns, tl.run_stop_ns if final else None)
        if local_only and not self.group.is_primary:
            return None
        if local_only:
            gathered = (self.meter.view(), [self.owner], [ClockMap()])
        else:
            gathered = self.gather(self.group, self.meter, self.owner, edges)
        if gathered is None:
            return None
        view, owners, clocks = gathered
        layout = None
        if self.group.distributed and not local_only:
            t = self.group.topology
            layout = RankLayout(owners, clocks, t.launcher, t.backend, t.local_world_size)
            if final:
                lines = view.trace_rows()
                atomic_write_text(self.run_dir / "power.csv", power_csv.HEADER + "".join(lines))
        return assemble_result(
            cfg=self.cfg,
            config_dict=self.config_dict,
            config_sha256=sha256_text(self.config_yaml),
            run_id=self.run_id,
            status=self.status,
            tl=self.tl,
            meter=view,
            info=self.workload.info,
            code=self.code,
            system=self.system,
            run_dir=self.run_dir,
            final=final,
            warnings=self.warnings,
            error=self.error,
            peak_memory_bytes=self.workload.peak_memory_bytes(),
            layout=layout,
        )

    def write_result(self, final: bool, local_only: bool = False) -> Result | None:
        result = self._result(final, local_only)
        if result is not None:
            atomic_write_json(self.run_dir / "result.json", to_json_dict(result))
        return result

    def trace_path(self) -> Path:
        if not self.group.distributed:
            return self.run_dir / "power.csv"
        return self.rank_dir / f"power.rank{self.group.topology.rank}.csv"

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        mllog, progress = self.open_logs()
        aborted, broken = False, False
        with StopRequest() as stop:
            try:
                self.log_header(mllog)
                self.meter.start(self.trace_path())
                aborted = self._train(mllog, progress, stop)
            except KeyboardInterrupt:
                aborted = broken = True
            except BaseException as exc:
                aborted = broken = True
                self.error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                progress.close()
                # after a failure other ranks may be gone: no collectives, keep local traces
                self.finish(mllog, aborted, local_only=broken and self.group.distributed)
                self.group.close()
        return RunOutcome(self.run_dir, self._result_cache, self.status)

    def open_logs(self) -> tuple[MLLogger, Progress]:
        """config.yaml written, the MLPerf log opened and the progress line: rank 0's alone."""
        tl, primary = self.tl, self.group.is_primary
        if primary:
            atomic_write_text(self.run_dir / "config.yaml", self.config_yaml)
        mllog = MLLogger(
            self.run_dir / "mllog.txt" if primary else None,
            tl.anchor_utc.timestamp() * 1000.0,
            tl.anchor_ns,
        )
        return mllog, Progress(self.cfg.progress if primary else "off")

    def log_header(self, mllog: MLLogger) -> None:
        t = self.tl.init_start_ns
        for key, value, metadata in run_header(self.cfg, self.workload.info):
            mllog.event(key, value, t, metadata=metadata)
        mllog.event("init_start", None, t, INTERVAL_START)

    def block(self, mllog: MLLogger, start: bool, step: int, t_ns: int) -> None:
        """MLPerf's blocks: the training between two evals, counted in samples."""
        meta = samples_metadata(step, self.cfg.benchmark.global_batch)
        if start:
            mllog.event("block_start", None, t_ns, INTERVAL_START, meta)
        elif self._block_open:
            mllog.event("block_stop", None, t_ns, INTERVAL_END, meta)
        self._block_open = start

    def begin(self, mllog: MLLogger) -> None:
        """Idle power (if asked), warm-up, then run_start: from here everything is timed."""
        bench, tl, wl, group = self.cfg.benchmark, self.tl, self.workload, self.group
        if self.cfg.meter.idle_seconds > 0:
            wl.sync()
            group.barrier()
            idle = self.meter.measure_idle(self.cfg.meter.idle_seconds)
            mllog.event("idle_power", idle, Timeline.now(), metadata={"unit": "W"})
        group.barrier()
        tl.warmup_start_ns = Timeline.now()
        wl.warmup(bench.warmup_steps)
        wl.sync()
        self.meter.prepare_timed_run()  # e.g. a wall analyzer fixes its ranges from the warm-up
        group.barrier()
        tl.warmup_stop_ns = tl.run_start_ns = Timeline.now()
        mllog.event("init_stop", None, tl.run_start_ns, INTERVAL_END)
        mllog.event("run_start", None, tl.run_start_ns, INTERVAL_START)
        self.block(mllog, True, 0, tl.run_start_ns)
        self.write_result(final=False)

    def _train(self, mllog: MLLogger, progress: Progress, stop: StopRequest) -> bool:
        """The timed loop. Returns True when it ended early on a stop request."""
        bench, tl, wl = self.cfg.benchmark, self.tl, self.workload
        group = self.group
        self.begin(mllog)

        step = 0
        while step < bench.max_steps:
            # A window starts just before its first step (the device is idle: the last edge
            # synced it), so logging, progress and result writes between windows, and evals,
            # belong to no window. They still count in the total and in energy to target.
            first, handles, t0 = step, [], Timeline.now()
            for _ in range(min(bench.window_steps, bench.max_steps - step)):
                handles.append(wl.train_step(wl.next_batch()))
                step += 1
                if stop.requested and not group.distributed:  # ranks stop together, at an edge
                    break
            wl.sync()
            faulted = bool(self.meter.faults) and self.cfg.meter.on_error == "stop"
            # one collective: the edge's barrier, the stop vote, and every rank's power so far
            (stop_now, fault_stop), self._live = group.agree(
                [stop.requested, faulted], [self.meter.latest_watts(), self.meter.latest_joules()]
            )
            now = Timeline.now()
            window = self.close_window(first, t0, now, wl.read_step_stats(handles), mllog)
            tl.steps = step
            progress.update(step, bench.max_steps, window.train_loss, *self._live)
            if stop_now:
                return True
            if fault_stop:
                return False
            eval_due = step % bench.eval_every_steps == 0 or step == bench.max_steps
            if eval_due:
                self.block(mllog, False, step, now)
                if self._evaluate(step, mllog, progress):
                    return False
                if step < bench.max_steps:
                    self.block(mllog, True, step, Timeline.now())
        return False

    def close_window(
        self, first: int, t0: int, t1: int, per_step: list[dict], mllog: MLLogger
    ) -> Window:
        """Record the window and log every step's statistics (loss, and router stats for MoE)."""
        for i, stats in enumerate(per_step):
            mllog.event("tracked_stats", stats, t1, metadata={"step": first + i + 1})
        scalars = [k for k in (per_step[0] if per_step else {}) if k != "expert_load"]
        means = {k: sum(s[k] for s in per_step) / len(per_step) for k in scalars}
        load = None
        if per_step and "expert_load" in per_step[0]:
            load = [
                sum(col) / len(per_step)
                for col in zip(*(s["expert_load"] for s in per_step), strict=True)
            ]
        last_loss = per_step[-1].get("train_loss") if per_step else None
        window = Window(first, first + len(per_step), t0, t1, last_loss, means, load)
        self.tl.windows.append(window)
        return window

    def _evaluate(self, step: int, mllog: MLLogger, progress: Progress) -> bool:
        t0 = Timeline.now()
        eval_loss = self.workload.evaluate()
        self.workload.sync()
        return self.record_eval(step, t0, Timeline.now(), eval_loss, mllog, progress)

    def record_eval(
        self, step: int, t0: int, t1: int, eval_loss: float, mllog: MLLogger, progress: Progress
    ) -> bool:
        """An eval that ran from t0 to t1 (after `step` steps); True when it met the target."""
        bench, tl = self.cfg.benchmark, self.tl
        samples = samples_metadata(step, bench.global_batch)
        mllog.event("eval_start", None, t0, INTERVAL_START, samples)
        reached = target_met(eval_loss, bench.target.threshold, bench.target.direction)
        tl.evals.append(EvalPoint(step, t0, t1, eval_loss, reached))
        mllog.event(
            "eval_accuracy",
            eval_loss,
            t1,
            metadata={**samples, "metric": bench.target.metric, **self._eval_unit},
        )
        mllog.event("eval_stop", None, t1, INTERVAL_END, samples)
        progress.update(step, self.progress_total, None, *self._live, eval_loss)
        self.write_result(final=False)
        return reached

    def finish(self, mllog: MLLogger, aborted: bool, local_only: bool = False) -> None:
        tl = self.tl
        faults = bool(self.meter.faults)
        if not local_only:
            # the fault vote is also the barrier that aligns run_stop across ranks, as the one
            # before run_start aligns that edge: the two tie every rank's clock to rank 0's
            (faults,) = self.group.any(faults)
        if tl.run_start_ns is not None:
            tl.run_stop_ns = Timeline.now()
        reached = tl.first_target_eval() is not None
        if aborted:
            self.status = "aborted"
        elif faults:
            self.status = "meter_error"
        else:
            self.status = "success" if reached else "target_not_reached"
        if tl.run_stop_ns is not None:
            self.block(mllog, False, tl.steps, tl.run_stop_ns)  # a run stopped mid-block
            mllog.event(
                "run_stop",
                None,
                tl.run_stop_ns,
                INTERVAL_END,
                {"status": "success" if reached else "aborted", "joulebench_status": self.status},
            )
        mllog.close()
        self.meter.stop()
        self._result_cache = self.write_result(final=True, local_only=local_only)
        if self.group.distributed and not local_only:
            # merged into power.csv on rank 0: drop this rank's stream, then the folder
            self.trace_path().unlink(missing_ok=True)
            self.group.barrier()
            if self.group.topology.local_rank == 0:  # each node tidies its own disk
                with contextlib.suppress(OSError):
                    self.rank_dir.rmdir()
                if not self.group.is_primary:  # a node without a shared file system
                    with contextlib.suppress(OSError):
                        self.run_dir.rmdir()  # only if empty: never rank 0's files


def run_benchmark(cfg: JoulebenchConfig, dict_cfg) -> RunOutcome:
    return Runner(cfg, dict_cfg).run()
