"""The MLCommons view of a package: the files MLPerf's own tools (mlperf-logging) read unchanged.

Under the package's top folder, which is the submitting organisation's folder to them:

  systems/<system>.json                                       system_desc_checker's schema
  results/<system>/<benchmark>/result_<N>.txt                 one run's MLPerf log
  results/<system>/<benchmark>/power/result_<N>/node_<K>.txt  node K's power during that run

joulebench's own view (results/<system>/<benchmark>/<framework>/run_<k>/) stays beside it, and
run_<k> is result_<k-1>. MLPerf describes one software stack per system, so where one system
ran more than one framework its MLCommons system is named <system>-<framework>.

A node file holds the node's total domains (its wall meter, else the sum of its devices) on the
MLPerf clock: power_measurement_start at run_start, one power_reading per interval whose value
is the counter's average power over that interval, power_measurement_stop at run_stop. The
result summarizer's energy, the sum of reading x interval, is then the counter's energy over
run_start..run_stop, whatever the interval.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from harness.errors import SubmissionError
from harness.results import mlperf_power as mp
from harness.results import safe_files
from harness.results.mllog import (
    INTERVAL_END,
    INTERVAL_START,
    POINT_IN_TIME,
    PREFIX,
    format_record,
    utc_ms,
)
from harness.results.run_dir import run_total_domains
from harness.results.trace import TraceCurve, TraceError
from harness.submission.ruleset import Ruleset

READING_PERIOD_MS = 1000  # MLPerf Power's node logs come from PTDaemon at 1 Hz
# the files of a benchmark folder in the view, beside joulebench's runs: run logs (named
# result_<N>.txt by `package`, result_<jobid>_<n>.txt and the like in published results) and the
# RCP scaling factor a review may add; never stray files
RESULT_FILE = re.compile(r"result_[A-Za-z0-9._-]+\.txt")
VIEW_FILES = ("scaling.json",)
NODE_FILE = re.compile(r"node_(\d+)\.txt")
# the submission_status values of MLPerf logs (mllog constants) and the system file's names
STATUS_NAMES = {
    "onprem": "Available on-premise",
    "cloud": "Available cloud",
    "research": "Research, Development, or Internal (RDI)",
    "preview": "Preview",
}


def view_system(system_id: str, framework: str, frameworks: set[str]) -> str:
    """The MLCommons system name of a joulebench (system, framework)."""
    return system_id if len(frameworks) <= 1 else f"{system_id}-{framework}"


def system_description(
    desc: dict, org: str, division: str, rules: Ruleset, framework: str | None = None
) -> dict:
    """`desc` in MLCommons' schema: every field system_desc_checker requires, as a string, and
    a status it allows; joulebench's own fields (power meter, PUE...) kept as they are."""
    out = {**desc, "submitter": org, "division": division}
    if framework is not None:
        out["framework"] = framework
    status = out.get("status")
    if isinstance(status, str) and status.lower() in STATUS_NAMES:
        out["status"] = STATUS_NAMES[status.lower()]
    missing = [k for k in rules.mlcommons_system_fields if out.get(k) is None]
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        raise SubmissionError(
            f"the system description lacks fields MLCommons' system_desc_checker requires: {shown}.",
            "fill them in (`joulebench system` writes a template with every field).",
        )
    if out["status"] not in rules.mlcommons_availability:
        raise SubmissionError(
            f"system status {out['status']!r} is not one MLCommons allows.",
            f"set status to one of: {'; '.join(rules.mlcommons_availability)}.",
        )
    for key in rules.mlcommons_system_fields:
        if not isinstance(out[key], str):
            out[key] = str(out[key])
    return out


def result_log(mllog_text: str, org: str, division: str, platform: str) -> str:
    """A run's mllog.txt with the package's submission keys; every other line unchanged."""
    values = {
        "submission_org": org,
        "submission_division": division,
        "submission_platform": platform,
    }
    lines = []
    for line in mllog_text.splitlines():
        if line.startswith(PREFIX):
            try:
                record = json.loads(line[len(PREFIX) :])
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and record.get("key") in values:
                record["value"] = values[record["key"]]
                line = PREFIX + json.dumps(record)
        lines.append(line)
    return "\n".join(lines) + "\n"


