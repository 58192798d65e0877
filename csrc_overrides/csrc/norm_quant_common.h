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
#pragma once

#include <flashinfer/norm/norm_quant.cuh>

#include "tvm_ffi_utils.h"

using tvm::ffi::Optional;

namespace norm_quant_detail {

using flashinfer::norm::quant::kNormQuantMaxHidden;
using flashinfer::norm::quant::NormQuantParams;
using flashinfer::norm::quant::NormType;

inline bool is_16b_aligned(const TensorView& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

// Rows of `t` must be 16-byte aligned: last dim contiguous, row stride a multiple of 16 bytes.
inline void check_row_tensor(const TensorView& t, const char* name, int64_t rows, int64_t cols,
                             const TensorView& ref) {
  TVM_FFI_ICHECK_EQ(t.device().device_type, kDLCUDA) << name << " must be a CUDA tensor";
  CHECK_DEVICE(t, ref);
  TVM_FFI_ICHECK_EQ(t.ndim(), 2) << name << " must be a 2D tensor";
  TVM_FFI_ICHECK_EQ(t.size(0), rows) << name << ".size(0) must be " << rows;
  TVM_FFI_ICHECK_EQ(t.size(1), cols) << name << ".size(1) must be " << cols;
  TVM_FFI_ICHECK(cols == 1 || t.stride(1) == 1) << name << " must be contiguous in the last dim";
  const int64_t elem_bytes = (t.dtype().bits + 7) / 8;
  TVM_FFI_ICHECK(rows <= 1 || (t.stride(0) * elem_bytes) % 16 == 0)
      << name << " row stride must be a multiple of 16 bytes, got stride(0)=" << t.stride(0);
  TVM_FFI_ICHECK(rows <= 1 || t.stride(0) >= cols) << name << " rows must not overlap";
  TVM_FFI_ICHECK(is_16b_aligned(t)) << name << " must be 16-byte aligned";
}

inline void check_vector(const TensorView& t, const char* name, int64_t n, DLDataType dtype,
                         const TensorView& ref) {
  TVM_FFI_ICHECK_EQ(t.device().device_type, kDLCUDA) << name << " must be a CUDA tensor";
  CHECK_DEVICE(t, ref);
  TVM_FFI_ICHECK_EQ(t.ndim(), 1) << name << " must be a 1D tensor";
  TVM_FFI_ICHECK_EQ(t.size(0), n) << name << ".size(0) must be " << n;
  TVM_FFI_ICHECK(t.IsContiguous()) << name << " must be contiguous";
  TVM_FFI_ICHECK(t.dtype() == dtype) << name << " has an unsupported dtype";
  TVM_FFI_ICHECK(is_16b_aligned(t)) << name << " must be 16-byte aligned";
}

// Validates the norm inputs and fills the input-side fields of the launch parameters.
// `hidden_multiple` is 8 (16-byte vectors) or 32 (MXFP8 blocks).
inline NormQuantParams make_norm_params(const TensorView& input,
                                        const Optional<TensorView>& residual,
                                        const TensorView& weight, const Optional<TensorView>& beta,
                                        const Optional<TensorView>& normed_out, int64_t norm_type,
                                        double weight_bias, double eps, int64_t hidden_multiple) {
  TVM_FFI_ICHECK_EQ(input.ndim(), 2) << "input must be a 2D tensor (num_tokens, hidden_size)";
  TVM_FFI_ICHECK(input.dtype() == dl_float16 || input.dtype() == dl_bfloat16)
      << "input must be float16 or bfloat16";
  const int64_t num_tokens = input.size(0), d = input.size(1);
  TVM_FFI_ICHECK(d > 0 && d % hidden_multiple == 0 && d <= int64_t(kNormQuantMaxHidden))
      << "hidden_size must be a positive multiple of " << hidden_multiple << " and at most "
      << kNormQuantMaxHidden << ", got " << d;
  TVM_FFI_ICHECK(num_tokens < (int64_t(1) << 31)) << "too many tokens";
  check_row_tensor(input, "input", num_tokens, d, input);

  NormQuantParams p{};
  p.input = input.data_ptr();
  p.num_tokens = static_cast<uint32_t>(num_tokens);
  p.d = static_cast<uint32_t>(d);
  p.padded_d = static_cast<uint32_t>(d);
  p.stride_input = static_cast<uint32_t>(input.stride(0));
  p.eps = static_cast<float>(eps);
  p.weight_bias = static_cast<float>(weight_bias);

  if (residual.has_value()) {
    const TensorView& r = residual.value();
    check_row_tensor(r, "residual", num_tokens, d, input);
    TVM_FFI_ICHECK(r.dtype() == input.dtype()) << "residual must have the dtype of input";
    p.residual = r.data_ptr();
    p.stride_residual = static_cast<uint32_t>(r.stride(0));
  }
  if (normed_out.has_value()) {
    const TensorView& n = normed_out.value();
    check_row_tensor(n, "normed_out", num_tokens, d, input);
    TVM_FFI_ICHECK(n.dtype() == input.dtype()) << "normed_out must have the dtype of input";
    p.normed_out = n.data_ptr();
    p.stride_normed = static_cast<uint32_t>(n.stride(0));
  }
  if (norm_type == static_cast<int64_t>(NormType::kRMSNorm)) {
    check_vector(weight, "weight", d, input.dtype(), input);
    TVM_FFI_ICHECK(!beta.has_value()) << "RMSNorm takes no beta";
  } else if (norm_type == static_cast<int64_t>(NormType::kLayerNorm)) {
    check_vector(weight, "gamma", d, dl_float32, input);
    TVM_FFI_ICHECK(beta.has_value()) << "LayerNorm requires beta";
    check_vector(beta.value(), "beta", d, dl_float32, input);
    p.beta = static_cast<const float*>(beta.value().data_ptr());
  } else {
    TVM_FFI_ICHECK(false) << "unknown norm_type " << norm_type;
  }
  p.weight = weight.data_ptr();
  return p;
}

}  // namespace norm_quant_detail
