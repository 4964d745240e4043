"""`joulebench report`: plots people would rather look at, and a Markdown summary.

power_over_time.png   system power through each run, eval points marked
loss_vs_energy.png    eval loss against cumulative energy, dense and MoE on one chart
energy_to_target.png  olympic-mean energy to target per benchmark and framework, runs as dots
energy_by_device.png  each run's energy split over the devices (and nodes) that drew it
dense_vs_moe.png      each pair's steps and energy to target, runs as dots, the ratio and why
summary.md            the score table and each dense/MoE pair's comparison
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness.errors import SubmissionError
from harness.results.run_dir import run_total_domains
from harness.results.trace import TraceCurve, TraceError
from harness.submission.pairs import compare_pairs, energy_to_target, steps_to_target
from harness.submission.score import grouped, load_results, pooling_notes, scores

COLORS = {"dense": "#1f77b4", "moe": "#d62728"}
REPORT_FILES = (  # what write_report writes, in order
    "power_over_time.png",
    "loss_vs_energy.png",
    "energy_to_target.png",
    "energy_by_device.png",
    "dense_vs_moe.png",
    "summary.md",
)


def _system_power(run: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(seconds since run_start, summed watts of the total domains) from the run's trace."""
    path = Path(run["_path"]) / "power.csv"
    try:  # the safe, bounded reader: a link, FIFO or oversized trace is not drawn
        trace = TraceCurve.read(path)
    except (TraceError, OSError):
        return None
    totals = run_total_domains(run) or list(trace.domains)
    start = run["timing"]["run_start_ns"]
    stop = run["timing"]["run_stop_ns"] or start
    grid = np.unique(np.concatenate([trace.domains[d].t_ns for d in totals if d in trace.domains]))
    grid = grid[(grid >= start) & (grid <= stop)]
    if grid.size < 2:
        return None
    watts = np.zeros(grid.size)
    for d in totals:
        tr = trace.domains[d]
        if np.isnan(tr.watts).all():  # counter only: power from its derivative
            rate = np.gradient(tr.joules, tr.t_ns / 1e9)
            watts += np.interp(grid, tr.t_ns, rate)
        else:
            ok = ~np.isnan(tr.watts)
            watts += np.interp(grid, tr.t_ns[ok], tr.watts[ok])
    return (grid - start) / 1e9, watts


def _label(run: dict) -> str:
    ranks = (run.get("distributed") or {}).get("world_size")
    where = f" / {ranks} ranks" if ranks else ""
    return f"{run['benchmark']} / {run['workload']['framework']} / seed {run['seed']}{where}"


def plot_power(results: list[dict], path: Path) -> tuple[int, list[str]]:
    """Every run's power, one panel per benchmark and framework (small multiples), so no run is
    hidden; returns the runs drawn and a line for each that could not be (no readable trace)."""
    import matplotlib.pyplot as plt

    panels: dict[tuple[str, str], list[dict]] = {}
    for run in results:
        panels.setdefault((run["benchmark"], run["workload"]["framework"]), []).append(run)
    cols = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False, sharex=False
    )
    left_out, drawn = [], 0
    for ax, ((benchmark, framework), runs) in zip(axes.flat, sorted(panels.items()), strict=False):
        for run in runs:
            series = _system_power(run)
            if series is None:
                left_out.append(f"{_label(run)}: no readable power trace, not drawn")
                continue
            drawn += 1
            t, w = series
            (line,) = ax.plot(t, w, lw=1.0, label=f"seed {run['seed']}")
            evals = run["metrics"]["evals"]
            if evals:
                te = np.array([e["t_s"] for e in evals])
                ax.plot(te, np.interp(te, t, w), "o", color=line.get_color(), ms=3)
        ax.set_title(f"{benchmark} / {framework} ({len(runs)} runs)", fontsize=9)
        ax.set_xlabel("time since run_start (s)", fontsize=8)
        ax.set_ylabel("system power (W)", fontsize=8)
        ax.grid(alpha=0.3)
        if len(runs) <= 10:
            ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    title = f"Power during training: all {drawn} runs drawn (dots: evals)"
    if left_out:
        title += f"; {len(left_out)} without a readable trace left out"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn, left_out


