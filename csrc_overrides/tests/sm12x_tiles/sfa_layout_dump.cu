/*
 * Copyright (c) 2026 by FlashInfer team.
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
// Host-only dump of the SFA (A scale factor) index math of CUTLASS's SM120 block-scaled
// mainloops (dense: sm120_blockscaled_mma_tma.hpp, grouped: sm120_blockscaled_mma_array_tma.hpp),
// built as in sm120_bs_tile.cuh, for TileM in {32, 64, 128, 256}, TileN = TileK = 128,
// MXFP8 x MXFP4 and NVFP4 x NVFP4. test_sm12x_sfa_layout.py checks every record against an
// independent Python model. Nothing runs on a GPU; the mainloop's own types and expressions are
// evaluated on the host:
//  * producer: the SFA TMA is made by the mainloop's make_tma_copy<uint16_t>(...) call; its
//    cuTensorMapEncodeTiled call lands in the stub below, which records the descriptor. The
//    coordinate tensor, local_tile, broadcast_m and TMA partition are those of load_init() and
//    load(); every TMA instruction of one K tile is replayed element by element (box order into
//    smem, per-dimension bounds). For the grouped kernel the descriptor's global dims and strides
//    are rewritten per group with the same fill_tma_gmem_shape_stride call as
//    tensormaps_replace_global_tensor_properties().
//  * consumer: mma()'s sSFA (the m % (128 / TileM) slice for TileM < 128) partitioned by the SFA
//    smem->register tiled copy built from get_layoutSFA_TV, for every thread of the tiled MMA.
//    (mma() wraps sSFA in as_position_independent_swizzle_tensor, a no-op: SFA smem is unswizzled.)
// Output, one JSON object per line:
//  {"kind":"config",...}  per configuration, with the recorded TMA descriptor
//  {"kind":"box",...}     per CTA tile: stage-0 smem byte -> gmem byte the TMA wrote (-1: OOB fill)
//  {"kind":"read",...}    per CTA tile, row m, scale column j: the smem bytes the consumer threads
//                         read for (m, j) and the gmem byte the TMA wrote there
// Host code only: nvcc's device pass sees an empty translation unit.
#if !defined(__CUDA_ARCH__)
#define CUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL 1  // cuTensorMapEncodeTiled -> the stub below

#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "cute/tensor.hpp"
#include "cutlass/cutlass.h"
#include "cutlass/detail/sm100_blockscaled_layout.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/thread/linear_combination.h"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/group_array_problem_shape.hpp"
#include "cutlass/numeric_types.h"

namespace sfa_dump {

struct TmaDesc {  // arguments of the last cuTensorMapEncodeTiled call
  int rank = 0, dtype = -1, elem_bytes = 0, swizzle = -1, interleave = -1;
  uint64_t dim[5] = {1, 1, 1, 1, 1};
  uint64_t stride_bytes[5] = {0, 0, 0, 0, 0};  // [0] = element size (implicit in the descriptor)
  uint32_t box[5] = {1, 1, 1, 1, 1};
  uint32_t elem_stride[5] = {1, 1, 1, 1, 1};
};
TmaDesc g_desc;

}  // namespace sfa_dump

extern "C" CUresult CUDAAPI cuTensorMapEncodeTiled(
    CUtensorMap* map, CUtensorMapDataType dtype, cuuint32_t rank, void*, cuuint64_t const* dim,
    cuuint64_t const* strides, cuuint32_t const* box, cuuint32_t const* elem_strides,
    CUtensorMapInterleave interleave, CUtensorMapSwizzle swizzle, CUtensorMapL2promotion,
    CUtensorMapFloatOOBfill) {
  sfa_dump::TmaDesc d;
  d.rank = static_cast<int>(rank);
  d.dtype = static_cast<int>(dtype);
  d.elem_bytes = dtype == CU_TENSOR_MAP_DATA_TYPE_UINT16 ? 2 : dtype == CU_TENSOR_MAP_DATA_TYPE_UINT8 ? 1 : 0;
  d.swizzle = static_cast<int>(swizzle);
  d.interleave = static_cast<int>(interleave);
  for (cuuint32_t i = 0; i < rank; ++i) {
    d.dim[i] = dim[i];
    d.stride_bytes[i] = i == 0 ? d.elem_bytes : strides[i - 1];
    d.box[i] = box[i];
    d.elem_stride[i] = elem_strides[i];
  }
  sfa_dump::g_desc = d;
  *map = CUtensorMap{};
  return CUDA_SUCCESS;
}

namespace sfa_dump {

using namespace cute;
using X = Underscore;

constexpr int kProblemM = 512;  // 4 scale-factor atoms along M
constexpr int kProblemN = 128;
constexpr int kProblemK = 384;  // 3 K tiles of 128
constexpr int kKTile = 1;       // the K tile replayed (not the first, so the K-atom stride shows)

// The builder arguments of sm120_bs_tile.cuh (FlashInfer's SM120 MoE launcher), Pingpong.
template <int TileM, bool Grouped, bool Mxf8f4>
struct Config {
  using ArchTag = cutlass::arch::Sm120;
  using OpClass = cutlass::arch::OpClassBlockScaledTensorOp;
  using ElementA = cute::conditional_t<Mxf8f4, cutlass::mx_float8_t<cutlass::float_e4m3_t>,
                                       cutlass::nv_float4_t<cutlass::float_e2m1_t>>;
  using ElementB = cute::conditional_t<Mxf8f4, cutlass::mx_float4_t<cutlass::float_e2m1_t>,
                                       cutlass::nv_float4_t<cutlass::float_e2m1_t>>;
  static constexpr int AlignmentA = Mxf8f4 ? 16 : 32;
  static constexpr int AlignmentB = Mxf8f4 ? 128 : 32;
  using ElementD = cutlass::bfloat16_t;
  static constexpr int AlignmentD = 128 / cutlass::sizeof_bits<ElementD>::value;
  using LayoutATag = cute::conditional_t<Grouped, cutlass::layout::RowMajor*, cutlass::layout::RowMajor>;
  using LayoutBTag = cute::conditional_t<Grouped, cutlass::layout::ColumnMajor*, cutlass::layout::ColumnMajor>;
  using LayoutDTag = LayoutATag;
  using TileShape = Shape<Int<TileM>, _128, _128>;
  using ClusterShape = Shape<_1, _1, _1>;
  using Schedule = cute::conditional_t<Grouped, cutlass::gemm::KernelPtrArrayTmaWarpSpecializedPingpong,
                                       cutlass::gemm::KernelTmaWarpSpecializedPingpong>;
  // SM120's auto epilogue subtile is 64x32; a 32-row tile needs an explicit 32x32 one.
  using EpilogueTile = cute::conditional_t<(TileM < 64), Shape<_32, _32>,
                                           cutlass::epilogue::collective::EpilogueTileAuto>;
  using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
      ArchTag, OpClass, TileShape, ClusterShape, EpilogueTile, float, float, ElementD, LayoutDTag,
      AlignmentD, ElementD, LayoutDTag, AlignmentD, cutlass::epilogue::TmaWarpSpecialized>::CollectiveOp;
  using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
      ArchTag, OpClass, ElementA, LayoutATag, AlignmentA, ElementB, LayoutBTag, AlignmentB, float,
      TileShape, ClusterShape,
      cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
          sizeof(typename CollectiveEpilogue::SharedStorage))>,
      Schedule>::CollectiveOp;
};

template <class T>
void print_list(char const* key, T const* v, int n) {
  std::printf("\"%s\":[", key);
  for (int i = 0; i < n; ++i) std::printf(i ? ",%lld" : "%lld", static_cast<long long>(v[i]));
  std::printf("]");
}

template <int TileM, bool Grouped, bool Mxf8f4>
void dump() {
  using CM = typename Config<TileM, Grouped, Mxf8f4>::CollectiveMainloop;
  using TileShape = typename CM::TileShape;
  using TileShapeSFA = typename CM::TileShapeSFA;
  using SmemLayoutSFA = typename CM::SmemLayoutSFA;
  using ElementSF = typename CM::ElementSF;
  using LayoutSFA = cute::remove_pointer_t<typename CM::LayoutSFA>;  // per group when grouped
  static_assert(!is_composed_layout<SmemLayoutSFA>::value, "SFA smem is expected unswizzled");
  constexpr int kSFVec = CM::SFVecSize;
  constexpr int kCols = size<2>(TileShape{}) / kSFVec;  // scale columns per K tile
  constexpr bool kPristineTypes = cute::is_same_v<TileShapeSFA, TileShape> &&
                                  cute::is_same_v<SmemLayoutSFA, typename CM::SmemLayoutSFA_>;
  char name[64];
  std::snprintf(name, sizeof(name), "%s_%s_%d", Grouped ? "grouped" : "dense", Mxf8f4 ? "mxf8f4" : "nvf4", TileM);

  LayoutSFA layout_sfa =
      CM::Sm1xxBlkScaledConfig::tile_atom_to_shape_SFA(make_shape(kProblemM, kProblemN, kProblemK, 1));

  // to_underlying_arguments(): the grouped kernel builds the descriptor from a TileM x TileN x TileK
  // placeholder problem and rewrites dims/strides per group on the device.
  LayoutSFA init_layout = Grouped ? CM::Sm1xxBlkScaledConfig::tile_atom_to_shape_SFA(make_shape(
                                        int(size<0>(TileShape{})), int(size<1>(TileShape{})),
                                        int(size<2>(TileShape{})), 1))
                                  : layout_sfa;
  Tensor tensor_sfa = make_tensor(static_cast<ElementSF const*>(nullptr), init_layout);
  g_desc = TmaDesc{};
  typename CM::Params::TMA_SFA tma_load_sfa = make_tma_copy<uint16_t>(
      typename CM::GmemTiledCopySFA{}, tensor_sfa, SmemLayoutSFA{}(_, _, cute::Int<0>{}),
      make_shape(shape<0>(TileShapeSFA{}), shape<2>(TileShapeSFA{})), _1{});
  TmaDesc desc = g_desc;
  if constexpr (Grouped) {  // tensormaps_replace_global_tensor_properties()
    cute::array<uint32_t, 5> prob_shape = {1, 1, 1, 1, 1};
    cute::array<uint64_t, 5> prob_stride = {0, 0, 0, 0, 0};
    Tensor tensor_sfa_group = make_tensor(static_cast<ElementSF const*>(nullptr), layout_sfa);
    cute::detail::fill_tma_gmem_shape_stride(tma_load_sfa, tensor_sfa_group, prob_shape, prob_stride);
    for (uint64_t& stride : prob_stride) stride = (stride * sizeof_bits_v<ElementSF>) / 8;
    for (int i = 0; i < 5; ++i) {
      desc.dim[i] = prob_shape[i];
      if (i > 0) desc.stride_bytes[i] = prob_stride[i];
    }
  }

  int const stage_bytes = int(cosize(SmemLayoutSFA{}(_, _, cute::Int<0>{}))) * int(sizeof(ElementSF));
  std::printf("{\"kind\":\"config\",\"name\":\"%s\",\"grouped\":%s,\"format\":\"%s\",\"tile_m\":%d,"
              "\"tile_k\":%d,\"sf_vec\":%d,\"cols\":%d,\"problem_m\":%d,\"problem_k\":%d,\"k_tile\":%d,"
              "\"stages\":%d,\"sfa_tile_rows\":%d,\"pristine_types\":%s,\"smem_stage_bytes\":%d,"
              "\"tma\":{\"rank\":%d,\"dtype\":%d,\"elem_bytes\":%d,\"swizzle\":%d,\"interleave\":%d,",
              name, Grouped ? "true" : "false", Mxf8f4 ? "mxf8f4" : "nvf4", TileM, int(size<2>(TileShape{})),
              kSFVec, kCols, kProblemM, kProblemK, kKTile, int(CM::DispatchPolicy::Stages),
              int(size<0>(TileShapeSFA{})), kPristineTypes ? "true" : "false", stage_bytes, desc.rank,
              desc.dtype, desc.elem_bytes, desc.swizzle, desc.interleave);
  print_list("box", desc.box, desc.rank);
  std::printf(",");
  print_list("elem_stride", desc.elem_stride, desc.rank);
  std::printf(",");
  print_list("dim", desc.dim, desc.rank);
  std::printf(",");
  print_list("stride_bytes", desc.stride_bytes, desc.rank);
  std::printf("}}\n");

  // load_init() / load()
  Tensor mSFA_mkl = tma_load_sfa.get_tma_tensor(shape(layout_sfa));
  Tensor gSFA_mkl = local_tile(mSFA_mkl, TileShape{}, make_coord(_, _, _), Step<_1, X, _1>{});
  auto broadcast_m = make_layout(
      make_shape(Int<size<0>(TileShapeSFA{}) / size<0>(TileShape{})>{}, Int<cute::numeric_limits<int>::max()>{}),
      make_stride(_0{}, size<0>(TileShapeSFA{}) / size<0>(TileShape{})));
  auto block_tma_sfa = tma_load_sfa.get_slice(0);
  Tensor sSFA_load = make_tensor(counting_iterator<int>(0), SmemLayoutSFA{});  // values: smem offsets

  // mma(): the SFA smem -> register copy
  typename CM::TiledMma tiled_mma;
  CM mainloop;  // stateless; get_layoutSFA_TV is a non-static member
  auto tile_shape_mnk = tile_shape(tiled_mma);
  auto smem_tiled_copy_SFA = make_tiled_copy_impl(typename CM::SmemCopyAtomSFA{},
                                                  mainloop.get_layoutSFA_TV(tiled_mma),
                                                  make_shape(size<0>(tile_shape_mnk), size<2>(tile_shape_mnk)));

  int const n_tiles = kProblemM / TileM;
  std::set<int> tiles;
  for (int t : {0, 1, 2, 3, 5, n_tiles - 1})
    if (t < n_tiles) tiles.insert(t);

  for (int m_coord : tiles) {
    int const l_coord = 0;
    // --- producer: replay the TMA instructions of K tile kKTile into stage 0
    Tensor gSFA = gSFA_mkl(_, _, broadcast_m(m_coord), _, l_coord);
    Tensor tAgSFA = block_tma_sfa.partition_S(gSFA);      // (TMA,TMA_M,TMA_K,k)
    Tensor tAsSFA = block_tma_sfa.partition_D(sSFA_load);  // (TMA,TMA_M,TMA_K,PIPE)
    Tensor src = tAgSFA(_, _, _, kKTile);
    Tensor dst = tAsSFA(_, _, _, 0);
    std::map<long long, long long> written;  // smem byte -> gmem byte (-1: out of bounds)
    std::vector<std::pair<std::vector<long long>, long long>> instrs;
    bool twice = false;
    for (int i = 0; i < size<1>(src); ++i) {
      for (int j = 0; j < size<2>(src); ++j) {
        std::vector<long long> crd;
        for_each(src(0, i, j), [&](auto c) { crd.push_back(static_cast<long long>(c)); });
        crd.resize(desc.rank, 0);
        long long const smem_base = static_cast<long long>(dst(0, i, j)) * sizeof(ElementSF);
        instrs.push_back({crd, smem_base});
        long long box_elems = 1;
        for (int d = 0; d < desc.rank; ++d) box_elems *= desc.box[d];
        for (long long e = 0; e < box_elems; ++e) {  // box order: dim 0 fastest, packed in smem
          long long rest = e, gmem = 0;
          bool in_bounds = true;
          for (int d = 0; d < desc.rank; ++d) {
            long long const g = crd[d] + rest % desc.box[d];
            rest /= desc.box[d];
            in_bounds = in_bounds && g >= 0 && g < static_cast<long long>(desc.dim[d]);
            gmem += g * static_cast<long long>(desc.stride_bytes[d]);
          }
          for (int b = 0; b < desc.elem_bytes; ++b) {
            long long const s = smem_base + e * desc.elem_bytes + b;
            twice = twice || written.count(s);
            written[s] = in_bounds ? gmem + b : -1;
          }
        }
      }
    }
    std::printf("{\"kind\":\"box\",\"name\":\"%s\",\"tile\":%d,\"atom_tile\":%d,\"written_twice\":%s,\"tma\":[",
                name, m_coord, int(broadcast_m(m_coord)), twice ? "true" : "false");
    for (size_t i = 0; i < instrs.size(); ++i) {
      std::printf(i ? ",{" : "{");
      print_list("coord", instrs[i].first.data(), int(instrs[i].first.size()));
      std::printf(",\"smem\":%lld}", instrs[i].second);
    }
    std::printf("],\"writes\":[");
    bool first = true;
    for (auto const& [s, g] : written) {
      std::printf(first ? "%lld,%lld" : ",%lld,%lld", s, g);
      first = false;
    }
    std::printf("]}\n");

    // --- consumer: which smem bytes each thread reads for (m, k) of the CTA tile, stage 0
    Tensor sSFA = [&]() {
      if constexpr (size<0>(TileShape{}) >= 128) {
        return make_tensor(counting_iterator<int>(0), SmemLayoutSFA{});  // (BLK_M,BLK_K,PIPE)
      } else {
        Tensor temp = make_tensor(counting_iterator<int>(0), SmemLayoutSFA{});  // (BLK_SFA_M,BLK_K,PIPE)
        auto m = m_coord;
        return temp(make_coord(_, m % (size<0>(TileShapeSFA{}) / size<0>(TileShape{}))), _, _);
      }
    }();
    Tensor cSFA = make_identity_tensor(product_each(shape(sSFA)));  // (m,k,pipe) coordinates
    std::map<std::pair<int, int>, std::set<long long>> reads;
    std::map<std::pair<int, int>, int> n_reads;
    for (int t = 0; t < int(size(tiled_mma)); ++t) {
      auto smem_thr_copy_SFA = smem_tiled_copy_SFA.get_thread_slice(t);
      Tensor tCsSFA = smem_thr_copy_SFA.partition_S(sSFA)(_, _, _, 0);  // (CPY,CPY_M,CPY_K)
      Tensor tCcSFA = smem_thr_copy_SFA.partition_S(cSFA)(_, _, _, 0);
      for (int v = 0; v < int(size(tCsSFA)); ++v) {
        auto c = tCcSFA(v);
        std::pair<int, int> key{int(get<0>(c)), int(get<1>(c)) / kSFVec};
        reads[key].insert(static_cast<long long>(tCsSFA(v)) * sizeof(ElementSF));
        ++n_reads[key];
      }
    }
    for (auto const& [key, offsets] : reads) {
      auto [m, j] = key;
      long long const direct = static_cast<long long>(sSFA(m, j * kSFVec, 0)) * sizeof(ElementSF);
      std::printf("{\"kind\":\"read\",\"name\":\"%s\",\"tile\":%d,\"m\":%d,\"j\":%d,\"n_reads\":%d,"
                  "\"smem_direct\":%lld,\"smem\":[",
                  name, m_coord, m, j, n_reads[key], direct);
      bool first_offset = true;
      for (long long s : offsets) {
        std::printf(first_offset ? "%lld" : ",%lld", s);
        first_offset = false;
      }
      auto it = written.find(*offsets.begin());
      if (offsets.size() == 1 && it != written.end()) {
        std::printf("],\"gmem\":%lld}\n", it->second);
      } else {
        std::printf("],\"gmem\":null}\n");
      }
    }
  }
}

template <bool Grouped, bool Mxf8f4>
void dump_tiles() {
  dump<32, Grouped, Mxf8f4>();
  dump<64, Grouped, Mxf8f4>();
  dump<128, Grouped, Mxf8f4>();
  // The builder accepts TileM = 256, but for MXFP8 x MXFP4 (1-byte A and B in smem) only one
  // stage fits in SM120's 99 KB ("Specialization requires Stages set to value 2 or more.").
  if constexpr (!Mxf8f4) dump<256, Grouped, Mxf8f4>();
}

}  // namespace sfa_dump

int main() {
  sfa_dump::dump_tiles<true, true>();
  sfa_dump::dump_tiles<true, false>();
  sfa_dump::dump_tiles<false, true>();
  sfa_dump::dump_tiles<false, false>();
  return 0;
}

#endif  // !defined(__CUDA_ARCH__)
