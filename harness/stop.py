"""Ctrl-C and SIGTERM during a run: the first asks the loop to stop at the next window edge (the
result is written, status `aborted`); a second interrupts at once."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """First SIGINT/SIGTERM asks the loop to stop at the next step; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