def _anchor_ms(timing: dict) -> float:
    return datetime.fromisoformat(timing["anchor_utc"].replace("Z", "+00:00")).timestamp() * 1e3


def node_logs(result: dict, trace: TraceCurve, host: str, max_hours: float = math.inf) -> list[str]:
    """One MLPerf power log per node of the run (see the module docstring); a timed window
    longer than `max_hours` (the ruleset's max_run_hours) is refused before its grid of
    readings is built."""
    timing = result["timing"]
    anchor_ms, anchor_ns = _anchor_ms(timing), timing["anchor_monotonic_ns"]
    start_ns, stop_ns = timing["run_start_ns"], timing["run_stop_ns"]
    if stop_ns is None or not 0 <= (stop_ns - start_ns) / 3.6e12 <= max_hours:
        raise SubmissionError(
            f"run {result.get('run_id')!r}: its timed window (run_start_ns..run_stop_ns) is "
            f"not 0..{max_hours:g} hours.",
            "package finished, unedited runs.",
        )
    start_ms = utc_ms(anchor_ms, anchor_ns, start_ns)
    stop_ms = max(start_ms + 1, utc_ms(anchor_ms, anchor_ns, stop_ns))
    grid_ms = np.append(np.arange(start_ms, stop_ms, READING_PERIOD_MS), stop_ms)
    grid_ns = np.rint(anchor_ns + (grid_ms - anchor_ms) * 1e6).astype(np.int64)
    # the trace covers run_start..run_stop; a millisecond's rounding must not step outside it
    grid_ns = np.clip(grid_ns, timing["run_start_ns"], timing["run_stop_ns"])
    energy = trace.energy_at(grid_ns)
    if result.get("distributed"):
        nodes = [(n["hostname"], n["total_domains"]) for n in result["distributed"]["nodes"]]
    else:
        nodes = [(host, run_total_domains(result) or sorted(trace.domains))]
    logs = []
    for hostname, domains in nodes:
        joules = sum(energy[d] for d in domains)
        watts = np.diff(joules) / (np.diff(grid_ms) / 1e3)
        meta = {"host": hostname}
        records = [
            (
                "power_measurement_start",
                None,
                start_ms,
                INTERVAL_START,
                {**meta, "domains": domains},
            ),
            ("conversion_eff", 1.0, start_ms, POINT_IN_TIME, meta),
        ]
        records += [
            ("power_reading", float(w), int(t), POINT_IN_TIME, {**meta, "unit": "W"})
            for t, w in zip(grid_ms[1:], watts, strict=True)
        ]
        records.append(("power_measurement_stop", None, stop_ms, INTERVAL_END, meta))
        logs.append("".join(format_record(*record) for record in records))
    return logs


def node_log_energy_j(text: str, time_to_train_ms: float, rule=None) -> float:
    """A node file's energy as MLCommons' result summarizer computes it (_compute_power_node, by
    `rule`: the ruleset's mlcommons.summarizer_rule unless named): the sum of each reading times
    the time since the previous one, scaled from the measured span to the time to train, times
    the conversion efficiency. ValueError for a file it cannot score."""
    from harness.submission.ruleset import load_ruleset

    rule = rule or load_ruleset("v1").mlcommons_rule
    return mp.node_energy_j(mp.parse(text).records, time_to_train_ms, rule).energy_j


def run_times_ms(mllog_text: str) -> tuple[float, float] | None:
    """(run_start, run_stop) time_ms of a log, as the summarizer reads them; None if absent."""
    try:
        return mp.run_times_ms(mp.parse(mllog_text).records)
    except mp.PowerLogError:
        return None


