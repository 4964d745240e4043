"""The checks of an imported run (joulebench import mlperf). A mixin of RunChecks.

MLC-001: the published files beside the run (the MLCommons view: result_<X>.txt, power/result_<X>/
node_*.txt and sw_*.txt, scaling.json) are the ones the import read, byte for byte, and give
energy_total_j and each domain's energy by the round's summarizer rule, within the ruleset's
mlperf_import.energy_tolerance (1e-9): the figure is re-derived here, never taken on its word.

The trust facts of a real wall-meter result, each with its measured values; none changes the
summarizer's figure, and none makes a published result invalid. Inside its bound a fact is
`info`, outside it the severity the ruleset gives (mlperf_import.trust):
  IMP-001 sample rate and longest gap inside the timed window (MLPerf asks one reading a second)
  IMP-002 the measured power window against run_start..run_stop: covered fraction, overhang
  IMP-003 the trace over exactly the run (x conversion_eff) against the summarizer's figure
  IMP-004 node files whose power_measurement_stop equals their _start, and what the rule did
  IMP-005 the switch: estimated (its share of the energy), measured but not counted, off-clock
  IMP-006 byte-identical node files in a run (and, across runs, identical power sets or logs)
  IMP-007 placeholder submission keys in the log (the system status: mlcommons.check_view)
  IMP-008 lines MLCommons' parser skips, readings at a repeated time or out of order
"""

from __future__ import annotations

import fnmatch

import numpy as np

from harness.results import mlperf_power as mp
from harness.results import safe_files
from harness.results.writer import sha256_text as _sha
from harness.submission.findings import Run, RunFiles, close_enough
from harness.submission.mlcommons import RESULT_FILE


