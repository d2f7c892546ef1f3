// mssa.cu: fused CUDA MSSA (multi-head subspace self-attention, Q = K = V = P_h), forward and
// backward, FlashAttention-2 style: tiled, online softmax, never an N x N matrix in memory.
// Computes what crate_mssa_{forward,backward}_f32 (native/cpu/mssa.cc) compute, same layouts:
//   P, O, dO, dP (B, N, H*p) row-major, head h = columns [h*p, (h+1)*p);  L, D (B, H, N).
//   Per (b, h):  S = scale * P_h P_h^T + mask,  A = softmax_rows(S),  O_h = A P_h,  L = logsumexp_rows(S).
//   Key j is valid for query i iff j < N, key_mask[b, j] != 0 (when given) and, if causal, j <= i.
//   A row with no valid key: O = 0, L = -inf, zero gradient. NaN scores propagate.
//
// ------------------------------------------------------------------------------------- design
// Every kernel runs kThreads = 128 threads (4 warps). p is padded to PP in {16, 32, 48, 64, 96, 128}
// (zero columns; p > 128 is rejected: the CPU kernel handles any p). Tiles are T rows of a head.
// All tile operands live in shared memory as row-major f32 with a row stride of PP + 4 (or T + 4)
// floats: rows stay 16-byte aligned (float4 / wmma) and 8 consecutive rows start in different bank
// groups (stride = 4 mod 32 words), so the float4 reads of the products are conflict-free.
//
// Tile products ("the only place tensor cores can enter"), templated on TC:
//   mm_nt<M, N, K>:  C (M, N) = A (M, K) B (N, K)^T          result written to shared memory
//   Acc<M, N>:       acc (M, N) += A (M, K) B (K, N)         accumulator kept in registers
//   TC = false (default): SIMT f32 FMA, register-blocked (each thread a TM x TN block, float4
//     shared-memory reads, k ascending: the same summation order as the CPU micro-kernel).
//   TC = true: nvcuda::wmma m16n16k8 with precision::tf32 (inputs rounded to TF32 with
//     __float_to_tf32, f32 accumulation): each warp owns whole 16 x 16 output fragments.
//   The default is SIMT because TF32 rounds the inputs to 10 mantissa bits (relative error
//   ~1e-3 in S, O and dP), which would not match the CPU kernels "to f32 rounding", and because
//   nothing here could be run on a GPU when it was written. CRATE_MSSA_TF32=1 in the environment
//   (read once) or -DCRATE_MSSA_TF32_DEFAULT=1 at build time selects the tensor-core path; both
//   are always compiled, so neither rots.
//
// Forward (mssa_fwd_kernel<PP, T = 64, TC>): one CTA per (query tile of T rows, b, h).
//   smem: Q (T, PP+4), K = V (T, PP+4), S (T, T+4), m, l, alpha, madd (T), [TC: 4 x 256 stage].
//   Per key tile (causal: only tiles j0 <= last query row, i.e. kt <= qt):
//     load K; S = Q K^T (mm_nt); each warp does the online softmax of rows w, w+4, ... with warp
//     shuffles (m_new = max(m, rowmax), S := exp(scale S - m_new) (masked: 0), l = l alpha + rowsum,
//     alpha = exp(m - m_new)); then O_acc = alpha O_acc + S V (Acc, registers).
//   Finally O = O_acc / l, L = m + log l (m = -inf: O = 0, L = -inf).
//   Query tiles run last-first (blockIdx.x reversed) so the long causal rows start first.
// Backward (mssa_bwd_kernel<PP, TJ, TI, TC>): deterministic, one pass, no atomics, no dQ scratch.
//   Since Q = K = V = P_h:  dP = scale (dS + dS^T) P + A^T dO,  dS = A o (dO P^T - D),
//   D_i = dO_i . O_i (a small pre-pass, mssa_rowdot_kernel, into a (B, H, N) scratch).
//   One CTA owns the TJ rows J of dP of one (b, h) and loops over ALL tiles I (TI rows each):
//     X   = P_J P_I^T      X[j][i] = raw score of (query j, key i) = of (query i, key j): S is
//                                    symmetric, so one product serves both directions
//     dA1 = dO_J P_I^T     dA1[j][i] = dA[j][i]   (rows J as queries: the dQ path)
//     dA2 = P_J dO_I^T     dA2[j][i] = dA[i][j]   (rows J as keys: the dK and dV paths)
//     A1[j][i] = exp(scale X - L_j) (key i valid, i <= j if causal), A2[j][i] = exp(scale X - L_i)
//     (key j valid, j <= i if causal);  E = scale (A1 o (dA1 - D_j) + A2 o (dA2 - D_i))
//     acc_J += E P_I + A2 dO_I         (= dQ_J + dK_J + dV_J contributions of tile I)
//   and writes (overwrites) its rows of dP once at the end. Products per (J, I): 5 (3 mm_nt into
//   shared memory, 2 into the register accumulator), the count of the atomic FlashAttention-2
//   backward, against 7 for the deterministic two-pass (dK dV, then dQ) variant; the symmetry of
//   S is what lets one CTA produce dQ + dK + dV of its rows on its own. Causal: tiles I wholly
//   before J need only the dQ path (3 products), tiles wholly after J only the dK/dV path (4).
//   smem: P_J, dO_J (TJ, PP+4), P_I, dO_I (TI, PP+4), X, dA1, dA2 (TJ, TI+4), L/D/madd of J, I.
//   (TJ, TI) = (64, 32) for PP <= 64 (43 - 81 KB: 2 CTAs per SM on A100 / H100), (32, 32) for
//   PP = 96, 128 (65 / 82 KB); every instance fits the 99 KiB opt-in limit of sm_86/89 too.
// Grid: x = row tiles of the head, y/z = (b, h) with a grid-stride loop (B*H up to 2^31 and beyond).
//
// ------------------------------------------------------------------------------------- numerics
// f32 everywhere, f32 accumulation; expf/logf (full precision, no fast math). A masked key (key
// mask, causal, padding) has score exactly -inf and A = 0 exactly, in forward and backward, so a
// NaN / inf in a masked key's P row never reaches a score, a row max or a row sum. It still
// reaches the products A V (0 * NaN = NaN) for the rows of its tile, as in every attention
// kernel that multiplies by V (PyTorch's SDPA included) and as on the CPU: inputs must be finite
// in masked rows too (fully masked rows are O = 0, L = -inf on both). Rows with no
// valid key so far leave (m, l, acc) untouched. The running max propagates NaN (fmaxf would drop
// it): NaN scores of valid keys make the row NaN, as on the CPU. Fully masked rows (L = -inf) and
// padding rows get A = 0 exactly in the backward.
// Differences to the CPU: summation order of the softmax row sums / D, exp implementation (the
// CPU's polynomial flushes below e^-87). Expected agreement ~1e-6 relative (SIMT), ~1e-3 (TF32).
//
// ------------------------------------------------------------------------------------- testing
// test/cuda/cuda_vs_cpu.cc compares every entry point with the CPU kernels; test/cuda_emu runs
// this file's kernels on the CPU (fibers per thread in random order, NaN-poisoned shared memory,
// a matrix-level wmma stand-in) so that the comparison runs without a GPU too. The emulator's
// build sets CRATE_MSSA_GRID_CAP small, so that the kernels' (b, h) grid-stride loops run.
#include <mma.h>

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "common.cuh"

