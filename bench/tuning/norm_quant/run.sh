#!/bin/bash
# On the GPU machine: build the harness for sm_90a and run a sweep or the ncu profiles (see prepare.sh).
set -euo pipefail
cd "$(dirname "$0")"
nvcc -std=c++17 -O3 --expt-relaxed-constexpr -use_fast_math -lineinfo \
  -gencode=arch=compute_90a,code=sm_90a -Iinclude harness.cu -o harness
case "${1:-sweep}" in
  sweep) ./harness > "$OUT/sweep.jsonl" ;;
  profile)
    for spec in "0 4096 16384" "4 4096 16384" "6 4096 16384" "7 4096 16384" "8 4096 16384" \
                "0 2880 16384" "7 2880 16384"; do
      set -- $spec
      ncu --clock-control none -k regex:NormQuantKernel --launch-skip 1 --launch-count 1 \
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
        --section WarpStateStats --section SchedulerStats --section LaunchStats \
        --section ComputeWorkloadAnalysis ./harness "$1" "$2" "$3" > "$OUT/ncu_op$1_H$2_T$3.txt" 2>&1
    done ;;
esac
