// cuda_api.h: the CUDA backend as the addon sees it: libcrate_cuda.so (found beside the addon or
// via CRATE_CUDA_LIB) loaded with dlopen, its C ABI (crate_cuda.h, crate_cuda_prim.h) resolved
// into a table of function pointers, and helpers that turn a failed crate_status into a JS error
// naming the op. Nothing here links against CUDA, so the same addon loads without a GPU.
#pragma once
#include <string>

#include "../core/common.h"
#include "../cuda/cuda_backend_api.h"
#include "crate/crate_cuda.h"
#include "crate/crate_cuda_prim.h"

namespace crate::binding {

class Args;

// Every entry point the addon calls, resolved by name.
// clang-format off
#define CRATE_CUDA_FUNCS(X)                                                                                   \
  X(crate_cuda_last_error) X(crate_cuda_status) X(crate_cuda_init) X(crate_cuda_default_stream)               \
  X(crate_cuda_malloc) X(crate_cuda_free) X(crate_cuda_empty_cache) X(crate_cuda_memory_stats_get)             \
  X(crate_cuda_memcpy) X(crate_cuda_memcpy_d2h_async) X(crate_cuda_synchronize) X(crate_cuda_gemm_backend) X(crate_cuda_gemm_bf16)     \
  X(crate_cuda_mssa_forward_f32) X(crate_cuda_mssa_backward_f32) X(crate_cuda_ista_forward_f32)                \
  X(crate_cuda_ista_backward_f32) X(crate_cuda_logdet_gram_forward_f32) X(crate_cuda_logdet_gram_backward_f32) \
  X(crate_cuda_ista_overcomplete_forward_f32) X(crate_cuda_ista_overcomplete_backward_f32)                     \
  X(crate_cuda_ista_tied_forward_f32) X(crate_cuda_ista_tied_backward_f32)                                     \
  X(crate_cuda_tssa_forward_f32) X(crate_cuda_tssa_backward_f32) X(crate_cuda_layernorm_forward_f32)           \
  X(crate_cuda_tssa_causal_forward_f32) X(crate_cuda_tssa_causal_backward_f32)                               \
  X(crate_cuda_layernorm_backward_f32) X(crate_cuda_softmax_forward_f32) X(crate_cuda_softmax_backward_f32)    \
  X(crate_cuda_cross_entropy_forward_f32) X(crate_cuda_cross_entropy_backward_f32) X(crate_cuda_unary_f32)     \
  X(crate_cuda_unary_backward_f32) X(crate_cuda_binary_f32) X(crate_cuda_binary_i32) X(crate_cuda_where_f32)   \
  X(crate_cuda_fill_f32) X(crate_cuda_fill_i32) X(crate_cuda_arange_f32) X(crate_cuda_arange_i32)              \
  X(crate_cuda_cast) X(crate_cuda_nonzero_u8) X(crate_cuda_find_nonfinite_f32) X(crate_cuda_reduce_f32) X(crate_cuda_strided_copy_f32)  \
  X(crate_cuda_strided_copy_i32) X(crate_cuda_gather_f32) X(crate_cuda_gather_i32) X(crate_cuda_index_add_f32) \
  X(crate_cuda_matmul_f32) X(crate_cuda_random_f32) X(crate_cuda_adamw_step_f32)                              \
  X(crate_cuda_unary_bf16) X(crate_cuda_unary_backward_bf16) X(crate_cuda_binary_bf16) X(crate_cuda_where_bf16) \
  X(crate_cuda_fill_bf16) X(crate_cuda_reduce_bf16) X(crate_cuda_strided_copy_bf16) X(crate_cuda_gather_bf16)       \
  X(crate_cuda_gather_unchecked_f32) X(crate_cuda_gather_unchecked_i32) X(crate_cuda_gather_unchecked_bf16)       \
  X(crate_cuda_index_add_bf16) X(crate_cuda_layernorm_forward_bf16) X(crate_cuda_layernorm_backward_bf16)       \
  X(crate_cuda_softmax_forward_bf16) X(crate_cuda_softmax_backward_bf16) X(crate_cuda_cross_entropy_forward_bf16) \
  X(crate_cuda_cross_entropy_backward_bf16) \
  X(crate_cuda_logdet_gram_heads_forward_f32) X(crate_cuda_logdet_gram_heads_backward_f32) X(crate_cuda_logdet_gram_forward_bf16) X(crate_cuda_logdet_gram_backward_bf16) X(crate_cuda_logdet_gram_heads_forward_bf16) X(crate_cuda_logdet_gram_heads_backward_bf16) \
  X(crate_cuda_mssa_forward_bf16) X(crate_cuda_mssa_backward_bf16) \
  X(crate_cuda_tssa_forward_bf16) X(crate_cuda_tssa_backward_bf16) X(crate_cuda_tssa_causal_forward_bf16)       \
  X(crate_cuda_tssa_causal_backward_bf16) \
  X(crate_cuda_matmul_bf16) X(crate_cuda_random_bf16) X(crate_cuda_adamw_step_bf16) X(crate_cuda_ista_forward_bf16) \
  X(crate_cuda_ista_backward_bf16) X(crate_cuda_ista_overcomplete_forward_bf16)                                 \
  X(crate_cuda_ista_overcomplete_backward_bf16) X(crate_cuda_ista_tied_forward_bf16)                             \
  X(crate_cuda_ista_tied_backward_bf16)
// clang-format on

struct CudaApi {
#define CRATE_CUDA_FIELD(name) decltype(&::name) name = nullptr;
  CRATE_CUDA_FUNCS(CRATE_CUDA_FIELD)
#undef CRATE_CUDA_FIELD
};

// What loading found: the library path, the device query, and why CUDA is off when it is.
struct CudaState {
  bool tried = false;
  void* handle = nullptr;
  std::string path, load_error;
  crate_cuda_info info{};
  bool usable = false;
  CudaApi api;
};

// Loads the library once (thread-safe) and returns the state.
const CudaState& cuda_state();
// The API table when CUDA is usable; otherwise throws a JS error for `a`'s op with the reason.
const CudaApi& cuda_api(const Args& a);
// Throws a JS error "<op>: <message>" (code CRATE_CUDA, CRATE_NUMERICAL or CRATE_OOM) unless ok.
void cuda_check(const Args& a, crate_status st);
// The CUDA path of an op refusing a dtype: "<op>: argument '<name>' has dtype <dt>, which is not
// supported on cuda by this op (<supported>)". `name` is the argument whose dtype decides.
[[noreturn]] void cuda_unsupported_dtype(const Args& a, const char* name, DType dt, const char* supported);
// The same unless dt is f32 (ops whose CUDA kernels take f32 only).
inline void cuda_f32_only(const Args& a, const char* name, DType dt) {
  if (dt != DType::f32) cuda_unsupported_dtype(a, name, dt, "f32");
}
// Whether f32 matmuls on CUDA may use TF32 tensor cores (CRATE_ALLOW_TF32=1; default off).
bool cuda_allow_tf32();
void set_cuda_allow_tf32(bool on);

}  // namespace crate::binding
