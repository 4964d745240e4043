"""`launcher=torchrun`: spawn torchrun (`torch.distributed.run`) running this same config.

Each rank is the ordinary `joulebench run` with the same overrides; it sees torchrun's
environment (RANK, LOCAL_RANK, WORLD_SIZE, ...) and joins the process group instead of spawning
again. Every rank leaves its joulebench exit code in a file and the launcher exits with the
worst of them. A rank that finished (target reached or not, or stopped with the others) exits 0
to torchrun, so a finished benchmark is not reported as a crashed job; a rank that failed exits
non-zero, so torchrun stops the other ranks instead of leaving them waiting in a collective.
torchrun itself runs under `python -m harness.launch`, which reports a failed rank in one line
(the rank has printed its own) instead of torchrun's traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

EXIT_DIR_ENV = "JOULEBENCH_EXIT_DIR"


def inside_launch() -> bool:
    """True in a process that torchrun (or SLURM with a world size) already placed as a rank."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def torchrun_command(lc, overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "harness.launch", f"--nproc_per_node={lc.nproc_per_node}"]
    if lc.nnodes == "1" and not lc.rdzv_endpoint:
        cmd.append("--standalone")
    else:
        cmd += [
            f"--nnodes={lc.nnodes}",
            f"--rdzv_backend={lc.rdzv_backend}",
            f"--rdzv_endpoint={lc.rdzv_endpoint}",
            f"--rdzv_id={lc.rdzv_id}",
        ]
        if lc.node_rank is not None:
            cmd.append(f"--node_rank={lc.node_rank}")
    cmd += [f"--max_restarts={lc.max_restarts}", "-m", "harness.cli", "run", *overrides]
    return cmd


def spawn_torchrun(lc, overrides: list[str]) -> int:
    """Run one job on `nproc_per_node` local ranks; the worst joulebench exit code of them."""
    with tempfile.TemporaryDirectory(prefix="joulebench-exit-") as exit_dir:
        env = {**os.environ, EXIT_DIR_ENV: exit_dir}
        # the host's cores shared by its ranks (torchrun would otherwise pick 1, with a warning)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // lc.nproc_per_node)))
        repo = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))
        # torchrun in its own session: a Ctrl-C reaches this process only, which passes it to
        # the ranks themselves (they stop together at the next window edge and write the
        # result); torchrun, interrupted, would instead kill them with a traceback of its own
        proc = subprocess.Popen(torchrun_command(lc, overrides), env=env, start_new_session=True)
        with _forward_stops_to_ranks(proc.pid):
            proc.wait()
        codes = [int(p.read_text() or 1) for p in Path(exit_dir).glob("rank*")]
        if proc.returncode != 0:  # a rank crashed: torchrun has said which and why
            return max(codes + [1])
        return max(codes, default=0)


@contextlib.contextmanager
def _forward_stops_to_ranks(torchrun_pid: int):
    import psutil

    def forward(signum, frame) -> None:
        with contextlib.suppress(psutil.Error):
            for rank in psutil.Process(torchrun_pid).children(recursive=False):
                with contextlib.suppress(psutil.Error):
                    rank.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


FINISHED = (0, 1, 130)  # target reached, not reached, stopped together: the run is over


def report_exit(code: int, finished: bool = True) -> int:
    """Inside a spawned rank: leave the code for the launcher; 0 to torchrun if the run
    finished, the code itself if this rank failed (torchrun then stops the others)."""
    exit_dir = os.environ.get(EXIT_DIR_ENV)
    if not exit_dir:
        return code
    Path(exit_dir, f"rank{os.environ.get('RANK', '0')}").write_text(str(code))
    return 0 if finished and code in FINISHED else max(code, 1)


def _torchrun(argv: list[str]) -> int:
    """torchrun, with a failed rank reported in one line rather than a traceback."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    try:
        run(parse_args(argv))
    except ChildFailedError as exc:
        ranks = ", ".join(str(r) for r in sorted(exc.failures))
        print(f"joulebench: rank(s) {ranks} failed (messages above).", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_torchrun(sys.argv[1:]))
