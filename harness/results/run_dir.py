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