def plot_loss_vs_energy(results: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    seen = set()
    for run in results:
        evals = run["metrics"]["evals"]
        if not evals:
            continue
        kind = run["workload"]["model_kind"]
        key = (run["benchmark"], run["workload"]["framework"])
        label = f"{key[0]} / {key[1]}" if key not in seen else None
        seen.add(key)
        style = "-" if run["workload"]["framework"] == "torch" else "--"
        ax.plot(
            [e["energy_j"] / 1e3 for e in evals],
            [e["eval_loss"] for e in evals],
            style,
            marker=".",
            color=COLORS.get(kind, "gray"),
            alpha=0.8,
            label=label,
        )
    thresholds = sorted({r["target_threshold"] for r in results})
    for th in thresholds:
        ax.axhline(th, color="black", lw=0.8, ls=":")
        ax.annotate(f"target {th:g}", (ax.get_xlim()[1], th), ha="right", va="bottom", fontsize=8)
    floors = sorted(
        {
            r["workload"].get("loss_floor_nats")
            for r in results
            if r["workload"].get("loss_floor_nats")
        }
    )
    for fl in floors[:2]:
        ax.axhline(fl, color="green", lw=0.8, ls="-.")
        ax.annotate(
            f"loss floor {fl:.3f}",
            (ax.get_xlim()[1], fl),
            ha="right",
            va="top",
            fontsize=8,
            color="green",
        )
    ax.set_xlabel("cumulative energy since run_start (kJ)")
    ax.set_ylabel("eval loss (nats/token)")
    ax.set_title(
        "Quality against energy: dense (blue) vs Switch MoE (red); solid torch, dashed JAX"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_energy_to_target(results: list[dict], score_rows, path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = [s for s in score_rows if s.energy_to_target_j is not None]
    kinds = {  # the model's declared kind, never the benchmark's name
        r["benchmark"]: ((r.get("config") or {}).get("benchmark") or {})
        .get("model", {})
        .get("kind")
        for r in results
    }
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(rows) + 2), 4.8))
    for i, s in enumerate(rows):
        kind = "moe" if kinds.get(s.benchmark) == "moe" else "dense"
        ax.bar(i, s.energy_to_target_j / 1e3, color=COLORS[kind], alpha=0.7)
        spread = np.array(s.energy_to_target_spread_j) / 1e3
        ax.plot(np.full(spread.size, i) + np.linspace(-0.15, 0.15, spread.size), spread, "k.", ms=6)
    ax.set_xticks(
        range(len(rows)),
        [
            f"{s.benchmark}\n{s.framework}" + (f"\n{s.variant[:30]}" if s.variant else "")
            for s in rows
        ],
        fontsize=8,
    )
    ax.set_ylabel("energy to target (kJ)")
    ax.set_title("Energy to target: olympic mean (bars) and each run (dots)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_energy_by_device(results: list[dict], path: Path) -> None:
    """One bar per run (every run), split into the domains its total adds up (per GPU, per
    node's wall meter...): on a multi-GPU or multi-node run, an imbalance shows at a glance."""
    import matplotlib.pyplot as plt

    runs = results
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(runs) + 1.8))
    palette = plt.get_cmap("tab20")
    colors: dict[str, object] = {}
    for y, run in enumerate(runs):
        by_domain, left = run["metrics"]["energy_by_domain_j"], 0.0
        for domain in run_total_domains(run) or sorted(by_domain):
            energy = by_domain.get(domain, 0.0)
            color = colors.setdefault(domain, palette(len(colors) % 20))
            ax.barh(y, energy, left=left, color=color, edgecolor="white", lw=0.5)
            left += energy
    ax.set_yticks(range(len(runs)), [_label(r) for r in runs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("energy over the timed run (J)")
    ax.set_title("Energy by device")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax.legend(
        handles,
        list(colors),
        fontsize=7,
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        ncol=max(1, len(colors) // 16),
    )
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_markdown(results: list[dict], score_rows, left_out: list[str] = ()) -> str:
    lines = [
        "# joulebench report",
        "",
        "Means over the runs the time ranking keeps (MLPerf: drop the fastest and the slowest "
        "of five or more), with [min, max] over the same runs.",
        "",
        "| system | benchmark | framework | runs | converged | energy to target (J) | time (s) "
        "| J/step | tokens/J | kgCO2e |",
        "|---|---|---|---|---|---|---|---|---|---|",
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
            f"{with_spread(s, 'tokens_per_joule', ',.0f')} | {with_spread(s, 'kg_co2e', '.3g')} |"
        )
    notes = pooling_notes(results)
    if notes or left_out:
        lines += ["", *[f"- {n}" for n in (*notes, *left_out)]]
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
    ]
    return "\n".join(lines)


def plot_pairs(results: list[dict], path: Path) -> None:
    """Per pair: steps to target and energy to target, dense beside MoE (bars: olympic means;
    dots: the runs that reached it), titled with the ratio and its reading."""
    import matplotlib.pyplot as plt

    pairs = compare_pairs(results)
    groups = grouped(results)
    rows = max(1, len(pairs))
    fig, axes = plt.subplots(rows, 2, figsize=(11, 3.6 * rows), squeeze=False)
    if not pairs:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][0].text(0.5, 0.5, "no dense/MoE pair in these runs", ha="center", va="center")
    for (ax_steps, ax_energy), p in zip(axes, pairs, strict=False):
        sides = [
            (p.dense, "dense", p.dense_steps, p.dense_energy_j),
            (p.moe, "moe", p.moe_steps, p.moe_energy_j),
        ]
        for ax, pick, mean_index, label in (
            (ax_steps, steps_to_target, 2, "steps to target"),
            (ax_energy, energy_to_target, 3, "energy to target (J)"),
        ):
            for x, side in enumerate(sides):
                runs = groups.get((p.system, side[0], p.framework, p.variant), [])
                values = [v for v in map(pick, runs) if math.isfinite(v)]
                if side[mean_index] is not None:
                    ax.bar(x, side[mean_index], color=COLORS[side[1]], alpha=0.35, width=0.6)
                ax.scatter([x] * len(values), values, color=COLORS[side[1]], zorder=3, s=18)
            ax.set_xticks([0, 1], [p.dense, p.moe])
            ax.set_ylabel(label)
            ax.grid(axis="y", alpha=0.3)
        ax_steps.set_title(
            f"{p.system} / {p.framework}: steps {p.steps_ratio or float('nan'):.2f}x", fontsize=9
        )
        ax_energy.set_title(
            f"energy {p.energy_ratio or float('nan'):.2f}x; per step {p.step_cost_ratio or float('nan'):.2f}x",
            fontsize=9,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(paths: list[Path], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    results = load_results(paths)
    if not results:
        raise SubmissionError(
            f"no result.json under {', '.join(map(str, paths))}.", "give runs or a submission."
        )
    results = [
        r
        for r in results
        if r["metrics"] is not None and not math.isnan(r["metrics"]["energy_total_j"])
    ]
    out.mkdir(parents=True, exist_ok=True)
    score_rows = scores(results)
    written = [out / name for name in REPORT_FILES]
    _, left_out = plot_power(results, written[0])
    plot_loss_vs_energy(results, written[1])
    plot_energy_to_target(results, score_rows, written[2])
    plot_energy_by_device(results, written[3])
    plot_pairs(results, written[4])
    written[5].write_text(summary_markdown(results, score_rows, left_out))
    return written
