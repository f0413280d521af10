#!/usr/bin/env bash
# Chapter 11 on a GPU machine, in one go: the kernel build, every cuda test of the suite's
# kernel chapter (LayerNorm, attention, the fused GPT), the kernel benchmarks and the GPT step.
#
#   OUT=/some/dir bash benchmarks/gpu_session.sh           (from anywhere; runs in the repo root)
#   QUICK=1 OUT=/some/dir bash benchmarks/gpu_session.sh   (attention grid in quick mode)
#
# Writes two files under $OUT/kernels/ (default OUT=/tmp/tt_gpu_session):
#   session.log       everything printed: device, versions, build, tests, benchmark tables
#   results.tar.gz    benchmarks/results/{kernels_gpu,attention_gpu,gpt_gpu}_* (md, json, png);
#                     unpack it in the repo root to record them: tar xzf results.tar.gz
# Each step has its own time limit so that a slow or hanging step cannot eat the others' time:
# about 9 minutes in all at most, after the machine's start (a fresh build takes 1-3 of them).
# Environment: PYTHON (default python3), TINYTORCH_KERNEL_CACHE (default
# ~/.cache/tinytorch/kernels: a prior build is reused).
set -uo pipefail
cd "$(dirname "$0")/.."
DEST="${OUT:-/tmp/tt_gpu_session}/kernels"
mkdir -p "$DEST"
LOG="$DEST/session.log"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TINYTORCH_KERNEL_CACHE="${TINYTORCH_KERNEL_CACHE:-$HOME/.cache/tinytorch/kernels}"
ATTN_ARGS=()
[ -n "${QUICK:-}" ] && ATTN_ARGS=(--quick)

step() { echo; echo "== $(date -u +%H:%M:%S) $*"; }
{
  step "device"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  nvcc --version | tail -2
  "$PY" -c "import sys, numpy, cupy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__)"
  git log -1 --format='commit %h %s' 2>/dev/null

  step "kernel build (with CUDA for this GPU)"
  timeout 240 "$PY" -c "
from tinytorch.kernels.build import load
m = load(verbose=True)
print('module', m.__file__, 'with_cuda', m.with_cuda, 'archs', list(m.cuda_archs))
assert m.with_cuda, 'built without CUDA'
" || echo "BUILD FAILED (rc $?)"

  step "pytest: every cuda test of chapter 11 (LayerNorm, attention, the fused GPT, the build)"
  timeout 150 "$PY" -m pytest -q -p no:cacheprovider -m "ch11 and cuda" --maxfail=50 \
    tests/test_ch11_layernorm.py tests/test_ch11_build.py tests/test_ch11_attention.py \
    tests/test_ch11_gpt_fused.py -rfE 2>&1 | tail -40
  echo "rc ${PIPESTATUS[0]}"

  step "benchmark: attention, every version vs torch SDPA (${ATTN_ARGS[*]:-full grid})"
  timeout 200 "$PY" -m benchmarks.attention_gpu "${ATTN_ARGS[@]}"
  echo "rc $?"

  step "benchmark: GPT training step, tinytorch (fused, composed) vs PyTorch eager"
  timeout 120 "$PY" -m benchmarks.gpt_gpu --steps 20
  echo "rc $?"

  step "benchmark: LayerNorm"
  timeout 60 "$PY" -m benchmarks.kernels_gpu --no-attention
  echo "rc $?"

  step "result files"
  for f in benchmarks/results/attention_gpu_*.md benchmarks/results/gpt_gpu_*.md; do
    [ -f "$f" ] && { echo "--- $f"; cat "$f"; }
  done
  step "done"
} 2>&1 | tee "$LOG"

# shellcheck disable=SC2046
tar czf "$DEST/results.tar.gz" $(ls benchmarks/results/kernels_gpu_* benchmarks/results/attention_gpu_* \
  benchmarks/results/gpt_gpu_* 2>/dev/null) 2>/dev/null
ls -la "$DEST"
