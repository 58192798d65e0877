"""Compile the SM12x CuTe-DSL MXFP8 x MXFP4 MoE kernels of a FlashInfer tree for one arch, no GPU.

Usage: python compile_mxfp8_mxfp4.py --tree build/tree --arch sm_121a --out DIR [--granularities 128,64,32]

CuTe DSL compiles without a driver when CUTE_DSL_ARCH names the target (set here before `cutlass`
is imported). The kernel modules are imported without running flashinfer/__init__.py (it needs
tvm_ffi and the JIT): the parent packages are registered bare, and flashinfer.utils /
flashinfer.autotuner, of which the modules use only pure helpers and tuning types, are stubbed.
Every (kernel, tile, epilogue, activation granularity) the host wrappers accept is built through
their own Op classes and make_args, compiled with cute.compile, and its cubin dumped; a JSON
record per kernel goes to DIR/compiled.json. Tactics the wrapper rejects at a granularity are
recorded as rejected (not compiled).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

PKG = "flashinfer.fused_moe.cute_dsl.blackwell_sm12x"
EXPERTS, TOKENS, N, K, GRID_X = 8, 16, 256, 512, 48


@dataclass
class Compiled:
    kernel: str
    tile: tuple[int, int, int]
    epi: str
    granularity: int
    arch: str
    ab_stage: int
    smem_bytes: int
    compile_s: float
    cubin: str | None  # None: the wrapper rejects this tactic at this granularity


def _bare_package(name: str, path: Path) -> None:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module


def import_sm12x_package(tree: Path) -> None:
    """Make PKG importable from `tree` without flashinfer's package __init__ files."""
    root = tree / "flashinfer"
    _bare_package("flashinfer", root)
    _bare_package("flashinfer.fused_moe", root / "fused_moe")
    _bare_package("flashinfer.fused_moe.cute_dsl", root / "fused_moe" / "cute_dsl")
    _bare_package(PKG, root / "fused_moe" / "cute_dsl" / "blackwell_sm12x")
    utils = types.ModuleType("flashinfer.utils")
    utils.ceil_div = lambda x, y: (x + y - 1) // y  # type: ignore[attr-defined]
    utils.round_up = lambda x, y: (x + y - 1) // y * y  # type: ignore[attr-defined]
    sys.modules["flashinfer.utils"] = utils
    tuner = types.ModuleType("flashinfer.autotuner")
    for name in ("AutoTuner", "TunableRunner", "TuningConfig"):
        setattr(tuner, name, type(name, (), {}))
    tuner.autotune = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    sys.modules["flashinfer.autotuner"] = tuner


def _module(name: str) -> Any:
    return importlib.import_module(f"{PKG}.{name}")


