// ista.cu: the CRATE ISTA step on the GPU, forward and backward (f32), the same algorithm and
// branch structure as native/cpu/ista.cc so the results agree to f32 rounding:
//
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
// Epilogue choice: cuBLAS(Lt) has no ReLU-with-shift epilogue we can rely on in every backend
// (the own tensor-core GEMM is the fallback), so the GEMM writes Z and one memory-bound in-place
// pass applies ReLU(Z - eta lambda) (float4 when Z is 16-byte aligned; one read + one write of Z).
// GEMMs run in plain f32 (allow_tf32 = false): the C ABI promises the CPU result to f32 rounding.
// ReLU keeps NaN like the CPU (x < 0 ? 0 : x), so a NaN in Y or W propagates to Z.
#include <memory>
#include <string>

#include "common.cuh"

namespace crate::cuda {
namespace {

constexpr int kBlock = 256;

__device__ __forceinline__ float relu_nan(float x) { return x < 0.f ? 0.f : x; }

__host__ __device__ inline bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

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
__global__ void __launch_bounds__(kBlock)
    dy_small_kernel(float* __restrict__ dY, const float* __restrict__ G, const float* __restrict__ V, float eta,
                    int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dY[i] += G[i] + eta * V[i];
}

// U += Y (small-T forward: U = -Y W^T on entry).
__global__ void __launch_bounds__(kBlock) add_inplace_kernel(float* __restrict__ U, const float* __restrict__ Y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) U[i] += Y[i];
}

// K = -eta W^T W on entry; K[x] += eta W[x] + [row == col]  (exactly the CPU's form_K epilogue).
__global__ void __launch_bounds__(kBlock) form_k_kernel(float* __restrict__ K, const float* __restrict__ W, int64_t d, float eta) {
  const int64_t n = d * d;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t x = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; x < n; x += stride)
    K[x] += eta * W[x] + ((x / d) == (x % d) ? 1.f : 0.f);
}

// G = Z > 0 ? dZ : 0.
__global__ void __launch_bounds__(kBlock)
    relu_mask_kernel(float* __restrict__ G, const float* __restrict__ Z, const float* __restrict__ dZ, int64_t n, int vec) {
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

// Sym = dM + dM^T and dW = dM (d x d), through a 32 x 33 shared tile so both reads coalesce.
// Block (32, 8); grid (ceil(d/32), ceil(d/32)) tiles, looped when d/32 exceeds the grid limit.
__global__ void __launch_bounds__(kBlock)
    sym_kernel(const float* __restrict__ dM, float* __restrict__ Sym, float* __restrict__ dW, int64_t d) {
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
          Sym[i * d + j] = v + tile[threadIdx.x][y];  // dM[i][j] + dM[j][i]
          dW[i * d + j] = v;
        }
      }
      __syncthreads();
    }
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

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;

extern "C" {

CRATE_API crate_status crate_cuda_ista_forward_f32(const float* Y, const float* W, float* Z, int64_t T, int64_t d,
                                                   float eta, float lambd, void* stream) {
  return guard("crate_cuda_ista_forward_f32", [&] {
    const char* fn = "ista_forward";
    check_dims(fn, T, d);
    if (T == 0) return;
    CRATE_CUDA_REQUIRE(Y, fn, "Y must not be null");
    CRATE_CUDA_REQUIRE(W, fn, "W must not be null");
    CRATE_CUDA_REQUIRE(Z, fn, "Z must not be null");
    cudaStream_t st = resolve_stream(stream);
    const float thr = eta * lambd;
    const int64_t n = T * d;
    if (T >= d) {
      Scratch ks(static_cast<size_t>(d * d) * sizeof(float), st);
      float* K = ks.as<float>();
      form_k(W, K, d, eta, st);
      gemm(false, false, T, d, d, 1.f, Y, d, K, d, 0.f, Z, d, st);  // Z = Y K
      relu_shift_kernel<<<grid_for(aligned16(Z) ? (n + 3) / 4 : n, kBlock), kBlock, 0, st>>>(Z, n, thr, aligned16(Z) ? 1 : 0);
      check_launch("ista relu_shift_kernel", st);
    } else {
      Scratch us(static_cast<size_t>(n) * sizeof(float), st);
      float* U = us.as<float>();
      gemm(false, true, T, d, d, -1.f, Y, d, W, d, 0.f, U, d, st);  // U = -Y W^T
      add_inplace_kernel<<<grid_for(n, kBlock), kBlock, 0, st>>>(U, Y, n);  // U = Y - Y W^T
      check_launch("ista add_inplace_kernel", st);
      gemm(false, false, T, d, d, eta, U, d, W, d, 0.f, Z, d, st);  // Z = eta U W
      const int vec = aligned16(Z) && aligned16(Y) ? 1 : 0;
      relu_add_shift_kernel<<<grid_for(vec ? (n + 3) / 4 : n, kBlock), kBlock, 0, st>>>(Z, Y, n, thr, vec);
      check_launch("ista relu_add_shift_kernel", st);
    }
  });
}

CRATE_API crate_status crate_cuda_ista_backward_f32(const float* Y, const float* W, const float* Z, const float* dZ,
                                                    float* dY, float* dW, int64_t T, int64_t d, float eta,
                                                    void* stream) {
  return guard("crate_cuda_ista_backward_f32", [&] {
    const char* fn = "ista_backward";
    check_dims(fn, T, d);
    if (!dY && !dW) return;
    CRATE_CUDA_REQUIRE(W, fn, "W must not be null");
    cudaStream_t st = resolve_stream(stream);
    if (T == 0) {
      if (dW) check(cudaMemsetAsync(dW, 0, static_cast<size_t>(d * d) * sizeof(float), st), "ista_backward memset dW");
      return;
    }
    CRATE_CUDA_REQUIRE(Y, fn, "Y must not be null");
    CRATE_CUDA_REQUIRE(Z, fn, "Z must not be null");
    CRATE_CUDA_REQUIRE(dZ, fn, "dZ must not be null");
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
        gemm(false, true, T, d, d, 1.f, G, d, W, d, 0.f, V, d, st);     // V = G W^T
        gemm(false, false, T, d, d, -eta, V, d, W, d, 0.f, dY, d, st);  // dY = -eta V W
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
      sym_kernel<<<grid, dim3(32, 8), 0, st>>>(dM, Sym, dW, d);
      check_launch("ista sym_kernel", st);
      gemm(false, false, d, d, d, -1.f, W, d, Sym, d, 1.f, dW, d, st);  // dW = dM - W (dM + dM^T)
    }
  });
}

}  // extern "C"
