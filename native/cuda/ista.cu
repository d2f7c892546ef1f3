// ista.cu: the CRATE ISTA-step family on the GPU, forward and backward (f32), the same algorithm
// and branch structure as native/cpu/ista.cc so the results agree to f32 rounding. Every op is a
// chain of GEMMs (gemm.cu's internal entry: cuBLASLt when loaded, else the own kernels; plain f32,
// allow_tf32 = false, since the C ABI promises the CPU result to f32 rounding) with one fused
// memory-bound epilogue pass after each GEMM that needs one (float4 when every pointer it touches is
// 16-byte aligned). Scratch comes from the caching allocator (Scratch, stream-ordered).
//
// CRATE (complete W, d x d):
//   forward, T >= d:  K = I + eta (W - W^T W)            (one GEMM W^T W into scratch + form_k)
//                     Z = Y K                             (one GEMM into Z)
//                     Z = ReLU(Z - eta lambda)            (fused in-place epilogue, float4)
//   forward, T <  d:  U = Y - Y W^T,  Z = ReLU(Y + eta U W - eta lambda)
//                     (few tokens: forming W^T W, d^3, costs more than it saves, as on the CPU)
//   backward:         G = dZ o [Z > 0]
//                     dY = G K^T                          (T >= d)
//                     dY = G + eta (V - V W), V = G W^T   (T <  d)
//                     dM = eta Y^T G,  dW = dM - W (dM + dM^T)
//
// CRATE-alpha overcomplete (D, D1 (d, m)), each line one GEMM + its epilogue:
//   forward:   A1 = ReLU(eta Y D - eta lambda)            (T, m)   epilogue: threshold + ReLU
//              R  = A1 D^T - Y                            (T, d)   epilogue: residual
//              A2 = ReLU(A1 - eta R D - eta lambda)       (T, m)   epilogue: step + threshold + ReLU
//                   (A1 and A2 both unsaved: A2 overwrites A1's scratch through the GEMM's beta = 1,
//                    as on the CPU; otherwise the epilogue adds A1)
//              out = A2 D1^T                              (T, d)   no epilogue
//   backward:  dD1 = dOut^T A2                            (only when dD1 is requested)
//              G2 = (dOut D1) o [A2 > 0]                  epilogue: ReLU mask in place
//              E  = G2 D^T
//              dD = -eta R^T G2                           (before G2 is overwritten below)
//              G1 = (G2 - eta E D) o [A1 > 0], and G2 += G1 in the same pass (one epilogue
//                   instead of the CPU's two: the mask product and the later X += Y2)
//              dD += -eta E^T A1 + eta Y^T G1             (the CPU's accumulation order)
//              dY = eta (G1 + G2) D^T
// Causal-CRATE tied (W (m, d), decoder = W), the same shape with D = W^T:
//   forward:   A0 = ReLU(eta Y W^T - eta lambda),  R = Y - A0 W,  A1 = ReLU(A0 + eta R W^T - eta lambda),
//              out = A1 W
//   backward:  G1 = (dOut W^T) o [A1 > 0],  E = G1 W,  dW = A1^T dOut + eta G1^T R,
//              G0 = (G1 - eta E W^T) o [A0 > 0] fused with G1 += G0,
//              dW += -eta A0^T E + eta G0^T Y,  dY = eta (G1 + G0) W
//
// Napkin math for the overcomplete/tied ops (T tokens, d width, m dictionary atoms, typically 4d):
//   FLOPs are the GEMMs, 2 T d m each: forward 4 GEMMs = 8 T d m; backward 8 (overcomplete, with
//   dD1) or 9 (tied) = 16-18 T d m. Epilogue bytes (f32): forward 8 T m (A1: read + write) +
//   12 T d (R: read R and Y, write R) + 12 T m (A2: read A2 and A1, write A2; 8 T m in place)
//   = 20 T m + 12 T d; backward 12 T m (mask: read G and A, write G) + 20 T m (fused step: read
//   G1, G2, A, write G1, G2) = 32 T m (the CPU's three passes would move 36 T m).
//   E.g. CRATE-alpha-B, d = 768, m = 3072, T = 8 x 197 = 1576: forward 29.7 GFLOP (~0.6 ms at
//   ~50 TFLOP/s plain f32 on an H100) vs 111 MB of epilogue traffic (~0.04 ms at ~3 TB/s);
//   backward 59 GFLOP (~1.2 ms) vs 155 MB (~0.05 ms): the epilogues add ~5%, the GEMMs decide.
//
// Epilogue choice: cuBLAS(Lt) has no ReLU-with-shift epilogue we can rely on in every backend
// (the own tensor-core GEMM is the fallback), so the GEMM writes its output and one memory-bound
// in-place pass applies the residual / step / threshold / ReLU / mask (one read + one write of the
// output plus the operand it adds). ReLU keeps NaN like the CPU (x < 0 ? 0 : x), so a NaN in an
// input propagates to the outputs; the masks are `a > 0 ? g : 0`, exactly the CPU's.
//
// bf16 storage (the *_bf16 entries; every tensor bf16, dictionaries included: a pure-bf16 model;
// f32 dictionaries with bf16 activations are not offered, the TS layer refuses mixed dtypes): the
// same GEMM chains as bf16 tensor-core GEMMs (gemm_bf16, f32 accumulation) into an f32 scratch,
// then one f32 epilogue pass that rounds once to bf16 on store; GEMMs with no epilogue (out, E,
// dY, dD1) write bf16 directly (gemm_bf16_bf16). Differences from the f32 structure: the plain
// ISTA's K is used as I + K' (K' = eta (W - W^T W) in bf16, the identity added in f32 by the
// epilogue: a bf16 K would lose 2^-8 on its diagonal); every GEMM operand that is an intermediate
// (U, V, Sym, E, the iterates, R, G*) is stored rounded to bf16, and the saved iterates are
// exactly those rounded values; parameter gradients (dW, dD) and dM accumulate their GEMMs in an
// f32 scratch and are rounded once; the second iterate cannot reuse the first's buffer through
// the GEMM's beta = 1 (the accumulator is f32), so the epilogue adds it (in place when unsaved).
// Epilogues are scalar (2-byte loads): memory-bound passes, not tuned.
#include <cuda_bf16.h>

#include <memory>
#include <string>

#include "common.cuh"

namespace crate::cuda {
namespace {

constexpr int kBlock = 256;

__device__ __forceinline__ float relu_nan(float x) { return x < 0.f ? 0.f : x; }

__host__ __device__ inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Z = ReLU(Z - thr) in place.
__global__ void __launch_bounds__(kBlock) relu_shift_kernel(float* __restrict__ Z, int64_t n, float thr, int vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec) {
    const int64_t n4 = n >> 2;
    float4* Z4 = reinterpret_cast<float4*>(Z);
    for (int64_t i = i0; i < n4; i += stride) {
      float4 v = Z4[i];
      v.x = relu_nan(v.x - thr);
      v.y = relu_nan(v.y - thr);
      v.z = relu_nan(v.z - thr);
      v.w = relu_nan(v.w - thr);
      Z4[i] = v;
    }
    tail = n4 << 2;
  }
  for (int64_t i = tail + i0; i < n; i += stride) Z[i] = relu_nan(Z[i] - thr);
}

// Z = ReLU(Z + Y - thr) in place (small-T forward).
__global__ void __launch_bounds__(kBlock)
    relu_add_shift_kernel(float* __restrict__ Z, const float* __restrict__ Y, int64_t n, float thr, int vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec) {
    const int64_t n4 = n >> 2;
    float4* Z4 = reinterpret_cast<float4*>(Z);
    const float4* Y4 = reinterpret_cast<const float4*>(Y);
    for (int64_t i = i0; i < n4; i += stride) {
      float4 v = Z4[i];
      const float4 y = Y4[i];
      v.x = relu_nan(v.x + y.x - thr);
      v.y = relu_nan(v.y + y.y - thr);
      v.z = relu_nan(v.z + y.z - thr);
      v.w = relu_nan(v.w + y.w - thr);
      Z4[i] = v;
    }
    tail = n4 << 2;
  }
  for (int64_t i = tail + i0; i < n; i += stride) Z[i] = relu_nan(Z[i] + Y[i] - thr);
}