def _inputs(kernel: str, granularity: int) -> Callable[[Any], tuple]:
    """CPU tensors with the dtypes/shapes the host wrapper passes to make_args (op -> args)."""
    import torch

    layout = _module("_moe_utils.sm12x_blockscaled_layout")
    pack = layout.UE8M0_PACK_NUM
    rows = layout.compute_padded_offset(TOKENS, EXPERTS, layout.SF_M_ALIGN)
    gated = kernel in ("fc1_act", "fc1_act_q1")
    b_rows = 2 * N if gated else N
    a_q = torch.zeros(TOKENS, K, dtype=torch.float8_e4m3fn)
    a_scale = torch.zeros(-(-K // (granularity * pack)), rows, dtype=torch.int32)
    b_q = torch.zeros(EXPERTS, b_rows, K // 2, dtype=torch.uint8)
    b_scale = torch.zeros(EXPERTS, K // (32 * pack), b_rows, dtype=torch.int32)
    m_indptr = torch.zeros(EXPERTS + 1, dtype=torch.int32)
    km = _module(f"kernel_moe_mxfp8_mxfp4_{kernel}")

    def make(op: Any) -> tuple:
        if kernel == "fc1_act_q1":
            host = _module("moe_mxfp8_mxfp4_fc1_act_q1")
            out_q = torch.zeros(TOKENS, N, dtype=torch.float8_e4m3fn)
            out_sf = torch.zeros(host.out_sf_shape(TOKENS, N, EXPERTS, granularity), dtype=torch.int32)
            return km.make_args(a_q, a_scale, b_q, b_scale, out_q, out_sf.view(torch.uint8), m_indptr,
                                op.cfg.epi, op.cfg.TILE)
        if kernel == "fc2_finalize":
            out = torch.zeros(TOKENS, N, dtype=torch.bfloat16)
            src = torch.zeros(TOKENS, dtype=torch.int32)
            weights = torch.zeros(TOKENS, dtype=torch.float32)
            return km.make_args(a_q, a_scale, b_q, b_scale, out, src, weights, m_indptr, op.cfg.epi,
                                op.cfg.TILE)
        out = torch.zeros(TOKENS, N, dtype=torch.bfloat16)
        return km.make_args(a_q, a_scale, b_q, b_scale, out, m_indptr, op.cfg.epi, op.cfg.TILE)

    return make


# Kernels whose host Op takes keyword arguments: (host module, Op class, tile-K attribute, output
# dtype, takes an activation).
_KEYWORD_OPS = {
    "gemm": ("moe_mxfp8_mxfp4_gemm", "CuteDslSm120GroupedMxfp8Mxfp4Op", "PLAIN_TILE_K", "bfloat16", False),
    "fc1_act": ("moe_mxfp8_mxfp4_fc1_act", "CuteDslSm120GroupedMxfp8Mxfp4Fc1ActOp", "BK", "bfloat16", True),
    "fc1_act_q1": ("moe_mxfp8_mxfp4_fc1_act_q1", "CuteDslSm120GroupedMxfp8Mxfp4Fc1ActQ1Op", "BK",
                   "float8_e4m3fn", True),
}


def _ops(kernel: str, granularity: int) -> list[tuple[tuple[int, int, int], Any, Callable[[], Any]]]:
    """(tile, epilogue, op factory) for every tile x epilogue the host wrapper lists."""
    import torch

    from flashinfer.tllm_enums import ActivationType

    g = granularity
    if kernel in _KEYWORD_OPS:
        module, op_name, tile_k_attr, out_dtype, has_activation = _KEYWORD_OPS[kernel]
        host = _module(module)
        op_cls, tile_k = getattr(host, op_name), getattr(host, tile_k_attr)
        kwargs: dict[str, Any] = {"n": N, "k": K, "out_dtype": getattr(torch, out_dtype),
                                  "scale_granularity_k": g}
        if has_activation:
            kwargs["activation"] = ActivationType.Swiglu
        return [((bm, bn, tile_k), epi, lambda t=(bm, bn, tile_k), e=epi: op_cls(tile=t, epi=e, **kwargs))
                for bm, bn in op_cls.TILES for epi in host.epi_tactics((bm, bn, tile_k))]
    host = _module("moe_mxfp8_mxfp4_fc2_finalize")
    return [((bm, bn, host.BK), epi,
             lambda t=(bm, bn, host.BK), e=epi: host.CuteDslSm120GroupedMxfp8Mxfp4Fc2FinalizeOp(
                 N, K, t, e, False, g))
            for bm, bn in host.TILES for epi in host.EPIS]


KERNELS = ("gemm", "fc1_act", "fc1_act_q1", "fc2_finalize")


def compile_all(tree: Path, arch: str, out: Path, granularities: list[int]) -> list[Compiled]:
    import cutlass.cute as cute
    from cutlass.runtime import make_fake_stream

    import_sm12x_package(tree)
    records = []
    for kernel in KERNELS:
        _module(f"kernel_moe_mxfp8_mxfp4_{kernel}")._stream = make_fake_stream
        for g in granularities:
            make_args = _inputs(kernel, g)
            for tile, epi, make_op in _ops(kernel, g):
                name = f"{kernel}_{tile[0]}x{tile[1]}_{epi.name}_g{g}"
                try:
                    op = make_op()
                except TypeError:
                    records.append(Compiled(kernel, tile, epi.name, g, arch, 0, 0, 0.0, None))
                    continue
                dump = out / name
                dump.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                cute.compile(op.build(GRID_X), *make_args(op), options=f"--keep-cubin --dump-dir {dump}")
                seconds = time.perf_counter() - started
                cubins = sorted(dump.glob(f"*.{arch}.cubin"))
                if len(cubins) != 1:
                    raise RuntimeError(f"{name}: expected one {arch} cubin in {dump}, found {cubins}")
                records.append(Compiled(kernel, tile, epi.name, g, arch, op.ab_stage,
                                        op.cfg.smem_bytes, round(seconds, 2), str(cubins[0])))
                print(f"{name}: ab_stage {op.ab_stage}, {op.cfg.smem_bytes} B smem, {seconds:.1f} s",
                      flush=True)
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="FlashInfer source tree (build/tree)")
    parser.add_argument("--arch", required=True, choices=("sm_120a", "sm_121a"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--granularities", default="128,64,32")
    args = parser.parse_args()
    os.environ["CUTE_DSL_ARCH"] = args.arch  # read when cutlass is imported: there is no GPU to detect
    args.out.mkdir(parents=True, exist_ok=True)
    records = compile_all(args.tree.resolve(), args.arch, args.out.resolve(),
                          [int(g) for g in args.granularities.split(",")])
    (args.out / "compiled.json").write_text(json.dumps([asdict(r) for r in records], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
