#!/usr/bin/env bash
# One GPU session's whole check, for the lent H100/H200 (device tool) or any CUDA box.
# Writes everything under $OUT (default gpu-out/): at most a few files, as the device tool
# returns 8 files at most. Run from the repository root:
#
#   bash scripts/gpu_check.sh                      # all checks, ~15 minutes on an H100
#   STEPS=100 REPEATS=3 bash scripts/gpu_check.sh  # shorter
#
# The device image lacks hydra-core, omegaconf and antlr4: download their wheels here first
# (see the device tool's README) into .whl/ (git-ignored) and carry .whl; this script installs
# them into /tmp/site when .whl/ exists.
set -uo pipefail
OUT=${OUT:-gpu-out}
STEPS=${STEPS:-200}
REPEATS=${REPEATS:-5}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site:$PWD"
fi
log="$OUT/gpu_check.log"
{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,driver_version,power.limit,clocks.sm,clocks.mem --format=csv
  python3 -m harness.cli meters
  python3 -m pytest -q -m gpu tests/test_gpu.py
  python3 scripts/meter_bench.py --repeats "$REPEATS" --steps "$STEPS" --out "$OUT"
  python3 scripts/gpu_bench_torch.py --steps "$STEPS" --out "$OUT/bench-torch"
  python3 scripts/gpu_bench_torch.py --steps "$STEPS" --out "$OUT/bench-jax" framework=jax
  # issue 18: harness.api.Measurement around a plain CUDA loop, metered by NVML (UUID match, sync)
  python3 -c "from examples.torch_loop import train; print('api on cuda, nvml:', train(run_dir='$OUT/bench-torch/api-nvml', meter='nvml', progress='off'))"
  # issue 8: one rank under torchrun must equal the plain run within noise
  for mode in plain torchrun; do
    extra=(); [ "$mode" = torchrun ] && extra=(launcher=torchrun launcher.nproc_per_node=1)
    python3 -m harness.cli run benchmark=lm-dense-small meter=nvml benchmark.max_steps="$STEPS" \
      benchmark.target.threshold=0 run_dir="$OUT/bench-torch/launch-$mode" progress=off "${extra[@]}"
  done
  python3 - "$OUT/bench-torch" <<'PY'
import json, sys, pathlib
root = pathlib.Path(sys.argv[1])
for mode in ("plain", "torchrun"):
    r = json.loads((root / f"launch-{mode}" / "result.json").read_text())
    m = r["metrics"]
    print(f"launch {mode:9s} tokens/s {m['throughput_tokens_per_s']:.4g} "
          f"J/step {m['energy_per_step']['mean_j']:.4g} (cv {m['energy_per_step']['cv']:.3f})")
PY
} 2>&1 | tee "$log"
# run directories travel as one archive (the device tool returns at most 8 files)
tar czf "$OUT/runs.tar.gz" -C "$OUT" bench-torch bench-jax 2>/dev/null || true
cp "$OUT"/bench-torch/bench_torch.md "$OUT/bench_torch.md" 2>/dev/null || true
cp "$OUT"/bench-jax/bench_torch.md "$OUT/bench_jax.md" 2>/dev/null || true
rm -rf "$OUT/bench-torch" "$OUT/bench-jax"
