// tssa.cu: ToST token-statistics self-attention (TSSA) on the GPU, forward and backward, the vision
// form and the causal (language) form below, the maths of native/cpu/tssa.{h,cc} (f64 statistics
// for f32 data, like the CPU). Vision:
//
//   nu[c]   = max(||W[:,c]||_2 over tokens, 1e-12)               column kernel
//   s[h,n]  = sum_{c in h} W[n,c]^2 / nu[c]^2                      token kernel (a warp per token)
//   Pi[:,n] = softmax over heads of temp[h] s[h,n]                 token kernel
//   sig[h]  = sum_n Pi[h,n] + 1e-8,  m[c] = sum_n Pi W^2 / sig    column kernel
//   Y[n,c]  = -W[n,c] Pi[h,n] / (1 + m[c])                        elementwise
//
// Kernel shapes: "column" kernels reduce over tokens for 32 features per CTA (block 32 x 8: a
// warp reads 32 consecutive features of one token row, coalesced; 8 token slices, combined in a
// fixed order in shared memory, so every sum is deterministic); "token" kernels give each token
// (b, n) one warp that walks its row and reduces per head with butterfly shuffles (every lane ends
// with the bitwise same sum), then does the softmax over heads with the lanes striding the heads;
// "elementwise" kernels are grid-stride loops. The backward (see the derivation above
// tssa_backward in native/cpu/tssa.cc) is the same passes in the same order:
//   B1 token:  s[h,n], dPi[h,n] = -sum dY W g            B1 column: dA, dsig partials
//   dsig:      per (b, h) sum over the head's features    B2 token:  softmax backward, dtau terms, ds
//   B2 column: cc = sum_n ds W^2 -> -2 cc / q^4           dtau:      sum over (b, n), fixed order
//   B3:        dW elementwise
//
// Errors, as the CPU: NaN/Inf in temp ("tssa_forward: temp[1] is NaN") or in W ("W[b=0, n=3, c=5]
// is NaN", found from a non-finite column sum of squares) -> CRATE_ERR_NUMERICAL. The backward
// with the saved buffers checks nothing and never waits: the buffers are the forward's for the
// same W and temp (the CPU does not re-validate them either). See "Storage" and "Host waits".
//
// ---- Causal TSSA (ToST language; tssa_causal_forward / tssa_causal_backward of native/cpu/tssa.cc)
// Per batch item b, head h, step t, feature c of h (sums inclusive over s <= t):
//   C[t,c]  = sum_s W[s,c]^2                  u[h,t] = sum_c W[t,c]^2 / max(C[t,c], 1e-12) + p bias[h,t]
//   Pi[:,t] = softmax over heads of temp[h] u[h,t]
//   P[h,t]  = sum_s Pi[h,s]                   N[t,c] = sum_s Pi[h,s] W[s,c]^2
//   Y[t,c]  = -W[t,c] Pi[h,t] / (1 + N[t,c] / (P[h,t] + 1e-8))
// Shapes: W, Y, dY, dW (B, T, H*p); temp (H); denom_bias, ddenom_bias (H, Tmax), only columns
// t < T read (ddenom_bias columns >= T written 0); Pi (B, H, T) nullable. Statistics in f64, as
// the CPU f32 path (which computes everything in f64 and rounds only the outputs).
//
// Design: the running sums over t are chunked scans. Time is cut into chunks of kChunk = 16 steps.
//   column arrays (B, nck, D) f64, nck = ceil(T/16): per (b, chunk, feature) first the chunk's sum,
//                 then (chunk_scan_kernel, one thread per (b, c), serial over chunks) the running
//                 sum at the chunk's start (forward scans) or past its end (reverse scans)
//   token arrays  (B, H, T) f64: u, Pi, P, and the backward's per-(b, h, t) terms; their running
//                 sums over t by token_scan_kernel (a warp per (b, h) row, shuffle scan + carry)
// and the kernels that need a running value at every step restart it from the chunk's start value
// and walk the chunk's <= 16 steps serially (loops unrolled over 16 with a guard, so a thread's
// loads of the chunk are issued together). Three kernel shapes:
//   column kernels: a thread per (b, chunk, c), c fastest (coalesced rows of W), serial over the
//                   chunk; no reductions (chunk sums, Y, dW)
//   head kernels:   a warp per (b, chunk, h); the head's features in slabs of 32 (a lane each),
//                   serial over the chunk with a butterfly sum over the slab per step, lane tt
//                   keeping step t0 + tt's sum (u; the backward's dPi terms)
//   token kernels:  a warp per (b, t), lanes striding the heads (softmax over heads, its backward)
// No atomics except the error flags (atomicMin of an index); every sum has a fixed order, so
// results are bitwise reproducible run to run. Only the order differs from the CPU's sequential
// sums (f64, far below the f32 output rounding).
//   forward:  F1 chunk sums of W^2 -> scan -> C0;  F2 head: u (C running from C0);  F3 token:
//             softmax -> Pi;  P = token scan of Pi;  chunk sums of Pi W^2 -> scan -> N0;
//             F4 column: Y (N running from N0)
//   backward (no saved buffers: F1-F3 and N0 are recomputed), with g = 1/(1+m), m = N/den,
//   den = P + 1e-8, cl = max(C, 1e-12), reverse running sums RN = sum_{s>=t} dm/den,
//   RP = sum_{s>=t} dden, RC = sum_{s>=t} dC (the derivation is above tssa_causal_backward in
//   native/cpu/tssa.cc):
//             B1 chunk sums of dm/den, dm = g^2 dY W Pi -> reverse scan -> RN past each chunk
//             B2 head: dden = -sum_c dm m/den, q = sum_c (RN W^2 - dY W g); RP = reverse token scan
//             B3 token: dPi = q + RP, dl = Pi (dPi - sum_h Pi dPi), dtemp terms dl u, du = temp dl
//             B4 chunk sums of dC = -du W^2/cl^2 [C >= 1e-12] -> reverse scan -> RC past each chunk
//             B5 column: dW = -dY Pi g + 2 W (RN Pi + du/cl + RC); the chunk's C, N recomputed
//                forward into registers (2 x 16 doubles), then the steps in reverse
//             dtemp[h] = sum_{b,t} dl u (a CTA per h), ddenom[h,t] = sum_b p du
// Small p leaves lanes of the head kernels idle (p = 16: half a warp); they are 1 of the forward's
// 4 passes over W and 2 of the backward's 7. The scans over chunks have only B*D threads, so each
// keeps kScanBatch = 16 loads in flight (latency, not bandwidth, is their cost). Scratch: forward 8 (B nck D + 3 B H T)
// bytes, backward 8 (4 B nck D + 6 B H T).
//
// Napkin math (ToST-base, B = 8, T = 1024, H = 12, p = 64: B T D = 6.3 M, W = 25 MB f32, a column
// array 3.1 MB, a token array 0.8 MB):
//   forward  reads W 4 times + writes Y, ~150 MB with the f64 arrays -> ~50 us at ~3 TB/s;
//            ~20 f64 flops + 3 divisions (~10 flops each) per element, ~0.3 GFLOP f64 -> ~10 us
//            at 34 TFLOP/s f64: memory-bound, plus 10 launches.
//   backward reads W 7 times and dY 3 times + writes dW, ~300 MB -> ~100 us; ~70 f64 flops +
//            9 divisions per element, ~1 GFLOP f64 -> ~30 us (overlaps the memory time); 19
//            launches.
//   The composite it replaces (cumulative sums as products with a T x T lower-triangular matrix)
//   is O(B T^2 D): 2 B T^2 D = 13 GFLOP per cumulative sum here, several per step.
// Errors as the CPU: sizes, T > Tmax, NULL pointers -> CRATE_ERR_INVALID_ARGUMENT; NaN/Inf in
// denom_bias[:, :T] ("denom_bias[1, 3] is NaN", reported first), temp, or W ("W[b=0, t=3, c=5] is
// NaN") -> CRATE_ERR_NUMERICAL (both calls validate, as on the CPU). NaN in dY propagates.
//
// ---- Storage (both forms): T = float (the *_f32 entries) or bf16 (the *_bf16 entries) for W, Y,
// dY, dW only: one code path, every kernel templated on T, W / dY loaded exactly into f64 and each
// T result rounded once (bf16: nearest even via f32 rounded to odd, no double rounding). temp,
// denom_bias and their gradients dtemp, ddenom_bias are f32 for both: they are model parameters,
// which mixed precision keeps as f32 master weights while the activations are bf16, so bf16 W takes
// f32 parameters (no bf16-parameter variant). The saved statistics Pi, colnorm, mstat are f32 for
// both (a bf16 Pi or colnorm would cost the backward 16 bits). All statistics and sums are f64 as
// before, so a bf16 result is the f64 value rounded once, and an f32 one is bitwise as before.
//
// ---- Host waits. The device flags above are the CPU's error semantics, not a debugging aid: the
// CPU kernels throw NumericalError for NaN/Inf in W, temp and denom_bias (they do not propagate
// it), the binding turns that into a JS error (code CRATE_NUMERICAL) thrown by C.tssa /
// C.tssaCausal itself, and crate_cuda_test checks that these calls return the CPU's status and
// message. Which element is bad depends on device data, so a call that must return that status
// has to wait for the device once: deferring the report to a later call, or checking only under
// CRATE_SYNC, would change what the call reports. What is avoided is the drain: the validation
// (temp / denom_bias scans and the first pass over W, whose column sums flag non-finite W) runs
// first, then Flags::mark() copies the flag words into a pinned host slot and records an event,
// then the op's remaining kernels are launched, and only then does the host wait, on that event
// (not the stream). The host thus blocks once per validating call (the forwards, the causal
// backward, the vision backward without saved buffers) until the GPU is past the validation, with
// the rest of the op (3 of the vision forward's 4 passes over W, most of the causal forward and
// backward) still queued behind it, so the GPU keeps working while the host returns and enqueues
// the next op. The error path (rare) synchronizes again to locate the first bad element.
// The vision backward with saved buffers (the autograd path) waits for nothing.
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "prim_common.cuh"

