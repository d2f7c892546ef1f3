// ista.h: fused CPU kernels for the CRATE ISTA-step family, forward and backward, float/double.
// Rows are tokens: T = B*N tokens, d = model width, m = dictionary size (4d typically).
//   ista_*              CRATE (spec 1.2):    Z = ReLU(Y + eta (Y W - Y W^T W) - eta lambda)
//                                            computed as ReLU(Y (I + eta (W - W^T W)) - eta lambda)
//   ista_overcomplete_* CRATE-alpha (1.5):   A1 = ReLU(eta Y D - eta lambda)
//                                            A2 = ReLU(A1 - eta (A1 D^T - Y) D - eta lambda)
//                                            out = A2 D1^T
//   ista_tied_*         CRATE-GPT (1.6):     A0 = ReLU(eta Y W^T - eta lambda)
//                                            A1 = ReLU(A0 + eta (Y W^T - A0 W W^T) - eta lambda)
//                                            out = A1 W
// All tensors are dense row-major. Backward functions overwrite their gradient outputs (they do
// not accumulate); any gradient output may be nullptr to skip it. Outputs must not alias inputs.
// `workspace` may be nullptr (scratch is then allocated internally); otherwise it must hold at
// least *_workspace_size(...) bytes (any alignment). Invalid arguments throw crate::Error;
// NaN inputs propagate.
#pragma once
#include <cstddef>
#include <cstdint>

namespace crate::cpu {

// ---- CRATE ISTA (complete dictionary W, d x d)
// Bytes of scratch for ista_forward (backward = false) or ista_backward (backward = true).
template <class Real>
size_t ista_workspace_size(int64_t T, int64_t d, bool backward);
// Y (T, d), W (d, d) -> Z (T, d)
template <class Real>
void ista_forward(const Real* Y, const Real* W, Real* Z, int64_t T, int64_t d, Real eta, Real lambda, void* workspace);
// Y (T, d), W (d, d), Z (T, d) the forward output (ReLU mask = Z > 0), dZ (T, d)
// -> dY (T, d), dW (d, d)
template <class Real>
void ista_backward(const Real* Y, const Real* W, const Real* Z, const Real* dZ, Real* dY, Real* dW, int64_t T,
                   int64_t d, Real eta, void* workspace);

// ---- CRATE-alpha overcomplete two-step ISTA (dictionaries D, D1 of shape (d, m))
template <class Real>
size_t ista_overcomplete_workspace_size(int64_t T, int64_t d, int64_t m, bool backward);
// Y (T, d), D (d, m), D1 (d, m) -> out (T, d).
// Saved for backward (each may be nullptr when no backward follows):
//   A1 (T, m) = first ISTA iterate, A2 (T, m) = second iterate, R (T, d) = A1 D^T - Y (residual).
template <class Real>
void ista_overcomplete_forward(const Real* Y, const Real* D, const Real* D1, Real* out, Real* A1, Real* A2, Real* R,
                               int64_t T, int64_t d, int64_t m, Real eta, Real lambda, void* workspace);
// Y (T, d), D (d, m), D1 (d, m), A1 (T, m), A2 (T, m), R (T, d) saved by the forward, dOut (T, d)
// -> dY (T, d), dD (d, m), dD1 (d, m)
template <class Real>
void ista_overcomplete_backward(const Real* Y, const Real* D, const Real* D1, const Real* A1, const Real* A2,
                                const Real* R, const Real* dOut, Real* dY, Real* dD, Real* dD1, int64_t T, int64_t d,
                                int64_t m, Real eta, void* workspace);

// ---- CRATE-GPT tied overcomplete ISTA (W of shape (m, d), D = W^T)
template <class Real>
size_t ista_tied_workspace_size(int64_t T, int64_t d, int64_t m, bool backward);
// Y (T, d), W (m, d) -> out (T, d).
// Saved for backward (each may be nullptr): A0 (T, m) first iterate, A1 (T, m) second iterate,
//   R (T, d) = Y - A0 W (residual).
template <class Real>
void ista_tied_forward(const Real* Y, const Real* W, Real* out, Real* A0, Real* A1, Real* R, int64_t T, int64_t d,
                       int64_t m, Real eta, Real lambda, void* workspace);
// Y (T, d), W (m, d), A0 (T, m), A1 (T, m), R (T, d) saved by the forward, dOut (T, d)
// -> dY (T, d), dW (m, d)
template <class Real>
void ista_tied_backward(const Real* Y, const Real* W, const Real* A0, const Real* A1, const Real* R, const Real* dOut,
                        Real* dY, Real* dW, int64_t T, int64_t d, int64_t m, Real eta, void* workspace);

}  // namespace crate::cpu