#ifndef CRATE_MSSA_TF32_DEFAULT
#define CRATE_MSSA_TF32_DEFAULT 0
#endif
#ifndef CRATE_MSSA_GRID_CAP
#define CRATE_MSSA_GRID_CAP 65535  // the y/z grid limit of the launches (the emulator's build: smaller)
#endif

namespace crate::cuda {
namespace mssa_detail {

namespace wmma = nvcuda::wmma;

constexpr int kThreads = 128;  // threads per CTA, every kernel of this file
constexpr int kWarps = kThreads / 32;
constexpr int kMaxP = 128;    // largest head width the CUDA kernels support
constexpr int kFwdTile = 64;  // forward: query and key tile rows
constexpr float kInf = __builtin_huge_valf();

// ------------------------------------------------------------------------------ device helpers

/** The dynamic shared memory of the CTA (128-byte aligned). */
__device__ __forceinline__ float* mssa_smem() {
  extern __shared__ __align__(128) float crate_mssa_smem[];
  return crate_mssa_smem;
}

__device__ __forceinline__ float4 ld4(const float* ptr) { return *reinterpret_cast<const float4*>(ptr); }
__device__ __forceinline__ void st4(float* ptr, const float4& v) { *reinterpret_cast<float4*>(ptr) = v; }
/** Component e (compile-time after unrolling) of a float4. */
__device__ __forceinline__ float comp(const float4& v, int e) {
  return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

/** max that propagates NaN (fmaxf would return the other operand). */
__device__ __forceinline__ float nanmax(float a, float b) { return (a > b || a != a) ? a : b; }

/** Butterfly all-reduce over the 32 lanes of a warp (every lane gets the result). */
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = nanmax(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ------------------------------------------------------------------------------ tile products
// All operands: row-major f32 in shared memory, row strides (ld*, in floats) multiples of 4, base
// pointers 32-byte aligned (wmma) - every buffer offset in the layouts below is a multiple of 8
// floats and every tile row / column offset used is a multiple of 8 rows / 16 columns.

/** SIMT C (M, N) = A (M, K) B (N, K)^T. Thread (ty, tx) of an 8 x 16 grid owns rows ty + 8 i and
 * columns tx + 16 j. Per 4 k: TM float4 reads of A (same address for a quarter warp: broadcast)
 * and TN float4 reads of B (8 consecutive rows: distinct bank groups). */
template <int M, int N, int K>
__device__ __forceinline__ void mm_nt_simt(float* __restrict__ C, int ldc, const float* __restrict__ A, int lda,
                                           const float* __restrict__ B, int ldb) {
  constexpr int TX = 16, TY = kThreads / TX;
  static_assert(M % TY == 0 && N % TX == 0 && K % 4 == 0, "mm_nt_simt: tile shape");
  constexpr int TM = M / TY, TN = N / TX;
  const int tx = threadIdx.x % TX, ty = threadIdx.x / TX;
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
#pragma unroll 2
  for (int k = 0; k < K; k += 4) {
    float4 a[TM], b[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) a[i] = ld4(A + (ty + i * TY) * lda + k);
#pragma unroll
    for (int j = 0; j < TN; ++j) b[j] = ld4(B + (tx + j * TX) * ldb + k);
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        acc[i][j] = fmaf(a[i].x, b[j].x, acc[i][j]);
        acc[i][j] = fmaf(a[i].y, b[j].y, acc[i][j]);
        acc[i][j] = fmaf(a[i].z, b[j].z, acc[i][j]);
        acc[i][j] = fmaf(a[i].w, b[j].w, acc[i][j]);
      }
  }
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) C[(ty + i * TY) * ldc + tx + j * TX] = acc[i][j];
}

/** Rounds the elements of a TF32 wmma fragment (required before mma_sync with f32 data). */
template <class Frag>
__device__ __forceinline__ void to_tf32(Frag& f) {
#pragma unroll
  for (int e = 0; e < f.num_elements; ++e) f.x[e] = wmma::__float_to_tf32(f.x[e]);
}

/** Tensor-core C (M, N) = A (M, K) B (N, K)^T: warp w computes the 16 x 16 output blocks
 * g = w, w + 4, ... (block row g / (N/16), block column g % (N/16)); B (N, K) row-major is the
 * K x N operand in col_major layout with the same ld. */
template <int M, int N, int K>
__device__ __forceinline__ void mm_nt_tc(float* __restrict__ C, int ldc, const float* __restrict__ A, int lda,
                                         const float* __restrict__ B, int ldb) {
  static_assert(M % 16 == 0 && N % 16 == 0 && K % 8 == 0, "mm_nt_tc: tile shape");
  constexpr int FC = N / 16, NB = (M / 16) * FC;
  const int warp = threadIdx.x / 32;
  for (int g = warp; g < NB; g += kWarps) {
    const int r0 = 16 * (g / FC), c0 = 16 * (g % FC);
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
    wmma::fill_fragment(c, 0.f);
#pragma unroll 2
    for (int k = 0; k < K; k += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b;
      wmma::load_matrix_sync(a, A + r0 * lda + k, lda);  // A[r0 .. r0+16)[k .. k+8)
      wmma::load_matrix_sync(b, B + c0 * ldb + k, ldb);  // (kk, n) = B[c0 + n][k + kk]
      to_tf32(a);
      to_tf32(b);
      wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + r0 * ldc + c0, c, ldc, wmma::mem_row_major);
  }
}

template <bool TC, int M, int N, int K>
__device__ __forceinline__ void mm_nt(float* __restrict__ C, int ldc, const float* __restrict__ A, int lda,
                                      const float* __restrict__ B, int ldb) {
  if constexpr (TC)
    mm_nt_tc<M, N, K>(C, ldc, A, lda, B, ldb);
  else
    mm_nt_simt<M, N, K>(C, ldc, A, lda, B, ldb);
}

/** SIMT register accumulator acc (M, N). Thread (ty, tx) of a TY x TX grid owns rows ty + TY i
 * and the float4 column groups tx + TX j (columns 4 (tx + TX j) .. + 3). */
template <int M, int N>
struct AccSimt {
  static constexpr int TX = (N % 64 == 0) ? 16 : (N % 32 == 0) ? 8 : 4;
  static constexpr int TY = kThreads / TX;
  static constexpr int TM = M / TY;
  static constexpr int TN4 = N / (4 * TX);
  static_assert(N % 16 == 0 && M % TY == 0 && TM >= 1 && TN4 >= 1, "AccSimt: tile shape");
  float v[TM][TN4][4];

