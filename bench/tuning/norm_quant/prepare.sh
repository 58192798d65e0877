#!/bin/bash
# Prepare a side-by-side sweep of a NormQuant header variant against the committed kernel.
#   bench/tuning/norm_quant/prepare.sh VARIANT.diff build/nqb [HARNESS.diff]   (after `make apply`)
# (a variant with its own launch shapes comes with a diff of harness.cu's configuration table)
# then carry build/nqb to the GPU machine and run there:
#   build/nqb/run.sh sweep     -> $OUT/sweep.jsonl (every op, H 2880/4096/7168, T 1..32768)
#   build/nqb/run.sh profile   -> $OUT/ncu_op<i>_H<h>_T<t>.txt (ncu of the committed kernel)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
variant=$(realpath "$1")
dest=$2
harness_diff=${3:+$(realpath "$3")}
rm -rf "$dest" && mkdir -p "$dest"
cp -r "$root/build/tree/include" "$dest/include"
hdr=$dest/include/flashinfer/norm
# the committed kernel, in its own namespace, beside the variant
sed -e 's/^namespace flashinfer {/namespace flashinfer_old { using namespace ::flashinfer; }\nnamespace flashinfer_old {/' \
    -e 's/FLASHINFER_NORM_NORM_QUANT_CUH_/FLASHINFER_NORM_NORM_QUANT_OLD_CUH_/g' \
    "$hdr/norm_quant.cuh" > "$hdr/norm_quant_old.cuh"
(cd "$dest" && patch -s -p1 < "$variant")
cp "$here/harness.cu" "$here/run.sh" "$dest/"
if [ -n "$harness_diff" ]; then (cd "$dest" && patch -s -p1 < "$harness_diff"); fi
