"""Patch 0005 (SM12x MXFP8 x MXFP4 activation scale granularity g = 128 / 64 / 32): the activation
scale-factor (SF) buffers on this GPU-less box, from the code in build/tree (imported through the
compile harness, nothing rebuilt) against expectations written here from the layout's definition:

- host shapes: the Triton route + quantize workspace (FC1's a_scale), the Q1 scales the runner
  allocates with out_sf_shape (FC2's a_scale) and check_a_scale_granularity agree on
  ceil(ceil(K / g) / 4) int32 words (four UE8M0 bytes each) by a 4-aligned row count that holds every
  expert's 16-byte-aligned block of rows, for token counts off every multiple of 4 and 128;
- kernel layouts: every MXFP8 x MXFP4 kernel's SF config reads the token side at g (the weights at
  32), and its global SF layout (deduce_sf{a,b}_layout) composed with its in-register UE8M0 view
  (make_sf{a,b}_ue8m0_view), both evaluated by CuTe DSL itself, is a bijection onto the buffer's
  bytes that reads the scale of (row m, K block kb) exactly where the writer's reference packing
  (tests/moe/sm12x_mxfp8_reference.pack_words, which the upstream-style test matches bit-exactly
  against the Triton kernel on a GPU) put it;
- rejections: a buffer of another granularity, a truncated or over-long one, and a granularity
  outside {128, 64, 32} raise ValueError (the wrappers' own check, before any CUDA call).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import sys
import types
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch

from conftest import ROOT

pytestmark = [pytest.mark.upstream, pytest.mark.compile]

TREE = ROOT / "build/tree"
HARNESS = ROOT / "tests/sm12x_dsl/compile_mxfp8_mxfp4.py"
REFERENCE = TREE / "tests/moe/sm12x_mxfp8_reference.py"
GRANULARITIES = (128, 64, 32)
NOT_GRANULARITIES = (0, 16, 48, 96, 256)
KERNELS = ("gemm", "fc1_act", "fc1_act_q1", "fc2_finalize")

# From the layout's definition, not from the patch's constants:
SCALES_PER_WORD = 4  # UE8M0 bytes per int32 SF word (the 32-bit element the kernels' TMA / S2R move)
ROW_ALIGN = 16 // 4  # TMA global addresses are 16-byte aligned: an expert's SF rows start on 4 words
MMA_K = 32  # K of one MXF8F6F4 block-scaled MMA (16x8x32): the finest slice one scale can cover
WEIGHT_GRANULARITY = 32  # the MXFP4 weights keep the OCP MX block

# (tokens, top_k, hidden = FC1's K, intermediate = FC2's K, experts). hidden is a multiple of
# 4 * 128 (the route kernel requires a whole word at every g); the intermediate sizes are not
# always (1152 / 512 and 384 / 512 leave a part-filled last word at g = 128).
SHAPES = ((1, 1, 512, 128, 3), (13, 2, 1024, 384, 8), (130, 4, 2048, 768, 16),
          (200, 8, 1536, 1152, 32))


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def sf_words(k: int, g: int) -> int:
    """int32 words per row: ceil(K / g) UE8M0 scales, padded to whole words of four."""
    return ceil_div(ceil_div(k, g), SCALES_PER_WORD)


def expert_start(offset: int, expert: int) -> int:
    """First SF row of an expert whose tokens start at row `offset`: each earlier expert may leave up
    to ROW_ALIGN - 1 pad rows, rounded down to ROW_ALIGN. This is what the kernels' producers read
    from (`(m_offset + group * (SF_M_ALIGN - 1)) & -SF_M_ALIGN`) and the route kernel writes to."""
    return (offset + expert * (ROW_ALIGN - 1)) // ROW_ALIGN * ROW_ALIGN


def worst_case_rows(pairs: int, experts: int) -> int:
    """The last SF row any routing of `pairs` rows over `experts` can touch, plus one. Expert blocks
    are ordered, so the last expert ends last; its start depends only on its token offset o."""
    return max(expert_start(o, experts - 1) + pairs - o for o in range(pairs + 1))


@dataclass(eq=False)  # hashed by identity: the key of _tactics' cache
class Sm12x:
    layout: Any  # _moe_utils.sm12x_blockscaled_layout
    q0: Any  # moe_mxfp8_q0_route_triton
    hosts: dict[str, Any]  # kernel name -> its host module (moe_mxfp8_mxfp4_<kernel>)
    harness: Any  # tests/sm12x_dsl/compile_mxfp8_mxfp4.py
    pack_words: Callable[[torch.Tensor], torch.Tensor]


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _triton_stand_in() -> dict[str, types.ModuleType]:
    """Triton is not in this venv; the route module needs it only to decorate its kernels, and the
    functions used here are plain Python, so a stand-in whose jit returns the function lets the
    module import. Real Triton is used where it is installed."""
    if importlib.util.find_spec("triton") is not None:
        return {}
    triton = types.ModuleType("triton")
    language = types.ModuleType("triton.language")
    language.constexpr = type("constexpr", (), {})  # type: ignore[attr-defined]
    triton.jit = lambda fn=None, **_: fn if fn is not None else (lambda f: f)  # type: ignore[attr-defined]
    triton.language = language  # type: ignore[attr-defined]
    return {"triton": triton, "triton.language": language}


@pytest.fixture(scope="module")
def sm12x(checked: str) -> Iterator[Sm12x]:
    if importlib.util.find_spec("cutlass") is None:
        pytest.skip("CuTe DSL (nvidia-cutlass-dsl) is not installed")
    if "cutlass" in sys.modules and not os.environ.get("CUTE_DSL_ARCH", "").startswith("sm_12"):
        pytest.skip("cutlass was imported before CUTE_DSL_ARCH could name an SM12x target")
    saved = dict(sys.modules)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CUTE_DSL_ARCH", os.environ.get("CUTE_DSL_ARCH", "sm_120a"))  # no GPU to detect
            harness = _load("sm12x_compile_harness", HARNESS)
            harness.import_sm12x_package(TREE)
            sys.modules.update(_triton_stand_in())
            pkg = harness.PKG
            yield Sm12x(
                layout=importlib.import_module(f"{pkg}._moe_utils.sm12x_blockscaled_layout"),
                q0=importlib.import_module(f"{pkg}.moe_mxfp8_q0_route_triton"),
                hosts={k: importlib.import_module(f"{pkg}.moe_mxfp8_mxfp4_{k}") for k in KERNELS},
                harness=harness,
                pack_words=_load("sm12x_mxfp8_reference", REFERENCE).pack_words,
            )
    finally:  # the bare flashinfer packages, the harness and any stand-in go again
        for name in set(sys.modules) - set(saved):
            del sys.modules[name]
        sys.modules.update(saved)


@cache
def _tactics(sm12x: Sm12x, kernel: str, g: int) -> list[Any]:
    """The host Op of every (tile, epilogue) the kernel's wrapper accepts at g (harness list)."""
    ops = []
    for _, _, make_op in sm12x.harness._ops(kernel, g):
        try:
            ops.append(make_op())
        except TypeError:  # rejected at this g (WG_QUANT_R2S below 128): nothing to lay out
            pass
    return ops


