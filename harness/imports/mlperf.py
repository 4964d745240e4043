"""`joulebench import mlperf SRC -o OUT --round R`: MLPerf Training power results as a joulebench
submission, without re-running anything.

OUT is a submission in joulebench's layout with the MLCommons view beside it, as `package`
writes one; the view's files are the published ones, byte for byte:

  OUT/submission.json, OUT/systems/<system>.json   (MLPerf's description, plus power fields)
  OUT/results/<system>/<benchmark>/<framework>/run_<k>/{result.json, power.csv, mllog.txt, config.yaml}
  OUT/results/<system>/<benchmark>/result_<X>.txt, scaling.json, power/result_<X>/{node,sw}_*.txt

Each run's energy_total_j is MLCommons' result_summarizer figure for the round, by the rule the
ruleset names for it (configs/ruleset/v1.yaml, mlperf_import); the trace integrated over exactly
run_start..run_stop is metrics.energy_window_j beside it. The meter is `mlperf-import`: measured,
a wall meter, its model undeclared (nothing in MLPerf's files names it). Carbon takes --region and
--pue, which MLPerf's files do not state; without them the defaults are used and labelled.

OUT is built in a hidden folder beside it and renamed into place at the end: a failed or
interrupted import leaves no half-written OUT.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import yaml

from harness import __version__
from harness.errors import SubmissionError
from harness.imports import mlperf_source as source
from harness.imports.mlperf_run import RunParts, build_run
from harness.results.mlperf_power import natural_key
from harness.results.run_dir import SIBLING_FILES
from harness.results.schema import SCHEMA_VERSION, Accelerator, Result, SystemInfo, WorkloadInfo
from harness.results.writer import sha256_text, write_result
from harness.submission.ruleset import load_ruleset

TOOL = "mlperf-training"
FRAMEWORKS = ("pytorch", "jax", "tensorflow", "mxnet", "paddle", "mindspore")
VENDORS = ("NVIDIA", "AMD", "Intel", "Google", "Habana")
DEFAULT_PUE_SOURCE = "default 1.0: MLPerf's system files state no PUE (give --pue)"


def _int(desc: dict, key: str, where: str) -> int:
    try:
        value = int(str(desc.get(key)).strip())
    except ValueError as exc:
        raise SubmissionError(f"{where}: {key} {desc.get(key)!r} is not a whole number.",
                              "import the system description as published.") from exc  # fmt: skip
    if value < 1:
        raise SubmissionError(f"{where}: {key} is {value}.", "import a real system description.")
    return value


def _memory_gb(text) -> float:
    m = re.match(r"\s*([\d.]+)\s*([KMGT]i?B)", str(text), re.I)
    if not m:
        return 0.0
    scale = {"k": 1e-6, "m": 1e-3, "g": 1.0, "t": 1e3}[m.group(2)[0].lower()]
    return float(m.group(1)) * scale


def framework_of(desc: dict) -> str:
    """The framework MLPerf's `framework` field names first (a path component), or undeclared."""
    words = re.findall(r"[a-z]+", str(desc.get("framework", "")).lower())
    return next((w for w in words if w in FRAMEWORKS), "undeclared")


def _driver(stack) -> str | None:
    items = stack if isinstance(stack, list) else [stack]
    for item in items:
        if isinstance(item, dict):
            for key in ("cuda_driver_version", "nvidia_kernel_driver", "driver_version"):
                if isinstance(item.get(key), str):
                    return item[key]
    return None


