"""One run: its timeline, meter, MLPerf log, progress line and run directory, in one owner.

    session = RunSession(cfg, dict_cfg, workload)  # meter built, run dir made, logs opened
    session.start()                        # mllog header, meter on
    session.begin()                        # idle power (if asked), warm-up, run_start
    session.step(tokens=, flops=)          # one optimizer step done (launched)
    session.edge(stop_requested)           # ranks agree to stop or go on (a barrier)
    session.window(first, t0, t1, stats)   # a window of steps closed at a synced edge
    session.eval(t0, t1, value)            # an eval; True once the target is met
    session.span(name, t0, t1)             # a stretch of the loop's own, metered
    session.stop(aborted, exc)             # run_stop, meter off, result.json (atomic)

Two drivers use it and nothing else of the run: harness/runner.py (joulebench's loop over a
Workload) and harness/api.py (Measurement: a loop the caller drives).

Window edges only read the clock: the meter's sampler thread does the hardware reads, and
energy at an edge is interpolated from its counter series afterwards.

Multi-process runs (torchrun, SLURM, jax.distributed): every rank drives a session and meters
what it owns (harness/meters/factory.py). Edges (warm-up, run_start, every window edge) follow a
barrier at the same step, so all ranks stamp the same moment; stop requests and meter faults
are agreed there too. Rank 0 gathers every rank's measurements (harness/ranks.py), writes the
one result, mllog and merged power.csv; each rank streams its own trace to
`.ranks/power.rank<k>.csv` meanwhile, so a crash loses no measurement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from harness.config import JoulebenchConfig
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
from harness.results.schema import Result
from harness.results.writer import atomic_write_text, sha256_text, write_result
from harness.system import code_version, collect_system
from harness.timeline import EvalPoint, Span, Timeline, Window
from workloads.process_group import ProcessGroup


@dataclass
class RunOutcome:
    run_dir: Path
    result: Result | None  # None on ranks other than 0: rank 0 writes the one result
    status: str = ""


@dataclass
class WindowMeasurement:
    """A span's time and energy (Zeus's Measurement): filled in when the span ends."""

    name: str
    time_s: float | None = None
    energy_j: dict[str, float] = field(default_factory=dict)  # per metered domain
    total_energy_j: float | None = None  # over the total domains (a wall meter, else devices)


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


class _Counts:
    """Tokens and FLOPs per step as a loop reports them (Measurement.step), kept as running
    sums (a run may take millions of steps), for the final result."""

    def __init__(self):
        self.token_steps, self.tokens, self.first_tokens = 0, 0, None
        self.tokens_varied, self.flops_steps, self.flops = False, 0, 0.0

    def add(self, tokens: int | None, flops: float | None) -> None:
        if tokens is not None:
            tokens = int(tokens)
            self.first_tokens = tokens if self.first_tokens is None else self.first_tokens
            self.tokens_varied |= tokens != self.first_tokens
            self.token_steps, self.tokens = self.token_steps + 1, self.tokens + tokens
        if flops is not None:
            self.flops_steps, self.flops = self.flops_steps + 1, self.flops + float(flops)

    def settled(self, info, steps: int) -> tuple[object, str | None]:
        """`info` with the counts it lacks filled in, and a warning when tokens varied."""
        fill, warning = {}, None
        if self.token_steps and info.tokens_per_step is None:
            fill["tokens_per_step"] = round(self.tokens / self.token_steps)
            if self.tokens_varied:
                warning = (
                    "tokens per step varied; throughput and joules per token use the mean, "
                    f"{fill['tokens_per_step']}."
                )
        per_step = fill.get("tokens_per_step", info.tokens_per_step)
        if self.flops_steps and info.flops_per_token is None and per_step:
            fill["flops_per_token"] = self.flops / max(1, steps) / per_step
        return (dataclasses.replace(info, **fill) if fill else info), warning


class RunSession:
    """One run's state and files (see the module docstring). Everything that can fail on bad
    input (the meter, the run directory) fails in the constructor, before the run starts."""

    def __init__(self, cfg: JoulebenchConfig, dict_cfg, workload, open_ended: bool = False):
        """`open_ended`: the loop, not benchmark.max_steps, decides when the run ends."""
        self.cfg, self.workload = cfg, workload
        self._config_yaml = OmegaConf.to_yaml(dict_cfg, resolve=True, sort_keys=False)
        self._config_dict = OmegaConf.to_container(dict_cfg, resolve=True)
        self.tl = Timeline.begin()
        self.group: ProcessGroup = getattr(workload, "group", None) or ProcessGroup()
        self.meter = build_meter(cfg.meter, workload.info, self.group.topology)
        try:
            self._set_up(cfg)
            self._open_logs()
        except BaseException:
            self.meter.release()
            raise
        self.warnings: list[str] = []
        self.status = "running"
        self.result: Result | None = None
        self._error: str | None = None
        self._block_open = False  # an MLPerf block_start awaits its block_stop
        self._resume_ns: int | None = None  # an eval ended a block: the next step opens one
        self._counts = _Counts()
        self._live = [0.0, 0.0]  # watts and joules so far, over all ranks, for the progress line
        self._progress_total = None if open_ended else cfg.benchmark.max_steps
        own = cfg.framework.name in ("custom", "external")  # their metric, in their units
        self._eval_unit = {} if own else {"unit": "nats_per_token"}

    def _set_up(self, cfg: JoulebenchConfig) -> None:
        group, info = self.group, self.workload.info
        check_ownership(group, self.meter)
        self.run_id = group.broadcast_object(uuid.uuid4().hex[:12])
        self.run_dir = Path(on_primary(group, lambda: str(make_run_dir(cfg, self.tl, self.run_id))))
        self._rank_dir = self.run_dir / ".ranks"  # per-rank trace streams (multi-process)
        if group.distributed:
            self._rank_dir.mkdir(parents=True, exist_ok=True)  # other nodes: their own disk
        devices = [f"{info.device_kind}:{i}" for i in info.extra.get("cuda_device_indices", [])]
        self._owner = owner_of(group, devices or [info.device_kind])
        self._gather = ViewGather()  # rank 0 keeps every rank's measurements; ranks send deltas
        self._code = code_version()
        world = group.topology.world_size
        kind, name, count = info.device_kind, info.device_name, info.device_count
        self._system = collect_system(kind, name, count, world_size=world)

    def _open_logs(self) -> None:
        """config.yaml, the MLPerf log and the progress line: rank 0's alone."""
        primary = self.group.is_primary
        if primary:
            atomic_write_text(self.run_dir / "config.yaml", self._config_yaml)
        path = self.run_dir / "mllog.txt" if primary else None
        self._mllog = MLLogger(path, self.tl.anchor_utc.timestamp() * 1000.0, self.tl.anchor_ns)
        self._progress = Progress(self.cfg.progress if primary else "off")

    # -- the run ---------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return self.tl.steps

    def start(self) -> None:
        """The MLPerf log's header and init_start, and the meter on."""
        t = self.tl.init_start_ns
        for key, value, metadata in run_header(self.cfg, self.workload.info):
            self._mllog.event(key, value, t, metadata=metadata)
        self._mllog.event("init_start", None, t, INTERVAL_START)
        self.meter.start(self._trace_path())

    def begin(self) -> None:
        """Idle power (if asked), warm-up, then run_start: from here everything is timed."""
        bench, tl, wl, group = self.cfg.benchmark, self.tl, self.workload, self.group
        mllog = self._mllog
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
        self._block(True, tl.run_start_ns)
        self._write_result(final=False)

    def step(self, tokens: int | None = None, flops: float | None = None) -> None:
        """One optimizer step done (launched); `tokens`, `flops`: this step's, where the loop
        reports them rather than the workload's info."""
        if self._resume_ns is not None:  # training goes on after an eval: a new block
            self._block(True, self._resume_ns)
            self._resume_ns = None
        self.tl.steps += 1
        if tokens is not None or flops is not None:
            self._counts.add(tokens, flops)

    def edge(self, stop_requested: bool = False) -> tuple[bool, bool]:
        """A window edge's one collective (barrier, stop vote, every rank's power so far):
        (stop now, a meter fault stops the run)."""
        faulted = bool(self.meter.faults) and self.cfg.meter.on_error == "stop"
        (stop_now, fault_stop), self._live = self.group.agree(
            [stop_requested, faulted], [self.meter.latest_watts(), self.meter.latest_joules()]
        )
        return stop_now, fault_stop

    def window(self, first: int, t0: int, t1: int, per_step: list[dict]) -> Window:
        """A window of steps [first, first + len(per_step)) from t0 to t1 (synced), with each
        step's statistics (loss, and router statistics for MoE), logged and on the progress line."""
        for i, stats in enumerate(per_step):
            self._mllog.event("tracked_stats", stats, t1, metadata={"step": first + i + 1})
        scalars = [k for k in (per_step[0] if per_step else {}) if k != "expert_load"]
        means = {k: sum(s[k] for s in per_step) / len(per_step) for k in scalars}
        load = None
        if per_step and "expert_load" in per_step[0]:
            columns = zip(*(s["expert_load"] for s in per_step), strict=True)
            load = [sum(col) / len(per_step) for col in columns]
        last_loss = per_step[-1].get("train_loss") if per_step else None
        window = Window(first, first + len(per_step), t0, t1, last_loss, means, load)
        self.tl.windows.append(window)
        self._progress.update(self.tl.steps, self._progress_total, last_loss, *self._live)
        return window

    def eval(self, t0: int, t1: int, value: float) -> bool:
        """An eval that ran from t0 to t1 after the steps so far; True when it met the target.
        It ends the MLPerf block; the next step opens the next one."""
        bench, step, mllog = self.cfg.benchmark, self.tl.steps, self._mllog
        self._block(False, t0)
        samples = samples_metadata(step, bench.global_batch)
        mllog.event("eval_start", None, t0, INTERVAL_START, samples)
        reached = target_met(value, bench.target.threshold, bench.target.direction)
        self.tl.evals.append(EvalPoint(step, t0, t1, value, reached))
        metadata = {**samples, "metric": bench.target.metric, **self._eval_unit}
        mllog.event("eval_accuracy", value, t1, metadata=metadata)
        mllog.event("eval_stop", None, t1, INTERVAL_END, samples)
        self._progress.update(step, self._progress_total, None, *self._live, value)
        self._write_result(final=False)
        self._resume_ns = Timeline.now()
        return reached

    def span(self, name: str, t0: int, t1: int) -> WindowMeasurement:
        """A named stretch of the loop's own from t0 to t1 (synced), metered: result.json lists
        it in metrics.spans. The meter is read at this edge and waits for a tick past it."""
        self.tl.spans.append(Span(name, t0, t1))
        self.meter.poll()  # an edge: the one place a blocking read is allowed
        self.meter.settle(t1)
        energy = self.meter.energy_between(t0, t1)
        total = sum(energy[d] for d in self.meter.total_domains if d in energy)
        return WindowMeasurement(name, (t1 - t0) / 1e9, energy, total)

    def stop(
        self, aborted: bool, exc: BaseException | None = None, local_only: bool = False
    ) -> RunOutcome:
        """run_stop, the meter off and the final result. `exc` (not a Ctrl-C) is recorded as
        the run's error. `local_only` after a failure, when other ranks may be gone: no
        collectives, and rank 0 writes what it measured itself."""
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            self._error = f"{type(exc).__name__}: {exc}"
        try:
            self._progress.close()
            self._finish(aborted, local_only)
        finally:
            self.group.close()
        return RunOutcome(self.run_dir, self.result, self.status)

    # -- inside ----------------------------------------------------------------------------
    def _block(self, start: bool, t_ns: int) -> None:
        """MLPerf's blocks: the training between two evals, counted in samples."""
        meta = samples_metadata(self.tl.steps, self.cfg.benchmark.global_batch)
        if start:
            self._mllog.event("block_start", None, t_ns, INTERVAL_START, meta)
        elif self._block_open:
            self._mllog.event("block_stop", None, t_ns, INTERVAL_END, meta)
        self._block_open = start

    def _finish(self, aborted: bool, local_only: bool) -> None:
        tl, mllog = self.tl, self._mllog
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
            self._block(False, tl.run_stop_ns)  # a run stopped mid-block
            mlperf_status = "success" if reached else "aborted"
            meta = {"status": mlperf_status, "joulebench_status": self.status}
            mllog.event("run_stop", None, tl.run_stop_ns, INTERVAL_END, meta)
        mllog.close()
        self.meter.stop()
        self.result = self._write_result(final=True, local_only=local_only)
        if self.group.distributed and not local_only:
            self._tidy_rank_files()

    def _tidy_rank_files(self) -> None:
        """Each rank's stream is merged into power.csv on rank 0: drop it, then the folder."""
        self._trace_path().unlink(missing_ok=True)
        self.group.barrier()
        if self.group.topology.local_rank == 0:  # each node tidies its own disk
            with contextlib.suppress(OSError):
                self._rank_dir.rmdir()
            if not self.group.is_primary:  # a node without a shared file system
                with contextlib.suppress(OSError):
                    self.run_dir.rmdir()  # only if empty: never rank 0's files

    def _trace_path(self) -> Path:
        if not self.group.distributed:
            return self.run_dir / "power.csv"
        return self._rank_dir / f"power.rank{self.group.topology.rank}.csv"

    def _write_result(self, final: bool, local_only: bool = False) -> Result | None:
        """result.json (rank 0; None elsewhere), and at the end of a multi-process run the
        merged power.csv. A collective in a multi-process run unless `local_only`."""
        tl = self.tl
        if local_only and not self.group.is_primary:
            return None
        if local_only:
            gathered = (self.meter.view(), [self._owner], [ClockMap()])
        else:
            edges = (tl.run_start_ns or tl.init_start_ns, tl.run_stop_ns if final else None)
            gathered = self._gather(self.group, self.meter, self._owner, edges)
        if gathered is None:
            return None
        view, owners, clocks = gathered
        layout = None
        if self.group.distributed and not local_only:
            t = self.group.topology
            layout = RankLayout(owners, clocks, t.launcher, t.backend, t.local_world_size)
            if final:
                rows = power_csv.HEADER + "".join(view.trace_rows())
                atomic_write_text(self.run_dir / "power.csv", rows)
        info, warnings = self.workload.info, self.warnings
        if final:
            info, varied = self._counts.settled(info, tl.steps)
            warnings = [*warnings, varied] if varied else warnings
        result = assemble_result(
            cfg=self.cfg,
            config_dict=self._config_dict,
            config_sha256=sha256_text(self._config_yaml),
            run_id=self.run_id,
            status=self.status,
            tl=tl,
            meter=view,
            info=info,
            code=self._code,
            system=self._system,
            run_dir=self.run_dir,
            final=final,
            warnings=warnings,
            error=self._error,
            peak_memory_bytes=self.workload.peak_memory_bytes(),
            layout=layout,
        )
        write_result(self.run_dir, result)
        return result