def _sides(op: Any) -> tuple[str, str]:
    """(token side, weight side) of the SF config: swap-AB tiles put the tokens on B."""
    return ("b", "a") if op.cfg.mma.swap_ab else ("a", "b")


def _cute_layouts(sf: Any, side: str, rows: int, k: int, bk: int, num_mn: int,
                  enumerate_global: bool) -> dict[str, Any]:
    """The kernel's own layout functions, evaluated by CuTe DSL while tracing a host function (static
    layout algebra folds to Python ints there): the global SF layout over (row, word, 1) and the
    in-register UE8M0 view of a fragment of `num_mn` words, indexed as the mainloops do:
    [vector element, mn, k_block (MMA_K slice of the k tile), k_in_sf (k tile within the word)]."""
    import cutlass.cute as cute
    from cutlass.cute.runtime import from_dlpack

    out: dict[str, Any] = {}

    def probe(words):
        glob = getattr(sf, f"deduce_sf{side}_layout")(rows, k, 1)
        out["shape"], out["stride"] = glob.shape, glob.stride
        if enumerate_global:
            out["word"] = {(m, w): cute.crd2idx((m, w, 0), glob)
                           for m in range(rows) for w in range(glob.shape[1])}
        frg = cute.make_tensor(words.iterator, cute.make_layout((1, num_mn), stride=(0, 1)))
        view = getattr(sf, f"make_sf{side}_ue8m0_view")(frg, bk).layout
        modes = [cute.size(view, mode=[i]) for i in range(4)]
        out["modes"] = modes
        out["byte"] = {(v, mn, kb, kt): cute.crd2idx((v, mn, kb, kt), view)
                       for v in range(modes[0]) for mn in range(modes[1])
                       for kb in range(modes[2]) for kt in range(modes[3])}

    probe.__annotations__ = {"words": cute.Tensor}  # a real type: this file's annotations are strings
    cute.compile(cute.jit(probe), from_dlpack(torch.zeros(num_mn, dtype=torch.int32)))
    return out