namespace crate::cuda {
namespace {

constexpr double kNormEps = 1e-12;
constexpr double kPiEps = 1e-8;
constexpr int kThreads = 256;
constexpr int kRowsPerCol = 8;  // token slices per column CTA (block 32 x 8)
constexpr unsigned long long kNone = ~0ull;
constexpr int kChunk = 16;      // causal: time steps per chunk (scans run over chunks, then inside one)
constexpr int kScanBatch = 16;  // causal: loads in flight per thread in the scans over chunks

using prim::Bf16;

// Storage T of W, Y, dY, dW: float or Bf16. Loaded exactly into f64; an f64 result is stored
// with one rounding: to f32 nearest even, or to bf16 nearest even via f32 rounded to odd (the
// sticky bit survives, so the second rounding cannot double-round; prim::f64_to_bf16 on the host).
__device__ __forceinline__ double ld(float v) { return static_cast<double>(v); }
__device__ __forceinline__ double ld(Bf16 v) { return static_cast<double>(prim::bf16_to_f32(v)); }
template <class T>
__device__ __forceinline__ T store_as(double v) {
  if constexpr (std::is_same_v<T, Bf16>) {
    float f = static_cast<float>(v);
    if (v == v && isfinite(f) && static_cast<double>(f) != v && (prim::f32_bits(f) & 1u) == 0)
      f = nextafterf(f, v > static_cast<double>(f) ? INFINITY : -INFINITY);
    return prim::f32_to_bf16(f);
  } else {
    return static_cast<float>(v);
  }
}

__device__ __forceinline__ double clamp_eps(double x) { return x > kNormEps ? x : kNormEps; }

__device__ __forceinline__ double warp_allsum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_allmax(double v) {
  for (int o = 16; o > 0; o >>= 1) {
    const double u = __shfl_xor_sync(0xffffffffu, v, o);
    v = v < u ? u : v;  // std::max(v, u)
  }
  return v;
}

// Sum of the 8 token-slice partials of a column CTA, in a fixed order; valid in threadIdx.y == 0.
__device__ __forceinline__ double col_reduce(double v, double (*red)[32]) {
  red[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  double s = 0.0;
  if (threadIdx.y == 0)
    for (int y = 0; y < kRowsPerCol; ++y) s += red[y][threadIdx.x];
  __syncthreads();
  return s;
}

// ---- flags ---------------------------------------------------------------------------------------

// temp[h] finite? -> first bad h in *bad_h.
__global__ void temp_check_kernel(const float* __restrict__ temp, int64_t H, unsigned long long* __restrict__ bad_h) {
  for (int64_t h = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; h < H;
       h += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!isfinite(static_cast<double>(temp[h]))) atomicMin(bad_h, static_cast<unsigned long long>(h));
  }
}

// First non-finite element (row-major index) of W_b.
template <class T>
__global__ void locate_kernel(const T* __restrict__ Wb, int64_t count, unsigned long long* __restrict__ idx) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!isfinite(ld(Wb[i]))) atomicMin(idx, static_cast<unsigned long long>(i));
  }
}

// ---- statistics (forward, and the backward's recompute) -----------------------------------------

// K1 (column): q = ||W[:,c]||, inv2 = 1/max(q,eps)^2; colnorm (nullable) = q; bad_b = first b
// with a non-finite sum of squares. Block (32, 8); grid (ceil(D/32), <= B) looping over b.
template <class T>
__global__ void __launch_bounds__(kThreads)
    colnorm_kernel(const T* __restrict__ W, int64_t B, int64_t N, int64_t D, double* __restrict__ q,
                   double* __restrict__ inv2, float* __restrict__ colnorm, unsigned long long* __restrict__ bad_b) {
  __shared__ double red[kRowsPerCol][32];
  for (int64_t cb = blockIdx.x; cb * 32 < D; cb += gridDim.x) {
    for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
      const int64_t c = cb * 32 + threadIdx.x;
      double acc = 0.0;
      if (c < D) {
        const T* Wb = W + b * N * D + c;
        for (int64_t n = threadIdx.y; n < N; n += kRowsPerCol) {
          const double v = ld(Wb[n * D]);
          acc += v * v;
        }
      }
      const double tot = col_reduce(acc, red);
      if (threadIdx.y == 0 && c < D) {
        if (!isfinite(tot)) atomicMin(bad_b, static_cast<unsigned long long>(b));
        const double qq = sqrt(tot), nu = clamp_eps(qq);
        q[b * D + c] = qq;
        inv2[b * D + c] = 1.0 / (nu * nu);
        if (colnorm) colnorm[b * D + c] = static_cast<float>(qq);
      }
    }
  }
}

// K2 (token): pi[b,h,n] = softmax_h(temp[h] * sum_{c in h} W^2 inv2); PiT (nullable) = pi.
// One warp per token (b, n); pi is written as logits first, then normalised in place.
template <class T>
__global__ void __launch_bounds__(kThreads)
    head_softmax_kernel(const T* __restrict__ W, const float* __restrict__ temp, const double* __restrict__ inv2,
                        double* __restrict__ pi, float* __restrict__ PiT, int64_t B, int64_t N, int64_t H, int64_t p) {
  const int lane = threadIdx.x & 31;
  const int64_t D = H * p;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t tok = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); tok < B * N;
       tok += warps) {
    const int64_t b = tok / N, n = tok % N;
    const T* w = W + tok * D;
    const double* iv = inv2 + b * D;
    double* pr = pi + b * H * N + n;  // pr[h * N]
    for (int64_t h = 0; h < H; ++h) {
      double acc = 0.0;
      for (int64_t c = h * p + lane; c < (h + 1) * p; c += 32) {
        const double v = ld(w[c]);
        acc += v * v * iv[c];
      }
      acc = warp_allsum(acc);
      if (lane == 0) pr[h * N] = static_cast<double>(temp[h]) * acc;
    }
    __syncwarp();
    double mx = -INFINITY;
    for (int64_t h = lane; h < H; h += 32) {
      const double x = pr[h * N];
      mx = mx < x ? x : mx;
    }
    mx = warp_allmax(mx);
    double sum = 0.0;
    for (int64_t h = lane; h < H; h += 32) {
      const double e = exp(pr[h * N] - mx);
      pr[h * N] = e;
      sum += e;
    }
    sum = warp_allsum(sum);
    const double inv = 1.0 / sum;
    for (int64_t h = lane; h < H; h += 32) {
      const double v = pr[h * N] * inv;
      pr[h * N] = v;
      if (PiT) PiT[(b * H + h) * N + n] = static_cast<float>(v);
    }
    __syncwarp();
  }
}

// K3 (column): sig[b,h] = sum_n pi + 1e-8 (every feature of head h computes the bitwise same sum,
// the head's first feature stores it); m = sum_n pi W^2 / sig; g = 1/(1+m) (nullable);
// mstat (nullable) = m.
template <class T>
__global__ void __launch_bounds__(kThreads)
    mstat_kernel(const T* __restrict__ W, const double* __restrict__ pi, int64_t B, int64_t N, int64_t H, int64_t p,
                 double* __restrict__ m, double* __restrict__ g, double* __restrict__ sig, float* __restrict__ mstat) {
  __shared__ double red[kRowsPerCol][32];
  const int64_t D = H * p;
  for (int64_t cb = blockIdx.x; cb * 32 < D; cb += gridDim.x) {
    for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
      const int64_t c = cb * 32 + threadIdx.x;
      const int64_t h = c < D ? c / p : 0;
      double acc = 0.0, sp = 0.0;
      if (c < D) {
        const T* Wb = W + b * N * D + c;
        const double* pr = pi + (b * H + h) * N;
        for (int64_t n = threadIdx.y; n < N; n += kRowsPerCol) {
          const double P = pr[n], v = ld(Wb[n * D]);
          sp += P;
          acc += P * v * v;
        }
      }
      const double A = col_reduce(acc, red);
      const double S = col_reduce(sp, red);
      if (threadIdx.y == 0 && c < D) {
        const double sg = S + kPiEps;
        const double mm = A * (1.0 / sg);
        m[b * D + c] = mm;
        if (g) g[b * D + c] = 1.0 / (1.0 + mm);
        if (mstat) mstat[b * D + c] = static_cast<float>(mm);
        if (c % p == 0) sig[b * H + h] = sg;
      }
    }
  }
}

// K4 (elementwise): Y = -W * pi * g, g = 1/(1+m).
template <class T>
__global__ void __launch_bounds__(kThreads)
    output_kernel(const T* __restrict__ W, const double* __restrict__ pi, const double* __restrict__ m,
                  T* __restrict__ Y, int64_t B, int64_t N, int64_t H, int64_t p) {
  const int64_t D = H * p, total = B * N * D;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < total;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = x % D, tok = x / D, n = tok % N, b = tok / N, h = c / p;
    const double P = pi[(b * H + h) * N + n], g = 1.0 / (1.0 + m[b * D + c]);
    Y[x] = store_as<T>(-ld(W[x]) * P * g);
  }
}

// ---- backward ------------------------------------------------------------------------------------

// Saved path, per (b, c): q = colnorm, m = mstat, inv2, g.
__global__ void __launch_bounds__(kThreads)
    load_saved_cols_kernel(const float* __restrict__ colnorm, const float* __restrict__ mstat, int64_t BD,
                           double* __restrict__ q, double* __restrict__ inv2, double* __restrict__ m,
                           double* __restrict__ g) {
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < BD;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double qq = static_cast<double>(colnorm[x]), mm = static_cast<double>(mstat[x]);
    const double nu = clamp_eps(qq);
    q[x] = qq;
    inv2[x] = 1.0 / (nu * nu);
    m[x] = mm;
    g[x] = 1.0 / (1.0 + mm);
  }
}

