"""Read a power.csv back into per-domain cumulative-energy curves (the validator's side of the meter).

A domain with a `joules` column is a counter, interpolated at any timestamp exactly as the
runner did: through its ticks when result.json says it ticks (meters[].counter_tick_s), by
harness/meters/counter.py. A domain with only `watts` is integrated (trapezoid). Malformed
input raises TraceError with a sentence a submitter can act on.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.meters.counter import EnergyCurve
from harness.results import power_csv, safe_files

HEADER = power_csv.HEADER.strip().encode()
MAX_LINE_BYTES = 512  # joulebench writes ~50; a longer line is not a sample
MAX_DOMAINS = 4096
BLOCK_BYTES = 16 << 20  # parsed at a time
DEFAULT_MAX_BYTES = 2 << 30  # the ruleset's limits, for callers without a ruleset
DEFAULT_MAX_ROWS = 10_000_000


class TraceError(ValueError):
    pass


@dataclass
class DomainTrace:
    t_ns: np.ndarray  # int64, as recorded
    joules: np.ndarray  # cumulative
    watts: np.ndarray  # NaN where not recorded
    counter: bool  # True when joules came from the file, False when integrated here


class TraceCurve:
    def __init__(
        self, domains: dict[str, DomainTrace], counter_tick_s: dict[str, float] | None = None
    ):
        self.domains = domains
        self.counter_tick_s = dict(counter_tick_s or {})
        self._curve: EnergyCurve | None = None

    @classmethod
    def read(
        cls,
        path: Path,
        counter_tick_s: dict[str, float] | None = None,
        root: Path | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> TraceCurve:
        """Parse a power.csv that may be hostile, in bounded memory: opened by the safe reader
        (no links, regular files only, at most `max_bytes`), read in chunks of whole lines (a
        line over MAX_LINE_BYTES is refused before it is buffered), at most `max_rows` rows
        and MAX_DOMAINS domains kept."""
        try:
            stream = safe_files.open_binary(path, max_bytes, root)
        except safe_files.UnsafeFile as exc:
            raise TraceError(str(exc)) from exc
        columns: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
        rows = 0
        with stream:
            for block in _line_blocks(stream, max_bytes):
                for name, (t, w, j) in _parse_block(block).items():
                    if name not in columns and len(columns) >= MAX_DOMAINS:
                        raise TraceError(f"more than {MAX_DOMAINS} domains")
                    columns.setdefault(name, []).append((t, w, j))
                    rows += t.size
                if rows > max_rows:
                    raise TraceError(
                        f"more than {max_rows} rows, the most the ruleset checks in bounded memory"
                    )
        if rows == 0:
            raise TraceError("the trace has no samples")
        domains = {}
        for name, parts in columns.items():
            t = np.concatenate([p[0] for p in parts])
            w = np.concatenate([p[1] for p in parts])
            j = np.concatenate([p[2] for p in parts])
            counter = not np.isnan(j).any()
            if not counter:
                if np.isnan(w).any():
                    raise TraceError(f"domain {name} has rows with neither watts nor joules")
                j = power_csv.cumulative_trapezoid_j(t, w)
            if not (np.isfinite(j).all() and np.isfinite(w[~np.isnan(w)]).all()):
                raise TraceError(f"domain {name} holds non-finite values")
            domains[name] = DomainTrace(t, j, w, counter)
        return cls(domains, counter_tick_s)

    @property
    def curve(self) -> EnergyCurve:
        if self._curve is None:
            ticks = {
                d: p
                for d, p in self.counter_tick_s.items()
                if self.domains.get(d) and self.domains[d].counter
            }
            self._curve = EnergyCurve.from_polls(
                {d: (tr.t_ns, tr.joules) for d, tr in self.domains.items()}, ticks
            )
        return self._curve

    def energy_at(self, t_ns):
        """Cumulative joules per domain at t_ns (a time, or an array of times at once)."""
        return self.curve.energy_at(t_ns)


def _line_blocks(stream, max_bytes: int):
    """Blocks of whole lines (the header checked and dropped), each line at most
    MAX_LINE_BYTES: memory stays at a block whatever the file holds."""
    pending, read, first = b"", 0, True
    while True:
        chunk = stream.read(BLOCK_BYTES)
        read += len(chunk)
        if read > max_bytes:
            raise TraceError(f"grew past the {max_bytes}-byte limit while it was read")
        data = pending + chunk
        cut = data.rfind(b"\n") + 1 if chunk else len(data)
        block, pending = data[:cut], data[cut:]
        if len(pending) > MAX_LINE_BYTES:
            raise TraceError(f"a line is longer than {MAX_LINE_BYTES} bytes; not a power trace")
        if block:
            codes = np.frombuffer(block, dtype=np.uint8)
            ends = np.flatnonzero(codes == 10)
            lengths = np.diff(np.concatenate([[-1], ends, [codes.size] if codes[-1] != 10 else []]))
            if lengths.size and lengths.max() > MAX_LINE_BYTES + 1:
                raise TraceError(f"a line is longer than {MAX_LINE_BYTES} bytes; not a power trace")
            if first:
                header, _, block = block.partition(b"\n")
                if header.rstrip(b"\r") != HEADER:
                    shown = header[:80].decode("ascii", "replace")
                    raise TraceError(f"header is {shown!r}, expected {HEADER.decode()!r}")
                first = False
            if block.strip():
                yield block
        if not chunk:
            if first:
                raise TraceError("the file is empty")
            return


def _parse_block(block: bytes) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    import pandas as pd

    try:
        frame = pd.read_csv(
            io.BytesIO(block),
            names=list(power_csv.COLUMNS),
            header=None,
            dtype={"t_ns": "int64", "domain": "string", "watts": "float64", "joules": "float64"},
            engine="c",
            encoding="utf-8",
        )
    except (ValueError, TypeError, OverflowError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TraceError(
            f"cannot parse as t_ns,domain,watts,joules: {str(exc).splitlines()[0][:160]}"
        ) from exc
    if frame["domain"].isna().any():
        raise TraceError("a row has no domain")
    out = {}
    for name, group in frame.groupby("domain", sort=False):
        out[str(name)] = (
            group["t_ns"].to_numpy(dtype=np.int64),
            group["watts"].to_numpy(dtype=float),
            group["joules"].to_numpy(dtype=float),
        )
    return out
