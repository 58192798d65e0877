"""The real series on the real pinned upstream: check, wheels, AOT module for sm_121a."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from fiseries.git import run_git
from fiseries.lock import LOCK_NAME, load_lock
from fiseries.layout import Layout
from fiseries.coverage import check_coverage
from fiseries.upstream import submodule_populated
from fiseries.cuda import elf_archs, find_cuobjdump
from fiseries.cute_dsl import check_object, key_of
from fiseries.toolchain import aot_build_env
from fiseries.wheel import patch_count

pytestmark = pytest.mark.upstream


LOCK = load_lock(ROOT / LOCK_NAME)
# README's preferred source is the submodule; without it (CI) the PyPI sdist pinned in the lock
SOURCE = "submodule" if submodule_populated(Layout.for_lock(LOCK).submodule) else "sdist"


def test_series_applies_cleanly_and_round_trips(checked: str) -> None:
    assert "series re-export byte-identical" in checked
    assert "tracking.md:" in checked and "references resolve" in checked
    assert "pin blocks match the lock: tracking.md, README.md" in checked
    assert f"pristine flashinfer {LOCK.main.version} from {SOURCE}" in checked


def test_lock_pins_the_tree_applying_yields(checked: str) -> None:
    for target in LOCK.targets:
        if SOURCE == "sdist":
            assert f"{target.name}: tree {target.tree} matches the lock" in checked
        else:  # a git checkout lacks the sdist's generated files: its tree hash differs by design
            assert f"{target.name}: tree " in checked and "not compared" in checked


WHEEL_PATHS = {"csrc/": "flashinfer/data/csrc/", "include/": "flashinfer/data/include/",
               "3rdparty/cutlass/": "flashinfer/data/cutlass/", "flashinfer/": "flashinfer/"}


def _in_wheel(upstream_path: str) -> str | None:
    for prefix, dest in WHEEL_PATHS.items():
        if upstream_path.startswith(prefix):
            return dest + upstream_path[len(prefix):]
    return None


@pytest.mark.compile
def test_patched_wheel_holds_every_patched_file(wheels: dict) -> None:
    layout = Layout.for_lock(load_lock(ROOT / LOCK_NAME))
    version = wheels["manifest"]["version"]
    assert version == f"{LOCK.main.version}+sm12x.{patch_count(layout)}"
    (wheel,) = wheels["dist"].glob(f"flashinfer_python-{version}-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        meta = zf.read("flashinfer/_build_meta.py").decode()
        assert f'__version__ = "{version}"' in meta and layout.lock.main.revision in meta
        for target in layout.lock.targets:
            repo = layout.tree / target.path
            changed = run_git(repo, "diff", "--name-only", layout.lock.base_tag, "HEAD").stdout.split()
            for rel in changed:
                full = rel if target.is_main else f"{target.path}/{rel}"
                arc = _in_wheel(full)
                if arc is None:  # tests/ and build files do not ship
                    continue
                assert zf.read(arc) == (repo / rel).read_bytes(), arc
    assert wheels["manifest"]["series_sha256"] and wheels["manifest"]["host_arch"]


@pytest.mark.compile
def test_aot_wheel_has_sm121a_sass_and_metadata(wheels: dict, tmp_path: Path) -> None:
    manifest = wheels["manifest"]
    (aot,) = wheels["dist"].glob("flashinfer_jit_cache-*.whl")
    assert manifest["archs"] == ["12.1a"]
    assert manifest["upstream"]["commit"] == LOCK.main.revision
    with zipfile.ZipFile(aot) as zf:
        meta = json.loads(zf.read("flashinfer_jit_cache/jit_cache/manifest.json"))
        so = zf.extract("flashinfer_jit_cache/jit_cache/norm/norm.so", tmp_path)
    assert meta["cuda_architectures"] == ["sm121a"] and "norm" in meta["modules"]
    assert meta["upstream_commit"] == manifest["upstream"]["commit"]
    assert elf_archs(Path(so), find_cuobjdump()) == {"sm_121a"}


@pytest.mark.compile
def test_aot_wheel_holds_the_traced_cute_dsl_kernels(wheels: dict, tmp_path: Path) -> None:
    """Each traced CuTe-DSL kernel exported for sm_121a as a GB10 reports itself: an x86_64 object with one
    sm_121a cubin (checked by `make wheel`, and here again) and its key beside it."""
    traced = json.loads((ROOT / "aot_build/traces/sm121.json").read_text())["cute_dsl"]
    wanted = {key_of(k) for keys in traced.values() for k in keys}
    (aot,) = wheels["dist"].glob("flashinfer_jit_cache-*.whl")
    with zipfile.ZipFile(aot) as zf:
        names = [n for n in zf.namelist() if "/jit_cache/cute_dsl/" in n]
        keys = {key_of(json.loads(zf.read(n))) for n in names if n.endswith(".json")}
        objects = [Path(zf.extract(n, tmp_path)) for n in names if n.endswith(".o")]
    assert keys == wanted and len(objects) == len(wanted) == 5
    for obj in objects:
        assert obj.parent.name == "sm_121a"
        check_object(obj, "sm_121a", "x86_64", find_cuobjdump(), tmp_path)
    recorded = wheels["manifest"]["cute_dsl"]["kernels"]
    assert {key_of(k) for k in recorded} == wanted and all(k["cutlass_dsl"] for k in recorded)


LOOKUP = """
import os, shutil
assert shutil.which("nvcc") is None, "nvcc must not be reachable in this check"
from flashinfer.jit.norm import gen_norm_module
import flashinfer_jit_cache
spec = gen_norm_module()
print(spec.is_aot, spec.aot_path, flashinfer_jit_cache.jit_cache_dir)
"""


@pytest.mark.compile
def test_loader_finds_the_aot_module_without_jit(wheels: dict, tmp_path: Path) -> None:
    site = tmp_path / "site"
    for wheel in wheels["dist"].glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site), FLASHINFER_CUDA_ARCH_LIST="12.1a",
               FLASHINFER_DISABLE_JIT="1", PATH=os.path.dirname(sys.executable) + ":/usr/bin:/bin",
               FLASHINFER_WORKSPACE_BASE=str(tmp_path / "ws"))
    proc = subprocess.run([sys.executable, "-c", LOOKUP], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    is_aot, path, cache_dir = proc.stdout.split()
    assert is_aot == "True"
    assert path == f"{cache_dir}/norm/norm.so" and Path(path).is_file()


# A fresh process that sees one GB10 (as the tracer's model reports it) asks for every traced CuTe-DSL kernel.
CUTE_DSL_LOOKUP = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from export_cute_dsl import getter_of
from trace_jit_specs import DEVICES, FakeDevice
FakeDevice(DEVICES["12.1"])
import cutlass.cute as cute
cute.compile = None  # any compile fails the check
from flashinfer.cute_dsl import kernel_cache
for keys in json.loads(Path(sys.argv[2]).read_text())["cute_dsl"].values():
    for key in keys:
        getter_of(key)(**key["args"])
print(json.dumps({"stats": dict(kernel_cache.stats), "dirs": [str(d) for d in kernel_cache.search_dirs()]}))
"""


