"""Default (untuned) CUTLASS MoE GEMM tactic for SM120/SM121 at small M.

Python mirror of csrc/fused_moe/cutlass_backend/sm12x_default_tactic.h; the
C++ runner applies the rule when a GEMM's tactic is -1 (not tuned). Kept free
of torch and CUDA imports so it can be tested on a CPU.

Without a tuned tactic the runner took the first candidate, a non-swapped
128x128 tile, which at decode wastes almost all of its 128 M rows. Swap-AB
tiles put the weights on M and the tokens on N; N = 32 or 64 is chosen from an
upper bound on the rows any one expert can receive (the token count, since a
token's top-k experts are distinct).
"""

from typing import Callable, NamedTuple


class TacticDesc(NamedTuple):
    tile_m: int
    tile_n: int
    tile_k_bytes: int
    swap_ab: bool
    epilogue_fusion: int


def sm12x_small_m_default_tile_n(rows_per_expert_bound: int) -> int:
    """Tile N of the swap-AB 128xN default, or 0 to keep the 128x128 default."""
    if rows_per_expert_bound <= 0:
        return 0
    if rows_per_expert_bound <= 32:
        return 32
    if rows_per_expert_bound <= 64:
        return 64
    return 0


def select_sm12x_small_m_default_tactic(
    begin: int,
    end: int,
    fallback: int,
    rows_per_expert_bound: int,
    describe: Callable[[int], TacticDesc],
) -> int:
    """Index in [begin, end) of the small-M default tactic, else ``fallback``.

    Matches are swap-AB 128xN tiles with the fallback's epilogue fusion; a
    128-byte K tile is preferred (valid for NVFP4 and MXFP8 activations).
    """
    want_n = sm12x_small_m_default_tile_n(rows_per_expert_bound)
    if want_n == 0 or not (begin <= fallback < end):
        return fallback
    base = describe(fallback)
    first = -1
    for i in range(begin, end):
        d = describe(i)
        if (
            not d.swap_ab
            or d.tile_m != 128
            or d.tile_n != want_n
            or d.epilogue_fusion != base.epilogue_fusion
        ):
            continue
        if d.tile_k_bytes == 128:
            return i
        if first < 0:
            first = i
    return first if first >= 0 else fallback
