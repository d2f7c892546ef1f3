// coding_rate.h: the batched log-det coding rate, the primitive every coding-rate objective
// (R, R^c, ΔR, sparse rate reduction, MCR², the authors' R^c measurement) is built from.
//
//   R_b  = ½ · logdet(I_m + α_b · Z_b Z_bᵀ)  =  ½ · logdet(I_n + α_b · Z_bᵀ Z_b)   (Sylvester)
//   dZ_b = dR_b · α_b · (I_m + α_b Z_b Z_bᵀ)⁻¹ Z_b  =  dR_b · α_b · Z_b (I_n + α_b Z_bᵀ Z_b)⁻¹
//
// The Gram is formed on the smaller side k = min(m, n), in f64 even for f32 input, and factored
// by a blocked Cholesky in f64: logdet = 2 Σ log U_jj. The backward solves with
// the factor (two triangular solves on Z or Zᵀ, no explicit inverse). Batch items run in
// parallel (crate::parallel_for); scratch is internal, O(threads · (k·max(m,n) + k²)) doubles.
//
// Errors: NaN/Inf in Z, alpha or dR → crate::NumericalError naming the batch item
// ("coding_rate: Z[3] contains NaN"); alpha_b <= 0, bad sizes, null pointers → crate::Error;
// a non-positive or non-finite pivot (overflow) → NumericalError
// "coding_rate: not positive definite at batch b, pivot j".
#pragma once
#include <cstddef>
#include <cstdint>

namespace crate::cpu {

// Elements (doubles) of the optional Cholesky-factor buffer: batch · k · k, k = min(m, n).
// Throws crate::Error on negative sizes or overflow.
size_t logdet_gram_chol_numel(int64_t batch, int64_t m, int64_t n);

// Z     (batch, m, n)   row-major
// alpha (batch)         α_b > 0
// R     (batch)         out: ½ logdet(I + α_b Z_b Z_bᵀ)
// chol  (batch, k, k)   nullable out: the Cholesky factor of A_b = I + α_b·G_b (G_b = Z_b Z_bᵀ
//                       when m <= n, Z_bᵀ Z_b when m > n) as the UPPER factor U_b, A_b = U_bᵀU_b,
//                       row-major (= the lower factor L_b = U_bᵀ in column-major); strict lower
//                       triangle zeroed. logdet A_b = 2 Σ_j log U_b[j,j].
template <class T>
void logdet_gram_forward(const T* Z, const T* alpha, T* R, int64_t batch, int64_t m, int64_t n, double* chol);

// dR    (batch)         upstream gradient of R_b
// dZ    (batch, m, n)   out (overwritten): dR_b · α_b · (I + α_b Z_b Z_bᵀ)⁻¹ Z_b
// chol  (batch, k, k)   nullable: factors saved by the forward for the same Z and alpha
//                       (not re-validated); NULL recomputes them.
template <class T>
void logdet_gram_backward(const T* Z, const T* alpha, const T* dR, T* dZ, int64_t batch, int64_t m, int64_t n,
                          const double* chol);

// Per-head helper for the (B, N, H·p) layout of qkv(LN(x)) (the R^c measurement and ToST-style
// objectives) without a transpose: item (b, h) is Z_bh = X[b, :, h·p:(h+1)·p], an N×p matrix
// (m = N rows = tokens, n = p columns).
// X     (B, N, H*p)
// alpha (B, H)          α_bh > 0
// R     (B, H)          out: ½ logdet(I_N + α_bh Z_bh Z_bhᵀ) = ½ logdet(I_p + α_bh Z_bhᵀ Z_bh)
// chol  (B*H, k, k)     nullable, k = min(N, p); as above (Gram Z_bhᵀZ_bh when N > p)
template <class T>
void logdet_gram_heads_forward(const T* X, const T* alpha, T* R, int64_t B, int64_t N, int64_t H, int64_t p,
                               double* chol);
// dR    (B, H)
// dX    (B, N, H*p)     out (overwritten, every element belongs to one head)
template <class T>
void logdet_gram_heads_backward(const T* X, const T* alpha, const T* dR, T* dX, int64_t B, int64_t N, int64_t H,
                                int64_t p, const double* chol);

}  // namespace crate::cpu
