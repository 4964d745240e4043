"""The trace checks of one run (TRACE-001..008): format, timestamps, coverage, rate, gaps, and
the counter against itself and its own power column. A mixin of RunChecks."""

from __future__ import annotations

import math

import numpy as np

from harness.meters.counter import power_integral_j
from harness.results.trace import TraceCurve, TraceError
from harness.submission.findings import RunFiles


class TraceChecks:
    """Reports through self.add(rule, file, message) under self.rules, from self.root."""

    def _read_trace(self, files: RunFiles) -> None:
        """power.csv read into `files.trace` (TRACE-001, TRACE-008, SUB-006 when it cannot be),
        with the domains whose timestamps go backwards or that do not cover the timed window
        in `files.broken_domains` (TRACE-002, TRACE-005). Runs before every run check."""
        rel, result = f"{files.rel}/power.csv", files.result
        path = files.folder / "power.csv"
        if not path.is_file():
            return
        if path.stat().st_size > self.rules.max_trace_bytes:
            self.add(
                "SUB-006", rel, f"is over the ruleset's {self.rules.max_trace_bytes}-byte limit."
            )
            return
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
            return
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
            return
        timing = result["timing"]
        start, stop = timing["run_start_ns"], timing["run_stop_ns"]
        if stop is None:
            return
        slack = int(self.rules.coverage_slack_s * 1e9)
        expected = {d for m in result["meters"] for d in m["domains"]}
        if set(trace.domains) != expected:
            self.add(
                "TRACE-001",
                rel,
                f"domains {sorted(trace.domains)} differ from the meters' {sorted(expected)}.",
            )
            return
        files.trace = trace
        coverage_is_fact = self._trace_rules(result).coverage_is_fact
        for domain, tr in trace.domains.items():
            t = tr.t_ns
            if (t.size > 1) and (t[1:] <= t[:-1]).any():
                self.add("TRACE-002", rel, f"{domain}: timestamps go backwards or repeat.")
                files.broken_domains.add(domain)
            elif not coverage_is_fact and (t[0] > start + slack or t[-1] < stop - slack):
                self.add(
                    "TRACE-005",
                    rel,
                    f"{domain}: the trace spans {(t[-1] - t[0]) / 1e9:.2f} s and does not "
                    "cover run_start..run_stop; keep the meter running for the whole timed window.",
                )
                files.broken_domains.add(domain)
        return

    def _trace_rules(self, result: dict):
        """The thresholds this run's trace is held to: its meter source's own, if the ruleset
        gives one (trace.by_source: a published MLPerf result's), else the ruleset's."""
        return self.rules.trace_for([m["name"] for m in result["meters"]])

    def _check_trace(self, files: RunFiles) -> None:
        """Each sound domain's sampling (TRACE-003, TRACE-004) and counter (TRACE-006, -007)."""
        trace, rel = files.trace, f"{files.rel}/power.csv"
        if trace is None:
            return
        limits = self._trace_rules(files.result)
        start, stop = files.result["timing"]["run_start_ns"], files.result["timing"]["run_stop_ns"]
        for domain, tr in trace.domains.items():
            if domain in files.broken_domains:
                continue
            t = tr.t_ns
            first = max(0, int(t.searchsorted(start, side="right")) - 1)
            last = int(t.searchsorted(stop, side="left"))
            window = t[first : last + 1]
            gap_s = float((window[1:] - window[:-1]).max()) / 1e9 if window.size > 1 else math.inf
            if gap_s > limits.max_gap_s:
                self.add(
                    "TRACE-004",
                    rel,
                    f"{domain}: a {gap_s:.2f} s gap between samples inside the timed window "
                    f"(limit {limits.max_gap_s:g} s).",
                )
            duration_s = (stop - start) / 1e9
            inside = int(((t >= start) & (t <= stop)).sum())
            if duration_s > 0 and inside / duration_s < limits.min_sample_hz:
                self.add(
                    "TRACE-003",
                    rel,
                    f"{domain}: {inside / duration_s:.2f} samples/s inside the timed window, "
                    f"below {limits.min_sample_hz:g}.",
                )
            if tr.counter:
                self._check_counter(rel, domain, trace, start, stop)

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
        # over the part of the timed window the domain was read in: all of it, unless coverage
        # is a fact of the source (an import) rather than a requirement (TRACE-005)
        start, stop = max(start, int(tr.t_ns[0])), min(stop, int(tr.t_ns[-1]))
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
