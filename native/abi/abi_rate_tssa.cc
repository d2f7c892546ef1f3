// abi_rate_tssa.cc: C ABI wrappers for the coding-rate (log-det) and TSSA kernels.
// Each entry point runs the C++ kernel inside crate::abi::guard, which turns exceptions into a
// crate_status and a crate_last_error() message (NumericalError -> CRATE_ERR_NUMERICAL).
#include <cstdint>

#include "../cpu/coding_rate.h"
#include "../cpu/tssa.h"
#include "abi_common.h"

using crate::abi::guard;

namespace {
// Size queries cannot report errors: invalid sizes give 0 (the kernel call then fails loudly).
template <class F>
size_t size_or_zero(F&& f) {
  try {
    return f();
  } catch (...) {
    return 0;
  }
}
}  // namespace

extern "C" {

// ---- coding rate -------------------------------------------------------------------------------
size_t crate_logdet_gram_chol_size(int64_t batch, int64_t m, int64_t n) {
  return size_or_zero([&]() -> size_t {
    const size_t numel = crate::cpu::logdet_gram_chol_numel(batch, m, n);
    return numel > SIZE_MAX / sizeof(double) ? 0 : numel * sizeof(double);
  });
}

#define CRATE_LOGDET_ABI(SUF, T)                                                                                      \
  crate_status crate_logdet_gram_forward_##SUF(const T* Z, const T* alpha, T* R, int64_t batch, int64_t m, int64_t n, \
                                               double* chol) {                                                        \
    return guard("crate_logdet_gram_forward_" #SUF,                                                                   \
                 [&] { crate::cpu::logdet_gram_forward<T>(Z, alpha, R, batch, m, n, chol); });                        \
  }                                                                                                                   \
  crate_status crate_logdet_gram_backward_##SUF(const T* Z, const T* alpha, const T* dR, T* dZ, int64_t batch,        \
                                                int64_t m, int64_t n, const double* chol) {                           \
    return guard("crate_logdet_gram_backward_" #SUF,                                                                  \
                 [&] { crate::cpu::logdet_gram_backward<T>(Z, alpha, dR, dZ, batch, m, n, chol); });                  \
  }                                                                                                                   \
  crate_status crate_logdet_gram_heads_forward_##SUF(const T* X, const T* alpha, T* R, int64_t B, int64_t N,          \
                                                     int64_t H, int64_t p, double* chol) {                            \
    return guard("crate_logdet_gram_heads_forward_" #SUF,                                                             \
                 [&] { crate::cpu::logdet_gram_heads_forward<T>(X, alpha, R, B, N, H, p, chol); });                   \
  }                                                                                                                   \
  crate_status crate_logdet_gram_heads_backward_##SUF(const T* X, const T* alpha, const T* dR, T* dX, int64_t B,      \
                                                      int64_t N, int64_t H, int64_t p, const double* chol) {          \
    return guard("crate_logdet_gram_heads_backward_" #SUF,                                                            \
                 [&] { crate::cpu::logdet_gram_heads_backward<T>(X, alpha, dR, dX, B, N, H, p, chol); });             \
  }
CRATE_LOGDET_ABI(f32, float)
CRATE_LOGDET_ABI(f64, double)
#undef CRATE_LOGDET_ABI

// ---- TSSA ----------------------------------------------------------------------------------------
size_t crate_tssa_backward_workspace_size(int64_t B, int64_t N, int64_t H, int64_t p) {
  return size_or_zero([&] { return crate::cpu::tssa_backward_workspace_size(B, N, H, p); });
}
size_t crate_tssa_causal_backward_workspace_size(int64_t B, int64_t T, int64_t H, int64_t p) {
  return size_or_zero([&] { return crate::cpu::tssa_causal_backward_workspace_size(B, T, H, p); });
}

#define CRATE_TSSA_ABI(SUF, T)                                                                                         \
  crate_status crate_tssa_forward_##SUF(const T* W, const T* temp, T* Y, T* Pi, T* colnorm, T* mstat, int64_t B,       \
                                        int64_t N, int64_t H, int64_t p) {                                             \
    return guard("crate_tssa_forward_" #SUF,                                                                           \
                 [&] { crate::cpu::tssa_forward<T>(W, temp, Y, Pi, colnorm, mstat, B, N, H, p); });                    \
  }                                                                                                                    \
  crate_status crate_tssa_backward_##SUF(const T* W, const T* temp, const T* dY, const T* Pi, const T* colnorm,        \
                                         const T* mstat, T* dW, T* dtemp, int64_t B, int64_t N, int64_t H, int64_t p,  \
                                         void* workspace) {                                                            \
    return guard("crate_tssa_backward_" #SUF, [&] {                                                                    \
      crate::cpu::tssa_backward<T>(W, temp, dY, Pi, colnorm, mstat, dW, dtemp, B, N, H, p, workspace);                 \
    });                                                                                                                \
  }                                                                                                                    \
  crate_status crate_tssa_causal_forward_##SUF(const T* W, const T* temp, const T* denom_bias, T* Y, T* Pi, int64_t B, \
                                               int64_t Tn, int64_t H, int64_t p, int64_t Tmax) {                       \
    return guard("crate_tssa_causal_forward_" #SUF,                                                                    \
                 [&] { crate::cpu::tssa_causal_forward<T>(W, temp, denom_bias, Y, Pi, B, Tn, H, p, Tmax); });          \
  }                                                                                                                    \
  crate_status crate_tssa_causal_backward_##SUF(const T* W, const T* temp, const T* denom_bias, const T* dY, T* dW,    \
                                                T* dtemp, T* ddenom_bias, int64_t B, int64_t Tn, int64_t H, int64_t p, \
                                                int64_t Tmax, void* workspace) {                                       \
    return guard("crate_tssa_causal_backward_" #SUF, [&] {                                                             \
      crate::cpu::tssa_causal_backward<T>(W, temp, denom_bias, dY, dW, dtemp, ddenom_bias, B, Tn, H, p, Tmax,          \
                                          workspace);                                                                  \
    });                                                                                                                \
  }
CRATE_TSSA_ABI(f32, float)
CRATE_TSSA_ABI(f64, double)
#undef CRATE_TSSA_ABI

}  // extern "C"