// Saved path, one warp per (b, h): pi = Pi (f64), sig = sum_n pi + 1e-8.
__global__ void __launch_bounds__(kThreads) load_saved_pi_kernel(const float* __restrict__ Pi, int64_t BH, int64_t N,
                                                                 double* __restrict__ pi, double* __restrict__ sig) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t bh = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); bh < BH; bh += warps) {
    double acc = 0.0;
    for (int64_t n = lane; n < N; n += 32) {
      const double v = static_cast<double>(Pi[bh * N + n]);
      pi[bh * N + n] = v;
      acc += v;
    }
    acc = warp_allsum(acc);
    if (lane == 0) sig[bh] = acc + kPiEps;
  }
}

// B1 (token): s[h,n] = sum_{c in h} W^2 inv2;  dpi[h,n] = -sum_{c in h} dY W g.
template <class T>
__global__ void __launch_bounds__(kThreads)
    b1_token_kernel(const T* __restrict__ W, const T* __restrict__ dY, const double* __restrict__ inv2,
                    const double* __restrict__ g, double* __restrict__ s, double* __restrict__ dpi, int64_t B,
                    int64_t N, int64_t H, int64_t p) {
  const int lane = threadIdx.x & 31;
  const int64_t D = H * p;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t tok = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); tok < B * N;
       tok += warps) {
    const int64_t b = tok / N, n = tok % N;
    const T* w = W + tok * D;
    const T* dy = dY + tok * D;
    const double* iv = inv2 + b * D;
    const double* gb = g + b * D;
    for (int64_t h = 0; h < H; ++h) {
      double sh = 0.0, dp = 0.0;
      for (int64_t c = h * p + lane; c < (h + 1) * p; c += 32) {
        const double wv = ld(w[c]), dv = ld(dy[c]);
        sh += wv * wv * iv[c];
        dp -= dv * wv * gb[c];
      }
      sh = warp_allsum(sh);
      dp = warp_allsum(dp);
      if (lane == 0) {
        s[(b * H + h) * N + n] = sh;
        dpi[(b * H + h) * N + n] = dp;
      }
    }
  }
}

// B1 (column): dA_raw = -sum_n dY W pi; dm = -g^2 dA_raw; dA = dm / sig; tq = -dm m / sig.
template <class T>
__global__ void __launch_bounds__(kThreads)
    b1_col_kernel(const T* __restrict__ W, const T* __restrict__ dY, const double* __restrict__ pi,
                  const double* __restrict__ g, const double* __restrict__ m, const double* __restrict__ sig,
                  double* __restrict__ dA, double* __restrict__ tq, int64_t B, int64_t N, int64_t H, int64_t p) {
  __shared__ double red[kRowsPerCol][32];
  const int64_t D = H * p;
  for (int64_t cb = blockIdx.x; cb * 32 < D; cb += gridDim.x) {
    for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
      const int64_t c = cb * 32 + threadIdx.x;
      const int64_t h = c < D ? c / p : 0;
      double acc = 0.0;
      if (c < D) {
        const T* Wb = W + b * N * D + c;
        const T* dYb = dY + b * N * D + c;
        const double* pr = pi + (b * H + h) * N;
        for (int64_t n = threadIdx.y; n < N; n += kRowsPerCol) acc -= ld(dYb[n * D]) * ld(Wb[n * D]) * pr[n];
      }
      const double tot = col_reduce(acc, red);
      if (threadIdx.y == 0 && c < D) {
        const double gc = g[b * D + c], isig = 1.0 / sig[b * H + h];
        const double dm = -gc * gc * tot;
        dA[b * D + c] = dm * isig;
        tq[b * D + c] = -(dm * m[b * D + c] * isig);
      }
    }
  }
}

// dsig[b,h] = sum_{c in h} tq[b,c]; one warp per (b, h).
__global__ void __launch_bounds__(kThreads)
    dsig_kernel(const double* __restrict__ tq, double* __restrict__ dsig, int64_t BH, int64_t p) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t bh = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); bh < BH; bh += warps) {
    double acc = 0.0;
    for (int64_t i = lane; i < p; i += 32) acc += tq[bh * p + i];  // (b, h) features are [bh*p, bh*p + p)
    acc = warp_allsum(acc);
    if (lane == 0) dsig[bh] = acc;
  }
}

// B2 (token): acc[h] = dpi + dsig[h] + sum_{c in h} dA W^2; dot = sum_h pi acc;
// dl = pi (acc - dot); dpi <- dl s (the dtau terms); s <- ds = temp[h] dl.
template <class T>
__global__ void __launch_bounds__(kThreads)
    b2_token_kernel(const T* __restrict__ W, const float* __restrict__ temp, const double* __restrict__ pi,
                    const double* __restrict__ dA, const double* __restrict__ dsig, double* __restrict__ s,
                    double* __restrict__ dpi, int64_t B, int64_t N, int64_t H, int64_t p) {
  const int lane = threadIdx.x & 31;
  const int64_t D = H * p;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t tok = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); tok < B * N;
       tok += warps) {
    const int64_t b = tok / N, n = tok % N;
    const T* w = W + tok * D;
    const double* dAb = dA + b * D;
    for (int64_t h = 0; h < H; ++h) {
      double a = 0.0;
      for (int64_t c = h * p + lane; c < (h + 1) * p; c += 32) {
        const double wv = ld(w[c]);
        a += dAb[c] * wv * wv;
      }
      a = warp_allsum(a);
      if (lane == 0) {
        const int64_t o = (b * H + h) * N + n;
        dpi[o] = dpi[o] + dsig[b * H + h] + a;
      }
    }
    __syncwarp();
    double dot = 0.0;
    for (int64_t h = lane; h < H; h += 32) {
      const int64_t o = (b * H + h) * N + n;
      dot += pi[o] * dpi[o];
    }
    dot = warp_allsum(dot);
    for (int64_t h = lane; h < H; h += 32) {
      const int64_t o = (b * H + h) * N + n;
      const double dl = pi[o] * (dpi[o] - dot);
      dpi[o] = dl * s[o];
      s[o] = static_cast<double>(temp[h]) * dl;
    }
    __syncwarp();
  }
}

// B2 (column): cc = sum_n ds W^2, then cc = q >= eps ? -2 cc / q^4 : 0.
template <class T>
__global__ void __launch_bounds__(kThreads)
    b2_col_kernel(const T* __restrict__ W, const double* __restrict__ ds, const double* __restrict__ q,
                  double* __restrict__ cc, int64_t B, int64_t N, int64_t H, int64_t p) {
  __shared__ double red[kRowsPerCol][32];
  const int64_t D = H * p;
  for (int64_t cb = blockIdx.x; cb * 32 < D; cb += gridDim.x) {
    for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
      const int64_t c = cb * 32 + threadIdx.x;
      const int64_t h = c < D ? c / p : 0;
      double acc = 0.0;
      if (c < D) {
        const T* Wb = W + b * N * D + c;
        const double* dr = ds + (b * H + h) * N;
        for (int64_t n = threadIdx.y; n < N; n += kRowsPerCol) {
          const double v = ld(Wb[n * D]);
          acc += dr[n] * v * v;
        }
      }
      const double tot = col_reduce(acc, red);
      if (threadIdx.y == 0 && c < D) {
        const double qq = q[b * D + c];
        double out = 0.0;
        if (qq >= kNormEps) {
          const double nu2 = qq * qq;
          out = -2.0 * tot / (nu2 * nu2);
        }
        cc[b * D + c] = out;
      }
    }
  }
}

// dtemp[h] = sum_b sum_n dtl[b,h,n]; one CTA per h (grid-stride), fixed-order block reduction.
__global__ void __launch_bounds__(kThreads)
    dtau_kernel(const double* __restrict__ dtl, float* __restrict__ dtemp, int64_t B, int64_t N, int64_t H) {
  __shared__ double red[kThreads / 32];
  for (int64_t h = blockIdx.x; h < H; h += gridDim.x) {
    double acc = 0.0;
    for (int64_t x = threadIdx.x; x < B * N; x += blockDim.x) {
      const int64_t b = x / N, n = x % N;
      acc += dtl[(b * H + h) * N + n];
    }
    acc = warp_allsum(acc);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      double s = 0.0;
      for (int w = 0; w < kThreads / 32; ++w) s += red[w];
      dtemp[h] = static_cast<float>(s);
    }
    __syncthreads();
  }
}

// B3 (elementwise): dW = W (2 dA pi + 2 ds inv2 + cc) - dY pi g.
template <class T>
__global__ void __launch_bounds__(kThreads)
    b3_kernel(const T* __restrict__ W, const T* __restrict__ dY, const double* __restrict__ pi,
              const double* __restrict__ ds, const double* __restrict__ dA, const double* __restrict__ inv2,
              const double* __restrict__ cc, const double* __restrict__ g, T* __restrict__ dW, int64_t B, int64_t N,
              int64_t H, int64_t p) {
  const int64_t D = H * p, total = B * N * D;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < total;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = x % D, tok = x / D, n = tok % N, b = tok / N, h = c / p;
    const int64_t o = (b * H + h) * N + n, bc = b * D + c;
    const double P = pi[o], ds2 = 2.0 * ds[o];
    const double wv = ld(W[x]), dv = ld(dY[x]);
    dW[x] = store_as<T>(wv * (2.0 * dA[bc] * P + ds2 * inv2[bc] + cc[bc]) - dv * P * g[bc]);
  }
}

// =================================================================================================
// Causal TSSA kernels (see the second header block at the top). Index conventions:
//   W, dY, Y, dW  (B, T, D)       D = H*p, head h = columns [h*p, (h+1)*p)
//   column arrays (B, nck, D) f64 one value per (batch item, chunk, feature): chunk sums, turned
//                                 into the running sum at the chunk's start (or past its end) by
//                                 a scan over chunks
//   token arrays  (B, H, T) f64   one value per (batch item, head, step)
//   chunk k       steps [k*kChunk, min(T, (k+1)*kChunk))
// =================================================================================================

__device__ __forceinline__ int chunk_len(int64_t k, int64_t Tn) {
  const int64_t left = Tn - k * kChunk;
  return static_cast<int>(left < kChunk ? left : kChunk);
}

