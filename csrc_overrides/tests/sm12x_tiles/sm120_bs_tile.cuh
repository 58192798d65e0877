// Minimal SM120/SM121 block-scaled GEMM instantiation used as a compile-only
// regression pin for small TileM (< 128) support in CUTLASS's SM120
// block-scaled CollectiveBuilder.  The type choices follow FlashInfer's
// moe_gemm TMA-WS launcher (moe_gemm_tma_ws_launcher.inl) for SM120:
//   A = activations (row-major, K-major), B = weights (column-major, K-major),
//   blockscaled element pairs mx_float8_t/mx_float4_t (MXFP8 x MXFP4) or
//   nv_float4_t x nv_float4_t (NVFP4), fp32 accumulation, bf16 output,
//   epilogue schedule cutlass::epilogue::TmaWarpSpecialized, 1x1x1 cluster,
//   StageCountAutoCarveout on the epilogue's shared storage.
//
// Configure with (all have defaults):
//   SM12X_TILE_M/N/K   tile shape in elements            (64, 128, 128)
//   SM12X_GROUPED      1 = grouped (ptr-array) GEMM, 0 = dense GEMM   (1)
//   SM12X_MXF8F4       1 = MXFP8 x MXFP4, 0 = NVFP4 x NVFP4            (1)
//   SM12X_PINGPONG     1 = Pingpong, 0 = Cooperative                   (1)
//   SM12X_EPI_TILE_M   explicit epilogue subtile M (subtile N = 32)    (auto)
//
// Nothing here runs a kernel: the host function below only exists so that the
// kernel and its host-side argument/TMA-descriptor construction are
// instantiated and compiled to SASS.
#pragma once

#include "cutlass/cutlass.h"
#include "cute/tensor.hpp"
#include "cutlass/detail/sm100_blockscaled_layout.hpp"
#include "cutlass/epilogue/collective/collective_builder.hpp"
#include "cutlass/epilogue/thread/linear_combination.h"
#include "cutlass/gemm/collective/collective_builder.hpp"
#include "cutlass/gemm/device/gemm_universal_adapter.h"
#include "cutlass/gemm/dispatch_policy.hpp"
#include "cutlass/gemm/group_array_problem_shape.hpp"
#include "cutlass/gemm/kernel/gemm_universal.hpp"
#include "cutlass/numeric_types.h"

#ifndef SM12X_TILE_M
#define SM12X_TILE_M 64
#endif
#ifndef SM12X_TILE_N
#define SM12X_TILE_N 128
#endif
#ifndef SM12X_TILE_K
#define SM12X_TILE_K 128
#endif
#ifndef SM12X_GROUPED
#define SM12X_GROUPED 1
#endif
#ifndef SM12X_MXF8F4
#define SM12X_MXF8F4 1
#endif
#ifndef SM12X_PINGPONG
#define SM12X_PINGPONG 1
#endif

