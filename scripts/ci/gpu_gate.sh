#!/usr/bin/env bash
# CI regression gate for a GPU runner: run a short benchmark a few times, compare it with the
# stored baseline runs, write a report, and fail with one line per regression.
#
#   scripts/ci/gpu_gate.sh BASELINE_DIR [BENCHMARK] [SEEDS] [TOLERANCE]
#   scripts/ci/gpu_gate.sh results/reference/h100/results lm-dense-small 1,2,3 5%
#
# BASELINE_DIR holds result.json files (a submission, or run directories) measured on the same
# kind of GPU. Outputs go to ci-out/: the candidate runs, report/ and compare.txt.
set -euo pipefail
baseline=${1:?usage: gpu_gate.sh BASELINE_DIR [BENCHMARK] [SEEDS] [TOLERANCE]}
benchmark=${2:-lm-dense-small}
seeds=${3:-1,2,3}
tolerance=${4:-5%}
out=ci-out
if ! compgen -G "$baseline/**/result.json" >/dev/null && ! find "$baseline" -name result.json -print -quit | grep -q .; then
  echo "gpu_gate: no baseline result.json under $baseline; measure baselines first (see README, Reference results)." >&2
  exit 2
fi
rm -rf "$out"
joulebench meters
joulebench run -m "seed=$seeds" "benchmark=$benchmark" meter=auto "output_dir=$out/runs" progress=off
joulebench report "$out/runs" -o "$out/report"
joulebench compare "$baseline" "$out/runs" --tolerance "$tolerance" | tee "$out/compare.txt"
