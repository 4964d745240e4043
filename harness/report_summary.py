"""summary.md of `joulebench report`: the score table with each row's energy basis, the imported
results as MLCommons' summarizer scores them beside their traces, and each dense/MoE pair."""

from __future__ import annotations

from harness.submission.pairs import compare_pairs
from harness.submission.score import basis_note, pooling_notes, system_of


def summary_markdown(results: list[dict], score_rows, left_out: list[str] = ()) -> str:
    lines = [
        "# joulebench report",
        "",
        "Means over the runs the time ranking keeps (MLPerf: drop the fastest and the slowest "
        "of five or more), with [min, max] over the same runs.",
        "",
        "| system | benchmark | framework | runs | converged | energy to target (J) | time (s) "
        "| J/step | tokens/J | kgCO2e | energy basis |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    def with_spread(s, name, spec):
        low, high = s.spread.get(name, (None, None))
        value = getattr(s, name)
        return f(value, spec) + (f" [{f(low, spec)}, {f(high, spec)}]" if low is not None else "")

    for s in score_rows:
        variant = f" ({s.variant})" if s.variant else ""
        lines.append(
            f"| {s.system} | {s.benchmark}{variant} | {s.framework} | "
            f"{len(s.kept_seeds)} of {s.runs} kept | {s.converged}/{s.runs} | "
            f"{with_spread(s, 'energy_to_target_j', ',.1f')} | "
            f"{with_spread(s, 'time_to_target_s', '.2f')} | "
            f"{with_spread(s, 'energy_per_step_j', '.4g')} | "
            f"{with_spread(s, 'tokens_per_joule', ',.0f')} | {with_spread(s, 'kg_co2e', '.3g')} | "
            f"{s.basis} |"
        )
    notes = pooling_notes(results) + [n for n in [basis_note(score_rows)] if n]
    if notes or left_out:
        lines += ["", *[f"- {n}" for n in (*notes, *left_out)]]
    lines += imported_table(results, score_rows)
    pairs = compare_pairs(results)
    if pairs:
        lines += [
            "",
            "## Dense vs MoE at the same target",
            "",
            "Olympic means over seeds; the MoE/dense ratio of energy to target per seed: olympic "
            "mean [min, max] over n. Energy ratio = steps ratio x per-step cost ratio.",
            "",
            "| system | pair | framework | steps to target dense / MoE | energy to target (J) "
            "dense / MoE | MoE / dense energy | reading |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in pairs:
            spread = (
                f"{f(p.ratio_olympic, '.3f')} [{f(p.ratio_min, '.3f')}, {f(p.ratio_max, '.3f')}] "
                f"n={len(p.seed_ratios)}{'' if p.seed_matched else ' (unmatched seeds)'}"
            )
            lines.append(
                f"| {p.system} | {p.dense} vs {p.moe}{f' ({p.variant})' if p.variant else ''} "
                f"| {p.framework} | "
                f"{f(p.dense_steps, '.0f')} / {f(p.moe_steps, '.0f')} "
                f"({f(p.steps_ratio, '.2f')}x) | {f(p.dense_energy_j, ',.1f')} / "
                f"{f(p.moe_energy_j, ',.1f')} | {spread} | {p.reading} |"
            )
    provenance = sorted({m["provenance"] for r in results for m in r["meters"]})
    lines += [
        "",
        f"Energy provenance in these runs: {', '.join(provenance)}.",
        "",
        "![power](power_over_time.png)",
        "",
        "![loss vs energy](loss_vs_energy.png)",
        "",
        "![energy to target](energy_to_target.png)",
        "",
        "![energy by device](energy_by_device.png)",
        "",
        "![dense vs moe](dense_vs_moe.png)",
        "",
        "![energy vs time](energy_vs_time.png)",
        "",
    ]
    return "\n".join(lines)


def imported_table(results: list[dict], score_rows) -> list[str]:
    """The imported benchmarks' scores as MLCommons' summarizer gives them, with what the trace
    says over exactly the runs beside them, and the carbon basis each row's CO2e is on."""
    rows = [s for s in score_rows if s.energy_window_j is not None]
    if not rows:
        return []
    carbon = {}
    for r in results:
        if r.get("imported"):
            c = r.get("carbon") or {}
            lb = c.get("location_based") or {}
            carbon[(system_of(r), r["benchmark"])] = f"{lb.get('region')}, PUE {c.get('pue'):g}"
    out = [
        "",
        "## Imported results (MLCommons' result summarizer, each round's rule)",
        "",
        "Energy to train is the summarizer's score: the mean over the runs its time ranking keeps, "
        "times the scaling factor. The trace column integrates the same runs' power.csv over exactly "
        "run_start..run_stop (as measured, before conversion_eff), scaled alike.",
        "",
        "| system | benchmark | basis | runs kept | energy to train (J) | trace over the runs (J) "
        "| trace / summarizer | time to train (s) | scaling | kgCO2e | carbon basis |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        e, w = s.energy_to_target_j, s.energy_window_j
        ratio = f"{w / e:.4f}" if e else "-"
        out.append(
            f"| {s.system} | {s.benchmark} | {s.basis} | {len(s.kept_seeds)} of {s.runs} | "
            f"{'-' if e is None else f'{e:,.0f}'} | {w:,.0f} | {ratio} | "
            f"{'-' if s.time_to_target_s is None else f'{s.time_to_target_s:,.1f}'} | "
            f"{s.scaling_factor:.6g} | {'-' if s.kg_co2e is None else f'{s.kg_co2e:.4g}'} | "
            f"{carbon.get((s.system, s.benchmark), '-')} |"
        )
    return out