namespace sm12x_tile_pin {

using namespace cute;

constexpr bool kGrouped = SM12X_GROUPED != 0;
constexpr bool kMxf8f4 = SM12X_MXF8F4 != 0;
constexpr bool kPingpong = SM12X_PINGPONG != 0;

using ArchTag = cutlass::arch::Sm120;
using OpClass = cutlass::arch::OpClassBlockScaledTensorOp;

using ElementA = cute::conditional_t<kMxf8f4, cutlass::mx_float8_t<cutlass::float_e4m3_t>,
                                     cutlass::nv_float4_t<cutlass::float_e2m1_t>>;
using ElementB = cute::conditional_t<kMxf8f4, cutlass::mx_float4_t<cutlass::float_e2m1_t>,
                                     cutlass::nv_float4_t<cutlass::float_e2m1_t>>;
// Same alignments as FlashInfer's launcher: 16 bytes for A; B is 128 elements
// for the MXFP8xMXFP4 (F8F6F4, unpacked-smem) path and 16 bytes otherwise.
constexpr int AlignmentA = kMxf8f4 ? 16 : 32;
constexpr int AlignmentB = kMxf8f4 ? 128 : 32;

using ElementD = cutlass::bfloat16_t;
using ElementC = ElementD;
constexpr int AlignmentC = 128 / cutlass::sizeof_bits<ElementC>::value;
constexpr int AlignmentD = 128 / cutlass::sizeof_bits<ElementD>::value;
using ElementAccumulator = float;

using LayoutA = cutlass::layout::RowMajor;
using LayoutB = cutlass::layout::ColumnMajor;
using LayoutC = cutlass::layout::RowMajor;
using LayoutD = cutlass::layout::RowMajor;

using LayoutATag = cute::conditional_t<kGrouped, LayoutA*, LayoutA>;
using LayoutBTag = cute::conditional_t<kGrouped, LayoutB*, LayoutB>;
using LayoutCTag = cute::conditional_t<kGrouped, LayoutC*, LayoutC>;
using LayoutDTag = cute::conditional_t<kGrouped, LayoutD*, LayoutD>;

using TileShape = Shape<Int<SM12X_TILE_M>, Int<SM12X_TILE_N>, Int<SM12X_TILE_K>>;
using ClusterShape = Shape<_1, _1, _1>;

using MainloopSchedule = cute::conditional_t<
    kGrouped,
    cute::conditional_t<kPingpong, cutlass::gemm::KernelPtrArrayTmaWarpSpecializedPingpong,
                        cutlass::gemm::KernelPtrArrayTmaWarpSpecializedCooperative>,
    cute::conditional_t<kPingpong, cutlass::gemm::KernelTmaWarpSpecializedPingpong,
                        cutlass::gemm::KernelTmaWarpSpecializedCooperative>>;
using EpilogueSchedule = cutlass::epilogue::TmaWarpSpecialized;

// SM120's EpilogueTileAuto is 64x32, which needs TileM % 64 == 0; a 32-row tile needs an
// explicit 32x32 epilogue subtile.
#ifdef SM12X_EPI_TILE_M
using EpilogueTile = Shape<Int<SM12X_EPI_TILE_M>, _32>;
#else
using EpilogueTile = cutlass::epilogue::collective::EpilogueTileAuto;
#endif

using CollectiveEpilogue = typename cutlass::epilogue::collective::CollectiveBuilder<
    ArchTag, OpClass, TileShape, ClusterShape, EpilogueTile,
    ElementAccumulator, ElementAccumulator, ElementC, LayoutCTag, AlignmentC, ElementD,
    LayoutDTag, AlignmentD, EpilogueSchedule>::CollectiveOp;

using CollectiveMainloop = typename cutlass::gemm::collective::CollectiveBuilder<
    ArchTag, OpClass, ElementA, LayoutATag, AlignmentA, ElementB, LayoutBTag, AlignmentB,
    ElementAccumulator, TileShape, ClusterShape,
    cutlass::gemm::collective::StageCountAutoCarveout<static_cast<int>(
        sizeof(typename CollectiveEpilogue::SharedStorage))>,
    MainloopSchedule>::CollectiveOp;

using ProblemShape =
    cute::conditional_t<kGrouped, cutlass::gemm::GroupProblemShape<Shape<int64_t, int64_t, int64_t>>,
                        Shape<int, int, int, int>>;

using GemmKernel = cutlass::gemm::kernel::GemmUniversal<ProblemShape, CollectiveMainloop,
                                                        CollectiveEpilogue, void, void>;
using Gemm = cutlass::gemm::device::GemmUniversalAdapter<GemmKernel>;

// Facts a test can check without a GPU.
constexpr int kStages = CollectiveMainloop::DispatchPolicy::Stages;
constexpr int kSharedStorageBytes = static_cast<int>(sizeof(typename GemmKernel::SharedStorage));
static_assert(kSharedStorageBytes <= 101376, "SM120 allows at most 99 KB of shared memory per block");

}  // namespace sm12x_tile_pin

// Instantiate kernel + host-side setup (never executed in the compile test).
extern "C" int sm12x_tile_pin_setup(void* args_ptr, void* workspace, cudaStream_t stream) {
  using Gemm = sm12x_tile_pin::Gemm;
  auto const& args = *static_cast<typename Gemm::Arguments const*>(args_ptr);
  Gemm gemm;
  if (Gemm::can_implement(args) != cutlass::Status::kSuccess) return 1;
  if (gemm.initialize(args, workspace, stream) != cutlass::Status::kSuccess) return 2;
  return gemm.run(stream) == cutlass::Status::kSuccess ? 0 : 3;
}

// Read from the object's symbol table by the compile test (host_constant), on any host arch.
extern "C" __attribute__((used)) const int sm12x_tile_pin_stages = sm12x_tile_pin::kStages;
extern "C" __attribute__((used)) const int sm12x_tile_pin_smem_bytes = sm12x_tile_pin::kSharedStorageBytes;
