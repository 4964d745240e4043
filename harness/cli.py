"""`joulebench` command line. Each subcommand is one small function; errors become one line.

Exit codes (the README's table): 0 success, 1 a run that did not succeed (target not reached,
meter error; for a sweep, any run), an invalid submission or a regression, 2 a usage or config
error, 3 a missing meter or workload, 4 an inconclusive comparison (noise over the tolerance),
130 a run stopped by SIGINT/SIGTERM (its result says aborted).
"""

from __future__ import annotations

import argparse
import os
import sys

from harness import __version__
from harness.errors import JoulebenchError


def _summary(outcome) -> str:
    r = outcome.result
    m, c = r.metrics, r.carbon
    sources = "; ".join(
        f"{s.provenance}: {s.name} ({s.method}) on {', '.join(s.domains)}" for s in r.meters
    )
    lines = [
        f"joulebench: {r.benchmark} / {r.workload.framework} seed={r.seed} -> {outcome.run_dir}",
        f"  status            {r.status}",
    ]
    if m is not None:
        eps = m.energy_per_step
        lines.append(f"  steps             {m.steps} (+{r.timing.warmup_steps} warm-up, untimed)")
        if eps:
            lines.append(
                f"  energy per step   {eps.mean_j:.4g} J (mean of {eps.windows} windows of "
                f"{eps.steps_per_window} steps, cv {100 * eps.cv:.1f}%"
                + (
                    f", tick-limited: {eps.window_ticks_median:.1f} counter ticks a window)"
                    if eps.tick_limited
                    else ")"
                )
            )
        if m.reached_target:
            lines.append(
                f"  energy to target  {m.energy_to_target_j:.4g} J in {r.timing.time_to_target_s:.3g} s "
                f"({r.target_metric} {'<=' if r.target_direction == 'lower' else '>='} "
                f"{r.target_threshold:g})"
            )
        else:
            last = f"{m.final_eval_loss:.4f}" if m.final_eval_loss is not None else "none"
            lines.append(
                f"  energy to target  not reached (target {r.target_metric} {r.target_threshold:g}, "
                f"last eval {last})"
            )
        lines.append(
            f"  energy total      {m.energy_total_j:.4g} J over {r.timing.duration_s:.3g} s, "
            f"avg {m.avg_power_w or 0:.1f} W"
        )
        if m.mfu is not None:
            lines.append(
                f"  throughput        {m.throughput_tokens_per_s:.4g} tokens/s, MFU {100 * m.mfu:.1f}%"
            )
    if c is not None:
        lb = c.location_based
        lines.append(
            f"  CO2e              {lb.kg_co2e:.3g} kg location-based ({lb.region}, "
            f"{lb.intensity_g_per_kwh:g} g/kWh, {lb.dataset}; PUE {c.pue:g})"
        )
        if c.market_based:
            lines.append(
                f"                    {c.market_based.kg_co2e:.3g} kg market-based ({c.market_based.method})"
            )
        if c.time_resolved:
            lines.append(
                f"                    {c.time_resolved.kg_co2e:.3g} kg time-resolved "
                f"({c.time_resolved.mean_intensity_g_per_kwh:.1f} g/kWh over the run)"
            )
        if c.embodied:
            lines.append(
                f"  embodied CO2e     {c.embodied.kg_co2e:.3g} kg (amortised, reported separately)"
            )
    lines.append(f"  energy source     {sources}")
    for w in r.warnings:
        lines.append(f"  warning           {w}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.cluster import hydra_overrides
    from harness.compose import compose_config, expand_sweeps, to_yaml
    from harness.errors import ConfigError

    cluster = hydra_overrides(args.overrides)
    if cluster:  # a Hydra launcher (SLURM): check every job here, then hand the sweep to Hydra
        plain = [o for o in args.overrides if o not in cluster]
        run_dir = [o for o in cluster if o.lstrip("+~").startswith(("hydra.run.", "hydra.job."))]
        if run_dir:  # Hydra's own run folder: joulebench never writes there, multirun ignores it
            raise ConfigError(
                f"{' '.join(run_dir)} sets Hydra's own run folder, which joulebench does not use.",
                "set joulebench's: run_dir=<folder> for one run, output_dir=<folder> for a sweep.",
            )
        jobs = expand_sweeps(plain)
        composed = [compose_config(job) for job in jobs]
        if args.print_config:
            for _obj, dict_cfg in composed:
                print(to_yaml(dict_cfg))
            return 0
        if not args.multirun:
            raise ConfigError(
                f"{' '.join(cluster)} configures Hydra's launcher, which runs sweeps.",
                f"add -m: `joulebench run -m {' '.join(args.overrides)}`.",
            )
        from harness.cluster import run_with_hydra

        return run_with_hydra(args.overrides, len(jobs), composed[0][0].output_dir)
    jobs = expand_sweeps(args.overrides)
    if len(jobs) > 1 and not args.multirun:
        raise ConfigError(
            f"the overrides describe {len(jobs)} runs (a sweep) but -m was not given.",
            f"run `joulebench run -m {' '.join(args.overrides)}`.",
        )
    composed = [compose_config(job) for job in jobs]  # check every job before running any
    if args.print_config:
        for _obj, dict_cfg in composed:
            print(to_yaml(dict_cfg))
        return 0
    from harness.launch import inside_launch, spawn_torchrun

    if not inside_launch() and any(obj.launcher.name == "torchrun" for obj, _ in composed):
        worst = 0
        for i, (obj, _) in enumerate(composed):
            code = spawn_torchrun(obj.launcher, jobs[i])
            if code == 130:
                return 130
            worst = max(worst, code)
        return worst
    from harness.runner import run_benchmark

    worst = 0
    for i, (obj, dict_cfg) in enumerate(composed):
        if len(composed) > 1:
            print(
                f"joulebench: job {i + 1}/{len(composed)}: {' '.join(jobs[i]) or '(defaults)'}",
                flush=True,
            )
        outcome = run_benchmark(obj, dict_cfg)
        if outcome.result is not None:  # rank 0 (or the only process) reports
            print(_summary(outcome), flush=True)
        if outcome.status == "aborted":
            return 130
        if outcome.status != "success":
            worst = 1
    return worst


def cmd_meters(args: argparse.Namespace) -> int:
    """What this machine can measure: every source, whether it is available, and why."""
    from harness.compose import compose_config
    from harness.meters.factory import build_sources, survey

    cfg, _ = compose_config(list(args.overrides))
    rows = survey(cfg.meter)
    width = max(len(kind.name) for kind, _, _ in rows)
    print(f"{'source'.ljust(width)}  available  what / why")
    for kind, ok, why in rows:
        print(f"{kind.name.ljust(width)}  {'yes' if ok else 'no ':<9}  {kind.summary}; {why}")
    sources = build_sources(cfg.meter) if cfg.meter.source == "auto" else []
    for source in sources:
        d = source.describe()
        print(
            f"meter=auto uses {d.name}: {d.provenance}, {d.method}, role {d.role}, domains {', '.join(d.domains)}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="joulebench", description="Energy benchmark harness for ML training."
    )
    parser.add_argument("--version", action="version", version=f"joulebench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="compose a config with Hydra overrides and run the benchmark",
        description="Run a benchmark. Overrides are Hydra syntax: key=value, group=option.",
    )
    run.add_argument(
        "-m", "--multirun", action="store_true", help="sweep: seed=1,2,3 gives three runs"
    )
    run.add_argument(
        "--print-config", action="store_true", help="print the composed config and exit"
    )
    run.add_argument(
        "overrides", nargs="*", help="e.g. benchmark=lm-dense-tiny meter=simulated meter.watts=100"
    )
    run.set_defaults(func=cmd_run)
    meters = sub.add_parser(
        "meters",
        help="list the power sources this machine offers",
        description="Print every meter source, whether it works here, and why not.",
    )
    meters.add_argument(
        "overrides", nargs="*", help="meter overrides, e.g. meter.ptdaemon.host=10.0.0.2"
    )
    meters.set_defaults(func=cmd_meters)
    from harness.carbon.cli import register as register_carbon

    register_carbon(sub)
    from harness.submission.cli import register as register_submission

    register_submission(sub)
    from harness.data.prepare import register as register_data

    register_data(sub)
    from harness.equivalence import register as register_equivalence

    register_equivalence(sub)
    from harness.study import register as register_study

    register_study(sub)
    from harness.imports.cli import register as register_imports

    register_imports(sub)
    from harness.history.cli import register as register_history

    register_history(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from harness.launch import report_exit

    try:
        return report_exit(args.func(args))
    except JoulebenchError as exc:
        print(f"joulebench: {exc.one_line()}", file=sys.stderr)
        return report_exit(exc.exit_code)
    except KeyboardInterrupt:
        print("joulebench: interrupted.", file=sys.stderr)
        return report_exit(130)
    except (
        BrokenPipeError
    ):  # the reader went away (piped into head): stop quietly, like a pipe tool
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        from workloads.process_group import lost_peer

        if not lost_peer(exc):
            raise  # a bug: the traceback is for us
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        print(
            f"joulebench: rank {os.environ.get('RANK', '?')} lost its peers ({first}); "
            "the rank that failed first says why above.",
            file=sys.stderr,
        )
        return report_exit(1, finished=False)


if __name__ == "__main__":
    sys.exit(main())
