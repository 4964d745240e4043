"""User-facing failure families. The CLI turns each into one line and an exit code.

A traceback means a bug in joulebench; anything a user can cause or fix raises one of these.
"""

from __future__ import annotations


class JoulebenchError(Exception):
    """Base of every failure a user can act on. `fix` says what to do about it."""

    kind = "error"
    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def one_line(self) -> str:
        text = f"{self.kind}: {self.problem}"
        if self.fix:
            text += f" Fix: {self.fix}"
        return " ".join(text.split())  # one line, whatever the message held


class ConfigError(JoulebenchError):
    """A bad override, unknown key, bad value or missing config option."""

    kind = "config error"
    exit_code = 2


class MeterError(JoulebenchError):
    """No usable meter, or a meter that cannot be read."""

    kind = "meter error"
    exit_code = 3


class WorkloadError(JoulebenchError):
    """A workload that cannot be built here (missing framework, no device)."""

    kind = "workload error"
    exit_code = 3


class SubmissionError(JoulebenchError):
    """A submission or result directory that cannot be read at all."""

    kind = "submission error"
    exit_code = 2


class HistoryError(JoulebenchError):
    """A history database, or a run given to it, that cannot be used as asked."""

    kind = "history error"
    exit_code = 2
