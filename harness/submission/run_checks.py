"""The checks of one run directory: schema, hashes, trace, energy, carbon, target and MLPerf log."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from harness.meters.counter import power_integral_j
from harness.metrics import EdgeEnergy
from harness.results import safe_files
from harness.results.mllog import parse_mllog
from harness.results.schema import check_result
from harness.results.trace import TraceCurve, TraceError
from harness.submission.findings import ACCEPTED_STATUS, RUN_FILES, Run, close_enough, read_json
from harness.submission.ruleset import Ruleset


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


def total_domains(result: dict) -> list[str]:
    """The domains summed for a run's total: each node's wall meter, else its device meters."""
    if result.get("distributed"):
        return [x for n in result["distributed"]["nodes"] for x in n["total_domains"]]
    return [d for s in result["meters"] if s["role"] == "total" for d in s["domains"]]


class RunChecks:
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
        self._check_hashes(run, folder, result)
        trace = self._check_trace(run, folder, result)
        if trace is not None and result["metrics"] is not None:
            self._check_energy(run, result, trace)
        self._check_carbon(run, result)
        self._check_target_and_log(run, folder, result)
        if result.get("distributed") is not None:
            self._check_distributed(run, result)

    def _check_distributed(self, run: Run, result: dict) -> None:
        """A multi-process run: every domain has one owner, nodes add up to the total."""
        rel, tol, d = f"{run.rel}/result.json", self.rules.energy_tolerance, result["distributed"]
        metered = [x for s in result["meters"] for x in s["domains"]]
        owned = [x for r in d["ranks"] for x in r["domains"]]
        if sorted(owned) != sorted(metered) or len(set(owned)) != len(owned):
            self.add(
                "DIST-001",
                rel,
                "the ranks' domains do not match the meters' one to one; "
                "a device is unowned or counted twice.",
            )
        sizes = {d["world_size"], len(d["ranks"]), result["system"]["world_size"]}
        sizes |= {len(d["clock_offsets_ns"]), len(d["clock_scales"])}
        if len(sizes) != 1:
            self.add("DIST-002", rel, f"world size disagrees between fields: {sorted(sizes)}.")
        self._check_rank_clocks(rel, result["timing"]["duration_s"], d["clock_scales"])
        m = result["metrics"]
        node_sum = sum(n["energy_j"] or 0.0 for n in d["nodes"])
        if m is not None and not close_enough(m["energy_total_j"], node_sum, tol):
            self.add(
                "DIST-003",
                rel,
                f"the nodes' energies add up to {node_sum:.6g} J, not the total "
                f"{m['energy_total_j']:.6g} J.",
            )

    def _check_rank_clocks(self, rel: str, duration_s: float | None, scales: list[float]) -> None:
        """Each rank's run_start..run_stop, on its own clock, is rank 0's window divided by its
        clock scale; barrier jitter and crystal drift explain a small difference, a large one
        means the ranks' edges were not the same steps and the per-rank energies cover
        different work."""
        if duration_s is None:
            return
        allowed = self.rules.max_edge_skew_s + self.rules.max_clock_drift_ppm * 1e-6 * duration_s
        for rank, scale in enumerate(scales):
            if scale <= 0:
                self.add("DIST-004", rel, f"rank {rank}'s clock scale {scale:g} is not positive.")
                continue
            skew_s = duration_s / scale - duration_s
            if abs(skew_s) > allowed:
                self.add(
                    "DIST-004",
                    rel,
                    f"rank {rank} timed {duration_s / scale:.3f} s between run_start and run_stop, "
                    f"rank 0 {duration_s:.3f} s (allowed difference {allowed:.3f} s); every rank "
                    "must open and close the timed window at the same barriers.",
                )

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

    def _check_hashes(self, run: Run, folder: Path, result: dict) -> None:
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
        ticks = {
            d: p
            for m in result["meters"]
            for d, p in (m.get("counter_tick_s") or {}).items()
            if isinstance(p, (int, float)) and p > 0
        }
        try:
            trace = TraceCurve.read(
                path, ticks, self.root, self.rules.max_trace_bytes, self.rules.max_trace_rows
            )
        except (TraceError, OSError) as exc:
            self.add("TRACE-001", rel, f"unreadable: {exc}.")
            return None
        negative = [
            d
            for d, tr in trace.domains.items()
            if (tr.watts < 0).any() or (tr.counter and (tr.joules < 0).any())
        ]
        if negative:
            self.add(
                "TRACE-008",
                rel,
                f"{', '.join(sorted(negative))}: negative watts or joules; power and a "
                "cumulative energy counter are never below zero.",
            )
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
            if tr.counter:
                self._check_counter(rel, domain, trace, start, stop)
        return trace if covered else None

    def _check_counter(
        self, rel: str, domain: str, trace: TraceCurve, start: int, stop: int
    ) -> None:
        """The counter itself: it never goes down, and where the trace also has power, the two
        agree over the timed window (a trace whose watts and joules tell different stories was
        edited, or its meter is broken)."""
        tr = trace.domains[domain]
        drops = tr.joules[:-1] - tr.joules[1:]
        if drops.size and drops.max() > self.rules.counter_max_decrease_j:
            i = int(drops.argmax())
            self.add(
                "TRACE-006",
                rel,
                f"{domain}: the energy counter goes down by {drops[i]:.6g} J at t_ns "
                f"{int(tr.t_ns[i + 1])}; a cumulative counter never decreases.",
            )
            return
        inside = (tr.t_ns >= start) & (tr.t_ns <= stop) & ~np.isnan(tr.watts)
        if int(inside.sum()) < self.rules.counter_vs_power_min_samples:
            return
        ends = trace.energy_at(np.array([start, stop], dtype=np.int64))[domain]
        counter = float(ends[1] - ends[0])
        integral = power_integral_j(tr.t_ns, tr.watts, start, stop)
        tol = self.rules.counter_vs_power_tolerance
        if integral is not None and counter > 0 and abs(integral / counter - 1) > tol:
            self.add(
                "TRACE-007",
                rel,
                f"{domain}: its power column integrates to {integral:.6g} J over the timed window "
                f"but its counter says {counter:.6g} J ({100 * (integral / counter - 1):+.1f}%, "
                f"tolerance {100 * tol:g}%); watts and joules must describe the same energy.",
            )

    def _check_energy(self, run: Run, result: dict, trace: TraceCurve) -> None:
        rel, tol, m = f"{run.rel}/result.json", self.rules.energy_tolerance, result["metrics"]
        totals = total_domains(result) or list(trace.domains)
        start, stop = result["timing"]["run_start_ns"], result["timing"]["run_stop_ns"]
        target = next((e for e in m["evals"] if e["reached_target"]), None)
        target_ns = start + int(round(target["t_s"] * 1e9)) if target is not None else start
        times = [start, stop, target_ns]
        times += [t for w in result["windows"] for t in (w["t_start_ns"], w["t_end_ns"])]
        edges = EdgeEnergy(trace.energy_at, times, totals)
        total = edges.between

        recomputed = run.energy_j = total(start, stop)
        if not close_enough(m["energy_total_j"], recomputed, tol):
            self.add(
                "ENERGY-001",
                rel,
                f"energy_total_j {m['energy_total_j']:.6g} J but the trace gives "
                f"{recomputed:.6g} J over run_start..run_stop (tolerance {100 * tol:g}%).",
            )
        elif result["carbon"] and not close_enough(
            result["carbon"]["it_energy_kwh"] * 3.6e6, recomputed, tol
        ):
            self.add("ENERGY-001", rel, "carbon.it_energy_kwh does not match the measured energy.")
        if m["energy_to_target_j"] is not None and target is not None:
            to_target = total(start, target_ns)
            if not close_enough(m["energy_to_target_j"], to_target, tol):
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
            if not close_enough(
                w["energy_j"], total(w["t_start_ns"], w["t_end_ns"]), tol, abs_tol=1e-6
            )
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
                or not close_enough(sum(full) / len(full), eps["mean_j"], tol)
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
            if not close_enough(reported, expected, tol, abs_tol=1e-12):
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
            if not close_enough(table, lb["intensity_g_per_kwh"], 1e-9):
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
