"""The run's timeline: every event on one monotonic nanosecond clock, plus one UTC anchor."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone


@dataclass
class Window:
    step_start: int  # first step in the window (0-based)
    step_end: int  # one past the last step
    t_start_ns: int
    t_end_ns: int
    train_loss: float | None  # the window's last step
    stats: dict[str, float] = field(default_factory=dict)  # means over the window's steps
    expert_load: list[float] | None = None  # MoE: mean fraction of tokens routed to each expert


@dataclass
class EvalPoint:
    step: int
    t_start_ns: int
    t_end_ns: int
    eval_loss: float
    reached_target: bool


@dataclass
class Span:
    """A named stretch of time the caller marked (harness.api's Measurement.window)."""

    name: str
    t_start_ns: int
    t_end_ns: int


@dataclass
class Timeline:
    anchor_ns: int
    anchor_utc: datetime
    init_start_ns: int
    warmup_start_ns: int | None = None
    warmup_stop_ns: int | None = None
    run_start_ns: int | None = None
    run_stop_ns: int | None = None
    steps: int = 0
    windows: list[Window] = field(default_factory=list)
    evals: list[EvalPoint] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)

    @classmethod
    def begin(cls) -> Timeline:
        # Take the two clocks back to back; the anchor maps every monotonic time to UTC.
        utc = datetime.now(timezone.utc)
        now = time.monotonic_ns()
        return cls(anchor_ns=now, anchor_utc=utc, init_start_ns=now)

    @staticmethod
    def now() -> int:
        return time.monotonic_ns()

    def utc(self, t_ns: int) -> datetime:
        return self.anchor_utc + timedelta(microseconds=(t_ns - self.anchor_ns) / 1e3)

    def utc_iso(self, t_ns: int | None) -> str | None:
        return (
            None
            if t_ns is None
            else self.utc(t_ns).isoformat(timespec="microseconds").replace("+00:00", "Z")
        )

    def first_target_eval(self) -> EvalPoint | None:
        return next((e for e in self.evals if e.reached_target), None)