// Column-kernel item x in [0, B*nck*D), D = H p, decomposed as (b, k, c) with c fastest
// (coalesced): chunk k of column c of batch item b, where the column kernels start reading.
struct ColChunk {
  int64_t off;  // W's element (b, t0, c), t0 = k kChunk (row stride D)
  int64_t tok;  // the token arrays' element (b, c / p, t0)
  int len;      // the chunk's steps t0 .. t0 + len - 1 (the last chunk may be short)
  __device__ __forceinline__ ColChunk(int64_t x, int64_t nck, int64_t Tn, int64_t H, int64_t p) {
    const int64_t D = H * p, c = x % D, bk = x / D, k = bk % nck, b = bk / nck, t0 = k * kChunk;
    off = (b * Tn + t0) * D + c;
    tok = (b * H + c / p) * Tn + t0;
    len = chunk_len(k, Tn);
  }
};

// denom_bias[h, t] finite for t < T? -> first bad h*T + t (the CPU's scan order) in *bad.
__global__ void bias_check_kernel(const float* __restrict__ bias, int64_t H, int64_t Tn, int64_t Tmax,
                                  unsigned long long* __restrict__ bad) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < H * Tn;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t h = i / Tn, t = i % Tn;
    if (!isfinite(static_cast<double>(bias[h * Tmax + t]))) atomicMin(bad, static_cast<unsigned long long>(i));
  }
}

// F1 column chunk sums of W^2 (the increments of C).  X (B, nck, D) out.
template <class T>
__global__ void __launch_bounds__(kThreads) chunk_sum_sq_kernel(const T* __restrict__ W, double* __restrict__ X,
                                                                int64_t B, int64_t Tn, int64_t D, int64_t nck) {
  const int64_t total = B * nck * D;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < total;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const ColChunk ch(x, nck, Tn, 1, D);  // one "head" of width D: only the W offset is used
    const int len = ch.len;
    const T* w = W + ch.off;  // w[tt * D] = W[b, t0 + tt, c]
    double acc = 0.0;
#pragma unroll
    for (int tt = 0; tt < kChunk; ++tt) {
      if (tt >= len) continue;
      const double v = ld(w[tt * D]);
      acc += v * v;
    }
    X[x] = acc;
  }
}

// Column chunk sums of Pi W^2 (the increments of N).  Pi (B, H, T), X (B, nck, D) out.
template <class T>
__global__ void __launch_bounds__(kThreads)
    chunk_sum_piw2_kernel(const T* __restrict__ W, const double* __restrict__ pi, double* __restrict__ X, int64_t B,
                          int64_t Tn, int64_t H, int64_t p, int64_t nck) {
  const int64_t D = H * p, total = B * nck * D;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < total;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const ColChunk ch(x, nck, Tn, H, p);
    const int len = ch.len;
    const T* w = W + ch.off;
    const double* pr = pi + ch.tok;  // pr[tt] = Pi[b, h, t0 + tt]
    double acc = 0.0;
#pragma unroll
    for (int tt = 0; tt < kChunk; ++tt) {
      if (tt >= len) continue;
      const double v = ld(w[tt * D]);
      acc += pr[tt] * v * v;
    }
    X[x] = acc;
  }
}

// Turns column chunk sums X (B, nck, D) into exclusive running sums over chunks, in place:
// forward (reverse = false) X[k] = sum_{k' < k}, reverse X[k] = sum_{k' > k}. One thread per
// (b, c), serial over chunks (fixed order); loads in batches of kScanBatch so a thread has that
// many in flight (B*D threads are few: latency, not bandwidth, is the cost here). bad_b
// (nullable): first b with a non-finite total.
__global__ void __launch_bounds__(kThreads) chunk_scan_kernel(double* __restrict__ X, int64_t B, int64_t nck, int64_t D,
                                                              bool reverse, unsigned long long* __restrict__ bad_b) {
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < B * D;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = x / D, c = x % D;
    double* col = X + b * nck * D + c;  // col[k * D]
    double run = 0.0;
    for (int64_t i0 = 0; i0 < nck; i0 += kScanBatch) {
      double v[kScanBatch];
#pragma unroll
      for (int j = 0; j < kScanBatch; ++j) {
        const int64_t i = i0 + j;
        if (i < nck) v[j] = col[(reverse ? nck - 1 - i : i) * D];
      }
#pragma unroll
      for (int j = 0; j < kScanBatch; ++j) {
        const int64_t i = i0 + j;
        if (i < nck) {
          col[(reverse ? nck - 1 - i : i) * D] = run;
          run += v[j];
        }
      }
    }
    if (bad_b && !isfinite(run)) atomicMin(bad_b, static_cast<unsigned long long>(b));
  }
}

// Inclusive running sums over t of token rows (B*H rows of T), forward or reverse; one warp per
// row, 32 steps per shuffle scan + carry, kScanBatch / 4 such blocks loaded at once. dst may
// equal src (each element is loaded before it is stored, by the same lane).
__global__ void __launch_bounds__(kThreads)
    token_scan_kernel(const double* src, double* dst, int64_t rows, int64_t Tn, bool reverse) {
  constexpr int kBlocks = kScanBatch / 4;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows;
       row += warps) {
    const double* s = src + row * Tn;
    double* d = dst + row * Tn;
    double carry = 0.0;
    for (int64_t base = 0; base < Tn; base += 32 * kBlocks) {
      double v[kBlocks];
#pragma unroll
      for (int j = 0; j < kBlocks; ++j) {
        const int64_t i = base + 32 * j + lane;  // i-th step in scan order
        v[j] = i < Tn ? s[reverse ? Tn - 1 - i : i] : 0.0;
      }
#pragma unroll
      for (int j = 0; j < kBlocks; ++j) {
        double a = v[j];
        for (int o = 1; o < 32; o <<= 1) {
          const double u = __shfl_up_sync(0xffffffffu, a, o);
          if (lane >= o) a += u;
        }
        a += carry;
        const int64_t i = base + 32 * j + lane;
        if (i < Tn) d[reverse ? Tn - 1 - i : i] = a;
        carry = __shfl_sync(0xffffffffu, a, 31);
      }
    }
  }
}

// Head kernel F2: u[b,h,t] = sum_{c in h} W[t,c]^2 / max(C[t,c], eps) + p * denom_bias[h,t].
// One warp per (b, chunk, h); the head's features in slabs of 32 (a lane each), the chunk's
// steps serial with C running from the chunk start C0; per step a butterfly sum over the slab,
// kept by lane tt (lane tt ends with step t0 + tt's sum over all slabs, in slab order).
template <class T>
__global__ void __launch_bounds__(kThreads)
    causal_logit_kernel(const T* __restrict__ W, const float* __restrict__ bias, const double* __restrict__ C0,
                        double* __restrict__ U, int64_t B, int64_t Tn, int64_t H, int64_t p, int64_t Tmax,
                        int64_t nck) {
  const int lane = threadIdx.x & 31;
  const int64_t D = H * p, items = B * nck * H;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); item < items;
       item += warps) {
    const int64_t h = item % H, bk = item / H, k = bk % nck, b = bk / nck, t0 = k * kChunk;
    const int len = chunk_len(k, Tn);
    double mine = 0.0;
    for (int64_t j0 = 0; j0 < p; j0 += 32) {
      const bool on = j0 + lane < p;
      const int64_t c = h * p + j0 + lane;
      const T* w = W + (b * Tn + t0) * D + c;
      double C = on ? C0[bk * D + c] : 0.0;
#pragma unroll
      for (int tt = 0; tt < kChunk; ++tt) {
        if (tt < len) {  // warp-uniform
          const double v = on ? ld(w[tt * D]) : 0.0;
          C += v * v;
          const double r = warp_allsum(on ? v * v / clamp_eps(C) : 0.0);
          if (lane == tt) mine += r;
        }
      }
    }
    if (lane < len)
      U[(b * H + h) * Tn + t0 + lane] = mine + static_cast<double>(p) * static_cast<double>(bias[h * Tmax + t0 + lane]);
  }
}

// Token kernel F3: pi[b,:,t] = softmax over heads of temp[h] u[b,h,t]; PiT (nullable) = pi.
// One warp per (b, t), lanes striding the heads (logits written into pi, then normalised).
__global__ void __launch_bounds__(kThreads)
    causal_softmax_kernel(const float* __restrict__ temp, const double* __restrict__ U, double* __restrict__ pi,
                          float* __restrict__ PiT, int64_t B, int64_t Tn, int64_t H) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t tok = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); tok < B * Tn;
       tok += warps) {
    const int64_t b = tok / Tn, t = tok % Tn;
    const int64_t row = b * H * Tn + t;  // [row + h * Tn] = (b, h, t)
    double mx = -INFINITY;
    for (int64_t h = lane; h < H; h += 32) {
      const double x = static_cast<double>(temp[h]) * U[row + h * Tn];
      pi[row + h * Tn] = x;
      mx = mx < x ? x : mx;
    }
    mx = warp_allmax(mx);
    double sum = 0.0;
    for (int64_t h = lane; h < H; h += 32) {
      const double e = exp(pi[row + h * Tn] - mx);
      pi[row + h * Tn] = e;
      sum += e;
    }
    sum = warp_allsum(sum);
    const double inv = 1.0 / sum;
    for (int64_t h = lane; h < H; h += 32) {
      const double v = pi[row + h * Tn] * inv;
      pi[row + h * Tn] = v;
      if (PiT) PiT[row + h * Tn] = static_cast<float>(v);
    }
  }
}

// Column kernel F4: Y[t,c] = -W Pi / (1 + N[t,c] / (P[h,t] + 1e-8)), N running from N0.
// Pc (B, H, T) = P, the inclusive running sum of Pi over t.
template <class T>
__global__ void __launch_bounds__(kThreads)
    causal_output_kernel(const T* __restrict__ W, const double* __restrict__ pi, const double* __restrict__ Pc,
                         const double* __restrict__ N0, T* __restrict__ Y, int64_t B, int64_t Tn, int64_t H, int64_t p,
                         int64_t nck) {
  const int64_t D = H * p, total = B * nck * D;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < total;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const ColChunk ch(x, nck, Tn, H, p);
    const int len = ch.len;
    const int64_t off = ch.off, tok = ch.tok;
    double Nacc = N0[x];
#pragma unroll
    for (int tt = 0; tt < kChunk; ++tt) {
      if (tt >= len) continue;
      const double v = ld(W[off + tt * D]), Pv = pi[tok + tt];
      Nacc += Pv * v * v;
      const double iden = 1.0 / (Pc[tok + tt] + kPiEps);
      Y[off + tt * D] = store_as<T>(-v * Pv / (1.0 + Nacc * iden));
    }
  }
}

