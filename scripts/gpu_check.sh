#!/usr/bin/env bash
# `make gpu-check`: everything a short GPU lease should measure, in one command (docs/kernels.md "GPU check").
#
# Stages, each under its own timeout so one hang does not eat the lease:
#   install  a Python with CUDA torch and triton: .venv or python3 if one already has them, else `make install`
#   tests    tests/kernels/test_kernels_triton.py compiled on CUDA (KBIT_TEST_GPU=1: every k x dtype x input dtype)
#   bench    benchmarks/kernels.py: 8192x8192 fp16, batch 1/16/64, k 2..8 vs fp16 torch.matmul
#   model    benchmarks/gpu_check.py model: a quantized Llama on the GPU vs the CPU reference, with a tolerance
# Each writes a markdown table with the same header (device, driver, torch, triton, date) to
# $KBIT_GPU_CHECK_OUT (default benchmarks/gpu), plus summary.md (every stage's status) and log.txt.
# Exits non-zero when a stage fails, after writing what it measured.
#
# KBIT_GPU_CHECK_DRY_RUN=1: the same stages on CPU in the Triton interpreter, small shapes, writing to
# a temporary folder (tests/kernels/test_kernels_gpu_check.py runs it).
# Other knobs: KBIT_GPU_CHECK_PYTHON (skip the search), KBIT_GPU_CHECK_INSTALL=1 (always `make install`),
# KBIT_GPU_CHECK_T_INSTALL / _T_TESTS / _T_BENCH / _T_MODEL (stage timeouts in seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
DRY=${KBIT_GPU_CHECK_DRY_RUN:-0}
if [ -n "${KBIT_GPU_CHECK_OUT:-}" ]; then
  OUT_DIR=$KBIT_GPU_CHECK_OUT
elif [ "$DRY" = 1 ]; then
  OUT_DIR=$(mktemp -d -t kbit-gpu-check.XXXXXX)
else
  OUT_DIR=benchmarks/gpu
fi
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(mktemp -d -t kbit-gpu-work.XXXXXX)
LOG=$OUT_DIR/log.txt
SUMMARY=$WORK/summary.rows
: >"$LOG"
: >"$SUMMARY"
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
FAILED=0
PY=""

if [ "$DRY" = 1 ]; then
  export TRITON_INTERPRET=1
  T_INSTALL=0 T_TESTS=${KBIT_GPU_CHECK_T_TESTS:-240} T_BENCH=${KBIT_GPU_CHECK_T_BENCH:-240} T_MODEL=${KBIT_GPU_CHECK_T_MODEL:-120}
  TEST_ARGS=(-k "ties or quantlinear or gemv_splits or (quantize_and_dequantize and nf)")
  BENCH_ARGS=(--shapes 96x160 --batches 1,16,64 --backend triton --device cpu --repeats 1)
  MODEL_ARGS=(--small)
else
  unset TRITON_INTERPRET
  T_INSTALL=${KBIT_GPU_CHECK_T_INSTALL:-300} T_TESTS=${KBIT_GPU_CHECK_T_TESTS:-240} T_BENCH=${KBIT_GPU_CHECK_T_BENCH:-150} T_MODEL=${KBIT_GPU_CHECK_T_MODEL:-60}
  TEST_ARGS=()
  BENCH_ARGS=(--shapes 8192x8192 --batches 1,16,64)
  MODEL_ARGS=()
fi

log() { echo "[gpu-check $(date +%H:%M:%S)] $*" | tee -a "$LOG" >&2; }

# stage NAME LIMIT_S CMD...: run CMD under `timeout` (SIGINT first so pytest still writes its report), record the outcome
stage() {
  local name=$1 limit=$2 start rc status
  shift 2
  log "stage $name (limit ${limit}s): $*"
  start=$(date +%s)
  timeout -s INT -k 20 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="TIMED OUT after ${limit}s" ;;
    *) status="FAILED (exit $rc)" ;;
  esac
  [ $rc -ne 0 ] && FAILED=1
  echo "| $name | $status | $(($(date +%s) - start)) |" >>"$SUMMARY"
  log "stage $name: $status"
  return $rc
}

skip() {
  echo "| $1 | skipped: $2 | 0 |" >>"$SUMMARY"
  log "stage $1 skipped: $2"
}

# usable_python PY: torch and triton import, and (unless a dry run) torch sees a CUDA device
usable_python() {
  local check="import torch, triton"
  [ "$DRY" = 1 ] || check="$check; assert torch.cuda.is_available()"
  [ -n "$1" ] && "$1" -c "$check" >/dev/null 2>&1
}