// dY += G + eta V  (small-T backward; the CPU's `dY[x] += G[x] + eta * V[x]`).
__global__ void __launch_bounds__(kBlock) dy_small_kernel(float* __restrict__ dY, const float* __restrict__ G,
                                                          const float* __restrict__ V, float eta, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dY[i] += G[i] + eta * V[i];
}

// U += Y (small-T forward: U = -Y W^T on entry).
__global__ void __launch_bounds__(kBlock)
    add_inplace_kernel(float* __restrict__ U, const float* __restrict__ Y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) U[i] += Y[i];
}

// K = -eta W^T W on entry; K[x] += eta W[x] + [row == col]  (exactly the CPU's form_K epilogue).
__global__ void __launch_bounds__(kBlock)
    form_k_kernel(float* __restrict__ K, const float* __restrict__ W, int64_t d, float eta) {
  const int64_t n = d * d;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < n; x += stride)
    K[x] += eta * W[x] + ((x / d) == (x % d) ? 1.f : 0.f);
}

// G = Z > 0 ? dZ : 0.
__global__ void __launch_bounds__(kBlock) relu_mask_kernel(float* __restrict__ G, const float* __restrict__ Z,
                                                           const float* __restrict__ dZ, int64_t n, int vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec) {
    const int64_t n4 = n >> 2;
    float4* G4 = reinterpret_cast<float4*>(G);
    const float4* Z4 = reinterpret_cast<const float4*>(Z);
    const float4* D4 = reinterpret_cast<const float4*>(dZ);
    for (int64_t i = i0; i < n4; i += stride) {
      const float4 z = Z4[i], g = D4[i];
      float4 o;
      o.x = z.x > 0.f ? g.x : 0.f;
      o.y = z.y > 0.f ? g.y : 0.f;
      o.z = z.z > 0.f ? g.z : 0.f;
      o.w = z.w > 0.f ? g.w : 0.f;
      G4[i] = o;
    }
    tail = n4 << 2;
  }
  for (int64_t i = tail + i0; i < n; i += stride) G[i] = Z[i] > 0.f ? dZ[i] : 0.f;
}

__device__ __forceinline__ void put(float* p, float v) { *p = v; }
__device__ __forceinline__ void put(uint16_t* p, float v) { *p = __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

// Sym = dM + dM^T and dW = dM (d x d; dW may be NULL), through a 32 x 33 shared tile so both reads
// coalesce. Block (32, 8); grid (ceil(d/32), ceil(d/32)) tiles, looped when d/32 exceeds the grid
// limit. TS: float, or uint16_t (bf16 Sym, rounded once).
template <class TS>
__global__ void __launch_bounds__(kBlock)
    sym_kernel(const float* __restrict__ dM, TS* __restrict__ Sym, float* __restrict__ dW, int64_t d) {
  __shared__ float tile[32][33];
  const int64_t nt = (d + 31) / 32;
  for (int64_t tr = blockIdx.y; tr < nt; tr += gridDim.y) {
    for (int64_t tc = blockIdx.x; tc < nt; tc += gridDim.x) {
      // tile[y][x] = dM[tc*32 + y][tr*32 + x]  (the transposed block)
      for (int y = threadIdx.y; y < 32; y += blockDim.y) {
        const int64_t i = tc * 32 + y, j = tr * 32 + threadIdx.x;
        tile[y][threadIdx.x] = (i < d && j < d) ? dM[i * d + j] : 0.f;
      }
      __syncthreads();
      for (int y = threadIdx.y; y < 32; y += blockDim.y) {
        const int64_t i = tr * 32 + y, j = tc * 32 + threadIdx.x;
        if (i < d && j < d) {
          const float v = dM[i * d + j];
          put(&Sym[i * d + j], v + tile[threadIdx.x][y]);  // dM[i][j] + dM[j][i]
          if (dW) dW[i * d + j] = v;
        }
      }
      __syncthreads();
    }
  }
}

// R = R + sign Y in place (the residual epilogue: sign = -1 for CRATE-alpha's R = A1 D^T - Y,
// +1 for the tied R = Y - A0 W; -1 * y is exact, so this is the CPU's `r -= Y` / `r += Y`).
__global__ void __launch_bounds__(kBlock)
    residual_kernel(float* __restrict__ R, const float* __restrict__ Y, int64_t n, float sign, int vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec) {
    const int64_t n4 = n >> 2;
    float4* R4 = reinterpret_cast<float4*>(R);
    const float4* Y4 = reinterpret_cast<const float4*>(Y);
    for (int64_t i = i0; i < n4; i += stride) {
      float4 r = R4[i];
      const float4 y = Y4[i];
      r.x += sign * y.x;
      r.y += sign * y.y;
      r.z += sign * y.z;
      r.w += sign * y.w;
      R4[i] = r;
    }
    tail = n4 << 2;
  }
  for (int64_t i = tail + i0; i < n; i += stride) R[i] += sign * Y[i];
}

// G = A > 0 ? G : 0 in place (the ReLU mask product of the backward: G holds the GEMM's output).
__global__ void __launch_bounds__(kBlock)
    mask_inplace_kernel(float* __restrict__ G, const float* __restrict__ A, int64_t n, int vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec) {
    const int64_t n4 = n >> 2;
    float4* G4 = reinterpret_cast<float4*>(G);
    const float4* A4 = reinterpret_cast<const float4*>(A);
    for (int64_t i = i0; i < n4; i += stride) {
      float4 g = G4[i];
      const float4 a = A4[i];
      g.x = a.x > 0.f ? g.x : 0.f;
      g.y = a.y > 0.f ? g.y : 0.f;
      g.z = a.z > 0.f ? g.z : 0.f;
      g.w = a.w > 0.f ? g.w : 0.f;
      G4[i] = g;
    }
    tail = n4 << 2;
  }
  for (int64_t i = tail + i0; i < n; i += stride) G[i] = A[i] > 0.f ? G[i] : 0.f;
}