def _routing(tokens: int, top_k: int, experts: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, experts, (tokens, top_k), generator=gen, dtype=torch.int32)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "t{}x{}_h{}_i{}_e{}".format(*s))
@pytest.mark.parametrize("g", GRANULARITIES)
def test_host_sf_buffers(sm12x: Sm12x, g: int, shape: tuple[int, int, int, int, int]) -> None:
    """The buffers the runner allocates at g (route workspace = FC1's a_scale, out_sf_shape = Q1's
    scales = FC2's a_scale) are [ceil(ceil(K / g) / 4), rows] int32, pass the kernels' a_scale check,
    and share one row space that is 4-aligned and holds every routing's 16-byte-aligned expert blocks."""
    tokens, top_k, hidden, inter, experts = shape
    pairs = tokens * top_k
    check = sm12x.layout.check_a_scale_granularity
    q0, q1 = sm12x.q0, sm12x.hosts["fc1_act_q1"]

    assert q0.scale_block_k(g) == SCALES_PER_WORD * g
    x = torch.zeros(tokens, hidden, dtype=torch.bfloat16)
    ws = q0.make_mxfp8_q0_route_workspace(x, _routing(tokens, top_k, experts, g), experts,
                                          scale_granularity_k=g)
    words, rows = ws.scale_out.shape
    assert words == sf_words(hidden, g) == hidden // (SCALES_PER_WORD * g)
    assert ws.scale_out.dtype is torch.int32 and ws.scale_out.is_contiguous()
    assert ws.q_out.shape == (pairs, hidden)
    check(ws.scale_out, hidden, g)

    # rows: a whole number of 16-byte TMA rows, enough for the worst routing, no more than one
    # alignment's padding per expert; and exactly the worst case rounded up once every expert can
    # be made to pad (pairs >= experts - 1)
    worst = worst_case_rows(pairs, experts)
    assert rows % ROW_ALIGN == 0 and worst <= rows <= pairs + experts * ROW_ALIGN
    if pairs >= experts - 1:
        assert rows == ceil_div(worst, ROW_ALIGN) * ROW_ALIGN
    rng = random.Random(pairs * experts)
    for _ in range(50):  # random routings: aligned, disjoint, in-buffer expert blocks
        counts = [0] * experts
        for _ in range(pairs):
            counts[rng.randrange(experts)] += 1
        offset, end = 0, 0
        for e, c in enumerate(counts):
            start = expert_start(offset, e)
            assert start % ROW_ALIGN == 0 and start >= end
            offset, end = offset + c, start + c
        assert end <= rows

    # the caller-owned workspace2 sized by mxfp8_q0_route_workspace_shapes ends with the scales, and
    # only the scale region depends on g
    shape13, shape2 = q0.mxfp8_q0_route_workspace_shapes(tokens, hidden, top_k, experts, g)
    w13, w2 = torch.empty(shape13, dtype=torch.int16), torch.empty(shape2, dtype=torch.int16)
    sliced = q0.make_mxfp8_q0_route_workspace(x, _routing(tokens, top_k, experts, g), experts,
                                              workspace13=w13, workspace2=w2, scale_granularity_k=g)
    assert sliced.scale_out.shape == (words, rows)
    tail = sliced.scale_out.data_ptr() + sliced.scale_out.numel() * 4
    assert tail == w2.data_ptr() + w2.numel() * w2.element_size()
    base = q0.mxfp8_q0_route_workspace_shapes(tokens, hidden, top_k, experts, 128)[1][0]
    assert shape2[0] - base == 2 * (words - sf_words(hidden, 128)) * rows  # int16 units

    # Q1 output = FC2's a_scale: g along the intermediate dim, the same row space as FC1's
    sf1 = q1.out_sf_shape(pairs, inter, experts, g)
    assert sf1 == (sf_words(inter, g), rows)
    check(torch.zeros(sf1, dtype=torch.int32), inter, g)


