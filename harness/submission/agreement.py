"""MLPerf Training's meter-agreement test (training_policies, power_measurement.adoc), as a file.

MLPerf accepts a software or BMC meter in place of a licensed analyzer only when it agrees with
a reference meter on the same system under load. joulebench's form of that test:
- phases: the system idle, and at least two benchmarks (the ruleset's `meter_agreement`);
- each phase: the reference's and the candidate's traces of the same interval, on one clock
  (joulebench's power.csv: the host's monotonic clock), cut into five windows of 60 s from the
  start of their overlap;
- per window, the candidate's energy over the reference's, minus one; the phase's figure is the
  olympic mean of its windows (the highest and lowest dropped), as MLPerf scores runs;
- the meter agrees when every phase's figure is within the tolerance.

`joulebench agree` writes `agreement.json` and copies both traces of each phase beside it, so
`package --agreement` carries all of it and `validate` recomputes the verdict from the traces
(AGREE-001: the file disagrees with its traces or they were changed; AGREE-002: the verdict is
not a pass under this ruleset's terms).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import SubmissionError
from harness.results import safe_files
from harness.results.trace import TraceCurve, TraceError
from harness.results.writer import atomic_write_json

SCHEMA = "joulebench-agreement/1"
MAX_TRACE_BYTES = 256 << 20


@dataclass(frozen=True)
class AgreementRules:
    window_s: float
    windows: int
    tolerance_frac: float
    min_benchmarks: int

    @classmethod
    def of(cls, rules) -> AgreementRules:
        a = rules.meter_agreement
        return cls(
            float(a["window_s"]),
            int(a["windows"]),
            float(a["tolerance_frac"]),
            int(a["min_benchmarks"]),
        )


def olympic_mean(values: list[float]) -> float:
    """Mean with the highest and the lowest dropped (all of them with fewer than three)."""
    v = sorted(values)
    return float(np.mean(v[1:-1] if len(v) >= 3 else v))


def _span(curve: TraceCurve) -> tuple[int, int]:
    starts = [int(d.t_ns[0]) for d in curve.domains.values()]
    ends = [int(d.t_ns[-1]) for d in curve.domains.values()]
    return max(starts), min(ends)


def phase_windows(ref: TraceCurve, cand: TraceCurve, rules: AgreementRules, name: str) -> list:
    """The phase's windows: (t0, t1, reference J, candidate J, candidate/reference - 1)."""
    r0, r1 = _span(ref)
    c0, c1 = _span(cand)
    start, end = max(r0, c0), min(r1, c1)
    need_ns = int(rules.windows * rules.window_s * 1e9)
    if end - start < need_ns:
        raise SubmissionError(
            f"phase {name}: the two traces overlap for {max(0, end - start) / 1e9:.1f} s on one "
            f"clock; the test needs {rules.windows} windows of {rules.window_s:g} s.",
            "record both meters at the same time on this host for long enough.",
        )
    edges = start + np.arange(rules.windows + 1) * int(rules.window_s * 1e9)
    out = []
    e_ref = ref.energy_at(edges)
    e_cand = cand.energy_at(edges)
    ref_j = np.sum([np.diff(v) for v in e_ref.values()], axis=0)
    cand_j = np.sum([np.diff(v) for v in e_cand.values()], axis=0)
    for k in range(rules.windows):
        if ref_j[k] <= 0:
            raise SubmissionError(
                f"phase {name}: the reference measured no energy in window {k + 1}.",
                "check the reference meter's trace.",
            )
        diff = float(cand_j[k] / ref_j[k] - 1.0)
        out.append(
            {
                "t0_ns": int(edges[k]),
                "t1_ns": int(edges[k + 1]),
                "reference_j": round(float(ref_j[k]), 6),
                "candidate_j": round(float(cand_j[k]), 6),
                "candidate_over_reference": round(diff, 9),
            }
        )
    return out


def _read(path: Path, root: Path | None = None) -> TraceCurve:
    try:
        return TraceCurve.read(path, root=root, max_bytes=MAX_TRACE_BYTES)
    except TraceError as exc:
        raise SubmissionError(f"{path.name}: {exc}.", "give joulebench power.csv traces.") from exc


def judge(phases: list[dict], rules: AgreementRules) -> dict:
    """Each phase's olympic figure and pass, and the verdict with its reasons."""
    problems = []
    for phase in phases:
        figure = olympic_mean([w["candidate_over_reference"] for w in phase["windows"]])
        phase["olympic_candidate_over_reference"] = round(figure, 9)
        phase["agrees"] = abs(figure) <= rules.tolerance_frac
        if not phase["agrees"]:
            problems.append(f"phase {phase['name']} is {figure:+.2%} off")
    names = [p["name"] for p in phases]
    if "idle" not in names:
        problems.append("no idle phase")
    if len([n for n in names if n != "idle"]) < rules.min_benchmarks:
        problems.append(f"fewer than {rules.min_benchmarks} benchmark phases")
    return {"verdict": "fail" if problems else "pass", "problems": problems}


def compute(
    phases: list[tuple[str, Path, Path]], rules: AgreementRules, root: Path | None = None
) -> list[dict]:
    out = []
    for name, ref_path, cand_path in phases:
        ref, cand = _read(ref_path, root), _read(cand_path, root)
        out.append({"name": name, "windows": phase_windows(ref, cand, rules, name)})
    return out


def _sha256(path: Path, root: Path | None = None) -> str:
    return safe_files.sha256(path, MAX_TRACE_BYTES, root)


