"""Patch 0001 (fused norm -> FP8/MXFP8): the SM12x builds read back.

No SM12x GPU exists on these machines: the sm_121a / sm_120a builds are checked by reading the
compiler's output (SASS targets, per-kernel resources, the FP8 conversion instructions). The runtime
tests (upstream-style, tests/utils/test_norm_quant_fused.py) are a step of `make gpu-test`.
"""

from __future__ import annotations

import json
import platform
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
