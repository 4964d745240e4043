#!/usr/bin/env bash
# The whole GPU campaign (issue 22) as one call of at most 8 minutes, for a lent H200/H100
# (the device tool) or any CUDA machine. Run from the repository root:
#
#   bash scripts/device_wheels.sh                    # here, once: .whl/ (hydra-core, omegaconf, antlr4)
#   bash scripts/gpu_check.sh --print-plan           # the steps, their budgets, the device call
#   bash scripts/gpu_check.sh                        # on the GPU machine (OUT=... for the outputs)
#   JB_DEVICE=cpu bash scripts/gpu_check.sh          # the CPU rehearsal: tiny benchmarks, fake NVML
#
# Steps run in priority order, each under `timeout -s INT` with its own limit, skipped when too
# little of the budget (JB_BUDGET_S, 470 s on a GPU) is left. Each step appends a row to
# steps.tsv (name, exit code, seconds) and saves its output as soon as it ends: run directories
# live in $JB_WORK and are archived after every step, because the device tool returns at most 8
# files from $OUT: steps.tsv, gpu_check.log, probe.json, meter_bench.json, summary.json,
# gpu.tar.gz (bench/, runs/) and reference.tar.gz (the packaged pair, its report). The script
# exits 1 if any step failed or was skipped, 2 when it cannot start.
#
# The rehearsal (JB_DEVICE=cpu) runs every step on tiny benchmarks against the fake NVIDIA H200
# of tests/rehearsal_nvml.py (an autospec of the real pynvml) and writes the same files.
# JB_FAKE_NVML_FAULT=<step>:<hang|field_error|unknown_uuid>,... breaks the fake in named steps;
# JB_LIMIT_<step>=<seconds> overrides one step's limit; JB_TIME_SCALE=N stretches every limit of the
# rehearsal (a loaded CPU is slow, not broken).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
DEVICE=${JB_DEVICE:-gpu}
SCALE=1
OUT=${OUT:-$REPO/gpu-out}
WORK=${JB_WORK:-/tmp/joulebench-gpu-check}
WHEELS=(hydra_core-1.3.8-py3-none-any.whl "omegaconf-2.3.*-py3-none-any.whl" antlr4_python3_runtime-4.9.3-py3-none-any.whl)

# name            gpu_s  cpu_s  min_s  (budget on a GPU, in the rehearsal, least worth starting)
STEPS=(
  "nvidia_smi       10     10     2"
  "probe            40     60    15"
  "meters           15     30     5"
  "gpu_tests        60     60    25"
  "jax_tiny_moe     25     90    15"
  "torch_loop       20     40    10"
  "meter_bench      70     90    30"
  "torchrun         35     90    20"
  "reference_pair  170    300    90"
  "torch_dense_medium 40   60    25"
  "torch_moe_medium 45     60    25"
  "jax_dense_medium 40     90    25"
)
RESERVE_S=12  # kept for the summary and the archives

if [ "$DEVICE" = cpu ]; then
  # JB_TIME_SCALE stretches every limit of the rehearsal: a CPU test that other work slows
  # down must not fail on a timeout that no GPU step would meet (the hang still hits its own)
  SCALE=${JB_TIME_SCALE:-1}
  BUDGET_S=${JB_BUDGET_S:-$((1200 * SCALE))}
  SMALL_DENSE=lm-dense-tiny SMALL_MOE=lm-moe-tiny MEDIUM_DENSE=lm-dense-tiny MEDIUM_MOE=lm-moe-tiny
  PAIR_ARGS=(benchmark.max_steps=70 benchmark.eval_every_steps=10)
  PROBE_ARGS=(--tick-seconds 1 --source-seconds 1.5)  # the fake ticks every 0.1 s
  BENCH_STEPS=20 METER_PAIRS=3 METER_STEPS=20 TINY_STEPS=50 TORCHRUN_STEPS=30
else
  BUDGET_S=${JB_BUDGET_S:-470}
  SMALL_DENSE=lm-dense-small SMALL_MOE=lm-moe-small MEDIUM_DENSE=lm-dense-medium MEDIUM_MOE=lm-moe-medium
  PAIR_ARGS=()
  PROBE_ARGS=()
  BENCH_STEPS=60 METER_PAIRS=7 METER_STEPS=400 TINY_STEPS=400 TORCHRUN_STEPS=300
fi

