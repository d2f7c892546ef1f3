/* coding_rate.h: C ABI for the batched log-det coding rate (see crate.h for conventions).
 *
 *   R_b  = 1/2 logdet(I + alpha_b Z_b Z_b^T)      Z (batch, m, n) row-major, alpha (batch) > 0
 *   dZ_b = dR_b alpha_b (I + alpha_b Z_b Z_b^T)^-1 Z_b
 *
 * The Gram is formed on the smaller side k = min(m, n) (Sylvester), in double precision for
 * both dtypes, and factored by Cholesky; the backward uses triangular solves (no inverse).
 * chol: optional (batch, k, k) double buffer, crate_logdet_gram_chol_size() bytes. The forward
 * writes the Cholesky factor of A = I + alpha*Z Z^T (m <= n) or I + alpha*Z^T Z (m > n) there as
 * the row-major upper factor U, A = U^T U (strict lower triangle zeroed; the same memory read
 * column-major is the lower factor L), and the backward reuses it when given (NULL recomputes).
 * Scratch memory is internal.
 * Errors: NaN/Inf in Z, alpha, dR or an overflowing Gram -> CRATE_ERR_NUMERICAL with a message
 * naming the batch item ("coding_rate: Z[3] contains NaN"); alpha <= 0, negative sizes, NULL
 * pointers -> CRATE_ERR_INVALID_ARGUMENT. dZ / dX are overwritten.
 *
 * The heads variants read the (B, N, H*p) layout of qkv(LN(x)) directly: item (b, h) is the
 * N x p block X[b, :, h*p:(h+1)*p]; alpha and R are (B, H); chol is (B*H, k, k), k = min(N, p).
 */
#ifndef CRATE_CODING_RATE_H
#define CRATE_CODING_RATE_H
#include "crate/crate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of the optional chol buffer: batch * min(m,n)^2 * sizeof(double); 0 on invalid sizes. */
CRATE_API size_t crate_logdet_gram_chol_size(int64_t batch, int64_t m, int64_t n);

CRATE_API crate_status crate_logdet_gram_forward_f32(const float* Z, const float* alpha, float* R, int64_t batch,
                                                     int64_t m, int64_t n, double* chol);
CRATE_API crate_status crate_logdet_gram_forward_f64(const double* Z, const double* alpha, double* R, int64_t batch,
                                                     int64_t m, int64_t n, double* chol);
CRATE_API crate_status crate_logdet_gram_backward_f32(const float* Z, const float* alpha, const float* dR, float* dZ,
                                                      int64_t batch, int64_t m, int64_t n, const double* chol);
CRATE_API crate_status crate_logdet_gram_backward_f64(const double* Z, const double* alpha, const double* dR,
                                                      double* dZ, int64_t batch, int64_t m, int64_t n,
                                                      const double* chol);

CRATE_API crate_status crate_logdet_gram_heads_forward_f32(const float* X, const float* alpha, float* R, int64_t B,
                                                           int64_t N, int64_t H, int64_t p, double* chol);
CRATE_API crate_status crate_logdet_gram_heads_forward_f64(const double* X, const double* alpha, double* R, int64_t B,
                                                           int64_t N, int64_t H, int64_t p, double* chol);
CRATE_API crate_status crate_logdet_gram_heads_backward_f32(const float* X, const float* alpha, const float* dR,
                                                            float* dX, int64_t B, int64_t N, int64_t H, int64_t p,
                                                            const double* chol);
CRATE_API crate_status crate_logdet_gram_heads_backward_f64(const double* X, const double* alpha, const double* dR,
                                                            double* dX, int64_t B, int64_t N, int64_t H, int64_t p,
                                                            const double* chol);

#ifdef __cplusplus
}
#endif
#endif /* CRATE_CODING_RATE_H */