def agree(
    phases: list[tuple[str, Path, Path]],
    out: Path,
    ruleset,
    reference: str,
    candidate: str,
) -> dict:
    """Runs the test, writes out/agreement.json and out/traces/ (built aside, then renamed)."""
    rules = AgreementRules.of(ruleset)
    names = [p[0] for p in phases]
    if len(set(names)) != len(names) or not all(n.replace("-", "").isalnum() for n in names):
        raise SubmissionError(
            "phase names must be distinct words (idle, lm-dense-small...).", "rename them."
        )
    if out.exists():
        raise SubmissionError(f"{out} exists.", "give a new output directory.")
    results = compute(phases, rules)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "traces").mkdir(parents=True)
    for phase, (name, ref_path, cand_path) in zip(results, phases, strict=True):
        for role, src in (("reference", ref_path), ("candidate", cand_path)):
            rel = f"traces/{name}-{role}.csv"
            shutil.copyfile(src, tmp / rel)
            phase[role] = {"file": rel, "sha256": _sha256(tmp / rel)}
    verdict = judge(results, rules)
    doc = {
        "schema": SCHEMA,
        "ruleset": ruleset.id,
        "reference_meter": reference,
        "candidate_meter": candidate,
        "window_s": rules.window_s,
        "windows": rules.windows,
        "tolerance_frac": rules.tolerance_frac,
        "phases": results,
        **verdict,
    }
    atomic_write_json(tmp / "agreement.json", doc)
    tmp.rename(out)
    return doc


def copy_into(src: Path, out: Path) -> None:
    """`package --agreement`: agreement.json and its traces into out/agreement/, each read
    through the safe reader (no links, regular files, bounded)."""
    try:
        doc = safe_files.read_json(src / "agreement.json", 1 << 20)
        files = ["agreement.json"] + [
            _safe_rel(p[role]["file"]) for p in doc["phases"] for role in ("reference", "candidate")
        ]
        blobs = {}
        for rel in files:
            with safe_files.open_binary(src / rel, MAX_TRACE_BYTES, src) as f:
                blobs[rel] = f.read()
    except (OSError, ValueError, KeyError, TypeError, safe_files.UnsafeFile) as exc:
        raise SubmissionError(
            f"{src} is not a `joulebench agree` folder ({_reason(exc)}).",
            "give the folder `joulebench agree -o` wrote.",
        ) from exc
    from harness.results.writer import atomic_write_bytes

    (out / "agreement" / "traces").mkdir(parents=True, exist_ok=True)
    for rel, data in blobs.items():
        atomic_write_bytes(out / "agreement" / rel, data)


def check_agreement(root: Path, ruleset, add) -> None:
    """AGREE-001/002 for a submission's agreement/ folder, recomputed from its own traces."""
    folder = root / "agreement"
    if not folder.exists():
        return
    rel = "agreement/agreement.json"
    try:
        doc = safe_files.read_json(folder / "agreement.json", 1 << 20, root)
    except (OSError, ValueError) as exc:
        add("AGREE-001", rel, f"unreadable: {exc}.")
        return
    rules = AgreementRules.of(ruleset)
    try:
        phases = [
            (
                str(p["name"]),
                folder / _safe_rel(p["reference"]["file"]),
                folder / _safe_rel(p["candidate"]["file"]),
            )
            for p in doc["phases"]
        ]
        for p, (_, ref_path, cand_path) in zip(doc["phases"], phases, strict=True):
            for role, path in (("reference", ref_path), ("candidate", cand_path)):
                if _sha256(path, root) != p[role]["sha256"]:
                    add("AGREE-001", rel, f"{p[role]['file']} is not the trace it was judged on.")
                    return
        recomputed = compute(phases, rules, root)
    except (
        KeyError,
        TypeError,
        ValueError,
        OSError,
        SubmissionError,
        safe_files.UnsafeFile,
    ) as exc:
        add("AGREE-001", rel, f"cannot be recomputed from its traces ({_reason(exc)}).")
        return
    for claimed, fresh in zip(doc["phases"], recomputed, strict=True):
        if not _same_windows(claimed.get("windows"), fresh["windows"]):
            add("AGREE-001", rel, f"phase {fresh['name']}'s windows differ from its traces.")
            return
    verdict = judge(recomputed, rules)
    if doc.get("verdict") != verdict["verdict"]:
        add(
            "AGREE-001", rel, f"says {doc.get('verdict')!r}; its traces say {verdict['verdict']!r}."
        )
    elif verdict["verdict"] != "pass":
        add(
            "AGREE-002",
            rel,
            f"{doc.get('candidate_meter')} does not agree with {doc.get('reference_meter')}: "
            f"{'; '.join(verdict['problems'])} (tolerance {rules.tolerance_frac:.0%}).",
        )


def _safe_rel(name) -> str:
    if not isinstance(name, str) or not name.startswith("traces/") or ".." in name or "\\" in name:
        raise ValueError(f"trace path {name!r} is not under traces/")
    safe_files.safe_component(name.split("/", 1)[1], "trace file")
    return name


def _same_windows(claimed, fresh) -> bool:
    if not isinstance(claimed, list) or len(claimed) != len(fresh):
        return False
    keys = ("reference_j", "candidate_j", "candidate_over_reference")
    return all(
        isinstance(c, dict)
        and all(np.isclose(float(c.get(k, np.nan)), f[k], rtol=1e-9, atol=1e-6) for k in keys)
        for c, f in zip(claimed, fresh, strict=True)
    )


def _reason(exc: Exception) -> str:
    text = exc.problem if isinstance(exc, SubmissionError) else str(exc)
    return text[:200]
