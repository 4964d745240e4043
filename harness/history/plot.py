"""`joulebench history plot`: one PNG per benchmark and metric, commits along the x axis, and a
Markdown summary short enough for $GITHUB_STEP_SUMMARY (1 MiB) and a pull-request comment
(65,536 characters).

In each PNG every series of the benchmark is one line through its commits' medians, with its
runs as dots. A change point is a solid line between two commits, red when the metric got
worse and green when it got better, with its effect; a runner change is a dashed grey line.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import HistoryError
from harness.history.changes import change_line, label
from harness.history.rows import HIGHER_IS_BETTER, UNITS
from harness.results.writer import atomic_write_text

MAX_TICKS = 24  # commit labels along the x axis; the rest are thinned
MAX_SUMMARY_CHARS = 60_000  # a pull-request comment holds 65,536
STATUS = {
    "regression": "❌ regression",
    "inconclusive": "❔ inconclusive",
    "ok": "✅ ok",
    "runner": "🔁 runner change",
}


def _file_name(benchmark: str, metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{benchmark}__{metric}") + ".png"


def _plot(checks: list, path: Path, benchmark: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    commits: list[str] = []
    for check in checks:  # one x axis for every series of the benchmark, oldest commit first
        commits += [p.commit for p in check.points if p.commit not in commits]
    x_of = {c: i for i, c in enumerate(commits)}
    fig, ax = plt.subplots(figsize=(max(7.0, min(18.0, 0.25 * len(commits) + 4)), 4.2))
    for n, check in enumerate(checks):
        color = f"C{n % 10}"
        xs = [x_of[p.commit] for p in check.points]
        ax.plot(
            xs, [p.value for p in check.points], "-", color=color, lw=1.4, label=label(check.key)
        )
        ax.plot(
            [x for x, p in zip(xs, check.points, strict=True) for _ in p.runs],
            [v for p in check.points for v in p.runs],
            ".", color=color, ms=4, alpha=0.5,
        )  # fmt: skip
        for change in check.changes:
            at = xs[change.index] - 0.5
            worse = (change.effect < 0) if HIGHER_IS_BETTER[metric] else (change.effect > 0)
            style = (
                {"color": "0.4", "ls": "--"}
                if change.runner
                else {"color": "#d62728" if worse else "#2ca02c", "ls": "-"}
            )
            ax.axvline(at, lw=1.6, **style)
            ax.annotate(
                f"{100 * change.effect:+.1f}%" + (" runner" if change.runner else ""),
                (at, 0.0), xycoords=("data", "axes fraction"), xytext=(3, 4),
                textcoords="offset points", fontsize=8, color=style["color"],
            )  # fmt: skip
        marked = {c.index for c in check.changes}
        for i in check.runner_changes:
            if i not in marked:
                ax.axvline(xs[i] - 0.5, color="0.6", ls=":", lw=1.0)
    step = max(1, -(-len(commits) // MAX_TICKS))
    ax.set_xticks(range(0, len(commits), step))
    ax.set_xticklabels([c[:8] for c in commits[::step]], rotation=60, fontsize=7, ha="right")
    ax.set_xlabel("commit (oldest left)")
    ax.set_ylabel(f"{metric} ({UNITS[metric]})")
    better = "higher" if HIGHER_IS_BETTER[metric] else "lower"
    ax.set_title(
        f"{benchmark}: {metric} per commit ({better} is better)\n"
        "solid red/green: change points worse/better; dashed grey: runner changes",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)


def summary_markdown(checks: list, tolerance: str, pictures: dict[tuple, str]) -> str:
    lines = [
        f"## joulebench energy history (tolerance {tolerance})",
        "",
        "| verdict | series | metric | commits | newest | why | plot |",
        "|---|---|---|---:|---:|---|---|",
    ]
    order = {"regression": 0, "inconclusive": 1, "runner": 2, "ok": 3}
    ranked = sorted(checks, key=lambda c: (order[c.verdict.status], c.key, c.metric))
    details = ["", "### change points", ""]
    for check in ranked:
        picture = pictures[(check.key[1], check.metric)]
        row = (
            f"| {STATUS[check.verdict.status]} | {label(check.key)} | {check.metric} | "
            f"{len(check.points)} | {check.points[-1].value:.5g} {UNITS[check.metric]} | "
            f"{check.verdict.reason.replace('|', '/')} | [{picture}]({picture}) |"
        )
        details += [f"- `{change_line(check, c)}`" for c in check.changes]
        if sum(map(len, lines)) + len(row) > MAX_SUMMARY_CHARS // 2:
            lines.append(f"| … | {len(ranked) - len(lines) + 4} more series | | | | | |")
            break
        lines.append(row)
    if len(details) == 3:
        details.append("none found.")
    text = "\n".join(lines + details) + "\n"
    if len(text) > MAX_SUMMARY_CHARS:
        text = text[: MAX_SUMMARY_CHARS - 80].rsplit("\n", 1)[0] + "\n\n… (cut to fit a comment)\n"
    return text


def write_plots(checks: list, out: Path, tolerance: str) -> list[Path]:
    if out.exists() and not out.is_dir():
        raise HistoryError(f"-o {out} is a file.", "give a folder for the plots.")
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise HistoryError(
            "history plot needs matplotlib.", 'pip install "joulebench[report]".'
        ) from exc
    out.mkdir(parents=True, exist_ok=True)
    panels: dict[tuple[str, str], list] = {}
    for check in checks:
        panels.setdefault((check.key[1], check.metric), []).append(check)
    written, pictures = [], {}
    for (benchmark, metric), group in sorted(panels.items()):
        path = out / _file_name(benchmark, metric)
        _plot(group, path, benchmark, metric)
        pictures[(benchmark, metric)] = path.name
        written.append(path)
    summary = out / "summary.md"
    atomic_write_text(summary, summary_markdown(checks, tolerance, pictures))
    return [*written, summary]
