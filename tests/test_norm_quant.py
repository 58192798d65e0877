"""Patch 0001 (fused norm -> FP8/MXFP8): SM12x builds read back, and the GPU suite where a GPU exists.

No SM12x GPU exists on these machines: the sm_121a / sm_120a builds are checked by reading the
compiler's output (SASS targets, per-kernel resources, the FP8 conversion instructions); the runtime
tests (upstream-style, tests/utils/test_norm_quant_fused.py) run on any SM89+ GPU present.
"""

from __future__ import annotations

import json
import platform
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from fiseries.lock import LOCK_NAME, load_lock
from fiseries.layout import Layout
from fiseries.cuda import kernel_resources, sass_opcodes
from fiseries.aot import build_aot_modules

pytestmark = [pytest.mark.upstream, pytest.mark.compile]

SM12X_SHARED_LIMIT = 99 * 1024  # opt-in shared memory per block on SM120/SM121
E4M3_CVT = "F2FP.SATFINITE.E4M3.F32.PACK_AB_MERGE_C"  # cvt.rn.satfinite.e4m3x2.f32 (sm_89+)


def _module(wheels: dict, name: str) -> dict:
    (entry,) = [m for m in wheels["manifest"]["modules"] if m["module"] == name]
    return entry


def _check_build(so: Path, arch: str, workdir: Path) -> dict[str, dict[str, int]]:
    resources = kernel_resources(so)
    assert resources and all(key.startswith(f"{arch}:") for key in resources)
    spilling = [k for k, r in resources.items() if r["LOCAL"] or r["STACK"]]
    assert spilling == [], f"kernels using local memory (spills) on {arch}: {spilling}"
    assert max(r["SHARED"] for r in resources.values()) <= SM12X_SHARED_LIMIT
    opcodes = sass_opcodes(so, workdir)
    assert opcodes.get(E4M3_CVT, 0) > 0, "no e4m3 conversion in the SASS"
    return resources


def test_norm_quant_sm121a_build(wheels: dict, tmp_path: Path) -> None:
    entry = _module(wheels, "norm_quant")
    assert entry["sass"] == ["sm_121a"] and entry["kernels_with_local_memory"] == 0
    (aot,) = wheels["dist"].glob("flashinfer_jit_cache-*.whl")
    with zipfile.ZipFile(aot) as zf:
        so = Path(zf.extract("flashinfer_jit_cache/jit_cache/norm_quant/norm_quant.so", tmp_path))
    resources = _check_build(so, "sm_121a", tmp_path / "sass")
    report = {k.split(":", 1)[1]: v for k, v in resources.items()}
    (tmp_path / "resources_sm121a.json").write_text(json.dumps(report, indent=1))
    assert len(report) == entry["kernels"]


def test_norm_quant_sm120a_build(wheels: dict, tmp_path: Path) -> None:
    layout = Layout.for_lock(load_lock(ROOT / LOCK_NAME))
    stage = layout.build / "stage" / "flashinfer"  # the source tree `make wheel` staged
    manifest = tmp_path / "norm_quant.json"
    manifest.write_text(json.dumps({"modules": [
        {"name": "norm_quant", "generator": "flashinfer.jit.norm:gen_norm_quant_module"}]}))
    (module,) = build_aot_modules(layout, stage, ["12.0a"], manifest, tmp_path / "modules", platform.machine())
    assert module["sass"] == ["sm_120a"]
    _check_build(tmp_path / "modules/norm_quant/norm_quant.so", "sm_120a", tmp_path / "sass")


def _gpu_reason() -> str | None:
    """Why the GPU suite cannot run here, or None when an SM89+ CUDA GPU is present."""
    probe = "import torch; print(torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if proc.stdout.strip() != "True":
        return ("no SM89+ CUDA GPU on this machine: the runtime tests of the fused norm->FP8/MXFP8 "
                "kernels ran on the lent H100 and H200 (bench/results/norm_quant_fused_tests_h*.log); "
                "run `make test` on a GPU box")
    return None


def test_norm_quant_gpu_suite(wheels: dict, tmp_path: Path) -> None:
    reason = _gpu_reason()
    if reason:
        pytest.skip(reason)
    site = tmp_path / "site"
    for wheel in wheels["dist"].glob("flashinfer_python-*.whl"):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    suite = ROOT / "build/tree/tests/utils/test_norm_quant_fused.py"
    env = dict(os.environ, PYTHONPATH=str(site), FLASHINFER_WORKSPACE_BASE=str(tmp_path / "ws"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", str(suite)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
