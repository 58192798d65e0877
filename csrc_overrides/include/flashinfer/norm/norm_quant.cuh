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
#ifndef FLASHINFER_NORM_NORM_QUANT_CUH_
#define FLASHINFER_NORM_NORM_QUANT_CUH_

// Fused (residual add +) RMSNorm / Gemma-RMSNorm / LayerNorm -> FP8 quantization.
//
// One CTA normalizes one row; the whole row stays in registers, so the input (and the residual)
// is read from global memory exactly once and every output is written exactly once with 16-byte
// loads and 8-byte fp8 stores (RMSNorm -> MXFP8 without residual: each thread owns whole 32-element
// scale blocks and writes them with 16-byte stores). Output kinds:
//   * MXFP8: e4m3 values + one UE8M0 scale per 32 elements, linear or 128x4-swizzled scale
//     layout, optional zero padding of the hidden dimension. Bit-identical to quantizing the
//     T-rounded (bf16/fp16) normed row with mxfp8_quantize().
//   * static per-tensor FP8 (e4m3 / e5m2): out = satfinite(normed * (1 / scale)).
//   * dynamic per-token FP8 (e4m3): scale[row] = max(amax(row) / 448, 1 / (448 * 512)).
// Only sm_89+ conversions are used (cvt.rn.satfinite.{e4m3,e5m2}x2.f32); the UE8M0 scale is
// computed with integer arithmetic, so the same kernel runs on sm_90 and sm_100+/sm_12x.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../math.cuh"
#include "../utils.cuh"

namespace flashinfer {

namespace norm {

namespace quant {

enum class NormType : int {
  kRMSNorm = 0,    // x * rstd * (weight_bias + w), w has the input dtype
  kLayerNorm = 1,  // (x - mean) * rstd * gamma + beta, gamma/beta are fp32
};

enum class QuantType : int {
  kMXFP8 = 0,            // e4m3 + UE8M0 per 32 elements
  kFP8E4M3 = 1,          // static per-tensor scale
  kFP8E5M2 = 2,          // static per-tensor scale
  kFP8E4M3PerToken = 3,  // dynamic per-token (per-row) fp32 scale
};

// Elements per 16-byte vector (bf16 / fp16 only).
constexpr uint32_t kVecSize = 8;
// MXFP8 block size.
constexpr uint32_t kSfVecSize = 32;
// Padding rows of the 128x4 swizzled scale layout zero-filled by one extra CTA.
constexpr uint32_t kSfPadRowsPerCta = 16;
// RN(1 / 448) = 0x3B124925. Multiplying by it gives the same UE8M0 code as the IEEE division
// amax / 448 for every bf16/fp16 amax (448 * RN(1/448) rounds to exactly 1). Do not use
// rcp.approx here: a reciprocal that is one ulp high changes the code of 247 bf16 values.
constexpr float kRcp448 = 0.002232142956927418708801269531f;
constexpr float kE4M3Max = 448.f;
// Same lower bound as QuantTypeStaticVals<__nv_fp8_e4m3>::MIN_SCALING_FACTOR in norm.cuh.
constexpr float kPerTokenMinScale = 1.0f / (448.f * 512.f);

struct NormQuantParams {
  const void* input;      // [num_tokens, d], T
  void* residual;         // [num_tokens, d], T; updated in place with input + residual
  const void* weight;     // RMSNorm: [d] T; LayerNorm: [d] fp32 gamma
  const float* beta;      // LayerNorm: [d] fp32
  void* normed_out;       // optional [num_tokens, d], T
  void* out;              // [num_tokens, padded_d] fp8
  uint8_t* sf_out;        // MXFP8 scale factors (UE8M0)
  const float* scale;     // static: [1] fp32
  float* token_scale;     // per-token: [num_tokens] fp32 (output)
  const float* scale_ub;  // per-token: optional [1] fp32 upper bound on the row amax
  uint32_t num_tokens;
  uint32_t d;
  uint32_t padded_d;  // MXFP8 only; == d otherwise
  uint32_t stride_input;
  uint32_t stride_residual;
  uint32_t stride_normed;
  uint32_t stride_out;
  float eps;
  float weight_bias;
  bool sf_swizzled;
  uint32_t num_sf_pad_rows;  // round_up(num_tokens, 128) - num_tokens when swizzled, else 0
};

template <uint32_t VPT>
struct NormQuantMaxThreads {
  // Keeps the row (8 * VPT values per thread) in registers without spilling.
  static constexpr uint32_t value = VPT >= 8 ? 256 : (VPT >= 4 ? 512 : 1024);
};

// Register cap per thread. Occupancy (bytes in flight per SM) is what makes these kernels
// reach the copy bandwidth, so registers are capped near what the row needs (no spills on
// sm_90a / sm_100a / sm_12x); the cap also fits NormQuantMaxThreads<VPT> threads per CTA.
#if defined(__CUDACC_VER_MAJOR__) && \
    (__CUDACC_VER_MAJOR__ > 12 || (__CUDACC_VER_MAJOR__ == 12 && __CUDACC_VER_MINOR__ >= 4))
#define FLASHINFER_NORM_QUANT_BOUNDS(max_threads, max_regs) __maxnreg__(max_regs)
#else
#define FLASHINFER_NORM_QUANT_BOUNDS(max_threads, max_regs) __launch_bounds__(max_threads)
#endif

template <uint32_t VPT, NormType NORM, bool HAS_RES, QuantType QT>
struct NormQuantMaxRegs {
  static constexpr bool kRmsMx = NORM == NormType::kRMSNorm && QT == QuantType::kMXFP8;
  // Without a residual at 4 vectors per thread: 56 (36 warps per SM); the 62-64 registers these
  // kernels take when allowed measured up to 10% slower on H200. LayerNorm per-token keeps 64
  // (fp16 spills at 56 on sm_90a).
  static constexpr bool kLnPerToken =
      NORM == NormType::kLayerNorm && QT == QuantType::kFP8E4M3PerToken;
  static constexpr uint32_t value = VPT >= 8   ? 128
                                    : VPT >= 4 ? (HAS_RES ? 96 : (kLnPerToken ? 64 : 56))
                                    : VPT >= 2
                                        ? (kRmsMx ? (HAS_RES ? 40 : 32) : (HAS_RES ? 56 : 48))
                                        : 32;
};

namespace detail {

template <typename T>
__device__ __forceinline__ float2 unpack2(uint32_t w);

// bf16 -> fp32 is a shift of the bit pattern: one integer op per value (the intrinsic's
// byte permute + shift costs two for the high half).
template <>
__device__ __forceinline__ float2 unpack2<nv_bfloat16>(uint32_t w) {
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xFFFF0000u));
}

template <>
__device__ __forceinline__ float2 unpack2<nv_half>(uint32_t w) {
  return __half22float2(*reinterpret_cast<const __half2*>(&w));
}

template <typename T>
__device__ __forceinline__ uint32_t pack2(float a, float b);

template <>
__device__ __forceinline__ uint32_t pack2<nv_bfloat16>(float a, float b) {
  __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&h);
}

template <>
__device__ __forceinline__ uint32_t pack2<nv_half>(float a, float b) {
  __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&h);
}

