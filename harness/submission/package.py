"""`joulebench package` and `joulebench system`: run directories into the submission layout.

<submission>/submission.json
<submission>/systems/<system_id>.json
<submission>/results/<system_id>/<benchmark>/<framework>/run_<k>/{result.json, power.csv, mllog.txt, config.yaml}
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from harness import __version__
from harness.errors import SubmissionError
from harness.results import safe_files
from harness.results.schema import check_result
from harness.results.writer import atomic_write_bytes, atomic_write_json
from harness.submission.validate import RUN_FILES, read_json

SYSTEM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def system_template(name: str | None = None, nodes: int = 1) -> dict:
    """A system description pre-filled from this machine: every field MLCommons'
    system_desc_checker requires (as strings, as it wants them) plus joulebench's power fields.
    Empty strings are for you to fill in; `system_fields_to_fill` lists them."""
    import platform

    import psutil

    from harness.system import cpu_model_name, framework_versions

    accelerator, count, driver, memory = cpu_model_name(), 1, None, ""
    try:
        from harness.meters import nvml as nvml_meter

        pynvml = nvml_meter.load_pynvml()
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        accelerator = nvml_meter.text(pynvml.nvmlDeviceGetName(handle))
        driver = nvml_meter.text(pynvml.nvmlSystemGetDriverVersion())
        memory = f"{pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**30:.0f} GB"
        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no GPU: a CPU-only system, the CPU trains
        count = 1
    frameworks = framework_versions()
    cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 0
    freq = psutil.cpu_freq()
    cpu_only = driver is None
    gpu_field = "N/A" if cpu_only else ""  # a CPU-only system has no accelerator to describe
    return {
        # MLCommons training system description (mlperf-logging system_desc_checker)
        "submitter": "",
        "division": "",
        "status": "",  # one of SYSTEM_STATUSES
        "system_name": name or platform.node(),
        "system_type": "datacenter",
        "number_of_nodes": str(nodes),
        "host_processors_per_node": "1",
        "host_processor_model_name": cpu_model_name(),
        "host_processor_core_count": str(cores),
        "host_processor_vcpu_count": str(psutil.cpu_count() or cores),
        "host_processor_frequency": f"{freq.max:.0f} MHz" if freq and freq.max else "",
        "host_processor_caches": "",
        "host_processor_interconnect": "",
        "host_memory_capacity": f"{psutil.virtual_memory().total / 2**30:.1f} GB",
        "host_storage_type": "",
        "host_storage_capacity": "",
        "host_networking": "",
        "host_networking_topology": "",
        "host_memory_configuration": "",
        "accelerators_per_node": str(count),
        "accelerator_model_name": accelerator,
        "accelerator_host_interconnect": gpu_field,
        "accelerator_frequency": gpu_field,
        "accelerator_on-chip_memories": gpu_field,
        "accelerator_memory_configuration": gpu_field,
        "accelerator_memory_capacity": memory or gpu_field,
        "accelerator_interconnect": gpu_field,
        "accelerator_interconnect_topology": gpu_field,
        "accelerator_driver": driver or "N/A",
        "cooling": "",
        "hw_notes": "CPU-only system: the CPU is the training device." if cpu_only else "",
        "framework": ", ".join(f"{k} {v}" for k, v in frameworks.items() if k in ("torch", "jax")),
        "other_software_stack": f"Python {platform.python_version()}, joulebench {__version__}",
        "operating_system": f"{platform.system()} {platform.release()}",
        "sw_notes": "",
        # joulebench's power fields
        "power_meter_model": "",
        "power_meter_method": "",  # e.g. "NVML energy counter", "wall (PTDaemon)"
        "power_supply_details": "",
        "pue": 1.0,
        "pue_source": "",
    }


SYSTEM_STATUSES = [
    "Available on-premise",
    "Available cloud",
    "Research, Development, or Internal (RDI)",
    "Preview",
]


def system_fields_to_fill(template: dict) -> list[str]:
    """The fields a template leaves empty: the ones only you know."""
    return [k for k, v in template.items() if v in ("", None)]


def package(
    run_dirs: list[Path],
    system_json: Path,
    org: str,
    division: str,
    out: Path,
    ruleset: str = "v1",
    agreement: Path | None = None,
) -> Path:
    if division not in ("closed", "open"):
        raise SubmissionError(
            f"--division {division} is not closed or open.", "pick closed or open."
        )
    if out.exists() and any(out.iterdir()):
        raise SubmissionError(f"{out} exists and is not empty.", "give a new output directory.")
    system_id = system_json.stem
    if not SYSTEM_ID.fullmatch(system_id):
        raise SubmissionError(
            f"system id {system_id!r} (from the file name) has unsafe characters.",
            "name the file with letters, digits, '.', '_' or '-'.",
        )
    try:
        system = read_json(system_json, 1 << 20)  # the safe reader: no link, a regular file
    except (OSError, ValueError) as exc:
        raise SubmissionError(
            f"cannot read {system_json}: {exc}.", "write one with `joulebench system`."
        ) from exc
    if not isinstance(system, dict):
        raise SubmissionError(
            f"{system_json} is not a JSON object.", "write one with `joulebench system`."
        )
    from harness.submission.mlcommons import system_description, write_view
    from harness.submission.ruleset import load_ruleset

    rules = load_ruleset(ruleset)
    runs = [_read_run(Path(run_dir), rules) for run_dir in run_dirs]
    system_description(system, org, division, rules)  # refuse before writing anything
    out.mkdir(parents=True, exist_ok=True)
    counters: dict[tuple[str, str], int] = {}
    numbered = []
    for benchmark, framework, _seed, _run_dir, files in sorted(
        runs, key=lambda r: (r[0], r[1], r[2], str(r[3]))
    ):
        k = counters[(benchmark, framework)] = counters.get((benchmark, framework), 0) + 1
        target = inside(out, "results", system_id, benchmark, framework, f"run_{k}")
        target.mkdir(parents=True)
        for name, data in files.items():  # the bytes read once, through the safe reader
            atomic_write_bytes(target / name, data)
        numbered.append((benchmark, framework, k, target))
    # the MLCommons view beside joulebench's, and the system file in MLCommons' schema
    write_view(out, numbered, system_id, system, org, division, rules)
    if agreement is not None:  # a meter-agreement test (harness/submission/agreement.py)
        from harness.submission.agreement import copy_into

        copy_into(agreement, out)
    atomic_write_json(
        out / "submission.json",
        {
            "schema_version": "1",
            "org": org,
            "division": division,
            "ruleset": ruleset,
            "created_utc": datetime.now(timezone.utc)
            .isoformat(timespec="seconds")
            .replace("+00:00", "Z"),
            "joulebench_version": __version__,
            "systems": [system_id],
        },
    )
    return out


def inside(out: Path, *components: str) -> Path:
    """out/<components>, each component a safe name (safe_files.safe_component): nothing a
    run's files say can make a path leave `out`."""
    try:
        parts = [safe_files.safe_component(c, "a path component") for c in components]
    except safe_files.UnsafeFile as exc:
        raise SubmissionError(f"{exc}.", "package unedited run directories.") from exc
    return out.joinpath(*parts)