// ---- causal backward ----------------------------------------------------------------------------

// B1 column chunk sums of dN = dm / den, dm = g^2 dY W Pi (the increments of RN).
template <class T>
__global__ void __launch_bounds__(kThreads)
    chunk_sum_dn_kernel(const T* __restrict__ W, const T* __restrict__ dY, const double* __restrict__ pi,
                        const double* __restrict__ Pc, const double* __restrict__ N0, double* __restrict__ X, int64_t B,
                        int64_t Tn, int64_t H, int64_t p, int64_t nck) {
  const int64_t D = H * p, total = B * nck * D;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < total;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const ColChunk ch(x, nck, Tn, H, p);
    const int len = ch.len;
    const int64_t off = ch.off, tok = ch.tok;
    double Nacc = N0[x], acc = 0.0;
#pragma unroll
    for (int tt = 0; tt < kChunk; ++tt) {
      if (tt >= len) continue;
      const double v = ld(W[off + tt * D]), dv = ld(dY[off + tt * D]);
      const double Pv = pi[tok + tt], iden = 1.0 / (Pc[tok + tt] + kPiEps);
      Nacc += Pv * v * v;
      const double m = Nacc * iden, g = 1.0 / (1.0 + m);
      acc += g * g * dv * v * Pv * iden;
    }
    X[x] = acc;
  }
}

// Head kernel B2: per (b, h, t)
//   dden[t] = -sum_{c in h} dm m / den                      (-> RP by a reverse scan)
//   q[t]    = sum_{c in h} (RN[t,c] W^2 - dY W g)            (dPi = q + RP)
// RN[t,c] = RN past the chunk (RNn) + sum over the chunk's steps >= t of dm / den. Per slab the
// chunk's N[t,c] are recomputed forward into registers, then the steps run in reverse.
template <class T>
__global__ void __launch_bounds__(kThreads)
    causal_dpi_kernel(const T* __restrict__ W, const T* __restrict__ dY, const double* __restrict__ pi,
                      const double* __restrict__ Pc, const double* __restrict__ N0, const double* __restrict__ RNn,
                      double* __restrict__ q, double* __restrict__ dden, int64_t B, int64_t Tn, int64_t H, int64_t p,
                      int64_t nck) {
  const int lane = threadIdx.x & 31;
  const int64_t D = H * p, items = B * nck * H;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); item < items;
       item += warps) {
    const int64_t h = item % H, bk = item / H, k = bk % nck, b = bk / nck, t0 = k * kChunk;
    const int len = chunk_len(k, Tn);
    const int64_t tok = (b * H + h) * Tn + t0;  // token arrays at (b, h, t0)
    double my_q = 0.0, my_dd = 0.0;
    for (int64_t j0 = 0; j0 < p; j0 += 32) {
      const bool on = j0 + lane < p;
      const int64_t c = h * p + j0 + lane, off = (b * Tn + t0) * D + c;
      double Nt[kChunk];
      double Nacc = on ? N0[bk * D + c] : 0.0;
#pragma unroll
      for (int tt = 0; tt < kChunk; ++tt) {
        if (tt < len) {
          const double v = on ? ld(W[off + tt * D]) : 0.0;
          Nacc += pi[tok + tt] * v * v;
          Nt[tt] = Nacc;
        }
      }
      double RN = on ? RNn[bk * D + c] : 0.0;
#pragma unroll
      for (int tt = kChunk - 1; tt >= 0; --tt) {
        if (tt < len) {  // warp-uniform
          double dd = 0.0, qq = 0.0;
          if (on) {
            const double v = ld(W[off + tt * D]), dv = ld(dY[off + tt * D]);
            const double Pv = pi[tok + tt], iden = 1.0 / (Pc[tok + tt] + kPiEps);
            const double m = Nt[tt] * iden, g = 1.0 / (1.0 + m);
            const double dm = g * g * dv * v * Pv;
            RN += dm * iden;
            dd = -(dm * m * iden);
            qq = RN * v * v - dv * v * g;
          }
          dd = warp_allsum(dd);
          qq = warp_allsum(qq);
          if (lane == tt) {
            my_dd += dd;
            my_q += qq;
          }
        }
      }
    }
    if (lane < len) {
      q[tok + lane] = my_q;
      dden[tok + lane] = my_dd;
    }
  }
}

// Token kernel B3: softmax backward over heads at each (b, t):
//   dPi = q + RP;  dl = Pi (dPi - sum_h Pi dPi);  U <- dl u (dtemp terms);  du = temp[h] dl.
// q is overwritten with dPi (each lane re-reads only its own heads).
__global__ void __launch_bounds__(kThreads)
    causal_softmax_backward_kernel(const float* __restrict__ temp, const double* __restrict__ pi,
                                   const double* __restrict__ RP, double* __restrict__ q, double* __restrict__ U,
                                   double* __restrict__ du, int64_t B, int64_t Tn, int64_t H) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t tok = static_cast<int64_t>(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5); tok < B * Tn;
       tok += warps) {
    const int64_t b = tok / Tn, t = tok % Tn;
    const int64_t row = b * H * Tn + t;  // [row + h * Tn] = (b, h, t)
    double dot = 0.0;
    for (int64_t h = lane; h < H; h += 32) {
      const int64_t o = row + h * Tn;
      const double dp = q[o] + RP[o];
      q[o] = dp;
      dot += pi[o] * dp;
    }
    dot = warp_allsum(dot);
    for (int64_t h = lane; h < H; h += 32) {
      const int64_t o = row + h * Tn;
      const double dl = pi[o] * (q[o] - dot);
      U[o] = dl * U[o];
      du[o] = static_cast<double>(temp[h]) * dl;
    }
  }
}

// B4 column chunk sums of dC = -du W^2 / cl^2 where the clamp passes the gradient (C >= eps)
// (the increments of RC).
template <class T>
__global__ void __launch_bounds__(kThreads)
    chunk_sum_dc_kernel(const T* __restrict__ W, const double* __restrict__ du, const double* __restrict__ C0,
                        double* __restrict__ X, int64_t B, int64_t Tn, int64_t H, int64_t p, int64_t nck) {
  const int64_t D = H * p, total = B * nck * D;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < total;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const ColChunk ch(x, nck, Tn, H, p);
    const int len = ch.len;
    const int64_t off = ch.off, tok = ch.tok;
    double C = C0[x], acc = 0.0;
#pragma unroll
    for (int tt = 0; tt < kChunk; ++tt) {
      if (tt >= len) continue;
      const double v = ld(W[off + tt * D]);
      C += v * v;
      const double cl = clamp_eps(C), icl = 1.0 / cl;
      const double dc = du[tok + tt] * v * v * icl * icl;
      acc -= cl == C ? dc : 0.0;
    }
    X[x] = acc;
  }
}

// Column kernel B5: dW = -dY Pi g + 2 W (RN Pi + du / cl + RC), RN and RC inclusive reverse
// running sums (from RNn / RCn past the chunk); the chunk's C and N are recomputed forward into
// registers, then the steps run in reverse.
template <class T>
__global__ void __launch_bounds__(kThreads)
    causal_dw_kernel(const T* __restrict__ W, const T* __restrict__ dY, const double* __restrict__ pi,
                     const double* __restrict__ Pc, const double* __restrict__ du, const double* __restrict__ C0,
                     const double* __restrict__ N0, const double* __restrict__ RNn, const double* __restrict__ RCn,
                     T* __restrict__ dW, int64_t B, int64_t Tn, int64_t H, int64_t p, int64_t nck) {
  const int64_t D = H * p, total = B * nck * D;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < total;
       x += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const ColChunk ch(x, nck, Tn, H, p);
    const int len = ch.len;
    const int64_t off = ch.off, tok = ch.tok;
    double Ct[kChunk], Nt[kChunk];
    double C = C0[x], Nacc = N0[x];
#pragma unroll
    for (int tt = 0; tt < kChunk; ++tt) {
      if (tt < len) {
        const double v = ld(W[off + tt * D]);
        C += v * v;
        Nacc += pi[tok + tt] * v * v;
        Ct[tt] = C;
        Nt[tt] = Nacc;
      }
    }
    double RN = RNn[x], RC = RCn[x];
#pragma unroll
    for (int tt = kChunk - 1; tt >= 0; --tt) {
      if (tt < len) {
        const double v = ld(W[off + tt * D]), dv = ld(dY[off + tt * D]);
        const double Pv = pi[tok + tt], iden = 1.0 / (Pc[tok + tt] + kPiEps), dut = du[tok + tt];
        const double m = Nt[tt] * iden, g = 1.0 / (1.0 + m);
        RN += g * g * dv * v * Pv * iden;
        const double cl = clamp_eps(Ct[tt]), icl = 1.0 / cl;
        const double dc = dut * v * v * icl * icl;
        RC -= cl == Ct[tt] ? dc : 0.0;
        dW[off + tt * D] = store_as<T>(-dv * Pv * g + 2.0 * v * (RN * Pv + dut * icl + RC));
      }
    }
  }
}

// ddenom_bias[h, t] = sum_b p du[b,h,t] for t < T (columns >= T were zeroed by the host).
__global__ void __launch_bounds__(kThreads) ddenom_kernel(const double* __restrict__ du, float* __restrict__ ddenom,
                                                          int64_t B, int64_t Tn, int64_t H, int64_t p, int64_t Tmax) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < H * Tn;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t h = i / Tn, t = i % Tn;
    double acc = 0.0;
    for (int64_t b = 0; b < B; ++b) acc += static_cast<double>(p) * du[(b * H + h) * Tn + t];
    ddenom[h * Tmax + t] = static_cast<float>(acc);
  }
}

