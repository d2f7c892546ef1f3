// mssa.cu: fused CUDA MSSA (multi-head subspace self-attention, Q = K = V = P_h), forward and
// backward, FlashAttention-2 style: tiled, online softmax, never an N x N matrix in memory.
// Computes what crate_mssa_{forward,backward}_f32 (native/cpu/mssa.cc) compute, same layouts:
//   P, O, dO, dP (B, N, H*p) row-major, head h = columns [h*p, (h+1)*p);  L, D (B, H, N).
// Storage f32 (crate_cuda_mssa_*_f32) or bf16 (crate_cuda_mssa_*_bf16: P, O, dO, dP bf16; L and
// the D scratch f32): one set of kernels templated on the storage type E (see "bf16" below).
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
// bf16 (E = __nv_bfloat16; always the tensor-core path): the operand tiles (Q, K = V; P_J, dO_J,
// P_I, dO_I) hold the bf16 bits as loaded (row stride PP + 8 elements: 16-byte rows, 8 consecutive
// rows in distinct bank groups) and every product is wmma m16n16k16 bf16 x bf16 -> f32 (Wmma<E>,
// FragAcc<E>). The products' f32 results (S; X, dA1, dA2), the online softmax, m, l, alpha, the O
// and dP accumulators stay f32. The probability operands are rounded to bf16 into tiles of their
// own (forward: A (T, T + 8) beside the f32 S; backward: E and A[I,J]^T (TJ, TI + 8) beside the
// f32 X, dA2), as FlashAttention-2 feeds bf16 P and dS to its second products; l (hence L) sums
// the unrounded f32 probabilities. The final f32 tiles are staged over the (dead) operand tiles
// and rounded once to bf16 on store. D = rowsum(dO o O) reads the bf16 O and dO, f32 sum.
// Shared memory per CTA (KiB; f32 SIMT / TF32 / bf16) and CTAs per SM that it allows (H100: 228
// KiB per SM; A100: 164), for PP = 16 32 48 64 96 128:
//   forward  f32 28 36 44 52 68 84, TF32 +4, bf16 37 41 45 49 57 65 (H100 6 5 4 4 3 3, A100 4 3 3 3 2 2)
//   backward f32 43 55 67 79 64 80, bf16 47 53 59 65 45 53 (H100 4 4 3 3 4 4, A100 3 3 2 2 3 3)
// (bf16 halves the operand tiles but adds the bf16 probability tiles, so for PP <= 32 it is a
// little larger.) Registers (ptxas, sm_90a, no spills): bf16 forward 92-108 (PP <= 64), 160-162
// (96, 128) and backward 123-164 under __launch_bounds__(128, 3) (kMinCtas: <= 168 registers), so
// 3-4 CTAs (12-16 warps) per SM on H100 for every PP, against 2 for the f32 PP = 96/128 forward.
// The halved footprint thus buys occupancy rather than bigger tiles: with 4 warps the exp / mask
// pass (T^2 expf per tile, SIMT) and the shared-memory traffic of the wmma API (S, A, the
// accumulator's alpha staging through shared memory) are the bottleneck, not the tensor cores.
// Napkin, forward PP = 64, one 64 x 64 key tile: 2 products = 1 MFLOP (~0.14 us of one H100 SM's
// bf16 tensor cores), 4096 expf (~256 clocks of the SFUs), ~150-200 KB of shared-memory traffic
// (fragment loads ~128 KB, S store + read 32 KB, A 8 KB, alpha staging 32 KB when the row max
// moved; skipped when alpha = 1 for the fragment's 16 rows) ~ 1200-1600 clocks at 128 B/clock:
// shared-memory bound, several times under the tensor-core peak yet well above the f32 SIMT path
// (1 MFLOP at 128 FMA/clock/SM ~ 4000 clocks plus the same softmax work). A register-resident
// FlashAttention-2 design (mma.sync with known fragment layouts: S and A never leave registers,
// no alpha staging) or, on H100, FlashAttention-3's wgmma + TMA would be the next step; nothing
// here has been timed (no GPU was available when it was written).
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
// bf16: products of bf16 values are exact in f32, so S, X, dA1, dA2 carry only f32 accumulation
// error (~p 2^-24 of sum |q||k|) and L stays f32-accurate. The errors are the bf16 roundings
// (u = 2^-8): of the probabilities before A V (O error <= u sum_j A_ij |P_j|), of E and A[I,J]^T
// before their products and of the saved O that D reads (each <= u times the matching magnitude
// sum), and of every output (u relative). test/cuda/cuda_vs_cpu.cc ("mssa bf16") checks exactly
// this element-wise bound (plus 2^-10 slack for the f32-level errors) against the f64 CPU kernel
// run on the same bf16 inputs; observed errors are 0.3-0.55 of it. Same masking / -inf / NaN
// rules as f32.
//
// ------------------------------------------------------------------------------------- testing
// test/cuda/cuda_vs_cpu.cc compares every entry point with the CPU kernels (bf16: "mssa bf16",
// against the f64 kernel on the bf16 inputs, bound above); test/bf16_mssa_cuda.test.ts checks
// C.mssa on bf16 tensors (forward, gradient) against an f64 loop; test/cuda_emu runs
// this file's kernels on the CPU (fibers per thread in random order, NaN-poisoned shared memory,
// a matrix-level wmma stand-in) so that the comparison runs without a GPU too. The emulator's
// build sets CRATE_MSSA_GRID_CAP small, so that the kernels' (b, h) grid-stride loops run.
#include <cuda_bf16.h>
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