def _read_run(run_dir: Path, rules) -> tuple[str, str, int, Path, dict[str, bytes]]:
    """One run directory's files, read through the safe reader (no links, regular files under
    the ruleset's limits), its result.json checked against the schema, and the names that
    become paths in the package checked; one clear line for anything else."""
    limits = {"power.csv": rules.max_trace_bytes, "mllog.txt": rules.max_mllog_bytes}
    files = {}
    for name in RUN_FILES:
        try:
            files[name] = safe_files.read_bytes(
                run_dir / name, limits.get(name, rules.max_json_bytes), run_dir
            )
        except (OSError, ValueError) as exc:
            raise SubmissionError(
                f"{run_dir}/{name} is not packaged: {exc}.", "package finished run directories."
            ) from exc
    try:
        result = safe_files.parse_json(files["result.json"].decode("utf-8"), "result.json")
    except (ValueError, UnicodeDecodeError) as exc:
        raise SubmissionError(
            f"{run_dir}/result.json: {exc}.", "package finished run directories."
        ) from exc
    problems = check_result(result) if isinstance(result, dict) else ["not a JSON object"]
    if problems:
        raise SubmissionError(
            f"{run_dir}/result.json does not match schema 1: {'; '.join(problems[:3])}.",
            "package unedited run directories.",
        )
    try:
        benchmark = safe_files.safe_component(result["benchmark"], "benchmark")
        framework = safe_files.safe_component(result["workload"]["framework"], "framework")
    except safe_files.UnsafeFile as exc:
        raise SubmissionError(f"{run_dir}/result.json: {exc}.", "package unedited runs.") from exc
    seed = result.get("seed", 0)
    return benchmark, framework, seed if isinstance(seed, int) else 0, run_dir, files
