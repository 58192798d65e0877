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
// Fused (residual add +) RMSNorm / Gemma-RMSNorm / LayerNorm -> static per-tensor FP8 and
// dynamic per-token FP8.
#include "norm_quant_common.h"

using namespace flashinfer::norm::quant;
using norm_quant_detail::make_norm_params;

namespace {

void launch_static(const NormQuantParams& p, const TensorView& input, const TensorView& out,
                   int64_t norm_type, bool has_residual, bool enable_pdl) {
  ffi::CUDADeviceGuard device_guard(input.device().device_id);
  const cudaStream_t stream = get_stream(input.device());
  DISPATCH_DLPACK_DTYPE_TO_CTYPE_FP16(input.dtype(), c_type, [&] {
    cudaError_t status;
    if (out.dtype() == dl_float8_e4m3fn) {
      status = DispatchNormQuant<c_type, QuantType::kFP8E4M3>(static_cast<NormType>(norm_type),
                                                              has_residual, p, enable_pdl, stream);
    } else {
      status = DispatchNormQuant<c_type, QuantType::kFP8E5M2>(static_cast<NormType>(norm_type),
                                                              has_residual, p, enable_pdl, stream);
    }
    TVM_FFI_ICHECK(status == cudaSuccess)
        << "NormQuant (static fp8) failed with error code " << cudaGetErrorString(status);
    return true;
  });
}

void set_static_out(NormQuantParams& p, const TensorView& out, const TensorView& scale,
                    const TensorView& input) {
  TVM_FFI_ICHECK(out.dtype() == dl_float8_e4m3fn || out.dtype() == dl_float8_e5m2)
      << "out must be float8_e4m3fn or float8_e5m2";
  norm_quant_detail::check_row_tensor(out, "out", p.num_tokens, p.d, input);
  TVM_FFI_ICHECK_EQ(scale.device().device_type, kDLCUDA) << "scale must be a CUDA tensor";
  CHECK_DEVICE(scale, input);
  TVM_FFI_ICHECK_EQ(scale.numel(), 1) << "scale must have exactly one element";
  TVM_FFI_ICHECK(scale.dtype() == dl_float32) << "scale must be float32";
  p.out = out.data_ptr();
  p.stride_out = static_cast<uint32_t>(out.stride(0));
  p.scale = static_cast<const float*>(scale.data_ptr());
}

}  // namespace

// Static per-tensor scale: out = fp8(normed / scale) (satfinite).
void norm_fp8_quantize(TensorView out, Optional<TensorView> normed_out, TensorView input,
                       Optional<TensorView> residual, TensorView weight, Optional<TensorView> beta,
                       TensorView scale, int64_t norm_type, double weight_bias, double eps,
                       bool enable_pdl) {
  NormQuantParams p = make_norm_params(input, residual, weight, beta, normed_out, norm_type,
                                       weight_bias, eps, /*hidden_multiple=*/kVecSize);
  set_static_out(p, out, scale, input);
  launch_static(p, input, out, norm_type, residual.has_value(), enable_pdl);
}

