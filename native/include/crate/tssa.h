/* tssa.h: C ABI for ToST token-statistics self-attention (see crate.h for conventions).
 *
 * W, Y, dY, dW: (B, N, H*p) row-major, head h = columns [h*p, (h+1)*p). temp: (H).
 * Vision form (ToST AttentionTSSA): column norms over tokens, softmax over heads,
 *   Y = -W * Pi * 1/(1 + m), m[b,h,i] = sum_n Pi W^2 / (sum_n Pi + 1e-8).
 * Causal form (ToST CausalSelfAttention_TSSA): cumulative sums over time,
 *   logits[h,t] = temp[h] * (sum_i W[t,i]^2 / max(cumsum_t W^2, 1e-12) + p * denom_bias[h,t])
 *   (the authors' (H, block_size, 1) bias is broadcast over the p features before the sum, so it
 *   enters p times), denom_bias: (H, Tmax), T <= Tmax, only the first T columns are used.
 * Full formulas: native/cpu/tssa.h.
 *
 * Saved buffers of the vision forward (each nullable; pass all three to the backward or none,
 * NULL recomputes them from W at the cost of two extra passes over W):
 *   Pi      (B, H, N)   softmax-over-heads weights
 *   colnorm (B, H*p)    ||W[b,:,c]||_2 over tokens (unclamped)
 *   mstat   (B, H*p)    m (g = 1/(1+m))
 * Parameter gradients dtemp (H) and ddenom_bias (H, Tmax) are summed over the batch and
 * OVERWRITTEN (nullable: skipped); ddenom_bias columns >= T are zeroed. dW is overwritten.
 * workspace: NULL (allocate internally) or >= *_workspace_size bytes, 8-byte aligned.
 * Errors: NaN/Inf in W, temp or denom_bias -> CRATE_ERR_NUMERICAL ("tssa_forward: W[b=0, n=3,
 * c=5] is NaN"); bad sizes, T > Tmax, NULL pointers -> CRATE_ERR_INVALID_ARGUMENT.
 */
#ifndef CRATE_TSSA_H
#define CRATE_TSSA_H
#include "crate/crate.h"

#ifdef __cplusplus
extern "C" {
#endif

CRATE_API crate_status crate_tssa_forward_f32(const float* W, const float* temp, float* Y, float* Pi, float* colnorm,
                                              float* mstat, int64_t B, int64_t N, int64_t H, int64_t p);
CRATE_API crate_status crate_tssa_forward_f64(const double* W, const double* temp, double* Y, double* Pi,
                                              double* colnorm, double* mstat, int64_t B, int64_t N, int64_t H,
                                              int64_t p);
/* Bytes; the same for both dtypes; 0 when nothing is needed or the sizes are invalid. */
CRATE_API size_t crate_tssa_backward_workspace_size(int64_t B, int64_t N, int64_t H, int64_t p);
CRATE_API crate_status crate_tssa_backward_f32(const float* W, const float* temp, const float* dY, const float* Pi,
                                               const float* colnorm, const float* mstat, float* dW, float* dtemp,
                                               int64_t B, int64_t N, int64_t H, int64_t p, void* workspace);
CRATE_API crate_status crate_tssa_backward_f64(const double* W, const double* temp, const double* dY, const double* Pi,
                                               const double* colnorm, const double* mstat, double* dW, double* dtemp,
                                               int64_t B, int64_t N, int64_t H, int64_t p, void* workspace);

/* Pi (B, H, T): nullable output of the head weights (the backward does not need it). */
CRATE_API crate_status crate_tssa_causal_forward_f32(const float* W, const float* temp, const float* denom_bias,
                                                     float* Y, float* Pi, int64_t B, int64_t T, int64_t H, int64_t p,
                                                     int64_t Tmax);
CRATE_API crate_status crate_tssa_causal_forward_f64(const double* W, const double* temp, const double* denom_bias,
                                                     double* Y, double* Pi, int64_t B, int64_t T, int64_t H, int64_t p,
                                                     int64_t Tmax);
CRATE_API size_t crate_tssa_causal_backward_workspace_size(int64_t B, int64_t T, int64_t H, int64_t p);
CRATE_API crate_status crate_tssa_causal_backward_f32(const float* W, const float* temp, const float* denom_bias,
                                                      const float* dY, float* dW, float* dtemp, float* ddenom_bias,
                                                      int64_t B, int64_t T, int64_t H, int64_t p, int64_t Tmax,
                                                      void* workspace);
CRATE_API crate_status crate_tssa_causal_backward_f64(const double* W, const double* temp, const double* denom_bias,
                                                      const double* dY, double* dW, double* dtemp, double* ddenom_bias,
                                                      int64_t B, int64_t T, int64_t H, int64_t p, int64_t Tmax,
                                                      void* workspace);

#ifdef __cplusplus
}
#endif
#endif /* CRATE_TSSA_H */
