#!/usr/bin/env bash
# An aarch64 Python 3.11 with the pinned torch and CuTe DSL, run under qemu-user on this x86_64 box.
#
#   aot_build/qemu_aarch64_python.sh DIR
#   make wheel ARCHS=12.1a HOST_ARCH=aarch64 DSL_PYTHON=DIR/python
#
# CuTe DSL 4.8.1 cannot export a TVM-FFI function for another host CPU, so the CuTe-DSL kernels of an
# aarch64 wheel are exported by aot_build/export_cute_dsl.py running as aarch64: DIR/python is that Python
# (qemu-aarch64 running Debian's arm64 python3.11 over the unpacked aarch64 wheels); "$@" goes to python.
#
# Needs: an x86_64 Debian 12 (bookworm) host with debian-archive-keyring, the Debian bookworm apt sources
# reachable (DEBIAN_MIRROR, DEBIAN_SECURITY to override), the pip index reachable, dpkg-deb and unzip,
# about 8 GB free under DIR (3 GB of it downloads) and a few minutes (2-3 here). Nothing is installed
# system-wide: apt-get runs with its lists, cache and sources under DIR, packages are unpacked with dpkg -x and
# wheels with unzip. Rerunning over an existing DIR skips the download steps whose inputs did not change.
# PIP: the pip command (default "python3 -m pip"); WHEEL_CACHE: colon-separated dirs of already
# downloaded wheels that pip may take instead of downloading (--find-links).
#
# Why the non-obvious steps:
# - qemu-user 10 from bookworm-backports, not bookworm's 7.2, which segfaults in torch's cpuinfo init.
# - QEMU_CPU=neoverse-n1: LLVM tunes the DSL's host code to the CPU it runs on; a pinned Armv8.2 CPU makes
#   the objects reproducible and uses only instructions that GB10's Armv9.2 cores run.
# - the `c++` wrapper first on PATH: aot_build/trace_jit_specs.py compiles a small shim against torch's
#   libc10 at run time, and qemu-user execs the host's x86 `c++`, so `c++` is the x86-hosted aarch64 g++.
# - sitecustomize.py: DIR/site is a plain PYTHONPATH dir, whose .pth files Python does not read; the one
#   of nvidia_cutlass_dsl (nvidia_cutlass_dsl_packages.pth) puts the DSL's packages on sys.path.
set -euo pipefail

