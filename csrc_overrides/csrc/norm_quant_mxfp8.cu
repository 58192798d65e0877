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
// Fused (residual add +) RMSNorm / Gemma-RMSNorm / LayerNorm -> MXFP8.
#include "norm_quant_common.h"

using namespace flashinfer::norm::quant;
using norm_quant_detail::make_norm_params;

// out: [num_tokens, padded_hidden] float8_e4m3fn. sf_out: uint8, linear [num_tokens,
// padded_hidden / 32] or 128x4 swizzled (round_up(num_tokens, 128) * round_up(padded_hidden / 32,
// 4) bytes, padding zero-filled), the layouts mxfp8_quantize() writes.
void norm_mxfp8_quantize(TensorView out, TensorView sf_out, Optional<TensorView> normed_out,
                         TensorView input, Optional<TensorView> residual, TensorView weight,
                         Optional<TensorView> beta, int64_t norm_type, double weight_bias,
                         double eps, bool sf_swizzled, bool enable_pdl) {
  NormQuantParams p = make_norm_params(input, residual, weight, beta, normed_out, norm_type,
                                       weight_bias, eps, /*hidden_multiple=*/kSfVecSize);
  TVM_FFI_ICHECK(out.dtype() == dl_float8_e4m3fn) << "out must be float8_e4m3fn";
  TVM_FFI_ICHECK_EQ(out.ndim(), 2) << "out must be a 2D tensor";
  const int64_t padded_d = out.size(1);
  TVM_FFI_ICHECK(padded_d >= p.d && padded_d % kSfVecSize == 0)
      << "out.size(1) must be a multiple of 32 and >= hidden_size, got " << padded_d;
  norm_quant_detail::check_row_tensor(out, "out", p.num_tokens, padded_d, input);
  p.out = out.data_ptr();
  p.stride_out = static_cast<uint32_t>(out.stride(0));
  p.padded_d = static_cast<uint32_t>(padded_d);

  TVM_FFI_ICHECK_EQ(sf_out.device().device_type, kDLCUDA) << "sf_out must be a CUDA tensor";
  CHECK_DEVICE(sf_out, input);
  TVM_FFI_ICHECK(sf_out.dtype() == dl_uint8) << "sf_out must be uint8";
  TVM_FFI_ICHECK(sf_out.IsContiguous()) << "sf_out must be contiguous";
  TVM_FFI_ICHECK(reinterpret_cast<uintptr_t>(sf_out.data_ptr()) % 4 == 0)
      << "sf_out must be 4-byte aligned";
  const int64_t num_sf_cols = padded_d / kSfVecSize;
  const int64_t padded_rows =
      sf_swizzled ? (int64_t(p.num_tokens) + 127) / 128 * 128 : p.num_tokens;
  const int64_t sf_cols = sf_swizzled ? (num_sf_cols + 3) / 4 * 4 : num_sf_cols;
  TVM_FFI_ICHECK_GE(sf_out.numel(), padded_rows * sf_cols)
      << "sf_out is too small: need " << padded_rows * sf_cols << " bytes";
  p.sf_out = static_cast<uint8_t*>(sf_out.data_ptr());
  p.sf_swizzled = sf_swizzled;
  p.num_sf_pad_rows = static_cast<uint32_t>(padded_rows - p.num_tokens);

  ffi::CUDADeviceGuard device_guard(input.device().device_id);
  const cudaStream_t stream = get_stream(input.device());
  DISPATCH_DLPACK_DTYPE_TO_CTYPE_FP16(input.dtype(), c_type, [&] {
    cudaError_t status = DispatchNormQuant<c_type, QuantType::kMXFP8>(
        static_cast<NormType>(norm_type), residual.has_value(), p, enable_pdl, stream);
    TVM_FFI_ICHECK(status == cudaSuccess)
        << "NormQuant (MXFP8) failed with error code " << cudaGetErrorString(status);
    return true;
  });
}