// |x| as a 16-bit pattern; for bf16 and fp16 the unsigned order of these patterns is the order
// of the magnitudes, with Inf above every finite value and NaN above Inf.
template <typename T>
struct HalfBits;

template <>
struct HalfBits<nv_bfloat16> {
  static constexpr uint32_t kInf = 0x7F80u;
  static __device__ __forceinline__ float to_float(uint32_t bits) {
    return __uint_as_float(bits << 16);
  }
};

template <>
struct HalfBits<nv_half> {
  static constexpr uint32_t kInf = 0x7C00u;
  static __device__ __forceinline__ float to_float(uint32_t bits) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
  }
};

// Max of |x| over the 8 packed 16-bit values, as a 16-bit pattern.
__device__ __forceinline__ uint32_t abs_max_bits(const uint4& v) {
  uint32_t m = __vmaxu2(__vmaxu2(v.x & 0x7FFF7FFFu, v.y & 0x7FFF7FFFu),
                        __vmaxu2(v.z & 0x7FFF7FFFu, v.w & 0x7FFF7FFFu));
  return max(m & 0xFFFFu, m >> 16);
}

template <QuantType QT>
__device__ __forceinline__ uint16_t cvt_fp8x2(float a, float b) {
  // low byte <- a, high byte <- b; round to nearest even, saturate finite values to the max
  // finite fp8 value (satfinite), NaN stays NaN.
  return static_cast<uint16_t>(__nv_cvt_float2_to_fp8x2(
      make_float2(a, b), __NV_SATFINITE, QT == QuantType::kFP8E5M2 ? __NV_E5M2 : __NV_E4M3));
}

template <QuantType QT>
__device__ __forceinline__ uint2 cvt_fp8x8(const float (&y)[kVecSize], float mul) {
  uint2 r;
  r.x = uint32_t(cvt_fp8x2<QT>(y[0] * mul, y[1] * mul)) |
        (uint32_t(cvt_fp8x2<QT>(y[2] * mul, y[3] * mul)) << 16);
  r.y = uint32_t(cvt_fp8x2<QT>(y[4] * mul, y[5] * mul)) |
        (uint32_t(cvt_fp8x2<QT>(y[6] * mul, y[7] * mul)) << 16);
  return r;
}

// UE8M0 code of RN(amax * RN(1/448)) rounded up to a power of two, as
// __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundPosInf) produces it (code <= 254, code 0
// for amax == 0 and for scales <= 2^-127). The product is formed without flushing subnormals
// (mul.rn.f32, whatever -ftz says), so its bit pattern b rounds up to a power of two by carrying
// a nonzero mantissa into the exponent: (b + 0x7FFFFF) >> 23; a subnormal above 2^-127
// (b > 0x400000) gives code 1.
__device__ __forceinline__ uint32_t ue8m0_code(float amax) {
  float s;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(s) : "f"(amax), "f"(kRcp448));
  const uint32_t b = __float_as_uint(s);
  return b > 0x400000u ? min((b + 0x7FFFFFu) >> 23, 254u) : 0u;
}

