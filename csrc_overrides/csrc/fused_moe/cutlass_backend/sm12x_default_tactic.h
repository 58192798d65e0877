/*
 * Copyright (c) 2025 by FlashInfer team.
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at
 *
 *   http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */
#pragma once

// Default (untuned) MoE GEMM tactic for SM120/SM121 at small M.
//
// Without a tuned tactic the runner takes the first candidate, a non-swapped
// 128x128 tile: at decode (a few rows per expert) almost all of its 128 M rows
// are padding. The swap-AB tiles put the weights on M (always full) and the
// tokens on N, so N = 32 or 64 wastes far less of each MMA. This header picks
// one from an upper bound on the rows any single expert can receive (the token
// count: top-k experts of a token are distinct). It is plain C++ so it can be
// tested on a CPU; flashinfer/fused_moe/core.py mirrors the rule in
// sm12x_small_m_default_tile_n().

#include <cstdint>

namespace flashinfer {
namespace fused_moe_sm12x {

// Tile N of the swap-AB 128xN tile to use by default, or 0 to keep the
// existing default (non-swapped 128x128).
constexpr int smallMDefaultSwapAbTileN(int64_t rows_per_expert_bound) {
  return rows_per_expert_bound <= 0    ? 0
         : rows_per_expert_bound <= 32 ? 32
         : rows_per_expert_bound <= 64 ? 64
                                       : 0;
}

// What the selection needs to know about one candidate tactic.
struct TacticDesc {
  int tile_m;
  int tile_n;
  int tile_k_bytes;
  bool swap_ab;
  int epilogue_fusion;  // kept equal to the fallback's, so fusion behaviour does not change
};

// Index in [begin, end) of the small-M default, or `fallback` if the rule keeps
// the existing default or no matching tactic exists. `describe(i)` returns the
// TacticDesc of tactic i. Among matches the one with tile_k_bytes == 128 is
// preferred (valid for both NVFP4 and MXFP8 activations), else the first.
template <typename Describe>
int64_t selectSmallMDefaultTactic(int64_t begin, int64_t end, int64_t fallback,
                                  int64_t rows_per_expert_bound, Describe describe) {
  int const want_n = smallMDefaultSwapAbTileN(rows_per_expert_bound);
  if (want_n == 0 || fallback < begin || fallback >= end) return fallback;
  TacticDesc const base = describe(fallback);
  int64_t first = -1;
  for (int64_t i = begin; i < end; ++i) {
    TacticDesc const d = describe(i);
    if (!d.swap_ab || d.tile_m != 128 || d.tile_n != want_n ||
        d.epilogue_fusion != base.epilogue_fusion) {
      continue;
    }
    if (d.tile_k_bytes == 128) return i;
    if (first < 0) first = i;
  }
  return first >= 0 ? first : fallback;
}

}  // namespace fused_moe_sm12x
}  // namespace flashinfer
