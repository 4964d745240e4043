"""The folders of an MLPerf Training results repository, read as a stranger's.

    <org>/systems/<system>.json
    <org>/results/<system>/<benchmark>/result_<X>.txt             a run's MLPerf log
    <org>/results/<system>/<benchmark>/scaling.json                the RCP scaling factor (optional)
    <org>/results/<system>/<benchmark>/power/result_<X>/node_*.txt each node's power log
    <org>/results/<system>/<benchmark>/power/result_<X>/sw_*.txt   each switch's (optional)

A benchmark folder holds a power result when it has a power/ folder (the summarizer's
_has_power). Node and switch files are found by the summarizer's globs; anything else there
(SMC's .png plots and total_power.txt) is named in the result and never read.

The org folder is the root: nothing outside it is read, no link is followed (every file through
harness/results/safe_files.py), a link, FIFO, socket or device anywhere below a benchmark folder
refuses the import, and every file and line is bounded by the ruleset's limits.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import SubmissionError
from harness.results import safe_files
from harness.results.writer import sha256_text
from harness.submission.mlcommons import RESULT_FILE
from harness.submission.ruleset import MLPerfImportRules

FIX = "import an MLPerf results folder as its repository publishes it."


@dataclass
class RunSource:
    name: str  # result_<X>
    log: str  # the result log's text
    nodes: dict[str, str]  # node_*.txt name -> text
    switches: dict[str, str]  # sw_*.txt name -> text
    not_read: list[str]  # other files beside them, named and never read
    sha256: dict[str, str]  # every file read, by its path below the repository root


@dataclass
class BenchmarkSource:
    system: str
    benchmark: str
    folder: Path
    runs: list[RunSource] = field(default_factory=list)
    scaling_factor: float = 1.0
    scaling_text: str | None = None  # scaling.json as published, if there is one


@dataclass
class OrgSource:
    root: Path  # the org folder: nothing outside it is read
    org: str  # its folder name
    benchmarks: list[tuple[str, str, Path]]  # (system, benchmark, folder) holding power results


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise SubmissionError(f"cannot list {folder}: {exc.strerror}.", FIX) from exc


def _is_dir(entry: os.DirEntry) -> bool:
    """A real folder; a link (to a folder or anything else) refuses the import."""
    mode = entry.stat(follow_symlinks=False).st_mode
    if stat.S_ISLNK(mode):
        raise SubmissionError(
            f"{entry.path} is a symbolic link; an MLPerf folder holds regular files.", FIX
        )
    return stat.S_ISDIR(mode)


def locate(src: Path, system: str | None, benchmark: str | None) -> OrgSource:
    """The org folder SRC is, or lies in, and its benchmark folders with power results (filtered
    by --system and --benchmark)."""
    src = Path(src)
    if not src.is_dir():
        raise SubmissionError(
            f"{src} is not a folder.", "give an MLPerf org, system or benchmark folder."
        )
    if (src / "results").is_dir() and (src / "systems").is_dir():
        root, systems = src, None
    elif src.parent.name == "results":
        root, systems = src.parent.parent, [src.name]
    elif src.parent.parent.name == "results":
        root, systems = src.parent.parent.parent, [src.parent.name]
        benchmark = benchmark or src.name
        if benchmark != src.name:
            raise SubmissionError(f"--benchmark {benchmark} is not {src}.", "drop --benchmark.")
    else:
        raise SubmissionError(
            f"{src} is not an MLPerf org folder (results/ and systems/), nor a system or a "
            "benchmark folder inside one's results/.",
            "give <org>, <org>/results/<system> or <org>/results/<system>/<benchmark>.",
        )
    if system is not None:
        if systems is not None and system not in systems:
            raise SubmissionError(f"--system {system} is not {src}.", "drop --system.")
        systems = [system]
    found = []
    for sys_entry in _entries(root / "results"):
        if not _is_dir(sys_entry) or (systems is not None and sys_entry.name not in systems):
            continue
        for b in _entries(Path(sys_entry.path)):
            if not _is_dir(b) or (benchmark is not None and b.name != benchmark):
                continue
            power = Path(b.path) / "power"
            if power.is_symlink():
                raise SubmissionError(
                    f"{power} is a symbolic link; an MLPerf folder holds regular files.", FIX
                )
            if power.is_dir():
                found.append(
                    (_safe(sys_entry.name, "system"), _safe(b.name, "benchmark"), Path(b.path))
                )
    if not found:
        what = " ".join(x for x in (system, benchmark) if x) or "any benchmark"
        raise SubmissionError(
            f"no power results under {src} for {what} (a benchmark folder holds them in power/).",
            "give a folder with MLPerf power results, or check --system and --benchmark.",
        )
    return OrgSource(root, root.name, found)


def _safe(name: str, what: str) -> str:
    try:
        return safe_files.safe_component(name, what)
    except safe_files.UnsafeFile as exc:
        raise SubmissionError(f"{exc}.", FIX) from exc


def read_text(path: Path, root: Path, rules: MLPerfImportRules) -> str:
    """One file of the source through the safe reader, UTF-8, every line within the limit."""
    try:
        text = safe_files.read_text(path, rules.max_file_bytes, root)
    except (OSError, ValueError) as exc:
        raise SubmissionError(f"{path}: {exc}.", FIX) from exc
    longest = max(map(len, text.split("\n")), default=0)
    if longest > rules.max_line_bytes:
        raise SubmissionError(
            f"{path} has a line of {longest} characters (at most {rules.max_line_bytes}): "
            "not an MLPerf log.",
            FIX,
        )
    return text


def read_benchmark(org: OrgSource, system: str, benchmark: str, folder: Path,
                   rules: MLPerfImportRules) -> BenchmarkSource:  # fmt: skip
    """Every run of one benchmark folder, read whole: its log and its power files."""
    for rel, problem in safe_files.tree_problems(folder):
        raise SubmissionError(
            f"{folder / rel} {problem}; an MLPerf folder holds regular files.", FIX
        )
    out = BenchmarkSource(system, benchmark, folder)
    repo = org.root.parent

    def digest(run: RunSource, path: Path, text: str) -> None:
        run.sha256[str(path.relative_to(repo))] = sha256_text(text)

    names = {e.name for e in _entries(folder)}
    logs = sorted(n for n in names if RESULT_FILE.fullmatch(n))
    power_dirs = {e.name for e in _entries(folder / "power") if _is_dir(e)}
    orphans = sorted(power_dirs - {n[:-4] for n in logs})
    if orphans:
        raise SubmissionError(
            f"{folder}/power/{orphans[0]} has no {orphans[0]}.txt beside it: power for a run "
            "that is not in the results.",
            "remove the folder or add the run's log; MLCommons' summarizer ignores it.",
        )
    if len(logs) * 2 > rules.max_files:
        raise SubmissionError(f"{folder} holds {len(logs)} result logs.", FIX)
    if "scaling.json" in names:
        out.scaling_text = read_text(folder / "scaling.json", org.root, rules)
        try:
            value = safe_files.parse_json(out.scaling_text, "scaling.json").get("scaling_factor")
        except (ValueError, AttributeError) as exc:
            raise SubmissionError(f"{folder}/scaling.json: {exc}.", FIX) from exc
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise SubmissionError(f"{folder}/scaling.json has no positive scaling_factor.", FIX)
        out.scaling_factor = float(value)
    for log in logs:
        name = log[:-4]
        run = RunSource(name, "", {}, {}, [], {})
        run.log = read_text(folder / log, org.root, rules)
        digest(run, folder / log, run.log)
        pdir = folder / "power" / name
        if name not in power_dirs:
            raise SubmissionError(
                f"{folder / log} has no power/{name}/ with node files: MLCommons' summarizer "
                "stops at it (it asserts one node file).",
                "add its power logs, or import without the run.",
            )
        for entry in _entries(pdir):
            file = pdir / entry.name
            if fnmatch.fnmatch(entry.name, "node_*.txt"):
                run.nodes[_safe(entry.name, "node file")] = text = read_text(file, org.root, rules)
            elif fnmatch.fnmatch(entry.name, "sw_*.txt"):
                run.switches[_safe(entry.name, "switch file")] = text = read_text(
                    file, org.root, rules
                )
            else:
                run.not_read.append(entry.name)
                continue
            digest(run, file, text)
        if not run.nodes:
            raise SubmissionError(f"{pdir} holds no node_*.txt: nothing measured the run.", FIX)
        out.runs.append(run)
    return out


def system_description(org: OrgSource, system: str, rules: MLPerfImportRules) -> tuple[dict, str]:
    """(<org>/systems/<system>.json parsed, its text)."""
    path = org.root / "systems" / f"{system}.json"
    if not path.is_file():
        raise SubmissionError(f"{path} is missing: MLPerf describes every system.", FIX)
    text = read_text(path, org.root, rules)
    try:
        desc = safe_files.parse_json(text, path.name)
    except ValueError as exc:
        raise SubmissionError(f"{path}: {exc}.", FIX) from exc
    if not isinstance(desc, dict):
        raise SubmissionError(f"{path} is not a JSON object.", FIX)
    return desc, text