def system_records(desc: dict, where: str) -> tuple[SystemInfo, WorkloadInfo]:
    nodes = _int(desc, "number_of_nodes", where)
    count = nodes * _int(desc, "accelerators_per_node", where)
    model = str(desc.get("accelerator_model_name", ""))
    vendor = next((v for v in VENDORS if v.lower() in model.lower()), None)
    cores = 0
    with contextlib.suppress(TypeError, ValueError):
        cores = int(desc.get("host_processor_core_count")) * int(
            desc.get("host_processors_per_node")
        )
    framework = str(desc.get("framework", ""))
    system = SystemInfo(
        accelerator=Accelerator(vendor, model, count, _driver(desc.get("other_software_stack"))),
        host_cpu=str(desc.get("host_processor_model_name", "")),
        host_cpu_count=cores,
        host_memory_gb=_memory_gb(desc.get("host_memory_capacity")),
        os=str(desc.get("operating_system", "")),
        python="",  # MLPerf's files do not say
        frameworks={framework_of(desc): framework},
        world_size=count,
    )
    workload = WorkloadInfo(
        framework=framework_of(desc), framework_version=framework, model_kind="undeclared",
        params_total=None, params_active=None, flops_per_token=None, tokens_per_step=None,
        precision="undeclared", compiled=False,
        device_kind="gpu" if vendor in ("NVIDIA", "AMD") else "undeclared",
        device_name=model, device_count=count, peak_flops_per_s=None,
    )  # fmt: skip
    return system, workload


def carbon_config(region: str | None, pue: float | None):
    from harness.carbon.intensity import lookup
    from harness.config import CarbonConfig

    if pue is not None and not pue >= 1.0:
        raise SubmissionError(f"--pue {pue} is below 1.", "PUE is facility over IT energy: >= 1.")
    cfg = CarbonConfig(region=region or "world")
    lookup(cfg.region)  # an unknown region stops here, in one line
    if pue is not None:
        cfg.pue, cfg.pue_source = pue, "--pue (the importer)"
    else:
        cfg.pue_source = DEFAULT_PUE_SOURCE
    return cfg


def _config(round_id, rule, org, system, bench, table, carbon, basis, label, seed) -> dict:
    return {
        "import": {"tool": TOOL, "round": round_id, "rule": rule, "org": org, "system": system,
                   "source": label, "basis": basis},
        "benchmark": {"name": bench, "target": {"metric": table.metric, "threshold": table.threshold,
                                                "direction": table.direction}},
        "carbon": {"region": carbon.region, "pue": carbon.pue, "pue_source": carbon.pue_source},
        "seed": seed,
    }  # fmt: skip