  __device__ __forceinline__ static int tx() { return threadIdx.x % TX; }
  __device__ __forceinline__ static int ty() { return threadIdx.x / TX; }

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][j][e] = 0.f;
  }
  /** acc += A (M, K) B (K, N). */
  template <int K>
  __device__ __forceinline__ void mma_nn(const float* __restrict__ A, int lda, const float* __restrict__ B, int ldb) {
    static_assert(K % 4 == 0, "AccSimt::mma_nn: K");
    const int r = ty(), c = 4 * tx();
#pragma unroll 2
    for (int k = 0; k < K; k += 4) {
      float4 a[TM];
#pragma unroll
      for (int i = 0; i < TM; ++i) a[i] = ld4(A + (r + i * TY) * lda + k);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
        for (int j = 0; j < TN4; ++j) {
          const float4 b = ld4(B + (k + kk) * ldb + c + 4 * TX * j);
#pragma unroll
          for (int i = 0; i < TM; ++i) {
            const float s = comp(a[i], kk);
            v[i][j][0] = fmaf(s, b.x, v[i][j][0]);
            v[i][j][1] = fmaf(s, b.y, v[i][j][1]);
            v[i][j][2] = fmaf(s, b.z, v[i][j][2]);
            v[i][j][3] = fmaf(s, b.w, v[i][j][3]);
          }
        }
      }
    }
  }
  /** Row r of acc *= alpha[r] (alpha in shared memory). stage: unused (TC path only). */
  __device__ __forceinline__ void scale_rows(const float* alpha, float* /*stage*/) {
    const int r = ty();
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const float s = alpha[r + i * TY];
#pragma unroll
      for (int j = 0; j < TN4; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) v[i][j][e] *= s;
    }
  }
  /** C (M, N) = acc, C row-major in shared memory. */
  __device__ __forceinline__ void store(float* C, int ldc) const {
    const int r = ty(), c = 4 * tx();
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN4; ++j)
        st4(C + (r + i * TY) * ldc + c + 4 * TX * j, make_float4(v[i][j][0], v[i][j][1], v[i][j][2], v[i][j][3]));
  }
};

/** Tensor-core accumulator acc (M, N): warp w owns the 16 x 16 fragments g = w + 4 i < NB
 * (block row g / (N/16), block column g % (N/16)), kept in registers across calls. When NB is not
 * a multiple of 4 the last slot of some warps is unused (warp-uniform test `has(i)`). */
template <int M, int N>
struct AccTc {
  static constexpr int FC = N / 16;
  static constexpr int NB = (M / 16) * FC;               // 16 x 16 blocks
  static constexpr int NF = (NB + kWarps - 1) / kWarps;  // fragment slots per warp
  static_assert(M % 16 == 0 && N % 16 == 0, "AccTc: tile shape");
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> f[NF];

  __device__ __forceinline__ static int block(int i) { return int(threadIdx.x / 32) + kWarps * i; }
  __device__ __forceinline__ static bool has(int i) { return block(i) < NB; }
  __device__ __forceinline__ static int row0(int i) { return 16 * (block(i) / FC); }
  __device__ __forceinline__ static int col0(int i) { return 16 * (block(i) % FC); }

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < NF; ++i) wmma::fill_fragment(f[i], 0.f);
  }
  template <int K>
  __device__ __forceinline__ void mma_nn(const float* __restrict__ A, int lda, const float* __restrict__ B, int ldb) {
    static_assert(K % 8 == 0, "AccTc::mma_nn: K");
#pragma unroll
    for (int i = 0; i < NF; ++i) {
      if (!has(i)) continue;
      const int r0 = row0(i), c0 = col0(i);
#pragma unroll 2
      for (int k = 0; k < K; k += 8) {
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b;
        wmma::load_matrix_sync(a, A + r0 * lda + k, lda);  // A[r0 .. r0+16)[k .. k+8)
        wmma::load_matrix_sync(b, B + k * ldb + c0, ldb);  // B[k .. k+8)[c0 .. c0+16)
        to_tf32(a);
        to_tf32(b);
        wmma::mma_sync(f[i], a, b, f[i]);
      }
    }
  }
  /** Row r of acc *= alpha[r]. The fragment layout is opaque, so each fragment goes through the
   * warp's private 16 x 16 staging buffer `stage` (256 floats, 32-byte aligned). */
  __device__ __forceinline__ void scale_rows(const float* alpha, float* stage) {
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int i = 0; i < NF; ++i) {
      if (!has(i)) continue;
      const int r0 = row0(i);
      wmma::store_matrix_sync(stage, f[i], 16, wmma::mem_row_major);
      __syncwarp();
      for (int e = lane; e < 256; e += 32) stage[e] *= alpha[r0 + e / 16];
      __syncwarp();
      wmma::load_matrix_sync(f[i], stage, 16, wmma::mem_row_major);
      __syncwarp();  // every lane has loaded before the next fragment overwrites stage
    }
  }
  __device__ __forceinline__ void store(float* C, int ldc) const {
#pragma unroll
    for (int i = 0; i < NF; ++i)
      if (has(i)) wmma::store_matrix_sync(C + row0(i) * ldc + col0(i), f[i], ldc, wmma::mem_row_major);
  }
};

