"""The real CLI in a fresh process, as a stranger's folder meets it: under a time limit and,
where asked, RLIMIT_AS; never a traceback, never the canary's content in what it prints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECRET = "CANARY-7f3a9-do-not-leak"
GIB = 1 << 30
TOOL = """
import resource, sys
limit = int(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from harness.cli import main
sys.exit(main(sys.argv[2:]))
"""


def tool(*args, mem: int = 0, timeout: float = 90) -> tuple[int, str]:
    """`joulebench args...` in a fresh process: (exit code, stdout + stderr); never a
    traceback, never the canary's content, never longer than `timeout`."""
    proc = subprocess.run(
        [sys.executable, "-c", TOOL, str(mem), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out[-4000:]
    assert SECRET not in out, "the canary's content was printed"
    return proc.returncode, out
