// abi_mssa_ista.cc: C ABI wrappers for the fused MSSA and ISTA-family CPU kernels
// (native/include/crate/{mssa,ista}.h). Each entry point runs the C++ kernel inside
// crate::abi::guard, which turns exceptions into a crate_status plus a crate_last_error() message.
#include <cstdint>

#include "../cpu/ista.h"
#include "../cpu/mssa.h"
#include "abi_common.h"

using crate::abi::guard;

namespace {
// Size queries cannot report errors: an invalid dtype or size gives 0 (the kernel call then fails
// with CRATE_ERR_INVALID_ARGUMENT).
template <class F32, class F64>
size_t ws_size(crate_dtype dtype, F32&& f32, F64&& f64) {
  try {
    if (dtype == CRATE_F32) return f32();
    if (dtype == CRATE_F64) return f64();
  } catch (...) {
  }
  return 0;
}
}  // namespace

extern "C" {

// ---- MSSA ----------------------------------------------------------------------------------------
#define CRATE_MSSA_ABI(SUF, T)                                                                                         \
  crate_status crate_mssa_forward_##SUF(const T* P, T* O, T* L, int64_t B, int64_t N, int64_t H, int64_t p, T scale,   \
                                        int causal, const uint8_t* key_mask) {                                         \
    return guard("crate_mssa_forward_" #SUF,                                                                           \
                 [&] { crate::cpu::mssa_forward<T>(P, O, L, B, N, H, p, scale, causal != 0, key_mask); });             \
  }                                                                                                                    \
  crate_status crate_mssa_backward_##SUF(const T* P, const T* O, const T* L, const T* dO, T* dP, int64_t B, int64_t N, \
                                         int64_t H, int64_t p, T scale, int causal, const uint8_t* key_mask) {         \
    return guard("crate_mssa_backward_" #SUF,                                                                          \
                 [&] { crate::cpu::mssa_backward<T>(P, O, L, dO, dP, B, N, H, p, scale, causal != 0, key_mask); });    \
  }
CRATE_MSSA_ABI(f32, float)
CRATE_MSSA_ABI(f64, double)
#undef CRATE_MSSA_ABI

// ---- ISTA ----------------------------------------------------------------------------------------
size_t crate_ista_workspace_size(crate_dtype dtype, int64_t T, int64_t d, int backward) {
  return ws_size(
      dtype, [&] { return crate::cpu::ista_workspace_size<float>(T, d, backward != 0); },
      [&] { return crate::cpu::ista_workspace_size<double>(T, d, backward != 0); });
}
size_t crate_ista_overcomplete_workspace_size(crate_dtype dtype, int64_t T, int64_t d, int64_t m, int backward) {
  return ws_size(
      dtype, [&] { return crate::cpu::ista_overcomplete_workspace_size<float>(T, d, m, backward != 0); },
      [&] { return crate::cpu::ista_overcomplete_workspace_size<double>(T, d, m, backward != 0); });
}
size_t crate_ista_tied_workspace_size(crate_dtype dtype, int64_t T, int64_t d, int64_t m, int backward) {
  return ws_size(
      dtype, [&] { return crate::cpu::ista_tied_workspace_size<float>(T, d, m, backward != 0); },
      [&] { return crate::cpu::ista_tied_workspace_size<double>(T, d, m, backward != 0); });
}

#define CRATE_ISTA_ABI(SUF, T)                                                                                         \
  crate_status crate_ista_forward_##SUF(const T* Y, const T* W, T* Z, int64_t n, int64_t d, T eta, T lambd,            \
                                        void* workspace) {                                                             \
    return guard("crate_ista_forward_" #SUF,                                                                           \
                 [&] { crate::cpu::ista_forward<T>(Y, W, Z, n, d, eta, lambd, workspace); });                          \
  }                                                                                                                    \
  crate_status crate_ista_backward_##SUF(const T* Y, const T* W, const T* Z, const T* dZ, T* dY, T* dW, int64_t n,     \
                                         int64_t d, T eta, void* workspace) {                                          \
    return guard("crate_ista_backward_" #SUF,                                                                          \
                 [&] { crate::cpu::ista_backward<T>(Y, W, Z, dZ, dY, dW, n, d, eta, workspace); });                    \
  }                                                                                                                    \
  crate_status crate_ista_overcomplete_forward_##SUF(const T* Y, const T* D, const T* D1, T* out, T* A1, T* A2, T* R,  \
                                                     int64_t n, int64_t d, int64_t m, T eta, T lambd,                  \
                                                     void* workspace) {                                                \
    return guard("crate_ista_overcomplete_forward_" #SUF, [&] {                                                        \
      crate::cpu::ista_overcomplete_forward<T>(Y, D, D1, out, A1, A2, R, n, d, m, eta, lambd, workspace);              \
    });                                                                                                                \
  }                                                                                                                    \
  crate_status crate_ista_overcomplete_backward_##SUF(const T* Y, const T* D, const T* D1, const T* A1, const T* A2,   \
                                                      const T* R, const T* dOut, T* dY, T* dD, T* dD1, int64_t n,      \
                                                      int64_t d, int64_t m, T eta, void* workspace) {                  \
    return guard("crate_ista_overcomplete_backward_" #SUF, [&] {                                                       \
      crate::cpu::ista_overcomplete_backward<T>(Y, D, D1, A1, A2, R, dOut, dY, dD, dD1, n, d, m, eta, workspace);      \
    });                                                                                                                \
  }                                                                                                                    \
  crate_status crate_ista_tied_forward_##SUF(const T* Y, const T* W, T* out, T* A0, T* A1, T* R, int64_t n, int64_t d, \
                                             int64_t m, T eta, T lambd, void* workspace) {                             \
    return guard("crate_ista_tied_forward_" #SUF,                                                                      \
                 [&] { crate::cpu::ista_tied_forward<T>(Y, W, out, A0, A1, R, n, d, m, eta, lambd, workspace); });     \
  }                                                                                                                    \
  crate_status crate_ista_tied_backward_##SUF(const T* Y, const T* W, const T* A0, const T* A1, const T* R,            \
                                              const T* dOut, T* dY, T* dW, int64_t n, int64_t d, int64_t m, T eta,     \
                                              void* workspace) {                                                       \
    return guard("crate_ista_tied_backward_" #SUF,                                                                     \
                 [&] { crate::cpu::ista_tied_backward<T>(Y, W, A0, A1, R, dOut, dY, dW, n, d, m, eta, workspace); });  \
  }
CRATE_ISTA_ABI(f32, float)
CRATE_ISTA_ABI(f64, double)
#undef CRATE_ISTA_ABI

}  // extern "C"