// ---- host side -----------------------------------------------------------------------------------

void check_sizes(const char* fn, int64_t B, int64_t N, int64_t H, int64_t p, const char* nname = "N") {
  CRATE_CUDA_REQUIRE(B >= 0 && N >= 0 && H >= 0 && p >= 0, fn,
                     "sizes must be >= 0 (got B=" + std::to_string(B) + ", " + nname + "=" + std::to_string(N) +
                         ", H=" + std::to_string(H) + ", p=" + std::to_string(p) + ")");
  const double total = (double)B * (double)N * (double)H * (double)(p > 8 ? p : 8);
  CRATE_CUDA_REQUIRE(total < 9.0e18, fn, "size overflow");
}

unsigned cap(int64_t v, int64_t c) { return static_cast<unsigned>(v < 1 ? 1 : (v < c ? v : c)); }
dim3 col_grid(int64_t D, int64_t B) { return dim3(cap((D + 31) / 32, 1LL << 30), cap(B, 65535)); }
unsigned warp_grid(int64_t items) { return cap((items + kThreads / 32 - 1) / (kThreads / 32), 1LL << 20); }

// Scratch of doubles carved into named arrays.
struct F64Arena {
  std::unique_ptr<Scratch> mem;
  double* base = nullptr;
  size_t used = 0;
  F64Arena(size_t count, cudaStream_t st) {
    if (count == 0) count = 1;
    mem = std::make_unique<Scratch>(count * sizeof(double), st);
    base = mem->as<double>();
  }
  double* take(int64_t n) {
    double* p = base + used;
    used += static_cast<size_t>(n);
    return p;
  }
};

// Flags: [bad_h (temp) | bad_b (W column sums) | idx (locate) | bad h*T+t (causal denom_bias)],
// 0xFF.. = none. The validation kernels (temp / denom_bias checks, the first pass over W) run
// first; mark() then copies the flag words into a pinned host slot and records an event, and the
// op's remaining kernels are launched before the host waits on that event (wait()). So the host
// blocks once per call, until the GPU is past the validation, with the rest of the op already
// queued: the stream does not drain (see the header). Slots (pinned words + event) are pooled for
// the process's lifetime; a slot is handed back only once its copy has completed.
constexpr int kFlagWords = 4;
struct FlagSlot {
  unsigned long long* host = nullptr;  // pinned, kFlagWords
  cudaEvent_t ev = nullptr;
};
std::mutex g_slot_mu;
std::vector<FlagSlot> g_slots;  // free slots

struct Flags {
  std::unique_ptr<Scratch> mem;
  unsigned long long* words = nullptr;  // device
  FlagSlot slot;
  bool marked = false, waited = false;
  explicit Flags(cudaStream_t st) {
    mem = std::make_unique<Scratch>(kFlagWords * sizeof(unsigned long long), st);
    words = mem->as<unsigned long long>();
    check(cudaMemsetAsync(words, 0xFF, kFlagWords * sizeof(unsigned long long), st), "tssa: memset flags");
    {
      std::lock_guard<std::mutex> lk(g_slot_mu);
      if (!g_slots.empty()) {
        slot = g_slots.back();
        g_slots.pop_back();
      }
    }
    if (!slot.host) {
      void* h = nullptr;
      check(cudaHostAlloc(&h, kFlagWords * sizeof(unsigned long long), cudaHostAllocPortable), "tssa: pinned flags");
      slot.host = static_cast<unsigned long long*>(h);
      if (cudaEventCreateWithFlags(&slot.ev, cudaEventDisableTiming) != cudaSuccess) {
        cudaFreeHost(h);
        slot = FlagSlot{};
        check(cudaGetLastError(), "tssa: cudaEventCreateWithFlags");
      }
    }
  }
  ~Flags() {
    if (!slot.host) return;
    if (marked && !waited) {  // an exception between mark() and wait(): the copy must land first
      host_syncs.fetch_add(1, std::memory_order_relaxed);
      if (cudaEventSynchronize(slot.ev) != cudaSuccess) return;  // leak the slot rather than race
    }
    std::lock_guard<std::mutex> lk(g_slot_mu);
    g_slots.push_back(slot);
  }
  Flags(const Flags&) = delete;
  Flags& operator=(const Flags&) = delete;
  // After the validation kernels: the flag words to the host slot, then the event (no wait).
  void mark(cudaStream_t st) {
    check(cudaMemcpyAsync(slot.host, words, kFlagWords * sizeof(unsigned long long), cudaMemcpyDeviceToHost, st),
          "tssa: read flags");
    check(cudaEventRecord(slot.ev, st), "tssa: record the flags event");
    marked = true;
  }
  // The host's one wait of the call (counted in num_host_syncs, as host_sync): the flag words as of
  // mark().
  const unsigned long long* wait() {
    host_syncs.fetch_add(1, std::memory_order_relaxed);
    check(cudaEventSynchronize(slot.ev), "tssa: wait for the flags");
    waited = true;
    return slot.host;
  }
};

// One element of device memory (error path only: synchronizes).
template <class T>
double read_elem(const T* p, cudaStream_t st) {
  T v;
  read_back(&v, p, sizeof(T), st, "tssa: read back");
  return static_cast<double>(prim::as_f32(v));
}

// Throws like the CPU from the flag words w (Flags::wait): temp first, then the first bad b (its
// first bad element, found by locate_kernel, named "W[b=, <tname>=, c=]"). Only the error path
// synchronizes again.
template <class T>
void raise_flags(const char* fn, const unsigned long long* w, const Flags& fl, const T* W, const float* temp, int64_t N,
                 int64_t D, cudaStream_t st, const char* tname = "n") {
  if (w[0] != kNone) {
    const double v = read_elem(temp + w[0], st);
    throw Error(CRATE_ERR_NUMERICAL,
                std::string(fn) + ": temp[" + std::to_string(w[0]) + "] is " + (std::isnan(v) ? "NaN" : "Inf"));
  }
  if (w[1] == kNone) return;
  const int64_t b = static_cast<int64_t>(w[1]);
  const T* Wb = W + b * N * D;
  locate_kernel<T><<<grid_for(N * D, kThreads, 4096), kThreads, 0, st>>>(Wb, N * D, fl.words + 2);
  check_launch("tssa locate_kernel", st);
  unsigned long long idx = kNone;
  read_back(&idx, fl.words + 2, sizeof(idx), st, "tssa: read flags");
  if (idx == kNone)
    throw Error(CRATE_ERR_NUMERICAL,
                std::string(fn) + ": sum of W[b=" + std::to_string(b) + "]² over " + tname + " overflows");
  const double v = read_elem(Wb + idx, st);
  const int64_t n = static_cast<int64_t>(idx) / D, c = static_cast<int64_t>(idx) % D;
  throw Error(CRATE_ERR_NUMERICAL, std::string(fn) + ": W[b=" + std::to_string(b) + ", " + tname + "=" +
                                       std::to_string(n) + ", c=" + std::to_string(c) + "] is " +
                                       (std::isnan(v) ? "NaN" : "Inf"));
}

// K1..K3: q, inv2, pi, m, g (nullable), sig, plus the forward's optional outputs (f32). The
// validation (temp check, column sums of W) comes first, then fl.mark().
template <class T>
void stats(const T* W, const float* temp, int64_t B, int64_t N, int64_t H, int64_t p, double* q, double* inv2,
           double* pi, double* m, double* g, double* sig, float* PiT, float* colnorm, float* mstat, Flags& fl,
           cudaStream_t st) {
  const int64_t D = H * p;
  temp_check_kernel<<<1, kThreads, 0, st>>>(temp, H, fl.words);
  check_launch("tssa temp_check_kernel", st);
  if (D > 0) {
    colnorm_kernel<T><<<col_grid(D, B), dim3(32, kRowsPerCol), 0, st>>>(W, B, N, D, q, inv2, colnorm, fl.words + 1);
    check_launch("tssa colnorm_kernel", st);
  }
  fl.mark(st);
  head_softmax_kernel<T><<<warp_grid(B * N), kThreads, 0, st>>>(W, temp, inv2, pi, PiT, B, N, H, p);
  check_launch("tssa head_softmax_kernel", st);
  if (D > 0) {
    mstat_kernel<T><<<col_grid(D, B), dim3(32, kRowsPerCol), 0, st>>>(W, pi, B, N, H, p, m, g, sig, mstat);
    check_launch("tssa mstat_kernel", st);
  }
}

template <class T>
void tssa_forward(const T* W, const float* temp, T* Y, float* Pi, float* colnorm, float* mstat, int64_t B, int64_t N,
                  int64_t H, int64_t p, void* stream) {
  const char* fn = "tssa_forward";
  check_sizes(fn, B, N, H, p);
  const int64_t D = H * p;
  if (B == 0 || N == 0 || H == 0) return;
  CRATE_CUDA_REQUIRE(temp, fn, "temp must not be NULL");
  if (p > 0) {
    CRATE_CUDA_REQUIRE(W, fn, "W must not be NULL");
    CRATE_CUDA_REQUIRE(Y, fn, "Y must not be NULL");
  }
  cudaStream_t st = resolve_stream(stream);
  Flags fl(st);
  F64Arena ar(static_cast<size_t>(B * H * N + 3 * B * D + B * H), st);
  double* pi = ar.take(B * H * N);
  double* q = ar.take(B * D);
  double* inv2 = ar.take(B * D);
  double* m = ar.take(B * D);
  double* sig = ar.take(B * H);
  stats<T>(W, temp, B, N, H, p, q, inv2, pi, m, nullptr, sig, Pi, colnorm, mstat, fl, st);
  if (D > 0) {
    output_kernel<T><<<grid_for(B * N * D, kThreads), kThreads, 0, st>>>(W, pi, m, Y, B, N, H, p);
    check_launch("tssa output_kernel", st);
  }
  raise_flags<T>(fn, fl.wait(), fl, W, temp, N, D, st);
}

