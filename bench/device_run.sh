#!/usr/bin/env bash
# Runs on the lent GPU machine from the repo root (carry .devcarry, built by bench/device_bundle.py):
# upstream site + series overlay -> /tmp/site_patched; the upstream-style tests; the benchmark.
# Usage: bash .devcarry/device_run.sh [tests|bench|aot|granularity|all]; results go to $OUT.
set -euo pipefail
C=$PWD/.devcarry
WHAT=${1:-all}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT" /tmp/site_upstream /tmp/tvm
[ -d /tmp/site_upstream/flashinfer ] || tar -xJf "$C/upstream-site.tar.xz" -C /tmp/site_upstream
rm -rf /tmp/site_patched && cp -r /tmp/site_upstream /tmp/site_patched
tar -xf "$C/series-overlay.tar" -C /tmp/site_patched
python3 -c "import tvm_ffi" 2>/dev/null || (cd /tmp/tvm && python3 -m zipfile -e "$C/tvm_ffi.whl" .)
export PYTHONPATH=/tmp/site_patched:/tmp/tvm PYTHONUNBUFFERED=1 MAX_JOBS=16
export FLASHINFER_CUDA_ARCH_LIST=9.0a FLASHINFER_WORKSPACE_BASE=/tmp/fi_ws
cp "$C/bundle.json" "$OUT/"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > "$OUT/gpu.csv"
if [ "$WHAT" = tests ] || [ "$WHAT" = all ]; then
  python3 -m pytest -q -p no:cacheprovider "$C/test_norm_quant_fused.py" 2>&1 | tee "$OUT/test_norm_quant_fused.log" | tail -3
fi
if [ "$WHAT" = bench ] || [ "$WHAT" = all ]; then
  python3 "$C/bench_norm_quant_fused.py" --eager --out "$OUT" --series-json "$C/bundle.json" 2>&1 | tee "$OUT/bench.log" | tail -40
fi
if [ "$WHAT" = aot ] || [ "$WHAT" = all ]; then
  python3 "$C/aot_first_call.py" --site /tmp/site_patched --tvm /tmp/tvm --aot-wheel "$C"/aot/*.whl --out "$OUT" 2>&1 | tee "$OUT/aot_first_call.log" | tail -20
fi
if [ "$WHAT" = granularity ] || [ "$WHAT" = all ]; then
  PYTHONPATH=$C/granularity:$PYTHONPATH python3 -m pytest -q -p no:cacheprovider -p sm12x_triton_shim \
    "$C/granularity/test_sm12x_mxfp8_act_granularity.py" 2>&1 | tee "$OUT/test_sm12x_mxfp8_act_granularity.log" | tail -3
fi
