"""The energy and carbon checks of one run (ENERGY-001..003, CO2-001..002): every joule the result
reports recomputed from the trace over exactly its window, and the CO2e arithmetic. A mixin of
RunChecks."""

from __future__ import annotations

from harness.metrics import EdgeEnergy
from harness.results.run_dir import run_total_domains
from harness.results.trace import TraceCurve
from harness.submission.findings import RunFiles, close_enough


def trace_energy_j(result: dict, trace: TraceCurve) -> float:
    """The energy the trace gives over exactly run_start..run_stop, summed over the run's total
    domains: derived once per run, before any check, for the checks that compare against it."""
    start, stop = result["timing"]["run_start_ns"], result["timing"]["run_stop_ns"]
    totals = run_total_domains(result) or list(trace.domains)
    return EdgeEnergy(trace.energy_at, [start, stop], totals).between(start, stop)


class EnergyChecks:
    """Reports through self.add(rule, file, message) under self.rules."""

    def _check_energy(self, files: RunFiles) -> None:
        result, trace = files.result, files.whole_trace
        rel, tol, m = f"{files.rel}/result.json", self.rules.energy_tolerance, result["metrics"]
        if trace is None or m is None:
            return
        totals = run_total_domains(result) or list(trace.domains)
        start, stop = result["timing"]["run_start_ns"], result["timing"]["run_stop_ns"]
        target = next((e for e in m["evals"] if e["reached_target"]), None)
        target_ns = start + int(round(target["t_s"] * 1e9)) if target is not None else start
        times = [start, stop, target_ns]
        times += [t for w in result["windows"] for t in (w["t_start_ns"], w["t_end_ns"])]
        edges = EdgeEnergy(trace.energy_at, times, totals)
        total = edges.between

        recomputed = files.run.energy_j  # trace_energy_j, derived before the checks
        if result.get("imported"):
            self._check_imported_energy(files, recomputed)
            return
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

    def _check_imported_energy(self, files: RunFiles, window_j: float) -> None:
        """An import's energy_total_j is another tool's figure (MLC-001 re-derives it from the
        published files); what joulebench derived beside it must follow from the trace and
        from it: energy_window_j is the trace over the run, energy to target is the whole run
        (MLPerf times training from run_start to run_stop), carbon costs energy_total_j."""
        result, rel, tol = files.result, f"{files.rel}/result.json", self.rules.energy_tolerance
        m = result["metrics"]
        if not close_enough(m["energy_window_j"], window_j, tol):
            self.add(
                "ENERGY-001",
                rel,
                f"energy_window_j {m['energy_window_j']!r} J but the trace gives {window_j:.6g} J "
                "over run_start..run_stop.",
            )
        if m["reached_target"] and not close_enough(
            m["energy_to_target_j"], m["energy_total_j"], 1e-12
        ):
            self.add(
                "ENERGY-002",
                rel,
                "energy_to_target_j differs from energy_total_j: an MLPerf run's energy to "
                "train is its whole run_start..run_stop.",
            )
        c = result["carbon"]
        if c and not close_enough(c["it_energy_kwh"] * 3.6e6, m["energy_total_j"], tol):
            self.add("ENERGY-001", rel, "carbon.it_energy_kwh does not match energy_total_j.")

    def _check_carbon(self, files: RunFiles) -> None:
        c, rel, tol = files.result["carbon"], f"{files.rel}/result.json", self.rules.co2e_tolerance
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
