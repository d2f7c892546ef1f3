// mssa.h: fused CPU MSSA (multi-head subspace self-attention, Q = K = V = P_h), forward and
// backward, flash-style (tiled, online softmax, no N x N buffer). See mssa.cc for the algorithm.
//
// Layout: P, O, dO, dP are (B, N, H*p) row-major; head h is the column block [h*p, (h+1)*p).
// For every (b, h):  S = scale * P_h P_h^T + mask,  A = softmax_rows(S),  O_h = A P_h,
//                    L[b, h, i] = logsumexp_j S[i, j]   (the saved softmax statistics).
// Masks: `causal` masks key j > query i; `key_mask` (B, N) uint8, nullable, 0 = key masked for
// every query. A query row whose keys are all masked gets O = 0, L = -inf and zero gradient.
// Outputs must not alias inputs. Invalid arguments throw crate::Error. NaN inputs propagate.
#pragma once
#include <cstddef>
#include <cstdint>

namespace crate::cpu {

// P (B, N, H*p), O (B, N, H*p), L (B, H, N) or nullptr (inference: statistics not stored),
// key_mask (B, N) or nullptr. scale is usually p^-0.5.
template <class T>
void mssa_forward(const T* P, T* O, T* L, int64_t B, int64_t N, int64_t H, int64_t p, T scale, bool causal,
                  const uint8_t* key_mask);

// P (B, N, H*p), O (B, N, H*p) and L (B, H, N) from mssa_forward with the same options,
// dO (B, N, H*p) -> dP (B, N, H*p) (overwritten; sum of the Q, K and V paths).
// Scratch (O(B*H*N*p) padded copies, tile buffers) is allocated internally.
template <class T>
void mssa_backward(const T* P, const T* O, const T* L, const T* dO, T* dP, int64_t B, int64_t N, int64_t H, int64_t p,
                   T scale, bool causal, const uint8_t* key_mask);

extern template void mssa_forward<float>(const float*, float*, float*, int64_t, int64_t, int64_t, int64_t, float, bool,
                                         const uint8_t*);
extern template void mssa_forward<double>(const double*, double*, double*, int64_t, int64_t, int64_t, int64_t, double,
                                          bool, const uint8_t*);
extern template void mssa_backward<float>(const float*, const float*, const float*, const float*, float*, int64_t,
                                          int64_t, int64_t, int64_t, float, bool, const uint8_t*);
extern template void mssa_backward<double>(const double*, const double*, const double*, const double*, double*, int64_t,
                                           int64_t, int64_t, int64_t, double, bool, const uint8_t*);

// Test/benchmark hooks (process-wide, not synchronised with running kernels).
// isa: 0 = auto (AVX2+FMA when the CPU has it), 1 = portable (SSE2) path only.
void mssa_set_isa(int isa);
// Use of the P_h P_h^T symmetry (see mssa.cc), bit flags: 1 = backward (tile pairs and
// dQ + dK = scale (dS + dS^T) P_h), 2 = forward (non-causal whole-head tasks share score tiles).
// Default 3; 0 = plain tiles everywhere.
void mssa_set_symmetric(int mode);

}  // namespace crate::cpu
