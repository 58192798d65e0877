"""Patch 0008 (exported CuTe-DSL kernels) on this GPU-less box: upstream's RMSNorm kernel exported for
sm_121a as a GB10 reports itself, with sm_121a SASS in the object; a fresh process finds it instead of
compiling; another device, argument spelling or DSL version behaves as the key says."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from fiseries.cuda import embedded_cubins, find_cuobjdump
from fiseries.cute_dsl import export_kernels, manifest_kernels
from fiseries.layout import Layout
from fiseries.lock import LOCK_NAME, load_lock

pytestmark = [pytest.mark.upstream, pytest.mark.compile]

# A process that sees one GB10 (the properties the norm kernels read; the cluster probe fails without a
# driver, so the norm kernels take their SM12x default of 8) and runs `sys.argv[1]` against build/tree.
WORKER = """
import json, sys, types
from pathlib import Path
import torch

props = types.SimpleNamespace(major=12, minor=1, shared_memory_per_block_optin=int(sys.argv[3]),
                              multi_processor_count=48)
torch.cuda.get_device_properties = lambda device=None: props
torch.cuda.current_device = lambda: 0
import cutlass.cute as cute

compiles = 0
_compile = cute.compile


def counting_compile(*args, **kwargs):
    global compiles
    compiles += 1
    return _compile(*args, **kwargs)


cute.compile = counting_compile
from flashinfer.cute_dsl import kernel_cache
from flashinfer.norm.kernels.rmsnorm import _get_compiled_rmsnorm_kernel as getter

directory = Path(sys.argv[2])
result = {}
if sys.argv[1] == "export":
    result["object"] = str(getter.export(directory, "bfloat16", 2880, 0.0, False, 121))
else:
    kernel_cache.search_dirs = lambda: (directory,)
    kernel = getter("bfloat16", 2880, 0.0, False, sm_version=121, contiguous=True)
    result["kernel"] = type(kernel).__name__