template <class T>
void tssa_backward(const T* W, const float* temp, const T* dY, const float* Pi, const float* colnorm,
                   const float* mstat, T* dW, float* dtemp, int64_t B, int64_t N, int64_t H, int64_t p, void* stream) {
  const char* fn = "tssa_backward";
  check_sizes(fn, B, N, H, p);
  const int64_t D = H * p;
  cudaStream_t st = nullptr;
  if (dtemp && H > 0) {
    st = resolve_stream(stream);
    check(cudaMemsetAsync(dtemp, 0, static_cast<size_t>(H) * sizeof(float), st), "tssa_backward: zero dtemp");
  }
  if (B == 0 || N == 0 || H == 0 || p == 0) return;
  CRATE_CUDA_REQUIRE(W, fn, "W must not be NULL");
  CRATE_CUDA_REQUIRE(temp, fn, "temp must not be NULL");
  CRATE_CUDA_REQUIRE(dY, fn, "dY must not be NULL");
  CRATE_CUDA_REQUIRE(dW, fn, "dW must not be NULL");
  if (!st) st = resolve_stream(stream);
  const bool saved = Pi && colnorm && mstat;
  const int64_t HN = B * H * N;
  F64Arena ar(static_cast<size_t>(3 * HN + 6 * B * D + 2 * B * H), st);
  double* pi = ar.take(HN);
  double* s = ar.take(HN);
  double* dpi = ar.take(HN);
  double* q = ar.take(B * D);
  double* inv2 = ar.take(B * D);
  double* m = ar.take(B * D);
  double* g = ar.take(B * D);
  double* dA = ar.take(B * D);
  double* cc = ar.take(B * D);
  double* sig = ar.take(B * H);
  double* dsig = ar.take(B * H);
  std::unique_ptr<Flags> fl;
  if (saved) {
    load_saved_cols_kernel<<<grid_for(B * D, kThreads), kThreads, 0, st>>>(colnorm, mstat, B * D, q, inv2, m, g);
    check_launch("tssa load_saved_cols_kernel", st);
    load_saved_pi_kernel<<<warp_grid(B * H), kThreads, 0, st>>>(Pi, B * H, N, pi, sig);
    check_launch("tssa load_saved_pi_kernel", st);
  } else {
    fl = std::make_unique<Flags>(st);
    stats<T>(W, temp, B, N, H, p, q, inv2, pi, m, g, sig, nullptr, nullptr, nullptr, *fl, st);
  }
  b1_token_kernel<T><<<warp_grid(B * N), kThreads, 0, st>>>(W, dY, inv2, g, s, dpi, B, N, H, p);
  check_launch("tssa b1_token_kernel", st);
  b1_col_kernel<T><<<col_grid(D, B), dim3(32, kRowsPerCol), 0, st>>>(W, dY, pi, g, m, sig, dA, cc, B, N, H, p);
  check_launch("tssa b1_col_kernel", st);
  dsig_kernel<<<warp_grid(B * H), kThreads, 0, st>>>(cc, dsig, B * H, p);
  check_launch("tssa dsig_kernel", st);
  b2_token_kernel<T><<<warp_grid(B * N), kThreads, 0, st>>>(W, temp, pi, dA, dsig, s, dpi, B, N, H, p);
  check_launch("tssa b2_token_kernel", st);
  b2_col_kernel<T><<<col_grid(D, B), dim3(32, kRowsPerCol), 0, st>>>(W, s, q, cc, B, N, H, p);
  check_launch("tssa b2_col_kernel", st);
  if (dtemp) {
    dtau_kernel<<<cap(H, 1LL << 20), kThreads, 0, st>>>(dpi, dtemp, B, N, H);
    check_launch("tssa dtau_kernel", st);
  }
  b3_kernel<T><<<grid_for(B * N * D, kThreads), kThreads, 0, st>>>(W, dY, pi, s, dA, inv2, cc, g, dW, B, N, H, p);
  check_launch("tssa b3_kernel", st);
  if (fl) raise_flags<T>(fn, fl->wait(), *fl, W, temp, N, D, st);
}

// ---- causal host side ----------------------------------------------------------------------------

// Sizes and pointers as the CPU's check_causal; the denom_bias NaN scan is a kernel (flag word 3).
void check_causal_sizes(const char* fn, int64_t B, int64_t Tn, int64_t H, int64_t p, int64_t Tmax) {
  check_sizes(fn, B, Tn, H, p, "T");
  CRATE_CUDA_REQUIRE(
      Tmax >= Tn, fn,
      "T=" + std::to_string(Tn) + " exceeds Tmax=" + std::to_string(Tmax) + " (denom_bias has shape (H, Tmax))");
  CRATE_CUDA_REQUIRE(static_cast<double>(H) * static_cast<double>(Tmax) < 9.0e18, fn, "size overflow");
}

void launch_bias_check(const float* bias, int64_t H, int64_t Tn, int64_t Tmax, const Flags& fl, cudaStream_t st) {
  bias_check_kernel<<<grid_for(H * Tn, kThreads, 4096), kThreads, 0, st>>>(bias, H, Tn, Tmax, fl.words + 3);
  check_launch("tssa_causal bias_check_kernel", st);
}

// Throws like the CPU from the flag words w (Flags::wait): denom_bias first, then temp, then W.
template <class T>
void raise_causal_flags(const char* fn, const unsigned long long* w, const Flags& fl, const T* W, const float* temp,
                        const float* bias, int64_t Tn, int64_t Tmax, int64_t D, cudaStream_t st) {
  if (w[3] != kNone) {
    const int64_t h = static_cast<int64_t>(w[3]) / Tn, t = static_cast<int64_t>(w[3]) % Tn;
    const double v = read_elem(bias + h * Tmax + t, st);
    throw Error(CRATE_ERR_NUMERICAL, std::string(fn) + ": denom_bias[" + std::to_string(h) + ", " + std::to_string(t) +
                                         "] is " + (std::isnan(v) ? "NaN" : "Inf"));
  }
  raise_flags<T>(fn, w, fl, W, temp, Tn, D, st, "t");
}

// The forward's statistics, shared by the backward's recompute:
//   C0 (B, nck, D)  running sum of W^2 at each chunk's start
//   U  (B, H, T)    u;   pi (B, H, T) Pi (PiT: nullable f32 copy);   Pc (B, H, T) running sum of Pi
//   N0 (B, nck, D)  running sum of Pi W^2 at each chunk's start (may alias C0 when C0 is not needed
//                   afterwards: C0 is dead once the logits are computed)
// The validation (denom_bias, temp, the scan of the W^2 chunk sums) comes first, then fl.mark().
template <class T>
void causal_stats(const T* W, const float* temp, const float* bias, int64_t B, int64_t Tn, int64_t H, int64_t p,
                  int64_t Tmax, int64_t nck, double* C0, double* U, double* pi, double* Pc, double* N0, float* PiT,
                  Flags& fl, cudaStream_t st) {
  const int64_t D = H * p;
  launch_bias_check(bias, H, Tn, Tmax, fl, st);
  temp_check_kernel<<<1, kThreads, 0, st>>>(temp, H, fl.words);
  check_launch("tssa_causal temp_check_kernel", st);
  if (D > 0) {
    chunk_sum_sq_kernel<T><<<grid_for(B * nck * D, kThreads), kThreads, 0, st>>>(W, C0, B, Tn, D, nck);
    check_launch("tssa_causal chunk_sum_sq_kernel", st);
    chunk_scan_kernel<<<grid_for(B * D, kThreads), kThreads, 0, st>>>(C0, B, nck, D, false, fl.words + 1);
    check_launch("tssa_causal chunk_scan_kernel", st);
  }
  fl.mark(st);
  causal_logit_kernel<T><<<warp_grid(B * nck * H), kThreads, 0, st>>>(W, bias, C0, U, B, Tn, H, p, Tmax, nck);
  check_launch("tssa_causal causal_logit_kernel", st);
  causal_softmax_kernel<<<warp_grid(B * Tn), kThreads, 0, st>>>(temp, U, pi, PiT, B, Tn, H);
  check_launch("tssa_causal causal_softmax_kernel", st);
  if (D == 0) return;
  token_scan_kernel<<<warp_grid(B * H), kThreads, 0, st>>>(pi, Pc, B * H, Tn, false);
  check_launch("tssa_causal token_scan_kernel", st);
  chunk_sum_piw2_kernel<T><<<grid_for(B * nck * D, kThreads), kThreads, 0, st>>>(W, pi, N0, B, Tn, H, p, nck);
  check_launch("tssa_causal chunk_sum_piw2_kernel", st);
  chunk_scan_kernel<<<grid_for(B * D, kThreads), kThreads, 0, st>>>(N0, B, nck, D, false, nullptr);
  check_launch("tssa_causal chunk_scan_kernel", st);
}

template <class T>
void tssa_causal_forward(const T* W, const float* temp, const float* bias, T* Y, float* Pi, int64_t B, int64_t Tn,
                         int64_t H, int64_t p, int64_t Tmax, void* stream) {
  const char* fn = "tssa_causal_forward";
  check_causal_sizes(fn, B, Tn, H, p, Tmax);
  if (B == 0 || Tn == 0 || H == 0) return;
  CRATE_CUDA_REQUIRE(temp, fn, "temp must not be NULL");
  CRATE_CUDA_REQUIRE(bias, fn, "denom_bias must not be NULL");
  if (p > 0) {
    CRATE_CUDA_REQUIRE(W, fn, "W must not be NULL");
    CRATE_CUDA_REQUIRE(Y, fn, "Y must not be NULL");
  }
  const int64_t D = H * p, nck = (Tn + kChunk - 1) / kChunk, BHT = B * H * Tn;
  cudaStream_t st = resolve_stream(stream);
  Flags fl(st);
  F64Arena ar(static_cast<size_t>(B * nck * D + 3 * BHT), st);
  double* CN0 = ar.take(B * nck * D);  // C0, then N0
  double* U = ar.take(BHT);
  double* pi = ar.take(BHT);
  double* Pc = ar.take(BHT);
  causal_stats<T>(W, temp, bias, B, Tn, H, p, Tmax, nck, CN0, U, pi, Pc, CN0, Pi, fl, st);
  if (D > 0) {
    causal_output_kernel<T><<<grid_for(B * nck * D, kThreads), kThreads, 0, st>>>(W, pi, Pc, CN0, Y, B, Tn, H, p, nck);
    check_launch("tssa_causal causal_output_kernel", st);
  }
  raise_causal_flags<T>(fn, fl.wait(), fl, W, temp, bias, Tn, Tmax, D, st);
}

