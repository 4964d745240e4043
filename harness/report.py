"""`joulebench report`: plots people would rather look at, and a Markdown summary.

power_over_time.png   system power through each run, eval points marked
loss_vs_energy.png    eval loss against cumulative energy, dense and MoE on one chart
energy_to_target.png  olympic-mean energy to target per benchmark and framework, runs as dots
energy_by_device.png  each run's energy split over the devices (and nodes) that drew it
dense_vs_moe.png      each pair's steps and energy to target, runs as dots, the ratio and why
energy_vs_time.png    energy to train against time to train per system and benchmark, basis marked
summary.md            the score table (with each row's energy basis) and each pair's comparison
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from harness.errors import SubmissionError
from harness.report_summary import summary_markdown
from harness.results.run_dir import run_total_domains
from harness.results.trace import TraceCurve, TraceError
from harness.submission.pairs import compare_pairs, energy_to_target, steps_to_target
from harness.submission.score import grouped, load_results, scores, system_of

COLORS = {"dense": "#1f77b4", "moe": "#d62728"}
REPORT_FILES = (  # what write_report writes, in order
    "power_over_time.png",
    "loss_vs_energy.png",
    "energy_to_target.png",
    "energy_by_device.png",
    "dense_vs_moe.png",
    "energy_vs_time.png",
    "summary.md",
)
MAX_BARS = 80  # energy_by_device draws this many runs at most (the rest are named in summary.md)


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

    panels: dict[tuple[str, str, str], list[dict]] = {}
    for run in results:
        panels.setdefault(
            (run["benchmark"], run["workload"]["framework"], system_of(run)), []
        ).append(run)
    cols = min(3, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False, sharex=False
    )
    left_out, drawn = [], 0
    for ax, ((benchmark, framework, system), runs) in zip(
        axes.flat, sorted(panels.items()), strict=False
    ):
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
        ax.set_title(f"{benchmark} / {framework} on {system} ({len(runs)} runs)", fontsize=9)
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
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (3.6 * rows)))  # room for the title above the panels
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn, left_out


def plot_loss_vs_energy(results: list[dict], path: Path) -> None:
    """Native runs only: an import's evals are its benchmark's own metric (accuracy, AUC, FID),
    not an eval loss."""
    import matplotlib.pyplot as plt

    results = [r for r in results if not r.get("imported")]
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
    if seen:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no joulebench-measured run with evals", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
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

    runs = results[:MAX_BARS]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(runs) + 1.8))
    palette = plt.get_cmap("tab20")
    colors: dict[str, object] = {}
    for y, run in enumerate(runs):
        by_domain, left = run["metrics"]["energy_by_domain_j"], 0.0
        # an import's energy_by_domain_j adds up to its total (an estimated switch included)
        shown = (
            list(by_domain) if run.get("imported") else run_total_domains(run) or sorted(by_domain)
        )
        for domain in shown:
            energy = by_domain.get(domain, 0.0)
            color = colors.setdefault(domain, palette(len(colors) % 20))
            ax.barh(y, energy, left=left, color=color, edgecolor="white", lw=0.5)
            left += energy
    ax.set_yticks(range(len(runs)), [_label(r) for r in runs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("energy over the timed run (J)")
    ax.set_title(
        "Energy by device"
        + (f" (the first {MAX_BARS} of {len(results)} runs)" if len(results) > MAX_BARS else "")
    )
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


def plot_energy_vs_time(score_rows, path: Path) -> None:
    """Energy to train against time to train, one point per score row (its [min, max] as bars),
    coloured by benchmark, shaped by energy basis: the vendors side by side, like with like."""
    import matplotlib.pyplot as plt

    rows = [s for s in score_rows if s.energy_to_target_j and s.time_to_target_s]
    fig, ax = plt.subplots(figsize=(10, 6.5))
    benchmarks = sorted({s.benchmark for s in rows})
    bases = sorted({s.basis for s in rows})
    palette, markers = plt.get_cmap("tab10"), "osD^vP*Xh<>"
    for s in rows:
        color = palette(benchmarks.index(s.benchmark) % 10)
        marker = markers[bases.index(s.basis) % len(markers)]
        t_low, t_high = s.spread.get("time_to_target_s", (s.time_to_target_s,) * 2)
        e_low, e_high = s.spread.get("energy_to_target_j", (s.energy_to_target_j,) * 2)
        ax.errorbar(
            s.time_to_target_s / 60, s.energy_to_target_j / 3.6e6,
            xerr=[[max(0, s.time_to_target_s - t_low) / 60], [max(0, t_high - s.time_to_target_s) / 60]],
            yerr=[[max(0, s.energy_to_target_j - e_low) / 3.6e6], [max(0, e_high - s.energy_to_target_j) / 3.6e6]],
            fmt=marker, color=color, ms=7, capsize=2, lw=0.8,
        )  # fmt: skip
        ax.annotate(s.system[:28], (s.time_to_target_s / 60, s.energy_to_target_j / 3.6e6),
                    fontsize=6, xytext=(4, 3), textcoords="offset points")  # fmt: skip
    if rows:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    handles = [plt.Line2D([], [], color=palette(i % 10), marker="o", ls="", label=b)
               for i, b in enumerate(benchmarks)]  # fmt: skip
    handles += [plt.Line2D([], [], color="black", marker=markers[i % len(markers)], ls="", mfc="none", label=b)
                for i, b in enumerate(bases)]  # fmt: skip
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")
    else:
        ax.text(
            0.5, 0.5, "no run reached its target", ha="center", va="center", transform=ax.transAxes
        )
    ax.set_xlabel("time to train (minutes, log)")
    ax.set_ylabel("energy to train (kWh, log)")
    ax.set_title("Energy against time to train: score per system and benchmark (bars: min-max of "
                 "the kept runs); colour: benchmark, shape: energy basis", fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    plot_energy_vs_time(score_rows, written[5])
    written[6].write_text(summary_markdown(results, score_rows, left_out))
    return written
