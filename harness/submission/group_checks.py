"""The checks across the runs of one (system, benchmark, framework): distinct runs and seeds
(RUNS-002), what each meter may claim (DIV-002), the closed division's equivalence verdicts
(EQUIV-001), one config but the seed (CFG-002), and the system description against the runs
(SYS-003). A mixin of the Validator."""

from __future__ import annotations

from harness.submission.findings import Run
from harness.submission.ruleset import Ruleset


class GroupChecks:
    """Reports through self.add(rule, file, message) under self.rules."""

    def _check_distinct(self, where: str, runs: list[Run]) -> None:
        """RUNS-002: the runs of one benchmark are different runs with different seeds (a
        run copied five times is one run, and its olympic mean says nothing)."""
        for key, what in (("run_id", "run id"), ("seed", "seed")):
            seen: dict = {}
            for run in runs:
                value = run.result.get(key)
                if value in seen:
                    self.add(
                        "RUNS-002",
                        f"{run.rel}/result.json",
                        f"has the same {what} ({value!r}) as {seen[value]}; the runs of a "
                        "benchmark are distinct runs with distinct seeds.",
                    )
                else:
                    seen[value] = run.rel

    def _check_meter_claims(self, run: Run) -> None:
        """DIV-002: each meter's provenance is what its source can give (ruleset meter_sources):
        NVML measures, a TDP model estimates, a replay simulates, whatever a file says."""
        for m in run.result["meters"]:
            claim = self.rules.meter_sources.get(m["name"])
            if claim is None:
                problem = f"meter source {m['name']!r} is not one joulebench knows"
            elif m["method"] not in claim["methods"]:
                problem = (
                    f"meter {m['name']} does not measure by {m['method']!r} "
                    f"(it uses {', '.join(claim['methods'])})"
                )
            elif m["provenance"] not in _listed(claim["provenance"]):
                problem = (
                    f"meter {m['name']} ({m['method']}) gives "
                    f"{' or '.join(_listed(claim['provenance']))} energy, not {m['provenance']!r}"
                )
            else:
                problem = self._trust_problem(m)
                if problem is None:
                    continue
            self.add(
                "DIV-002", f"{run.rel}/result.json", f"{problem}; provenance follows the meter."
            )

    def _trust_problem(self, meter: dict) -> str | None:
        """A measured meter whose own trust check at open (harness/meters/trust.py) is beyond the
        ruleset's tolerance, or failed, cannot be measured: re-judged from its figures."""
        if meter["provenance"] != "measured":
            return None
        tolerance = self.rules.meter_trust_tolerance
        for device in _trusted_devices(meter.get("details")):
            trust = device["trust"]
            ratio = trust.get("counter_over_power")
            beyond = isinstance(ratio, (int, float)) and abs(ratio) > tolerance
            if trust.get("verdict") == "fail" or beyond:
                return (
                    f"meter {meter['name']} {device.get('domain')}: its counter was "
                    f"{ratio if ratio is not None else trust.get('reason')} against its power "
                    f"at open (tolerance {tolerance}), yet it claims measured"
                )
        return None

    def _check_equivalence(self, run: Run) -> None:
        """A custom implementation claims closed only with a passing `joulebench equivalence`
        verdict about its own class and benchmark, under this ruleset's terms or stricter."""
        framework = run.result["config"].get("framework") or {}
        if framework.get("name") != "custom":
            return
        verdict = (run.result["workload"].get("extra") or {}).get("equivalence")
        rel, rules = f"{run.rel}/result.json", self.rules
        problem = None
        if not isinstance(verdict, dict):
            problem = "records no equivalence verdict"
        elif verdict.get("passed") is not True:
            problem = "records a failed equivalence verdict"
        elif verdict.get("target") != framework.get("target") or verdict.get("benchmark") != (
            run.benchmark
        ):
            problem = "records an equivalence verdict about another class or benchmark"
        elif verdict.get("benchmark_sha256") != _benchmark_hash(run.result["config"]):
            problem = "records an equivalence verdict about another definition of its benchmark"
        else:
            tol = verdict.get("tolerances") or {}
            lax = (
                not isinstance(verdict.get("steps"), int)
                or verdict["steps"] < rules.equivalence_steps
                or not tol.get("initial_eval_loss", 1) <= rules.equivalence_initial_tolerance
                or not tol.get("final_eval_loss", 1) <= rules.equivalence_final_tolerance
            )
            if lax:
                problem = f"records an equivalence verdict laxer than ruleset {rules.id}'s"
            elif failed := _rejudged(verdict, rules):
                problem = f"records a verdict whose own losses fail ruleset {rules.id}: {failed}"
        if problem:
            self.add(
                "EQUIV-001",
                rel,
                f"a custom workload ({framework.get('target')}) in the closed division {problem}; "
                "run `joulebench equivalence` and pass its file as framework.equivalence.",
            )

    def _check_same_config(self, where: str, runs: list[Run]) -> None:
        def stripped(run: Run) -> dict:
            return {
                k: v
                for k, v in run.result["config"].items()
                if k not in self.rules.same_config_except
            }

        if len(runs) > 1:
            reference = stripped(runs[0])
            for run in runs[1:]:
                if stripped(run) != reference:
                    keys = sorted(
                        k
                        for k in set(reference) | set(stripped(run))
                        if reference.get(k) != stripped(run).get(k)
                    )
                    self.add(
                        "CFG-002",
                        f"{run.rel}/result.json",
                        f"config differs from {runs[0].rel} in "
                        f"{', '.join(keys)}; runs of a benchmark may differ only in "
                        f"{', '.join(self.rules.same_config_except)}.",
                    )

    def _check_system_matches(self, system: str, desc: dict, runs: list[Run]) -> None:
        rel = f"systems/{system}.json"
        try:
            declared = int(desc.get("accelerators_per_node")) * int(
                desc.get("number_of_nodes") or 1
            )
        except (TypeError, ValueError):
            self.add("SYS-002", rel, "accelerators_per_node and number_of_nodes must be integers.")
            return
        for run in runs:
            w = run.result["workload"]
            used = w["device_count"]
            if used != declared:
                self.add(
                    "SYS-003", rel, f"declares {declared} accelerators but {run.rel} ran on {used}."
                )
                break
            model = str(desc.get("accelerator_model_name", ""))
            if (
                model.lower() not in w["device_name"].lower()
                and w["device_name"].lower() not in model.lower()
            ):
                self.add(
                    "SYS-003",
                    rel,
                    f"declares accelerator {model!r} but {run.rel} ran on {w['device_name']!r}.",
                )
                break
            dist, imported = run.result.get("distributed"), run.result.get("imported")
            nodes = dist["nnodes"] if dist else imported["nodes"] if imported else 1
            if nodes != int(desc.get("number_of_nodes") or 1):
                self.add(
                    "SYS-003",
                    rel,
                    f"declares {desc.get('number_of_nodes')} node(s) but {run.rel} ran on {nodes}.",
                )
                break