def write_view(
    out: Path,
    runs: list[tuple[str, str, int, Path]],
    system_id: str,
    system: dict,
    org: str,
    division: str,
    rules: Ruleset,
) -> None:
    """Write the MLCommons view of `runs` ((benchmark, framework, k, run_dir), run_k) to `out`."""
    from harness.results.writer import atomic_write_json, atomic_write_text

    frameworks = {framework for _, framework, _, _ in runs}
    base = system_description(system, org, division, rules)
    (out / "systems").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "systems" / f"{system_id}.json", base)
    described = {system_id}
    for benchmark, framework, k, run_dir in runs:
        name = view_system(system_id, framework, frameworks)
        result = safe_files.read_json(run_dir / "result.json", rules.max_json_bytes)
        if name not in described:  # one software stack per MLCommons system
            version = result["system"]["frameworks"].get(framework, "")
            stack = f"{framework} {version}".strip()
            desc = system_description(system, org, division, rules, stack)
            atomic_write_json(out / "systems" / f"{name}.json", desc)
            described.add(name)
        folder = out / "results" / name / benchmark
        folder.mkdir(parents=True, exist_ok=True)
        try:
            text = safe_files.read_text(run_dir / "mllog.txt", rules.max_mllog_bytes)
        except ValueError as exc:
            raise SubmissionError(f"{run_dir}/mllog.txt: {exc}.", "package unedited runs.") from exc
        atomic_write_text(folder / f"result_{k - 1}.txt", result_log(text, org, division, name))
        ticks = {d: p for m in result["meters"] for d, p in (m.get("counter_tick_s") or {}).items()}
        try:
            trace = TraceCurve.read(
                run_dir / "power.csv", ticks, None, rules.max_trace_bytes, rules.max_trace_rows
            )
        except (TraceError, OSError) as exc:
            raise SubmissionError(
                f"cannot read {run_dir / 'power.csv'}: {exc}.", "package unedited run directories."
            ) from exc
        power = folder / "power" / f"result_{k - 1}"
        power.mkdir(parents=True, exist_ok=True)
        for node, log in enumerate(node_logs(result, trace, name, rules.max_run_hours)):
            atomic_write_text(power / f"node_{node}.txt", log)


def _small_text(path: Path, limit: int, root: Path) -> str | None:
    """A text file of the view, through the safe reader (no link anywhere below `root`, a
    regular file under `limit`); None when it is absent or refused (the tree walk reports
    links and special files as SUB-005)."""
    try:
        return safe_files.read_text(path, limit, root)
    except ValueError:
        return None


def check_view(root: Path, runs: list, systems: dict[str, dict], rules: Ruleset, add) -> None:
    """MLC-001: the MLCommons view holds the same runs as joulebench's, with the same run times
    and the same energy; MLC-002: its system files satisfy MLCommons' system_desc_checker."""
    frameworks: dict[str, set[str]] = {}
    for run in runs:
        frameworks.setdefault(run.system, set()).add(run.framework)
    expected: dict[Path, set[str]] = {}
    imported_systems = set()
    for run in runs:
        name = view_system(run.system, run.framework, frameworks[run.system])
        folder = root / "results" / name / run.benchmark
        imported = (run.result or {}).get("imported")
        if imported:  # the published files: harness/submission/import_checks.py compares them
            expected.setdefault(folder, set()).add(imported["result_file"])
            imported_systems.add(name)
            continue
        n = int(run.rel.rsplit("run_", 1)[1]) - 1
        expected.setdefault(folder, set()).add(f"result_{n}.txt")
        if name not in systems:
            add("MLC-002", f"systems/{name}.json", "missing; `joulebench package` writes it.")
        if run.result is not None:
            _check_result_file(root, run, folder, n, rules, add)
    for folder, names in sorted(expected.items()):
        present = (
            {p.name for p in folder.iterdir() if RESULT_FILE.fullmatch(p.name)}
            if folder.is_dir()
            else set()
        )
        for extra in sorted(present - names):
            add(
                "MLC-001",
                str((folder / extra).relative_to(root)),
                "has no joulebench run beside it (result_<N>.txt is run_<N+1>); re-package.",
            )
    for name, desc in sorted(systems.items()):
        missing = [k for k in rules.mlcommons_system_fields if k not in desc]
        not_text = [
            k for k in rules.mlcommons_text_fields if k in desc and not isinstance(desc[k], str)
        ]
        rel = f"systems/{name}.json"
        if missing:
            add(
                "MLC-002",
                rel,
                f"lacks fields MLCommons' system_desc_checker requires: {', '.join(missing)}.",
            )
        if not_text:
            add("MLC-002", rel, f"MLCommons' checker needs strings in: {', '.join(not_text)}.")
        if "status" in desc and desc["status"] not in rules.mlcommons_availability:
            if name in imported_systems:  # published so: a fact of the import, not a defect
                add(
                    "IMP-007",
                    rel,
                    f"status {desc['status']!r} is not one MLCommons' system_desc_checker "
                    f"accepts ({'; '.join(rules.mlcommons_availability)}), yet it was published.",
                    rules.mlperf.trust["IMP-007"]["severity"],
                )
                continue
            add(
                "MLC-002",
                rel,
                f"status {desc['status']!r} is not one of: {'; '.join(rules.mlcommons_availability)}.",
            )


