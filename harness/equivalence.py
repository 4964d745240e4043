"""`joulebench equivalence`: may a custom implementation of a shipped benchmark claim closed?

MLPerf's closed division lets a submitter bring their own implementation of a benchmark as long
as it does the same maths. joulebench checks that the way MLPerf's reference convergence points
do, on a small scale: the candidate and the reference adapter start from the benchmark's config
and seed, see the benchmark's data, and must give the same eval loss before training and after
`steps` steps, each within the ruleset's tolerance (configs/ruleset/v1.yaml, `equivalence`). A
changed learning rate, schedule, model or data moves the loss after training; a different
initialisation or kernel order moves it far less than the tolerance.

The verdict is a JSON file. `joulebench run framework=custom framework.target=...
framework.equivalence=<file>` records it in the result (workload.extra.equivalence), and the
validator refuses a closed-division run of a custom workload without a passing one (EQUIV-001).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from harness.errors import ConfigError
from harness.results import safe_files
from harness.results.writer import sha256_text

VERDICT_SCHEMA = "1"


@dataclass
class Losses:
    initial_eval_loss: float
    final_eval_loss: float


def trajectory(workload, steps: int) -> Losses:
    """Eval loss before training and after `steps` optimizer steps."""
    initial = float(workload.evaluate())
    for _ in range(steps):
        workload.train_step(workload.next_batch())
    workload.sync()
    return Losses(initial, float(workload.evaluate()))


def benchmark_sha256(bench) -> str:
    """What the verdict is about: the benchmark's definition, hashed, all but the quality
    target (which changes when a run stops, not what it computes)."""
    return benchmark_tree_sha256(OmegaConf.to_container(OmegaConf.structured(bench)))


def benchmark_tree_sha256(tree: dict) -> str:
    """benchmark_sha256 of a benchmark config as a plain tree (a result.json's
    config.benchmark): how the validator ties a recorded verdict to the run's own benchmark."""
    tree = {k: v for k, v in tree.items() if k != "target"}
    return sha256_text(OmegaConf.to_yaml(OmegaConf.create(tree), sort_keys=True))


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def judge(reference: Losses, candidate: Losses, rules) -> tuple[bool, list[str]]:
    reasons = []
    checks = (
        ("initial_eval_loss", rules.equivalence_initial_tolerance),
        ("final_eval_loss", rules.equivalence_final_tolerance),
    )
    for name, tol in checks:
        ref, got = getattr(reference, name), getattr(candidate, name)
        if _relative(got, ref) > tol:
            reasons.append(
                f"{name} {got:.5g} differs from the reference's {ref:.5g} by "
                f"{100 * _relative(got, ref):.2f}% (tolerance {100 * tol:g}%)"
            )
    return not reasons, reasons


def check_equivalence(cfg, target: str, steps: int | None, ruleset: str = "v1") -> dict[str, Any]:
    """Run the reference adapter and the candidate class side by side; the verdict record."""
    from harness.submission.ruleset import load_ruleset
    from workloads.build import build_workload
    from workloads.custom import CustomWorkload, load_class

    rules = load_ruleset(ruleset)
    steps = rules.equivalence_steps if steps is None else steps
    if steps < rules.equivalence_steps:
        raise ConfigError(
            f"--steps {steps} is fewer than ruleset {ruleset}'s {rules.equivalence_steps}.",
            f"use --steps {rules.equivalence_steps} or more.",
        )
    bench, seed = cfg.benchmark, cfg.seed
    reference_framework = replace(cfg.framework, name="torch", precision="fp32", compile="off")
    candidate_framework = replace(cfg.framework, name="custom", target=target)
    candidate_class = load_class(target)
    reference = trajectory(build_workload(bench, reference_framework, seed), steps)
    candidate = trajectory(
        CustomWorkload(candidate_class(bench, candidate_framework, seed), target), steps
    )
    passed, reasons = judge(reference, candidate, rules)
    return {
        "schema_version": VERDICT_SCHEMA,
        "target": target,
        "benchmark": bench.name,
        "benchmark_version": bench.version,
        "benchmark_sha256": benchmark_sha256(bench),
        "ruleset": ruleset,
        "seed": seed,
        "steps": steps,
        "tolerances": {
            "initial_eval_loss": rules.equivalence_initial_tolerance,
            "final_eval_loss": rules.equivalence_final_tolerance,
        },
        "reference": {"framework": "torch (fp32, eager)", **asdict(reference)},
        "candidate": asdict(candidate),
        "passed": passed,
        "reasons": reasons,
    }


