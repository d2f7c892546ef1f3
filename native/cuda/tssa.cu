// tssa.cu: ToST vision token-statistics self-attention (TSSA) on the GPU, forward and backward,
// the maths of native/cpu/tssa.{h,cc} (f64 statistics for f32 data, like the CPU):
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
// is NaN", found from a non-finite column sum of squares) -> CRATE_ERR_NUMERICAL. The kernels set
// device flags; the host reads them back at the end, so the forward, and the backward when it
// recomputes the statistics (Pi, colnorm or mstat NULL), synchronize the stream. The backward
// with the saved buffers does not read anything back and stays asynchronous: the buffers are the
// forward's for the same W and temp (the CPU does not re-validate them either), and the forward
// has already validated that temp. Only the non-causal TSSA is exposed by crate_cuda.h.
#include <cmath>
#include <memory>
#include <string>

#include "common.cuh"

namespace crate::cuda {
namespace {

constexpr double kNormEps = 1e-12;
constexpr double kPiEps = 1e-8;
constexpr int kThreads = 256;
constexpr int kRowsPerCol = 8;  // token slices per column CTA (block 32 x 8)
constexpr unsigned long long kNone = ~0ull;

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
template <class T>
__global__ void temp_check_kernel(const T* __restrict__ temp, int64_t H, unsigned long long* __restrict__ bad_h) {
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
    if (!isfinite(static_cast<double>(Wb[i]))) atomicMin(idx, static_cast<unsigned long long>(i));
  }
}

// ---- statistics (forward, and the backward's recompute) -----------------------------------------

// K1 (column): q = ||W[:,c]||, inv2 = 1/max(q,eps)^2; colnorm (nullable) = q; bad_b = first b
// with a non-finite sum of squares. Block (32, 8); grid (ceil(D/32), <= B) looping over b.
template <class T>
__global__ void __launch_bounds__(kThreads)
    colnorm_kernel(const T* __restrict__ W, int64_t B, int64_t N, int64_t D, double* __restrict__ q,
                   double* __restrict__ inv2, T* __restrict__ colnorm, unsigned long long* __restrict__ bad_b) {
  __shared__ double red[kRowsPerCol][32];
  for (int64_t cb = blockIdx.x; cb * 32 < D; cb += gridDim.x) {
    for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
      const int64_t c = cb * 32 + threadIdx.x;
      double acc = 0.0;
      if (c < D) {
        const T* Wb = W + b * N * D + c;
        for (int64_t n = threadIdx.y; n < N; n += kRowsPerCol) {
          const double v = static_cast<double>(Wb[n * D]);
          acc += v * v;
        }
      }
      const double tot = col_reduce(acc, red);
      if (threadIdx.y == 0 && c < D) {
        if (!isfinite(tot)) atomicMin(bad_b, static_cast<unsigned long long>(b));
        const double qq = sqrt(tot), nu = clamp_eps(qq);
        q[b * D + c] = qq;
        inv2[b * D + c] = 1.0 / (nu * nu);
        if (colnorm) colnorm[b * D + c] = static_cast<T>(qq);
      }
    }
  }
}

// K2 (token): pi[b,h,n] = softmax_h(temp[h] * sum_{c in h} W^2 inv2); PiT (nullable) = pi.
// One warp per token (b, n); pi is written as logits first, then normalised in place.
template <class T>
__global__ void __launch_bounds__(kThreads)
    head_softmax_kernel(const T* __restrict__ W, const T* __restrict__ temp, const double* __restrict__ inv2,
                        double* __restrict__ pi, T* __restrict__ PiT, int64_t B, int64_t N, int64_t H, int64_t p) {
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
        const double v = static_cast<double>(w[c]);
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
      if (PiT) PiT[(b * H + h) * N + n] = static_cast<T>(v);
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
                 double* __restrict__ m, double* __restrict__ g, double* __restrict__ sig, T* __restrict__ mstat) {
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
          const double P = pr[n], v = static_cast<double>(Wb[n * D]);
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
        if (mstat) mstat[b * D + c] = static_cast<T>(mm);
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
    Y[x] = static_cast<T>(-static_cast<double>(W[x]) * P * g);
  }
}

// ---- backward ------------------------------------------------------------------------------------