template <bool TC, int M, int N>
using Acc = std::conditional_t<TC, AccTc<M, N>, AccSimt<M, N>>;

// ------------------------------------------------------------------------------ tile loads

/** dst (T, ld) <- rows [r0, r0 + T) of one head: row r at src + r * ld_src, p valid columns;
 * rows >= N and columns p .. PP-1 are zero (they enter the products). Columns >= PP untouched. */
template <int PP, int T>
__device__ __forceinline__ void load_tile(float* __restrict__ dst, int ld, const float* __restrict__ src,
                                          int64_t ld_src, int64_t r0, int64_t N, int p) {
  for (int idx = threadIdx.x; idx < T * PP; idx += kThreads) {
    const int r = idx / PP, k = idx % PP;  // consecutive threads: consecutive columns (coalesced)
    const int64_t g = r0 + r;
    dst[r * ld + k] = (g < N && k < p) ? src[g * ld_src + k] : 0.f;
  }
}

/** madd[r] = 0 if key r0 + r is valid (< N and not masked by key_mask_b), else -inf. */
template <int T>
__device__ __forceinline__ void load_key_madd(float* madd, const uint8_t* key_mask_b, int64_t r0, int64_t N) {
  for (int r = threadIdx.x; r < T; r += kThreads) {
    const int64_t g = r0 + r;
    madd[r] = (g < N && (key_mask_b == nullptr || key_mask_b[g] != 0)) ? 0.f : -kInf;
  }
}

// ------------------------------------------------------------------------------ forward

struct FwdParams {
  const float* P;           // (B, N, H*p)
  float* O;                 // (B, N, H*p)
  float* L;                 // (B, H, N) or nullptr
  const uint8_t* key_mask;  // (B, N) or nullptr
  int64_t B, N, H, p, BH;
  int64_t num_tiles;  // ceil(N / T) = gridDim.x
  float scale;
  int causal;
};

template <int PP, int T, bool TC>
struct FwdLayout {                          // offsets in floats into the dynamic shared memory
  static constexpr int LD = PP + 4;         // row stride of the (T, PP) tiles
  static constexpr int LDS = T + 4;         // row stride of the (T, T) score tile
  static constexpr int kQ = 0;              // Q (T, LD): the query tile, all key tiles
  static constexpr int kK = kQ + T * LD;    // K = V (T, LD): the current key tile
  static constexpr int kS = kK + T * LD;    // S (T, LDS): scores, then probabilities
  static constexpr int kM = kS + T * LDS;   // m (T): running row max (scaled scores)
  static constexpr int kL = kM + T;         // l (T): running row sum
  static constexpr int kAlpha = kL + T;     // alpha (T): exp(m_old - m_new) of the tile
  static constexpr int kMadd = kAlpha + T;  // madd (T): 0 / -inf per key of the tile
  static constexpr int kStage = kMadd + T;  // TC: 4 warps x 256 floats staging
  static constexpr int kFloats = kStage + (TC ? kWarps * 256 : 0);
  static constexpr size_t kBytes = sizeof(float) * kFloats;
  static_assert(kK % 8 == 0 && kS % 8 == 0 && kM % 8 == 0 && kStage % 8 == 0, "32-byte aligned buffers");
};

