#!/usr/bin/env bash
# Chapter 11 on a GPU machine, in one go: the kernel build, the ch11 tests, the kernel benchmarks.
#
#   OUT=/some/dir bash benchmarks/gpu_session.sh        (from anywhere; runs in the repo root)
#
# Writes two files under $OUT/kernels/ (default OUT=/tmp/tt_gpu_session):
#   session.log       everything printed: device, versions, build, tests, benchmark tables
#   results.tar.gz    benchmarks/results/{kernels_gpu,attention_gpu}_* (md, json, png); unpack
#                     it in the repo root to record them: tar xzf results.tar.gz
# Each step has its own time limit so a slow or hanging step cannot eat the others' time
# (about 200 s in all after the build). Environment: PYTHON (default python3),
# TINYTORCH_KERNEL_CACHE (default ~/.cache/tinytorch/kernels: a prior build is reused).
set -uo pipefail
cd "$(dirname "$0")/.."
DEST="${OUT:-/tmp/tt_gpu_session}/kernels"
mkdir -p "$DEST"
LOG="$DEST/session.log"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TINYTORCH_KERNEL_CACHE="${TINYTORCH_KERNEL_CACHE:-$HOME/.cache/tinytorch/kernels}"

step() { echo; echo "== $(date -u +%H:%M:%S) $*"; }
{
  step "device"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  nvcc --version | tail -2
  "$PY" -c "import sys, numpy, cupy, torch; print(sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__)"
  git log -1 --format='commit %h %s' 2>/dev/null

  step "kernel build (with CUDA for this GPU)"
  timeout 420 "$PY" -c "
from tinytorch.kernels.build import load
m = load(verbose=True)
print('module', m.__file__, 'with_cuda', m.with_cuda, 'archs', list(m.cuda_archs))
assert m.with_cuda, 'built without CUDA'
" || echo "BUILD FAILED (rc $?)"

  step "pytest: LayerNorm kernels and the build (not slow)"
  timeout 60 "$PY" -m pytest -q -p no:cacheprovider -m "ch11 and not slow" --maxfail=200 \
    tests/test_ch11_layernorm.py tests/test_ch11_build.py -rfE 2>&1 | tail -40
  echo "rc ${PIPESTATUS[0]}"

  if [ -f tests/test_ch11_attention.py ]; then
    step "pytest: attention kernels (not slow)"
    timeout 50 "$PY" -m pytest -q -p no:cacheprovider -m "ch11 and not slow" --maxfail=200 \
      tests/test_ch11_attention.py -rfE 2>&1 | tail -40
    echo "rc ${PIPESTATUS[0]}"
  fi

  step "benchmark: LayerNorm (then attention, quick)"
  timeout 110 "$PY" benchmarks/kernels_gpu.py --attention-quick
  echo "rc $?"

  step "result files"
  for f in benchmarks/results/kernels_gpu_*.md benchmarks/results/attention_gpu_*.md; do
    [ -f "$f" ] && { echo "--- $f"; cat "$f"; }
  done
  step "done"
} 2>&1 | tee "$LOG"

tar czf "$DEST/results.tar.gz" $(ls benchmarks/results/kernels_gpu_* benchmarks/results/attention_gpu_* 2>/dev/null) 2>/dev/null
ls -la "$DEST"