// The backward's inner ISTA step, both updates in one pass:
//   Gin = A > 0 ? Gin + Gout : 0        (Gin = -eta E D on entry; the CPU's `Y2 = A1 > 0 ? Y2 + X : 0`)
//   Gout = Gout + Gin  when sum != 0    (the CPU's later `X += Y2`, the same f32 sum)
__global__ void __launch_bounds__(kBlock) step_mask_kernel(float* __restrict__ Gin, float* __restrict__ Gout,
                                                           const float* __restrict__ A, int64_t n, int sum, int vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t i0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec) {
    const int64_t n4 = n >> 2;
    float4* I4 = reinterpret_cast<float4*>(Gin);
    float4* O4 = reinterpret_cast<float4*>(Gout);
    const float4* A4 = reinterpret_cast<const float4*>(A);
    for (int64_t i = i0; i < n4; i += stride) {
      float4 g = I4[i], o = O4[i];
      const float4 a = A4[i];
      g.x = a.x > 0.f ? g.x + o.x : 0.f;
      g.y = a.y > 0.f ? g.y + o.y : 0.f;
      g.z = a.z > 0.f ? g.z + o.z : 0.f;
      g.w = a.w > 0.f ? g.w + o.w : 0.f;
      I4[i] = g;
      if (sum) {
        o.x += g.x;
        o.y += g.y;
        o.z += g.z;
        o.w += g.w;
        O4[i] = o;
      }
    }
    tail = n4 << 2;
  }
  for (int64_t i = tail + i0; i < n; i += stride) {
    const float o = Gout[i];
    const float g = A[i] > 0.f ? Gin[i] + o : 0.f;
    Gin[i] = g;
    if (sum) Gout[i] = o + g;
  }
}

void check_dims(const char* fn, int64_t T, int64_t d) {
  CRATE_CUDA_REQUIRE(T >= 0, fn, "T must be >= 0, got " + std::to_string(T));
  CRATE_CUDA_REQUIRE(d >= 1, fn, "d must be >= 1, got " + std::to_string(d));
  CRATE_CUDA_REQUIRE(T <= (int64_t(1) << 40), fn, "T too large, got " + std::to_string(T));
  CRATE_CUDA_REQUIRE(d <= (int64_t(1) << 40), fn, "d too large, got " + std::to_string(d));
  CRATE_CUDA_REQUIRE((double)T * (double)d <= 1e15, fn,
                     "tensor too large (" + std::to_string(T) + " x " + std::to_string(d) + ")");
  CRATE_CUDA_REQUIRE((double)d * (double)d <= 1e15, fn,
                     "tensor too large (" + std::to_string(d) + " x " + std::to_string(d) + ")");
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc, cudaStream_t st) {
  gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1, 0, 0, 0, /*allow_tf32=*/false, st);
}

// K = I + eta (W - W^T W) into K (d x d).
void form_k(const float* W, float* K, int64_t d, float eta, cudaStream_t st) {
  gemm(true, false, d, d, d, -eta, W, d, W, d, 0.f, K, d, st);
  form_k_kernel<<<grid_for(d * d, kBlock), kBlock, 0, st>>>(K, W, d, eta);
  check_launch("ista form_k_kernel", st);
}

// ---- epilogue launchers (float4 when every pointer is 16-byte aligned)
unsigned ew_grid(int64_t n, int vec) { return grid_for(vec ? (n + 3) / 4 : n, kBlock); }

// Z = ReLU(Z - thr)  (n elements)
void relu_shift(float* Z, int64_t n, float thr, cudaStream_t st) {
  const int vec = aligned16(Z) ? 1 : 0;
  relu_shift_kernel<<<ew_grid(n, vec), kBlock, 0, st>>>(Z, n, thr, vec);
  check_launch("ista relu_shift_kernel", st);
}

// Z = ReLU(Z + Y - thr)
void relu_add_shift(float* Z, const float* Y, int64_t n, float thr, cudaStream_t st) {
  const int vec = aligned16(Z) && aligned16(Y) ? 1 : 0;
  relu_add_shift_kernel<<<ew_grid(n, vec), kBlock, 0, st>>>(Z, Y, n, thr, vec);
  check_launch("ista relu_add_shift_kernel", st);
}

// R = R + sign Y
void residual(float* R, const float* Y, int64_t n, float sign, cudaStream_t st) {
  const int vec = aligned16(R) && aligned16(Y) ? 1 : 0;
  residual_kernel<<<ew_grid(n, vec), kBlock, 0, st>>>(R, Y, n, sign, vec);
  check_launch("ista residual_kernel", st);
}

// G = A > 0 ? G : 0
void mask_inplace(float* G, const float* A, int64_t n, cudaStream_t st) {
  const int vec = aligned16(G) && aligned16(A) ? 1 : 0;
  mask_inplace_kernel<<<ew_grid(n, vec), kBlock, 0, st>>>(G, A, n, vec);
  check_launch("ista mask_inplace_kernel", st);
}

// Gin = A > 0 ? Gin + Gout : 0, then Gout += Gin when sum
void step_mask(float* Gin, float* Gout, const float* A, int64_t n, bool sum, cudaStream_t st) {
  const int vec = aligned16(Gin) && aligned16(Gout) && aligned16(A) ? 1 : 0;
  step_mask_kernel<<<ew_grid(n, vec), kBlock, 0, st>>>(Gin, Gout, A, n, sum ? 1 : 0, vec);
  check_launch("ista step_mask_kernel", st);
}

// Device memset of n elements (no-op for a null pointer or n = 0): the CPU's zero() for T = 0.
// E: float, or u16 (bf16 bits).
template <class E>
void zero(E* p, int64_t n, const char* what, cudaStream_t st) {
  if (p && n > 0) check(cudaMemsetAsync(p, 0, static_cast<size_t>(n) * sizeof(E), st), what);
}

// The CPU's check_tdm: T >= 0, d, m >= 1, each at most 2^40, T m and d m at most 1e15.
void check_tdm(const char* fn, int64_t T, int64_t d, int64_t m) {
  auto dim = [&](const char* name, int64_t v, int64_t minv) {
    CRATE_CUDA_REQUIRE(v >= minv, fn,
                       std::string(name) + " must be >= " + std::to_string(minv) + ", got " + std::to_string(v));
    CRATE_CUDA_REQUIRE(v <= (int64_t(1) << 40), fn, std::string(name) + " too large, got " + std::to_string(v));
  };
  dim("T", T, 0);
  dim("d", d, 1);
  dim("m", m, 1);
  auto prod = [&](int64_t a, int64_t b) {
    CRATE_CUDA_REQUIRE((double)a * (double)b <= 1e15, fn,
                       "tensor too large (" + std::to_string(a) + " x " + std::to_string(b) + ")");
  };
  prod(T, m);
  prod(d, m);
}

// Scratch of n elements of E, or none when not needed.
template <class E>
std::unique_ptr<Scratch> scratch_if(bool need, int64_t n, cudaStream_t st) {
  return need ? std::make_unique<Scratch>(static_cast<size_t>(n) * sizeof(E), st) : nullptr;
}

// ------------------------------------------------------------------ bf16 storage (the *_bf16 entries)
// Every GEMM takes bf16 operands (tensor cores, f32 accumulation) and writes either an f32 scratch
// that one epilogue pass turns into the bf16 result (f32 math, one rounding on store), or, where
// no epilogue follows, the bf16 result directly (gemm_bf16_bf16). f32 accumulators that several
// GEMMs add into (dW, dD, dM) stay f32 until the final rounding.