// Saved path, per (b, c): q = colnorm, m = mstat, inv2, g.
template <class T>
__global__ void __launch_bounds__(kThreads)
    load_saved_cols_kernel(const T* __restrict__ colnorm, const T* __restrict__ mstat, int64_t BD,
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
template <class T>
__global__ void __launch_bounds__(kThreads)
    load_saved_pi_kernel(const T* __restrict__ Pi, int64_t BH, int64_t N, double* __restrict__ pi,
                         double* __restrict__ sig) {
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
        const double wv = static_cast<double>(w[c]), dv = static_cast<double>(dy[c]);
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
        for (int64_t n = threadIdx.y; n < N; n += kRowsPerCol)
          acc -= static_cast<double>(dYb[n * D]) * static_cast<double>(Wb[n * D]) * pr[n];
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
    b2_token_kernel(const T* __restrict__ W, const T* __restrict__ temp, const double* __restrict__ pi,
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
        const double wv = static_cast<double>(w[c]);
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
          const double v = static_cast<double>(Wb[n * D]);
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
template <class T>
__global__ void __launch_bounds__(kThreads)
    dtau_kernel(const double* __restrict__ dtl, T* __restrict__ dtemp, int64_t B, int64_t N, int64_t H) {
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
      dtemp[h] = static_cast<T>(s);
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
    const double wv = static_cast<double>(W[x]), dv = static_cast<double>(dY[x]);
    dW[x] = static_cast<T>(wv * (2.0 * dA[bc] * P + ds2 * inv2[bc] + cc[bc]) - dv * P * g[bc]);
  }
}

// ---- host side -----------------------------------------------------------------------------------

void check_sizes(const char* fn, int64_t B, int64_t N, int64_t H, int64_t p) {
  CRATE_CUDA_REQUIRE(B >= 0 && N >= 0 && H >= 0 && p >= 0, fn,
                     "sizes must be >= 0 (got B=" + std::to_string(B) + ", N=" + std::to_string(N) +
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

// Flags: [bad_h (temp) | bad_b (W column sums) | idx (locate)], 0xFF.. = none.
struct Flags {
  std::unique_ptr<Scratch> mem;
  unsigned long long* words = nullptr;
  explicit Flags(cudaStream_t st) {
    mem = std::make_unique<Scratch>(3 * sizeof(unsigned long long), st);
    words = mem->as<unsigned long long>();
    check(cudaMemsetAsync(words, 0xFF, 3 * sizeof(unsigned long long), st), "tssa: memset flags");
  }
};

template <class T>
double read_elem(const T* p, cudaStream_t st) {
  T v;
  check(cudaMemcpyAsync(&v, p, sizeof(T), cudaMemcpyDeviceToHost, st), "tssa: read back");
  check(cudaStreamSynchronize(st), "tssa: synchronize");
  return static_cast<double>(v);
}

// Reads the flags (synchronizes) and throws like the CPU: temp first, then the first bad b.
template <class T>
void raise_flags(const char* fn, const Flags& fl, const T* W, const T* temp, int64_t N, int64_t D, cudaStream_t st) {
  unsigned long long w[2] = {kNone, kNone};
  check(cudaMemcpyAsync(w, fl.words, sizeof(w), cudaMemcpyDeviceToHost, st), "tssa: read flags");
  check(cudaStreamSynchronize(st), "tssa: synchronize");
  if (w[0] != kNone) {
    const double v = read_elem(temp + w[0], st);
    throw Error(CRATE_ERR_NUMERICAL, std::string(fn) + ": temp[" + std::to_string(w[0]) + "] is " +
                                         (std::isnan(v) ? "NaN" : "Inf"));
  }
  if (w[1] == kNone) return;
  const int64_t b = static_cast<int64_t>(w[1]);
  const T* Wb = W + b * N * D;
  locate_kernel<T><<<grid_for(N * D, kThreads, 4096), kThreads, 0, st>>>(Wb, N * D, fl.words + 2);
  check_launch("tssa locate_kernel", st);
  unsigned long long idx = kNone;
  check(cudaMemcpyAsync(&idx, fl.words + 2, sizeof(idx), cudaMemcpyDeviceToHost, st), "tssa: read flags");
  check(cudaStreamSynchronize(st), "tssa: synchronize");
  if (idx == kNone)
    throw Error(CRATE_ERR_NUMERICAL, std::string(fn) + ": sum of W[b=" + std::to_string(b) + "]² over n overflows");
  const double v = read_elem(Wb + idx, st);
  const int64_t n = static_cast<int64_t>(idx) / D, c = static_cast<int64_t>(idx) % D;
  throw Error(CRATE_ERR_NUMERICAL, std::string(fn) + ": W[b=" + std::to_string(b) + ", n=" + std::to_string(n) +
                                       ", c=" + std::to_string(c) + "] is " + (std::isnan(v) ? "NaN" : "Inf"));
}

// K1..K3: q, inv2, pi, m, g (nullable), sig, plus the forward's optional outputs.
template <class T>
void stats(const T* W, const T* temp, int64_t B, int64_t N, int64_t H, int64_t p, double* q, double* inv2, double* pi,
           double* m, double* g, double* sig, T* PiT, T* colnorm, T* mstat, const Flags& fl, cudaStream_t st) {
  const int64_t D = H * p;
  temp_check_kernel<T><<<1, kThreads, 0, st>>>(temp, H, fl.words);
  check_launch("tssa temp_check_kernel", st);
  if (D > 0) {
    colnorm_kernel<T><<<col_grid(D, B), dim3(32, kRowsPerCol), 0, st>>>(W, B, N, D, q, inv2, colnorm, fl.words + 1);
    check_launch("tssa colnorm_kernel", st);
  }
  head_softmax_kernel<T><<<warp_grid(B * N), kThreads, 0, st>>>(W, temp, inv2, pi, PiT, B, N, H, p);
  check_launch("tssa head_softmax_kernel", st);
  if (D > 0) {
    mstat_kernel<T><<<col_grid(D, B), dim3(32, kRowsPerCol), 0, st>>>(W, pi, B, N, H, p, m, g, sig, mstat);
    check_launch("tssa mstat_kernel", st);
  }
}

template <class T>
void tssa_forward(const T* W, const T* temp, T* Y, T* Pi, T* colnorm, T* mstat, int64_t B, int64_t N, int64_t H,
                  int64_t p, void* stream) {
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
  raise_flags<T>(fn, fl, W, temp, N, D, st);
}

template <class T>
void tssa_backward(const T* W, const T* temp, const T* dY, const T* Pi, const T* colnorm, const T* mstat, T* dW,
                   T* dtemp, int64_t B, int64_t N, int64_t H, int64_t p, void* stream) {
  const char* fn = "tssa_backward";
  check_sizes(fn, B, N, H, p);
  const int64_t D = H * p;
  cudaStream_t st = nullptr;
  if (dtemp && H > 0) {
    st = resolve_stream(stream);
    check(cudaMemsetAsync(dtemp, 0, static_cast<size_t>(H) * sizeof(T), st), "tssa_backward: zero dtemp");
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
    load_saved_cols_kernel<T><<<grid_for(B * D, kThreads), kThreads, 0, st>>>(colnorm, mstat, B * D, q, inv2, m, g);
    check_launch("tssa load_saved_cols_kernel", st);
    load_saved_pi_kernel<T><<<warp_grid(B * H), kThreads, 0, st>>>(Pi, B * H, N, pi, sig);
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
    dtau_kernel<T><<<cap(H, 1LL << 20), kThreads, 0, st>>>(dpi, dtemp, B, N, H);
    check_launch("tssa dtau_kernel", st);
  }
  b3_kernel<T><<<grid_for(B * N * D, kThreads), kThreads, 0, st>>>(W, dY, pi, s, dA, inv2, cc, g, dW, B, N, H, p);
  check_launch("tssa b3_kernel", st);
  if (fl) raise_flags<T>(fn, *fl, W, temp, N, D, st);
}

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

CRATE_API crate_status crate_cuda_tssa_backward_f32(const float* W, const float* temp, const float* dY,
                                                    const float* Pi, const float* colnorm, const float* mstat,
                                                    float* dW, float* dtemp, int64_t B, int64_t N, int64_t H,
                                                    int64_t p, void* stream) {
  return guard("crate_cuda_tssa_backward_f32",
               [&] { tssa_backward<float>(W, temp, dY, Pi, colnorm, mstat, dW, dtemp, B, N, H, p, stream); });
}

}  // extern "C"
