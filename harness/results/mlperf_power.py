"""MLPerf power logs (a run's node_<K>.txt and sw_<K>.txt) as MLCommons' result summarizer reads
them, and the energy it computes from them, by a versioned rule.

The format (mlcommons/logging, mllog/examples/power): `:::MLLOG {json}` lines holding
power_measurement_start and _stop, power_reading (W, at epoch-ms time_ms), optionally
conversion_eff (with metadata.measurement_type, AC) and, in a switch file, interconnect_power_est.

Lines are read as mlcommons/logging's mlp_parser reads them: a line is a record if it holds the
token anywhere (a rank prefix such as `0: ` is dropped with everything before the last token), and
a record whose JSON or time_ms does not parse is skipped. What the summarizer would crash on (a
record that is not an object, a missing field, a reading that is not a number) is refused here
with a sentence; so are NaN, Infinity and 1e400, which it would add up into a meaningless score.

The summarizer's rule changed between rounds; `SummarizerRule` states one version clause by
clause (configs/ruleset/v1.yaml, mlperf_import.summarizer_rules says which round used which).
The arithmetic below keeps MLCommons' order of operations, so its figures are reproduced to the
last bits, not approximately.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

TOKEN = ":::MLLOG "
START, STOP = "power_measurement_start", "power_measurement_stop"
READING, EFFICIENCY, SWITCH_ESTIMATE = "power_reading", "conversion_eff", "interconnect_power_est"


class PowerLogError(ValueError):
    """A power log MLCommons' tools could not score as it stands; the message says where."""


@dataclass(frozen=True)
class Record:
    lineno: int  # 1-based line of the file
    time_ms: float
    key: str
    value: Any
    metadata: Any


@dataclass
class LogFile:
    records: list[Record]
    skipped: int  # lines holding the token that MLCommons' parser skips (bad JSON or time_ms)


def _refuse_constant(name: str):
    raise PowerLogError(f"the non-finite number {name}")


def parse(text: str, name: str = "log") -> LogFile:
    """The records of an MLPerf log text, in file order, as mlp_parser finds them."""
    records, skipped = [], 0
    # mlp_parser iterates the file in text mode: universal newlines, nothing else splits a line
    for lineno, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        at = line.rfind(TOKEN)
        if at < 0:
            continue
        body = (TOKEN + line[at + len(TOKEN) :]).strip()
        if not body.startswith(TOKEN):  # a bare token: mlp_parser's "does not match regex"
            skipped += 1
            continue
        try:
            raw = json.loads(body[len(TOKEN) :], parse_constant=_refuse_constant)
        except PowerLogError as exc:
            raise PowerLogError(f"{name} line {lineno}: {exc}") from exc
        except ValueError:  # bad JSON (or an integer too long to read): mlp_parser skips it
            skipped += 1
            continue
        except RecursionError as exc:
            raise PowerLogError(f"{name} line {lineno}: JSON nested too deeply") from exc
        if not isinstance(raw, dict) or not {"time_ms", "key", "value", "metadata"} <= set(raw):
            raise PowerLogError(
                f"{name} line {lineno}: not an MLLOG record (an object with time_ms, key, "
                "value and metadata)"
            )
        try:
            time_ms = float(raw["time_ms"])
        except ValueError:
            skipped += 1
            continue
        except (TypeError, OverflowError) as exc:
            raise PowerLogError(f"{name} line {lineno}: time_ms is not a number") from exc
        if not math.isfinite(time_ms) or not isinstance(raw["key"], str):
            raise PowerLogError(f"{name} line {lineno}: time_ms is not finite or key not text")
        records.append(Record(lineno, time_ms, raw["key"], raw["value"], raw["metadata"]))
    return LogFile(records, skipped)


def number(record: Record, name: str = "log") -> float:
    """A record's value as the summarizer multiplies it: a finite int or float, never a bool."""
    v = record.value
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise PowerLogError(
            f"{name} line {record.lineno}: {record.key} value {str(v)[:40]!r} is not a finite number"
        )
    return v


@dataclass(frozen=True)
class SummarizerRule:
    """One version of MLCommons' _compute_power_node, clause by clause (the ruleset's words)."""

    id: str
    reading_order: str  # file: lines as they stand | time: a stable sort by time_ms
    before_start: str  # from_zero: a reading before the start counts from t = 0 | skipped
    after_stop: str  # ignored: the first stop ends the file | readings_skipped: only readings
    stop_time: str  # max_with_last_reading: max(stop, latest reading) | logged (latest if none)
    missing_start: str  # zero: start at t = 0 | error


@dataclass(frozen=True)
class NodeEnergy:
    energy_j: float  # the summarizer's figure for this file
    start_ms: float  # the power window it divided by
    stop_ms: float
    efficiency: float  # conversion_eff as the rule read it (1.0 when absent)
    stop_equals_start: bool  # the logged stop was at the logged start