find_python() {
  local py
  for py in "${KBIT_GPU_CHECK_PYTHON:-}" "$REPO/.venv/bin/python" "$(command -v python3 || true)"; do
    if usable_python "$py"; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

install_stage() {
  if [ "$DRY" = 1 ]; then
    PY=${KBIT_GPU_CHECK_PYTHON:-$REPO/.venv/bin/python}
    skip install "dry run, using $PY"
  elif [ "${KBIT_GPU_CHECK_INSTALL:-0}" != 1 ] && PY=$(find_python); then
    skip install "$PY already has CUDA torch and triton (KBIT_GPU_CHECK_INSTALL=1 runs make install anyway)"
  else
    # no network means pip fails fast instead of retrying for minutes
    PIP_DEFAULT_TIMEOUT=15 PIP_RETRIES=1 stage install "$T_INSTALL" make install
    PY=$(find_python) || PY=""
  fi
  if [ -z "$PY" ] || ! usable_python "$PY"; then
    log "no Python with CUDA torch and triton: the other stages cannot run"
    echo "| python | FAILED: no Python with CUDA torch and triton | 0 |" >>"$SUMMARY"
    FAILED=1
    PY=""
  fi
}

write() {  # write FILE TITLE BODY_FILE: the common header, then the stage's table (or a note)
  {
    echo "# kbit GPU check: $2"
    echo
    cat "$WORK/header.md"
    echo
    if [ -s "$3" ]; then cat "$3"; else echo "Nothing was measured: see log.txt."; fi
  } >"$OUT_DIR/$1"
}

tests_stage() {
  local xdist=()
  if [ "$DRY" != 1 ] && "$PY" -c "import xdist" >/dev/null 2>&1; then
    xdist=(-n 8)  # Triton compiles in the calling process: parallel workers cut the compile time
  fi
  [ "$DRY" = 1 ] || export KBIT_TEST_GPU=1
  # --confcutdir: the kernel tests need none of tests/conftest.py's database fixtures (nor their imports)
  stage tests "$T_TESTS" "$PY" -m pytest tests/kernels/test_kernels_triton.py -q -p no:cacheprovider \
    --confcutdir=tests/kernels --junitxml="$WORK/junit.xml" "${xdist[@]}" "${TEST_ARGS[@]}"
  "$PY" -m benchmarks.gpu_check tests-report "$WORK/junit.xml" >"$WORK/tests.md" 2>>"$LOG"
  write tests.md "kernel tests (Triton vs torch reference)" "$WORK/tests.md"
  unset KBIT_TEST_GPU
}

bench_stage() {
  stage bench "$T_BENCH" "$PY" -m benchmarks.kernels --bits 2,3,4,5,6,7,8 --dtype nf --blocksize 64 \
    --out "$WORK/kernels.md" "${BENCH_ARGS[@]}"
  write kernels.md "fused k-bit matmul vs fp16 torch.matmul" "$WORK/kernels.md"
}

model_stage() {
  stage model "$T_MODEL" "$PY" -m benchmarks.gpu_check model --out "$WORK/model.md" "${MODEL_ARGS[@]}"
  write model.md "a quantized model on the GPU vs the CPU reference" "$WORK/model.md"
}

main() {
  local start
  start=$(date +%s)
  log "writing to $OUT_DIR$([ "$DRY" = 1 ] && echo ' (dry run: Triton interpreter on CPU)')"
  install_stage
  if [ -n "$PY" ]; then
    "$PY" -m benchmarks.gpu_check header >"$WORK/header.md" 2>>"$LOG" || echo "- header: failed (log.txt)" >"$WORK/header.md"
    tests_stage
    bench_stage
    model_stage
  else
    echo "- no usable Python: nothing measured" >"$WORK/header.md"
  fi
  {
    echo "# kbit GPU check: summary"
    echo
    cat "$WORK/header.md"
    echo
    echo "| stage | status | seconds |"
    echo "|---|---|---|"
    cat "$SUMMARY"
    echo
    echo "Total $(($(date +%s) - start)) s. Tables: tests.md, kernels.md, model.md; full output: log.txt."
  } >"$OUT_DIR/summary.md"
  rm -rf "$WORK"
  log "done in $(($(date +%s) - start)) s: $OUT_DIR/summary.md$([ $FAILED = 1 ] && echo ' (a stage failed)')"
  return $FAILED
}

main
