"""Tests for AOT builds from an explicit module manifest (``python -m flashinfer.aot
--manifest``). CPU only: the specs are generated, nothing is compiled.

    python -m pytest tests/test_aot_manifest.py -v
"""

import json
import os

import pytest
import torch

os.environ.setdefault("FLASHINFER_CUDA_ARCH_LIST", "12.1a")

from flashinfer import aot  # noqa: E402
from flashinfer.jit import env as jit_env  # noqa: E402
from flashinfer.jit.attention import gen_single_decode_module  # noqa: E402


@pytest.fixture(autouse=True)
def _gen_src_dir(tmp_path, monkeypatch):
    # Generators that write sources write them under the test's directory.
    monkeypatch.setattr(jit_env, "FLASHINFER_GEN_SRC_DIR", tmp_path / "generated")


def _write_manifest(tmp_path, modules):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"modules": modules}))
    return path


def test_manifest_gives_exactly_the_listed_modules(tmp_path):
    manifest = _write_manifest(
        tmp_path,
        [
            {"name": "sampling", "generator": "flashinfer.jit.sampling:gen_sampling_module"},
            {
                "name": "silu_and_mul",
                "generator": "flashinfer.jit.activation:gen_act_and_mul_module",
                "args": {"act_func_name": "silu"},
            },
        ],
    )
    specs = aot.gen_manifest_modules(manifest)
    assert [spec.name for spec in specs] == ["sampling", "silu_and_mul"]


def test_manifest_dtype_args(tmp_path):
    args = {
        "dtype_q": torch.bfloat16,
        "dtype_kv": torch.float8_e4m3fn,
        "dtype_o": torch.bfloat16,
        "head_dim_qk": 64,
        "head_dim_vo": 64,
        "pos_encoding_mode": 0,
        "use_sliding_window": True,
        "use_logits_soft_cap": False,
    }
    expected = gen_single_decode_module(**args).name
    manifest = _write_manifest(
        tmp_path,
        [
            {
                "name": expected,
                "generator": "flashinfer.jit.attention:gen_single_decode_module",
                "args": {
                    k: str(v) if isinstance(v, torch.dtype) else v
                    for k, v in args.items()
                },
            }
        ],
    )
    assert [spec.name for spec in aot.gen_manifest_modules(manifest)] == [expected]


@pytest.mark.parametrize(
    "modules, message",
    [
        (
            [{"name": "norm_v2", "generator": "flashinfer.jit.norm:gen_norm_module"}],
            "gives module 'norm', the manifest names 'norm_v2'",
        ),
        (
            [{"name": "norm", "generator": "flashinfer.jit.norm:gen_norm_module"}] * 2,
            "module 'norm' listed twice",
        ),
        (
            [{"name": "x", "generator": "os:getcwd"}],
            "is not 'flashinfer.jit.<module>:<function>'",
        ),
    ],
)
def test_manifest_errors(tmp_path, modules, message):
    with pytest.raises(ValueError, match=message):
        aot.gen_manifest_modules(_write_manifest(tmp_path, modules))