template <int PP, int T, bool TC>
__global__ void __launch_bounds__(kThreads, 2) mssa_fwd_kernel(const FwdParams prm) {
  using Lay = FwdLayout<PP, T, TC>;
  constexpr int LD = Lay::LD, LDS = Lay::LDS, CPL = T / 32;  // CPL: score columns per lane
  static_assert(T % 32 == 0, "T");
  float* sm = mssa_smem();
  float* Qs = sm + Lay::kQ;           // (T, LD)
  float* Ks = sm + Lay::kK;           // (T, LD)
  float* Ss = sm + Lay::kS;           // (T, LDS)
  float* m_s = sm + Lay::kM;          // (T)
  float* l_s = sm + Lay::kL;          // (T)
  float* alpha_s = sm + Lay::kAlpha;  // (T)
  float* madd_s = sm + Lay::kMadd;    // (T)
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  float* stage = sm + Lay::kStage + warp * 256;  // TC only (never touched by the SIMT path)
  const int64_t N = prm.N, H = prm.H, HP = prm.H * prm.p;
  const int p = static_cast<int>(prm.p);
  const float scale = prm.scale;
  const int64_t qt = static_cast<int64_t>(gridDim.x) - 1 - blockIdx.x;  // query tile, last first
  const int64_t i0 = qt * T;                                            // first query row
  const int64_t kend = prm.causal ? qt + 1 : prm.num_tiles;             // key tiles [0, kend)

  for (int64_t bh = blockIdx.y + static_cast<int64_t>(blockIdx.z) * gridDim.y; bh < prm.BH;
       bh += static_cast<int64_t>(gridDim.y) * gridDim.z) {
    const int64_t b = bh / H, h = bh % H;
    const float* Ph = prm.P + b * N * HP + h * p;  // row i of head (b, h): Ph + i * HP
    const uint8_t* km = prm.key_mask ? prm.key_mask + b * N : nullptr;

    __syncthreads();  // the previous (b, h) iteration is done with all shared memory
    load_tile<PP, T>(Qs, LD, Ph, HP, i0, N, p);
    for (int r = tid; r < T; r += kThreads) {
      m_s[r] = -kInf;
      l_s[r] = 0.f;
    }
    Acc<TC, T, PP> acc;  // O accumulator (T, PP), unnormalised
    acc.zero();

    for (int64_t kt = 0; kt < kend; ++kt) {
      const int64_t j0 = kt * T;  // first key row
      __syncthreads();            // previous key tile: every warp is done reading Ks and Ss
      load_tile<PP, T>(Ks, LD, Ph, HP, j0, N, p);
      load_key_madd<T>(madd_s, km, j0, N);
      __syncthreads();

      mm_nt<TC, T, T, PP>(Ss, LDS, Qs, LD, Ks, LD);  // Ss (T, T) = Q K^T, raw
      __syncthreads();

      // Online softmax, warp w owns rows w, w + 4, ...: lane holds columns lane + 32 c.
      for (int r = warp; r < T; r += kWarps) {
        const int64_t gi = i0 + r;  // query row (>= N: padding row, computed, never written)
        const float m_old = m_s[r], l_old = l_s[r];
        float s[CPL];
        float mx = -kInf;
#pragma unroll
        for (int c = 0; c < CPL; ++c) {
          const int col = lane + 32 * c;
          // masked key (madd -inf) or causal: exactly -inf, whatever the score (NaN, inf) is
          float v = (madd_s[col] == 0.f && !(prm.causal && j0 + col > gi)) ? Ss[r * LDS + col] * scale : -kInf;
          s[c] = v;
          mx = nanmax(mx, v);
        }
        mx = warp_max(mx);
        const float m_new = nanmax(m_old, mx);  // NaN stays NaN
        if (m_new == -kInf) {                   // no valid key so far (warp-uniform): nothing changes
#pragma unroll
          for (int c = 0; c < CPL; ++c) Ss[r * LDS + lane + 32 * c] = 0.f;
          if (lane == 0) alpha_s[r] = 1.f;
          continue;
        }
        float sum = 0.f;
#pragma unroll
        for (int c = 0; c < CPL; ++c) {
          const float e = expf(s[c] - m_new);  // masked: exp(-inf) = 0
          Ss[r * LDS + lane + 32 * c] = e;
          sum += e;
        }
        sum = warp_sum(sum);
        const float alpha = expf(m_old - m_new);  // 0 when m_old = -inf
        // Every lane has read m_s[r], l_s[r] before lane 0 overwrites them: the shuffles above
        // order no memory accesses, a __syncwarp does (a read/write race for racecheck otherwise).
        __syncwarp();
        if (lane == 0) {
          l_s[r] = l_old * alpha + sum;
          m_s[r] = m_new;
          alpha_s[r] = alpha;
        }
      }
      __syncthreads();

      acc.scale_rows(alpha_s, stage);           // O_acc *= alpha (per row)
      acc.template mma_nn<T>(Ss, LDS, Ks, LD);  // O_acc += A V   (T, PP)
    }

    __syncthreads();    // every warp is done with Ks (the last V tile)
    acc.store(Ks, LD);  // O_acc (T, PP) staged in the key tile buffer
    __syncthreads();
    float* Oh = prm.O + b * N * HP + h * p;
    for (int idx = tid; idx < T * PP; idx += kThreads) {
      const int r = idx / PP, k = idx % PP;
      const int64_t gi = i0 + r;
      if (gi < N && k < p) {
        const float m = m_s[r];
        Oh[gi * HP + k] = (m == -kInf) ? 0.f : Ks[r * LD + k] * (1.f / l_s[r]);
      }
    }
    if (prm.L) {
      for (int r = tid; r < T; r += kThreads) {
        const int64_t gi = i0 + r;
        if (gi < N) {
          const float m = m_s[r];
          prm.L[bh * N + gi] = (m == -kInf) ? -kInf : m + logf(l_s[r]);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------ backward

struct RowdotParams {
  const float* O;   // (B, N, H*p)
  const float* dO;  // (B, N, H*p)
  float* D;         // (B, H, N)
  int64_t B, N, H, p;
};

/** D[b, h, i] = dO[b, i, head h] . O[b, i, head h]: one warp per (b, i, h) row (grid-stride). */
__global__ void __launch_bounds__(kThreads, 2) mssa_rowdot_kernel(const RowdotParams prm) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t rows = prm.B * prm.N * prm.H;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarps) {
    const float* o = prm.O + row * prm.p;  // row = (b N + i) H + h, whose p values are contiguous
    const float* d = prm.dO + row * prm.p;
    float s = 0.f;
    for (int64_t k = lane; k < prm.p; k += 32) s = fmaf(o[k], d[k], s);
    s = warp_sum(s);
    if (lane == 0) {
      const int64_t bn = row / prm.H, h = row % prm.H, b = bn / prm.N, i = bn % prm.N;
      prm.D[(b * prm.H + h) * prm.N + i] = s;
    }
  }
}

struct BwdParams {
  const float* P;           // (B, N, H*p)
  const float* L;           // (B, H, N) from the forward
  const float* dO;          // (B, N, H*p)
  const float* D;           // (B, H, N) from mssa_rowdot_kernel
  float* dP;                // (B, N, H*p), overwritten
  const uint8_t* key_mask;  // (B, N) or nullptr
  int64_t B, N, H, p, BH;
  int64_t num_tiles_i;  // ceil(N / TI): the tiles I every CTA loops over (gridDim.x = ceil(N / TJ))
  float scale;
  int causal;
};

/** TJ: rows of dP a CTA owns (tile J); TI: rows of the streamed tiles I. */
template <int PP, int TJ, int TI>
struct BwdLayout {  // offsets in floats into the dynamic shared memory
  static constexpr int LD = PP + 4;
  static constexpr int LDS = TI + 4;
  static constexpr int kPj = 0;               // P_J (TJ, LD): this CTA's rows; at the end the dP staging
  static constexpr int kGj = kPj + TJ * LD;   // dO_J (TJ, LD)
  static constexpr int kPi = kGj + TJ * LD;   // P_I (TI, LD): the current tile
  static constexpr int kGi = kPi + TI * LD;   // dO_I (TI, LD)
  static constexpr int kX = kGi + TI * LD;    // X (TJ, LDS): raw scores, then E
  static constexpr int kA1 = kX + TJ * LDS;   // dA1 (TJ, LDS) = dA[J, I]
  static constexpr int kA2 = kA1 + TJ * LDS;  // dA2 (TJ, LDS) = dA[I, J]^T, then A[I, J]^T
  static constexpr int kLj = kA2 + TJ * LDS;  // L of rows J, -inf replaced by +inf (TJ)
  static constexpr int kDj = kLj + TJ;        // D of rows J (TJ)
  static constexpr int kMj = kDj + TJ;        // madd of keys J (TJ)
  static constexpr int kLi = kMj + TJ;        // same for tile I (TI each)
  static constexpr int kDi = kLi + TI;
  static constexpr int kMi = kDi + TI;
  static constexpr int kFloats = kMi + TI;
  static constexpr size_t kBytes = sizeof(float) * kFloats;
  static_assert(kGj % 8 == 0 && kPi % 8 == 0 && kGi % 8 == 0 && kX % 8 == 0 && kA1 % 8 == 0 && kA2 % 8 == 0,
                "32-byte aligned buffers");
};

/** Row statistics of rows [r0, r0 + T) of head bh: Ls = L (-inf and padding -> +inf, so that
 * exp(x - Ls) = 0), Ds = D (padding 0), Ms = key madd (0 / -inf). */
template <int T>
__device__ __forceinline__ void load_row_stats(float* Ls, float* Ds, float* Ms, const float* L_bh, const float* D_bh,
                                               const uint8_t* key_mask_b, int64_t r0, int64_t N) {
  for (int r = threadIdx.x; r < T; r += kThreads) {
    const int64_t g = r0 + r;
    if (g < N) {
      const float l = L_bh[g];
      Ls[r] = (l == -kInf) ? kInf : l;
      Ds[r] = D_bh[g];
      Ms[r] = (key_mask_b == nullptr || key_mask_b[g] != 0) ? 0.f : -kInf;
    } else {
      Ls[r] = kInf;
      Ds[r] = 0.f;
      Ms[r] = -kInf;
    }
  }
}

template <int PP, int TJ, int TI, bool TC>
__global__ void __launch_bounds__(kThreads, 2) mssa_bwd_kernel(const BwdParams prm) {
  using Lay = BwdLayout<PP, TJ, TI>;
  constexpr int LD = Lay::LD, LDS = Lay::LDS;
  float* sm = mssa_smem();
  float* Pj = sm + Lay::kPj;  // (TJ, LD)
  float* Gj = sm + Lay::kGj;  // (TJ, LD)
  float* Pi = sm + Lay::kPi;  // (TI, LD)
  float* Gi = sm + Lay::kGi;  // (TI, LD)
  float* X = sm + Lay::kX;    // (TJ, LDS)
  float* A1 = sm + Lay::kA1;  // (TJ, LDS)
  float* A2 = sm + Lay::kA2;  // (TJ, LDS)
  float* Lj = sm + Lay::kLj;  // (TJ)
  float* Dj = sm + Lay::kDj;
  float* Mj = sm + Lay::kMj;
  float* Li = sm + Lay::kLi;  // (TI)
  float* Di = sm + Lay::kDi;
  float* Mi = sm + Lay::kMi;
  const int tid = threadIdx.x;
  const int64_t N = prm.N, H = prm.H, HP = prm.H * prm.p;
  const int p = static_cast<int>(prm.p);
  const float scale = prm.scale;
  const bool causal = prm.causal != 0;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * TJ;  // rows [j0, j0 + TJ) of dP: this CTA's

  for (int64_t bh = blockIdx.y + static_cast<int64_t>(blockIdx.z) * gridDim.y; bh < prm.BH;
       bh += static_cast<int64_t>(gridDim.y) * gridDim.z) {
    const int64_t b = bh / H, h = bh % H;
    const float* Ph = prm.P + b * N * HP + h * p;  // row i of the head: Ph + i * HP
    const float* Gh = prm.dO + b * N * HP + h * p;
    const float* Lbh = prm.L + bh * N;
    const float* Dbh = prm.D + bh * N;
    const uint8_t* km = prm.key_mask ? prm.key_mask + b * N : nullptr;

    __syncthreads();  // the previous (b, h) iteration is done with all shared memory
    load_tile<PP, TJ>(Pj, LD, Ph, HP, j0, N, p);
    load_tile<PP, TJ>(Gj, LD, Gh, HP, j0, N, p);
    load_row_stats<TJ>(Lj, Dj, Mj, Lbh, Dbh, km, j0, N);
    Acc<TC, TJ, PP> acc;  // dQ_J + dK_J + dV_J (TJ, PP)
    acc.zero();

    for (int64_t it = 0; it < prm.num_tiles_i; ++it) {
      const int64_t i0 = it * TI;
      // Causal: A[q, k] != 0 needs k <= q. Rows J as queries of keys I (dQ path) need some
      // i <= j: i0 <= j0 + TJ - 1; rows J as keys of queries I (dK, dV paths) need some j <= i.
      const bool use_q = !causal || i0 <= j0 + TJ - 1;
      const bool use_k = !causal || i0 + TI - 1 >= j0;
      __syncthreads();  // every warp is done with Pi, Gi, X, A2 of the previous tile
      load_tile<PP, TI>(Pi, LD, Ph, HP, i0, N, p);
      load_tile<PP, TI>(Gi, LD, Gh, HP, i0, N, p);
      load_row_stats<TI>(Li, Di, Mi, Lbh, Dbh, km, i0, N);
      __syncthreads();

      mm_nt<TC, TJ, TI, PP>(X, LDS, Pj, LD, Pi, LD);              // X[j][i]   = P_j . P_i
      if (use_q) mm_nt<TC, TJ, TI, PP>(A1, LDS, Gj, LD, Pi, LD);  // dA1[j][i] = dO_j . P_i
      if (use_k) mm_nt<TC, TJ, TI, PP>(A2, LDS, Pj, LD, Gi, LD);  // dA2[j][i] = P_j . dO_i
      __syncthreads();

      // E = scale (A[J,I] o (dA1 - D_J) + A[I,J]^T o (dA2 - D_I)) into X, A[I,J]^T into A2.
      for (int idx = tid; idx < TJ * TI; idx += kThreads) {
        const int j = idx / TI, i = idx % TI;
        const int64_t gj = j0 + j, gi = i0 + i;
        const float x = X[j * LDS + i] * scale;  // scaled score of (j, i) and of (i, j)
        float e = 0.f, a2 = 0.f;
        // query gj, key gi
        if (use_q && Mi[i] == 0.f && !(causal && gi > gj) && Lj[j] != kInf) {
          const float a1 = expf(x - Lj[j]);
          e = a1 * (A1[j * LDS + i] - Dj[j]);
        }
        // query gi, key gj
        if (use_k && Mj[j] == 0.f && !(causal && gj > gi) && Li[i] != kInf) {
          a2 = expf(x - Li[i]);
          e += a2 * (A2[j * LDS + i] - Di[i]);
        }
        X[j * LDS + i] = e * scale;
        A2[j * LDS + i] = a2;
      }
      __syncthreads();

      acc.template mma_nn<TI>(X, LDS, Pi, LD);              // += E P_I           (dQ_J + dK_J)
      if (use_k) acc.template mma_nn<TI>(A2, LDS, Gi, LD);  // += A[I,J]^T dO_I   (dV_J)
    }

    __syncthreads();    // every warp is done with Pj (and everything else)
    acc.store(Pj, LD);  // (TJ, PP) staged in the P_J buffer
    __syncthreads();
    float* dPh = prm.dP + b * N * HP + h * p;
    for (int idx = tid; idx < TJ * PP; idx += kThreads) {
      const int r = idx / PP, k = idx % PP;
      const int64_t gj = j0 + r;
      if (gj < N && k < p) dPh[gj * HP + k] = Pj[r * LD + k];
    }
  }
}

// ------------------------------------------------------------------------------ dispatch (host)

/** The padded head width of the kernel instance serving p (1 <= p <= 128). */
inline int padded_width(int64_t p) {
  if (p <= 16) return 16;
  if (p <= 32) return 32;
  if (p <= 48) return 48;
  if (p <= 64) return 64;
  if (p <= 96) return 96;
  return 128;
}

/** Grid (x = tiles, y * z >= B*H capped at `cap` each; the kernels loop over (b, h)). */
inline dim3 tile_grid(int64_t tiles, int64_t BH, int64_t cap) {
  const int64_t y = BH < cap ? BH : cap;
  int64_t z = (BH + y - 1) / y;
  if (z > cap) z = cap;
  return dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(y), static_cast<unsigned>(z));
}

inline void require_smem(size_t need, int64_t max_smem, const char* fn) {
  if (static_cast<int64_t>(need) > max_smem)
    throw Error(CRATE_ERR_CUDA, std::string(fn) + ": the kernel needs " + std::to_string(need) +
                                    " bytes of shared memory per block, the device allows " + std::to_string(max_smem));
}

// `launch(kernel, grid, threads, smem_bytes, params)` launches one kernel. max_smem: the device's
// opt-in shared memory per block; grid_cap: the y/z grid limit (CRATE_MSSA_GRID_CAP: 65535; smaller
// in the emulator's build, to exercise the (b, h) loop).
template <int PP, class Launch>
void forward_pp(FwdParams prm, bool tc, int64_t max_smem, int64_t grid_cap, Launch&& launch) {
  constexpr int T = kFwdTile;
  prm.num_tiles = (prm.N + T - 1) / T;
  const dim3 grid = tile_grid(prm.num_tiles, prm.BH, grid_cap);
  if (tc) {
    require_smem(FwdLayout<PP, T, true>::kBytes, max_smem, "mssa_forward");
    launch(mssa_fwd_kernel<PP, T, true>, grid, kThreads, FwdLayout<PP, T, true>::kBytes, prm);
  } else {
    require_smem(FwdLayout<PP, T, false>::kBytes, max_smem, "mssa_forward");
    launch(mssa_fwd_kernel<PP, T, false>, grid, kThreads, FwdLayout<PP, T, false>::kBytes, prm);
  }
}

template <class Launch>
void launch_forward(const FwdParams& prm, bool tc, int64_t max_smem, int64_t grid_cap, Launch&& launch) {
  switch (padded_width(prm.p)) {
    case 16:
      return forward_pp<16>(prm, tc, max_smem, grid_cap, launch);
    case 32:
      return forward_pp<32>(prm, tc, max_smem, grid_cap, launch);
    case 48:
      return forward_pp<48>(prm, tc, max_smem, grid_cap, launch);
    case 64:
      return forward_pp<64>(prm, tc, max_smem, grid_cap, launch);
    case 96:
      return forward_pp<96>(prm, tc, max_smem, grid_cap, launch);
    default:
      return forward_pp<128>(prm, tc, max_smem, grid_cap, launch);
  }
}

template <int PP, int TJ, int TI, class Launch>
void backward_pp(BwdParams prm, bool tc, int64_t max_smem, int64_t grid_cap, Launch&& launch) {
  constexpr size_t bytes = BwdLayout<PP, TJ, TI>::kBytes;
  require_smem(bytes, max_smem, "mssa_backward");
  prm.num_tiles_i = (prm.N + TI - 1) / TI;
  const dim3 grid = tile_grid((prm.N + TJ - 1) / TJ, prm.BH, grid_cap);
  if (tc)
    launch(mssa_bwd_kernel<PP, TJ, TI, true>, grid, kThreads, bytes, prm);
  else
    launch(mssa_bwd_kernel<PP, TJ, TI, false>, grid, kThreads, bytes, prm);
}

/** CTAs own TJ = 64 rows and stream tiles of TI = 32 for PP <= 64 (43-81 KB of shared memory:
 * 2 CTAs per SM on A100/H100, fits the 99 KiB of sm_86/89), TJ = TI = 32 for PP = 96, 128
 * (65 / 82 KB). */
template <class Launch>
void launch_backward_main(const BwdParams& prm, bool tc, int64_t max_smem, int64_t grid_cap, Launch&& launch) {
  switch (padded_width(prm.p)) {
    case 16:
      return backward_pp<16, 64, 32>(prm, tc, max_smem, grid_cap, launch);
    case 32:
      return backward_pp<32, 64, 32>(prm, tc, max_smem, grid_cap, launch);
    case 48:
      return backward_pp<48, 64, 32>(prm, tc, max_smem, grid_cap, launch);
    case 64:
      return backward_pp<64, 64, 32>(prm, tc, max_smem, grid_cap, launch);
    case 96:
      return backward_pp<96, 32, 32>(prm, tc, max_smem, grid_cap, launch);
    default:
      return backward_pp<128, 32, 32>(prm, tc, max_smem, grid_cap, launch);
  }
}

/** Argument checks shared by forward and backward (messages as the CPU kernels'). */
inline void check_sizes(const char* fn, int64_t B, int64_t N, int64_t H, int64_t p) {
  CRATE_CUDA_REQUIRE(B >= 0, fn, "B must be >= 0, got " + std::to_string(B));
  CRATE_CUDA_REQUIRE(N >= 0, fn, "N must be >= 0, got " + std::to_string(N));
  CRATE_CUDA_REQUIRE(H >= 1, fn, "H must be >= 1, got " + std::to_string(H));
  CRATE_CUDA_REQUIRE(p >= 1, fn, "p must be >= 1, got " + std::to_string(p));
  CRATE_CUDA_REQUIRE(p <= kMaxP, fn,
                     "p = " + std::to_string(p) + " is not supported by the CUDA MSSA kernels (head width at most " +
                         std::to_string(kMaxP) + "); use the CPU kernels for wider heads");
  const int64_t lim = int64_t(1) << 40;
  CRATE_CUDA_REQUIRE(
      B <= lim && N <= lim && H <= lim &&
          static_cast<double>(B) * static_cast<double>(N) * static_cast<double>(H) * static_cast<double>(p) <= 1e15 &&
          (N + 31) / 32 <= 0x7fffffff,
      fn,
      "sizes too large (B=" + std::to_string(B) + ", N=" + std::to_string(N) + ", H=" + std::to_string(H) +
          ", p=" + std::to_string(p) + ")");
}

/** TF32 tensor cores for the tile products: CRATE_MSSA_TF32=1 / =0 in the environment (read
 * once), else the build default CRATE_MSSA_TF32_DEFAULT (0: exact-f32 SIMT products). */
inline bool use_tf32() {
  static const bool v = [] {
    const char* e = std::getenv("CRATE_MSSA_TF32");
    if (e && *e) return e[0] == '1';
    return CRATE_MSSA_TF32_DEFAULT != 0;
  }();
  return v;
}

}  // namespace mssa_detail
}  // namespace crate::cuda