def _result(parts: RunParts, config: dict, config_yaml: str, files: dict, system, workload,
            bench: str, table, carbon_cfg, run_id: str, code) -> Result:  # fmt: skip
    from harness.carbon import compute_carbon

    carbon = compute_carbon(
        parts.metrics.energy_total_j, carbon_cfg, accelerator_model=workload.device_name,
        accelerator_count=workload.device_count, run_hours=parts.timing.duration_s / 3600,
    )  # fmt: skip
    warnings = list(parts.warnings)
    if carbon_cfg.region == "world":
        warnings.append("CO2e uses the world-average grid intensity (IEA 2019): MLPerf's files "
                        "name no grid; give --region for a real figure.")  # fmt: skip
    if carbon_cfg.pue_source == DEFAULT_PUE_SOURCE:
        warnings.append("PUE 1.0 is a default: MLPerf's files state none; give --pue.")
    return Result(
        schema_version=SCHEMA_VERSION, run_id=run_id, status=parts.status, benchmark=bench,
        benchmark_version=f"{TOOL}-{parts.imported.round}", ruleset="v1", seed=parts.seed,
        target_metric=table.metric, target_threshold=table.threshold,
        target_direction=table.direction, config=config, config_sha256=sha256_text(config_yaml),
        code=code, system=system, workload=workload, meters=parts.meters,
        timing=parts.timing, metrics=parts.metrics, windows=[], carbon=carbon, files=files,
        warnings=warnings, imported=parts.imported,
    )  # fmt: skip


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def import_mlperf(src: Path, out: Path, round_id: str, system: str | None = None,
                  benchmark: str | None = None, region: str | None = None,
                  pue: float | None = None, basis: str | None = None,
                  label: str | None = None) -> list[tuple[str, str, int]]:  # fmt: skip
    """Import; returns (system, benchmark, runs) per benchmark imported."""
    rules = load_ruleset("v1")
    rnd = rules.mlperf.round(round_id)
    carbon_cfg = carbon_config(region, pue)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SubmissionError(f"{out} exists and is not an empty folder.", "give a new -o folder.")
    org = source.locate(src, system, benchmark)
    from harness.system import code_version

    code = code_version()  # the importer's: one git look-up for every run
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    tmp.mkdir(parents=True)
    done, owners = [], set()
    try:
        for system_id, bench, folder in org.benchmarks:
            table = rules.mlperf.benchmarks.get(bench)
            if table is None:
                raise SubmissionError(
                    f"benchmark {bench} ({folder}) is not in the ruleset's MLPerf table.",
                    "add it to configs/ruleset/v1.yaml (mlperf_import.benchmarks) from "
                    "mlperf-logging's rules, or import with --benchmark.",
                )
            desc, _ = source.system_description(org, system_id, rules.mlperf)
            owners.add((str(desc.get("submitter", org.org)), str(desc.get("division", ""))))
            sys_info, workload = system_records(desc, f"systems/{system_id}.json")
            framework = workload.framework
            _write(tmp / "systems" / f"{system_id}.json", _system_file(desc, carbon_cfg))
            bench_src = source.read_benchmark(org, system_id, bench, folder, rules.mlperf)
            view = tmp / "results" / system_id / bench
            if bench_src.scaling_text is not None:
                _write(view / "scaling.json", bench_src.scaling_text)
            runs = sorted(bench_src.runs, key=lambda r: natural_key(r.name))
            for k, run in enumerate(runs, 1):
                parts = build_run(bench_src, run, k, rnd, table, basis, label)
                config = _config(round_id, rnd.rule.id, org.org, system_id, bench, table,
                                 carbon_cfg, basis, label, parts.seed)  # fmt: skip
                config_yaml = yaml.safe_dump(config, sort_keys=False)
                run_dir = view / framework / f"run_{k}"
                texts = {
                    "power.csv": parts.power_csv,
                    "mllog.txt": run.log,
                    "config.yaml": config_yaml,
                }
                for name in SIBLING_FILES:
                    _write(run_dir / name, texts[name])
                run_id = sha256_text(f"{TOOL}/{round_id}/{org.org}/{system_id}/{bench}/{run.name}")[
                    :12
                ]
                result = _result(parts, config, config_yaml,
                                 {n: sha256_text(texts[n]) for n in SIBLING_FILES},
                                 sys_info, workload, bench, table, carbon_cfg, run_id, code)  # fmt: skip
                write_result(run_dir, result)
                _write(view / f"{run.name}.txt", run.log)
                for name, text in {**run.nodes, **run.switches}.items():
                    _write(view / "power" / run.name / name, text)
            done.append((system_id, bench, len(runs)))
        if len(owners) > 1:
            raise SubmissionError(f"{src} mixes submitters or divisions: {sorted(owners)}.",
                                  "import one submitter's org folder at a time.")  # fmt: skip
        ((submitter, division),) = owners
        _write(tmp / "submission.json", _submission(submitter, division, org, round_id, label,
                                                    sorted({s for s, _, _ in done})))  # fmt: skip
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return done


def _system_file(desc: dict, carbon_cfg) -> str:
    import json

    out = dict(desc)
    out.setdefault("power_meter_model", "undeclared (MLPerf's power logs do not name it)")
    out.setdefault("power_meter_method", "wall power per node (MLPerf power_reading logs)")
    out.setdefault("pue", carbon_cfg.pue)
    out.setdefault("pue_source", carbon_cfg.pue_source)
    return json.dumps(out, indent=2) + "\n"


def _submission(submitter, division, org, round_id, label, systems) -> str:
    import json

    return json.dumps({
        "schema_version": "1", "org": submitter, "division": division, "ruleset": "v1",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "joulebench_version": __version__, "systems": systems,
        "imported": {"tool": TOOL, "round": round_id, "org_folder": org.org, "source": label},
    }, indent=2) + "\n"  # fmt: skip