def load_verdict(path: str, target: str, bench) -> dict[str, Any]:
    """The verdict a custom run records; it must be about this class and this benchmark."""
    try:
        verdict = safe_files.read_json(Path(path), 64 << 20)  # no link, bounded, finite
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"framework.equivalence={path} is unreadable ({exc}).",
            "give the file `joulebench equivalence -o` wrote.",
        ) from exc
    expected = {
        "target": target,
        "benchmark": bench.name,
        "benchmark_sha256": benchmark_sha256(bench),
    }
    wrong = [k for k, v in expected.items() if not isinstance(verdict, dict) or verdict.get(k) != v]
    if wrong:
        raise ConfigError(
            f"framework.equivalence={path} is about another {' and '.join(wrong)} than this run.",
            "run `joulebench equivalence` for this class and benchmark config.",
        )
    return verdict


def cmd_equivalence(args) -> int:
    from harness.compose import compose_config
    from harness.results.writer import atomic_write_json

    cfg, _ = compose_config(list(args.overrides))
    verdict = check_equivalence(cfg, args.target, args.steps)
    out = Path(args.output or f"equivalence-{cfg.benchmark.name}.json")
    atomic_write_json(out, verdict)
    ref, cand = verdict["reference"], verdict["candidate"]
    print(
        f"joulebench: {args.target} on {cfg.benchmark.name} (seed {cfg.seed}, {verdict['steps']} "
        f"steps): eval loss {cand['initial_eval_loss']:.4f} -> {cand['final_eval_loss']:.4f}, "
        f"reference {ref['initial_eval_loss']:.4f} -> {ref['final_eval_loss']:.4f}"
    )
    if verdict["passed"]:
        print(f"EQUIVALENT: may claim the closed division; verdict in {out}.")
        return 0
    print(f"NOT EQUIVALENT: {'; '.join(verdict['reasons'])}; verdict in {out}.")
    return 1


def register(sub) -> None:
    p = sub.add_parser(
        "equivalence",
        help="check a custom Workload class against the reference adapter (closed division)",
        description="Run the reference adapter and your class from the same config and seed; "
        "exit 0 when their eval losses agree within the ruleset's tolerances, 1 when not.",
    )
    p.add_argument("--target", required=True, help="your class, package.module:ClassName")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (ruleset minimum)")
    p.add_argument("-o", "--output", help="verdict file (default equivalence-<benchmark>.json)")
    p.add_argument("overrides", nargs="*", help="e.g. benchmark=lm-dense-small seed=1")
    p.set_defaults(func=cmd_equivalence)


def build_with_verdict(cfg):
    """The run's workload; for a custom class with framework.equivalence, the verdict is read
    first (one that is about another class or benchmark stops the run before anything is
    built or written) and recorded in workload.extra.equivalence, which the validator needs
    to accept the class in the closed division."""
    from workloads.build import build_workload

    framework, verdict = cfg.framework, None
    if framework.name == "custom" and framework.equivalence:
        verdict = load_verdict(framework.equivalence, framework.target, cfg.benchmark)
    workload = build_workload(cfg.benchmark, framework, cfg.seed)
    if verdict is not None:
        workload.info.extra["equivalence"] = verdict
    return workload
