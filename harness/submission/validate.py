"""`joulebench validate`: check a submission's content the way a strict reviewer would.

Pure: reads files, writes nothing (the CLI may write the JSON report it is asked for). Every
finding has a rule id, a severity, the file, and a sentence the submitter can act on. The rule
ids and what each means are in the ruleset (configs/ruleset/v1.yaml, `rule_ids`), the one
place a reviewer looks them up; a test keeps this code and that list the same.

Every file is read through harness/results/safe_files.py (README: "Threat model").
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from harness.errors import SubmissionError
from harness.results import safe_files
from harness.submission.agreement import check_agreement
from harness.submission.findings import RUN_FILES, Finding, Report, Run, read_json
from harness.submission.group_checks import GroupChecks
from harness.submission.import_checks import check_duplicate_runs
from harness.submission.mlcommons import RESULT_FILE, VIEW_FILES, check_view
from harness.submission.ruleset import Ruleset, load_ruleset
from harness.submission.run_checks import RunChecks

__all__ = ["RUN_FILES", "Finding", "Report", "Run", "read_json", "validate_submission"]


class Validator(GroupChecks):
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
        for rel, problem in safe_files.tree_problems(self.root):
            self.add("SUB-005", rel, f"{problem}; submissions hold regular files only, never read.")
        systems = self._systems()
        runs = self._discover_runs()
        for run in runs:
            try:
                RunChecks(self.root, self.rules, self.add).check(run)
            except Exception as exc:  # noqa: BLE001 - hostile input must end in a finding, not a traceback
                self.add(
                    "RES-002",
                    run.rel,
                    f"could not be checked ({type(exc).__name__}: {exc}); fix the files.",
                )
                run.result = None
        for name, check in (
            (
                "the runs of each benchmark",
                lambda: self._check_groups(runs, systems, meta["division"]),
            ),
            (
                "the MLCommons view",
                lambda: check_view(self.root, runs, systems, self.rules, self.add),
            ),
            ("the meter agreement", lambda: check_agreement(self.root, self.rules, self.add)),
        ):
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - hostile input ends in a finding, never a traceback
                self.add(
                    "SUB-007",
                    ".",
                    f"{name} could not be checked ({type(exc).__name__}); the submission's files "
                    "are not what joulebench writes: re-package unedited runs.",
                )
        self.report.runs = runs
        return self.report

    def _submission_meta(self) -> dict | None:
        path = self.root / "submission.json"
        if not path.is_file() or path.is_symlink():
            self.add("SUB-001", "submission.json", "missing; `joulebench package` writes it.")
            return None
        try:
            meta = read_json(path, 1 << 20, self.root)
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
        wrong = submission_type_problems(meta)
        if wrong:
            self.add(
                "SUB-001", "submission.json", f"{'; '.join(wrong)}; `joulebench package` writes it."
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
                continue  # SUB-005 from the tree walk
            if path.suffix != ".json":
                self.add(
                    "SUB-004",
                    rel,
                    "unexpected file in systems/; only <system_id>.json belongs here.",
                )
                continue
            try:
                data = read_json(path, self.rules.max_json_bytes, self.root)
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
            for name in list(dirnames):  # a linked folder: reported by the tree walk
                if not stat.S_ISDIR((here / name).lstat().st_mode):
                    dirnames.remove(name)
            filenames = [f for f in filenames if stat.S_ISREG((here / f).lstat().st_mode)]
            depth = len(rel_parts)
            if depth == 3:  # results/<system>/<benchmark>: the MLCommons view's files live here
                filenames = [
                    f for f in filenames if not RESULT_FILE.fullmatch(f) and f not in VIEW_FILES
                ]
                if "power" in dirnames:
                    dirnames.remove("power")
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
    def _check_groups(self, runs: list[Run], systems: dict[str, dict], division: str) -> None:
        groups: dict[tuple[str, str, str], list[Run]] = {}
        for run in runs:
            groups.setdefault((run.system, run.benchmark, run.framework), []).append(run)
        allowed = set(self.rules.divisions[division])
        for (system, benchmark, framework), members in sorted(groups.items()):
            where = f"results/{system}/{benchmark}/{framework}"
            checked = [r for r in members if r.result is not None]
            needed, may_miss, whose = self._run_counts(benchmark, checked)
            if len(members) != needed:
                self.add("RUNS-001", where, f"{len(members)} runs; {whose} needs {needed}.")
            self._check_distinct(where, checked)
            if any(r.result.get("imported") for r in checked):
                check_duplicate_runs(where, checked, self.rules, self.add)
            non_converged = [
                r
                for r in checked
                if not r.result["metrics"] or not r.result["metrics"]["reached_target"]
            ]
            if len(non_converged) > may_miss:
                self.add(
                    "TARGET-002",
                    where,
                    f"{len(non_converged)} runs missed the target; at most {may_miss} may.",
                )
            for run in checked:
                self._check_meter_claims(run)
                bad = sorted({m["provenance"] for m in run.result["meters"]} - allowed)
                if bad:
                    self.add(
                        "DIV-001",
                        f"{run.rel}/result.json",
                        f"energy provenance {', '.join(bad)} is not accepted "
                        f"in the {division} division (accepts {', '.join(sorted(allowed))}).",
                    )
            if division == "closed":
                for run in checked:
                    self._check_equivalence(run)
            self._check_same_config(where, checked)
            if system not in systems:
                self.add("SYS-001", where, f"no systems/{system}.json describes this system.")
            else:
                self._check_system_matches(system, systems[system], checked)

    def _run_counts(self, benchmark: str, runs: list[Run]) -> tuple[int, int, str]:
        """(runs required, runs that may miss the target, whose rule): an imported MLPerf
        benchmark's are MLPerf's (its result file count, and the runs its olympic score drops),
        else the ruleset's."""
        table = self.rules.mlperf.benchmarks.get(benchmark)
        if table is not None and runs and all(r.result.get("imported") for r in runs):
            return table.runs, table.drop, f"MLPerf Training ({benchmark}, ruleset {self.rules.id})"
        return (
            self.rules.runs_per_benchmark,
            self.rules.max_non_converged,
            f"ruleset {self.rules.id}",
        )


# submission.json's fields and their JSON types (package.py writes them; an import adds
# `imported`): checked before any is used, so a list where a name belongs is a finding
SUBMISSION_FIELDS = {
    "org": (str,),
    "division": (str,),
    "ruleset": (str,),
    "schema_version": (str,),
    "created_utc": (str,),
    "joulebench_version": (str,),
    "systems": (list,),
    "imported": (dict,),
}
SUBMISSION_REQUIRED = ("org", "division", "ruleset")


def submission_type_problems(meta: dict) -> list[str]:
    """How submission.json departs from its fields' types; empty when it does not."""
    problems = [f"{k} is missing" for k in SUBMISSION_REQUIRED if k not in meta]
    for key, types in SUBMISSION_FIELDS.items():
        if key in meta and not isinstance(meta[key], types):
            problems.append(f"{key} must be {'text' if types == (str,) else types[0].__name__}")
    if isinstance(meta.get("systems"), list) and not all(
        isinstance(x, str) for x in meta["systems"]
    ):
        problems.append("systems must list system ids (text)")
    return problems


def validate_submission(root: Path) -> Report:
    return Validator(Path(root)).run()