template <class T>
void tssa_causal_backward(const T* W, const float* temp, const float* bias, const T* dY, T* dW, float* dtemp,
                          float* ddenom, int64_t B, int64_t Tn, int64_t H, int64_t p, int64_t Tmax, void* stream) {
  const char* fn = "tssa_causal_backward";
  check_causal_sizes(fn, B, Tn, H, p, Tmax);
  const bool work = B > 0 && Tn > 0 && H > 0;
  if (work) {
    CRATE_CUDA_REQUIRE(temp, fn, "temp must not be NULL");
    CRATE_CUDA_REQUIRE(bias, fn, "denom_bias must not be NULL");
  }
  cudaStream_t st = nullptr;
  if ((dtemp && H > 0) || (ddenom && H > 0 && Tmax > 0) || work) st = resolve_stream(stream);
  if (dtemp && H > 0)
    check(cudaMemsetAsync(dtemp, 0, static_cast<size_t>(H) * sizeof(float), st), "tssa_causal_backward: zero dtemp");
  if (ddenom && H > 0 && Tmax > 0)
    check(cudaMemsetAsync(ddenom, 0, static_cast<size_t>(H * Tmax) * sizeof(float), st),
          "tssa_causal_backward: zero ddenom_bias");
  if (!work) return;
  if (p == 0) {  // the CPU still scans denom_bias here (and only that)
    Flags fl(st);
    launch_bias_check(bias, H, Tn, Tmax, fl, st);
    fl.mark(st);
    raise_causal_flags<T>(fn, fl.wait(), fl, W, temp, bias, Tn, Tmax, 0, st);
    return;
  }
  CRATE_CUDA_REQUIRE(W, fn, "W must not be NULL");
  CRATE_CUDA_REQUIRE(dY, fn, "dY must not be NULL");
  CRATE_CUDA_REQUIRE(dW, fn, "dW must not be NULL");
  const int64_t D = H * p, nck = (Tn + kChunk - 1) / kChunk, BHT = B * H * Tn, BKD = B * nck * D;
  Flags fl(st);
  F64Arena ar(static_cast<size_t>(4 * BKD + 6 * BHT), st);
  double* C0 = ar.take(BKD);
  double* N0 = ar.take(BKD);
  double* RNn = ar.take(BKD);
  double* RCn = ar.take(BKD);
  double* U = ar.take(BHT);  // u, then the dtemp terms dl u
  double* pi = ar.take(BHT);
  double* Pc = ar.take(BHT);
  double* q = ar.take(BHT);   // q, then dPi
  double* RP = ar.take(BHT);  // dden, then its reverse running sum RP
  double* du = ar.take(BHT);
  causal_stats<T>(W, temp, bias, B, Tn, H, p, Tmax, nck, C0, U, pi, Pc, N0, nullptr, fl, st);
  const unsigned col_blocks = grid_for(BKD, kThreads);
  chunk_sum_dn_kernel<T><<<col_blocks, kThreads, 0, st>>>(W, dY, pi, Pc, N0, RNn, B, Tn, H, p, nck);
  check_launch("tssa_causal chunk_sum_dn_kernel", st);
  chunk_scan_kernel<<<grid_for(B * D, kThreads), kThreads, 0, st>>>(RNn, B, nck, D, true, nullptr);
  check_launch("tssa_causal chunk_scan_kernel", st);
  causal_dpi_kernel<T><<<warp_grid(B * nck * H), kThreads, 0, st>>>(W, dY, pi, Pc, N0, RNn, q, RP, B, Tn, H, p, nck);
  check_launch("tssa_causal causal_dpi_kernel", st);
  token_scan_kernel<<<warp_grid(B * H), kThreads, 0, st>>>(RP, RP, B * H, Tn, true);
  check_launch("tssa_causal token_scan_kernel", st);
  causal_softmax_backward_kernel<<<warp_grid(B * Tn), kThreads, 0, st>>>(temp, pi, RP, q, U, du, B, Tn, H);
  check_launch("tssa_causal causal_softmax_backward_kernel", st);
  chunk_sum_dc_kernel<T><<<col_blocks, kThreads, 0, st>>>(W, du, C0, RCn, B, Tn, H, p, nck);
  check_launch("tssa_causal chunk_sum_dc_kernel", st);
  chunk_scan_kernel<<<grid_for(B * D, kThreads), kThreads, 0, st>>>(RCn, B, nck, D, true, nullptr);
  check_launch("tssa_causal chunk_scan_kernel", st);
  causal_dw_kernel<T><<<col_blocks, kThreads, 0, st>>>(W, dY, pi, Pc, du, C0, N0, RNn, RCn, dW, B, Tn, H, p, nck);
  check_launch("tssa_causal causal_dw_kernel", st);
  if (dtemp) {
    dtau_kernel<<<cap(H, 1LL << 20), kThreads, 0, st>>>(U, dtemp, B, Tn, H);
    check_launch("tssa_causal dtau_kernel", st);
  }
  if (ddenom) {
    ddenom_kernel<<<grid_for(H * Tn, kThreads), kThreads, 0, st>>>(du, ddenom, B, Tn, H, p, Tmax);
    check_launch("tssa_causal ddenom_kernel", st);
  }
  raise_causal_flags<T>(fn, fl.wait(), fl, W, temp, bias, Tn, Tmax, D, st);
}

inline const Bf16* bf(const uint16_t* p) { return reinterpret_cast<const Bf16*>(p); }
inline Bf16* bf(uint16_t* p) { return reinterpret_cast<Bf16*>(p); }

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;

extern "C" {

CRATE_API crate_status crate_cuda_tssa_forward_f32(const float* W, const float* temp, float* Y, float* Pi,
                                                   float* colnorm, float* mstat, int64_t B, int64_t N, int64_t H,
                                                   int64_t p, void* stream) {
  return guard("crate_cuda_tssa_forward_f32",
               [&] { tssa_forward<float>(W, temp, Y, Pi, colnorm, mstat, B, N, H, p, stream); });
}

CRATE_API crate_status crate_cuda_tssa_backward_f32(const float* W, const float* temp, const float* dY, const float* Pi,
                                                    const float* colnorm, const float* mstat, float* dW, float* dtemp,
                                                    int64_t B, int64_t N, int64_t H, int64_t p, void* stream) {
  return guard("crate_cuda_tssa_backward_f32",
               [&] { tssa_backward<float>(W, temp, dY, Pi, colnorm, mstat, dW, dtemp, B, N, H, p, stream); });
}

CRATE_API crate_status crate_cuda_tssa_causal_forward_f32(const float* W, const float* temp, const float* denom_bias,
                                                          float* Y, float* Pi, int64_t B, int64_t T, int64_t H,
                                                          int64_t p, int64_t Tmax, void* stream) {
  return guard("crate_cuda_tssa_causal_forward_f32",
               [&] { tssa_causal_forward<float>(W, temp, denom_bias, Y, Pi, B, T, H, p, Tmax, stream); });
}

CRATE_API crate_status crate_cuda_tssa_causal_backward_f32(const float* W, const float* temp, const float* denom_bias,
                                                           const float* dY, float* dW, float* dtemp, float* ddenom_bias,
                                                           int64_t B, int64_t T, int64_t H, int64_t p, int64_t Tmax,
                                                           void* stream) {
  return guard("crate_cuda_tssa_causal_backward_f32", [&] {
    tssa_causal_backward<float>(W, temp, denom_bias, dY, dW, dtemp, ddenom_bias, B, T, H, p, Tmax, stream);
  });
}

CRATE_API crate_status crate_cuda_tssa_forward_bf16(const uint16_t* W, const float* temp, uint16_t* Y, float* Pi,
                                                    float* colnorm, float* mstat, int64_t B, int64_t N, int64_t H,
                                                    int64_t p, void* stream) {
  return guard("crate_cuda_tssa_forward_bf16",
               [&] { tssa_forward<Bf16>(bf(W), temp, bf(Y), Pi, colnorm, mstat, B, N, H, p, stream); });
}

CRATE_API crate_status crate_cuda_tssa_backward_bf16(const uint16_t* W, const float* temp, const uint16_t* dY,
                                                     const float* Pi, const float* colnorm, const float* mstat,
                                                     uint16_t* dW, float* dtemp, int64_t B, int64_t N, int64_t H,
                                                     int64_t p, void* stream) {
  return guard("crate_cuda_tssa_backward_bf16", [&] {
    tssa_backward<Bf16>(bf(W), temp, bf(dY), Pi, colnorm, mstat, bf(dW), dtemp, B, N, H, p, stream);
  });
}

CRATE_API crate_status crate_cuda_tssa_causal_forward_bf16(const uint16_t* W, const float* temp,
                                                           const float* denom_bias, uint16_t* Y, float* Pi, int64_t B,
                                                           int64_t T, int64_t H, int64_t p, int64_t Tmax,
                                                           void* stream) {
  return guard("crate_cuda_tssa_causal_forward_bf16",
               [&] { tssa_causal_forward<Bf16>(bf(W), temp, denom_bias, bf(Y), Pi, B, T, H, p, Tmax, stream); });
}

CRATE_API crate_status crate_cuda_tssa_causal_backward_bf16(const uint16_t* W, const float* temp,
                                                            const float* denom_bias, const uint16_t* dY, uint16_t* dW,
                                                            float* dtemp, float* ddenom_bias, int64_t B, int64_t T,
                                                            int64_t H, int64_t p, int64_t Tmax, void* stream) {
  return guard("crate_cuda_tssa_causal_backward_bf16", [&] {
    tssa_causal_backward<Bf16>(bf(W), temp, denom_bias, bf(dY), bf(dW), dtemp, ddenom_bias, B, T, H, p, Tmax, stream);
  });
}

}  // extern "C"