def _check_result_file(root: Path, run, folder: Path, n: int, rules: Ruleset, add) -> None:
    rel = str((folder / f"result_{n}.txt").relative_to(root))
    text = _small_text(folder / f"result_{n}.txt", rules.max_mllog_bytes, root)
    if text is None:
        add("MLC-001", rel, f"missing: the MLCommons copy of {run.rel}; re-package.")
        return
    own = _small_text(root / run.rel / "mllog.txt", rules.max_mllog_bytes, root)
    times, own_times = run_times_ms(text), run_times_ms(own or "")
    if times is None or times != own_times:
        add("MLC-001", rel, f"its run_start/run_stop differ from {run.rel}/mllog.txt's.")
        return
    nodes = sorted((folder / "power" / f"result_{n}").glob("node_*.txt"))
    dist = run.result.get("distributed")
    want = dist["nnodes"] if dist else 1
    if len(nodes) != want or any(not NODE_FILE.fullmatch(p.name) for p in nodes):
        add(
            "MLC-001",
            f"{folder.relative_to(root)}/power/result_{n}",
            f"holds {len(nodes)} node files but {run.rel} ran on {want} node(s).",
        )
        return
    switches = sorted((folder / "power" / f"result_{n}").glob("sw_*.txt"))
    try:
        ttt = times[1] - times[0]
        energy = sum(
            node_log_energy_j(_small_text(p, rules.max_mllog_bytes, root) or "", ttt,
                              rules.mlcommons_rule) for p in nodes
        ) + sum(
            mp.switch_energy_j(mp.parse(_small_text(p, rules.max_mllog_bytes, root) or "").records, ttt)[0]
            for p in switches
        )  # the summarizer adds switch files too  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:
        add("MLC-001", f"{folder.relative_to(root)}/power/result_{n}", f"unreadable: {exc}.")
        return
    truth = run.energy_j if run.energy_j is not None else run.result["metrics"]["energy_total_j"]
    # the view's edges are whole milliseconds: allow that much power at each edge
    slack_j = 2e-3 * energy / max(1e-3, (times[1] - times[0]) / 1e3)
    # written so that a NaN reading disagrees: `abs(nan - x) > tol` would be False
    if (
        truth is not None
        and not abs(energy - truth) <= rules.energy_tolerance * abs(truth) + slack_j
    ):
        add(
            "MLC-001",
            f"{folder.relative_to(root)}/power/result_{n}",
            f"the node files give {energy:.6g} J (as MLCommons' summarizer adds them) but "
            f"{run.rel} measured {truth:.6g} J over the same window; re-package.",
        )
