"""mllog.txt in MLPerf's logging format: one `:::MLLOG {json}` line per event.

Field layout follows mlcommons/logging (namespace, time_ms, event_type, key, value, metadata),
so MLPerf's parsers read it. time_ms is UTC epoch milliseconds derived from the run's single
monotonic clock and its UTC anchor, so log times and trace times agree exactly.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]

POINT_IN_TIME = "POINT_IN_TIME"
INTERVAL_START = "INTERVAL_START"
INTERVAL_END = "INTERVAL_END"
PREFIX = ":::MLLOG "


class MLLogger:
    def __init__(self, path: Path | None, anchor_utc_ms: float, anchor_ns: int):
        """`path` None logs nothing (the ranks other than 0 of a multi-process run)."""
        self._f = (
            None if path is None else open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        )
        self._anchor_ms, self._anchor_ns = anchor_utc_ms, anchor_ns

    def time_ms(self, t_ns: int) -> int:
        return utc_ms(self._anchor_ms, self._anchor_ns, t_ns)

    def event(
        self,
        key: str,
        value: Any,
        t_ns: int,
        event_type: str = POINT_IN_TIME,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if self._f is None:
            return
        meta = {**_caller(), **(metadata or {})}
        self._f.write(format_record(key, value, self.time_ms(t_ns), event_type, meta))

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


def format_record(
    key: str, value: Any, time_ms: int, event_type: str, metadata: dict[str, Any]
) -> str:
    """One `:::MLLOG {json}` line in mlcommons/logging's field layout (non-finite values null)."""
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    record = {
        "namespace": "",
        "time_ms": time_ms,
        "event_type": event_type,
        "key": key,
        "value": value,
        "metadata": metadata,
    }
    return PREFIX + json.dumps(record, allow_nan=False) + "\n"


def utc_ms(anchor_utc_ms: float, anchor_ns: int, t_ns: int) -> int:
    """A monotonic timestamp on MLPerf's clock: UTC epoch milliseconds through the run's anchor."""
    return int(round(anchor_utc_ms + (t_ns - anchor_ns) / 1e6))


def _caller() -> dict[str, Any]:
    """The file and line that logged the event, as mlcommons/logging's get_caller records them:
    the first frame outside this module."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    if frame is None:
        return {}
    path = Path(frame.f_code.co_filename)
    with contextlib.suppress(ValueError):  # a caller outside the repository keeps its path
        path = path.resolve().relative_to(_ROOT)
    return {"file": path.as_posix(), "lineno": frame.f_lineno}


def parse_mllog(text: str) -> list[dict[str, Any]]:
    """The records of an mllog text, as mlcommons/logging's parser finds them: a line holding
    the token anywhere is a record (a rank prefix such as `0: `, and anything else before the
    last token, is dropped); lines that are not `:::MLLOG` JSON objects are skipped."""
    records = []
    for line in text.splitlines():
        at = line.rfind(PREFIX)
        if at < 0:
            continue
        try:
            record = json.loads(line[at + len(PREFIX) :])
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