using bf16 = __nv_bfloat16;
/** Whether E (the storage and shared-memory operand type: float or bf16) is bf16. */
template <class E>
constexpr bool kIsBf16 = std::is_same_v<E, bf16>;
static_assert(sizeof(bf16) == sizeof(uint16_t), "bf16 is the uint16_t of the C ABI");
/** __launch_bounds__ min CTAs per SM of the tile kernels: 2 for f32 (<= 255 registers); 3 for bf16
 * (<= 168 registers: the halved operand tiles let 3 CTAs fit in shared memory, see the header). */
template <class E>
constexpr int kMinCtas = kIsBf16<E> ? 3 : 2;

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

/** Storage <-> f32: identity for f32; bf16 widens exactly and rounds to nearest even. */
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(bf16 v) { return __bfloat162float(v); }
template <class E>
__device__ __forceinline__ E from_f32(float v) {
  if constexpr (kIsBf16<E>)
    return __float2bfloat16(v);  // round to nearest even
  else
    return v;
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
// All operands: row-major E (f32 or bf16) in shared memory, row strides (ld*, in elements) 16-byte
// multiples, base pointers 32-byte aligned (wmma) - every buffer offset in the layouts below is a
// multiple of 32 bytes and every tile row / column offset used is a multiple of 16 rows / columns.
// Results and accumulators are f32 for both E.

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

/** The wmma shape and precision for operands of type E: f32 data on TF32 tensor cores
 * (m16n16k8, inputs rounded with __float_to_tf32), bf16 data on bf16 tensor cores (m16n16k16,
 * operands used as they are); f32 accumulation for both. */
template <class E>
struct Wmma {
  static constexpr int K = 8;
  using Prec = wmma::precision::tf32;
  template <class Frag>
  __device__ __forceinline__ static void prep(Frag& f) {
    to_tf32(f);
  }
};
template <>
struct Wmma<bf16> {
  static constexpr int K = 16;
  using Prec = bf16;
  template <class Frag>
  __device__ __forceinline__ static void prep(Frag&) {}
};
template <class E>
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, Wmma<E>::K, float>;

/** Tensor-core C (M, N) = A (M, K) B (N, K)^T: warp w computes the 16 x 16 output blocks
 * g = w, w + 4, ... (block row g / (N/16), block column g % (N/16)); B (N, K) row-major is the
 * K x N operand in col_major layout with the same ld. */
template <int M, int N, int K, class E>
__device__ __forceinline__ void mm_nt_tc(float* __restrict__ C, int ldc, const E* __restrict__ A, int lda,
                                         const E* __restrict__ B, int ldb) {
  constexpr int WK = Wmma<E>::K;
  using Prec = typename Wmma<E>::Prec;
  static_assert(M % 16 == 0 && N % 16 == 0 && K % WK == 0, "mm_nt_tc: tile shape");
  constexpr int FC = N / 16, NB = (M / 16) * FC;
  const int warp = threadIdx.x / 32;
  for (int g = warp; g < NB; g += kWarps) {
    const int r0 = 16 * (g / FC), c0 = 16 * (g % FC);
    FragAcc<E> c;
    wmma::fill_fragment(c, 0.f);
#pragma unroll 2
    for (int k = 0; k < K; k += WK) {
      wmma::fragment<wmma::matrix_a, 16, 16, WK, Prec, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, 16, 16, WK, Prec, wmma::col_major> b;
      wmma::load_matrix_sync(a, A + r0 * lda + k, lda);  // A[r0 .. r0+16)[k .. k+WK)
      wmma::load_matrix_sync(b, B + c0 * ldb + k, ldb);  // (kk, n) = B[c0 + n][k + kk]
      Wmma<E>::prep(a);
      Wmma<E>::prep(b);
      wmma::mma_sync(c, a, b, c);
    }
    wmma::store_matrix_sync(C + r0 * ldc + c0, c, ldc, wmma::mem_row_major);
  }
}

/** C = A B^T with f32 C; E = bf16 only with TC (there is no SIMT bf16 path). */
template <bool TC, int M, int N, int K, class E>
__device__ __forceinline__ void mm_nt(float* __restrict__ C, int ldc, const E* __restrict__ A, int lda,
                                      const E* __restrict__ B, int ldb) {
  static_assert(TC || !kIsBf16<E>, "bf16 operands need the tensor-core path");
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
template <int M, int N, class E>
struct AccTc {
  static constexpr int FC = N / 16;
  static constexpr int NB = (M / 16) * FC;               // 16 x 16 blocks
  static constexpr int NF = (NB + kWarps - 1) / kWarps;  // fragment slots per warp
  static constexpr int WK = Wmma<E>::K;
  using Prec = typename Wmma<E>::Prec;
  static_assert(M % 16 == 0 && N % 16 == 0, "AccTc: tile shape");
  FragAcc<E> f[NF];

  __device__ __forceinline__ static int block(int i) { return int(threadIdx.x / 32) + kWarps * i; }
  __device__ __forceinline__ static bool has(int i) { return block(i) < NB; }
  __device__ __forceinline__ static int row0(int i) { return 16 * (block(i) / FC); }
  __device__ __forceinline__ static int col0(int i) { return 16 * (block(i) % FC); }

  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < NF; ++i) wmma::fill_fragment(f[i], 0.f);
  }
  /** acc += A (M, K) B (K, N), A and B of type E (row-major). */
  template <int K>
  __device__ __forceinline__ void mma_nn(const E* __restrict__ A, int lda, const E* __restrict__ B, int ldb) {
    static_assert(K % WK == 0, "AccTc::mma_nn: K");
#pragma unroll
    for (int i = 0; i < NF; ++i) {
      if (!has(i)) continue;
      const int r0 = row0(i), c0 = col0(i);
#pragma unroll 2
      for (int k = 0; k < K; k += WK) {
        wmma::fragment<wmma::matrix_a, 16, 16, WK, Prec, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, WK, Prec, wmma::row_major> b;
        wmma::load_matrix_sync(a, A + r0 * lda + k, lda);  // A[r0 .. r0+16)[k .. k+WK)
        wmma::load_matrix_sync(b, B + k * ldb + c0, ldb);  // B[k .. k+WK)[c0 .. c0+16)
        Wmma<E>::prep(a);
        Wmma<E>::prep(b);
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
      // alpha = 1 for all 16 rows (the running max did not move: the common case after the first
      // key tiles) leaves the fragment unchanged: skip its round trip (warp-uniform: every lane
      // reads the same 16 values; NaN != 1 still goes through).
      bool ones = true;
#pragma unroll
      for (int r = 0; r < 16; ++r) ones = ones && alpha[r0 + r] == 1.f;
      if (ones) continue;
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

/** The O / dP accumulator: operands of type E (bf16 only with TC), f32 values. */
template <bool TC, int M, int N, class E>
using Acc = std::conditional_t<TC, AccTc<M, N, E>, AccSimt<M, N>>;

// ------------------------------------------------------------------------------ tile loads

/** dst (T, ld) <- rows [r0, r0 + T) of one head: row r at src + r * ld_src, p valid columns;
 * rows >= N and columns p .. PP-1 are zero (they enter the products). Columns >= PP untouched.
 * E = bf16: the bits are copied (the tile products read bf16 operands). */
template <int PP, int T, class E>
__device__ __forceinline__ void load_tile(E* __restrict__ dst, int ld, const E* __restrict__ src, int64_t ld_src,
                                          int64_t r0, int64_t N, int p) {
  for (int idx = threadIdx.x; idx < T * PP; idx += kThreads) {
    const int r = idx / PP, k = idx % PP;  // consecutive threads: consecutive columns (coalesced)
    const int64_t g = r0 + r;
    dst[r * ld + k] = (g < N && k < p) ? src[g * ld_src + k] : from_f32<E>(0.f);
  }
}

/** A typed pointer `bytes` bytes into the dynamic shared memory. */
template <class T>
__device__ __forceinline__ T* smem_at(int bytes) {
  return reinterpret_cast<T*>(reinterpret_cast<char*>(mssa_smem()) + bytes);
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

template <class E>
struct FwdParams {
  const E* P;               // (B, N, H*p)
  E* O;                     // (B, N, H*p)
  float* L;                 // (B, H, N) or nullptr (f32 for both E)
  const uint8_t* key_mask;  // (B, N) or nullptr
  int64_t B, N, H, p, BH;
  int64_t num_tiles;  // ceil(N / T) = gridDim.x
  float scale;
  int causal;
};

/** Byte offsets into the dynamic shared memory. E: the operand type (f32, or bf16 for bf16
 * storage); scores, statistics and the staging are f32 for both. f32: the probabilities overwrite
 * the scores in place (kA = kS), exactly the f32 layout this file always had; bf16: they go to a
 * bf16 tile of their own (the product operand). The O staging at the end spans Q and K. */
template <int PP, int T, bool TC, class E>
struct FwdLayout {
  static constexpr bool kBf = kIsBf16<E>;
  static constexpr int ES = sizeof(E);
  static constexpr int LD = PP + (kBf ? 8 : 4);           // row stride of the (T, PP) operand tiles (elements of E)
  static constexpr int LDS = T + 4;                       // row stride of the (T, T) f32 score tile
  static constexpr int LDA = kBf ? T + 8 : LDS;           // row stride of the (T, T) probability operand (E)
  static constexpr int LDO = PP + 4;                      // row stride of the f32 O staging
  static constexpr int kQ = 0;                            // Q (T, LD): the query tile, all key tiles
  static constexpr int kK = kQ + T * LD * ES;             // K = V (T, LD): the current key tile
  static constexpr int kS = kK + T * LD * ES;             // S (T, LDS) f32: scores (f32: then probabilities)
  static constexpr int kA = kBf ? kS + T * LDS * 4 : kS;  // A (T, LDA) E: probabilities
  static constexpr int kM = kBf ? kA + T * LDA * ES : kS + T * LDS * 4;  // m (T): running row max
  static constexpr int kL = kM + T * 4;                                  // l (T): running row sum
  static constexpr int kAlpha = kL + T * 4;                              // alpha (T): exp(m_old - m_new) of the tile
  static constexpr int kMadd = kAlpha + T * 4;                           // madd (T): 0 / -inf per key of the tile
  static constexpr int kStage = kMadd + T * 4;                           // TC: 4 warps x 256 floats staging
  static constexpr size_t kBytes = kStage + (TC ? kWarps * 256 * 4 : 0);
  static_assert(kK % 32 == 0 && kS % 32 == 0 && kA % 32 == 0 && kM % 32 == 0 && kStage % 32 == 0,
                "32-byte aligned buffers");
  static_assert((LD * ES) % 16 == 0 && (LDA * ES) % 16 == 0, "wmma ldm: multiples of 16 bytes");
  static_assert(T * LDO * 4 <= kS, "the f32 O staging fits in Q and K");
};

template <int PP, int T, bool TC, class E>
__global__ void __launch_bounds__(kThreads, kMinCtas<E>) mssa_fwd_kernel(const FwdParams<E> prm) {
  using Lay = FwdLayout<PP, T, TC, E>;
  constexpr int LD = Lay::LD, LDS = Lay::LDS, LDA = Lay::LDA, CPL = T / 32;  // CPL: score columns per lane
  static_assert(T % 32 == 0, "T");
  static_assert(TC || !kIsBf16<E>, "bf16 runs on tensor cores only");
  E* Qs = smem_at<E>(Lay::kQ);                   // (T, LD)
  E* Ks = smem_at<E>(Lay::kK);                   // (T, LD)
  float* Ss = smem_at<float>(Lay::kS);           // (T, LDS)
  E* As = smem_at<E>(Lay::kA);                   // (T, LDA); f32: the same memory as Ss
  float* m_s = smem_at<float>(Lay::kM);          // (T)
  float* l_s = smem_at<float>(Lay::kL);          // (T)
  float* alpha_s = smem_at<float>(Lay::kAlpha);  // (T)
  float* madd_s = smem_at<float>(Lay::kMadd);    // (T)
  float* Os = smem_at<float>(Lay::kQ);           // (T, LDO) f32 staging of O at the end (over Q and K)
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  float* stage = smem_at<float>(Lay::kStage) + warp * 256;  // TC only (never touched by the SIMT path)
  const int64_t N = prm.N, H = prm.H, HP = prm.H * prm.p;
  const int p = static_cast<int>(prm.p);
  const float scale = prm.scale;
  const int64_t qt = static_cast<int64_t>(gridDim.x) - 1 - blockIdx.x;  // query tile, last first
  const int64_t i0 = qt * T;                                            // first query row
  const int64_t kend = prm.causal ? qt + 1 : prm.num_tiles;             // key tiles [0, kend)

  for (int64_t bh = blockIdx.y + static_cast<int64_t>(blockIdx.z) * gridDim.y; bh < prm.BH;
       bh += static_cast<int64_t>(gridDim.y) * gridDim.z) {
    const int64_t b = bh / H, h = bh % H;
    const E* Ph = prm.P + b * N * HP + h * p;  // row i of head (b, h): Ph + i * HP
    const uint8_t* km = prm.key_mask ? prm.key_mask + b * N : nullptr;

    __syncthreads();  // the previous (b, h) iteration is done with all shared memory
    load_tile<PP, T>(Qs, LD, Ph, HP, i0, N, p);
    for (int r = tid; r < T; r += kThreads) {
      m_s[r] = -kInf;
      l_s[r] = 0.f;
    }
    Acc<TC, T, PP, E> acc;  // O accumulator (T, PP), unnormalised, f32
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
          for (int c = 0; c < CPL; ++c) As[r * LDA + lane + 32 * c] = from_f32<E>(0.f);
          if (lane == 0) alpha_s[r] = 1.f;
          continue;
        }
        float sum = 0.f;
#pragma unroll
        for (int c = 0; c < CPL; ++c) {
          const float e = expf(s[c] - m_new);  // masked: exp(-inf) = 0
          // bf16: the product operand is e rounded to bf16 (as FlashAttention-2); the row sum l
          // (and so L) uses the unrounded f32 e.
          As[r * LDA + lane + 32 * c] = from_f32<E>(e);
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
      acc.template mma_nn<T>(As, LDA, Ks, LD);  // O_acc += A V   (T, PP)
    }

    __syncthreads();          // every warp is done with Qs and Ks (the last V tile)
    acc.store(Os, Lay::LDO);  // O_acc (T, PP) f32, staged over the Q and K buffers
    __syncthreads();
    E* Oh = prm.O + b * N * HP + h * p;
    for (int idx = tid; idx < T * PP; idx += kThreads) {
      const int r = idx / PP, k = idx % PP;
      const int64_t gi = i0 + r;
      if (gi < N && k < p) {
        const float m = m_s[r];
        Oh[gi * HP + k] = from_f32<E>((m == -kInf) ? 0.f : Os[r * Lay::LDO + k] * (1.f / l_s[r]));
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

template <class E>
struct RowdotParams {
  const E* O;   // (B, N, H*p)
  const E* dO;  // (B, N, H*p)
  float* D;     // (B, H, N), f32 for both E
  int64_t B, N, H, p;
};

/** D[b, h, i] = dO[b, i, head h] . O[b, i, head h] (f32 accumulation): one warp per (b, i, h)
 * row (grid-stride). */
template <class E>
__global__ void __launch_bounds__(kThreads, 2) mssa_rowdot_kernel(const RowdotParams<E> prm) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int64_t rows = prm.B * prm.N * prm.H;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp; row < rows;
       row += static_cast<int64_t>(gridDim.x) * kWarps) {
    const E* o = prm.O + row * prm.p;  // row = (b N + i) H + h, whose p values are contiguous
    const E* d = prm.dO + row * prm.p;
    float s = 0.f;
    for (int64_t k = lane; k < prm.p; k += 32) s = fmaf(to_f32(o[k]), to_f32(d[k]), s);
    s = warp_sum(s);
    if (lane == 0) {
      const int64_t bn = row / prm.H, h = row % prm.H, b = bn / prm.N, i = bn % prm.N;
      prm.D[(b * prm.H + h) * prm.N + i] = s;
    }
  }
}

template <class E>
struct BwdParams {
  const E* P;               // (B, N, H*p)
  const float* L;           // (B, H, N) from the forward (f32 for both E)
  const E* dO;              // (B, N, H*p)
  const float* D;           // (B, H, N) from mssa_rowdot_kernel (f32)
  E* dP;                    // (B, N, H*p), overwritten
  const uint8_t* key_mask;  // (B, N) or nullptr
  int64_t B, N, H, p, BH;
  int64_t num_tiles_i;  // ceil(N / TI): the tiles I every CTA loops over (gridDim.x = ceil(N / TJ))
  float scale;
  int causal;
};

/** TJ: rows of dP a CTA owns (tile J); TI: rows of the streamed tiles I. Byte offsets into the
 * dynamic shared memory; E as in FwdLayout. f32: E and A[I,J]^T overwrite X and dA2 in place
 * (kE = kX, kB = kA2: the f32 layout this file always had); bf16: they are rounded into bf16
 * tiles of their own (the operands of the two accumulating products). */
template <int PP, int TJ, int TI, class E>
struct BwdLayout {
  static constexpr bool kBf = kIsBf16<E>;
  static constexpr int ES = sizeof(E);
  static constexpr int LD = PP + (kBf ? 8 : 4);              // (T, PP) operand tiles (elements of E)
  static constexpr int LDS = TI + 4;                         // f32 (TJ, TI) tiles
  static constexpr int LDE = kBf ? TI + 8 : LDS;             // (TJ, TI) operand tiles E, A2 (elements of E)
  static constexpr int LDO = PP + 4;                         // the f32 dP staging at the end (over P_J and dO_J)
  static constexpr int kPj = 0;                              // P_J (TJ, LD): this CTA's rows
  static constexpr int kGj = kPj + TJ * LD * ES;             // dO_J (TJ, LD)
  static constexpr int kPi = kGj + TJ * LD * ES;             // P_I (TI, LD): the current tile
  static constexpr int kGi = kPi + TI * LD * ES;             // dO_I (TI, LD)
  static constexpr int kX = kGi + TI * LD * ES;              // X (TJ, LDS): raw scores (f32: then E)
  static constexpr int kA1 = kX + TJ * LDS * 4;              // dA1 (TJ, LDS) = dA[J, I]
  static constexpr int kA2 = kA1 + TJ * LDS * 4;             // dA2 (TJ, LDS) = dA[I, J]^T (f32: then A[I, J]^T)
  static constexpr int kE = kBf ? kA2 + TJ * LDS * 4 : kX;   // E (TJ, LDE) as the product operand
  static constexpr int kB = kBf ? kE + TJ * LDE * ES : kA2;  // A[I, J]^T (TJ, LDE) as the operand
  static constexpr int kLj = kBf ? kB + TJ * LDE * ES : kA2 + TJ * LDS * 4;  // L of rows J, -inf -> +inf
  static constexpr int kDj = kLj + TJ * 4;                                   // D of rows J (TJ)
  static constexpr int kMj = kDj + TJ * 4;                                   // madd of keys J (TJ)
  static constexpr int kLi = kMj + TJ * 4;                                   // same for tile I (TI each)
  static constexpr int kDi = kLi + TI * 4;
  static constexpr int kMi = kDi + TI * 4;
  static constexpr size_t kBytes = kMi + TI * 4;
  static_assert(kGj % 32 == 0 && kPi % 32 == 0 && kGi % 32 == 0 && kX % 32 == 0 && kA1 % 32 == 0 && kA2 % 32 == 0 &&
                    kE % 32 == 0 && kB % 32 == 0,
                "32-byte aligned buffers");
  static_assert((LD * ES) % 16 == 0 && (LDE * ES) % 16 == 0, "wmma ldm: multiples of 16 bytes");
  static_assert(TJ * LDO * 4 <= kPi, "the f32 dP staging fits in P_J and dO_J");
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

template <int PP, int TJ, int TI, bool TC, class E>
__global__ void __launch_bounds__(kThreads, kMinCtas<E>) mssa_bwd_kernel(const BwdParams<E> prm) {
  using Lay = BwdLayout<PP, TJ, TI, E>;
  constexpr int LD = Lay::LD, LDS = Lay::LDS, LDE = Lay::LDE;
  static_assert(TC || !kIsBf16<E>, "bf16 runs on tensor cores only");
  E* Pj = smem_at<E>(Lay::kPj);          // (TJ, LD)
  E* Gj = smem_at<E>(Lay::kGj);          // (TJ, LD)
  E* Pi = smem_at<E>(Lay::kPi);          // (TI, LD)
  E* Gi = smem_at<E>(Lay::kGi);          // (TI, LD)
  float* X = smem_at<float>(Lay::kX);    // (TJ, LDS)
  float* A1 = smem_at<float>(Lay::kA1);  // (TJ, LDS)
  float* A2 = smem_at<float>(Lay::kA2);  // (TJ, LDS)
  E* Es = smem_at<E>(Lay::kE);           // (TJ, LDE); f32: the same memory as X
  E* Bs = smem_at<E>(Lay::kB);           // (TJ, LDE); f32: the same memory as A2
  float* Lj = smem_at<float>(Lay::kLj);  // (TJ)
  float* Dj = smem_at<float>(Lay::kDj);
  float* Mj = smem_at<float>(Lay::kMj);
  float* Li = smem_at<float>(Lay::kLi);  // (TI)
  float* Di = smem_at<float>(Lay::kDi);
  float* Mi = smem_at<float>(Lay::kMi);
  float* Os = smem_at<float>(Lay::kPj);  // (TJ, LDO) f32 staging of dP at the end
  const int tid = threadIdx.x;
  const int64_t N = prm.N, H = prm.H, HP = prm.H * prm.p;
  const int p = static_cast<int>(prm.p);
  const float scale = prm.scale;
  const bool causal = prm.causal != 0;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * TJ;  // rows [j0, j0 + TJ) of dP: this CTA's

  for (int64_t bh = blockIdx.y + static_cast<int64_t>(blockIdx.z) * gridDim.y; bh < prm.BH;
       bh += static_cast<int64_t>(gridDim.y) * gridDim.z) {
    const int64_t b = bh / H, h = bh % H;
    const E* Ph = prm.P + b * N * HP + h * p;  // row i of the head: Ph + i * HP
    const E* Gh = prm.dO + b * N * HP + h * p;
    const float* Lbh = prm.L + bh * N;
    const float* Dbh = prm.D + bh * N;
    const uint8_t* km = prm.key_mask ? prm.key_mask + b * N : nullptr;

    __syncthreads();  // the previous (b, h) iteration is done with all shared memory
    load_tile<PP, TJ>(Pj, LD, Ph, HP, j0, N, p);
    load_tile<PP, TJ>(Gj, LD, Gh, HP, j0, N, p);
    load_row_stats<TJ>(Lj, Dj, Mj, Lbh, Dbh, km, j0, N);
    Acc<TC, TJ, PP, E> acc;  // dQ_J + dK_J + dV_J (TJ, PP), f32
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

      // E = scale (A[J,I] o (dA1 - D_J) + A[I,J]^T o (dA2 - D_I)) into Es, A[I,J]^T into Bs
      // (f32: in place over X and dA2, each element read before the same thread writes it;
      // bf16: rounded to bf16, the operands of the products below, as FlashAttention-2's dS, P).
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
        Es[j * LDE + i] = from_f32<E>(e * scale);
        Bs[j * LDE + i] = from_f32<E>(a2);
      }
      __syncthreads();

      acc.template mma_nn<TI>(Es, LDE, Pi, LD);             // += E P_I           (dQ_J + dK_J)
      if (use_k) acc.template mma_nn<TI>(Bs, LDE, Gi, LD);  // += A[I,J]^T dO_I   (dV_J)
    }

    __syncthreads();          // every warp is done with Pj, Gj (and everything else)
    acc.store(Os, Lay::LDO);  // (TJ, PP) f32, staged over the P_J and dO_J buffers
    __syncthreads();
    E* dPh = prm.dP + b * N * HP + h * p;
    for (int idx = tid; idx < TJ * PP; idx += kThreads) {
      const int r = idx / PP, k = idx % PP;
      const int64_t gj = j0 + r;
      if (gj < N && k < p) dPh[gj * HP + k] = from_f32<E>(Os[r * Lay::LDO + k]);
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
template <int PP, int T, bool TC, class E, class Launch>
void forward_instance(const FwdParams<E>& prm, const dim3& grid, int64_t max_smem, Launch&& launch) {
  constexpr size_t bytes = FwdLayout<PP, T, TC, E>::kBytes;
  require_smem(bytes, max_smem, "mssa_forward");
  launch(mssa_fwd_kernel<PP, T, TC, E>, grid, kThreads, bytes, prm);
}

/** f32: SIMT or TF32 tensor cores (tc); bf16: always bf16 tensor cores (tc is ignored). */
template <int PP, class E, class Launch>
void forward_pp(FwdParams<E> prm, bool tc, int64_t max_smem, int64_t grid_cap, Launch&& launch) {
  constexpr int T = kFwdTile;
  prm.num_tiles = (prm.N + T - 1) / T;
  const dim3 grid = tile_grid(prm.num_tiles, prm.BH, grid_cap);
  if constexpr (kIsBf16<E>)
    forward_instance<PP, T, true>(prm, grid, max_smem, launch);
  else if (tc)
    forward_instance<PP, T, true>(prm, grid, max_smem, launch);
  else
    forward_instance<PP, T, false>(prm, grid, max_smem, launch);
}

template <class E, class Launch>
void launch_forward(const FwdParams<E>& prm, bool tc, int64_t max_smem, int64_t grid_cap, Launch&& launch) {
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

/** f32: SIMT or TF32 tensor cores (tc); bf16: always bf16 tensor cores (tc is ignored). */
template <int PP, int TJ, int TI, class E, class Launch>
void backward_pp(BwdParams<E> prm, bool tc, int64_t max_smem, int64_t grid_cap, Launch&& launch) {
  constexpr size_t bytes = BwdLayout<PP, TJ, TI, E>::kBytes;
  require_smem(bytes, max_smem, "mssa_backward");
  prm.num_tiles_i = (prm.N + TI - 1) / TI;
  const dim3 grid = tile_grid((prm.N + TJ - 1) / TJ, prm.BH, grid_cap);
  if (kIsBf16<E> || tc)
    launch(mssa_bwd_kernel<PP, TJ, TI, true, E>, grid, kThreads, bytes, prm);
  else if constexpr (!kIsBf16<E>)
    launch(mssa_bwd_kernel<PP, TJ, TI, false, E>, grid, kThreads, bytes, prm);
}

/** CTAs own TJ = 64 rows and stream tiles of TI = 32 for PP <= 64, TJ = TI = 32 for PP = 96, 128
 * (shared memory per CTA and CTAs per SM: see the header). */
template <class E, class Launch>
void launch_backward_main(const BwdParams<E>& prm, bool tc, int64_t max_smem, int64_t grid_cap, Launch&& launch) {
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

/** The forward for storage type E (P, O of type E; L f32). */
template <class E>
void mssa_forward_impl(const E* P, E* O, float* L, int64_t B, int64_t N, int64_t H, int64_t p, float scale, int causal,
                       const uint8_t* key_mask, void* stream) {
  const char* fn = "mssa_forward";
  check_sizes(fn, B, N, H, p);
  if (B == 0 || N == 0) return;
  require_nonnull(fn, {{"P", P}, {"O", O}});
  const cudaStream_t st = resolve_stream(stream);
  FwdParams<E> prm{};
  prm.P = P;
  prm.O = O;
  prm.L = L;  // may be NULL (inference), as on the CPU
  prm.key_mask = key_mask;
  prm.B = B, prm.N = N, prm.H = H, prm.p = p, prm.BH = B * H;
  prm.scale = scale;
  prm.causal = causal != 0;
  launch_forward(prm, use_tf32(), max_smem_optin(), kGridCap, CudaLaunch{st, "mssa_forward"});
}

/** The backward for storage type E (P, O, dO, dP of type E; L and the D scratch f32). */
template <class E>
void mssa_backward_impl(const E* P, const E* O, const float* L, const E* dO, E* dP, int64_t B, int64_t N, int64_t H,
                        int64_t p, float scale, int causal, const uint8_t* key_mask, void* stream) {
  const char* fn = "mssa_backward";
  check_sizes(fn, B, N, H, p);
  if (B == 0 || N == 0) return;
  require_nonnull(fn, {{"P", P}, {"O", O}, {"L", L}, {"dO", dO}, {"dP", dP}});
  const cudaStream_t st = resolve_stream(stream);
  const int64_t max_smem = max_smem_optin();

  // D = rowsum(dO o O) per (b, h, i), into stream-ordered f32 scratch.
  Scratch D(sizeof(float) * static_cast<size_t>(B * H * N), st);
  RowdotParams<E> rp{O, dO, D.as<float>(), B, N, H, p};
  CudaLaunch{st, "mssa_backward (rowdot)"}(mssa_rowdot_kernel<E>, dim3(grid_for(B * N * H, kWarps)), kThreads, 0, rp);

  BwdParams<E> prm{};
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
}

}  // namespace

extern "C" {

CRATE_API crate_status crate_cuda_mssa_forward_f32(const float* P, float* O, float* L, int64_t B, int64_t N, int64_t H,
                                                   int64_t p, float scale, int causal, const uint8_t* key_mask,
                                                   void* stream) {
  return guard("crate_cuda_mssa_forward_f32",
               [&] { mssa_forward_impl<float>(P, O, L, B, N, H, p, scale, causal, key_mask, stream); });
}

CRATE_API crate_status crate_cuda_mssa_backward_f32(const float* P, const float* O, const float* L, const float* dO,
                                                    float* dP, int64_t B, int64_t N, int64_t H, int64_t p, float scale,
                                                    int causal, const uint8_t* key_mask, void* stream) {
  return guard("crate_cuda_mssa_backward_f32",
               [&] { mssa_backward_impl<float>(P, O, L, dO, dP, B, N, H, p, scale, causal, key_mask, stream); });
}

CRATE_API crate_status crate_cuda_mssa_forward_bf16(const uint16_t* P, uint16_t* O, float* L, int64_t B, int64_t N,
                                                    int64_t H, int64_t p, float scale, int causal,
                                                    const uint8_t* key_mask, void* stream) {
  return guard("crate_cuda_mssa_forward_bf16", [&] {
    mssa_forward_impl<bf16>(reinterpret_cast<const bf16*>(P), reinterpret_cast<bf16*>(O), L, B, N, H, p, scale, causal,
                            key_mask, stream);
  });
}

CRATE_API crate_status crate_cuda_mssa_backward_bf16(const uint16_t* P, const uint16_t* O, const float* L,
                                                     const uint16_t* dO, uint16_t* dP, int64_t B, int64_t N, int64_t H,
                                                     int64_t p, float scale, int causal, const uint8_t* key_mask,
                                                     void* stream) {
  return guard("crate_cuda_mssa_backward_bf16", [&] {
    mssa_backward_impl<bf16>(reinterpret_cast<const bf16*>(P), reinterpret_cast<const bf16*>(O), L,
                             reinterpret_cast<const bf16*>(dO), reinterpret_cast<bf16*>(dP), B, N, H, p, scale, causal,
                             key_mask, stream);
  });
}

}  // extern "C"
