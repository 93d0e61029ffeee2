#!/usr/bin/env bash
# The one prepared GPU check (docs/gpu.md): runs the GPU test suite with natively compiled Triton
# kernels, then bench/kernels.py, bench/decode_step.py and bench/decode.py, and writes every log and
# figure under $OUT (or ./gpu-results): eight files, as many as the device tool brings back.
# Installs nothing: it uses the python3 that holds torch + triton + transformers (BERTH_PYTHON
# overrides) and imports berth from this checkout.
#
#   scripts/gpu-check.sh [all|tests|kernels|step|decode|tp]...  (default: all = tests kernels step decode;
#   the stages run in the order given)
#
# Each stage has its own time limit (seconds: TESTS_TIMEOUT=140, KERNELS_TIMEOUT=90, STEP_TIMEOUT=90,
# DECODE_TIMEOUT=250: 570 in all) so the whole run fits a 10-minute device command. DECODE_ARGS passes
# options to bench/decode.py (e.g. "--shapes 1b --skip-hf"). Exit status: non-zero if any stage failed.
#
# `tp` (tensor parallelism, issue #19) is its own device command, not part of `all`: with 2 or more GPUs
# it runs tests/gpu/test_gpu_tensor_parallel.py (TP_TESTS_TIMEOUT=150) and bench/decode.py at
# --tensor-parallel-size 2 beside TP=1 (TP_DECODE_TIMEOUT=330; TP_DECODE_ARGS, default
# "--shapes 1b,8b --weights bf16"): 480 s, env.txt plus three files. With one GPU it runs the NCCL
# path at world size 1 through the same code (that test alone) and says that TP=2 was not measured.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-$root/gpu-results}"
mkdir -p "$out"
python="${BERTH_PYTHON:-python3}"
unset TRITON_INTERPRET
export PYTHONPATH="$root/runtime_image${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# Runtime dependencies an interpreter may lack (the lent device image has no llguidance or gguf):
# copied there under build/device-site (docs/gpu.md), they are found without installing anything.
if [ -d "$root/build/device-site" ]; then export PYTHONPATH="$PYTHONPATH:$root/build/device-site"; fi

stages=("$@")
if [ ${#stages[@]} -eq 0 ] || [ "${stages[0]}" = all ]; then stages=(tests kernels step decode); fi
for stage in "${stages[@]}"; do
  case "$stage" in tests|kernels|step|decode|tp) ;; *) echo "gpu-check: unknown stage '$stage'; accepted: all tests kernels step decode tp" >&2; exit 2;; esac
done

{
  date -u +"%Y-%m-%d %H:%M UTC"
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || true
  "$python" -c "import sys, torch, triton, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$out/env.txt"
if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu-check: $python sees no CUDA device (torch.cuda.is_available() is False); run this on a GPU machine" >&2
  exit 3
fi

if ! "$python" -c "import berth_runtime.engine.builder" 2>"$out/imports.err"; then
  tail -1 "$out/imports.err" >&2
  echo "gpu-check: $python cannot import berth's engine (above); put the missing package in build/device-site" \
    "(docs/gpu.md) or install it" >&2
  exit 3
fi
rm -f "$out/imports.err"

# Kernel compilation dominates the test stage: spread it over processes when pytest-xdist is there.
parallel=()
if "$python" -c "import xdist" 2>/dev/null; then parallel=(-n 4); fi

failed=()
run_stage() {  # name, timeout, log file, command...
  local name=$1 limit=$2 log=$3
  shift 3
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" 2>&1 | tee "$out/$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name exit status $rc" | tee -a "$out/$log"
  [ "$rc" -eq 0 ] || failed+=("$name($rc)")
}

for stage in "${stages[@]}"; do
  case "$stage" in
    tests)
      run_stage tests "${TESTS_TIMEOUT:-140}" gpu-tests.log \
        "$python" -m pytest -q -p no:cacheprovider -rs "${parallel[@]}" \
        tests/gpu tests/runtime/test_kernel_activation.py tests/runtime/test_kernel_kv_cache_store.py \
        tests/runtime/test_kernel_paged_attention.py tests/runtime/test_kernel_rms_norm.py \
        tests/runtime/test_kernel_rotary.py tests/runtime/test_kernel_rotary_kv_store.py \
        tests/runtime/test_kernel_weight_only_linear.py ;;
    kernels)
      run_stage kernels "${KERNELS_TIMEOUT:-90}" kernels.log "$python" bench/kernels.py --json "$out/kernels.json" ;;
    step)
      run_stage step "${STEP_TIMEOUT:-90}" decode-step.log "$python" bench/decode_step.py --json "$out/decode-step.json" ;;
    decode)
      # shellcheck disable=SC2086  # DECODE_ARGS is a list of options
      run_stage decode "${DECODE_TIMEOUT:-250}" decode.log "$python" bench/decode.py --json "$out/decode.json" ${DECODE_ARGS:-} ;;
    tp)
      gpus=$("$python" -c "import torch; print(torch.cuda.device_count())")
      if [ "$gpus" -ge 2 ]; then
        echo "== tp: $gpus GPUs: tensor-parallel equality on CUDA, then decode at TP=2 beside TP=1"
        run_stage tp-tests "${TP_TESTS_TIMEOUT:-150}" tp-tests.log \
          "$python" -m pytest -q -p no:cacheprovider -rs tests/gpu/test_gpu_tensor_parallel.py
        # shellcheck disable=SC2086  # TP_DECODE_ARGS is a list of options
        run_stage tp-decode "${TP_DECODE_TIMEOUT:-330}" decode-tp.log "$python" bench/decode.py \
          --tensor-parallel-size 2 --json "$out/decode-tp.json" ${TP_DECODE_ARGS:---shapes 1b,8b --weights bf16}
      else
        note="tp: ONE GPU: the NCCL path at world size 1 through the same code (a real NCCL group, the sharded"
        note+=" model built with it, its all-reduces captured in the decode graphs); TP=2 needs two GPUs: NOT run"
        echo "== $note"
        run_stage tp-tests "${TP_TESTS_TIMEOUT:-150}" tp-tests.log \
          "$python" -m pytest -q -p no:cacheprovider -rs tests/gpu/test_gpu_tensor_parallel.py -k world_size_1
        echo "== $note" >>"$out/tp-tests.log"
      fi ;;
  esac
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "gpu-check: failed stages: ${failed[*]} (logs in $out)"
  exit 1
fi
echo "gpu-check: all stages passed (logs in $out)"