class ImportChecks:
    """Reports through self.add(rule, file, message, severity) under self.rules, from self.root."""

    def _fact(self, rule: str, file: str, message: str, outside: bool, severity: str | None = None):
        trust = self.rules.mlperf.trust[rule]
        self.add(rule, file, message, (severity or trust["severity"]) if outside else "info")

    def _check_import(self, files: RunFiles) -> None:
        imp = files.result["imported"]
        view_rel = f"results/{files.run.system}/{files.run.benchmark}"
        rnd = self.rules.mlperf.rounds.get(imp["round"])
        rel = f"{files.rel}/result.json"
        if rnd is None or rnd.rule.id != imp["rule"]:
            expected = f"scores it by {rnd.rule.id}" if rnd else "does not know the round"
            self.add("MLC-001", rel, f"records round {imp['round']} and rule {imp['rule']}, but "
                     f"the ruleset {expected}.")  # fmt: skip
            return
        logs = self._published(files, view_rel)
        if logs is None:
            return
        log_text, nodes, switches = logs
        where = f"{view_rel}/power/{imp['result_file'][:-4]}"
        log = self._parsed(f"{view_rel}/{imp['result_file']}", log_text)
        parsed = {n: self._parsed(f"{where}/{n}", t) for n, t in {**nodes, **switches}.items()}
        if log is None or None in parsed.values():
            return
        times = mp.run_times_ms(log.records)
        if times is None:
            self.add(
                "MLC-001", f"{view_rel}/{imp['result_file']}", "has no run_start and run_stop."
            )
            return
        ttt_ms = times[1] - times[0]
        try:
            node_energy = {
                n: mp.node_energy_j(parsed[n].records, ttt_ms, rnd.rule, n) for n in nodes
            }
            switch_energy = {n: mp.switch_energy_j(parsed[n].records, ttt_ms, n) for n in switches}
        except mp.PowerLogError as exc:
            self.add("MLC-001", where, f"{rnd.rule.id} cannot score it: {exc}.")
            return
        self._check_figure(files, where, rnd.rule.id, node_energy, switch_energy)
        self._check_scaling(files, view_rel)
        self._facts(files, where, log, parsed, nodes, switches, node_energy, switch_energy)
        files.run.fingerprint = (
            _sha(log_text),
            tuple(_sha(nodes[n]) for n in sorted(nodes)),
            times,
        )

    def _published(self, files: RunFiles, view_rel: str):
        """(result log, node files, switch files) of the view, each as recorded (MLC-001)."""
        imp, rel = files.result["imported"], f"{files.rel}/result.json"
        if not RESULT_FILE.fullmatch(imp["result_file"]):
            self.add(
                "MLC-001",
                rel,
                f"imported.result_file {imp['result_file'][:80]!r} is not a run log's name.",
            )
            return None
        limit, power_rel = (
            self.rules.mlperf.max_file_bytes,
            f"{view_rel}/power/{imp['result_file'][:-4]}",
        )
        folder = self.root / power_rel
        names = (
            sorted(p.name for p in folder.iterdir())
            if folder.is_dir() and not folder.is_symlink()
            else []
        )
        texts = {}
        for rel_path in [f"{view_rel}/{imp['result_file']}", *(f"{power_rel}/{n}" for n in names
                         if fnmatch.fnmatch(n, "node_*.txt") or fnmatch.fnmatch(n, "sw_*.txt"))]:  # fmt: skip
            try:
                texts[rel_path] = safe_files.read_text(self.root / rel_path, limit, self.root)
            except (OSError, ValueError) as exc:
                self.add("MLC-001", rel_path, f"not read: {exc}.")
                return None
        recorded = {}
        for m in files.result["meters"]:
            for path, digest in (m.get("details") or {}).get("files", {}).items():
                recorded[str(path).split("/", 1)[-1]] = digest
        missing = False
        for path in sorted(set(recorded) | set(texts)):
            if path not in texts:
                self.add("MLC-001", path, "was read by the import but is missing; import again.")
                missing = True
            elif path not in recorded:
                self.add("MLC-001", path, f"is not among the files {files.rel} was imported from.")
            elif recorded[path] != _sha(texts[path]):
                self.add("MLC-001", path, "differs from the file the import read (sha256).")
        log_text = texts[f"{view_rel}/{imp['result_file']}"]
        if files.result["files"].get("mllog.txt") != _sha(log_text):
            self.add(
                "MLC-001", f"{files.rel}/mllog.txt", f"is not {view_rel}/{imp['result_file']}."
            )
        pick = lambda pattern: {p.rsplit("/", 1)[1]: t for p, t in texts.items()  # noqa: E731
                                if p.startswith(power_rel) and fnmatch.fnmatch(p.rsplit("/", 1)[1], pattern)}  # fmt: skip
        nodes, switches = pick("node_*.txt"), pick("sw_*.txt")
        if len(nodes) != files.result["imported"]["nodes"]:
            self.add("MLC-001", power_rel, f"holds {len(nodes)} node files; the run records "
                     f"{files.result['imported']['nodes']}.")  # fmt: skip
            return None
        return None if missing else (log_text, nodes, switches)

    def _parsed(self, path: str, text: str) -> mp.LogFile | None:
        try:
            return mp.parse(text, path)
        except mp.PowerLogError as exc:
            self.add("MLC-001", path, f"unreadable as MLCommons reads it: {exc}.")
            return None

    def _check_figure(self, files, where, rule_id, node_energy, switch_energy) -> None:
        m, tol = files.result["metrics"], self.rules.mlperf.energy_tolerance
        by_domain = {mp.domain_of(n): e.energy_j for n, e in node_energy.items()}
        for n, (energy, estimate) in switch_energy.items():
            by_domain[mp.energy_domain(n, estimate)] = energy
        total = 0.0
        for value in by_domain.values():
            total += value
        if not close_enough(m["energy_total_j"], total, tol, abs_tol=0.0):
            self.add("MLC-001", f"{files.rel}/result.json", f"energy_total_j {m['energy_total_j']!r} J, "
                     f"but the published files give {total!r} J by {rule_id} (tolerance {tol:g}).")  # fmt: skip
        recorded = m["energy_by_domain_j"]
        if set(recorded) != set(by_domain) or not all(
            close_enough(recorded[d], by_domain[d], tol, abs_tol=1e-9) for d in by_domain
        ):
            self.add("MLC-001", f"{files.rel}/result.json",
                     f"energy_by_domain_j differs from what {where}'s files give by {rule_id}.")  # fmt: skip

    def _check_scaling(self, files: RunFiles, view_rel: str) -> None:
        path, factor = (
            self.root / view_rel / "scaling.json",
            files.result["imported"]["scaling_factor"],
        )
        published = 1.0
        if path.exists():
            try:
                published = safe_files.read_json(path, 1 << 20, self.root).get("scaling_factor")
            except (OSError, ValueError, AttributeError) as exc:
                self.add("MLC-001", f"{view_rel}/scaling.json", f"unreadable: {exc}.")
                return
        if not close_enough(factor, published, 1e-12):
            self.add("MLC-001", f"{files.rel}/result.json", f"imported.scaling_factor {factor!r} is not "
                     f"{view_rel}/scaling.json's {published!r}.")  # fmt: skip

    def _facts(self, files, where, log, parsed, nodes, switches, node_energy, switch_energy):
        result, trust = files.result, self.rules.mlperf.trust
        start, stop = result["timing"]["run_start_ns"], result["timing"]["run_stop_ns"]
        csv_rel, res_rel = f"{files.rel}/power.csv", f"{files.rel}/result.json"
        domains = {mp.domain_of(n): n for n in nodes}
        trace = files.trace
        if trace is not None and all(d in trace.domains for d in domains):
            self._sampling_facts(csv_rel, trace, list(domains), start, stop)
            window = trace.energy_at(np.array([start, stop], dtype=np.int64))
            scaled = sum(
                node_energy[n].efficiency * float(window[d][1] - window[d][0])
                for d, n in domains.items()
            )
            figure = sum(e.energy_j for e in node_energy.values())
            relative = (scaled - figure) / figure if figure else float("inf")
            self._fact("IMP-003", res_rel,
                       f"the trace over exactly run_start..run_stop gives {scaled:,.0f} J for the nodes "
                       f"(x conversion_eff) against the summarizer's {figure:,.0f} J: "
                       f"{scaled - figure:+,.0f} J ({100 * relative:+.2f}%); the summarizer takes the mean "
                       "power over the power window x time to train",
                       not abs(relative) <= trust["IMP-003"]["max_difference"])  # fmt: skip
        same = sorted(
            (n for n, e in node_energy.items() if e.stop_equals_start), key=mp.natural_key
        )
        if same:
            rule = self.rules.mlperf.rounds[result["imported"]["round"]].rule
            self._fact("IMP-004", where,
                       f"{len(same)} of {len(nodes)} node files log power_measurement_stop at their "
                       f"power_measurement_start ({', '.join(same[:3])}{', ...' if len(same) > 3 else ''}); "
                       f"{rule.id} takes the latest reading as the stop, so they score", True)  # fmt: skip
        self._switch_facts(files, where, parsed, nodes, switches, switch_energy)
        groups: dict[str, list[str]] = {}
        for n in sorted(nodes, key=mp.natural_key):
            groups.setdefault(_sha(nodes[n]), []).append(n)
        twins = [g for g in groups.values() if len(g) > 1]
        if twins:
            shown = "; ".join(
                " = ".join(g[:4]) + (" = ..." if len(g) > 4 else "") for g in twins[:3]
            )
            self._fact("IMP-006", where, f"{sum(map(len, twins))} of {len(nodes)} node files are "
                       f"byte-identical copies of another ({shown}): one node's power counted as another's", True)  # fmt: skip
        placeholders = sorted({r.key for r in log.records if r.key.startswith("submission_")
                               and isinstance(r.value, str) and "placeholder" in r.value.lower()})  # fmt: skip
        if placeholders:
            self._fact("IMP-007", f"{files.rel}/mllog.txt", f"{', '.join(placeholders)} hold a placeholder, "
                       "not the submitter's value", True)  # fmt: skip
        skipped = log.skipped + sum(p.skipped for p in parsed.values())
        series = [mp.reading_series(parsed[n].records, n) for n in nodes]
        repeated, reordered = sum(s.repeated for s in series), sum(s.reordered for s in series)
        said = [f"{n} {what}" for n, what in (
            (skipped, "lines MLCommons' parser skips"),
            (repeated, "readings at a time already read"),
            (reordered, "readings earlier than the line before them"),
        ) if n]  # fmt: skip
        if said:
            self._fact("IMP-008", where, f"{', '.join(said)} (power.csv keeps each time's first "
                       "reading, in time order; the summarizer's rule reads them as it does)", True)  # fmt: skip

    def _sampling_facts(self, csv_rel, trace, domains, start, stop) -> None:
        bounds, duration = self.rules.mlperf.trust, (stop - start) / 1e9
        rates, gaps, covered, beyond = {}, {}, {}, {}
        for d in domains:
            t = trace.domains[d].t_ns
            span_ns = max(0, min(int(t[-1]), stop) - max(int(t[0]), start))  # read and timed
            # the rate over the part of the run the readings cover (IMP-002 says how much)
            rates[d] = int(((t >= start) & (t <= stop)).sum()) / max(span_ns / 1e9, 1e-9)
            first = max(0, int(t.searchsorted(start, side="right")) - 1)
            window = t[first : int(t.searchsorted(stop, side="left")) + 1]
            gaps[d] = float(np.diff(window).max()) / 1e9 if window.size > 1 else duration
            covered[d] = span_ns / (stop - start)
            beyond[d] = (max(0, start - int(t[0])) + max(0, int(t[-1]) - stop)) / 1e9
        low, wide = min(rates, key=rates.get), max(gaps, key=gaps.get)
        b, sparsest = (
            bounds["IMP-001"],
            f", the sparsest of {len(domains)} nodes" if len(domains) > 1 else "",
        )
        self._fact("IMP-001", csv_rel,
                   f"{rates[low]:.3f} readings a second ({low}{sparsest}) and a longest gap of "
                   f"{gaps[wide]:.1f} s ({wide}) inside the timed window, where read; MLPerf asks at "
                   f"least {b['min_hz']:g} a second, evenly (no gap over {b['max_gap_s']:g} s)",
                   rates[low] < b["min_hz"] or gaps[wide] > b["max_gap_s"])  # fmt: skip
        least = min(covered, key=covered.get)
        self._fact("IMP-002", csv_rel,
                   f"the readings cover {100 * covered[least]:.2f}% of run_start..run_stop ({least}, the "
                   f"least covered) and reach at most {max(beyond.values()):.1f} s beyond it",
                   covered[least] < bounds["IMP-002"]["min_fraction"])  # fmt: skip

    def _switch_facts(self, files, where, parsed, nodes, switches, switch_energy) -> None:
        trust, m = self.rules.mlperf.trust, files.result["metrics"]
        offsets = {}
        for meter in files.result["meters"]:
            offsets.update((meter.get("details") or {}).get("clock_offset_s") or {})
        duration = files.result["timing"]["duration_s"]
        for n in sorted(switches, key=mp.natural_key):
            energy, estimate = switch_energy[n]
            if estimate is not None:
                share = energy / m["energy_total_j"] if m["energy_total_j"] else float("nan")
                self._fact("IMP-005", f"{where}/{n}", f"an estimated switch: {estimate:g} W x time to train "
                           f"= {energy:,.0f} J, {100 * share:.1f}% of the run's energy (MLPerf allows "
                           "interconnects to be estimated)", True, trust["IMP-005"]["estimated"])  # fmt: skip
                continue
            _, watts = mp.readings(parsed[n].records, n)
            if not watts:
                continue
            mean = sum(watts) / len(watts)
            offset = offsets.get(mp.domain_of(n))
            self._fact("IMP-005", f"{where}/{n}",
                       f"a measured switch ({len(watts)} readings, mean {mean:,.0f} W: about "
                       f"{mean * duration:,.0f} J over the run) that the summarizer does not count: it "
                       "reads interconnect_power_est only"
                       + (f"; its clock is {offset / 3600:+.3f} h off the run's (moved onto it in "
                          "power.csv)" if offset else ""), True)  # fmt: skip
        if not switches and len(nodes) > 1:
            self._fact("IMP-005", where, f"no switch file for {len(nodes)} nodes: the interconnect's "
                       "energy is not in the figure", False)  # fmt: skip


def check_duplicate_runs(where: str, runs: list[Run], rules, add) -> None:
    """IMP-006 across the imported runs of one benchmark: two runs with the same log, the same
    power files or the same run_start and run_stop (one run submitted twice)."""
    severity = rules.mlperf.trust["IMP-006"]["severity"]
    for index, what in ((0, "log"), (1, "node files"), (2, "run_start and run_stop")):
        seen: dict = {}
        for run in runs:
            if run.fingerprint is None:
                continue
            key, name = run.fingerprint[index], run.result["imported"]["result_file"]
            if key in seen:
                add("IMP-006", run.rel, f"({name}) has the same {what} as {seen[key]}"
                    f"{', byte for byte' if index < 2 else ''}: one run stands for two", severity)  # fmt: skip
            else:
                seen[key] = name
