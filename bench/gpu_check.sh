#!/usr/bin/env bash
# One GPU check of vqdb, for a machine with a CUDA GPU (e.g. the `device` tool's H200): runs the GPU tests
# and bench/gpu_bench.py, installs nothing from the network, and finishes well under 10 minutes
# (timeouts 150 s tests + 90 s kernel checks + 330 s benchmark; the benchmark stops starting sections after 270 s).
#
#   bash bench/gpu_check.sh            # results in $OUT when set, else bench/results/
#   bash bench/gpu_check.sh --dry-run  # CPU-only syntax/logic check of the benchmark (tiny sizes)
#
# Expects python3 with torch (CUDA), numba + numba-cuda, numpy, scipy, pyarrow, pytest (the device image has
# them; `pip install -e ".[gpu,dev]"` elsewhere). faiss-gpu is optional: carry its wheel(s) in .whl/ (see
# the device tool's README: `pip download --no-deps --only-binary=:all: --python-version 3.12 ... faiss-gpu-cu12`
# plus its nvidia-* needs) and they are installed offline into /tmp/site; without faiss the benchmark says
# "skipped" for the faiss rows.
# Output files (<= 8, flat): gpu_env.txt, gpu_tests.log, gpu_bench.json, gpu_bench.md, gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
RES="${OUT:-bench/results}"
mkdir -p "$RES"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset NUMBA_ENABLE_CUDASIM VQDB_BACKEND
PY="${PYTHON:-python3}"
LOG="$RES/gpu_check.log"
: >"$LOG"
say() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$LOG"; }

if [[ "${1:-}" == "--dry-run" ]]; then
    say "dry run: benchmark at tiny sizes on CPU"
    timeout 900 "$PY" bench/gpu_bench.py --dry-run 2>&1 | tee -a "$LOG"
    exit "${PIPESTATUS[0]}"
fi

if compgen -G ".whl/*.whl" >/dev/null; then
    say "installing carried wheels offline: $(ls .whl)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site" || say "WARNING: carried wheels failed to install"
fi

{
    echo "# environment"; date -u; uname -a
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv 2>&1 || true
    "$PY" - <<'EOF' 2>&1
import importlib
for name in ("numpy", "torch", "numba", "numba_cuda", "triton", "cupy", "faiss", "pyarrow", "scipy"):
    try:
        m = importlib.import_module(name)
        print(name, getattr(m, "__version__", "?"))
    except Exception as exc:
        print(name, "MISSING", repr(exc)[:120])
import torch
print("torch.cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
from vqdb import kernels
print("backends", kernels.available_backends())
print("default backend", kernels.get_ops().name)
EOF
} >"$RES/gpu_env.txt"
cat "$RES/gpu_env.txt" | tee -a "$LOG"

status=0
say "1/3 GPU tests (tests/gpu: real-device tests marked gpu + simulator subprocess + torch)"
timeout 150 "$PY" -m pytest -q -p no:cacheprovider -o addopts="" tests/gpu -rs >"$RES/gpu_tests.log" 2>&1 || status=1
tail -n 15 "$RES/gpu_tests.log" | tee -a "$LOG"

say "2/3 numba-cuda kernel checks on the real device (tests/gpu/sim_checks.py without the simulator)"
timeout 90 "$PY" tests/gpu/sim_checks.py >>"$RES/gpu_tests.log" 2>&1 || status=1
tail -n 12 "$RES/gpu_tests.log" | tee -a "$LOG"

say "3/3 benchmark"
timeout 330 "$PY" bench/gpu_bench.py --budget-s 270 --out "$RES/gpu_bench.json" 2>&1 | tee -a "$LOG" || status=1
say "done (status $status); results in $RES"
exit $status
