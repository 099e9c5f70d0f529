#!/usr/bin/env bash
# DP Explorer's CUDA check (issue 11 §3): one script that installs nothing and prints what the GPU path does.
#
#   bash bench/gpu_check.sh [--quick]
#
# 1. the device: nvidia-smi and what torch sees;
# 2. the step benchmark (bench/bench_step_time.py): ms per logical step, non-private vs DP modes, and ratios;
# 3. a digits epsilon = 3 run through the CLI, timed, on the GPU and on the CPU (ratio);
# 4. with 2+ GPUs: the same run as ONE training on 2 GPUs (Opacus DPDDP under torchrun, --nproc 2), timed,
#    with its epsilon checked against the one-GPU run.
# Without a GPU it says "no GPU" and runs the CPU parts in their short form (--quick is implied), so it also
# passes on a CPU-only machine. Exit status: 0 when every part that ran succeeded, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1
FAILED=0
OUT=$(mktemp -d)

section() { printf '\n== %s ==\n' "$1"; }
now() { date +%s.%N; }

# cli_run NAME ARGS...: one `python -m dpcore train ... --json` run; saves its JSON, prints one line.
cli_run() {
  local name=$1
  shift
  local start end
  start=$(now)
  if ! "$PY" -m dpcore train "$@" --json >"$OUT/$name.json" 2>"$OUT/$name.err"; then
    echo "$name: FAILED: $(tail -n 3 "$OUT/$name.err" | tr '\n' ' ')"
    FAILED=1
    return 1
  fi
  end=$(now)
  "$PY" - "$OUT/$name.json" "$name" "$start" "$end" <<'EOF'
import json, sys
path, name, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
s = json.load(open(path))["summary"]
print(f"{name}: epsilon {s['final_epsilon']:.4f}, sigma {s['noise_multiplier']:.4f}, {s['steps']} steps, "
      f"test acc {s['test_accuracy']:.3f}, training {s['seconds']:.2f} s = {s['ms_per_step']:.2f} ms/step "
      f"(set-up and per-epoch evaluation included), whole command {end - start:.1f} s, device {s['device']}")
EOF
}

# field NAME KEY: a number from a saved run's summary ("" when the run is missing).
field() {
  [[ -s "$OUT/$1.json" ]] || return 0
  "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["summary"][sys.argv[2]])' "$OUT/$1.json" "$2"
}

ratio() { "$PY" -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{a / b:.2f}x")' "$1" "$2"; }

section "device"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv || echo "nvidia-smi failed"
else
  echo "nvidia-smi: not found (no NVIDIA driver on this machine)"
fi
"$PY" - <<'EOF'
import os, torch
print(f"torch {torch.__version__} (CUDA build {torch.version.cuda}), {os.cpu_count()} CPU cores, "
      f"CUDA available: {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor}")
EOF
GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)' 2>/dev/null || echo 0)
if [[ "$GPUS" == "0" ]]; then
  echo "no GPU: running the CPU parts only, in their short form"
  QUICK=1
  DEVICE=cpu
else
  DEVICE=cuda
fi

section "step benchmark (bench/bench_step_time.py, device $DEVICE)"
if [[ $QUICK == 1 ]]; then
  STEP_ARGS=(--epochs 1 --repeats 1 --cases mlp --modes bookkeeping)
else
  STEP_ARGS=(--epochs 3 --repeats 3)
fi
"$PY" bench/bench_step_time.py --device "$DEVICE" "${STEP_ARGS[@]}" || { echo "step benchmark FAILED"; FAILED=1; }

section "digits, epsilon 3, through the CLI"
EPOCHS=()
[[ $QUICK == 1 ]] && EPOCHS=(--epochs 2)
COMMON=(--dataset digits --target-epsilon 3 "${EPOCHS[@]}")
cli_run "digits-$DEVICE" "${COMMON[@]}" --device "$DEVICE"
if [[ "$DEVICE" == cuda ]]; then
  cli_run digits-cpu "${COMMON[@]}" --device cpu
  if [[ -n "$(field digits-cpu ms_per_step)" && -n "$(field digits-cuda ms_per_step)" ]]; then
    echo "GPU vs CPU: $(ratio "$(field digits-cpu ms_per_step)" "$(field digits-cuda ms_per_step)") faster per step"
  fi
fi

section "one training on 2 GPUs (Opacus DPDDP under torchrun, --nproc 2)"
if [[ "$GPUS" -ge 2 ]]; then
  cli_run digits-2gpu "${COMMON[@]}" --device cuda --nproc 2
  one=$(field digits-cuda final_epsilon)
  two=$(field digits-2gpu final_epsilon)
  if [[ -n "$one" && -n "$two" ]]; then
    "$PY" -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"epsilon 1 GPU {a:.6f}, 2 GPUs {b:.6f}: "
              + ("the same" if abs(a - b) < 1e-9 else "DIFFERENT")); sys.exit(abs(a - b) >= 1e-9)' "$one" "$two" \
      || FAILED=1
    echo "2 GPUs vs 1 GPU: $(ratio "$(field digits-cuda ms_per_step)" "$(field digits-2gpu ms_per_step)") faster per step"
  fi
else
  echo "skipped: needs 2 GPUs, found $GPUS (the CPU path is tested by tests/jobs/test_distributed.py with gloo)"
fi

section "result"
rm -rf "$OUT"
if [[ $FAILED == 0 ]]; then echo "gpu_check: all parts that ran passed"; else echo "gpu_check: some part FAILED"; fi
exit $FAILED
