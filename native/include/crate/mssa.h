/* mssa.h: C ABI of the fused CPU MSSA kernels (multi-head subspace self-attention with
 * Q = K = V = P_h), forward and backward, f32 and f64 (see crate.h for conventions).
 *
 * P, O, dO, dP are (B, N, H*p) row-major; head h is the column block [h*p, (h+1)*p). Per (b, h):
 *   S = scale * P_h P_h^T (+ mask),  A = softmax over keys,  O_h = A P_h,
 *   L[b, h, i] = log-sum-exp of row i of S (saved for the backward), L is (B, H, N).
 * causal != 0 masks key j > query i. key_mask (B, N) uint8 or NULL: 0 masks key j for every query
 * of batch b (BERT-style padding). A row whose keys are all masked gets O = 0, L = -inf and zero
 * gradient. scale is usually 1/sqrt(p). Scratch is allocated internally (O(B*H*N*p)).
 * Outputs must not alias inputs. Errors: CRATE_ERR_INVALID_ARGUMENT (B, N < 0, H, p < 1, NULL
 * pointers), CRATE_ERR_OUT_OF_MEMORY.
 */
#ifndef CRATE_MSSA_H
#define CRATE_MSSA_H
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "crate/crate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* P (B, N, H*p) -> O (B, N, H*p), L (B, H, N) (L may be NULL when no backward follows). */
CRATE_API crate_status crate_mssa_forward_f32(const float* P, float* O, float* L, int64_t B, int64_t N, int64_t H,
                                              int64_t p, float scale, int causal, const uint8_t* key_mask);
CRATE_API crate_status crate_mssa_forward_f64(const double* P, double* O, double* L, int64_t B, int64_t N, int64_t H,
                                              int64_t p, double scale, int causal, const uint8_t* key_mask);

/* P, O (B, N, H*p), L (B, H, N) from the forward with the same options, dO (B, N, H*p)
 * -> dP (B, N, H*p) (overwritten; the sum of the Q, K and V paths). */
CRATE_API crate_status crate_mssa_backward_f32(const float* P, const float* O, const float* L, const float* dO,
                                               float* dP, int64_t B, int64_t N, int64_t H, int64_t p, float scale,
                                               int causal, const uint8_t* key_mask);
CRATE_API crate_status crate_mssa_backward_f64(const double* P, const double* O, const double* L, const double* dO,
                                               double* dP, int64_t B, int64_t N, int64_t H, int64_t p, double scale,
                                               int causal, const uint8_t* key_mask);

#ifdef __cplusplus
}
#endif

#endif /* CRATE_MSSA_H */
