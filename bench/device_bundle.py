"""Build `.devcarry/`: what a lent GPU machine needs to test and benchmark the series side by side.

The machine has no network and a call may carry 64 MiB, so the bundle holds
  - upstream's own flashinfer-python wheel for the pinned version, slimmed to the op families the
    tests touch (unpacked into a site directory, tar.xz),
  - every file the series changes or adds, at its wheel path (series-overlay.tar),
  - apache-tvm-ffi for the machine's Python, and the scripts that run there (bench/device_run.sh).
On the device, device_run.sh unpacks upstream into /tmp/site_upstream and a copy with the series
overlaid into /tmp/site_patched, so upstream and patched kernels are measured in the same call.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fiseries.git import git_out  # noqa: E402
from fiseries.lock import LOCK_NAME, load_lock  # noqa: E402
from fiseries.tree import Layout  # noqa: E402
from fiseries.wheel import series_hash  # noqa: E402

# upstream csrc translation units the bundled tests/benchmarks JIT-compile (headers are all kept)
KEEP_CSRC_UNITS = ("norm.cu", "flashinfer_norm_binding.cu")
DROP_DATA = ("cutlass",)
WHEEL_PATHS = {"csrc/": "flashinfer/data/csrc/", "include/": "flashinfer/data/include/",
               "flashinfer/": "flashinfer/"}
DEVICE_PYTHON = ["--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64"]


def pip_download(spec: str, dest: Path, binary_args: list[str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    *binary_args, "-d", str(dest), spec], check=True)
    name = spec.split("==")[0].replace("-", "_")
    found = sorted(set(dest.glob(f"{name}-*.whl")) - before) or sorted(dest.glob(f"{name}-*.whl"))
    return found[-1]


def slim_upstream_site(wheel: Path, site: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    data = site / "flashinfer" / "data"
    for sub in DROP_DATA:
        shutil.rmtree(data / sub, ignore_errors=True)
    for path in (data / "csrc").iterdir():
        if path.is_dir() or (path.suffix == ".cu" and path.name not in KEEP_CSRC_UNITS):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def series_overlay(layout: Layout, dest: Path) -> list[str]:
    """Files the series changes or adds in FlashInfer itself, at their wheel paths."""
    repo = layout.tree
    changed = git_out(repo, "diff", "--name-only", "--diff-filter=AM", layout.lock.base_tag, "HEAD").split()
    shipped = []
    with tarfile.open(dest, "w") as tar:
        for rel in changed:
            for prefix, wheel_prefix in WHEEL_PATHS.items():
                if rel.startswith(prefix):
                    tar.add(repo / rel, arcname=wheel_prefix + rel[len(prefix):])
                    shipped.append(rel)
    return shipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / ".devcarry")
    parser.add_argument("--aot-wheel", type=Path, default=None,
                        help="a jit-cache wheel from `make wheel ARCHS=9.0a` for the first-call check")
    args = parser.parse_args()
    layout = Layout.for_lock(load_lock(ROOT / LOCK_NAME))
    if not layout.tree.is_dir():
        raise SystemExit("build/tree missing: run `make apply` first")
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    cache = ROOT / ".cache" / "wheels"
    version = layout.lock.main.version
    upstream = pip_download(f"flashinfer-python=={version}", cache, [])
    tvm = pip_download("apache-tvm-ffi==0.1.15.post2", cache, DEVICE_PYTHON)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        slim_upstream_site(upstream, site)
        subprocess.run(["tar", "-cJf", str(out / "upstream-site.tar.xz"), "-C", str(site), "."], check=True)
    shutil.copy2(tvm, out / "tvm_ffi.whl")
    shipped = series_overlay(layout, out / "series-overlay.tar")
    if args.aot_wheel is not None:
        (out / "aot").mkdir()
        shutil.copy2(args.aot_wheel, out / "aot" / args.aot_wheel.name)
    for script in ("device_run.sh", "bench_norm_quant_fused.py", "aot_first_call.py"):
        shutil.copy2(ROOT / "bench" / script, out / script)
    shutil.copy2(layout.tree / "tests/utils/test_norm_quant_fused.py", out / "test_norm_quant_fused.py")
    (out / "granularity").mkdir()
    for test in ("test_sm12x_mxfp8_act_granularity.py", "sm12x_mxfp8_reference.py"):
        shutil.copy2(layout.tree / "tests/moe" / test, out / "granularity" / test)
    shutil.copy2(ROOT / "bench" / "sm12x_triton_shim.py", out / "granularity" / "sm12x_triton_shim.py")
    meta = {"upstream_version": version, "upstream_commit": layout.lock.main.revision,
            "upstream_wheel": upstream.name, "series_sha256": series_hash(layout), "series_files": shipped}
    (out / "bundle.json").write_text(json.dumps(meta, indent=2) + "\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB; series {meta['series_sha256'][:12]}, {len(shipped)} files")


if __name__ == "__main__":
    main()
