"""`joulebench validate`: check a submission's content the way a strict reviewer would.

Pure: reads files, writes nothing (the CLI may write the JSON report it is asked for). Every
finding has a rule id, a severity, the file, and a sentence the submitter can act on. Rule ids:

  SUB-001 submission.json      SUB-002 division         SUB-003 ruleset       SUB-004 layout
  SUB-005 symlink/special file SUB-006 file too large
  SYS-001 system file          SYS-002 required field   SYS-003 system vs runs
  RES-001 unreadable result    RES-002 schema           RES-003 run status    RES-004 path vs content
  HASH-001 config hash         HASH-002 file hashes     CFG-001 config copy   CFG-002 same config
  TRACE-001 unreadable trace   TRACE-002 not monotonic  TRACE-003 sample rate TRACE-004 gap
  TRACE-005 window coverage    ENERGY-001 total energy  ENERGY-002 to target  ENERGY-003 per step
  CO2-001 carbon arithmetic    CO2-002 intensity table  TARGET-001 target claim
  TARGET-002 non-converged     RUNS-001 run count       DIV-001 provenance    MLLOG-001 MLPerf log
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import SubmissionError
from harness.metrics import energy_between
from harness.results.mllog import parse_mllog
from harness.results.schema import check_result
from harness.results.trace import TraceCurve, TraceError
from harness.results.writer import sha256_file
from harness.submission.ruleset import Ruleset, load_ruleset

RUN_FILES = ("result.json", "power.csv", "mllog.txt", "config.yaml")
ACCEPTED_STATUS = ("success", "target_not_reached")


@dataclass
class Finding:
    rule: str
    severity: str  # error | warning
    file: str
    message: str


@dataclass
class Run:
    rel: str  # results/<system>/<benchmark>/<framework>/run_<k>
    system: str
    benchmark: str
    framework: str
    result: dict | None = None  # set when result.json passed the schema


@dataclass
class Report:
    submission: str
    division: str | None
    ruleset: str | None
    runs: list[Run] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def rule_ids(self) -> set[str]:
        return {f.rule for f in self.findings if f.severity == "error"}

    def to_dict(self) -> dict:
        return {
            "submission": self.submission,
            "valid": self.valid,
            "division": self.division,
            "ruleset": self.ruleset,
            "runs": [r.rel for r in self.runs],
            "findings": [asdict(f) for f in self.findings],
        }


def _reject_constant(name: str):
    raise ValueError(f"non-finite number {name} (JSON has no NaN or Infinity)")


def read_json(path: Path, limit: int) -> Any:
    """Parse JSON that may be hostile: size-limited, no NaN/Infinity, bounded nesting."""
    if path.stat().st_size > limit:
        raise ValueError(f"{path.stat().st_size} bytes, over the {limit}-byte limit")
    try:
        return json.loads(path.read_bytes().decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason})") from exc


def _close(a: float, b: float, rel: float, abs_tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


class Validator:
    def __init__(self, root: Path):
        self.root = root
        self.report = Report(submission=str(root), division=None, ruleset=None)
        self.rules: Ruleset | None = None

    def add(self, rule: str, file: str, message: str, severity: str = "error") -> None:
        self.report.findings.append(Finding(rule, severity, file, message))

    # -- the submission -------------------------------------------------------------------
    def run(self) -> Report:
        if not self.root.is_dir():
            raise SubmissionError(
                f"{self.root} is not a directory.", "give the submission's top directory."
            )
        meta = self._submission_meta()
        if meta is None:
            return self.report
        systems = self._systems()
        runs = self._discover_runs()
        for run in runs:
            try:
                self._check_run(run)
            except Exception as exc:  # noqa: BLE001 - hostile input must end in a finding, not a traceback
                self.add(
                    "RES-002",
                    run.rel,
                    f"could not be checked ({type(exc).__name__}: {exc}); fix the files.",
                )
                run.result = None
        self._check_groups(runs, systems, meta["division"])
        self.report.runs = runs
        return self.report

    def _submission_meta(self) -> dict | None:
        path = self.root / "submission.json"
        if not path.is_file() or path.is_symlink():
            self.add("SUB-001", "submission.json", "missing; `joulebench package` writes it.")
            return None
        try:
            meta = read_json(path, 1 << 20)
        except (OSError, ValueError) as exc:
            self.add("SUB-001", "submission.json", f"unreadable: {exc}.")
            return None
        if not isinstance(meta, dict):
            self.add(
                "SUB-001",
                "submission.json",
                "must be a JSON object with org, division and ruleset.",
            )
            return None
        division, ruleset_id = meta.get("division"), meta.get("ruleset")
        try:
            self.rules = load_ruleset(ruleset_id)
        except SubmissionError as exc:
            self.add("SUB-003", "submission.json", f"{exc.problem} {exc.fix}")
            return None
        self.report.ruleset = self.rules.id
        if division not in self.rules.divisions:
            self.add(
                "SUB-002",
                "submission.json",
                f"division {division!r} is not one of {sorted(self.rules.divisions)}.",
            )
            return None
        self.report.division = division
        if not isinstance(meta.get("org"), str) or not meta["org"].strip():
            self.add("SUB-001", "submission.json", "org must name the submitting organisation.")
        return meta

    def _systems(self) -> dict[str, dict]:
        systems: dict[str, dict] = {}
        folder = self.root / "systems"
        if not folder.is_dir():
            self.add(
                "SYS-001",
                "systems/",
                "missing; put the system description in systems/<system_id>.json.",
            )
            return systems
        for path in sorted(folder.iterdir()):
            rel = f"systems/{path.name}"
            if path.is_symlink() or not path.is_file():
                self.add("SUB-005", rel, "is a symlink or not a regular file; copy the file in.")
                continue
            if path.suffix != ".json":
                self.add(
                    "SUB-004",
                    rel,
                    "unexpected file in systems/; only <system_id>.json belongs here.",
                )
                continue
            try:
                data = read_json(path, self.rules.max_json_bytes)
            except (OSError, ValueError) as exc:
                self.add("SYS-001", rel, f"unreadable: {exc}.")
                continue
            if not isinstance(data, dict):
                self.add("SYS-001", rel, "must be a JSON object.")
                continue
            missing = [
                k for k in self.rules.system_required_fields if data.get(k) in (None, "", [])
            ]
            if missing:
                self.add("SYS-002", rel, f"required fields missing or empty: {', '.join(missing)}.")
            systems[path.stem] = data
        return systems

    def _discover_runs(self) -> list[Run]:
        """results/<system>/<benchmark>/<framework>/run_<k>/, walked without following links."""
        runs: list[Run] = []
        base = self.root / "results"
        if not base.is_dir() or base.is_symlink():
            self.add(
                "SUB-004",
                "results/",
                "missing; runs go in results/<system>/<benchmark>/<framework>/run_<k>/.",
            )
            return runs
        for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
            here = Path(dirpath)
            rel_parts = here.relative_to(self.root).parts
            for name in list(dirnames) + filenames:
                full = here / name
                mode = full.lstat().st_mode
                if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                    self.add(
                        "SUB-005",
                        str(full.relative_to(self.root)),
                        "is a symlink or special file; submissions hold regular files only.",
                    )
                    if name in dirnames:
                        dirnames.remove(name)
            depth = len(rel_parts)
            if depth < 5 and filenames:
                for name in filenames:
                    self.add(
                        "SUB-004",
                        "/".join((*rel_parts, name)),
                        "stray file outside a run directory.",
                    )
            if depth == 5:
                dirnames.clear()
                _, system, benchmark, framework, run_name = rel_parts
                rel = "/".join(rel_parts)
                if not run_name.startswith("run_") or not run_name[4:].isdigit():
                    self.add("SUB-004", rel, "run directories are named run_<k>.")
                    continue
                missing = [f for f in RUN_FILES if not (here / f).is_file()]
                if missing:
                    self.add("SUB-004", rel, f"missing {', '.join(missing)}.")
                runs.append(Run(rel, system, benchmark, framework))
        return sorted(runs, key=lambda r: r.rel)

    # -- one run --------------------------------------------------------------------------
    def _check_run(self, run: Run) -> None:
        folder = self.root / run.rel
        rules = self.rules
        path = folder / "result.json"
        if not path.is_file():
            return
        try:
            result = read_json(path, rules.max_json_bytes)
        except (OSError, ValueError) as exc:
            self.add("RES-001", f"{run.rel}/result.json", f"unreadable: {exc}.")
            return
        problems = check_result(result)
        if problems:
            shown = "; ".join(problems[:5]) + (
                f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            )
            self.add("RES-002", f"{run.rel}/result.json", f"does not match schema 1: {shown}.")
            return
        run.result = result
        if result["status"] not in ACCEPTED_STATUS:
            self.add(
                "RES-003",
                f"{run.rel}/result.json",
                f"status is {result['status']!r}; only finished runs "
                f"({', '.join(ACCEPTED_STATUS)}) can be submitted.",
            )
        if result["benchmark"] != run.benchmark or result["workload"]["framework"] != run.framework:
            self.add(
                "RES-004",
                f"{run.rel}/result.json",
                f"records {result['benchmark']}/"
                f"{result['workload']['framework']} but sits under {run.benchmark}/{run.framework}.",
            )
        self._check_hashes(run, folder, result)
        trace = self._check_trace(run, folder, result)
        if trace is not None and result["metrics"] is not None:
            self._check_energy(run, result, trace)
        self._check_carbon(run, result)
        self._check_target_and_log(run, folder, result)

    def _check_hashes(self, run: Run, folder: Path, result: dict) -> None:
        config = folder / "config.yaml"
        if config.is_file():
            if sha256_file(config) != result["config_sha256"]:
                self.add(
                    "HASH-001",
                    f"{run.rel}/config.yaml",
                    "does not match config_sha256: the config changed "
                    "after the run. Submit the config that produced it.",
                )
            else:
                try:
                    on_disk = yaml.safe_load(config.read_text())
                except yaml.YAMLError as exc:
                    on_disk = f"unparseable ({exc})"
                if on_disk != result["config"]:
                    self.add(
                        "CFG-001", f"{run.rel}/result.json", "its config differs from config.yaml."
                    )
        for name, digest in result["files"].items():
            if name == "config.yaml":
                continue
            if name not in RUN_FILES:
                self.add(
                    "HASH-002", f"{run.rel}/result.json", f"lists an unexpected file {name!r}."
                )
            elif (folder / name).is_file() and sha256_file(folder / name) != digest:
                self.add(
                    "HASH-002",
                    f"{run.rel}/{name}",
                    "sha256 differs from result.json: the file changed after the run.",
                )
        for name in ("power.csv", "mllog.txt"):
            if name not in result["files"]:
                self.add("HASH-002", f"{run.rel}/result.json", f"has no sha256 for {name}.")

    def _check_trace(self, run: Run, folder: Path, result: dict) -> TraceCurve | None:
        rel = f"{run.rel}/power.csv"
        path = folder / "power.csv"
        if not path.is_file():
            return None
        if path.stat().st_size > self.rules.max_trace_bytes:
            self.add(
                "SUB-006", rel, f"is over the ruleset's {self.rules.max_trace_bytes}-byte limit."
            )
            return None
        try:
            trace = TraceCurve.read(path)
        except (TraceError, OSError) as exc:
            self.add("TRACE-001", rel, f"unreadable: {exc}.")
            return None
        timing = result["timing"]
        start, stop = timing["run_start_ns"], timing["run_stop_ns"]
        if stop is None:
            return None
        slack = int(self.rules.coverage_slack_s * 1e9)
        expected = {d for m in result["meters"] for d in m["domains"]}
        if set(trace.domains) != expected:
            self.add(
                "TRACE-001",
                rel,
                f"domains {sorted(trace.domains)} differ from the meters' {sorted(expected)}.",
            )
            return None
        covered = True
        for domain, tr in trace.domains.items():
            t = tr.t_ns
            if (t.size > 1) and (t[1:] <= t[:-1]).any():
                self.add("TRACE-002", rel, f"{domain}: timestamps go backwards or repeat.")
                covered = False
                continue
            if t[0] > start + slack or t[-1] < stop - slack:
                self.add(
                    "TRACE-005",
                    rel,
                    f"{domain}: the trace spans {(t[-1] - t[0]) / 1e9:.2f} s and does not "
                    "cover run_start..run_stop; keep the meter running for the whole timed window.",
                )
                covered = False
                continue
            first = max(0, int(t.searchsorted(start, side="right")) - 1)
            last = int(t.searchsorted(stop, side="left"))
            window = t[first : last + 1]
            gap_s = float((window[1:] - window[:-1]).max()) / 1e9 if window.size > 1 else math.inf
            if gap_s > self.rules.max_gap_s:
                self.add(
                    "TRACE-004",
                    rel,
                    f"{domain}: a {gap_s:.2f} s gap between samples inside the timed window "
                    f"(limit {self.rules.max_gap_s:g} s).",
                )
            duration_s = (stop - start) / 1e9
            inside = int(((t >= start) & (t <= stop)).sum())
            if duration_s > 0 and inside / duration_s < self.rules.min_sample_hz:
                self.add(
                    "TRACE-003",
                    rel,
                    f"{domain}: {inside / duration_s:.2f} samples/s inside the timed window, "
                    f"below {self.rules.min_sample_hz:g}.",
                )
        return trace if covered else None

    def _check_energy(self, run: Run, result: dict, trace: TraceCurve) -> None:
        rel, tol, m = f"{run.rel}/result.json", self.rules.energy_tolerance, result["metrics"]
        totals = [
            d for s in result["meters"] if s["role"] == "total" for d in s["domains"]
        ] or list(trace.domains)
        start, stop = result["timing"]["run_start_ns"], result["timing"]["run_stop_ns"]

        def total(t0: int, t1: int) -> float:
            between = energy_between(trace.energy_at, t0, t1)
            return sum(between[d] for d in totals if d in between)

        recomputed = total(start, stop)
        if not _close(m["energy_total_j"], recomputed, tol):
            self.add(
                "ENERGY-001",
                rel,
                f"energy_total_j {m['energy_total_j']:.6g} J but the trace gives "
                f"{recomputed:.6g} J over run_start..run_stop (tolerance {100 * tol:g}%).",
            )
        elif result["carbon"] and not _close(
            result["carbon"]["it_energy_kwh"] * 3.6e6, recomputed, tol
        ):
            self.add("ENERGY-001", rel, "carbon.it_energy_kwh does not match the measured energy.")
        target = next((e for e in m["evals"] if e["reached_target"]), None)
        if m["energy_to_target_j"] is not None and target is not None:
            to_target = total(start, start + int(round(target["t_s"] * 1e9)))
            if not _close(m["energy_to_target_j"], to_target, tol):
                self.add(
                    "ENERGY-002",
                    rel,
                    f"energy_to_target_j {m['energy_to_target_j']:.6g} J but the trace gives "
                    f"{to_target:.6g} J up to the target eval.",
                )
        eps, k = m["energy_per_step"], None
        bad_windows = [
            w
            for w in result["windows"]
            if not _close(w["energy_j"], total(w["t_start_ns"], w["t_end_ns"]), tol, abs_tol=1e-6)
        ]
        if bad_windows:
            self.add(
                "ENERGY-003", rel, f"{len(bad_windows)} window energies disagree with the trace."
            )
        elif eps is not None:
            k = eps["steps_per_window"]
            full = [
                w["energy_j"] / k for w in result["windows"] if w["step_end"] - w["step_start"] == k
            ]
            if (
                len(full) != eps["windows"]
                or not full
                or not _close(sum(full) / len(full), eps["mean_j"], tol)
            ):
                self.add(
                    "ENERGY-003", rel, "energy_per_step does not follow from the window energies."
                )

    def _check_carbon(self, run: Run, result: dict) -> None:
        c, rel, tol = result["carbon"], f"{run.rel}/result.json", self.rules.co2e_tolerance
        if c is None:
            return
        lb = c["location_based"]
        checks = [
            ("facility_energy_kwh", c["facility_energy_kwh"], c["it_energy_kwh"] * c["pue"]),
            (
                "location_based.kg_co2e",
                lb["kg_co2e"],
                c["facility_energy_kwh"] * lb["intensity_g_per_kwh"] / 1e3,
            ),
        ]
        mb = c["market_based"]
        if mb is not None:
            share = 1.0 - (mb["covered_fraction"] or 0.0)
            checks.append(
                (
                    "market_based.kg_co2e",
                    mb["kg_co2e"],
                    c["facility_energy_kwh"] * share * mb["factor_g_per_kwh"] / 1e3,
                )
            )
        em = c["embodied"]
        if em is not None:
            checks.append(
                (
                    "embodied.kg_co2e",
                    em["kg_co2e"],
                    em["kg_per_accelerator"]
                    * em["accelerators"]
                    * em["run_hours"]
                    / (em["lifetime_years"] * 8760.0),
                )
            )
        for name, reported, expected in checks:
            if not _close(reported, expected, tol, abs_tol=1e-12):
                self.add(
                    "CO2-001",
                    rel,
                    f"carbon.{name} is {reported:.6g} but its inputs give {expected:.6g}.",
                )
        if lb["dataset"] != "user-supplied intensity":
            from harness.carbon.intensity import lookup
            from harness.errors import ConfigError

            try:
                table = lookup(lb["region"]).g_per_kwh
            except ConfigError:
                self.add(
                    "CO2-002",
                    rel,
                    f"region {lb['region']!r} is not in the shipped intensity tables.",
                )
                return
            if not _close(table, lb["intensity_g_per_kwh"], 1e-9):
                self.add(
                    "CO2-002",
                    rel,
                    f"intensity {lb['intensity_g_per_kwh']:g} g/kWh for {lb['region']} differs "
                    f"from the table's {table:g}.",
                )

    def _check_target_and_log(self, run: Run, folder: Path, result: dict) -> None:
        rel, m = f"{run.rel}/result.json", result["metrics"]
        if m is None:
            return
        threshold, lower = result["target_threshold"], result["target_direction"] == "lower"
        configured = (result["config"].get("benchmark") or {}).get("target", {}).get("threshold")
        if configured != threshold:
            self.add(
                "TARGET-001",
                rel,
                f"target_threshold {threshold} differs from the config's {configured}.",
            )
        meets = [
            (e["eval_loss"] <= threshold) if lower else (e["eval_loss"] >= threshold)
            for e in m["evals"]
        ]
        first = meets.index(True) if True in meets else None
        claimed = [e["reached_target"] for e in m["evals"]]
        if claimed != [i == first for i in range(len(meets))] or m["reached_target"] != (
            first is not None
        ):
            self.add(
                "TARGET-001",
                rel,
                "the target claims do not follow from the eval losses and the threshold.",
            )
        if (result["status"] == "success") != (first is not None) and result[
            "status"
        ] in ACCEPTED_STATUS:
            self.add("TARGET-001", rel, f"status {result['status']!r} contradicts the evals.")
        log = folder / "mllog.txt"
        if not log.is_file():
            return
        if log.stat().st_size > self.rules.max_mllog_bytes:
            self.add("SUB-006", f"{run.rel}/mllog.txt", "is over the ruleset's size limit.")
            return
        records = parse_mllog(log.read_text(errors="replace"))
        keys = {r.get("key") for r in records}
        missing = [k for k in ("submission_benchmark", "run_start", "run_stop") if k not in keys]
        evals = [r.get("value") for r in records if r.get("key") == "eval_accuracy"]
        if missing:
            self.add("MLLOG-001", f"{run.rel}/mllog.txt", f"has no {', '.join(missing)} record.")
        elif len(evals) != len(m["evals"]) or not all(
            isinstance(a, (int, float)) and _close(a, e["eval_loss"], 1e-9)
            for a, e in zip(evals, m["evals"], strict=False)
        ):
            self.add(
                "MLLOG-001",
                f"{run.rel}/mllog.txt",
                "its eval_accuracy records differ from result.json's evals.",
            )

    # -- across runs ----------------------------------------------------------------------
    def _check_groups(self, runs: list[Run], systems: dict[str, dict], division: str) -> None:
        groups: dict[tuple[str, str, str], list[Run]] = {}
        for run in runs:
            groups.setdefault((run.system, run.benchmark, run.framework), []).append(run)
        allowed = set(self.rules.divisions[division])
        for (system, benchmark, framework), members in sorted(groups.items()):
            where = f"results/{system}/{benchmark}/{framework}"
            if len(members) != self.rules.runs_per_benchmark:
                self.add(
                    "RUNS-001",
                    where,
                    f"{len(members)} runs; ruleset {self.rules.id} needs "
                    f"{self.rules.runs_per_benchmark}.",
                )
            checked = [r for r in members if r.result is not None]
            non_converged = [
                r
                for r in checked
                if not r.result["metrics"] or not r.result["metrics"]["reached_target"]
            ]
            if len(non_converged) > self.rules.max_non_converged:
                self.add(
                    "TARGET-002",
                    where,
                    f"{len(non_converged)} runs missed the target; at most "
                    f"{self.rules.max_non_converged} may.",
                )
            for run in checked:
                bad = sorted({m["provenance"] for m in run.result["meters"]} - allowed)
                if bad:
                    self.add(
                        "DIV-001",
                        f"{run.rel}/result.json",
                        f"energy provenance {', '.join(bad)} is not accepted "
                        f"in the {division} division (accepts {', '.join(sorted(allowed))}).",
                    )
            self._check_same_config(where, checked)
            if system not in systems:
                self.add("SYS-001", where, f"no systems/{system}.json describes this system.")
            else:
                self._check_system_matches(system, systems[system], checked)

    def _check_same_config(self, where: str, runs: list[Run]) -> None:
        def stripped(run: Run) -> dict:
            return {
                k: v
                for k, v in run.result["config"].items()
                if k not in self.rules.same_config_except
            }

        if len(runs) > 1:
            reference = stripped(runs[0])
            for run in runs[1:]:
                if stripped(run) != reference:
                    keys = sorted(
                        k
                        for k in set(reference) | set(stripped(run))
                        if reference.get(k) != stripped(run).get(k)
                    )
                    self.add(
                        "CFG-002",
                        f"{run.rel}/result.json",
                        f"config differs from {runs[0].rel} in "
                        f"{', '.join(keys)}; runs of a benchmark may differ only in "
                        f"{', '.join(self.rules.same_config_except)}.",
                    )

    def _check_system_matches(self, system: str, desc: dict, runs: list[Run]) -> None:
        rel = f"systems/{system}.json"
        try:
            declared = int(desc.get("accelerators_per_node")) * int(
                desc.get("number_of_nodes") or 1
            )
        except (TypeError, ValueError):
            self.add("SYS-002", rel, "accelerators_per_node and number_of_nodes must be integers.")
            return
        for run in runs:
            w = run.result["workload"]
            used = w["device_count"]
            if used != declared:
                self.add(
                    "SYS-003", rel, f"declares {declared} accelerators but {run.rel} ran on {used}."
                )
                break
            model = str(desc.get("accelerator_model_name", ""))
            if (
                model.lower() not in w["device_name"].lower()
                and w["device_name"].lower() not in model.lower()
            ):
                self.add(
                    "SYS-003",
                    rel,
                    f"declares accelerator {model!r} but {run.rel} ran on {w['device_name']!r}.",
                )
                break


def validate_submission(root: Path) -> Report:
    return Validator(Path(root)).run()