// Dynamic per-token scale: token_scale[i] = max(min(amax_i, scale_ub) / 448, 1 / (448 * 512)),
// out = fp8_e4m3(normed * (1 / token_scale[i])).
void norm_fp8_per_token_quantize(TensorView out, TensorView token_scale,
                                 Optional<TensorView> normed_out, TensorView input,
                                 Optional<TensorView> residual, TensorView weight,
                                 Optional<TensorView> beta, Optional<TensorView> scale_ub,
                                 int64_t norm_type, double weight_bias, double eps,
                                 bool enable_pdl) {
  NormQuantParams p = make_norm_params(input, residual, weight, beta, normed_out, norm_type,
                                       weight_bias, eps, /*hidden_multiple=*/kVecSize);
  TVM_FFI_ICHECK(out.dtype() == dl_float8_e4m3fn) << "out must be float8_e4m3fn";
  norm_quant_detail::check_row_tensor(out, "out", p.num_tokens, p.d, input);
  p.out = out.data_ptr();
  p.stride_out = static_cast<uint32_t>(out.stride(0));
  TVM_FFI_ICHECK_EQ(token_scale.device().device_type, kDLCUDA) << "scale must be a CUDA tensor";
  CHECK_DEVICE(token_scale, input);
  TVM_FFI_ICHECK(token_scale.dtype() == dl_float32) << "scale must be float32";
  TVM_FFI_ICHECK(token_scale.IsContiguous()) << "scale must be contiguous";
  TVM_FFI_ICHECK_EQ(token_scale.numel(), int64_t(p.num_tokens))
      << "scale must have num_tokens elements";
  p.token_scale = static_cast<float*>(token_scale.data_ptr());
  if (scale_ub.has_value()) {
    const TensorView& ub = scale_ub.value();
    CHECK_DEVICE(ub, input);
    TVM_FFI_ICHECK_EQ(ub.numel(), 1) << "scale_ub must have exactly one element";
    TVM_FFI_ICHECK(ub.dtype() == dl_float32) << "scale_ub must be float32";
    p.scale_ub = static_cast<const float*>(ub.data_ptr());
  }
  ffi::CUDADeviceGuard device_guard(input.device().device_id);
  const cudaStream_t stream = get_stream(input.device());
  DISPATCH_DLPACK_DTYPE_TO_CTYPE_FP16(input.dtype(), c_type, [&] {
    cudaError_t status = DispatchNormQuant<c_type, QuantType::kFP8E4M3PerToken>(
        static_cast<NormType>(norm_type), residual.has_value(), p, enable_pdl, stream);
    TVM_FFI_ICHECK(status == cudaSuccess)
        << "NormQuant (per-token fp8) failed with error code " << cudaGetErrorString(status);
    return true;
  });
}

// Drop-in for the norm module's layernorm_quant: same contract (bf16 input, fp32 gamma/beta,
// contiguous tensors), same math (two-pass variance, normed value rounded to bf16 before the
// fp8 cast), vectorized single-pass kernel.
void layernorm_quant(TensorView output, TensorView input, TensorView gamma, TensorView beta,
                     TensorView scale, double eps) {
  CHECK_LAST_DIM_CONTIGUOUS_INPUT(input);
  CHECK_LAST_DIM_CONTIGUOUS_INPUT(output);
  CHECK_LAST_DIM_CONTIGUOUS_INPUT(gamma);
  CHECK_LAST_DIM_CONTIGUOUS_INPUT(beta);
  CHECK_DEVICE(input, gamma);
  CHECK_DEVICE(input, beta);
  CHECK_DEVICE(input, output);
  CHECK_DEVICE(input, scale);
  CHECK_DIM(2, input);   // input: (batch_size, hidden_size)
  CHECK_DIM(2, output);  // output: (batch_size, hidden_size)
  CHECK_DIM(1, gamma);   // gamma: (hidden_size)
  CHECK_DIM(1, beta);    // beta: (hidden_size)
  TVM_FFI_ICHECK_EQ(input.size(1), gamma.size(0));
  TVM_FFI_ICHECK_EQ(input.size(1), beta.size(0));
  TVM_FFI_ICHECK_EQ(scale.numel(), 1);
  const int64_t hidden_size = input.size(1);
  TVM_FFI_ICHECK_EQ(output.size(0), input.size(0));
  TVM_FFI_ICHECK_EQ(output.size(1), hidden_size);
  TVM_FFI_ICHECK_EQ(input.stride(0), hidden_size) << "input must be contiguous";
  TVM_FFI_ICHECK_EQ(output.stride(0), hidden_size) << "output must be contiguous";
  TVM_FFI_ICHECK_EQ(input.dtype(), dl_bfloat16) << "input must be bfloat16";
  TVM_FFI_ICHECK_EQ(gamma.dtype(), dl_float32) << "gamma must be float32";
  TVM_FFI_ICHECK_EQ(beta.dtype(), dl_float32) << "beta must be float32";
  TVM_FFI_ICHECK_EQ(scale.dtype(), dl_float32) << "scale must be float32";
  const int64_t norm_type = static_cast<int64_t>(NormType::kLayerNorm);
  NormQuantParams p = make_norm_params(
      input, Optional<TensorView>(), gamma, Optional<TensorView>(beta), Optional<TensorView>(),
      norm_type, /*weight_bias=*/0.0, eps, /*hidden_multiple=*/kVecSize);
  set_static_out(p, output, scale, input);
  launch_static(p, input, output, norm_type, /*has_residual=*/false, /*enable_pdl=*/false);
}