def _benchmark_hash(config: dict) -> str | None:
    """The run's benchmark definition hashed as `joulebench equivalence` hashes it."""
    from harness.equivalence import benchmark_tree_sha256

    bench = config.get("benchmark")
    try:
        return benchmark_tree_sha256(bench) if isinstance(bench, dict) else None
    except Exception:  # noqa: BLE001 - a tree OmegaConf cannot hold is no benchmark
        return None


def _rejudged(verdict: dict, rules: Ruleset) -> str | None:
    """The verdict's recorded losses judged again under the ruleset (never its own word):
    what fails, or None."""
    reference, candidate = verdict.get("reference") or {}, verdict.get("candidate") or {}
    for name, tol in (
        ("initial_eval_loss", rules.equivalence_initial_tolerance),
        ("final_eval_loss", rules.equivalence_final_tolerance),
    ):
        ref, got = reference.get(name), candidate.get(name)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (ref, got))
        if not numbers or not abs(got - ref) <= tol * max(abs(ref), 1e-12):
            return f"{name} {got!r} against the reference's {ref!r} (tolerance {100 * tol:g}%)"
    return None


def _listed(value) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


def _trusted_devices(details) -> list[dict]:
    """The device records with a trust check in a meter's details (any list of dicts)."""
    if not isinstance(details, dict):
        return []
    return [
        d
        for value in details.values()
        if isinstance(value, list)
        for d in value
        if isinstance(d, dict) and isinstance(d.get("trust"), dict)
    ]
