// gemm.cu: the CUDA GEMM. C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], row-major, strided
// batch, f32, bf16 or f16 inputs, f32 accumulation; f32 output, or for 16-bit inputs an output of
// the same type (the f32 result alpha * acc + beta * C rounded once to nearest even on store:
// cuBLASLt / cuBLAS with a 16-bit C/D type, or the own kernels' epilogue; C read in that type when
// beta != 0). The library's tensors have no f16 dtype; the f16 entries are for C ABI users.
//
// Backends, in order:
//   1. cuBLASLt, loaded at run time (cublas_loader.h). Row-major C (M x N, ldc) is column-major
//      Cᵀ (N x M, ldc), and Cᵀ = op(B)ᵀ op(A)ᵀ: B is passed as Lt's A, A as Lt's B, M and N swap,
//      and the transposes carry over unchanged. Algorithms come from cublasLtMatmulAlgoGetHeuristic
//      (cached per shape, strides, types and pointer alignment) with up to 32 MiB of workspace
//      from the caching allocator, stream-ordered. One Lt handle per thread and device.
//   2. cuBLAS (cublasGemmStridedBatchedEx), when only libcublas loads; same mapping.
//   3. The own kernels: a tensor-core (wmma) kernel -- bf16 / f16 m16n16k16 for 16-bit inputs, TF32
//      m16n16k8 for f32 with allow_tf32 -- on sm_80+, else a SIMT kernel (64x64x8 shared-memory
//      tiles, 4x4 register blocking). Both handle any M, N, K, transposes, strides, and beta == 0
//      without reading C. Also used for K == 0 or alpha == 0 (C = beta * C, A and B not read), for
//      sizes beyond int32 (cuBLAS's limit), and when cuBLAS has no algorithm for a problem.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.cuh"
#include "cublas_loader.h"

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define CRATE_WMMA_OK 1
#else
#define CRATE_WMMA_OK 0
#endif

namespace crate::cuda {
namespace {

// Storage: f32 as float, bf16 as uint16_t (its bits, as everywhere in the library), f16 as __half.
enum class InType { f32, bf16, f16 };
enum class OutType { f32, bf16, f16 };

struct GemmParams {
  int64_t M, N, K;
  const void* A;
  int64_t lda, sa;
  const void* B;
  int64_t ldb, sb;
  void* C;  // float*, uint16_t* (bf16 bits) for OutType::bf16, __half* for OutType::f16
  int64_t ldc, sc;
  float alpha, beta;
};

// ------------------------------------------------------------------ device helpers

__device__ __forceinline__ float load_f32(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load_f32(const uint16_t* p) {
  return __uint_as_float(static_cast<uint32_t>(__ldg(reinterpret_cast<const unsigned short*>(p))) << 16);
}
__device__ __forceinline__ __half load_half(const __half* p) {
  return __ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(p)));
}
__device__ __forceinline__ float load_f32(const __half* p) { return __half2float(load_half(p)); }

// A tile of a row-major operand X as stored: Ls rows ("strided" dimension) of Lc elements
// ("contiguous" dimension). Each of kThreads threads reads V consecutive elements of one row per
// pass -- one row pointer per pass, neighbouring threads on neighbouring addresses -- and the
// rows outside [0, s_lim) and the columns outside [0, c_lim) read as zero.
template <int Lc, int Ls, int V, int kThreads>
struct TileMap {
  static constexpr int kPerRow = Lc / V;  // threads per row
  static constexpr int kRowsPerPass = kThreads / kPerRow;
  static constexpr int kPasses = Ls / kRowsPerPass;
  static constexpr int kRegs = kPasses * V;
  static_assert(Lc % V == 0 && kThreads % kPerRow == 0 && Ls % kRowsPerPass == 0, "tile does not divide");
  static_assert(kRegs * kThreads == Lc * Ls, "every element loaded once");

  template <typename T, typename R, class Load>
  __device__ __forceinline__ static void load(R (&regs)[kRegs], const T* X, int64_t ld, int64_t s_base, int64_t s_lim,
                                              int64_t c_base, int64_t c_lim, int tid, Load ld_fn, R zero) {
    const int c0 = (tid % kPerRow) * V, s0 = tid / kPerRow;
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int64_t gs = s_base + s0 + pass * kRowsPerPass;
      const int64_t gc = c_base + c0;
      const bool row_ok = gs < s_lim;
      const T* row = X + (row_ok ? gs * ld + gc : 0);
#pragma unroll
      for (int v = 0; v < V; ++v) regs[pass * V + v] = (row_ok && gc + v < c_lim) ? ld_fn(row + v) : zero;
    }
  }

  // Writes the registers to shared memory at smem[s * stride_s + c * stride_c].
  template <typename R, typename S>
  __device__ __forceinline__ static void store(const R (&regs)[kRegs], S* smem, int stride_s, int stride_c, int tid) {
    const int c0 = (tid % kPerRow) * V, s0 = tid / kPerRow;
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass)
#pragma unroll
      for (int v = 0; v < V; ++v)
        smem[(s0 + pass * kRowsPerPass) * stride_s + (c0 + v) * stride_c] = regs[pass * V + v];
  }
};