def node_energy_j(records: list[Record], time_to_train_ms: float, rule: SummarizerRule,
                  name: str = "node file") -> NodeEnergy:  # fmt: skip
    """A node file's energy by `rule`: conversion_eff x sum(reading x time since the previous
    line counted) x time to train / the power window, in J (MLCommons labels it kJ)."""
    lines = records if rule.reading_order == "file" else sorted(records, key=lambda r: r.time_ms)
    prev = latest = start = stop = 0.0
    total, efficiency = 0, 1.0
    started = stopped = False
    logged: list[tuple[float, float]] = []  # (start, stop) pairs as logged, for the fact
    for r in lines:
        if r.key == START:
            start = prev = r.time_ms
            started = True
        if r.key == READING and not stopped and (started or rule.before_start == "from_zero"):
            total += number(r, name) * (r.time_ms - prev)
            prev = r.time_ms
            latest = max(latest, r.time_ms)
        if r.key == STOP:
            stop, stopped = r.time_ms, True
            logged.append((start, stop))
            if rule.after_stop == "ignored":
                break
        if r.key == EFFICIENCY:
            efficiency = number(r, name)
    if not started and rule.missing_start == "error":
        raise PowerLogError(f"{name}: no {START} ({rule.id} refuses the file)")
    same = bool(logged) and logged[0][0] == logged[0][1]
    if rule.stop_time == "max_with_last_reading":
        stop = max(stop, latest)
    elif not stopped:
        stop = latest
    if stop == start:
        raise PowerLogError(
            f"{name}: its power window is empty ({STOP} at {START}, no later reading): "
            f"{rule.id} divides by zero there and scores nothing"
        )
    # MLCommons' expression, in its order: conversion_eff * agg * ttt / (stop - start) / 1000
    energy = efficiency * total * time_to_train_ms / (stop - start) / 1000
    return NodeEnergy(energy, start, stop, efficiency, same)


def switch_energy_j(records: list[Record], time_to_train_ms: float, name: str = "switch file"):
    """A switch file's energy (_compute_power_sw, every version): conversion_eff x the first
    interconnect_power_est x time to train. A switch file of readings (measured) counts 0.
    Returns (energy J, the estimate in W or None)."""
    total, efficiency, estimate = 0, 1.0, None
    for r in records:
        if r.key == EFFICIENCY:
            efficiency = number(r, name)
        if r.key == SWITCH_ESTIMATE:
            total = estimate = number(r, name)
            break
    return efficiency * total * time_to_train_ms / 1000, estimate


def readings(records: list[Record], name: str = "log") -> tuple[list[float], list[float]]:
    """(time_ms, watts) of every power_reading, in file order."""
    times, watts = [], []
    for r in records:
        if r.key == READING:
            times.append(r.time_ms)
            watts.append(float(number(r, name)))
    return times, watts


def run_times_ms(records: list[Record]) -> tuple[float, float] | None:
    """(run_start, run_stop) of a result log as the summarizer reads them
    (_query_run_start_stop: each key's latest value until both are seen); None if one lacks."""
    start = stop = None
    for r in records:
        if r.key == "run_start":
            start = r.time_ms
        if r.key == "run_stop":
            stop = r.time_ms
        if start is not None and stop is not None:
            break
    return None if start is None or stop is None else (start, stop)


@dataclass(frozen=True)
class Series:
    """A power log's readings as a trace: strictly increasing times, one watt value each."""

    t_ns: list[int]
    watts: list[float]
    repeated: int  # readings at a time already read (the first one is kept: the one that counts)
    reordered: int  # readings earlier than the line before them in the file


def reading_series(records: list[Record], name: str = "log") -> Series:
    """The readings in time order, a repeated time keeping its first reading (in the time-sorted
    rule, a later reading at the same time adds its watts x 0 s)."""
    times, watts = readings(records, name)
    reordered = sum(1 for a, b in zip(times, times[1:], strict=False) if b < a)
    order = sorted(range(len(times)), key=lambda i: times[i])
    t_ns, w, repeated = [], [], 0
    for i in order:
        t = int(round(times[i] * 1e6))
        if t_ns and t == t_ns[-1]:
            repeated += 1
            continue
        t_ns.append(t)
        w.append(watts[i])
    return Series(t_ns, w, repeated, reordered)


def natural_key(name: str) -> list:
    """result_2 before result_10, node_9 before node_10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def domain_of(file_name: str) -> str:
    """The trace domain of a power log file: node_<K>.txt is node<K>'s wall power, sw_<K>.txt
    switch <K>'s (K as the file names it: MLPerf results number nodes from 0 or from 1)."""
    stem = file_name.rsplit(".", 1)[0]
    kind, _, k = stem.partition("_")
    return f"node{k}/node:wall" if kind == "node" else f"sw{k}/switch:wall"


def energy_domain(file_name: str, estimate: float | None) -> str:
    """The key of a power log's energy in metrics.energy_by_domain_j: its trace domain, or for
    an estimated switch (no trace) `sw<K>/switch:estimated`."""
    domain = domain_of(file_name)
    return domain.replace(":wall", ":estimated") if estimate is not None else domain


def measurement_type(records: list[Record]) -> str | None:
    """conversion_eff's metadata.measurement_type (AC where a node's AC input power was read
    and converted to DC by the efficiency), or None."""
    for r in records:
        if r.key == EFFICIENCY and isinstance(r.metadata, dict):
            kind = r.metadata.get("measurement_type")
            return kind if isinstance(kind, str) else None
    return None


def eval_records(records: list[Record], metric: str) -> list[Record]:
    """A result log's evals of the benchmark's quality metric: its eval_accuracy records, only
    those whose metadata.metric is `metric` where the benchmark logs several (stable diffusion
    logs FID and CLIP); records whose value is not a finite number are left out."""
    out = []
    for r in records:
        if r.key != "eval_accuracy":
            continue
        if metric != "eval_accuracy" and not (
            isinstance(r.metadata, dict) and r.metadata.get("metric") == metric
        ):
            continue
        v = r.value
        if not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v):
            out.append(r)
    return out