print_plan() {
  echo "joulebench GPU campaign: device=$DEVICE, budget ${BUDGET_S}s (+${RESERVE_S}s reserve)"
  printf '%-20s %6s %6s %6s\n' step gpu_s cpu_s min_s
  for row in "${STEPS[@]}"; do printf '%-20s %6s %6s %6s\n' $row; done
  echo "wheels (.whl/, made by scripts/device_wheels.sh): ${WHEELS[*]}"
  echo 'device call: run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=500), then give_back'
}
[ "${1:-}" = "--print-plan" ] && { print_plan; exit 0; }
STEP_MODE=0; [ "${1:-}" = "--step" ] && STEP_MODE=1

if [ $STEP_MODE = 0 ]; then
mkdir -p "$OUT" "$WORK" || { echo "gpu_check: cannot create $OUT or $WORK" >&2; exit 2; }
rm -rf "${WORK:?}"/* "$OUT"/steps.tsv "$OUT"/gpu_check.log
export PYTHONUNBUFFERED=1 PYTHONPATH="$REPO" XLA_PYTHON_CLIENT_PREALLOCATE=false
if ! python3 -c "import hydra, omegaconf" 2>/dev/null; then
  if ! compgen -G ".whl/*.whl" >/dev/null; then
    echo "gpu_check: hydra-core is not importable and .whl/ is missing: run 'bash scripts/device_wheels.sh' here and carry .whl in the device call." >&2
    exit 2
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_check: installing .whl/*.whl failed; rebuild them with scripts/device_wheels.sh." >&2; exit 2; }
  export PYTHONPATH="/tmp/site:$REPO"
  python3 -c "from harness.compose import compose_config; compose_config([])" \
    || { echo "gpu_check: Hydra does not compose the config with these wheels; rebuild them with scripts/device_wheels.sh." >&2; exit 2; }
fi
if [ "$DEVICE" = cpu ]; then
  export JB_FAKE_NVML=1 PYTHONPATH="$REPO/tests/rehearsal:$PYTHONPATH"
  export JB_PROBE_UUID=$(python3 -c "from tests.rehearsal_nvml import UUID; print(UUID)")
fi

LOG="$OUT/gpu_check.log"
T0=$(date +%s)
printf 'step\texit\tseconds\tlimit_s\n' > "$OUT/steps.tsv"
{ date -u +"gpu_check: start %Y-%m-%dT%H:%M:%SZ, device=$DEVICE, budget ${BUDGET_S}s"; git log -1 --format='commit %H %s' 2>/dev/null; } >> "$LOG"
FAILED=0
fi

step_cmd() {
  local W=$WORK
  case "$1" in
    nvidia_smi)
      if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,power.limit,power.default_limit,clocks.sm,clocks.mem,clocks.max.sm,persistence_mode,compute_mode,ecc.mode.current,temperature.gpu --format=csv
      else
        echo "no nvidia-smi here (the rehearsal's GPU is the fake NVML)"
      fi ;;
    probe) python3 scripts/nvml_probe.py --out "$W/gpu/probe.json" "${PROBE_ARGS[@]}" ;;
    meters) python3 -m harness.cli meters ;;
    gpu_tests) python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider ;;
    meter_bench)
      python3 scripts/meter_bench.py --benchmark "$SMALL_DENSE" --meter nvml --pairs "$METER_PAIRS" \
        --steps "$METER_STEPS" --out "$W/gpu" ;;
    reference_pair)
      python3 scripts/gpu_reference_pair.py --out "$W/reference" --dense "$SMALL_DENSE" --moe "$SMALL_MOE" \
        --deadline-s "$((${JB_STEP_LIMIT:-300} - 5))" "${PAIR_ARGS[@]}" ;;
    torch_dense_medium) bench torch-dense-medium "$MEDIUM_DENSE" 0.45 ;;
    torch_moe_medium) bench torch-moe-medium "$MEDIUM_MOE" 0.35 ;;
    jax_dense_medium) bench jax-dense-medium "$MEDIUM_DENSE" 0 framework=jax ;;
    jax_tiny_moe)  # JAX on the GPU, metered: a fixed number of steps, the target not required
      python3 -m harness.cli run framework=jax benchmark=lm-moe-tiny meter=nvml progress=off \
        benchmark.max_steps="$TINY_STEPS" run_dir="$W/gpu/runs/jax-tiny-moe"
      python3 scripts/run_status.py "$W/gpu/runs/jax-tiny-moe" --missed-target-ok ;;
    torch_loop)  # a plain loop under harness.api.Measurement: it must reach its target
      python3 -c "from examples.torch_loop import train; print('torch_loop with NVML:', train(run_dir='$W/gpu/runs/torch-loop', meter='nvml', progress='off'))"
      python3 scripts/run_status.py "$W/gpu/runs/torch-loop" ;;
    torchrun)  # one rank under torchrun, a fixed number of steps (no target: threshold 0)
      python3 -m harness.cli run benchmark="$SMALL_DENSE" meter=nvml launcher=torchrun launcher.nproc_per_node=1 \
        benchmark.max_steps="$TORCHRUN_STEPS" benchmark.target.threshold=0 progress=off run_dir="$W/gpu/runs/torchrun"
      python3 scripts/run_status.py "$W/gpu/runs/torchrun" --missed-target-ok ;;
    *) echo "gpu_check: unknown step $1" >&2; return 2 ;;
  esac
}

bench() {  # name benchmark profile_below [overrides...]
  local name=$1 benchmark=$2 below=$3; shift 3
  local profile=(); [ "$below" != 0 ] && profile=(--profile-below "$below")
  python3 scripts/gpu_bench_torch.py --benchmarks "$benchmark" --steps "$BENCH_STEPS" \
    --out "$WORK/gpu/bench/$name" "${profile[@]}" meter=nvml "$@"
}

save_outputs() {  # after every step: what a crash or a hang must not lose
  [ -f "$WORK/gpu/probe.json" ] && cp "$WORK/gpu/probe.json" "$OUT/probe.json"
  [ -f "$WORK/gpu/meter_bench.json" ] && cp "$WORK/gpu/meter_bench.json" "$OUT/meter_bench.json"
  [ -d "$WORK/gpu" ] && tar czf "$OUT/gpu.tar.gz.tmp" -C "$WORK" gpu && mv "$OUT/gpu.tar.gz.tmp" "$OUT/gpu.tar.gz"
  [ -d "$WORK/reference" ] && tar czf "$OUT/reference.tar.gz.tmp" -C "$WORK" reference \
    && mv "$OUT/reference.tar.gz.tmp" "$OUT/reference.tar.gz"
  return 0
}

# one step, run by the loop below under its timeout (the configuration above is recomputed)
[ $STEP_MODE = 1 ] && { step_cmd "$2"; exit $?; }

mkdir -p "$WORK/gpu"
for row in "${STEPS[@]}"; do
  read -r name gpu_s cpu_s min_s <<<"$row"
  budget=$gpu_s; [ "$DEVICE" = cpu ] && budget=$((cpu_s * SCALE))
  override="JB_LIMIT_$name"; [ -n "${!override:-}" ] && budget=${!override}
  left=$((BUDGET_S - RESERVE_S - ($(date +%s) - T0)))
  limit=$((budget < left ? budget : left))
  if [ "$limit" -lt "$min_s" ]; then
    printf '%s\tskipped\t0\t%s\n' "$name" "$limit" >> "$OUT/steps.tsv"
    echo "== $name: skipped, ${left}s of the budget left (needs ${min_s}s)" >> "$LOG"
    FAILED=1
    continue
  fi
  echo "== $name (limit ${limit}s, $(($(date +%s) - T0))s into the budget)" >> "$LOG"
  start=$(date +%s.%N)
  JB_STEP=$name JB_STEP_LIMIT=$limit timeout -s INT -k 5 "$limit" bash "$REPO/scripts/gpu_check.sh" --step "$name" >> "$LOG" 2>&1 </dev/null
  rc=$?
  seconds=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$limit" >> "$OUT/steps.tsv"
  echo "== $name: exit $rc after ${seconds}s" >> "$LOG"
  [ "$rc" -ne 0 ] && FAILED=1
  save_outputs
done

python3 scripts/gpu_summary.py --gpu "$WORK/gpu" --reference "$WORK/reference" --out "$WORK/gpu/summary.json" \
  --relative-to "$WORK" >> "$LOG" 2>&1 || FAILED=1
cp "$WORK/gpu/summary.json" "$OUT/summary.json" 2>/dev/null
save_outputs
echo "gpu_check: done in $(($(date +%s) - T0))s, $([ $FAILED = 0 ] && echo 'every step passed' || echo 'a step failed or was skipped')" >> "$LOG"
column -t -s $'\t' "$OUT/steps.tsv" 2>/dev/null || cat "$OUT/steps.tsv"
exit $FAILED
