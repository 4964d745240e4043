"""joulebench's own training loop: warm-up, run_start, metered windows of k steps, evals.

    session.start -> warm-up (untimed; weights restored) -> sync -> run_start
      -> [k steps -> sync -> window edge] ... eval every E steps (synced) ... -> run_stop
      -> metrics -> carbon -> result.json (atomic)

The loop drives a RunSession (harness/session.py), which owns the run's timeline, meter, logs
and files; harness/api.py's Measurement drives the same session for a loop it does not own.
"""

from __future__ import annotations

from harness.config import JoulebenchConfig
from harness.equivalence import build_with_verdict
from harness.session import RunOutcome, RunSession
from harness.stop import StopRequest
from harness.timeline import Timeline


class Runner:
    """joulebench's own loop over a Workload, driving a RunSession (harness/session.py)."""

    def __init__(self, cfg: JoulebenchConfig, dict_cfg):
        self.cfg = cfg
        # build what can fail on bad input (the workload, then the meter) before any file
        self.workload = build_with_verdict(cfg)
        self.session = RunSession(cfg, dict_cfg, self.workload)

    def run(self) -> RunOutcome:
        session = self.session
        aborted = broken = False
        error: BaseException | None = None
        with StopRequest() as stop:
            try:
                session.start()
                aborted = self._train(stop)
            except KeyboardInterrupt:  # a second Ctrl-C: the run ends aborted, its trace kept
                aborted = broken = True
            except BaseException as exc:
                aborted = broken = True
                error = exc
                raise
            finally:
                # after a failure other ranks may be gone: no collectives, keep local traces
                local_only = broken and session.group.distributed
                outcome = session.stop(aborted, error, local_only=local_only)
        return outcome

    def _train(self, stop: StopRequest) -> bool:
        """The timed loop. Returns True when it ended early on a stop request."""
        bench, wl, session = self.cfg.benchmark, self.workload, self.session
        distributed = session.group.distributed
        session.begin()
        step = 0
        while step < bench.max_steps:
            # A window starts just before its first step (the device is idle: the last edge
            # synced it), so logging, progress and result writes between windows, and evals,
            # belong to no window. They still count in the total and in energy to target.
            first, handles, t0 = step, [], Timeline.now()
            for _ in range(min(bench.window_steps, bench.max_steps - step)):
                handles.append(wl.train_step(wl.next_batch()))
                session.step()
                step += 1
                if stop.requested and not distributed:  # ranks stop together, at an edge
                    break
            wl.sync()
            stop_now, fault_stop = session.edge(stop.requested)
            session.window(first, t0, Timeline.now(), wl.read_step_stats(handles))
            if stop_now:
                return True
            if fault_stop:
                return False
            if step % bench.eval_every_steps == 0 or step == bench.max_steps:
                t_eval = Timeline.now()
                eval_loss = wl.evaluate()
                wl.sync()
                if session.eval(t_eval, Timeline.now(), eval_loss):
                    return False
        return False


def run_benchmark(cfg: JoulebenchConfig, dict_cfg) -> RunOutcome:
    return Runner(cfg, dict_cfg).run()