// 2^(127 - code) for code in [1, 253]; 0 for code 0 (as upstream: an underflowed scale quantizes
// the block to zero).
__device__ __forceinline__ float ue8m0_inv_scale(uint32_t code) {
  return code == 0u ? 0.f : __uint_as_float((254u - code) << 23);
}

__device__ __forceinline__ uint32_t sf_offset_128x4(uint32_t m, uint32_t k, uint32_t num_k_tiles) {
  return (m / 128u) * (num_k_tiles * 512u) + (k / 4u) * 512u + (m % 32u) * 16u +
         ((m % 128u) / 32u) * 4u + (k % 4u);
}

__device__ __forceinline__ float warp_reduce_sum(float v) {
#pragma unroll
  for (uint32_t offset = 16; offset > 0; offset /= 2) {
    v += math::shfl_xor_sync(v, offset);
  }
  return v;
}

__device__ __forceinline__ uint32_t warp_reduce_max(uint32_t v) {
#pragma unroll
  for (uint32_t offset = 16; offset > 0; offset /= 2) {
    v = max(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Every thread gets the block-wide sum. Each call needs its own 32-entry smem buffer.
__device__ __forceinline__ float block_reduce_sum(float v, float* buf) {
  v = warp_reduce_sum(v);
  const uint32_t num_warps = blockDim.x / 32;
  if (num_warps == 1) return v;
  const uint32_t lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) buf[warp] = v;
  __syncthreads();
  v = lane < num_warps ? buf[lane] : 0.f;
  return warp_reduce_sum(v);
}

// Every thread gets the block-wide max. *buf must be 0, stored before a __syncthreads() that
// precedes this call; one shared-memory atomicMax per warp replaces a second shuffle tree.
__device__ __forceinline__ uint32_t block_reduce_max(uint32_t v, uint32_t* buf) {
  v = warp_reduce_max(v);
  if (blockDim.x == 32) return v;
  if (threadIdx.x % 32 == 0) atomicMax(buf, v);
  __syncthreads();
  return *buf;
}

__device__ __forceinline__ void pdl_wait() {
#if (__CUDACC_VER_MAJOR__ >= 12 && defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900))
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents() {
#if (__CUDACC_VER_MAJOR__ >= 12 && defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900))
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

}  // namespace detail

namespace detail {

// Vector j of this thread. Interleaved: vector j * nthr + tid (coalesced, consecutive vectors in
// consecutive lanes). Blocked: each thread owns whole 32-element scale blocks (4 consecutive
// vectors), so the block amax, scale and scale store need no lane exchange and the thread writes
// 32 contiguous fp8 bytes.
template <bool BLOCKED>
__device__ __forceinline__ uint32_t vec_index(uint32_t j, uint32_t tid, uint32_t nthr) {
  return BLOCKED ? (j / 4u) * (4u * nthr) + tid * 4u + j % 4u : j * nthr + tid;
}

// Blocked for RMSNorm -> MXFP8 without residual at 4+ vectors per thread: its loads stay in L1
// between the 4 strided vector loads. Measured slower on H200 with a residual (strided in-place
// residual stores) and for LayerNorm (strided fp32 gamma / beta loads).
template <NormType NORM, bool HAS_RES, QuantType QT>
constexpr bool MxBlocked(uint32_t vpt) {
  return QT == QuantType::kMXFP8 && NORM == NormType::kRMSNorm && !HAS_RES && vpt % 4 == 0;
}

template <bool STREAMING>
__device__ __forceinline__ uint4 load_vec(const void* ptr) {
  if constexpr (STREAMING) {
    return __ldcs(reinterpret_cast<const uint4*>(ptr));
  } else {
    return *reinterpret_cast<const uint4*>(ptr);
  }
}

// Read-only fp32x4 load that stays in L1 ahead of the streamed rows (LayerNorm's gamma / beta are
// re-read by every row: 0-9% faster LayerNorm -> FP8 on H200 than a plain load). Volatile keeps
// the loads where they are written; letting the compiler hoist them measured up to 9% slower.
__device__ __forceinline__ float4 load_f32x4_evict_last(const float* ptr) {
  float4 v;
  asm volatile("ld.global.nc.L1::evict_last.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
               : "l"(ptr));
  return v;
}

// Loads the raw input row (and the residual row) of this thread. LayerNorm uses streaming
// (evict-first) loads so that its fp32 gamma / beta (8 bytes per element, re-read by every row)
// stay in L1; for RMSNorm plain loads measured faster on H100.
template <typename T, uint32_t VPT, NormType NORM, bool HAS_RES, bool BLOCKED>
__device__ __forceinline__ void load_row(const NormQuantParams& p, uint32_t row, uint32_t nvec,
                                         uint4 (&a)[VPT], uint4 (&r)[VPT]) {
  constexpr bool kStreaming = NORM == NormType::kLayerNorm;
  const T* in_row = static_cast<const T*>(p.input) + size_t(row) * p.stride_input;
  const T* res_row = nullptr;
  if constexpr (HAS_RES) {
    res_row = static_cast<const T*>(p.residual) + size_t(row) * p.stride_residual;
  }
#pragma unroll
  for (uint32_t j = 0; j < VPT; ++j) {
    const uint32_t v = vec_index<BLOCKED>(j, threadIdx.x, blockDim.x);
    a[j] = make_uint4(0u, 0u, 0u, 0u);  // out-of-range vectors contribute zeros
    if (v < nvec) {
      a[j] = load_vec<kStreaming>(in_row + v * kVecSize);
      if constexpr (HAS_RES) r[j] = load_vec<kStreaming>(res_row + v * kVecSize);
    }
  }
}

template <typename T>
__device__ __forceinline__ void unpack8(const uint4& u, float (&f)[kVecSize]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (uint32_t k = 0; k < 4; ++k) {
    const float2 t = unpack2<T>(w[k]);
    f[2 * k] = t.x;
    f[2 * k + 1] = t.y;
  }
}

template <typename T>
__device__ __forceinline__ uint4 pack8(const float (&f)[kVecSize]) {
  return make_uint4(pack2<T>(f[0], f[1]), pack2<T>(f[2], f[3]), pack2<T>(f[4], f[5]),
                    pack2<T>(f[6], f[7]));
}

// e4m3(x * 2^(127 - code)) of 8 packed T values, code in [0, 254] (code 0 quantizes to zero).
// The power-of-two product is exact wherever it can reach e4m3's range, so bf16 multiplies packed
// (2^(127 - code) >= 2^-120 is a normal bf16 for any bf16 amax); fp16 goes through fp32 (its
// scale can exceed fp16's range).
template <typename T>
__device__ __forceinline__ uint2 scale_cvt_e4m3x8(const uint4& x, uint32_t code) {
  float y[kVecSize];
  if constexpr (std::is_same_v<T, nv_bfloat16>) {
    const uint32_t s = code == 0u ? 0u : ((254u - code) << 7) * 0x10001u;  // bf16x2 2^(127-code)
    const __nv_bfloat162 s2 = *reinterpret_cast<const __nv_bfloat162*>(&s);
    const uint32_t w[4] = {x.x, x.y, x.z, x.w};
    uint32_t m[4];
#pragma unroll
    for (uint32_t k = 0; k < 4; ++k) {
      const __nv_bfloat162 prod = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&w[k]), s2);
      m[k] = *reinterpret_cast<const uint32_t*>(&prod);
    }
    unpack8<T>(make_uint4(m[0], m[1], m[2], m[3]), y);
  } else {
    unpack8<T>(x, y);
    const float inv = ue8m0_inv_scale(code);
#pragma unroll
    for (uint32_t k = 0; k < kVecSize; ++k) y[k] *= inv;
  }
  return make_uint2(uint32_t(cvt_fp8x2<QuantType::kFP8E4M3>(y[0], y[1])) |
                        (uint32_t(cvt_fp8x2<QuantType::kFP8E4M3>(y[2], y[3])) << 16),
                    uint32_t(cvt_fp8x2<QuantType::kFP8E4M3>(y[4], y[5])) |
                        (uint32_t(cvt_fp8x2<QuantType::kFP8E4M3>(y[6], y[7])) << 16));
}

// Normalizes and quantizes one row whose raw input (and residual) is in a / r. Without a
// residual the row is kept packed (4 registers per 8 elements) and unpacked on each pass; with
// a residual the fp32 sum is kept, because the norm uses it and not the rounded residual.
template <typename T, uint32_t VPT, NormType NORM, bool HAS_RES, QuantType QT>
__device__ __forceinline__ void norm_quant_row(const NormQuantParams& p, const uint32_t row,
                                               const uint4 (&a)[VPT], const uint4 (&r)[VPT],
                                               float (*s_red)[32], uint32_t* s_max,
                                               uint4* s_stage) {
  constexpr bool kMX = QT == QuantType::kMXFP8;
  constexpr bool kPerToken = QT == QuantType::kFP8E4M3PerToken;
  constexpr bool kBlocked = MxBlocked<NORM, HAS_RES, QT>(VPT);
  // rmsnorm_quant quantizes the fp32 normed value; layernorm_quant, MXFP8 and per-token
  // quantize the value rounded to the input dtype (what the unfused pair would quantize).
  constexpr bool kRoundBeforeQuant = kMX || kPerToken || NORM == NormType::kLayerNorm;
  const uint32_t tid = threadIdx.x, nthr = blockDim.x;
  const uint32_t d = p.d, nvec = d / kVecSize;

  float xs[HAS_RES ? VPT : 1][kVecSize];  // fp32 input + residual (residual only)
  auto get_x = [&](uint32_t j, float (&f)[kVecSize]) {
    if constexpr (HAS_RES) {
#pragma unroll
      for (uint32_t k = 0; k < kVecSize; ++k) f[k] = xs[j][k];
    } else {
      unpack8<T>(a[j], f);
    }
  };

  // One vector per thread (up to 512 tokens, or small rows): the RMSNorm weight vector is loaded
  // before the reduction, so its latency overlaps the barrier instead of following it. With more
  // vectors per thread (large batches) the extra registers would cost occupancy.
  constexpr bool kWeightFirst = VPT == 1 && NORM == NormType::kRMSNorm;
  uint4 w_first = make_uint4(0u, 0u, 0u, 0u);
  if constexpr (kWeightFirst) {
    if (tid < nvec) {  // vector tid (one vector per thread)
      w_first = *reinterpret_cast<const uint4*>(static_cast<const T*>(p.weight) + tid * kVecSize);
    }
  }

  // Pass 1: residual add (written back) and sum / sum of squares.
  float sum = 0.f;
#pragma unroll
  for (uint32_t j = 0; j < VPT; ++j) {
    const uint32_t v = vec_index<kBlocked>(j, tid, nthr);
    float f[kVecSize];
    if constexpr (HAS_RES) {
      if (v < nvec) {
        float fr[kVecSize];
        unpack8<T>(a[j], f);
        unpack8<T>(r[j], fr);
#pragma unroll
        for (uint32_t k = 0; k < kVecSize; ++k) f[k] += fr[k];
        T* res_row = static_cast<T*>(p.residual) + size_t(row) * p.stride_residual;
        *reinterpret_cast<uint4*>(res_row + v * kVecSize) = pack8<T>(f);
      } else {
#pragma unroll
        for (uint32_t k = 0; k < kVecSize; ++k) f[k] = 0.f;
      }
#pragma unroll
      for (uint32_t k = 0; k < kVecSize; ++k) xs[j][k] = f[k];
    } else {
      unpack8<T>(a[j], f);  // zeros when out of range
    }
#pragma unroll
    for (uint32_t k = 0; k < kVecSize; ++k) {
      if constexpr (NORM == NormType::kRMSNorm) {
        sum += f[k] * f[k];
      } else {
        sum += f[k];
      }
    }
  }

  float mean = 0.f, rstd;
  if constexpr (NORM == NormType::kRMSNorm) {
    sum = block_reduce_sum(sum, s_red[0]);
    rstd = math::rsqrt(sum / float(d) + p.eps);
  } else {
    // Two-pass variance, like layernorm_quant.
    sum = block_reduce_sum(sum, s_red[0]);
    mean = sum / float(d);
    float var_sum = 0.f;
#pragma unroll
    for (uint32_t j = 0; j < VPT; ++j) {
      if (vec_index<kBlocked>(j, tid, nthr) < nvec) {
        float f[kVecSize];
        get_x(j, f);
#pragma unroll
        for (uint32_t k = 0; k < kVecSize; ++k) {
          const float diff = f[k] - mean;
          var_sum += diff * diff;
        }
      }
    }
    var_sum = block_reduce_sum(var_sum, s_red[1]);
    rstd = math::rsqrt(var_sum / float(d) + p.eps);
  }

  T* normed_row = p.normed_out == nullptr
                      ? nullptr
                      : static_cast<T*>(p.normed_out) + size_t(row) * p.stride_normed;
  uint8_t* out_row = static_cast<uint8_t*>(p.out) + size_t(row) * p.stride_out;
  const uint32_t num_sf_cols = p.padded_d / kSfVecSize;
  const uint32_t num_k_tiles = ceil_div(num_sf_cols, 4u);
  // Scale of column block k: sf_row + (k / 4) * sf_k4_stride + k % 4, in both layouts.
  const uint32_t sf_row =
      p.sf_swizzled ? sf_offset_128x4(row, 0u, num_k_tiles) : row * num_sf_cols;
  const uint32_t sf_k4_stride = p.sf_swizzled ? 512u : 4u;
  float scale_inv = 0.f;
  if constexpr (!kMX && !kPerToken) {
    // Static per-tensor scale: same expression as rmsnorm_quant / layernorm_quant.
    scale_inv = 1.0f / p.scale[0];
  }
  uint32_t local_max = 0u;  // per-token: max |normed| as a 16-bit pattern
  uint4 normed_packed[kPerToken ? VPT : 1];

  // MXFP8: the scale and e4m3 values of one 32-element block from its amax (16-bit pattern) and
  // its 4 rounded vectors x[0..n) (n = 4 when a thread owns the block, 1 when 4 lanes share it).
  auto quant_block = [&](uint32_t blk_max, const uint4* x, uint2* q, uint32_t n) {
    uint32_t code = ue8m0_code(HalfBits<T>::to_float(blk_max));
    // |x * 2^(127 - code)| <= 448 by construction; satfinite is a no-op here.
#pragma unroll
    for (uint32_t i = 0; i < n; ++i) q[i] = scale_cvt_e4m3x8<T>(x[i], code);
    if (blk_max >= HalfBits<T>::kInf) {
      // NaN or Inf in the block: NaN scale (0xFF) and NaN values (0x7F).
      code = 0xFFu;
#pragma unroll
      for (uint32_t i = 0; i < n; ++i) q[i] = make_uint2(0x7F7F7F7Fu, 0x7F7F7F7Fu);
    }
    return code;
  };
  auto store_sf = [&](uint32_t k, uint32_t code) {
    p.sf_out[sf_row + (k / 4u) * sf_k4_stride + k % 4u] = static_cast<uint8_t>(code);
  };
  uint4 grp[kBlocked ? 4 : 1];  // blocked: the 4 rounded vectors of the current block
  uint32_t grp_max = 0u;
  // Blocked: lane l holds vectors 4l .. 4l + 3 of its warp's 128; storing them directly would put
  // each lane's 16-byte stores 64 bytes apart (1.5x slower on H200). They go through this warp's
  // 2 KB of shared memory instead (16-byte chunk i of lane l at 4l + (i ^ (l / 2 % 4)): no bank
  // conflicts on either side), and each store instruction writes 512 contiguous bytes.
  auto store_normed_blocked = [&](uint32_t g) {
    const uint32_t lane = tid % 32;
    uint4* stage = s_stage + (tid / 32u) * 128u;
#pragma unroll
    for (uint32_t i = 0; i < 4; ++i) stage[lane * 4u + (i ^ ((lane / 2u) % 4u))] = grp[i];
    __syncwarp();
    const uint32_t warp_v0 = g * 4u * nthr + (tid / 32u) * 128u;
#pragma unroll
    for (uint32_t i = 0; i < 4; ++i) {
      const uint32_t q = i * 32u + lane, src = q / 4u;
      const uint4 val = stage[src * 4u + ((q % 4u) ^ ((src / 2u) % 4u))];
      if (warp_v0 + q < nvec) {
        *reinterpret_cast<uint4*>(normed_row + (warp_v0 + q) * kVecSize) = val;
      }
    }
    __syncwarp();
  };

  // Pass 2: normalize, (round,) quantize and store, one vector at a time.
#pragma unroll
  for (uint32_t j = 0; j < VPT; ++j) {
    const uint32_t v = vec_index<kBlocked>(j, tid, nthr);
    const bool valid = v < nvec;
    const uint32_t c = v * kVecSize;
    float y[kVecSize];
    uint4 rounded;  // MXFP8: the normed vector rounded to T
    uint32_t blk_max = 0u;
    if (valid) {
      float f[kVecSize];
      get_x(j, f);
      if constexpr (NORM == NormType::kRMSNorm) {
        const uint4 w = kWeightFirst
                             ? w_first
                             : *reinterpret_cast<const uint4*>(static_cast<const T*>(p.weight) + c);
        float fw[kVecSize];
        unpack8<T>(w, fw);
#pragma unroll
        for (uint32_t k = 0; k < kVecSize; ++k) y[k] = f[k] * rstd * (p.weight_bias + fw[k]);
      } else {
        const float* g = static_cast<const float*>(p.weight) + c;
        const float4 g0 = load_f32x4_evict_last(g), g1 = load_f32x4_evict_last(g + 4);
        const float4 b0 = load_f32x4_evict_last(p.beta + c);
        const float4 b1 = load_f32x4_evict_last(p.beta + c + 4);
        const float gg[8] = {g0.x, g0.y, g0.z, g0.w, g1.x, g1.y, g1.z, g1.w};
        const float bb[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
        for (uint32_t k = 0; k < kVecSize; ++k)
          y[k] = __fmaf_rn((f[k] - mean) * rstd, gg[k], bb[k]);
      }
      if (kRoundBeforeQuant || normed_row != nullptr) {
        const uint4 o = pack8<T>(y);
        if (!kBlocked && normed_row != nullptr) *reinterpret_cast<uint4*>(normed_row + c) = o;
        if constexpr (kMX || kPerToken) blk_max = abs_max_bits(o);
        if constexpr (kMX) rounded = o;
        if constexpr (kPerToken) normed_packed[j] = o;
        if constexpr (kRoundBeforeQuant && !kMX && !kPerToken) unpack8<T>(o, y);
      }
    }
    if constexpr (kMX && kBlocked) {
      grp[j % 4] = rounded;
      grp_max = j % 4 == 0 ? blk_max : max(grp_max, blk_max);
      if (j % 4 == 3 && valid) {  // a block is fully valid or fully out of range (nvec % 4 == 0)
        uint2 q[4];
        const uint32_t code = quant_block(grp_max, grp, q, 4);
        uint4* dst = reinterpret_cast<uint4*>(out_row + c - 3u * kVecSize);
        dst[0] = make_uint4(q[0].x, q[0].y, q[1].x, q[1].y);
        dst[1] = make_uint4(q[2].x, q[2].y, q[3].x, q[3].y);
        store_sf(v / 4u, code);
      }
      if (j % 4 == 3 && normed_row != nullptr) store_normed_blocked(j / 4u);
    } else if constexpr (kMX) {
      // 4 consecutive vectors (32 elements) live in 4 consecutive lanes (nthr % 32 == 0 and
      // nvec % 4 == 0, so a group of 4 lanes is either fully valid or fully out of range).
      blk_max = max(blk_max, __shfl_xor_sync(0xffffffffu, blk_max, 1));
      blk_max = max(blk_max, __shfl_xor_sync(0xffffffffu, blk_max, 2));
      if (valid) {
        uint2 q;
        const uint32_t code = quant_block(blk_max, &rounded, &q, 1);
        *reinterpret_cast<uint2*>(out_row + c) = q;
        if (tid % 4 == 0) store_sf(v / 4u, code);
      }
    } else if constexpr (kPerToken) {
      local_max = max(local_max, blk_max);
    } else {
      if (valid) *reinterpret_cast<uint2*>(out_row + c) = cvt_fp8x8<QT>(y, scale_inv);
    }
  }

  if constexpr (kMX) {
    // Padded fp8 columns [d, padded_d) and padded scale columns.
    for (uint32_t c = d + tid * 16u; c < p.padded_d; c += nthr * 16u) {
      *reinterpret_cast<uint4*>(out_row + c) = make_uint4(0u, 0u, 0u, 0u);
    }
    const uint32_t sf_cols_end = p.sf_swizzled ? num_k_tiles * 4u : num_sf_cols;
    for (uint32_t k = d / kSfVecSize + tid; k < sf_cols_end; k += nthr) {
      const uint32_t off =
          p.sf_swizzled ? sf_offset_128x4(row, k, num_k_tiles) : row * num_sf_cols + k;
      p.sf_out[off] = 0u;
    }
  } else if constexpr (kPerToken) {
    const uint32_t m = block_reduce_max(local_max, s_max);
    float scale, inv;
    if (m >= HalfBits<T>::kInf) {
      scale = __uint_as_float(0x7FFFFFFFu);  // NaN
      inv = scale;
    } else {
      float amax = HalfBits<T>::to_float(m);
      if (p.scale_ub != nullptr) amax = fminf(amax, p.scale_ub[0]);
      scale = fmaxf(__fdiv_rn(amax, kE4M3Max), kPerTokenMinScale);
      inv = __frcp_rn(scale);
    }
#pragma unroll
    for (uint32_t j = 0; j < VPT; ++j) {
      const uint32_t v = vec_index<kBlocked>(j, tid, nthr);
      if (v < nvec) {
        float y[kVecSize];
        unpack8<T>(normed_packed[j], y);
        *reinterpret_cast<uint2*>(out_row + v * kVecSize) = cvt_fp8x8<QuantType::kFP8E4M3>(y, inv);
      }
    }
    if (tid == 0) p.token_scale[row] = scale;
  }
}

}  // namespace detail

// One CTA normalizes row blockIdx.x; CTAs with blockIdx.x >= num_tokens zero the padding rows
// of the 128x4 swizzled MXFP8 scale layout.
template <typename T, uint32_t VPT, NormType NORM, bool HAS_RES, QuantType QT>
__global__ void FLASHINFER_NORM_QUANT_BOUNDS((NormQuantMaxThreads<VPT>::value),
                                             (NormQuantMaxRegs<VPT, NORM, HAS_RES, QT>::value))
    NormQuantKernel(const NormQuantParams p) {
  static_assert(sizeof(T) == 2, "only 16-bit input types are supported");
  constexpr bool kMX = QT == QuantType::kMXFP8;
  __shared__ float s_red[2][32];
  __shared__ uint32_t s_max;
  // Blocked layout with a normed output: 64 bytes per thread, sized at launch.
  extern __shared__ uint4 s_stage[];

  const uint32_t tid = threadIdx.x, nthr = blockDim.x;
  const uint32_t row = blockIdx.x;

  detail::pdl_wait();

  if (row >= p.num_tokens) {
    if constexpr (kMX) {
      // Zero the padding rows [num_tokens, round_up(num_tokens, 128)) of the swizzled scales.
      const uint32_t num_k_tiles = ceil_div(p.padded_d / kSfVecSize, 4u);
      const uint32_t r0 = p.num_tokens + (row - p.num_tokens) * kSfPadRowsPerCta;
      const uint32_t nrows = min(kSfPadRowsPerCta, p.num_tokens + p.num_sf_pad_rows - r0);
      for (uint32_t i = tid; i < nrows * num_k_tiles; i += nthr) {
        const uint32_t m = r0 + i / num_k_tiles, kt = i % num_k_tiles;
        *reinterpret_cast<uint32_t*>(p.sf_out + detail::sf_offset_128x4(m, kt * 4u, num_k_tiles)) =
            0u;
      }
    }
    detail::pdl_launch_dependents();
    return;
  }

  // Per-token amax accumulator; the norm's sum reduction orders this store before its atomics.
  if (QT == QuantType::kFP8E4M3PerToken && tid == 0) s_max = 0u;
  uint4 a[VPT], r[VPT];
  constexpr bool kBlocked = detail::MxBlocked<NORM, HAS_RES, QT>(VPT);
  detail::load_row<T, VPT, NORM, HAS_RES, kBlocked>(p, row, p.d / kVecSize, a, r);
  // All global reads of data produced by the previous kernel have been issued.
  detail::pdl_launch_dependents();
  detail::norm_quant_row<T, VPT, NORM, HAS_RES, QT>(p, row, a, r, s_red, &s_max, s_stage);
}

// Vectors per thread: small batches spread a row over as many threads as possible (latency);
// large batches use at most 256 threads per row, and without a residual at least 4 vectors per
// thread (fewer threads per row: shorter reductions and more rows resident per SM; with a
// residual the larger register footprint costs more than it saves; measured on H200). The thread
// partition sets the order of a row's fp32 sums, so a row's result can differ in the last bit
// between batches of at most 512 tokens and larger ones.
inline uint32_t NormQuantPickVPT(uint32_t d, uint32_t num_tokens, bool has_residual) {
  const uint32_t nvec = d / kVecSize;
  const bool large = num_tokens > 512;
  const uint32_t target = large ? 256u : 1024u;
  const uint32_t min_vpt = large && !has_residual ? 4u : 1u;
  constexpr uint32_t kVpts[4] = {1u, 2u, 4u, 8u};
  constexpr uint32_t kCaps[4] = {NormQuantMaxThreads<1>::value, NormQuantMaxThreads<2>::value,
                                 NormQuantMaxThreads<4>::value, NormQuantMaxThreads<8>::value};
  for (uint32_t limit : {target, 1024u}) {
    for (uint32_t i = 0; i < 4; ++i) {
      const uint32_t nthr = round_up(ceil_div(nvec, kVpts[i]), 32u);
      if (kVpts[i] >= min_vpt && nthr <= limit && nthr <= kCaps[i]) return kVpts[i];
    }
  }
  return 0;  // row too wide
}

// Largest supported hidden size (VPT = 8 at 256 threads).
constexpr uint32_t kNormQuantMaxHidden = 8u * 256u * kVecSize;

template <typename T, NormType NORM, bool HAS_RES, QuantType QT>
cudaError_t NormQuant(const NormQuantParams& params, bool enable_pdl, cudaStream_t stream) {
  if (params.d == 0 || params.d % kVecSize != 0 || params.d > kNormQuantMaxHidden) {
    return cudaErrorInvalidValue;
  }
  if (params.num_tokens == 0) return cudaSuccess;
  const uint32_t vpt = NormQuantPickVPT(params.d, params.num_tokens, HAS_RES);
  if (vpt == 0) return cudaErrorInvalidValue;
  const uint32_t nthr = round_up(ceil_div(params.d / kVecSize, vpt), 32u);
  uint32_t grid = params.num_tokens;
  if (QT == QuantType::kMXFP8 && params.sf_swizzled) {
    grid += ceil_div(params.num_sf_pad_rows, kSfPadRowsPerCta);
  }

  cudaLaunchConfig_t config;
  config.gridDim = dim3(grid);
  config.blockDim = dim3(nthr);
  // Blocked layout with a normed output: per-warp staging of the normed stores.
  config.dynamicSmemBytes =
      detail::MxBlocked<NORM, HAS_RES, QT>(vpt) && params.normed_out != nullptr
          ? nthr * 4 * sizeof(uint4)
          : 0;
  config.stream = stream;
  cudaLaunchAttribute attrs[1];
  attrs[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[0].val.programmaticStreamSerializationAllowed = enable_pdl;
  config.numAttrs = 1;
  config.attrs = attrs;

  switch (vpt) {
#define FLASHINFER_NORM_QUANT_LAUNCH_CASE(V)                                            \
  case V:                                                                               \
    FLASHINFER_CUDA_CALL(                                                               \
        cudaLaunchKernelEx(&config, NormQuantKernel<T, V, NORM, HAS_RES, QT>, params)); \
    break;
    FLASHINFER_NORM_QUANT_LAUNCH_CASE(1)
    FLASHINFER_NORM_QUANT_LAUNCH_CASE(2)
    FLASHINFER_NORM_QUANT_LAUNCH_CASE(4)
    FLASHINFER_NORM_QUANT_LAUNCH_CASE(8)
#undef FLASHINFER_NORM_QUANT_LAUNCH_CASE
    default:
      return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

// Runtime dispatch over (norm type, residual); T and QT are compile-time.
template <typename T, QuantType QT>
cudaError_t DispatchNormQuant(NormType norm_type, bool has_residual, const NormQuantParams& params,
                              bool enable_pdl, cudaStream_t stream) {
  if (norm_type == NormType::kRMSNorm) {
    return has_residual ? NormQuant<T, NormType::kRMSNorm, true, QT>(params, enable_pdl, stream)
                        : NormQuant<T, NormType::kRMSNorm, false, QT>(params, enable_pdl, stream);
  }
  return has_residual ? NormQuant<T, NormType::kLayerNorm, true, QT>(params, enable_pdl, stream)
                      : NormQuant<T, NormType::kLayerNorm, false, QT>(params, enable_pdl, stream);
}

}  // namespace quant

}  // namespace norm

}  // namespace flashinfer

#endif  // FLASHINFER_NORM_NORM_QUANT_CUH_