// ------------------------------------------------------------------------------------- C ABI
namespace {

using namespace crate::cuda;
using namespace crate::cuda::mssa_detail;

/** Launches on a stream: sets the dynamic shared memory limit, launches, checks. */
struct CudaLaunch {
  cudaStream_t stream;
  const char* what;
  template <class Params>
  void operator()(void (*kernel)(Params), dim3 grid, int threads, size_t smem, const Params& prm) const {
    if (smem > 48 * 1024)
      check(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 static_cast<int>(smem)),
            "cudaFuncSetAttribute (mssa shared memory)");
    kernel<<<grid, threads, smem, stream>>>(prm);
    check_launch(what, stream);
  }
};

int64_t max_smem_optin() {
  int dev = 0, v = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
        "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
  return v;
}

constexpr int64_t kGridCap = CRATE_MSSA_GRID_CAP;

}  // namespace

extern "C" {

CRATE_API crate_status crate_cuda_mssa_forward_f32(const float* P, float* O, float* L, int64_t B, int64_t N, int64_t H,
                                                   int64_t p, float scale, int causal, const uint8_t* key_mask,
                                                   void* stream) {
  return guard("crate_cuda_mssa_forward_f32", [&] {
    const char* fn = "mssa_forward";
    check_sizes(fn, B, N, H, p);
    if (B == 0 || N == 0) return;
    CRATE_CUDA_REQUIRE(P != nullptr, fn, "P must not be null");
    CRATE_CUDA_REQUIRE(O != nullptr, fn, "O must not be null");
    const cudaStream_t st = resolve_stream(stream);
    FwdParams prm{};
    prm.P = P;
    prm.O = O;
    prm.L = L;  // may be NULL (inference), as on the CPU
    prm.key_mask = key_mask;
    prm.B = B, prm.N = N, prm.H = H, prm.p = p, prm.BH = B * H;
    prm.scale = scale;
    prm.causal = causal != 0;
    launch_forward(prm, use_tf32(), max_smem_optin(), kGridCap, CudaLaunch{st, "mssa_forward"});
  });
}

CRATE_API crate_status crate_cuda_mssa_backward_f32(const float* P, const float* O, const float* L, const float* dO,
                                                    float* dP, int64_t B, int64_t N, int64_t H, int64_t p, float scale,
                                                    int causal, const uint8_t* key_mask, void* stream) {
  return guard("crate_cuda_mssa_backward_f32", [&] {
    const char* fn = "mssa_backward";
    check_sizes(fn, B, N, H, p);
    if (B == 0 || N == 0) return;
    CRATE_CUDA_REQUIRE(P != nullptr, fn, "P must not be null");
    CRATE_CUDA_REQUIRE(O != nullptr, fn, "O must not be null");
    CRATE_CUDA_REQUIRE(L != nullptr, fn, "L must not be null");
    CRATE_CUDA_REQUIRE(dO != nullptr, fn, "dO must not be null");
    CRATE_CUDA_REQUIRE(dP != nullptr, fn, "dP must not be null");
    const cudaStream_t st = resolve_stream(stream);
    const int64_t max_smem = max_smem_optin();

    // D = rowsum(dO o O) per (b, h, i), into stream-ordered scratch.
    Scratch D(sizeof(float) * static_cast<size_t>(B * H * N), st);
    RowdotParams rp{O, dO, D.as<float>(), B, N, H, p};
    CudaLaunch{st, "mssa_backward (rowdot)"}(mssa_rowdot_kernel, dim3(grid_for(B * N * H, kWarps)), kThreads, 0, rp);

    BwdParams prm{};
    prm.P = P;
    prm.L = L;
    prm.dO = dO;
    prm.D = D.as<float>();
    prm.dP = dP;
    prm.key_mask = key_mask;
    prm.B = B, prm.N = N, prm.H = H, prm.p = p, prm.BH = B * H;
    prm.scale = scale;
    prm.causal = causal != 0;
    launch_backward_main(prm, use_tf32(), max_smem, kGridCap, CudaLaunch{st, "mssa_backward"});
  });
}

}  // extern "C"