__device__ __forceinline__ float ldf(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ldf(const uint16_t* p, int64_t i) {
  return __uint_as_float(static_cast<uint32_t>(p[i]) << 16);
}
__device__ __forceinline__ uint16_t rnd(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }

enum Ep { kEpReluShift, kEpReluAddShift, kEpAxpy, kEpMask, kEpCopy };

// out = bf16(f(acc, add)): kEpReluShift ReLU(acc - thr); kEpReluAddShift ReLU(acc + add - thr);
// kEpAxpy acc + a add; kEpMask add > 0 ? acc : 0; kEpCopy acc. `out` may alias `add` (each
// element is read and written by one thread), so neither is __restrict__.
template <int Op, class TA>
__global__ void __launch_bounds__(kBlock)
    ep_bf16_kernel(const TA* __restrict__ acc, const uint16_t* add, uint16_t* out, int64_t n, float a, float thr) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = ldf(acc, i);
    float r;
    if constexpr (Op == kEpReluShift)
      r = relu_nan(x - thr);
    else if constexpr (Op == kEpReluAddShift)
      r = relu_nan(x + ldf(add, i) - thr);
    else if constexpr (Op == kEpAxpy)
      r = x + a * ldf(add, i);
    else if constexpr (Op == kEpMask)
      r = ldf(add, i) > 0.f ? x : 0.f;
    else
      r = x;
    out[i] = rnd(r);
  }
}

template <int Op, class TA>
void ep16(const TA* acc, const uint16_t* add, uint16_t* out, int64_t n, float a, float thr, cudaStream_t st) {
  ep_bf16_kernel<Op, TA><<<grid_for(n, kBlock), kBlock, 0, st>>>(acc, add, out, n, a, thr);
  check_launch("ista ep_bf16_kernel", st);
}

// dY = bf16(acc + (G + eta V))  (the small-T backward; acc = -eta V W, V the f32 G W^T).
__global__ void __launch_bounds__(kBlock)
    dy_small_bf16_kernel(const float* __restrict__ acc, const uint16_t* __restrict__ G, const float* __restrict__ V,
                         uint16_t* __restrict__ dY, float eta, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dY[i] = rnd(acc[i] + (ldf(G, i) + eta * V[i]));
}

// The backward's inner step with bf16 storage: g = A > 0 ? acc + Gout : 0 (acc = -eta E D, f32),
// Gin = bf16(g), and Gout = bf16(Gout + g) when sum (g unrounded: one rounding per stored value).
__global__ void __launch_bounds__(kBlock)
    step_mask_bf16_kernel(const float* __restrict__ acc, uint16_t* __restrict__ Gin, uint16_t* __restrict__ Gout,
                          const uint16_t* __restrict__ A, int64_t n, int sum) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float o = ldf(Gout, i);
    const float g = ldf(A, i) > 0.f ? acc[i] + o : 0.f;
    Gin[i] = rnd(g);
    if (sum) Gout[i] = rnd(o + g);
  }
}

using u16 = uint16_t;

// C (f32) = alpha op(A) op(B) + beta C, bf16 operands.
void gemm16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const u16* A, int64_t lda, const u16* B,
            int64_t ldb, float beta, float* C, int64_t ldc, cudaStream_t st) {
  gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1, 0, 0, 0, st);
}
// C (bf16) = bf16(alpha op(A) op(B)), bf16 operands, f32 accumulation, one rounding.
void gemm16o(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const u16* A, int64_t lda, const u16* B,
             int64_t ldb, u16* C, int64_t ldc, cudaStream_t st) {
  gemm_bf16_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, 0.f, C, ldc, 1, 0, 0, 0, st);
}

size_t f32_bytes(int64_t n) { return static_cast<size_t>(n) * sizeof(float); }
size_t bf16_bytes(int64_t n) { return static_cast<size_t>(n) * sizeof(u16); }

// K' = bf16(eta (W - W^T W)) (d x d): K = I + K', so Y K = Y + Y K' (the identity is applied in
// f32 by the epilogue instead of being rounded into a bf16 K, whose diagonal would lose 2^-8).
void form_kp16(const u16* W, u16* Kp, int64_t d, float eta, cudaStream_t st) {
  Scratch ka(f32_bytes(d * d), st);
  gemm16(true, false, d, d, d, -eta, W, d, W, d, 0.f, ka.as<float>(), d, st);  // -eta W^T W
  ep16<kEpAxpy>(ka.as<float>(), W, Kp, d * d, eta, 0.f, st);                   // + eta W
}

// ------------------------------------------------------------------ prologues (f32 and bf16 entries)
// *_forward_args: the argument checks, false when T = 0. *_backward_args (E: float or u16): the
// checks, the stream (into *st) and the T = 0 case (gradients zeroed), false when nothing is left.

bool forward_args(const void* Y, const void* W, const void* Z, int64_t T, int64_t d) {
  const char* fn = "ista_forward";
  check_dims(fn, T, d);
  if (T == 0) return false;
  require_nonnull(fn, {{"Y", Y}, {"W", W}, {"Z", Z}});
  return true;
}

template <class E>
bool backward_args(const E* Y, const E* W, const E* Z, const E* dZ, const E* dY, E* dW, int64_t T, int64_t d,
                   void* stream, cudaStream_t* st) {
  const char* fn = "ista_backward";
  check_dims(fn, T, d);
  if (!dY && !dW) return false;
  require_nonnull(fn, {{"W", W}});
  *st = resolve_stream(stream);
  if (T == 0) {
    zero(dW, d * d, "ista_backward memset dW", *st);
    return false;
  }
  require_nonnull(fn, {{"Y", Y}, {"Z", Z}, {"dZ", dZ}});
  return true;
}

bool overcomplete_forward_args(const void* Y, const void* D, const void* D1, const void* out, int64_t T, int64_t d,
                               int64_t m) {
  const char* fn = "ista_overcomplete_forward";
  check_tdm(fn, T, d, m);
  if (T == 0) return false;
  require_nonnull(fn, {{"Y", Y}, {"D", D}, {"D1", D1}, {"out", out}});
  return true;
}

template <class E>
bool overcomplete_backward_args(const E* Y, const E* D, const E* D1, const E* A1, const E* A2, const E* R,
                                const E* dOut, const E* dY, E* dD, E* dD1, int64_t T, int64_t d, int64_t m,
                                void* stream, cudaStream_t* st) {
  const char* fn = "ista_overcomplete_backward";
  check_tdm(fn, T, d, m);
  if (!dY && !dD && !dD1) return false;
  *st = resolve_stream(stream);
  if (T == 0) {
    zero(dD, d * m, "ista_overcomplete_backward memset dD", *st);
    zero(dD1, d * m, "ista_overcomplete_backward memset dD1", *st);
    return false;
  }
  require_nonnull(fn, {{"dOut", dOut}, {"A2", A2}});
  if (dY || dD) {
    require_nonnull(fn, {{"Y", Y}, {"D", D}, {"D1", D1}, {"A1", A1}, {"R", R}});
  }
  return true;
}

bool tied_forward_args(const void* Y, const void* W, const void* out, int64_t T, int64_t d, int64_t m) {
  const char* fn = "ista_tied_forward";
  check_tdm(fn, T, d, m);
  if (T == 0) return false;
  require_nonnull(fn, {{"Y", Y}, {"W", W}, {"out", out}});
  return true;
}

template <class E>
bool tied_backward_args(const E* Y, const E* W, const E* A0, const E* A1, const E* R, const E* dOut, const E* dY, E* dW,
                        int64_t T, int64_t d, int64_t m, void* stream, cudaStream_t* st) {
  const char* fn = "ista_tied_backward";
  check_tdm(fn, T, d, m);
  if (!dY && !dW) return false;
  *st = resolve_stream(stream);
  if (T == 0) {
    zero(dW, m * d, "ista_tied_backward memset dW", *st);
    return false;
  }
  require_nonnull(fn, {{"Y", Y}, {"W", W}, {"A0", A0}, {"A1", A1}, {"R", R}, {"dOut", dOut}});
  return true;
}