result |= {"compiles": compiles, "stats": dict(kernel_cache.stats)}
print(json.dumps(result))
"""
GB10_SMEM = "101376"


def run_worker(action: str, directory: Path, smem: str = GB10_SMEM) -> dict:
    proc = subprocess.run([sys.executable, "-c", WORKER, action, str(directory), smem], capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT / "build/tree"), "CUTE_DSL_ARCH": "sm_121a",
                                          "PATH": "/usr/bin:/bin", "HOME": str(directory)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1]) | {"stderr": proc.stderr}


@pytest.fixture(scope="module")
def exported(checked: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    directory = tmp_path_factory.mktemp("cute_dsl")
    result = run_worker("export", directory)
    assert result["compiles"] == 1
    return directory, result


def test_export_holds_sm121a_sass_and_its_key(exported: tuple[Path, dict]) -> None:
    directory, result = exported
    obj = Path(result["object"])
    assert obj.parent == directory / "sm_121a"
    meta = json.loads(obj.with_suffix(".json").read_text())
    assert meta["getter"] == "flashinfer.norm.kernels.rmsnorm._get_compiled_rmsnorm_kernel"
    assert meta["args"] == {"dtype_str": "bfloat16", "H": 2880, "weight_bias": 0.0, "enable_pdl": False,
                            "sm_version": 121, "contiguous": True}
    assert meta["device"] == {"shared_memory_per_block_optin": 101376, "max_cluster_n": 8}
    cubins = embedded_cubins(obj)
    assert len(cubins) == 1
    cubin = obj.with_suffix(".cubin")
    cubin.write_bytes(cubins[0])
    sass = subprocess.run([find_cuobjdump(), "--dump-sass", str(cubin)], capture_output=True, text=True,
                          check=True).stdout
    assert ".target\tsm_121a" in sass and "RMSNormKernel" in sass


def test_fresh_process_loads_instead_of_compiling(exported: tuple[Path, dict]) -> None:
    directory, _ = exported
    result = run_worker("load", directory)
    assert result["compiles"] == 0 and result["stats"] == {"loaded": 1}
    assert result["kernel"] == "Function"  # tvm_ffi.Function, what cute.compile's TVM-FFI result calls


def test_other_device_properties_miss_and_compile(exported: tuple[Path, dict]) -> None:
    directory, _ = exported
    result = run_worker("load", directory, smem="232448")
    assert result["compiles"] == 1 and result["stats"] == {"compiled": 1}


def test_other_dsl_version_is_refused_with_a_warning(exported: tuple[Path, dict], tmp_path: Path) -> None:
    directory, result = exported
    copy = tmp_path / "cute_dsl"
    (copy / "sm_121a").mkdir(parents=True)
    obj = Path(result["object"])
    (copy / "sm_121a" / obj.name).write_bytes(obj.read_bytes())
    meta = json.loads(obj.with_suffix(".json").read_text()) | {"cutlass_dsl": "4.7.1"}
    (copy / "sm_121a" / obj.with_suffix(".json").name).write_text(json.dumps(meta))
    result = run_worker("load", copy)
    assert result["compiles"] == 1 and result["stats"] == {"refused": 1, "compiled": 1}
    assert "was exported with CuTe DSL 4.7.1" in result["stderr"]


def test_an_object_that_does_not_load_is_refused_and_compiled(exported: tuple[Path, dict], tmp_path: Path) -> None:
    directory, result = exported
    obj = Path(result["object"])
    copy = tmp_path / "cute_dsl" / "sm_121a"
    copy.mkdir(parents=True)
    (copy / obj.name).write_bytes(obj.read_bytes()[:4096])  # truncated
    (copy / obj.with_suffix(".json").name).write_bytes(obj.with_suffix(".json").read_bytes())
    result = run_worker("load", copy.parent)
    assert result["compiles"] == 1 and result["stats"] == {"refused": 1, "compiled": 1}
    assert f"{obj.stem}.o does not load" in result["stderr"]


AARCH64_PYTHON = os.environ.get("FISERIES_AARCH64_PYTHON")


@pytest.mark.skipif(AARCH64_PYTHON is None, reason=(
    "needs an aarch64 Python with CuTe DSL and torch: FISERIES_AARCH64_PYTHON=<dir>/python after "
    "aot_build/qemu_aarch64_python.sh <dir> (about 8 GB of aarch64 packages, so not built by make test)"))
def test_cross_export_for_an_aarch64_host(checked: str, tmp_path: Path) -> None:
    """`make wheel HOST_ARCH=aarch64 DSL_PYTHON=...`'s CuTe-DSL part: the SM121 kernels exported by an aarch64
    Python are aarch64 objects (export_kernels checks each: ELF machine, one cubin, exactly sm_121a SASS) with
    the same keys and the same cubins as this machine's export of them."""
    layout = Layout.for_lock(load_lock(ROOT / LOCK_NAME))
    manifest = ROOT / "aot_build" / "manifests" / "sm121_decode.json"
    cross = export_kernels(layout, layout.tree, ["12.1a"], manifest, tmp_path / "aarch64", "aarch64", AARCH64_PYTHON)
    native = export_kernels(layout, layout.tree, ["12.1a"], manifest, tmp_path / "native", platform.machine())
    assert len(cross["kernels"]) == len(native["kernels"]) == len(manifest_kernels(manifest)) > 0
    for ours, theirs in zip(cross["kernels"], native["kernels"], strict=True):
        assert isinstance(ours, dict) and isinstance(theirs, dict)
        assert ours["object"] == theirs["object"]
        aarch64_obj, native_obj = tmp_path / "aarch64" / str(ours["object"]), tmp_path / "native" / str(ours["object"])
        assert aarch64_obj.with_suffix(".json").read_bytes() == native_obj.with_suffix(".json").read_bytes()
        assert embedded_cubins(aarch64_obj) == embedded_cubins(native_obj)