REQUIREMENTS="$(dirname "$0")/../ci/requirements.txt"
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY=${DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
read -ra PIP_CMD <<< "${PIP:-python3 -m pip}"

# Debian packages: the sysroot's Python 3.11 and its libraries (arm64), the cross g++ 12 for the `c++`
# wrapper with the x86 libraries it loads, which a host with gcc has anyway (amd64).
SYSROOT_DEBS=(python3.11 python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libstdc++6
  libgcc-s1 zlib1g libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libncursesw6
  libtinfo6 libreadline8 libgomp1 libcrypt1 libdb5.3 libgdbm6 libnsl2 libtirpc3 libzstd1)
CROSS_DEBS=(binutils-aarch64-linux-gnu cpp-12-aarch64-linux-gnu g++-12-aarch64-linux-gnu
  gcc-12-aarch64-linux-gnu gcc-12-aarch64-linux-gnu-base gcc-12-cross-base libasan8-arm64-cross
  libatomic1-arm64-cross libc6-arm64-cross libc6-dev-arm64-cross libgcc-12-dev-arm64-cross
  libgcc-s1-arm64-cross libgomp1-arm64-cross libhwasan0-arm64-cross libitm1-arm64-cross
  liblsan0-arm64-cross libstdc++-12-dev-arm64-cross libstdc++6-arm64-cross libtsan2-arm64-cross
  libubsan1-arm64-cross linux-libc-dev-arm64-cross libisl23 libmpc3 libmpfr6 libgmp10 libjansson4 libbinutils)

# Wheels pinned in ci/requirements.txt: the same versions as the x86_64 box's environment.
CI_PINNED=(torch nvidia-cutlass-dsl nvidia-cutlass-dsl-libs-base nvidia-cutlass-dsl-libs-core
  nvidia-cutlass-dsl-libs-cu12 nvidia-cutlass-dsl-libs-cu13 apache-tvm-ffi numpy cuda-python cuda-bindings
  cuda-core cuda-pathfinder protobuf typing_extensions packaging setuptools ninja filelock einops requests
  tabulate tqdm click nvidia-ml-py)
# The CUDA libraries that the aarch64 torch 2.13.0 links, as its wheel's metadata pins them (its
# cuda-toolkit==13.0.3 extras, cudnn, cusparselt, nccl, nvshmem). Not ci/requirements.txt's nvidia-cublas,
# which gives the x86_64 box cuBLAS headers, not torch's runtime.
TORCH_CUDA=("nvidia-cuda-runtime==13.0.96.*" "nvidia-cublas==13.1.1.3.*" "nvidia-cufft==12.0.0.61.*"
  "nvidia-cufile==1.15.1.6.*" "nvidia-curand==10.4.0.35.*" "nvidia-cusolver==12.0.4.66.*"
  "nvidia-cusparse==12.6.3.3.*" "nvidia-nvjitlink==13.0.88" "nvidia-cuda-nvrtc==13.0.88.*"
  "nvidia-nvtx==13.0.85.*" nvidia-cudnn-cu13==9.20.0.48 nvidia-cusparselt-cu13==0.8.1
  nvidia-nccl-cu13==2.29.7 nvidia-nvshmem-cu13==3.4.5 "nvidia-cuda-cupti==13.0.85.*")
# The rest of torch's and requests' dependencies, which ci/requirements.txt does not list: exact versions
# that were tested here.
OTHERS=(jinja2==3.1.6 markupsafe==3.0.4 networkx==3.6.1 sympy==1.14.0 mpmath==1.3.0 fsspec==2026.9.0
  certifi==2026.10.19.post1 idna==3.20 urllib3==2.8.0 charset-normalizer==3.5.3)

log() { printf '== %s\n' "$*" >&2; }

# pin NAME...: NAME==VERSION for each, as ci/requirements.txt pins it
pin() {
  local name line
  for name in "$@"; do
    line=$(grep -i -m1 -E "^${name}==[^ #]+" "$REQUIREMENTS") ||
      { echo "no pin for $name in $REQUIREMENTS" >&2; return 1; }
    printf '%s\n' "${line%%[ #]*}"
  done
}

# a step's stamp holds its inputs: an unchanged step is skipped on a rerun
stamp_matches() { [[ -f "$DIR/.stamps/$1" && "$(cat "$DIR/.stamps/$1")" == "$2" ]]; }
write_stamp() { mkdir -p "$DIR/.stamps" && printf '%s' "$2" > "$DIR/.stamps/$1"; }

# apt-get with lists, cache and sources under DIR/apt, for amd64 and arm64, ignoring the host's state
apt_dir() {
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/cache/archives/partial" "$DIR/apt/none.d"
  cat > "$DIR/apt/sources.list" <<EOF
deb [signed-by=$keyring] $DEBIAN_MIRROR bookworm main
deb [signed-by=$keyring] $DEBIAN_MIRROR bookworm-updates main
deb [signed-by=$keyring] $DEBIAN_SECURITY bookworm-security main
deb [arch=amd64 signed-by=$keyring] $DEBIAN_MIRROR bookworm-backports main
EOF
}
apt_in_dir() {
  local root_only=()  # as root, apt would download as user _apt, who cannot write into DIR
  [[ $EUID -eq 0 ]] && root_only=(-oAPT::Sandbox::User=root)
  apt-get -q -oAPT::Architecture=amd64 -oAPT::Architectures=amd64,arm64 "${root_only[@]}" \
    -oDir::State::Lists="$DIR/apt/lists" -oDir::State::Status=/dev/null -oDir::Cache="$DIR/apt/cache" \
    -oDir::Etc::SourceList="$DIR/apt/sources.list" -oDir::Etc::SourceParts="$DIR/apt/none.d" \
    -oDir::Etc::Preferences=/dev/null -oDir::Etc::PreferencesParts="$DIR/apt/none.d" "$@"
}

fetch_debs() {
  local key="${SYSROOT_DEBS[*]} ${CROSS_DEBS[*]} $DEBIAN_MIRROR"
  stamp_matches debs "$key" && { log "Debian packages: unpacked before"; return; }
  log "Debian packages: qemu-user 10, the arm64 Python 3.11 sysroot, the aarch64 cross g++"
  apt_dir
  apt_in_dir update
  rm -rf "$DIR/debs" "$DIR/qemu" "$DIR/sysroot" "$DIR/cross"
  mkdir -p "$DIR/debs/qemu" "$DIR/debs/sysroot" "$DIR/debs/cross"
  (cd "$DIR/debs/qemu" && apt_in_dir download qemu-user/bookworm-backports)
  (cd "$DIR/debs/sysroot" && apt_in_dir download "${SYSROOT_DEBS[@]/%/:arm64}")
  (cd "$DIR/debs/cross" && apt_in_dir download "${CROSS_DEBS[@]}")
  local part deb
  for part in qemu sysroot cross; do
    for deb in "$DIR/debs/$part"/*.deb; do dpkg -x "$deb" "$DIR/$part"; done
  done
  "$DIR/qemu/usr/bin/qemu-aarch64" --version | head -1 >&2
  write_stamp debs "$key"
}

# pip download's target: CPython 3.11 on aarch64 Linux; manylinux tags up to the sysroot's glibc 2.36
# (pip does not widen --platform manylinux_2_X to older X, so each one is named: nvidia-cuda-cupti's
# aarch64 wheels are manylinux_2_25 only)
pip_download() {
  local args=(download --no-deps --only-binary=:all: --python-version 3.11 --implementation cp
    --abi cp311 --abi abi3 --abi none --platform linux_aarch64 --platform manylinux2014_aarch64)
  local v dir dirs
  for v in $(seq 17 36); do args+=(--platform "manylinux_2_${v}_aarch64"); done
  IFS=: read -ra dirs <<< "${WHEEL_CACHE:-}"
  for dir in "${dirs[@]}"; do args+=(--find-links "$dir"); done
  "${PIP_CMD[@]}" "${args[@]}" -d "$DIR/wheels" "$@"
}

fetch_wheels() {
  local pinned
  pinned=$(pin "${CI_PINNED[@]}")  # fails the script where ci/requirements.txt lacks one
  local reqs
  mapfile -t reqs <<< "$pinned"
  reqs+=("${TORCH_CUDA[@]}" "${OTHERS[@]}")
  local key="${reqs[*]}"
  stamp_matches wheels "$key" && { log "aarch64 wheels: unpacked before"; return; }
  log "aarch64 wheels: ${#reqs[*]} pinned"
  rm -rf "$DIR/wheels" "$DIR/site"
  pip_download "${reqs[@]}"
  log "unpacking $(find "$DIR/wheels" -name '*.whl' | wc -l) wheels into $DIR/site"
  mkdir -p "$DIR/site"
  local whl
  for whl in "$DIR/wheels"/*.whl; do unzip -qo "$whl" -d "$DIR/site"; done
  write_stamp wheels "$key"
}

# DIR/site as a site dir, which runs its .pth files; this and the two scripts below find DIR from their
# own path, so DIR can move
write_sitecustomize() {
  cat > "$DIR/site/sitecustomize.py" <<'EOF'
import os
import site

site.addsitedir(os.path.dirname(os.path.abspath(__file__)))
EOF
}

write_cxx_wrapper() {
  mkdir -p "$DIR/bin"
  cat > "$DIR/bin/c++" <<'EOF'
#!/bin/sh
# the aarch64 g++ 12 (an x86 program with its libraries under ../cross): the `c++` the emulated Python runs
cross=$(dirname "$(readlink -f "$0")")/../cross
export LD_LIBRARY_PATH="$cross/usr/lib/x86_64-linux-gnu"
exec "$cross/usr/bin/aarch64-linux-gnu-g++-12" -B"$cross/usr/bin/aarch64-linux-gnu-" -Wl,--sysroot="$cross" "$@"
EOF
  chmod +x "$DIR/bin/c++"
}

write_launcher() {
  cat > "$DIR/python" <<'EOF'
#!/bin/sh
# aarch64 Python 3.11 under qemu-user, made by aot_build/qemu_aarch64_python.sh; "$@" goes to python
d=$(dirname "$(readlink -f "$0")")
export QEMU_LD_PREFIX="$d/sysroot"
export QEMU_CPU=neoverse-n1  # Armv8.2: reproducible host code that GB10's Armv9.2 cores run
export PYTHONPATH="$d/site${PYTHONPATH:+:$PYTHONPATH}"
libs="$d/site/torch/lib"
for lib in "$d"/site/nvidia/*/lib; do
  if [ -d "$lib" ]; then libs="$lib:$libs"; fi
done
export LD_LIBRARY_PATH="$libs"  # the caller's, x86 libraries, is dropped
export PATH="$d/bin:$PATH"  # the aarch64 `c++`
exec "$d/qemu/usr/bin/qemu-aarch64" "$d/sysroot/usr/bin/python3.11" "$@"
EOF
  chmod +x "$DIR/python"
}

main() {
  [[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
  mkdir -p "$1"
  DIR=$(cd "$1" && pwd)
  fetch_debs
  fetch_wheels
  write_sitecustomize
  write_cxx_wrapper
  write_launcher
  log "checking $DIR/python"
  "$DIR/python" -c 'import platform, torch, cutlass, tvm_ffi; print(platform.machine(), "torch", torch.__version__)'
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then main "$@"; fi
