// tssa.h: fused CPU kernels for ToST token-statistics self-attention (TSSA), forward and
// backward, vision (non-causal) and causal-language forms. O(N·H·p) time and O(N·H + H·p)
// extra memory per batch item; no N×N anything. Internal arithmetic is f64 for both dtypes.
// Batch items run in parallel (crate::parallel_for).
//
// Layout: W and Y are (B, N, H*p) row-major (= qkv(LN(x)) / c_attn(x)); head h owns columns
// [h*p, (h+1)*p). Below W[n,i] means W[b, n, h*p + i] for the (b, h) at hand.
//
// Vision (ToST tost_vision/tost.py AttentionTSSA):
//   ν[i]     = max(‖W[:,i]‖₂ over tokens n, 1e-12)           (F.normalize(dim=-2))
//   s[h,n]   = Σ_i W[n,i]² / ν[i]²
//   Π[:,n]   = softmax over heads of temp[h] · s[h,n]
//   σ[h]     = Σ_n Π[h,n] + 1e-8
//   m[h,i]   = Σ_n Π[h,n] · W[n,i]² / σ[h]                     (raw W)
//   Y[n,i]   = −W[n,i] · Π[h,n] / (1 + m[h,i])
//
// Causal (ToST tost_lang/model_TSSA.py CausalSelfAttention_TSSA), sums inclusive over s <= t:
//   c[t,i]   = max(Σ_{s<=t} W[s,i]², 1e-12)
//   u[h,t]   = Σ_i ( W[t,i]² / c[t,i] + denom_bias[h,t] ) = Σ_i W[t,i]²/c[t,i] + p·denom_bias[h,t]
//              (the authors' denom_bias has shape (H, block_size, 1) and is broadcast over the p
//              features before the feature sum, so the bias enters p times: implemented exactly so)
//   Π[:,t]   = softmax over heads of temp[h] · u[h,t]
//   m[t,i]   = (Σ_{s<=t} Π[h,s]·W[s,i]²) / (Σ_{s<=t} Π[h,s] + 1e-8)
//   Y[t,i]   = −W[t,i] · Π[h,t] / (1 + m[t,i])
//
// Gradients follow PyTorch's conventions at the clamps (clamp_min passes the gradient where
// x >= min). Parameter gradients (dtemp, ddenom_bias) are summed over the batch and OVERWRITE
// their outputs (the caller accumulates across calls if it needs to).
//
// Errors: bad sizes / NULL pointers → crate::Error naming the argument; NaN/Inf in W, temp or
// denom_bias (or an overflowing column norm / cumulative sum) → crate::NumericalError
// ("tssa_forward: W[b=0, n=3, c=5] is NaN"). W is checked wherever its statistics are computed
// (forwards, causal backward, vision backward without saved buffers); NaN in dY propagates.
// Parallel over the batch only: with B < threads some cores idle.
#pragma once
#include <cstddef>
#include <cstdint>

namespace crate::cpu {

// ---- vision --------------------------------------------------------------------------------

// W       (B, N, H*p)
// temp    (H)
// Y       (B, N, H*p)  out
// Pi      (B, H, N)    nullable out, saved for the backward: head-softmax weights Π
// colnorm (B, H*p)     nullable out, saved: ‖W[b,:,c]‖₂ over tokens (unclamped)
// mstat   (B, H*p)     nullable out, saved: m[b,h,i] (so g = 1/(1+m))
template <class T>
void tssa_forward(const T* W, const T* temp, T* Y, T* Pi, T* colnorm, T* mstat, int64_t B, int64_t N, int64_t H,
                  int64_t p);

// Scratch bytes for tssa_backward (f64, B·(3·H·N + 6·H·p + 4·H) doubles; 0 when empty).
size_t tssa_backward_workspace_size(int64_t B, int64_t N, int64_t H, int64_t p);

// dY        (B, N, H*p)
// Pi, colnorm, mstat: the forward's saved buffers for the same W and temp (not re-validated);
//                     if any of the three is NULL all three are recomputed from W (two extra
//                     passes over W, and W is then checked for NaN/Inf again).
// dW        (B, N, H*p)  out (overwritten)
// dtemp     (H)          nullable out (overwritten), summed over the batch
// workspace nullable: >= tssa_backward_workspace_size bytes, 8-byte aligned; NULL allocates.
template <class T>
void tssa_backward(const T* W, const T* temp, const T* dY, const T* Pi, const T* colnorm, const T* mstat, T* dW,
                   T* dtemp, int64_t B, int64_t N, int64_t H, int64_t p, void* workspace);

// ---- causal --------------------------------------------------------------------------------

// W          (B, T, H*p)
// temp       (H)
// denom_bias (H, Tmax)   only columns [0, T) are read; T <= Tmax
// Y          (B, T, H*p) out
// Pi         (B, H, T)   nullable out: head-softmax weights (informational; the backward
//                        recomputes what it needs)
template <class T>
void tssa_causal_forward(const T* W, const T* temp, const T* denom_bias, T* Y, T* Pi, int64_t B, int64_t Tn, int64_t H,
                         int64_t p, int64_t Tmax);

// Scratch bytes for tssa_causal_backward: per batch item, prefix-sum checkpoints every 64
// steps plus one 64-step chunk of recomputed prefix sums, and the per-item parameter partials:
// B·((ceil(T/64) + min(T,64))·(2·H·p + 3·H) + 5·H·p + 4·H + H·T) doubles (0 when empty).
size_t tssa_causal_backward_workspace_size(int64_t B, int64_t Tn, int64_t H, int64_t p);

// dY          (B, T, H*p)
// dW          (B, T, H*p)  out (overwritten)
// dtemp       (H)          nullable out (overwritten), summed over the batch
// ddenom_bias (H, Tmax)    nullable out (overwritten): columns >= T are set to 0
// workspace   nullable: >= tssa_causal_backward_workspace_size bytes, 8-byte aligned.
// The backward recomputes the forward's cumulative sums in 64-step chunks from checkpoints,
// then sweeps time in reverse with reverse cumulative sums: O(T·H·p) time, O(T/64 + 64) rows
// of scratch per batch item.
template <class T>
void tssa_causal_backward(const T* W, const T* temp, const T* denom_bias, const T* dY, T* dW, T* dtemp, T* ddenom_bias,
                          int64_t B, int64_t Tn, int64_t H, int64_t p, int64_t Tmax, void* workspace);

}  // namespace crate::cpu
