"""What a run directory holds and the rules every reader of it shares: the file list, the
total-domains rule and the target rule. One statement each, for the runner that writes a run,
the packager that copies it, and the validator, the report and the scores that read it."""

from __future__ import annotations

# The run directory's files: result.json and its siblings, whose hashes it records. One list, for
# the runner that writes them, the packager that copies them and the validator that checks them.
RUN_FILES = ("result.json", "power.csv", "mllog.txt", "config.yaml")
SIBLING_FILES = RUN_FILES[1:]


def total_domains_of(sources: list[tuple[str, list[str]]]) -> list[str]:
    """The domains whose sum is the system's energy, from (role, domains) per meter source: a
    wall meter's domains when there is one (device meters are then its breakdown), else every
    domain. The one statement of the rule, for the live meter and for a result read back."""
    totals = [d for role, domains in sources if role == "total" for d in domains]
    return totals or [d for _, domains in sources for d in domains]


def run_total_domains(result: dict) -> list[str]:
    """A result's total domains: each node's (a multi-process run), else total_domains_of its
    meters."""
    if result.get("distributed"):
        return [x for n in result["distributed"]["nodes"] for x in n["total_domains"]]
    return total_domains_of([(s["role"], s["domains"]) for s in result["meters"]])


def target_met(value: float, threshold: float, direction: str) -> bool:
    """Whether an eval value meets the quality target (the runner's stop, the validator's check)."""
    return value <= threshold if direction == "lower" else value >= threshold


def interpolated_crossing(
    points: list[tuple[float, ...]], threshold: float, direction: str
) -> tuple[tuple[float, ...], bool] | None:
    """Where the eval curve crosses the target, beside MLPerf's first eval that meets it.

    `points` are (eval value, then any quantities: step, time, energy so far) in eval order.
    The first eval that meets the target and the one before it bracket the crossing; every
    quantity is interpolated linearly at the value where the line between them meets the
    threshold. Returns (the quantities there, True), or (the first eval's own, False) when the
    very first eval already meets the target (nothing brackets it), or None when none does."""
    first = next((i for i, p in enumerate(points) if target_met(p[0], threshold, direction)), None)
    if first is None:
        return None
    if first == 0:
        return tuple(points[0][1:]), False
    (v0, *q0), (v1, *q1) = points[first - 1], points[first]
    frac = (v0 - threshold) / (v0 - v1)  # v0 misses, v1 meets: 0 < frac <= 1 either direction
    return tuple(a + frac * (b - a) for a, b in zip(q0, q1, strict=True)), True
