"""The report of a study (harness/study.py): speed-up over dense against expert count.

For every run: steps and energy to target both ways (MLPerf's first eval that meets it, and
the interpolated crossing of the eval curve, result.json metrics.target_crossing) and the MoE
layers' dropped-token fraction (the mean of the windows' `dropped_frac`). Each arm is compared
with its reference run of the same model seed and data seed (dense for the MoE arms and the
bound, control-dense for control-moe): speed-up = reference / arm, so above 1 is faster. Means
over seeds are olympic (the ruleset's olympic_trim, harness/submission/score.py `trimmed`).

Writes `summary.md` (the table) and `speedup.png` (the figure reviewers of Switch Transformer
look for) into the study folder, and returns the summary's text.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from harness.errors import ConfigError
from harness.results import safe_files
from harness.results.writer import atomic_write_text
from harness.submission.findings import ACCEPTED_STATUS

MEASURES = ("steps_crossing", "steps_mlperf", "energy_crossing", "energy_mlperf")


def run_facts(result: dict) -> dict:
    """What the study reads from one result.json."""
    m = result.get("metrics") or {}
    first = next((e for e in m.get("evals") or [] if e.get("reached_target")), None)
    crossing = m.get("target_crossing")
    drops = [
        w["stats"]["dropped_frac"]
        for w in result.get("windows") or []
        if "dropped_frac" in (w.get("stats") or {})
    ]
    return {
        "status": result.get("status"),
        "steps_mlperf": first["step"] if first else None,
        "energy_mlperf": m.get("energy_to_target_j"),
        "steps_crossing": crossing["step"] if crossing else None,
        "energy_crossing": crossing["energy_j"] if crossing else None,
        "dropped_mean": statistics.fmean(drops) if drops else None,
        "dropped_max": max(drops) if drops else None,
        "final_eval_loss": m.get("final_eval_loss"),
        "loss_floor": (result.get("workload") or {}).get("loss_floor_nats"),
        # a run that missed the target took more than all it ran: bounds for its speed-up
        "steps_bound": m.get("steps"),
        "energy_bound": m.get("energy_total_j"),
    }


def _arm_value(r: dict, key: str) -> tuple[float | None, bool]:
    """(the run's steps or energy to target, whether it is only a lower bound: a run that
    missed the target counts as needing more than all it ran, as MLPerf ranks it slowest)."""
    if r[key] is not None:
        return r[key], False
    return r["steps_bound" if key.startswith("steps") else "energy_bound"], True


def _olympic(values: list[float]) -> float | None:
    from harness.submission.compare import trimmed

    kept = trimmed(values) if values else []
    return statistics.fmean(kept) if kept else None


def _reference(arm: dict) -> str | None:
    if arm["name"] in ("dense", "control-dense"):
        return None
    return "control-dense" if arm["group"] == "control" else "dense"


def analyse(out: Path) -> dict:
    """Per arm: its runs' facts, speed-ups per seed pair, and olympic means."""
    try:
        study = safe_files.read_json(out / "study.json", 64 << 20)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{out}/study.json is missing or unreadable.", "run the study first."
        ) from exc
    runs: dict[str, dict[tuple, dict]] = {}
    for arm in study["arms"]:
        runs[arm["name"]] = {}
        for seed in study["model_seeds"]:
            for data_seed in study["data_seeds"]:
                path = out / "runs" / arm["name"] / f"m{seed}-d{data_seed}" / "result.json"
                try:
                    facts = run_facts(safe_files.read_json(path, 64 << 20))
                except (OSError, ValueError):
                    continue
                if facts["status"] in ACCEPTED_STATUS:  # finished runs only
                    runs[arm["name"]][(seed, data_seed)] = facts
    arms = []
    for arm in study["arms"]:
        mine, ref = runs[arm["name"]], _reference(arm)
        row = {
            **arm,
            "runs": len(mine),
            "planned": len(study["model_seeds"]) * len(study["data_seeds"]),
        }
        row["reached"] = sum(1 for r in mine.values() if r["steps_mlperf"] is not None)
        for key in ("steps_crossing", "steps_mlperf", "energy_crossing", "energy_mlperf"):
            vals = [r[key] for r in mine.values() if r[key] is not None]
            row[key] = _olympic(vals)
        drops = [r["dropped_mean"] for r in mine.values() if r["dropped_mean"] is not None]
        row["dropped_mean"] = statistics.fmean(drops) if drops else None
        row["dropped_max"] = max(
            (r["dropped_max"] for r in mine.values() if r["dropped_max"] is not None), default=None
        )
        row["speedup"] = {}
        if ref is not None:
            for key in MEASURES:
                pairs, bounds = [], []
                for k, r in mine.items():
                    value, bound = _arm_value(r, key)
                    if k in runs[ref] and value and runs[ref][k][key]:
                        pairs.append(runs[ref][k][key] / value)
                        bounds.append(bound)
                row["speedup"][key] = {
                    "per_seed": pairs,
                    "upper_bound": bounds,  # per seed pair: the arm missed, so at most this
                    "bounded": any(bounds),
                    "olympic": _olympic(pairs),
                    "min": min(pairs, default=None),
                    "max": max(pairs, default=None),
                }
        arms.append(row)
    moe = [a for a in arms if a["group"] == "study" and a["role"] == "moe"]
    means = [
        (a["experts"], a["speedup"]["steps_crossing"]["olympic"]) for a in moe if a["experts"] <= 16
    ]
    values = [v for _, v in means]
    monotone = None not in values and all(a <= b for a, b in zip(values, values[1:], strict=False))
    return {"study": study, "arms": arms, "runs": runs, "monotone_2_to_16": monotone,
            "means_2_to_16": means}  # fmt: skip


