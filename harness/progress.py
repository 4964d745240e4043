"""One live status line on a terminal (steps, loss, watts, joules so far); silent otherwise."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    def __init__(self, mode: str = "auto", stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = mode == "on" or (mode == "auto" and is_tty)
        self._width = 0

    def update(
        self,
        step: int,
        max_steps: int | None,
        train_loss: float | None,
        watts: float,
        joules: float,
        eval_loss: float | None = None,
    ) -> None:
        if not self.enabled:
            return
        parts = [f"step {step}" if max_steps is None else f"step {step}/{max_steps}"]
        if train_loss is not None:
            parts.append(f"loss {train_loss:.4f}")
        if eval_loss is not None:
            parts.append(f"eval {eval_loss:.4f}")
        parts += [f"{watts:7.1f} W", f"{joules:10.1f} J"]
        line = "  ".join(parts)
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
