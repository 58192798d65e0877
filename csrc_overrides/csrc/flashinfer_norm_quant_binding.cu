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
#include "tvm_ffi_utils.h"

using tvm::ffi::Optional;

void norm_mxfp8_quantize(TensorView out, TensorView sf_out, Optional<TensorView> normed_out,
                         TensorView input, Optional<TensorView> residual, TensorView weight,
                         Optional<TensorView> beta, int64_t norm_type, double weight_bias,
                         double eps, bool sf_swizzled, bool enable_pdl);

void norm_fp8_quantize(TensorView out, Optional<TensorView> normed_out, TensorView input,
                       Optional<TensorView> residual, TensorView weight, Optional<TensorView> beta,
                       TensorView scale, int64_t norm_type, double weight_bias, double eps,
                       bool enable_pdl);

void norm_fp8_per_token_quantize(TensorView out, TensorView token_scale,
                                 Optional<TensorView> normed_out, TensorView input,
                                 Optional<TensorView> residual, TensorView weight,
                                 Optional<TensorView> beta, Optional<TensorView> scale_ub,
                                 int64_t norm_type, double weight_bias, double eps,
                                 bool enable_pdl);

void layernorm_quant(TensorView output, TensorView input, TensorView gamma, TensorView beta,
                     TensorView scale, double eps);

TVM_FFI_DLL_EXPORT_TYPED_FUNC(norm_mxfp8_quantize, norm_mxfp8_quantize);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(norm_fp8_quantize, norm_fp8_quantize);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(norm_fp8_per_token_quantize, norm_fp8_per_token_quantize);
TVM_FFI_DLL_EXPORT_TYPED_FUNC(layernorm_quant, layernorm_quant);