@pytest.mark.parametrize("g", GRANULARITIES)
def test_kernel_sf_configs_and_register_views(sm12x: Sm12x, g: int) -> None:
    """Every accepted tactic of the four kernels: the token side of its SF config is at g and the
    weight side at 32 (swapped with the operands on swap-AB tiles), a word spans 4g / bk k tiles,
    Q1 quantizes its output at g, and the UE8M0 view the MMA reads gives, for the k-th element of a
    k tile, byte (k_in_sf * bk + k) // grank of that row's word."""
    seen_swap = set()
    for kernel in KERNELS:
        ops = _tactics(sm12x, kernel, g)
        assert ops, (kernel, g)
        for op in ops:
            sf, (tok, wgt) = op.cfg.load_sf, _sides(op)
            seen_swap.add((kernel, op.cfg.mma.swap_ab))
            assert getattr(sf, f"grank_{tok}") == g and getattr(sf, f"grank_{wgt}") == WEIGHT_GRANULARITY
            bk = op.cfg.TILE[2]
            if kernel == "fc1_act_q1":
                assert op.build(1).grank_q == g, op.tactic  # Q1's scales are what FC2 reads at g
            for side, grank in ((tok, g), (wgt, WEIGHT_GRANULARITY)):
                assert SCALES_PER_WORD * grank % bk == 0 and bk % MMA_K == 0, (op.tactic, bk)
                per_word = SCALES_PER_WORD * grank // bk
                assert getattr(sf, f"k_tiles_per_pack_{side}")(bk) == per_word
                num_mn = 3
                got = _cute_layouts(sf, side, ROW_ALIGN, bk, bk, num_mn, enumerate_global=False)
                assert got["modes"] == [MMA_K, num_mn, bk // MMA_K, per_word], (op.tactic, side)
                for (v, mn, kb, kt), byte in got["byte"].items():
                    k_in_word = kt * bk + kb * MMA_K + v
                    assert byte == SCALES_PER_WORD * mn + k_in_word // grank, (op.tactic, side, v, mn, kb, kt)
                assert sorted(set(got["byte"].values())) == list(range(SCALES_PER_WORD * num_mn))
    # swap-AB and plain tiles both covered for the kernels that have both
    assert {("gemm", True), ("gemm", False), ("fc1_act_q1", True), ("fc1_act_q1", False)} <= seen_swap


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "t{}x{}_h{}_i{}_e{}".format(*s))
@pytest.mark.parametrize("g", GRANULARITIES)
def test_scale_addresses(sm12x: Sm12x, g: int, shape: tuple[int, int, int, int, int]) -> None:
    """Whole-buffer address map at g, for FC1's a_scale (K = hidden, route workspace) and FC2's
    (K = intermediate, out_sf_shape): the kernels' global layout over each buffer is its contiguous
    [word, row] order, and the byte the mainloop reads for (row m, K block kb) - word
    (k tile // tiles per word, m) through deduce_sf*_layout, byte through the UE8M0 view - holds the
    scale the writer's reference packing stored for (m, kb); over every padded block slot this is a
    bijection onto the buffer's bytes."""
    tokens, top_k, hidden, inter, experts = shape
    pairs = tokens * top_k
    q0, q1 = sm12x.q0, sm12x.hosts["fc1_act_q1"]
    x = torch.zeros(tokens, hidden, dtype=torch.bfloat16)
    fc1_a = q0.make_mxfp8_q0_route_workspace(x, _routing(tokens, top_k, experts, 0), experts,
                                             scale_granularity_k=g).scale_out
    fc2_a = torch.zeros(q1.out_sf_shape(pairs, inter, experts, g), dtype=torch.int32)
    readers = {"fc1": ("gemm", "fc1_act", "fc1_act_q1"), "fc2": ("fc2_finalize",)}
    for name, buf, k in (("fc1", fc1_a, hidden), ("fc2", fc2_a, inter)):
        words, rows = buf.shape
        slots = SCALES_PER_WORD * words  # ceil(K / g) scales, padded to whole words
        assert ceil_div(k, g) <= slots < ceil_div(k, g) + SCALES_PER_WORD
        # writer: a distinct 24-bit id per (m, kb), packed byte-plane by byte-plane with the reference
        ids = torch.arange(rows * slots, dtype=torch.int64).view(rows, slots)
        at = torch.zeros(rows * words * SCALES_PER_WORD, dtype=torch.int64)
        assert sys.byteorder == "little"  # as the GPU: byte j of an int32 is its bits 8j..8j+7
        for plane in range(3):
            packed = sm12x.pack_words(((ids >> (8 * plane)) & 0xFF).to(torch.int32))  # [rows, words]
            # the Triton kernel's buffer is [word, row]: scale_out[:, row].t() == pack_words(...)[row]
            at |= packed.t().contiguous().view(torch.uint8).flatten().to(torch.int64) << (8 * plane)
        assert torch.equal(at.sort().values, torch.arange(rows * slots))
        # reader: each kernel that reads this buffer, on a plain tile (token SFs on A) and, where it
        # has them, a swap-AB tile (token SFs on B)
        ops: dict[tuple[str, bool], Any] = {}
        for kernel in readers[name]:
            for op in _tactics(sm12x, kernel, g):
                ops.setdefault((kernel, op.cfg.mma.swap_ab), op)
        assert {swap for _, swap in ops} == ({False, True} if name == "fc1" else {False}), name
        for key, op in ops.items():
            sf, (side, _) = op.cfg.load_sf, _sides(op)
            bk = op.cfg.TILE[2]
            got = _cute_layouts(sf, side, rows, k, bk, 1, enumerate_global=True)
            assert got["shape"] == (rows, words, 1), key
            assert got["stride"] == (buf.stride(1), buf.stride(0), buf.numel()), key
            word_at = torch.tensor([[got["word"][(m, w)] for w in range(words)] for m in range(rows)])
            per_word = got["modes"][3]
            slot_word, slot_byte = [], []
            for kb in range(slots):
                hits = set()
                for kk in (kb * g, kb * g + g - 1):  # first and last element of the block
                    tile, k_in_tile = divmod(kk, bk)
                    word, k_in_sf = divmod(tile, per_word)  # the mainloop's word and k tile in it
                    hits.add((word, got["byte"][(k_in_tile % MMA_K, 0, k_in_tile // MMA_K, k_in_sf)]))
                assert len(hits) == 1, (key, kb, hits)
                (word, byte), = hits
                slot_word.append(word)
                slot_byte.append(byte)
            addr = SCALES_PER_WORD * word_at[:, slot_word] + torch.tensor(slot_byte)  # [rows, slots]
            # distinct ids read back in place: the map is injective, and rows * slots = the bytes
            assert torch.equal(at[addr.flatten()], ids.flatten()), key


def test_wrong_combinations_are_rejected(sm12x: Sm12x) -> None:
    """ValueError for an a_scale of another granularity (whenever the word counts differ, i.e. the
    shape can tell), a truncated or over-long one, and a granularity outside {128, 64, 32}; from the
    check itself and from each kernel wrapper, which runs it before touching CUDA. The Ops refuse
    such a granularity (can_implement False, TypeError from the constructor)."""
    check = sm12x.layout.check_a_scale_granularity
    q0, hosts = sm12x.q0, sm12x.hosts
    rows, n, experts = 8, 256, 2
    ks = sorted({k for s in SHAPES for k in s[2:4]})
    rejected = set()
    for g in GRANULARITIES:
        for k in ks:
            buf = torch.zeros(sf_words(k, g), rows, dtype=torch.int32)
            for other in GRANULARITIES:
                if sf_words(k, other) != sf_words(k, g):
                    with pytest.raises(ValueError, match=f"scale_granularity_k={other}"):
                        check(buf, k, other)
                    rejected.add((g, other))
            for words in (sf_words(k, g) - 1, sf_words(k, g) + 1):  # a block short, a word too many
                with pytest.raises(ValueError, match="a_scale K extent"):
                    check(torch.zeros(words, rows, dtype=torch.int32), k, g)
        # K not a multiple of 4g: the last word is part-filled, and dropping it loses a block
        k = SCALES_PER_WORD * g * 3 + g
        check(torch.zeros(4, rows, dtype=torch.int32), k, g)
        with pytest.raises(ValueError):
            check(torch.zeros(3, rows, dtype=torch.int32), k, g)
    assert rejected == {(a, b) for a in GRANULARITIES for b in GRANULARITIES if a != b}

    k = 1024
    for bad in NOT_GRANULARITIES:
        with pytest.raises(ValueError, match="must be one of"):
            sm12x.layout.check_act_scale_granularity(bad)
        words = sf_words(k, bad) if bad else 1  # even a shape that would fit
        with pytest.raises(ValueError, match="must be one of"):
            check(torch.zeros(words, rows, dtype=torch.int32), k, bad)
        with pytest.raises(ValueError, match="must be one of"):
            q0.scale_block_k(bad)
        with pytest.raises(ValueError, match="must be one of"):
            hosts["fc1_act_q1"].out_sf_shape(4, k, experts, bad)
        with pytest.raises(ValueError, match="must be one of"):
            q0.mxfp8_q0_route_workspace_shapes(4, k, 1, experts, bad)
        with pytest.raises(ValueError, match="must be one of"):
            q0.make_mxfp8_q0_route_workspace(torch.zeros(4, k, dtype=torch.bfloat16),
                                             torch.zeros(4, 1, dtype=torch.int32), experts,
                                             scale_granularity_k=bad)
        gemm, fc2 = hosts["gemm"], hosts["fc2_finalize"]
        tile = (128, 128, gemm.PLAIN_TILE_K)
        assert not gemm.CuteDslSm120GroupedMxfp8Mxfp4Op.can_implement(
            n=n, k=k, tile=tile, out_dtype=torch.bfloat16, scale_granularity_k=bad)
        assert not fc2.CuteDslSm120GroupedMxfp8Mxfp4Fc2FinalizeOp.can_implement(
            n=n, k=k, tile=(128, 128, fc2.BK), scale_granularity_k=bad)
        with pytest.raises(TypeError, match=f"scale_granularity_k={bad}"):
            gemm.CuteDslSm120GroupedMxfp8Mxfp4Op(n=n, k=k, tile=tile, out_dtype=torch.bfloat16,
                                                 scale_granularity_k=bad)

    # the wrappers: a g = 64 a_scale handed to a g = 32 call (and a bad g) stops at the SF check
    def call(kernel: str, a_scale: torch.Tensor, g: int) -> None:
        a_q = torch.zeros(rows, k, dtype=torch.float8_e4m3fn)
        b_rows = 2 * n if kernel in ("fc1_act", "fc1_act_q1") else n
        b_q = torch.zeros(experts, b_rows, k // 2, dtype=torch.uint8)
        b_scale = torch.zeros(experts, sf_words(k, WEIGHT_GRANULARITY), b_rows, dtype=torch.int32)
        m_indptr = torch.zeros(experts + 1, dtype=torch.int32)
        fn = getattr(hosts[kernel], {"gemm": "cute_dsl_sm12x_moe_gemm_mxfp8_mxfp4"}.get(
            kernel, f"cute_dsl_sm12x_{kernel}_mxfp8_mxfp4"))
        if kernel == "fc2_finalize":
            fn(a_q, a_scale, b_q, b_scale, m_indptr, torch.zeros(rows, dtype=torch.int32),
               torch.zeros(rows), rows, scale_granularity_k=g)
        else:
            fn(a_q, a_scale, b_q, b_scale, m_indptr, scale_granularity_k=g)

    g64 = torch.zeros(sf_words(k, 64), rows, dtype=torch.int32)
    for kernel in KERNELS:
        with pytest.raises(ValueError, match="scale_granularity_k=32"):
            call(kernel, g64, 32)
        with pytest.raises(ValueError, match="must be one of"):
            call(kernel, g64, 48)
