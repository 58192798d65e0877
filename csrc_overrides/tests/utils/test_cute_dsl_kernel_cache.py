"""Exported CuTe-DSL norm kernels (flashinfer.cute_dsl.kernel_cache).

A first process compiles and, with FLASHINFER_CUTE_DSL_CACHE_WRITE=1, exports;
a second process finds the exported kernels and compiles nothing, with
bit-identical outputs. Each process is fresh: the in-memory cache cannot
answer for it.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("cutlass", reason="CuTe DSL (nvidia-cutlass-dsl) is not installed")

# Runs the traced norm ops once, counts cute.compile calls, saves outputs.
_WORKER = textwrap.dedent(
    """
    import json, sys
    import cutlass.cute as cute
    import torch

    compiles = 0
    _compile = cute.compile

    def counting_compile(*args, **kwargs):
        global compiles
        compiles += 1
        return _compile(*args, **kwargs)

    cute.compile = counting_compile
    import flashinfer
    from flashinfer.cute_dsl import kernel_cache

    torch.manual_seed(0)
    outputs = {}
    # hidden sizes no jit-cache wheel ships kernels for: every kernel is the workspace's
    for hidden in (1000, 3000):
        x = torch.randn(7, hidden, dtype=torch.bfloat16, device="cuda")
        w = torch.randn(hidden, dtype=torch.bfloat16, device="cuda")
        r = torch.randn_like(x)
        outputs[f"rmsnorm_{hidden}"] = flashinfer.rmsnorm(x, w)
        outputs[f"gemma_rmsnorm_{hidden}"] = flashinfer.gemma_rmsnorm(x, w)
        x2, r2 = x.clone(), r.clone()
        flashinfer.fused_add_rmsnorm(x2, r2, w)
        outputs[f"fused_add_rmsnorm_{hidden}"] = x2
        outputs[f"fused_add_rmsnorm_residual_{hidden}"] = r2
    torch.cuda.synchronize()
    torch.save({k: v.cpu() for k, v in outputs.items()}, sys.argv[1])
    print(json.dumps({"compiles": compiles, "stats": dict(kernel_cache.stats)}))
    """
)


def _run(tmp_path: pathlib.Path, name: str, write: bool) -> dict:
    env = dict(os.environ, FLASHINFER_WORKSPACE_BASE=str(tmp_path / "workspace"))
    env.pop("FLASHINFER_USE_CUDA_NORM", None)
    env["FLASHINFER_CUTE_DSL_CACHE_WRITE"] = "1" if write else "0"
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, str(tmp_path / f"{name}.pt")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1]) | {"stderr": proc.stderr}


def _exported(tmp_path: pathlib.Path) -> list:
    return sorted((tmp_path / "workspace").rglob("cute_dsl/*/*.json"))


@pytest.fixture(scope="module")
def first_process(tmp_path_factory):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from flashinfer.utils import get_compute_capability

    if get_compute_capability(torch.device("cuda"))[0] < 9:
        pytest.skip("the CuTe-DSL norm kernels are the default on SM90 and newer")
    tmp_path = tmp_path_factory.mktemp("cute_dsl_cache")
    return tmp_path, _run(tmp_path, "first", write=True)


def test_first_process_compiles_and_exports(first_process):
    tmp_path, first = first_process
    assert first["compiles"] == first["stats"]["compiled"] > 0
    assert "loaded" not in first["stats"]
    entries = _exported(tmp_path)
    assert len(entries) == first["compiles"]
    for entry in entries:
        meta = json.loads(entry.read_text())
        assert entry.with_suffix(".o").stat().st_size > 0
        assert meta["getter"].startswith("flashinfer.norm.kernels.")
        assert meta["symbol"] == "flashinfer_cute_dsl_" + entry.stem.rsplit("-", 1)[1]
        assert meta["arch"].startswith("sm_") and meta["device"]


def test_second_process_compiles_nothing(first_process):
    tmp_path, first = first_process
    second = _run(tmp_path, "second", write=False)
    assert second["compiles"] == 0
    assert second["stats"] == {"loaded": first["compiles"]}, second["stderr"][-2000:]
    before = torch.load(tmp_path / "first.pt")
    after = torch.load(tmp_path / "second.pt")
    assert before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=0, atol=0, msg=name)


def test_other_dsl_version_is_refused_and_compiled(first_process):
    tmp_path, first = first_process
    for entry in _exported(tmp_path):
        meta = json.loads(entry.read_text())
        meta["cutlass_dsl"] = "0.0.0"
        entry.write_text(json.dumps(meta))
    third = _run(tmp_path, "third", write=False)
    assert third["compiles"] == first["compiles"]
    assert third["stats"] == {
        "compiled": first["compiles"],
        "refused": first["compiles"],
    }
    assert "was exported with CuTe DSL 0.0.0" in third["stderr"]