// The tile maps of op(A) (BM x BK) and op(B) (BK x BN) for a transpose: A is stored M x K
// (rows m) or, transposed, K x M (rows k); B is stored K x N (rows k) or N x K (rows n).
template <bool TA, int BM, int BK, int V, int kThreads>
using AMap = TileMap<TA ? BM : BK, TA ? BK : BM, V, kThreads>;
template <bool TB, int BK, int BN, int V, int kThreads>
using BMap = TileMap<TB ? BK : BN, TB ? BN : BK, V, kThreads>;

__device__ __forceinline__ float load_c(const float* c) { return *c; }
__device__ __forceinline__ float load_c(const uint16_t* c) { return __uint_as_float(static_cast<uint32_t>(*c) << 16); }
__device__ __forceinline__ void put_c(float* c, float v) { *c = v; }
__device__ __forceinline__ void put_c(uint16_t* c, float v) {  // one rounding, nearest even
  *c = __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
__device__ __forceinline__ float load_c(const __half* c) { return __half2float(*c); }
__device__ __forceinline__ void put_c(__half* c, float v) { *c = __float2half_rn(v); }  // one rounding

template <typename TC>
__device__ __forceinline__ void store_c(const GemmParams& p, TC* C, int64_t m, int64_t n, float acc) {
  TC* c = C + m * p.ldc + n;
  float v = p.alpha * acc;
  if (p.beta != 0.0f) v = fmaf(p.beta, load_c(c), v);  // beta == 0: C is not read (may hold NaN)
  put_c(c, v);
}

// ------------------------------------------------------------------ SIMT kernel

constexpr int kSimtBM = 64, kSimtBN = 64, kSimtBK = 8, kSimtThreads = 256;

// 256 threads as 16 x 16; thread (ty, tx) owns rows ty + 16 i and columns tx + 16 j (i, j < 4):
// shared-memory reads are broadcasts (A) or consecutive (B), and the stores to C coalesce.
// Global loads for tile t + 1 are issued before the FMAs of tile t.
template <typename T, typename TC, bool TA, bool TB>
__global__ void __launch_bounds__(kSimtThreads) gemm_simt_kernel(GemmParams p) {
  constexpr int BM = kSimtBM, BN = kSimtBN, BK = kSimtBK;
  __shared__ float As[BK][BM + 4];
  __shared__ float Bs[BK][BN + 4];
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * BN;
  const T* A = static_cast<const T*>(p.A) + static_cast<int64_t>(blockIdx.z) * p.sa;
  const T* B = static_cast<const T*>(p.B) + static_cast<int64_t>(blockIdx.z) * p.sb;
  TC* C = static_cast<TC*>(p.C) + static_cast<int64_t>(blockIdx.z) * p.sc;

  using AM = AMap<TA, BM, BK, 1, kSimtThreads>;
  using BMp = BMap<TB, BK, BN, 1, kSimtThreads>;
  float ra[AM::kRegs], rb[BMp::kRegs];
  auto ldf = [](const T* q) { return load_f32(q); };
  auto load = [&](int64_t k0) {
    AM::load(ra, A, p.lda, TA ? k0 : m0, TA ? p.K : p.M, TA ? m0 : k0, TA ? p.M : p.K, tid, ldf, 0.0f);
    BMp::load(rb, B, p.ldb, TB ? n0 : k0, TB ? p.N : p.K, TB ? k0 : n0, TB ? p.K : p.N, tid, ldf, 0.0f);
  };

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  const int64_t ktiles = (p.K + BK - 1) / BK;
  if (ktiles > 0) load(0);
  for (int64_t t = 0; t < ktiles; ++t) {
    // As[k][m], Bs[k][n]
    AM::store(ra, &As[0][0], TA ? BM + 4 : 1, TA ? 1 : BM + 4, tid);
    BMp::store(rb, &Bs[0][0], TB ? 1 : BN + 4, TB ? BN + 4 : 1, tid);
    __syncthreads();
    if (t + 1 < ktiles) load((t + 1) * BK);
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t gm = m0 + ty + 16 * i;
    if (gm >= p.M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t gn = n0 + tx + 16 * j;
      if (gn < p.N) store_c(p, C, gm, gn, acc[i][j]);
    }
  }
}

// ------------------------------------------------------------------ tensor-core (wmma) kernel

constexpr int kWmmaBM = 64, kWmmaBN = 64, kWmmaThreads = 128;

#if CRATE_WMMA_OK
namespace wmma = nvcuda::wmma;

template <typename T>
struct WmmaTraits;

// bf16 inputs: m16n16k16, k-tile 32.
template <>
struct WmmaTraits<uint16_t> {
  using S = __nv_bfloat16;  // shared-memory element
  using Prec = __nv_bfloat16;
  static constexpr int BK = 32, WK = 16, PAD = 8, V = 8;  // ldm multiple of 8 elements; 16-byte runs
  __device__ static S load(const uint16_t* p) {
    return __ushort_as_bfloat16(__ldg(reinterpret_cast<const unsigned short*>(p)));
  }
  __device__ static S zero() { return __ushort_as_bfloat16(0); }
  template <class F>
  __device__ static void round(F&) {}
};

// f16 inputs: m16n16k16, k-tile 32 (products exact in f32, as for bf16).
template <>
struct WmmaTraits<__half> {
  using S = __half;
  using Prec = __half;
  static constexpr int BK = 32, WK = 16, PAD = 8, V = 8;
  __device__ static S load(const __half* p) { return load_half(p); }
  __device__ static S zero() { return __ushort_as_half(0); }
  template <class F>
  __device__ static void round(F&) {}
};

// f32 inputs on TF32 tensor cores: m16n16k8, k-tile 16.
template <>
struct WmmaTraits<float> {
  using S = float;
  using Prec = wmma::precision::tf32;
  static constexpr int BK = 16, WK = 8, PAD = 4, V = 4;  // ldm multiple of 4 elements; 16-byte runs
  __device__ static S load(const float* p) { return __ldg(p); }
  __device__ static S zero() { return 0.0f; }
  template <class F>
  __device__ static void round(F& f) {
#pragma unroll
    for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
  }
};
#endif

// 64 x 64 block tile, 4 warps as 2 x 2, each warp 32 x 32 (2 x 2 fragments). Tiles are staged
// through shared memory with zero fill at the edges (so any M, N, K works); the accumulators go
// through shared memory (aliasing the input tiles) for the bounds-checked alpha/beta epilogue.
// Fragment pointers are 32-byte aligned and ldm values are multiples of 16 bytes, as wmma needs.
template <typename T, typename TC, bool TA, bool TB>
__global__ void __launch_bounds__(kWmmaThreads) gemm_wmma_kernel(GemmParams p) {
#if CRATE_WMMA_OK
  using Tr = WmmaTraits<T>;
  using S = typename Tr::S;
  constexpr int BM = kWmmaBM, BN = kWmmaBN, BK = Tr::BK, WK = Tr::WK;
  constexpr int LDA_S = BK + Tr::PAD, LDB_S = BN + Tr::PAD, LDC_S = BN + 4;
  constexpr int kABytes = BM * LDA_S * static_cast<int>(sizeof(S));
  constexpr int kBBytes = BK * LDB_S * static_cast<int>(sizeof(S));
  constexpr int kCBytes = BM * LDC_S * static_cast<int>(sizeof(float));
  constexpr int kSmem = (kABytes + kBBytes) > kCBytes ? (kABytes + kBBytes) : kCBytes;
  static_assert(kABytes % 32 == 0, "B tile must start 32-byte aligned");
  __shared__ __align__(128) unsigned char smem[kSmem];
  S* As = reinterpret_cast<S*>(smem);
  S* Bs = reinterpret_cast<S*>(smem + kABytes);
  float* Cs = reinterpret_cast<float*>(smem);

  const int tid = threadIdx.x;
  const int warp = tid / 32, wm = warp / 2, wn = warp % 2;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * BM;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * BN;
  const T* A = static_cast<const T*>(p.A) + static_cast<int64_t>(blockIdx.z) * p.sa;
  const T* B = static_cast<const T*>(p.B) + static_cast<int64_t>(blockIdx.z) * p.sb;
  TC* C = static_cast<TC*>(p.C) + static_cast<int64_t>(blockIdx.z) * p.sc;

  using AM = AMap<TA, BM, BK, Tr::V, kWmmaThreads>;
  using BMp = BMap<TB, BK, BN, Tr::V, kWmmaThreads>;
  S ra[AM::kRegs], rb[BMp::kRegs];
  auto ldf = [](const T* q) { return Tr::load(q); };
  auto load = [&](int64_t k0) {
    AM::load(ra, A, p.lda, TA ? k0 : m0, TA ? p.K : p.M, TA ? m0 : k0, TA ? p.M : p.K, tid, ldf, Tr::zero());
    BMp::load(rb, B, p.ldb, TB ? n0 : k0, TB ? p.N : p.K, TB ? k0 : n0, TB ? p.K : p.N, tid, ldf, Tr::zero());
  };

  wmma::fragment<wmma::accumulator, 16, 16, WK, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  const int64_t ktiles = (p.K + BK - 1) / BK;
  if (ktiles > 0) load(0);
  for (int64_t t = 0; t < ktiles; ++t) {
    // As[m][k], Bs[k][n]
    AM::store(ra, As, TA ? 1 : LDA_S, TA ? LDA_S : 1, tid);
    BMp::store(rb, Bs, TB ? 1 : LDB_S, TB ? LDB_S : 1, tid);
    __syncthreads();
    if (t + 1 < ktiles) load((t + 1) * BK);
#pragma unroll
    for (int kk = 0; kk < BK; kk += WK) {
      wmma::fragment<wmma::matrix_a, 16, 16, WK, typename Tr::Prec, wmma::row_major> a[2];
      wmma::fragment<wmma::matrix_b, 16, 16, WK, typename Tr::Prec, wmma::row_major> b[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(a[i], As + (wm * 32 + i * 16) * LDA_S + kk, LDA_S);
        Tr::round(a[i]);
      }
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::load_matrix_sync(b[j], Bs + kk * LDB_S + wn * 32 + j * 16, LDB_S);
        Tr::round(b[j]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  // The loop ended with a barrier: the input tiles are dead, Cs may overwrite them.
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * LDC_S + wn * 32 + j * 16, acc[i][j], LDC_S,
                              wmma::mem_row_major);
  __syncthreads();
  for (int i = tid; i < BM * BN; i += kWmmaThreads) {
    const int r = i / BN, c = i % BN;
    const int64_t gm = m0 + r, gn = n0 + c;
    if (gm < p.M && gn < p.N) store_c(p, C, gm, gn, Cs[r * LDC_S + c]);
  }
#else
  __trap();  // never launched: the host checks the compute capability first
#endif
}

// ------------------------------------------------------------------ own GEMM launcher

int current_device() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  return dev;
}

int compute_major(int dev) {
  constexpr int kCached = 64;
  static std::atomic<int> cache[kCached];  // major + 1; 0: not queried yet
  if (dev >= 0 && dev < kCached) {
    const int c = cache[dev].load(std::memory_order_relaxed);
    if (c > 0) return c - 1;
  }
  int v = 0;
  check(cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, dev), "cudaDeviceGetAttribute");
  if (dev >= 0 && dev < kCached) cache[dev].store(v + 1, std::memory_order_relaxed);
  return v;
}

template <typename T, typename TC, bool TA, bool TB>
void launch_one(const GemmParams& q, dim3 grid, bool tensor_cores, cudaStream_t s) {
  if (tensor_cores)
    gemm_wmma_kernel<T, TC, TA, TB><<<grid, kWmmaThreads, 0, s>>>(q);
  else
    gemm_simt_kernel<T, TC, TA, TB><<<grid, kSimtThreads, 0, s>>>(q);
}

template <typename T, typename TC>
void own_gemm(bool ta, bool tb, GemmParams p, int64_t batch, bool tensor_cores, cudaStream_t s) {
  static_assert(kSimtBM == kWmmaBM && kSimtBN == kWmmaBN, "one tiling for the launcher");
  constexpr int64_t kMaxZ = 65535;
  constexpr int64_t kMaxNChunk = 65535LL * kWmmaBN;  // gridDim.y limit
  const T* A = static_cast<const T*>(p.A);
  const T* B = static_cast<const T*>(p.B);
  for (int64_t z0 = 0; z0 < batch; z0 += kMaxZ) {
    const int64_t zc = std::min(kMaxZ, batch - z0);
    for (int64_t n_start = 0; n_start < p.N; n_start += kMaxNChunk) {
      GemmParams q = p;
      q.N = std::min(kMaxNChunk, p.N - n_start);
      q.A = A + z0 * p.sa;
      q.B = B + z0 * p.sb + (tb ? n_start * p.ldb : n_start);
      q.C = static_cast<TC*>(p.C) + z0 * p.sc + n_start;
      const dim3 grid(static_cast<unsigned>((p.M + kWmmaBM - 1) / kWmmaBM),
                      static_cast<unsigned>((q.N + kWmmaBN - 1) / kWmmaBN), static_cast<unsigned>(zc));
      if (!ta && !tb) launch_one<T, TC, false, false>(q, grid, tensor_cores, s);
      if (!ta && tb) launch_one<T, TC, false, true>(q, grid, tensor_cores, s);
      if (ta && !tb) launch_one<T, TC, true, false>(q, grid, tensor_cores, s);
      if (ta && tb) launch_one<T, TC, true, true>(q, grid, tensor_cores, s);
      check_launch(tensor_cores ? "own GEMM (tensor-core kernel)" : "own GEMM (SIMT kernel)", s);
    }
  }
}

void own_dispatch(InType in, OutType out, bool ta, bool tb, const GemmParams& p, int64_t batch, bool allow_tf32,
                  cudaStream_t s) {
  const bool sm80 = compute_major(current_device()) >= 8;
  if (in == InType::bf16 && out == OutType::bf16)
    own_gemm<uint16_t, uint16_t>(ta, tb, p, batch, sm80, s);
  else if (in == InType::bf16)
    own_gemm<uint16_t, float>(ta, tb, p, batch, sm80, s);
  else if (in == InType::f16 && out == OutType::f16)
    own_gemm<__half, __half>(ta, tb, p, batch, sm80, s);
  else if (in == InType::f16)
    own_gemm<__half, float>(ta, tb, p, batch, sm80, s);
  else
    own_gemm<float, float>(ta, tb, p, batch, sm80 && allow_tf32, s);
}

// ------------------------------------------------------------------ library state

std::atomic<bool> g_force_own{false};
std::atomic<bool> g_lib_broken{false};

std::mutex& broken_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::string& broken_why() {
  static auto* s = new std::string;
  return *s;
}

void mark_broken(const std::string& why) {
  std::lock_guard<std::mutex> lock(broken_mutex());
  if (g_lib_broken.load()) return;
  broken_why() = why;
  g_lib_broken.store(true);
}

std::string backend_string() {
  const blas::Api& a = blas::api();
  if (!a.lt && !a.blas) return "own tensor-core GEMM (cuBLAS not found: " + a.attempts + ")";
  const std::string lib = blas::describe(a);
  if (g_lib_broken.load()) {
    std::lock_guard<std::mutex> lock(broken_mutex());
    return "own tensor-core GEMM (" + lib + " loaded but unusable: " + broken_why() + ")";
  }
  if (g_force_own.load()) return "own tensor-core GEMM (forced by crate_cuda_gemm_force_own(1); " + lib + " is loaded)";
  return lib;
}

void lib_check(blas::Status st, const char* what) {
  if (st == blas::kStatusSuccess) return;
  const blas::Api& a = blas::api();
  std::string msg = std::string(what) + " failed: " + blas::status_name(st);
  if (a.ltGetStatusString != nullptr) {
    const char* s = a.ltGetStatusString(st);
    if (s != nullptr) msg += std::string(" (") + s + ")";
  }
  // A failed execution usually means a device error: let the runtime see (and poison on) it.
  check(cudaGetLastError(), what);
  throw Error(st == blas::kStatusAllocFailed ? CRATE_ERR_OUT_OF_MEMORY : CRATE_ERR_CUDA, msg);
}

/** Handle of `dev` for this thread, created on first use; NULL (and the library marked broken)
 * when creation fails for any reason but memory. Never destroyed: destruction at thread or
 * process exit can run after the driver is gone. */
template <class H, class Create>
H thread_handle(std::vector<H>& handles, int dev, Create create, const char* what) {
  if (dev >= static_cast<int>(handles.size())) handles.resize(dev + 1, nullptr);
  if (handles[dev] != nullptr) return handles[dev];
  H h = nullptr;
  const blas::Status st = create(&h);
  if (st == blas::kStatusAllocFailed)
    throw Error(CRATE_ERR_OUT_OF_MEMORY, std::string(what) + " failed: " + blas::status_name(st));
  if (st != blas::kStatusSuccess || h == nullptr) {
    mark_broken(std::string(what) + " failed: " + blas::status_name(st));
    return nullptr;
  }
  handles[dev] = h;
  return h;
}

// ------------------------------------------------------------------ cuBLASLt

constexpr size_t kLtMaxWorkspace = size_t{32} << 20;

struct LtPlan {
  bool ok = false;
  blas::LtMatmulAlgo algo{};
  size_t workspace = 0;
};

std::mutex& plan_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::unordered_map<std::string, LtPlan>& plans() {
  static auto* p = new std::unordered_map<std::string, LtPlan>;
  return *p;
}

/** Alignment in bytes (power of two, at most 256) every matrix of a batch starts at. */
uint32_t alignment(const void* ptr, int64_t stride, size_t elem, int64_t batch) {
  uint64_t v = reinterpret_cast<uintptr_t>(ptr);
  if (batch > 1) v |= static_cast<uint64_t>(stride) * elem;
  if (v == 0) return 256;
  const uint64_t low = v & (~v + 1);
  return static_cast<uint32_t>(std::min<uint64_t>(low, 256));
}

struct LtObjects {
  const blas::Api& a;
  blas::LtDesc desc = nullptr;
  blas::LtLayout la = nullptr, lb = nullptr, lc = nullptr;
  blas::LtPref pref = nullptr;
  explicit LtObjects(const blas::Api& api) : a(api) {}
  ~LtObjects() {
    if (pref) a.ltMatmulPreferenceDestroy(pref);
    if (lc) a.ltMatrixLayoutDestroy(lc);
    if (lb) a.ltMatrixLayoutDestroy(lb);
    if (la) a.ltMatrixLayoutDestroy(la);
    if (desc) a.ltMatmulDescDestroy(desc);
  }
  LtObjects(const LtObjects&) = delete;
  LtObjects& operator=(const LtObjects&) = delete;
};

template <class V>
void append_key(std::string& k, const V& v) {
  k.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

int data_type(InType t) { return t == InType::f32 ? blas::kR32F : t == InType::bf16 ? blas::kR16BF : blas::kR16F; }
int data_type(OutType t) { return t == OutType::f32 ? blas::kR32F : t == OutType::bf16 ? blas::kR16BF : blas::kR16F; }

/** cuBLASLt; false when it has no algorithm for this problem (the caller runs the own GEMM). */
bool lt_gemm(InType in, OutType out, bool ta, bool tb, const GemmParams& p, int64_t batch, bool allow_tf32,
             cudaStream_t s) {
  const blas::Api& a = blas::api();
  const int dev = current_device();
  thread_local std::vector<blas::LtHandle> handles;
  blas::LtHandle h = thread_handle(handles, dev, a.ltCreate, "cublasLtCreate");
  if (h == nullptr) return false;

  const int dt = data_type(in);
  const int dt_c = data_type(out);
  const size_t es = in == InType::f32 ? 4 : 2, es_c = out == OutType::f32 ? 4 : 2;
  const int compute = (in == InType::f32 && allow_tf32) ? blas::kCompute32FFastTF32 : blas::kCompute32F;
  // Column-major view: Cᵀ (N x M) = op(B)ᵀ (N x K) * op(A)ᵀ (K x M). Lt's A is our B, Lt's B our A.
  const int32_t op_a = tb ? blas::kOpT : blas::kOpN;
  const int32_t op_b = ta ? blas::kOpT : blas::kOpN;
  const uint64_t M = static_cast<uint64_t>(p.M), N = static_cast<uint64_t>(p.N), K = static_cast<uint64_t>(p.K);

  LtObjects o(a);
  lib_check(a.ltMatmulDescCreate(&o.desc, compute, blas::kR32F), "cublasLtMatmulDescCreate");
  lib_check(a.ltMatmulDescSetAttribute(o.desc, blas::kLtDescTransA, &op_a, sizeof(op_a)),
            "cublasLtMatmulDescSetAttribute(TRANSA)");
  lib_check(a.ltMatmulDescSetAttribute(o.desc, blas::kLtDescTransB, &op_b, sizeof(op_b)),
            "cublasLtMatmulDescSetAttribute(TRANSB)");
  // Stored shapes (column-major rows x cols before the op).
  lib_check(a.ltMatrixLayoutCreate(&o.la, dt, tb ? K : N, tb ? N : K, p.ldb), "cublasLtMatrixLayoutCreate(A)");
  lib_check(a.ltMatrixLayoutCreate(&o.lb, dt, ta ? M : K, ta ? K : M, p.lda), "cublasLtMatrixLayoutCreate(B)");
  lib_check(a.ltMatrixLayoutCreate(&o.lc, dt_c, N, M, p.ldc), "cublasLtMatrixLayoutCreate(C)");
  if (batch > 1) {
    const int32_t count = static_cast<int32_t>(batch);
    const int64_t strides[3] = {p.sb, p.sa, p.sc};
    blas::LtLayout layouts[3] = {o.la, o.lb, o.lc};
    for (int i = 0; i < 3; ++i) {
      lib_check(a.ltMatrixLayoutSetAttribute(layouts[i], blas::kLtLayoutBatchCount, &count, sizeof(count)),
                "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
      lib_check(
          a.ltMatrixLayoutSetAttribute(layouts[i], blas::kLtLayoutStridedBatchOffset, &strides[i], sizeof(strides[i])),
          "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
    }
  }

  const uint32_t al_a = alignment(p.B, p.sb, es, batch);
  const uint32_t al_b = alignment(p.A, p.sa, es, batch);
  const uint32_t al_c = alignment(p.C, p.sc, es_c, batch);
  std::string key;
  key.reserve(128);
  for (int64_t v : {static_cast<int64_t>(dev), static_cast<int64_t>(dt), static_cast<int64_t>(dt_c),
                    static_cast<int64_t>(compute), static_cast<int64_t>(op_a), static_cast<int64_t>(op_b), p.M, p.N,
                    p.K, p.lda, p.ldb, p.ldc, batch, batch > 1 ? p.sa : 0, batch > 1 ? p.sb : 0, batch > 1 ? p.sc : 0})
    append_key(key, v);
  append_key(key, al_a);
  append_key(key, al_b);
  append_key(key, al_c);

  LtPlan plan;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(plan_mutex());
    auto it = plans().find(key);
    if (it != plans().end()) {
      plan = it->second;
      cached = true;
    }
  }
  if (!cached) {
    lib_check(a.ltMatmulPreferenceCreate(&o.pref), "cublasLtMatmulPreferenceCreate");
    const uint64_t ws = kLtMaxWorkspace;
    lib_check(a.ltMatmulPreferenceSetAttribute(o.pref, blas::kLtPrefMaxWorkspaceBytes, &ws, sizeof(ws)),
              "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
    const std::pair<int, uint32_t> aligns[4] = {{blas::kLtPrefMinAlignmentA, al_a},
                                                {blas::kLtPrefMinAlignmentB, al_b},
                                                {blas::kLtPrefMinAlignmentC, al_c},
                                                {blas::kLtPrefMinAlignmentD, al_c}};
    for (const auto& al : aligns)
      lib_check(a.ltMatmulPreferenceSetAttribute(o.pref, al.first, &al.second, sizeof(al.second)),
                "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT)");
    blas::LtHeuristicResult res[1];
    std::memset(res, 0, sizeof(res));
    int found = 0;
    const blas::Status st = a.ltMatmulAlgoGetHeuristic(h, o.desc, o.la, o.lb, o.lc, o.lc, o.pref, 1, res, &found);
    plan.ok = st == blas::kStatusSuccess && found > 0 && res[0].state == blas::kStatusSuccess &&
              res[0].workspaceSize <= kLtMaxWorkspace;
    if (plan.ok) {
      plan.algo = res[0].algo;
      plan.workspace = res[0].workspaceSize;
    }
    std::lock_guard<std::mutex> lock(plan_mutex());
    if (plans().size() > 4096) plans().clear();
    plans()[key] = plan;
  }
  if (!plan.ok) return false;

  Scratch ws(plan.workspace, s);
  const blas::Status st = a.ltMatmul(h, o.desc, &p.alpha, p.B, o.la, p.A, o.lb, &p.beta, p.C, o.lc, p.C, o.lc,
                                     &plan.algo, ws.as<void>(), plan.workspace, s);
  if (st == blas::kStatusNotSupported) return false;
  lib_check(st, "cublasLtMatmul");
  check_launch("cublasLtMatmul", s);
  return true;
}

// ------------------------------------------------------------------ cuBLAS

bool blas_gemm(InType in, OutType out, bool ta, bool tb, const GemmParams& p, int64_t batch, bool allow_tf32,
               cudaStream_t s) {
  const blas::Api& a = blas::api();
  const int dev = current_device();
  thread_local std::vector<blas::Handle> handles;
  blas::Handle h = thread_handle(handles, dev, a.create, "cublasCreate_v2");
  if (h == nullptr) return false;
  lib_check(a.setStream(h, s), "cublasSetStream_v2");
  const int dt = data_type(in);
  const int compute = (in == InType::f32 && allow_tf32) ? blas::kCompute32FFastTF32 : blas::kCompute32F;
  const blas::Status st =
      a.gemmStridedBatchedEx(h, tb ? blas::kOpT : blas::kOpN, ta ? blas::kOpT : blas::kOpN, static_cast<int>(p.N),
                             static_cast<int>(p.M), static_cast<int>(p.K), &p.alpha, p.B, dt, static_cast<int>(p.ldb),
                             p.sb, p.A, dt, static_cast<int>(p.lda), p.sa, &p.beta, p.C, data_type(out),
                             static_cast<int>(p.ldc), p.sc, static_cast<int>(batch), compute, blas::kGemmDefault);
  if (st == blas::kStatusNotSupported) return false;
  lib_check(st, "cublasGemmStridedBatchedEx");
  check_launch("cublasGemmStridedBatchedEx", s);
  return true;
}

// ------------------------------------------------------------------ dispatch

void validate(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda, const void* B, int64_t ldb,
              const void* C, int64_t ldc, int64_t batch, int64_t sa, int64_t sb, int64_t sc) {
  auto s = [](int64_t v) { return std::to_string(v); };
  CRATE_CUDA_REQUIRE(M >= 0, "M", "must be >= 0, got " + s(M));
  CRATE_CUDA_REQUIRE(N >= 0, "N", "must be >= 0, got " + s(N));
  CRATE_CUDA_REQUIRE(K >= 0, "K", "must be >= 0, got " + s(K));
  CRATE_CUDA_REQUIRE(batch >= 0, "batch", "must be >= 0, got " + s(batch));
  const int64_t a_row = ta ? M : K;  // row length of A as stored
  const int64_t b_row = tb ? K : N;
  CRATE_CUDA_REQUIRE(lda >= std::max<int64_t>(1, a_row), "lda",
                     s(lda) + " is smaller than a row of A as stored (" + (ta ? "K x M, M = " : "M x K, K = ") +
                         s(a_row) + ", trans_a = " + s(ta) + ")");
  CRATE_CUDA_REQUIRE(ldb >= std::max<int64_t>(1, b_row), "ldb",
                     s(ldb) + " is smaller than a row of B as stored (" + (tb ? "N x K, K = " : "K x N, N = ") +
                         s(b_row) + ", trans_b = " + s(tb) + ")");
  CRATE_CUDA_REQUIRE(ldc >= std::max<int64_t>(1, N), "ldc", s(ldc) + " is smaller than a row of C (N = " + s(N) + ")");
  CRATE_CUDA_REQUIRE(sa >= 0, "stride_a", "must be >= 0, got " + s(sa));
  CRATE_CUDA_REQUIRE(sb >= 0, "stride_b", "must be >= 0, got " + s(sb));
  CRATE_CUDA_REQUIRE(sc >= 0, "stride_c", "must be >= 0, got " + s(sc));
  // Pointers are checked only where they are read or written.
  if (batch == 0 || M == 0 || N == 0) return;
  CRATE_CUDA_REQUIRE(C != nullptr, "C", "is NULL but C is " + s(M) + " x " + s(N));
  CRATE_CUDA_REQUIRE(A != nullptr || K == 0, "A", "is NULL but op(A) is " + s(M) + " x " + s(K));
  CRATE_CUDA_REQUIRE(B != nullptr || K == 0, "B", "is NULL but op(B) is " + s(K) + " x " + s(N));
  CRATE_CUDA_REQUIRE(sc != 0 || batch == 1, "stride_c",
                     "is 0 with batch " + s(batch) + ": every product would write the same C");
}

bool fits_int(int64_t v) { return v <= INT_MAX; }

void gemm_any(InType in, OutType out, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
              int64_t lda, const void* B, int64_t ldb, float beta, void* C, int64_t ldc, int64_t batch, int64_t sa,
              int64_t sb, int64_t sc, bool allow_tf32, void* stream) {
  validate(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, batch, sa, sb, sc);
  if (M == 0 || N == 0 || batch == 0) return;
  const cudaStream_t s = resolve_stream(stream);  // after validation: bad arguments never touch CUDA
  GemmParams p{M,     N,   K, A, lda, batch > 1 ? sa : 0, B, ldb, batch > 1 ? sb : 0, C, ldc, batch > 1 ? sc : 0,
               alpha, beta};
  if (K == 0 || alpha == 0.0f) {  // C = beta * C; A and B are not read
    p.K = 0;
    own_dispatch(in, out, ta, tb, p, batch, allow_tf32, s);
    return;
  }
  const blas::Api& a = blas::api();
  const bool lib =
      (a.lt || a.blas) && !g_force_own.load(std::memory_order_relaxed) && !g_lib_broken.load(std::memory_order_relaxed);
  if (lib && fits_int(M) && fits_int(N) && fits_int(K) && fits_int(lda) && fits_int(ldb) && fits_int(ldc) &&
      fits_int(batch)) {
    if (a.lt ? lt_gemm(in, out, ta, tb, p, batch, allow_tf32, s) : blas_gemm(in, out, ta, tb, p, batch, allow_tf32, s))
      return;
  }
  own_dispatch(in, out, ta, tb, p, batch, allow_tf32, s);
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch, int64_t stride_a,
              int64_t stride_b, int64_t stride_c, bool allow_tf32, cudaStream_t stream) {
  gemm_any(InType::f32, OutType::f32, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a,
           stride_b, stride_c, allow_tf32, static_cast<void*>(stream));
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
               const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch, int64_t stride_a,
               int64_t stride_b, int64_t stride_c, cudaStream_t stream) {
  gemm_any(InType::bf16, OutType::f32, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a,
           stride_b, stride_c, false, static_cast<void*>(stream));
}

void gemm_bf16_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                    int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc, int64_t batch,
                    int64_t stride_a, int64_t stride_b, int64_t stride_c, cudaStream_t stream) {
  gemm_any(InType::bf16, OutType::bf16, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a,
           stride_b, stride_c, false, static_cast<void*>(stream));
}

}  // namespace crate::cuda

// ------------------------------------------------------------------ C ABI

extern "C" {

CRATE_API crate_status crate_cuda_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                           const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                                           float* C, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                                           int64_t stride_c, int allow_tf32, void* stream) {
  return crate::cuda::guard("crate_cuda_gemm_f32", [&] {
    crate::cuda::gemm_any(crate::cuda::InType::f32, crate::cuda::OutType::f32, trans_a != 0, trans_b != 0, M, N, K,
                          alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a, stride_b, stride_c, allow_tf32 != 0,
                          stream);
  });
}

CRATE_API crate_status crate_cuda_gemm_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                            const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                                            float* C, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                                            int64_t stride_c, void* stream) {
  return crate::cuda::guard("crate_cuda_gemm_bf16", [&] {
    crate::cuda::gemm_any(crate::cuda::InType::bf16, crate::cuda::OutType::f32, trans_a != 0, trans_b != 0, M, N, K,
                          alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a, stride_b, stride_c, false, stream);
  });
}

CRATE_API crate_status crate_cuda_gemm_bf16_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                                 const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
                                                 float beta, uint16_t* C, int64_t ldc, int64_t batch, int64_t stride_a,
                                                 int64_t stride_b, int64_t stride_c, void* stream) {
  return crate::cuda::guard("crate_cuda_gemm_bf16_bf16", [&] {
    crate::cuda::gemm_any(crate::cuda::InType::bf16, crate::cuda::OutType::bf16, trans_a != 0, trans_b != 0, M, N, K,
                          alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a, stride_b, stride_c, false, stream);
  });
}

