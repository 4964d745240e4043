"""Cut tests/fixtures/mlperf/ from checkouts of the Apache-2.0 MLPerf Training results repositories.

    python scripts/mlperf_fixtures.py --v4-0 <training_results_v4.0> --v5-0 <training_results_v5.0>

Only the v4.0 and v5.0 repositories carry a licence (Apache-2.0, LICENSE.md); v4.1 has none, so
nothing of it is cut. Each cut keeps the published files' oddities and says what it removed:

- a result log keeps every line (rank prefixes included) whose key the import, the validator or
  the summarizer reads (CUT_LOG_KEYS), or stays whole (WHOLE_LOGS: MLCommons' compliance checker
  then passes it, and the real summarizer scores the benchmark);
- a node file stays whole, or keeps its first `readings` power_reading lines and every line that
  is not a reading (NODE_READINGS);
- everything else is copied byte for byte. SOURCES.md beside the fixtures lists each file.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mlperf"
TOKEN = ":::MLLOG "
CUT_LOG_KEYS = {
    "submission_benchmark", "submission_org", "submission_division", "submission_status",
    "submission_platform", "seed", "init_start", "init_stop", "run_start", "run_stop",
    "eval_accuracy", "global_batch_size", "cache_clear",
}  # fmt: skip
# (repository, org, system, benchmark, [result names], cut logs?, node readings kept or None)
CUTS = [
    ("v4.0", "smc-ac-power", "8xSMC-H100-SXM-80GB", "ssd",
     ["result_4957-240509201759121706710_2"], True, None),
    ("v4.0", "smc-ac-power", "8xSMC-H100-SXM-80GB", "llama2_70b_lora",
     ["result_5742-240517053836692164828_5", "result_5742-240517053836692164828_9"], True, None),
    ("v4.0", "smc-ac-power", "1xSMC-H100-SXM-80GB", "dlrm_dcnv2",
     ["result_4952-240509201759124491233_08", "result_4952-240509201759124491233_raw_08"], False, None),
    ("v5.0", "Lenovo", "SR780aV3-8xB200_SXM_180GB", "retinanet",
     [f"result_{k}" for k in range(5)], False, 300),
]  # fmt: skip


def cut_log(text: str) -> str:
    kept = []
    for line in text.split("\n"):
        at = line.rfind(TOKEN)
        if at < 0:
            continue
        try:
            key = json.loads(line[at + len(TOKEN) :]).get("key")
        except ValueError:
            continue
        if key in CUT_LOG_KEYS:
            kept.append(line)
    return "\n".join(kept) + "\n"


def cut_node(text: str, readings: int) -> str:
    kept, seen = [], 0
    for line in text.split("\n"):
        if '"power_reading"' in line:
            seen += 1
            if seen > readings:
                continue
        kept.append(line)
    return "\n".join(kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--v4-0", type=Path, required=True)
    parser.add_argument("--v5-0", type=Path, required=True)
    args = parser.parse_args()
    repos = {"v4.0": args.v4_0, "v5.0": args.v5_0}
    if OUT.exists():
        shutil.rmtree(OUT)
    listing = []
    for repo, org, system, bench, names, cut, readings in CUTS:
        src = repos[repo] / org
        dst = OUT / repo / org
        (dst / "systems").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "systems" / f"{system}.json", dst / "systems" / f"{system}.json")
        bsrc, bdst = src / "results" / system / bench, dst / "results" / system / bench
        bdst.mkdir(parents=True, exist_ok=True)
        if (bsrc / "scaling.json").is_file():
            shutil.copyfile(bsrc / "scaling.json", bdst / "scaling.json")
        for name in names:
            log = (bsrc / f"{name}.txt").read_text(encoding="utf-8")
            (bdst / f"{name}.txt").write_text(cut_log(log) if cut else log, encoding="utf-8")
            power = bdst / "power" / name
            power.mkdir(parents=True)
            for f in sorted((bsrc / "power" / name).glob("*.txt")):
                text = f.read_text(encoding="utf-8")
                if readings and f.name.startswith("node_"):
                    text = cut_node(text, readings)
                (power / f.name).write_text(text, encoding="utf-8")
        how = ("logs cut to the keys read" if cut else "logs whole") + (
            f", node files cut to their first {readings} readings"
            if readings
            else ", power files whole"
        )
        listing.append(f"- `{repo}/{org}/results/{system}/{bench}/`: {', '.join(names)} ({how})")
    shutil.copyfile(repos["v4.0"] / "LICENSE.md", OUT / "LICENSE.md")
    (OUT / "SOURCES.md").write_text(
        "# MLPerf Training power results cut for tests\n\n"
        "Cut by `scripts/mlperf_fixtures.py` from mlcommons/training_results_v4.0 (snapshot "
        "6fe9543) and mlcommons/training_results_v5.0 (snapshot 0fdc28f), both under the Apache "
        "License 2.0 (LICENSE.md here, as both repositories carry it). Each system's description "
        "and each benchmark's scaling.json are copied whole.\n\n" + "\n".join(listing) + "\n\n"
        "`expected_summarizer.json` holds MLCommons' result_summarizer figures for these files: "
        "for v4.0 from mlcommons/logging at a9f4839 (the rule v4.0 was scored by), for v5.0 from "
        "mlperf-logging 4.1.68 (PyPI), each written by `scripts/mlperf_reference.py`.\n"
    )


if __name__ == "__main__":
    main()