// The iterates of the overcomplete / tied forward: the caller's buffers, else scratch; two unsaved
// (T, m) iterates share one (the second overwrites the first, as on the CPU).
template <class E>
struct Iterates {
  std::unique_ptr<Scratch> slot_a, slot_r;
  E *first, *second, *r;  // (T, m), (T, m) (may be `first`), (T, d)
  Iterates(E* A, E* B, E* R, int64_t ntm, int64_t ntd, cudaStream_t st)
      : slot_a(scratch_if<E>(!A || !B, ntm, st)),
        slot_r(scratch_if<E>(!R, ntd, st)),
        first(A ? A : slot_a->template as<E>()),
        second(B ? B : slot_a->template as<E>()),
        r(R ? R : slot_r->template as<E>()) {}
};

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;

extern "C" {

CRATE_API crate_status crate_cuda_ista_forward_f32(const float* Y, const float* W, float* Z, int64_t T, int64_t d,
                                                   float eta, float lambd, void* stream) {
  return guard("crate_cuda_ista_forward_f32", [&] {
    if (!forward_args(Y, W, Z, T, d)) return;
    cudaStream_t st = resolve_stream(stream);
    const float thr = eta * lambd;
    const int64_t n = T * d;
    if (T >= d) {
      Scratch ks(static_cast<size_t>(d * d) * sizeof(float), st);
      float* K = ks.as<float>();
      form_k(W, K, d, eta, st);
      gemm(false, false, T, d, d, 1.f, Y, d, K, d, 0.f, Z, d, st);  // Z = Y K
      relu_shift(Z, n, thr, st);
    } else {
      Scratch us(static_cast<size_t>(n) * sizeof(float), st);
      float* U = us.as<float>();
      gemm(false, true, T, d, d, -1.f, Y, d, W, d, 0.f, U, d, st);          // U = -Y W^T
      add_inplace_kernel<<<grid_for(n, kBlock), kBlock, 0, st>>>(U, Y, n);  // U = Y - Y W^T
      check_launch("ista add_inplace_kernel", st);
      gemm(false, false, T, d, d, eta, U, d, W, d, 0.f, Z, d, st);  // Z = eta U W
      relu_add_shift(Z, Y, n, thr, st);
    }
  });
}

CRATE_API crate_status crate_cuda_ista_backward_f32(const float* Y, const float* W, const float* Z, const float* dZ,
                                                    float* dY, float* dW, int64_t T, int64_t d, float eta,
                                                    void* stream) {
  return guard("crate_cuda_ista_backward_f32", [&] {
    cudaStream_t st = nullptr;
    if (!backward_args(Y, W, Z, dZ, dY, dW, T, d, stream, &st)) return;
    const int64_t n = T * d;
    Scratch gs(static_cast<size_t>(n) * sizeof(float), st);
    float* G = gs.as<float>();
    {
      const int vec = aligned16(G) && aligned16(Z) && aligned16(dZ) ? 1 : 0;
      relu_mask_kernel<<<grid_for(vec ? (n + 3) / 4 : n, kBlock), kBlock, 0, st>>>(G, Z, dZ, n, vec);
      check_launch("ista relu_mask_kernel", st);
    }
    const bool need_k = (dY && T >= d) || dW;  // K, later reused for dM + dM^T
    std::unique_ptr<Scratch> ks;
    if (need_k) ks = std::make_unique<Scratch>(static_cast<size_t>(d * d) * sizeof(float), st);
    float* K = need_k ? ks->as<float>() : nullptr;
    if (dY) {
      if (T >= d) {
        form_k(W, K, d, eta, st);
        gemm(false, true, T, d, d, 1.f, G, d, K, d, 0.f, dY, d, st);  // dY = G K^T
      } else {
        Scratch vs(static_cast<size_t>(n) * sizeof(float), st);
        float* V = vs.as<float>();
        gemm(false, true, T, d, d, 1.f, G, d, W, d, 0.f, V, d, st);                 // V = G W^T
        gemm(false, false, T, d, d, -eta, V, d, W, d, 0.f, dY, d, st);              // dY = -eta V W
        dy_small_kernel<<<grid_for(n, kBlock), kBlock, 0, st>>>(dY, G, V, eta, n);  // dY += G + eta V
        check_launch("ista dy_small_kernel", st);
      }
    }
    if (dW) {
      Scratch ms(static_cast<size_t>(d * d) * sizeof(float), st);
      float* dM = ms.as<float>();
      gemm(true, false, d, d, T, eta, Y, d, G, d, 0.f, dM, d, st);  // dM = eta Y^T G
      float* Sym = K;
      const int64_t nt = (d + 31) / 32;
      const dim3 grid(static_cast<unsigned>(nt < 65535 ? nt : 65535), static_cast<unsigned>(nt < 65535 ? nt : 65535));
      sym_kernel<float><<<grid, dim3(32, 8), 0, st>>>(dM, Sym, dW, d);
      check_launch("ista sym_kernel", st);
      gemm(false, false, d, d, d, -1.f, W, d, Sym, d, 1.f, dW, d, st);  // dW = dM - W (dM + dM^T)
    }
  });
}

// ---------------------------------------------------------------- CRATE-alpha overcomplete ISTA

CRATE_API crate_status crate_cuda_ista_overcomplete_forward_f32(const float* Y, const float* D, const float* D1,
                                                                float* out, float* A1, float* A2, float* R, int64_t T,
                                                                int64_t d, int64_t m, float eta, float lambd,
                                                                void* stream) {
  return guard("crate_cuda_ista_overcomplete_forward_f32", [&] {
    if (!overcomplete_forward_args(Y, D, D1, out, T, d, m)) return;
    cudaStream_t st = resolve_stream(stream);
    const int64_t ntm = T * m, ntd = T * d;
    auto [slot_a, slot_r, a1, a2, r] = Iterates(A1, A2, R, ntm, ntd, st);  // (T, m), (T, m) (may be a1), (T, d)
    const float thr = eta * lambd;
    gemm(false, false, T, m, d, eta, Y, d, D, m, 0.f, a1, m, st);  // A1 = eta Y D
    relu_shift(a1, ntm, thr, st);                                  // A1 = ReLU(A1 - eta lambda)
    gemm(false, true, T, d, m, 1.f, a1, m, D, m, 0.f, r, d, st);   // R = A1 D^T
    residual(r, Y, ntd, -1.f, st);                                 // R -= Y
    if (a2 == a1) {
      gemm(false, false, T, m, d, -eta, r, d, D, m, 1.f, a2, m, st);  // A2 = A1 - eta R D
      relu_shift(a2, ntm, thr, st);                                   // A2 = ReLU(A2 - eta lambda)
    } else {
      gemm(false, false, T, m, d, -eta, r, d, D, m, 0.f, a2, m, st);  // A2 = -eta R D
      relu_add_shift(a2, a1, ntm, thr, st);                           // A2 = ReLU(A2 + A1 - eta lambda)
    }
    gemm(false, true, T, d, m, 1.f, a2, m, D1, m, 0.f, out, d, st);  // out = A2 D1^T
  });
}

CRATE_API crate_status crate_cuda_ista_overcomplete_backward_f32(const float* Y, const float* D, const float* D1,
                                                                 const float* A1, const float* A2, const float* R,
                                                                 const float* dOut, float* dY, float* dD, float* dD1,
                                                                 int64_t T, int64_t d, int64_t m, float eta,
                                                                 void* stream) {
  return guard("crate_cuda_ista_overcomplete_backward_f32", [&] {
    cudaStream_t st = nullptr;
    if (!overcomplete_backward_args(Y, D, D1, A1, A2, R, dOut, dY, dD, dD1, T, d, m, stream, &st)) return;
    if (dD1) gemm(true, false, d, m, T, 1.f, dOut, d, A2, m, 0.f, dD1, m, st);  // dD1 = dOut^T A2
    if (!dY && !dD) return;
    const int64_t ntm = T * m;
    Scratch g2s(static_cast<size_t>(ntm) * sizeof(float), st), g1s(static_cast<size_t>(ntm) * sizeof(float), st),
        es(static_cast<size_t>(T * d) * sizeof(float), st);
    float* G2 = g2s.as<float>();                                            // (T, m): G2, later G1 + G2
    float* G1 = g1s.as<float>();                                            // (T, m)
    float* E = es.as<float>();                                              // (T, d) = G2 D^T
    gemm(false, false, T, m, d, 1.f, dOut, d, D1, m, 0.f, G2, m, st);       // G2 = dOut D1
    mask_inplace(G2, A2, ntm, st);                                          // G2 = G2 o [A2 > 0]
    gemm(false, true, T, d, m, 1.f, G2, m, D, m, 0.f, E, d, st);            // E = G2 D^T
    if (dD) gemm(true, false, d, m, T, -eta, R, d, G2, m, 0.f, dD, m, st);  // dD = -eta R^T G2
    gemm(false, false, T, m, d, -eta, E, d, D, m, 0.f, G1, m, st);          // G1 = -eta E D
    step_mask(G1, G2, A1, ntm, dY != nullptr, st);                          // G1 = (G2 + G1) o [A1 > 0]; G2 += G1
    if (dD) {
      gemm(true, false, d, m, T, -eta, E, d, A1, m, 1.f, dD, m, st);  // dD += -eta E^T A1
      gemm(true, false, d, m, T, eta, Y, d, G1, m, 1.f, dD, m, st);   // dD += eta Y^T G1
    }
    if (dY) gemm(false, true, T, d, m, eta, G2, m, D, m, 0.f, dY, d, st);  // dY = eta (G1 + G2) D^T
  });
}

// ------------------------------------------------------------------ causal-CRATE tied ISTA

CRATE_API crate_status crate_cuda_ista_tied_forward_f32(const float* Y, const float* W, float* out, float* A0,
                                                        float* A1, float* R, int64_t T, int64_t d, int64_t m, float eta,
                                                        float lambd, void* stream) {
  return guard("crate_cuda_ista_tied_forward_f32", [&] {
    if (!tied_forward_args(Y, W, out, T, d, m)) return;
    cudaStream_t st = resolve_stream(stream);
    const int64_t ntm = T * m, ntd = T * d;
    auto [slot_a, slot_r, a0, a1, r] = Iterates(A0, A1, R, ntm, ntd, st);  // (T, m), (T, m) (may be a0), (T, d)
    const float thr = eta * lambd;
    gemm(false, true, T, m, d, eta, Y, d, W, d, 0.f, a0, m, st);    // A0 = eta Y W^T
    relu_shift(a0, ntm, thr, st);                                   // A0 = ReLU(A0 - eta lambda)
    gemm(false, false, T, d, m, -1.f, a0, m, W, d, 0.f, r, d, st);  // R = -A0 W
    residual(r, Y, ntd, 1.f, st);                                   // R += Y
    if (a1 == a0) {
      gemm(false, true, T, m, d, eta, r, d, W, d, 1.f, a1, m, st);  // A1 = A0 + eta R W^T
      relu_shift(a1, ntm, thr, st);                                 // A1 = ReLU(A1 - eta lambda)
    } else {
      gemm(false, true, T, m, d, eta, r, d, W, d, 0.f, a1, m, st);  // A1 = eta R W^T
      relu_add_shift(a1, a0, ntm, thr, st);                         // A1 = ReLU(A1 + A0 - eta lambda)
    }
    gemm(false, false, T, d, m, 1.f, a1, m, W, d, 0.f, out, d, st);  // out = A1 W
  });
}

CRATE_API crate_status crate_cuda_ista_tied_backward_f32(const float* Y, const float* W, const float* A0,
                                                         const float* A1, const float* R, const float* dOut, float* dY,
                                                         float* dW, int64_t T, int64_t d, int64_t m, float eta,
                                                         void* stream) {
  return guard("crate_cuda_ista_tied_backward_f32", [&] {
    cudaStream_t st = nullptr;
    if (!tied_backward_args(Y, W, A0, A1, R, dOut, dY, dW, T, d, m, stream, &st)) return;
    const int64_t ntm = T * m;
    Scratch g1s(static_cast<size_t>(ntm) * sizeof(float), st), g0s(static_cast<size_t>(ntm) * sizeof(float), st),
        es(static_cast<size_t>(T * d) * sizeof(float), st);
    float* G1 = g1s.as<float>();                                     // (T, m): G1, later G1 + G0
    float* G0 = g0s.as<float>();                                     // (T, m)
    float* E = es.as<float>();                                       // (T, d) = G1 W
    gemm(false, true, T, m, d, 1.f, dOut, d, W, d, 0.f, G1, m, st);  // G1 = dOut W^T
    mask_inplace(G1, A1, ntm, st);                                   // G1 = G1 o [A1 > 0]
    gemm(false, false, T, d, m, 1.f, G1, m, W, d, 0.f, E, d, st);    // E = G1 W
    if (dW) {
      gemm(true, false, m, d, T, 1.f, A1, m, dOut, d, 0.f, dW, d, st);  // dW = A1^T dOut
      gemm(true, false, m, d, T, eta, G1, m, R, d, 1.f, dW, d, st);     // dW += eta G1^T R
    }
    gemm(false, true, T, m, d, -eta, E, d, W, d, 0.f, G0, m, st);  // G0 = -eta E W^T
    step_mask(G0, G1, A0, ntm, dY != nullptr, st);                 // G0 = (G1 + G0) o [A0 > 0]; G1 += G0
    if (dW) {
      gemm(true, false, m, d, T, -eta, A0, m, E, d, 1.f, dW, d, st);  // dW += -eta A0^T E
      gemm(true, false, m, d, T, eta, G0, m, Y, d, 1.f, dW, d, st);   // dW += eta G0^T Y
    }
    if (dY) gemm(false, false, T, d, m, eta, G1, m, W, d, 0.f, dY, d, st);  // dY = eta (G1 + G0) W
  });
}

// ------------------------------------------------------------------ bf16 storage
// Y, W / D / D1, outputs, saved iterates (A*, R) and gradients bf16 (uint16_t bits); the same
// chain of GEMMs as the f32 entries, each a bf16 tensor-core GEMM with f32 accumulation followed by
// an f32 epilogue that rounds once on store. A saved iterate is the rounded value the next GEMM
// consumed, so the backward differentiates the computation that ran (masks from the same values).

CRATE_API crate_status crate_cuda_ista_forward_bf16(const uint16_t* Y, const uint16_t* W, uint16_t* Z, int64_t T,
                                                    int64_t d, float eta, float lambd, void* stream) {
  return guard("crate_cuda_ista_forward_bf16", [&] {
    if (!forward_args(Y, W, Z, T, d)) return;
    cudaStream_t st = resolve_stream(stream);
    const float thr = eta * lambd;
    const int64_t n = T * d;
    Scratch accs(f32_bytes(n), st);
    float* acc = accs.as<float>();
    if (T >= d) {
      Scratch ks(bf16_bytes(d * d), st);
      form_kp16(W, ks.as<u16>(), d, eta, st);
      gemm16(false, false, T, d, d, 1.f, Y, d, ks.as<u16>(), d, 0.f, acc, d, st);  // acc = Y K'
      ep16<kEpReluAddShift>(acc, Y, Z, n, 0.f, thr, st);                           // Z = ReLU(acc + Y - thr)
    } else {
      Scratch us(bf16_bytes(n), st);
      u16* U = us.as<u16>();
      gemm16(false, true, T, d, d, -1.f, Y, d, W, d, 0.f, acc, d, st);  // acc = -Y W^T
      ep16<kEpAxpy>(acc, Y, U, n, 1.f, 0.f, st);                        // U = Y - Y W^T
      gemm16(false, false, T, d, d, eta, U, d, W, d, 0.f, acc, d, st);  // acc = eta U W
      ep16<kEpReluAddShift>(acc, Y, Z, n, 0.f, thr, st);                // Z = ReLU(acc + Y - thr)
    }
  });
}

CRATE_API crate_status crate_cuda_ista_backward_bf16(const uint16_t* Y, const uint16_t* W, const uint16_t* Z,
                                                     const uint16_t* dZ, uint16_t* dY, uint16_t* dW, int64_t T,
                                                     int64_t d, float eta, void* stream) {
  return guard("crate_cuda_ista_backward_bf16", [&] {
    cudaStream_t st = nullptr;
    if (!backward_args(Y, W, Z, dZ, dY, dW, T, d, stream, &st)) return;
    const int64_t n = T * d;
    Scratch gs(bf16_bytes(n), st);
    u16* G = gs.as<u16>();
    ep16<kEpMask>(dZ, Z, G, n, 0.f, 0.f, st);  // G = Z > 0 ? dZ : 0 (exact)
    if (dY) {
      Scratch accs(f32_bytes(n), st);
      float* acc = accs.as<float>();
      if (T >= d) {
        Scratch ks(bf16_bytes(d * d), st);
        form_kp16(W, ks.as<u16>(), d, eta, st);
        gemm16(false, true, T, d, d, 1.f, G, d, ks.as<u16>(), d, 0.f, acc, d, st);  // acc = G K'^T
        ep16<kEpAxpy>(acc, G, dY, n, 1.f, 0.f, st);                                 // dY = G + G K'^T
      } else {
        Scratch vs(f32_bytes(n), st), vb(bf16_bytes(n), st);
        float* V = vs.as<float>();
        gemm16(false, true, T, d, d, 1.f, G, d, W, d, 0.f, V, d, st);                         // V = G W^T
        ep16<kEpCopy>(V, nullptr, vb.as<u16>(), n, 0.f, 0.f, st);                             // V as a GEMM operand
        gemm16(false, false, T, d, d, -eta, vb.as<u16>(), d, W, d, 0.f, acc, d, st);          // acc = -eta V W
        dy_small_bf16_kernel<<<grid_for(n, kBlock), kBlock, 0, st>>>(acc, G, V, dY, eta, n);  // + G + eta V
        check_launch("ista dy_small_bf16_kernel", st);
      }
    }
    if (dW) {
      Scratch ms(f32_bytes(d * d), st), ss(bf16_bytes(d * d), st);
      float* dM = ms.as<float>();
      gemm16(true, false, d, d, T, eta, Y, d, G, d, 0.f, dM, d, st);  // dM = eta Y^T G
      const int64_t nt = (d + 31) / 32;
      const dim3 grid(static_cast<unsigned>(nt < 65535 ? nt : 65535), static_cast<unsigned>(nt < 65535 ? nt : 65535));
      sym_kernel<u16><<<grid, dim3(32, 8), 0, st>>>(dM, ss.as<u16>(), nullptr, d);  // Sym = bf16(dM + dM^T)
      check_launch("ista sym_kernel", st);
      gemm16(false, false, d, d, d, -1.f, W, d, ss.as<u16>(), d, 1.f, dM, d, st);  // dM -= W Sym (f32)
      ep16<kEpCopy>(dM, nullptr, dW, d * d, 0.f, 0.f, st);                         // dW = bf16(dM)
    }
  });
}

CRATE_API crate_status crate_cuda_ista_overcomplete_forward_bf16(const uint16_t* Y, const uint16_t* D,
                                                                 const uint16_t* D1, uint16_t* out, uint16_t* A1,
                                                                 uint16_t* A2, uint16_t* R, int64_t T, int64_t d,
                                                                 int64_t m, float eta, float lambd, void* stream) {
  return guard("crate_cuda_ista_overcomplete_forward_bf16", [&] {
    if (!overcomplete_forward_args(Y, D, D1, out, T, d, m)) return;
    cudaStream_t st = resolve_stream(stream);
    const int64_t ntm = T * m, ntd = T * d;
    auto [slot_a, slot_r, a1, a2, r] = Iterates(A1, A2, R, ntm, ntd, st);  // (T, m), (T, m) (may be a1), (T, d)
    Scratch accs(f32_bytes(T * (m > d ? m : d)), st);
    float* acc = accs.as<float>();
    const float thr = eta * lambd;
    gemm16(false, false, T, m, d, eta, Y, d, D, m, 0.f, acc, m, st);   // acc = eta Y D
    ep16<kEpReluShift>(acc, nullptr, a1, ntm, 0.f, thr, st);           // A1 = ReLU(acc - eta lambda)
    gemm16(false, true, T, d, m, 1.f, a1, m, D, m, 0.f, acc, d, st);   // acc = A1 D^T
    ep16<kEpAxpy>(acc, Y, r, ntd, -1.f, 0.f, st);                      // R = acc - Y
    gemm16(false, false, T, m, d, -eta, r, d, D, m, 0.f, acc, m, st);  // acc = -eta R D
    ep16<kEpReluAddShift>(acc, a1, a2, ntm, 0.f, thr, st);             // A2 = ReLU(acc + A1 - eta lambda)
    gemm16o(false, true, T, d, m, 1.f, a2, m, D1, m, out, d, st);      // out = A2 D1^T
  });
}

CRATE_API crate_status crate_cuda_ista_overcomplete_backward_bf16(const uint16_t* Y, const uint16_t* D,
                                                                  const uint16_t* D1, const uint16_t* A1,
                                                                  const uint16_t* A2, const uint16_t* R,
                                                                  const uint16_t* dOut, uint16_t* dY, uint16_t* dD,
                                                                  uint16_t* dD1, int64_t T, int64_t d, int64_t m,
                                                                  float eta, void* stream) {
  return guard("crate_cuda_ista_overcomplete_backward_bf16", [&] {
    cudaStream_t st = nullptr;
    if (!overcomplete_backward_args(Y, D, D1, A1, A2, R, dOut, dY, dD, dD1, T, d, m, stream, &st)) return;
    if (dD1) gemm16o(true, false, d, m, T, 1.f, dOut, d, A2, m, dD1, m, st);  // dD1 = dOut^T A2
    if (!dY && !dD) return;
    const int64_t ntm = T * m;
    Scratch accs(f32_bytes(ntm), st), g2s(bf16_bytes(ntm), st), g1s(bf16_bytes(ntm), st), es(bf16_bytes(T * d), st);
    float* acc = accs.as<float>();
    u16* G2 = g2s.as<u16>();  // (T, m): G2, later G1 + G2
    u16* G1 = g1s.as<u16>();  // (T, m)
    u16* E = es.as<u16>();    // (T, d) = G2 D^T
    auto dDs = std::unique_ptr<Scratch>(dD ? new Scratch(f32_bytes(d * m), st) : nullptr);
    float* dDacc = dD ? dDs->as<float>() : nullptr;                              // (d, m) f32
    gemm16(false, false, T, m, d, 1.f, dOut, d, D1, m, 0.f, acc, m, st);         // acc = dOut D1
    ep16<kEpMask>(acc, A2, G2, ntm, 0.f, 0.f, st);                               // G2 = acc o [A2 > 0]
    gemm16o(false, true, T, d, m, 1.f, G2, m, D, m, E, d, st);                   // E = G2 D^T
    if (dD) gemm16(true, false, d, m, T, -eta, R, d, G2, m, 0.f, dDacc, m, st);  // dD = -eta R^T G2
    gemm16(false, false, T, m, d, -eta, E, d, D, m, 0.f, acc, m, st);            // acc = -eta E D
    step_mask_bf16_kernel<<<grid_for(ntm, kBlock), kBlock, 0, st>>>(acc, G1, G2, A1, ntm, dY ? 1 : 0);
    check_launch("ista step_mask_bf16_kernel", st);  // G1 = (G2 + acc) o [A1 > 0]; G2 += G1
    if (dD) {
      gemm16(true, false, d, m, T, -eta, E, d, A1, m, 1.f, dDacc, m, st);  // dD += -eta E^T A1
      gemm16(true, false, d, m, T, eta, Y, d, G1, m, 1.f, dDacc, m, st);   // dD += eta Y^T G1
      ep16<kEpCopy>(dDacc, nullptr, dD, d * m, 0.f, 0.f, st);
    }
    if (dY) gemm16o(false, true, T, d, m, eta, G2, m, D, m, dY, d, st);  // dY = eta (G1 + G2) D^T
  });
}

CRATE_API crate_status crate_cuda_ista_tied_forward_bf16(const uint16_t* Y, const uint16_t* W, uint16_t* out,
                                                         uint16_t* A0, uint16_t* A1, uint16_t* R, int64_t T, int64_t d,
                                                         int64_t m, float eta, float lambd, void* stream) {
  return guard("crate_cuda_ista_tied_forward_bf16", [&] {
    if (!tied_forward_args(Y, W, out, T, d, m)) return;
    cudaStream_t st = resolve_stream(stream);
    const int64_t ntm = T * m, ntd = T * d;
    auto [slot_a, slot_r, a0, a1, r] = Iterates(A0, A1, R, ntm, ntd, st);  // (T, m), (T, m) (may be a0), (T, d)
    Scratch accs(f32_bytes(T * (m > d ? m : d)), st);
    float* acc = accs.as<float>();
    const float thr = eta * lambd;
    gemm16(false, true, T, m, d, eta, Y, d, W, d, 0.f, acc, m, st);     // acc = eta Y W^T
    ep16<kEpReluShift>(acc, nullptr, a0, ntm, 0.f, thr, st);            // A0 = ReLU(acc - eta lambda)
    gemm16(false, false, T, d, m, -1.f, a0, m, W, d, 0.f, acc, d, st);  // acc = -A0 W
    ep16<kEpAxpy>(acc, Y, r, ntd, 1.f, 0.f, st);                        // R = acc + Y
    gemm16(false, true, T, m, d, eta, r, d, W, d, 0.f, acc, m, st);     // acc = eta R W^T
    ep16<kEpReluAddShift>(acc, a0, a1, ntm, 0.f, thr, st);              // A1 = ReLU(acc + A0 - eta lambda)
    gemm16o(false, false, T, d, m, 1.f, a1, m, W, d, out, d, st);       // out = A1 W
  });
}

CRATE_API crate_status crate_cuda_ista_tied_backward_bf16(const uint16_t* Y, const uint16_t* W, const uint16_t* A0,
                                                          const uint16_t* A1, const uint16_t* R, const uint16_t* dOut,
                                                          uint16_t* dY, uint16_t* dW, int64_t T, int64_t d, int64_t m,
                                                          float eta, void* stream) {
  return guard("crate_cuda_ista_tied_backward_bf16", [&] {
    cudaStream_t st = nullptr;
    if (!tied_backward_args(Y, W, A0, A1, R, dOut, dY, dW, T, d, m, stream, &st)) return;
    const int64_t ntm = T * m;
    Scratch accs(f32_bytes(ntm), st), g1s(bf16_bytes(ntm), st), g0s(bf16_bytes(ntm), st), es(bf16_bytes(T * d), st);
    float* acc = accs.as<float>();
    u16* G1 = g1s.as<u16>();  // (T, m): G1, later G1 + G0
    u16* G0 = g0s.as<u16>();  // (T, m)
    u16* E = es.as<u16>();    // (T, d) = G1 W
    auto dWs = std::unique_ptr<Scratch>(dW ? new Scratch(f32_bytes(m * d), st) : nullptr);
    float* dWacc = dW ? dWs->as<float>() : nullptr;                     // (m, d) f32
    gemm16(false, true, T, m, d, 1.f, dOut, d, W, d, 0.f, acc, m, st);  // acc = dOut W^T
    ep16<kEpMask>(acc, A1, G1, ntm, 0.f, 0.f, st);                      // G1 = acc o [A1 > 0]
    gemm16o(false, false, T, d, m, 1.f, G1, m, W, d, E, d, st);         // E = G1 W
    if (dW) {
      gemm16(true, false, m, d, T, 1.f, A1, m, dOut, d, 0.f, dWacc, d, st);  // dW = A1^T dOut
      gemm16(true, false, m, d, T, eta, G1, m, R, d, 1.f, dWacc, d, st);     // dW += eta G1^T R
    }
    gemm16(false, true, T, m, d, -eta, E, d, W, d, 0.f, acc, m, st);  // acc = -eta E W^T
    step_mask_bf16_kernel<<<grid_for(ntm, kBlock), kBlock, 0, st>>>(acc, G0, G1, A0, ntm, dY ? 1 : 0);
    check_launch("ista step_mask_bf16_kernel", st);  // G0 = (G1 + acc) o [A0 > 0]; G1 += G0
    if (dW) {
      gemm16(true, false, m, d, T, -eta, A0, m, E, d, 1.f, dWacc, d, st);  // dW += -eta A0^T E
      gemm16(true, false, m, d, T, eta, G0, m, Y, d, 1.f, dWacc, d, st);   // dW += eta G0^T Y
      ep16<kEpCopy>(dWacc, nullptr, dW, m * d, 0.f, 0.f, st);
    }
    if (dY) gemm16o(false, false, T, d, m, eta, G1, m, W, d, dY, d, st);  // dY = eta (G1 + G0) W
  });
}

}  // extern "C"