@pytest.mark.compile
def test_kernel_cache_finds_the_wheels_cute_dsl_kernel(wheels: dict, tmp_path: Path) -> None:
    site = tmp_path / "site"
    for wheel in wheels["dist"].glob("*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site), CUTE_DSL_ARCH="sm_121a",
               FLASHINFER_WORKSPACE_BASE=str(tmp_path / "ws"))
    proc = subprocess.run([sys.executable, "-c", CUTE_DSL_LOOKUP, str(ROOT / "aot_build"),
                           str(ROOT / "aot_build/traces/sm121.json")], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["stats"] == {"loaded": 5}
    assert str(site / "flashinfer_jit_cache/jit_cache/cute_dsl") in result["dirs"]


@pytest.mark.compile
def test_upstream_aot_manifest_tests(wheels: dict, tmp_path: Path) -> None:
    """The series' upstream-style CPU test of `flashinfer.aot --manifest`, on the patched wheel."""
    site = tmp_path / "site"
    (wheel,) = wheels["dist"].glob("flashinfer_python-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site), FLASHINFER_WORKSPACE_BASE=str(tmp_path / "ws"))
    suite = ROOT / "build/tree/tests/test_aot_manifest.py"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and " passed" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.compile
def test_coverage_checker(wheels: dict, tmp_path: Path) -> None:
    (aot,) = wheels["dist"].glob("flashinfer_jit_cache-*.whl")
    trace = tmp_path / "trace.json"
    spec = {"generator": "flashinfer.jit.norm:gen_norm_module", "args": {}}
    trace.write_text(json.dumps({"workloads": {
        "norms": [{"name": "norm", **spec}, {"name": "norm_quant", **spec}, {"name": "norm", **spec}],
        "decode": [{"name": "norm", **spec}, {"name": "sampling", **spec}]}}))
    result = check_coverage(aot, trace, ["12.1a"])
    assert not result.ok and result.missing == {"decode": ["sampling"]} and not result.wrong_archs
    assert sorted(result.covered) == ["norm", "norm_quant"]
    assert any("sampling" in line and "runtime JIT" in line for line in result.lines())
    wrong = check_coverage(aot, trace, ["12.0a"])
    assert wrong.wrong_archs == {"norm": ["sm_121a"], "norm_quant": ["sm_121a"]}


@pytest.mark.compile
def test_coverage_checker_cute_dsl_kernels(wheels: dict, tmp_path: Path) -> None:
    (aot,) = wheels["dist"].glob("flashinfer_jit_cache-*.whl")
    traced = json.loads((ROOT / "aot_build/traces/sm121.json").read_text())["cute_dsl"]
    other = dict(traced["gpt_oss_120b"][0], api="flashinfer.rmsnorm (H 4096)")
    other["args"] = dict(other["args"], H=4096)
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps({"workloads": {}, "cute_dsl": traced}))
    covered = check_coverage(aot, trace, ["12.1a"])
    assert covered.ok and covered.kernels_covered == 5 and not covered.missing_kernels
    trace.write_text(json.dumps({"workloads": {}, "cute_dsl": {"wide": [other], **traced}}))
    missing = check_coverage(aot, trace, ["12.1a"])
    assert not missing.ok and missing.missing_kernels == {"wide": ["flashinfer.rmsnorm (H 4096)"]}
    assert any("compiled at first call" in line for line in missing.lines())
    cross = check_coverage(aot, trace, ["12.1a"], kernels_not_exported="a cross build")
    assert cross.ok and any("(a cross build)" in line for line in cross.lines())


@pytest.mark.compile
def test_cross_build_aarch64(checked: str, tmp_path: Path) -> None:
    """`make wheel HOST_ARCH=aarch64` (--host-arch) on x86_64: aarch64 host code, sm_121a SASS, linux_aarch64 tag."""
    import shutil

    if platform.machine() != "x86_64" or shutil.which("aarch64-linux-gnu-g++") is None:
        pytest.skip("needs an x86_64 box with Debian's g++-aarch64-linux-gnu (see aot_build/CROSS.md)")
    proc = subprocess.run([sys.executable, "-m", "fiseries", "--root", str(ROOT), "wheel", "--archs", "12.1a",
                           "--manifest", "aot_build/manifests/default.json", "--host-arch", "aarch64",
                           "--dist", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (aot,) = tmp_path.glob("flashinfer_jit_cache-*-py3-none-linux_aarch64.whl")
    with zipfile.ZipFile(aot) as zf:
        so = Path(zf.extract("flashinfer_jit_cache/jit_cache/norm_quant/norm_quant.so", tmp_path))
    assert int.from_bytes(so.read_bytes()[18:20], "little") == 183  # e_machine EM_AARCH64
    assert elf_archs(so, find_cuobjdump()) == {"sm_121a"}


@pytest.mark.compile
def test_aot_env_provides_what_the_minimal_toolkit_lacks(tmp_path: Path) -> None:
    """The AOT build env adds the cuBLAS/NVRTC headers and the -lcuda / -lnvrtc link libraries
    from pinned wheels: fused_moe_120 (deepgemm_jit_setup.cu) includes nvrtc.h and links -lnvrtc."""
    env = aot_build_env(tmp_path / "work", tmp_path, ["12.1a"], platform.machine())
    source = tmp_path / "probe.cu"
    source.write_text("#include <cublas_v2.h>\n#include <nvrtc.h>\n#include <cuda.h>\n"
                      "extern \"C\" int probe() { int major, minor; nvrtcVersion(&major, &minor);\n"
                      "  CUdevice d; return int(cuDeviceGet(&d, 0)) + major; }\n")
    nvcc = Path(env["CUDA_HOME"]) / "bin" / "nvcc"
    subprocess.run([str(nvcc), "-shared", "-Xcompiler", "-fPIC", str(source), "-o", str(tmp_path / "probe.so"),
                    "-lnvrtc", "-lcuda"], env=env, check=True, capture_output=True)
    needed = subprocess.run(["readelf", "-d", str(tmp_path / "probe.so")], capture_output=True, text=True).stdout
    assert "libnvrtc.so.13" in needed  # the pinned wheel's soname: binds to torch's NVRTC on the target