CRATE_API crate_status crate_cuda_gemm_f16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                           const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                                           float* C, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                                           int64_t stride_c, void* stream) {
  return crate::cuda::guard("crate_cuda_gemm_f16", [&] {
    crate::cuda::gemm_any(crate::cuda::InType::f16, crate::cuda::OutType::f32, trans_a != 0, trans_b != 0, M, N, K,
                          alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a, stride_b, stride_c, false, stream);
  });
}

CRATE_API crate_status crate_cuda_gemm_f16_f16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                               const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
                                               float beta, uint16_t* C, int64_t ldc, int64_t batch, int64_t stride_a,
                                               int64_t stride_b, int64_t stride_c, void* stream) {
  return crate::cuda::guard("crate_cuda_gemm_f16_f16", [&] {
    crate::cuda::gemm_any(crate::cuda::InType::f16, crate::cuda::OutType::f16, trans_a != 0, trans_b != 0, M, N, K,
                          alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a, stride_b, stride_c, false, stream);
  });
}

CRATE_API const char* crate_cuda_gemm_backend(void) {
  thread_local std::string s;
  try {
    s = crate::cuda::backend_string();
  } catch (...) {
    s = "own tensor-core GEMM (cuBLAS state unknown: out of host memory)";
  }
  return s.c_str();
}

CRATE_API crate_status crate_cuda_gemm_force_own(int own) {
  return crate::cuda::guard("crate_cuda_gemm_force_own", [&] {
    crate::cuda::g_force_own.store(own != 0);
    const crate::cuda::blas::Api& a = crate::cuda::blas::api();
    CRATE_CUDA_REQUIRE(own != 0 || a.lt || a.blas, "own",
                       "0 asks for cuBLAS, which is not available; the own GEMM stays in use (" + a.attempts + ")");
  });
}

}  // extern "C"