def _fmt(x, spec: str = ".0f") -> str:
    return "-" if x is None else format(x, spec)


def _speed(row: dict, key: str) -> str:
    s = row["speedup"].get(key)
    if not s or s["olympic"] is None:
        return "-"
    at_most = "at most " if s["bounded"] else ""
    return f"{at_most}{s['olympic']:.2f} ({s['min']:.2f}-{s['max']:.2f})"


def summary_text(analysis: dict, command: str) -> str:
    study, arms = analysis["study"], analysis["arms"]
    lines = [
        f"# Study {study['name']}: speed-up over dense against expert count",
        "",
        f"`{command}` (spec `{study['spec']}`, meter {study['meter']}); model seeds "
        f"{study['model_seeds']} x data seeds {study['data_seeds']}. Speed-up = the reference "
        "run's steps (or energy) to target over the arm's, for the same model and data seed; "
        "olympic mean over seed pairs (the ruleset's trim), with the range. *Crossing*: where "
        "the eval curve crosses the target, interpolated between the two evals that bracket it; "
        "*MLPerf*: the first eval at or below it. A run that missed the target counts as "
        "needing more than all it ran (MLPerf ranks it slowest), so a speed-up it enters is an "
        "upper bound, marked *at most* (and plotted as a down-pointing triangle).",
        "",
        *(
            [
                "Energy comes from a simulated meter (constant watts x wall time): its speed-up is "
                "a time ratio on whatever machine ran the study, not an energy measurement.",
                "",
            ]
            if study["meter"] == "simulated"
            else []
        ),  # fmt: skip
        "| arm | experts | params (active) | routing | dropped mean (max) | reached | steps to target, crossing | MLPerf | speed-up steps, crossing | speed-up steps, MLPerf | speed-up energy, crossing |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in arms:
        r = a.get("routing") or {}
        routing = (
            f"{r['routing_groups']} x {r['tokens_per_group']} tok, cf {r['capacity_factor_train']:g}, cap {r['capacity']}"
            if r
            else "-"
        )
        drops = (
            "-"
            if a["dropped_mean"] is None
            else f"{100 * a['dropped_mean']:.2f}% ({100 * a['dropped_max']:.2f}%)"
        )
        lines.append(
            f"| {a['name']} | {a['experts'] or '-'} | {a['params_total'] / 1e6:.3f}M ({a['params_active'] / 1e6:.3f}M) "
            f"| {routing} | {drops} | {a['reached']}/{a['planned']} | {_fmt(a['steps_crossing'])} "
            f"| {_fmt(a['steps_mlperf'])} | {_speed(a, 'steps_crossing')} | {_speed(a, 'steps_mlperf')} "
            f"| {_speed(a, 'energy_crossing')} |"
        )
    means = ", ".join(f"{e}: {_fmt(v, '.3f')}" for e, v in analysis["means_2_to_16"])
    verdict = "monotone" if analysis["monotone_2_to_16"] else "NOT monotone"
    lines += [
        "",
        f"Speed-up in steps (crossing, olympic means) from 2 to 16 experts is {verdict}: {means}.",
        "",
        "## Every run",
        "",
        "| arm | model seed | data seed | status | steps to target, MLPerf | crossing | energy to target, MLPerf (J) | crossing (J) | dropped mean (max window) | final eval loss (floor) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, by_seed in analysis["runs"].items():
        for (seed, data_seed), r in sorted(by_seed.items()):
            drops = (
                "-"
                if r["dropped_mean"] is None
                else f"{100 * r['dropped_mean']:.2f}% ({100 * r['dropped_max']:.1f}%)"
            )
            lines.append(
                f"| {name} | {seed} | {data_seed} | {r['status']} | {_fmt(r['steps_mlperf'])} "
                f"| {_fmt(r['steps_crossing'], '.1f')} | {_fmt(r['energy_mlperf'])} | {_fmt(r['energy_crossing'])} "
                f"| {drops} | {_fmt(r['final_eval_loss'], '.3f')} ({_fmt(r['loss_floor'], '.3f')}) |"
            )
    return "\n".join(lines + [""])


def plot(analysis: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = analysis["arms"]
    moe = [a for a in arms if a["group"] == "study" and a["role"] == "moe"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, key, title in zip(
        axes,
        ("steps_crossing", "energy_crossing"),
        ("steps to target", "energy to target"),
        strict=True,
    ):
        xs = [a["experts"] for a in moe]
        for a in moe:
            per, bound = a["speedup"][key]["per_seed"], a["speedup"][key]["upper_bound"]
            for i, (value, at_most) in enumerate(zip(per, bound, strict=True)):
                x = a["experts"] * (1 + 0.25 * (i - (len(per) - 1) / 2) / max(1, len(per)))
                first = a is moe[0] and i == 0
                ax.scatter([x], [value], s=16 if at_most else 14, marker="v" if at_most else "o",
                           color="tab:red" if at_most else "tab:blue", alpha=0.6,
                           label="MoE, one seed pair" if first else None)  # fmt: skip
        means = [a["speedup"][key]["olympic"] for a in moe]
        ax.plot(xs, means, "-", color="tab:blue", label="MoE, olympic mean")
        for a, mean in zip(moe, means, strict=True):
            hollow = a["speedup"][key]["bounded"]
            ax.scatter([a["experts"]], [mean], s=50, color="white" if hollow else "tab:blue",
                       edgecolors="tab:blue", zorder=3)  # fmt: skip
        if any(a["speedup"][key]["bounded"] for a in moe):
            ax.scatter([], [], marker="v", color="tab:red",
                       label="missed the target: at most (hollow mean: includes these)")  # fmt: skip
        for a in arms:
            s = a["speedup"].get(key) or {}
            if a["group"] == "bound" and s.get("olympic") is not None:
                ax.axhline(s["olympic"], color="tab:green", ls="--",
                           label=f"dense with {a['params_total'] / 1e6:.2f}M params (all active)")  # fmt: skip
            if a["group"] == "control" and s.get("olympic") is not None:
                ax.scatter(
                    [a["experts"]] * len(s["per_seed"]),
                    s["per_seed"],
                    marker="^",
                    s=18,
                    color="tab:orange",
                    alpha=0.5,
                )
                ax.scatter([a["experts"]], [s["olympic"]], marker="^", s=70, color="tab:orange",
                           label=f"control corpus, {a['experts']} experts")  # fmt: skip
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("experts (FLOP-matched to dense)")
        simulated = key.startswith("energy") and analysis["study"]["meter"] == "simulated"
        note = "\n(simulated meter: constant watts x wall time)" if simulated else ""
        ax.set_ylabel(f"speed-up over dense, {title}{note}")
        ax.set_title(f"{title} (interpolated crossing)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{analysis['study']['name']}: dense vs Switch MoE")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, command: str | None = None) -> str:
    analysis = analyse(out)
    command = command or f"joulebench study {analysis['study']['spec']} --out {out}"
    text = summary_text(analysis, command)
    atomic_write_text(out / "summary.md", text + "\n![speed-up over dense](speedup.png)\n")
    plot(analysis, out / "speedup.png")
    return text
