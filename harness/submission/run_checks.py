"""The checks of one run directory: schema, hashes, trace, energy, carbon, target and MLPerf log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import yaml

from harness.results import safe_files
from harness.results.mllog import parse_mllog
from harness.results.mlperf_power import PowerLogError, eval_records, parse
from harness.results.run_dir import target_met
from harness.results.schema import check_result
from harness.submission.distributed_checks import DistributedChecks
from harness.submission.energy_checks import EnergyChecks, trace_energy_j
from harness.submission.findings import (
    ACCEPTED_STATUS,
    RUN_FILES,
    Run,
    RunFiles,
    close_enough,
    read_json,
)
from harness.submission.import_checks import ImportChecks
from harness.submission.ruleset import Ruleset
from harness.submission.trace_checks import TraceChecks


def same_json(a, b) -> bool:
    """Equal values of equal JSON types: True is not 1, and 1.0 is not True (Python's == says
    they are, which would let a retyped config value pass)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


class RunChecks(TraceChecks, EnergyChecks, DistributedChecks, ImportChecks):
    """Checks one run against the ruleset, reporting through `add(rule, file, message)`."""

    def __init__(self, root: Path, rules: Ruleset, add: Callable[..., None]):
        self.root, self.rules, self.add = root, rules, add

    def check(self, run: Run) -> None:
        folder = self.root / run.rel
        rules = self.rules
        path = folder / "result.json"
        if not path.is_file():
            return
        try:
            result = read_json(path, rules.max_json_bytes, self.root)
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
        # read and derived once, before any check: no check depends on another having run
        files = RunFiles(run, folder, result)
        self._read_trace(files)
        if files.whole_trace is not None and result["metrics"] is not None:
            # the MLCommons view's check (MLC-001) compares its node files against it
            run.energy_j = trace_energy_j(result, files.whole_trace)
        for check in self.checks:
            check(files)

    @property
    def checks(self) -> tuple[Callable[[RunFiles], None], ...]:
        """Every check of one run, by family, each `check(files) -> None`."""
        return (
            self._check_hashes,  # files: HASH-001..002, CFG-001
            self._check_trace,  # trace: TRACE-003, -004, -006, -007
            self._check_energy,  # energy: ENERGY-001..003
            self._check_carbon,  # carbon: CO2-001..002
            self._check_target,  # target: TARGET-001
            self._check_log,  # MLPerf log: MLLOG-001..002
            self._check_distributed,  # distributed: DIST-001..004
            self._check_imported,  # an import's published files and facts: MLC-001, IMP-001..008
        )

    def _check_imported(self, files: RunFiles) -> None:
        if files.result.get("imported"):
            self._check_import(files)

    def _limit(self, name: str) -> int:
        rules = self.rules
        return {"power.csv": rules.max_trace_bytes, "mllog.txt": rules.max_mllog_bytes}.get(
            name, rules.max_json_bytes
        )

    def _sha256(self, run: Run, name: str) -> str | None:
        """The file's sha256 through the safe reader; None (and a finding) if it is refused."""
        try:
            return safe_files.sha256(self.root / run.rel / name, self._limit(name), self.root)
        except (OSError, ValueError) as exc:
            self.add("SUB-005", f"{run.rel}/{name}", f"not read: {exc}.")
            return None

    def _check_hashes(self, files: RunFiles) -> None:
        run, folder, result = files.run, files.folder, files.result
        config = folder / "config.yaml"
        if config.is_file() and (digest := self._sha256(run, "config.yaml")) is not None:
            if digest != result["config_sha256"]:
                self.add(
                    "HASH-001",
                    f"{run.rel}/config.yaml",
                    "does not match config_sha256: the config changed "
                    "after the run. Submit the config that produced it.",
                )
            else:
                try:
                    text = safe_files.read_text(config, self.rules.max_json_bytes, self.root)
                    on_disk = yaml.safe_load(text)
                except (ValueError, yaml.YAMLError, RecursionError) as exc:
                    on_disk = f"unparseable ({type(exc).__name__})"
                if not same_json(on_disk, result["config"]):
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
            elif (folder / name).is_file() and self._sha256(run, name) not in (digest, None):
                self.add(
                    "HASH-002",
                    f"{run.rel}/{name}",
                    "sha256 differs from result.json: the file changed after the run.",
                )
        for name in ("power.csv", "mllog.txt"):
            if name not in result["files"]:
                self.add("HASH-002", f"{run.rel}/result.json", f"has no sha256 for {name}.")

    def _check_target(self, files: RunFiles) -> None:
        result = files.result
        rel, m = f"{files.rel}/result.json", result["metrics"]
        if m is None:
            return
        threshold = result["target_threshold"]
        configured = (result["config"].get("benchmark") or {}).get("target", {}).get("threshold")
        if configured != threshold:
            self.add(
                "TARGET-001",
                rel,
                f"target_threshold {threshold} differs from the config's {configured}.",
            )
        meets = [
            target_met(e["eval_loss"], threshold, result["target_direction"]) for e in m["evals"]
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

    def _check_log(self, files: RunFiles) -> None:
        run, result, m = files.run, files.result, files.result["metrics"]
        log = files.folder / "mllog.txt"
        if m is None or not log.is_file():
            return
        try:
            text = safe_files.read_text(log, self.rules.max_mllog_bytes, self.root)
        except ValueError as exc:
            rule = "SUB-006" if "limit" in str(exc) else "MLLOG-001"
            self.add(rule, f"{run.rel}/mllog.txt", f"not read: {exc}.")
            return
        records = parse_mllog(text)
        self._check_log_times(run, result, records)
        keys = {r.get("key") for r in records}
        missing = [k for k in ("submission_benchmark", "run_start", "run_stop") if k not in keys]
        evals = [r.get("value") for r in records if r.get("key") == "eval_accuracy"]
        if result.get("imported"):  # the benchmark's quality metric, as the import read it
            try:
                evals = [
                    r.value for r in eval_records(parse(text).records, result["target_metric"])
                ]
            except PowerLogError as exc:
                self.add("MLLOG-001", f"{run.rel}/mllog.txt", f"unreadable: {exc}.")
                return
        if missing:
            self.add("MLLOG-001", f"{run.rel}/mllog.txt", f"has no {', '.join(missing)} record.")
        elif len(evals) != len(m["evals"]) or not all(
            isinstance(a, (int, float)) and close_enough(a, e["eval_loss"], 1e-9)
            for a, e in zip(evals, m["evals"], strict=False)
        ):
            self.add(
                "MLLOG-001",
                f"{run.rel}/mllog.txt",
                "its eval_accuracy records differ from result.json's evals.",
            )

    def _check_log_times(self, run: Run, result: dict, records: list[dict]) -> None:
        """MLLOG-002: the log's run_start and run_stop are the result's, on the UTC clock both
        derive from the run's one anchor (harness/results/mllog.py: utc_ms)."""
        timing, tol_ms = result["timing"], self.rules.mllog_time_tolerance_s * 1e3
        try:
            anchor_ms = (
                datetime.fromisoformat(timing["anchor_utc"].replace("Z", "+00:00")).timestamp()
                * 1e3
            )
        except (ValueError, AttributeError, OverflowError):
            self.add("MLLOG-002", f"{run.rel}/result.json", "timing.anchor_utc is not a UTC time.")
            return
        for key in ("run_start", "run_stop"):
            t_ns = timing[f"{key}_ns"]
            logged = [r.get("time_ms") for r in records if r.get("key") == key][:1]
            if t_ns is None or not logged:
                continue
            expected = anchor_ms + (t_ns - timing["anchor_monotonic_ns"]) / 1e6
            got = logged[0]
            if not isinstance(got, (int, float)) or not abs(got - expected) <= tol_ms:
                self.add(
                    "MLLOG-002",
                    f"{run.rel}/mllog.txt",
                    f"{key} at time_ms {got} but result.json's timeline puts it at "
                    f"{expected:.0f} (tolerance {tol_ms:g} ms); the log and the result must "
                    "describe the same run.",
                )

    # -- across runs ----------------------------------------------------------------------
