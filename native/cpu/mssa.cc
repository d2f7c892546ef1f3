// mssa.cc: fused CPU MSSA forward/backward (flash-style, Q = K = V = P_h), float and double.
//
// Algorithm (per (b, h); tiles of kTile = 64 query rows x 64 key rows; never an N x N buffer):
//  * Work is split into tasks (b, h, group): G = 1 group per head when B*H >= 2*threads, else a
//    head's query tiles (forward) / tile items (backward) are dealt round-robin to G groups. Tasks
//    run with dynamic scheduling (an atomic counter on top of crate::parallel_for).
//  * Each task first copies its head into per-worker zero-padded scratch: Pp (N_pad, p_pad)
//    row-major and Pt = P^T in (p, 64) key-tile panels (contiguous, no 4 KiB-aliased strides);
//    the backward also dOp, dO^T panels, D = rowsum(dO o O) and L. Every tile product is then a
//    small dense product on padded tiles (extents rounded up to 8): O(N*p) memory per head.
//  * Tile products use an own register-blocked micro-kernel (4 rows x 3 vectors of 8 floats /
//    4 doubles = 12 accumulators on AVX2; 4 x 2 SSE vectors on the portable path; GCC vector
//    extensions, vec_math.h); the softmax passes use vec_math.h's vexp (f32 ~3 ulp, f64 degree-13).
//    They are compiled twice, portable and with target("avx2,fma"), dispatched on vec_use_avx2()
//    (__builtin_cpu_supports; CRATE_CPU_VECTOR=generic forces the portable build).
//    crate::cpu::gemm is not used for tiles: measured single-core on 64 x 64 x p tiles (p =
//    16..64) the micro-kernel ran at 77-92 GFLOP/s against OpenBLAS sgemm's 36-76 GFLOP/s (call
//    and packing overhead dominate at this size).
//  * Forward: online softmax over key tiles (running max m, sum l per row; acc rescaled by
//    exp(m_old - m_new)); O = acc / l, L = m + log l.
//  * Backward: A = exp(scale S - L) is recomputed per tile from P and L.
// Use of the symmetry of P_h P_h^T (mssa_set_symmetric; default both on, kept because they won):
//  * backward: a diagonal tile I gives dQ + dK = (dS + dS^T) P_I with one product instead of two;
//    a non-causal pair I < J computes S_IJ once for S_IJ and S_JI = S_IJ^T, and with
//    E = scale (dS_IJ + dS_JI^T): rows I += E P_J + A_JI^T dO_J, rows J += E^T P_I + A_IJ^T dO_I
//    (dQ + dK + dV of both blocks): 7 tile products per pair instead of 10. Causal off-diagonal
//    tiles have no partner (S_JI is masked) and use the plain 5-product form. Measured (1 core,
//    f32, B = 1, H = 6, N = 1024, p = 64, non-causal): 40-42 ms against 54-72 ms plain.
//  * forward, whole-head tasks (G = 1) of non-causal problems: S_IJ is computed once and its
//    transpose serves query tile J: 3 tile products per pair instead of 4 (~10-15% faster at
//    N = 1024; the exp work is unchanged).
// Race freedom: a task accumulates dP for all rows of its head in a private (N_pad, p_pad) buffer;
// with G = 1 it then writes the head's columns of dP itself, with G > 1 a final pass sums the G
// buffers into dP.
// Masks: key j is valid for query i iff j < N, key_mask[b, j] != 0 (when given) and, if causal,
// j <= i. Invalid scores are -inf; rows with no valid key give O = 0, L = -inf, zero gradient.
// NaN scores propagate (a NaN row max is kept, never mistaken for a fully masked row).
#include "mssa.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "../core/common.h"
#include "../core/parallel.h"
#include "vec_math.h"

namespace crate::cpu {
namespace {

#define MSSA_INLINE inline __attribute__((always_inline))

constexpr int64_t kTile = 64;  // query / key tile rows; a multiple of kPad
constexpr int64_t kPad = 8;    // tile extents and p are padded to this (f32 vector length, 2 * kMR)
constexpr int kMR = 4;         // micro-kernel rows

std::atomic<int> g_isa{0};
std::atomic<int> g_sym{3};  // bit 0: symmetric backward, bit 1: symmetric forward

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// c[r, 0:NV*VL] (+)= sum_k a[r*ars + k*acs] * b[k*ldb + 0:NV*VL], r < kMR.
template <class T, int VB, int NV>
MSSA_INLINE void ukern(int64_t K, const T* a, int64_t ars, int64_t acs, const T* b, int64_t ldb, T* c, int64_t ldc,
                       bool accumulate) {
  typedef typename Vec<T, VB>::type VT;
  constexpr int VL = Vec<T, VB>::n;
  VT acc[kMR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[i][j] = accumulate ? vload<T, VB>(c + i * ldc + j * VL) : VT{};
  for (int64_t k = 0; k < K; ++k) {
    VT bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = vload<T, VB>(b + k * ldb + j * VL);
    const T* ak = a + k * acs;
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      const T as = ak[i * ars];  // scalar * vector: one broadcast load
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[i][j] += as * bv[j];
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) vstore<T, VB>(c + i * ldc + j * VL, acc[i][j]);
}

// C (M, Nc) (+)= A (M, K) * B (K, Nc); A element (r, k) at a[r*ars + k*acs] (so A^T is just
// swapped strides), B and C row-major. M % kMR == 0, Nc % VL == 0 (callers pad). Column blocks
// of 3 vectors (12 accumulators, AVX2) or 2 (portable), then the remainder.
template <class T, int VB>
MSSA_INLINE void tgemm_impl(int64_t M, int64_t Nc, int64_t K, const T* a, int64_t ars, int64_t acs, const T* b,
                            int64_t ldb, T* c, int64_t ldc, bool accumulate) {
  constexpr int VL = Vec<T, VB>::n;
  int64_t j = 0;
  if (VB == 32) {
    for (; j + 3 * VL <= Nc; j += 3 * VL)
      for (int64_t i = 0; i < M; i += kMR)
        ukern<T, VB, 3>(K, a + i * ars, ars, acs, b + j, ldb, c + i * ldc + j, ldc, accumulate);
  }
  for (; j + 2 * VL <= Nc; j += 2 * VL)
    for (int64_t i = 0; i < M; i += kMR)
      ukern<T, VB, 2>(K, a + i * ars, ars, acs, b + j, ldb, c + i * ldc + j, ldc, accumulate);
  for (; j < Nc; j += VL)
    for (int64_t i = 0; i < M; i += kMR)
      ukern<T, VB, 1>(K, a + i * ars, ars, acs, b + j, ldb, c + i * ldc + j, ldc, accumulate);
}

// Forward online-softmax update for one (query tile, key tile):
// S (er, ld) raw scores P_I P_J^T, overwritten with the probabilities exp(scale*S + madd - m_new);
// m, l (er) running max / sum; acc (er, pp) rescaled by exp(m_old - m_new). Rows >= nr are zeroed.
// diag_causal: the tile is on the diagonal (i0 == j0) of a causal problem: key j > row r masked.
template <class T, int VB>
MSSA_INLINE void fwd_update_impl(T* S, int64_t ld, int64_t nr, int64_t er, int64_t ec, T scale, const T* madd,
                                 bool diag_causal, T* m, T* l, T* acc, int64_t pp) {
  typedef typename Vec<T, VB>::type VT;
  constexpr int VL = Vec<T, VB>::n;
  const T ninf = -std::numeric_limits<T>::infinity();
  const VT vs = vset<T, VB>(scale);
  for (int64_t r = 0; r < nr; ++r) {
    T* row = S + r * ld;
    VT mx = vset<T, VB>(ninf);
    typename Vec<T, VB>::itype nan{};
    for (int64_t j = 0; j < ec; j += VL) {
      const VT s = vload<T, VB>(row + j) * vs + vload<T, VB>(madd + j);
      vstore<T, VB>(row + j, s);
      mx = s > mx ? s : mx;
      nan |= s != s;
    }
    T rmax = hmax<T, VB>(mx);
    if (diag_causal && r + 1 < ec) {
      for (int64_t j = r + 1; j < ec; ++j) row[j] = ninf;
      rmax = ninf;
      for (int64_t j = 0; j <= r; ++j) rmax = row[j] > rmax ? row[j] : rmax;
    }
    bool has_nan = false;
    for (int i = 0; i < VL; ++i) has_nan |= nan[i] != 0;
    const T m_old = m[r];
    // NaN scores make the row NaN (propagate, never hide them as "fully masked").
    const T m_new = has_nan ? std::numeric_limits<T>::quiet_NaN() : (rmax > m_old ? rmax : m_old);
    if (m_new == ninf) {  // no valid key so far
      std::memset(row, 0, sizeof(T) * ec);
      continue;
    }
    const VT vm = vset<T, VB>(m_new);
    VT sum{};
    for (int64_t j = 0; j < ec; j += VL) {
      const VT e = vexp<VB>(vload<T, VB>(row + j) - vm);
      vstore<T, VB>(row + j, e);
      sum += e;
    }
    const T alpha = std::exp(m_old - m_new);  // 0 when m_old = -inf
    l[r] = l[r] * alpha + hsum<T, VB>(sum);
    m[r] = m_new;
    if (alpha != T(1)) {
      T* a = acc + r * pp;
      const VT va = vset<T, VB>(alpha);
      for (int64_t k = 0; k < pp; k += VL) vstore<T, VB>(a + k, vload<T, VB>(a + k) * va);
    }
  }
  for (int64_t r = nr; r < er; ++r) std::memset(S + r * ld, 0, sizeof(T) * ec);
}

// Backward, one (query tile I, key tile J): S := A = exp(scale*S + madd_J - Lneg_I) (masked -> 0),
// dA := scale * A o (dA - D_I). Lneg is L with -inf (fully masked / padding rows) replaced by +inf.
template <class T, int VB>
MSSA_INLINE void bwd_single_impl(T* S, T* dA, int64_t ld, int64_t er, int64_t ec, T scale, const T* Lneg, const T* D,
                                 const T* madd, bool diag_causal) {
  typedef typename Vec<T, VB>::type VT;
  constexpr int VL = Vec<T, VB>::n;
  const VT vs = vset<T, VB>(scale);
  for (int64_t r = 0; r < er; ++r) {
    T* srow = S + r * ld;
    T* drow = dA + r * ld;
    if (Lneg[r] == std::numeric_limits<T>::infinity()) {
      std::memset(srow, 0, sizeof(T) * ec);
      std::memset(drow, 0, sizeof(T) * ec);
      continue;
    }
    const VT vl = vset<T, VB>(Lneg[r]), vd = vset<T, VB>(D[r]);
    for (int64_t j = 0; j < ec; j += VL) {
      const VT a = vexp<VB>(vload<T, VB>(srow + j) * vs + vload<T, VB>(madd + j) - vl);
      vstore<T, VB>(srow + j, a);
      vstore<T, VB>(drow + j, a * (vload<T, VB>(drow + j) - vd) * vs);
    }
    if (diag_causal)
      for (int64_t j = r + 1; j < ec; ++j) srow[j] = drow[j] = T(0);
  }
}

// Backward, non-causal pair I < J sharing S = P_I P_J^T (er, ec):
//   A1 [i][j] = A[I+i][J+j]  = exp(scale S + maddJ[j] - LnegI[i])   -> written to S
//   A2T[i][j] = A[J+j][I+i]  = exp(scale S + maddI[i] - LnegJ[j])   -> written to dA2T
//   E = scale (A1 o (dA1 - DI[i]) + A2T o (dA2T - DJ[j]))           -> written to dA1
// with dA1 = dO_I P_J^T and dA2T[i][j] = dO_J[j] . P_I[i].
template <class T, int VB>
MSSA_INLINE void bwd_pair_impl(T* S, T* dA1, T* dA2T, int64_t ld, int64_t er, int64_t ec, T scale, const T* LnegI,
                               const T* DI, const T* maddI, const T* LnegJ, const T* DJ, const T* maddJ) {
  typedef typename Vec<T, VB>::type VT;
  constexpr int VL = Vec<T, VB>::n;
  const VT vs = vset<T, VB>(scale);
  for (int64_t r = 0; r < er; ++r) {
    T* srow = S + r * ld;
    T* d1 = dA1 + r * ld;
    T* d2 = dA2T + r * ld;
    const VT vli = vset<T, VB>(LnegI[r]), vdi = vset<T, VB>(DI[r]), vmi = vset<T, VB>(maddI[r]);
    for (int64_t j = 0; j < ec; j += VL) {
      const VT s = vload<T, VB>(srow + j) * vs;
      const VT a1 = vexp<VB>(s + vload<T, VB>(maddJ + j) - vli);
      const VT a2 = vexp<VB>(s + vmi - vload<T, VB>(LnegJ + j));
      const VT e = (a1 * (vload<T, VB>(d1 + j) - vdi) + a2 * (vload<T, VB>(d2 + j) - vload<T, VB>(DJ + j))) * vs;
      vstore<T, VB>(srow + j, a1);
      vstore<T, VB>(d2 + j, a2);
      vstore<T, VB>(d1 + j, e);
    }
  }
}

// The leaf kernels, compiled once portable (16-byte vectors) and once for AVX2+FMA (32-byte).
#define MSSA_LEAVES(ATTR, VB)                                                                                      \
  template <class T>                                                                                               \
  ATTR static void tgemm(int64_t M, int64_t Nc, int64_t K, const T* a, int64_t ars, int64_t acs, const T* b,       \
                         int64_t ldb, T* c, int64_t ldc, bool accumulate) {                                        \
    tgemm_impl<T, VB>(M, Nc, K, a, ars, acs, b, ldb, c, ldc, accumulate);                                          \
  }                                                                                                                \
  template <class T>                                                                                               \
  ATTR static void fwd_update(T* S, int64_t ld, int64_t nr, int64_t er, int64_t ec, T scale, const T* madd,        \
                              bool diag_causal, T* m, T* l, T* acc, int64_t pp) {                                  \
    fwd_update_impl<T, VB>(S, ld, nr, er, ec, scale, madd, diag_causal, m, l, acc, pp);                            \
  }                                                                                                                \
  template <class T>                                                                                               \
  ATTR static void bwd_single(T* S, T* dA, int64_t ld, int64_t er, int64_t ec, T scale, const T* Lneg, const T* D, \
                              const T* madd, bool diag_causal) {                                                   \
    bwd_single_impl<T, VB>(S, dA, ld, er, ec, scale, Lneg, D, madd, diag_causal);                                  \
  }                                                                                                                \
  template <class T>                                                                                               \
  ATTR static void bwd_pair(T* S, T* dA1, T* dA2T, int64_t ld, int64_t er, int64_t ec, T scale, const T* LnegI,    \
                            const T* DI, const T* maddI, const T* LnegJ, const T* DJ, const T* maddJ) {            \
    bwd_pair_impl<T, VB>(S, dA1, dA2T, ld, er, ec, scale, LnegI, DI, maddI, LnegJ, DJ, maddJ);                     \
  }

struct KGeneric {
  MSSA_LEAVES(, 16)
};
#if CRATE_VEC_HAVE_AVX2
struct KAvx2 {
  MSSA_LEAVES(CRATE_VEC_AVX2_TARGET, 32)
};
#endif

// ------------------------------------------------------------------------------------ helpers

std::string num(int64_t v) { return std::to_string(v); }

void check_sizes(const char* fn, int64_t B, int64_t N, int64_t H, int64_t p) {
  if (B < 0) throw Error(std::string(fn) + ": B must be >= 0, got " + num(B));
  if (N < 0) throw Error(std::string(fn) + ": N must be >= 0, got " + num(N));
  if (H < 1) throw Error(std::string(fn) + ": H must be >= 1, got " + num(H));
  if (p < 1) throw Error(std::string(fn) + ": p must be >= 1, got " + num(p));
  const int64_t lim = int64_t(1) << 40;
  if (N > lim || H > lim || p > lim || B > lim ||
      (double)B * (double)round_up(N, kPad) * (double)H * (double)round_up(p, kPad) > 1e15)
    throw Error(std::string(fn) + ": sizes too large (B=" + num(B) + ", N=" + num(N) + ", H=" + num(H) +
                ", p=" + num(p) + ")");
}

void check_ptr(const char* fn, const void* ptr, const char* name) {
  if (!ptr) throw Error(std::string(fn) + ": " + name + " must not be null");
}

template <class T>
std::unique_ptr<T[]> alloc(int64_t n) {
  return std::unique_ptr<T[]>(new T[static_cast<size_t>(std::max<int64_t>(n, 1))]);
}

// Runs task(t, worker_scratch) for t in [0, ntasks) on the pool with dynamic scheduling.
template <class MakeScratch, class Task>
void run_dynamic(int64_t ntasks, MakeScratch make_scratch, Task task) {
  if (ntasks <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t nw = std::min<int64_t>(num_threads(), ntasks);
  parallel_for(0, nw, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t w = lo; w < hi; ++w) {
      int64_t t = next.fetch_add(1);
      if (t >= ntasks) return;
      auto scratch = make_scratch();
      for (; t < ntasks; t = next.fetch_add(1)) task(t, scratch);
    }
  });
}

// Shared geometry and key masks.
template <class T>
struct Geo {
  int64_t B, N, H, p, pp, Npad, nt, BH;
  T scale;
  bool causal;
  std::unique_ptr<T[]> madd;      // (B, Npad): 0 for a valid key, -inf for masked / padding keys
  std::vector<uint8_t> tile_any;  // (B, nt): tile has at least one valid key
};

template <class T>
void init_geo(Geo<T>& g, int64_t B, int64_t N, int64_t H, int64_t p, T scale, bool causal, const uint8_t* km) {
  g.B = B, g.N = N, g.H = H, g.p = p, g.scale = scale, g.causal = causal;
  g.pp = round_up(p, kPad);
  g.Npad = round_up(N, kPad);
  g.nt = (N + kTile - 1) / kTile;
  g.BH = B * H;
  g.madd = alloc<T>(B * g.Npad);
  g.tile_any.assign(static_cast<size_t>(B * g.nt), 0);
  const T ninf = -std::numeric_limits<T>::infinity();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < g.Npad; ++j) {
      const bool valid = j < N && (!km || km[b * N + j] != 0);
      g.madd[b * g.Npad + j] = valid ? T(0) : ninf;
      if (valid) g.tile_any[b * g.nt + j / kTile] = 1;
    }
}

// Groups per head: 1 when there are enough heads to keep every thread busy, else split a head's
// work (query tiles / tile items) round-robin over G tasks.
int64_t groups_per_head(int64_t BH, int64_t max_groups) {
  const int64_t want = 2 * (int64_t)num_threads();
  if (BH >= want) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(max_groups, (want + BH - 1) / BH));
}

// dst (Npad, pp) zero-padded copy of head h of X (B, N, H*p) for batch b.
template <class T>
void pad_head(const Geo<T>& g, const T* X, int64_t b, int64_t h, T* dst) {
  const int64_t ld = g.H * g.p;
  for (int64_t i = 0; i < g.Npad; ++i) {
    T* d = dst + i * g.pp;
    if (i < g.N) {
      std::memcpy(d, X + (b * g.N + i) * ld + h * g.p, sizeof(T) * g.p);
      for (int64_t k = g.p; k < g.pp; ++k) d[k] = T(0);
    } else {
      std::memset(d, 0, sizeof(T) * g.pp);
    }
  }
}
// dst: the transposed head in key-tile blocks: block J (p, kTile) at dst + J*kTile*p holds
// dst[k*kTile + jj] = src[(J*kTile + jj)*pp + k] for J*kTile + jj < Npad (contiguous 16 KiB panels,
// no 4 KiB-aliased row strides). src is a padded (Npad, pp) head.
template <class T>
void transpose_head(const Geo<T>& g, const T* src, T* dst) {
  for (int64_t i0 = 0; i0 < g.Npad; i0 += 8) {
    T* blk = dst + (i0 / kTile) * kTile * g.p + (i0 % kTile);
    for (int64_t k = 0; k < g.p; ++k)
      for (int64_t i = 0; i < 8; ++i) blk[k * kTile + i] = src[(i0 + i) * g.pp + k];
  }
}
template <class T>
int64_t transposed_size(const Geo<T>& g) {
  return g.nt * kTile * g.p;
}

// ------------------------------------------------------------------------------------ forward

template <class T, class K>
void forward_impl(const T* P, T* O, T* L, const Geo<T>& g) {
  const int64_t hsz = g.Npad * g.pp;
  const int64_t G = groups_per_head(g.BH, g.nt);
  // Whole-head tasks of a non-causal problem share each score tile between two query tiles.
  const bool pairs = G == 1 && !g.causal && (g_sym.load() & 2) != 0;
  struct Scratch {
    std::unique_ptr<T[]> Pp, Pt, acc, m, l, S, St;
  };
  const T ninf = -std::numeric_limits<T>::infinity();
  const int64_t ld = g.H * g.p;
  run_dynamic(
      g.BH * G,
      [&] {
        return Scratch{alloc<T>(hsz),    alloc<T>(transposed_size(g)), alloc<T>(hsz),          alloc<T>(g.Npad),
                       alloc<T>(g.Npad), alloc<T>(kTile * kTile),      alloc<T>(kTile * kTile)};
      },
      [&](int64_t t, Scratch& s) {
        const int64_t bh = t / G, grp = t % G, b = bh / g.H, h = bh % g.H;
        T* pp_ = s.Pp.get();
        T* pt_ = s.Pt.get();
        pad_head(g, P, b, h, pp_);
        transpose_head(g, pp_, pt_);
        const T* madd = g.madd.get() + b * g.Npad;
        const uint8_t* any = g.tile_any.data() + b * g.nt;
        T* S = s.S.get();
        T* acc = s.acc.get();
        T* m = s.m.get();
        T* l = s.l.get();
        const int64_t pp = g.pp, Np = g.Npad;
        auto tile_rows = [&](int64_t I, int64_t& i0, int64_t& nr, int64_t& er) {
          i0 = I * kTile;
          nr = std::min(kTile, g.N - i0);
          er = round_up(nr, kPad);
        };
        auto init_rows = [&](int64_t i0, int64_t er) {
          std::fill(acc + i0 * pp, acc + (i0 + er) * pp, T(0));
          std::fill(m + i0, m + i0 + er, ninf);
          std::fill(l + i0, l + i0 + er, T(0));
        };
        auto finish_rows = [&](int64_t i0, int64_t nr) {
          for (int64_t r = 0; r < nr; ++r) {
            const int64_t i = i0 + r;
            T* out = O + (b * g.N + i) * ld + h * g.p;
            const T mr = m[i];
            if (mr == ninf) {
              std::fill(out, out + g.p, T(0));
              if (L) L[bh * g.N + i] = ninf;
            } else {
              const T inv = T(1) / l[i];
              const T* a = acc + i * pp;
              for (int64_t k = 0; k < g.p; ++k) out[k] = a[k] * inv;
              if (L) L[bh * g.N + i] = mr + std::log(l[i]);
            }
          }
        };
        // Online-softmax step: query rows [i0, i0+nr) against keys [j0, j0+ec) with raw scores in Sx.
        auto step = [&](T* Sx, int64_t i0, int64_t nr, int64_t er, int64_t j0, int64_t ec, bool diag_causal) {
          K::template fwd_update<T>(Sx, kTile, nr, er, ec, g.scale, madd + j0, diag_causal, m + i0, l + i0,
                                    acc + i0 * pp, pp);
          K::template tgemm<T>(er, pp, ec, Sx, kTile, 1, pp_ + j0 * pp, pp, acc + i0 * pp, pp, true);
        };
        if (pairs) {
          init_rows(0, Np);
          for (int64_t I = 0; I < g.nt; ++I) {
            int64_t i0, nr, er;
            tile_rows(I, i0, nr, er);
            for (int64_t J = I; J < g.nt; ++J) {
              int64_t j0, nc, ec;
              tile_rows(J, j0, nc, ec);
              if (!any[J] && !any[I]) continue;
              K::template tgemm<T>(er, ec, g.p, pp_ + i0 * pp, pp, 1, pt_ + j0 * g.p, kTile, S, kTile, false);
              if (J > I) {  // S^T serves query tile J against key tile I
                T* St = s.St.get();
                for (int64_t r = 0; r < er; ++r)
                  for (int64_t c = 0; c < ec; ++c) St[c * kTile + r] = S[r * kTile + c];
                if (any[I]) step(St, j0, nc, ec, i0, er, false);
              }
              if (any[J]) step(S, i0, nr, er, j0, ec, false);
            }
          }
          finish_rows(0, g.N);
        } else {
          for (int64_t I = g.nt - 1 - grp; I >= 0; I -= G) {
            int64_t i0, nr, er;
            tile_rows(I, i0, nr, er);
            init_rows(i0, er);
            const int64_t Jend = g.causal ? I + 1 : g.nt;
            for (int64_t J = 0; J < Jend; ++J) {
              if (!any[J]) continue;
              int64_t j0, nc, ec;
              tile_rows(J, j0, nc, ec);
              K::template tgemm<T>(er, ec, g.p, pp_ + i0 * pp, pp, 1, pt_ + j0 * g.p, kTile, S, kTile, false);
              step(S, i0, nr, er, j0, ec, g.causal && J == I);
            }
            finish_rows(i0, nr);
          }
        }
      });
}

// ------------------------------------------------------------------------------------ backward

template <class T, class K>
void backward_impl(const T* P, const T* O, const T* L, const T* dO, T* dP, const Geo<T>& g) {
  const int64_t hsz = g.Npad * g.pp;
  const bool sym = (g_sym.load() & 1) != 0;
  const bool need_dot = sym && !g.causal;
  const T inf = std::numeric_limits<T>::infinity();
  const int64_t ld = g.H * g.p;

  // Work items of one head: kind 0 = single (query tile I, key tile J), 1 = diagonal tile (I, I)
  // with the (dS + dS^T) trick, 2 = non-causal pair I < J.
  struct Item {
    int32_t I, J, kind;
  };
  std::vector<Item> items;
  for (int64_t I = 0; I < g.nt; ++I) {
    if (sym) {
      items.push_back({(int32_t)I, (int32_t)I, 1});
      if (g.causal)
        for (int64_t J = 0; J < I; ++J) items.push_back({(int32_t)I, (int32_t)J, 0});
      else
        for (int64_t J = I + 1; J < g.nt; ++J) items.push_back({(int32_t)I, (int32_t)J, 2});
    } else {
      const int64_t Jend = g.causal ? I + 1 : g.nt;
      for (int64_t J = 0; J < Jend; ++J) items.push_back({(int32_t)I, (int32_t)J, 0});
    }
  }
  // Most expensive first (pairs: 7 tile products, others 4-5): balances the round-robin split.
  std::stable_sort(items.begin(), items.end(), [](const Item& x, const Item& y) { return x.kind > y.kind; });
  const int64_t nitems = (int64_t)items.size();
  const int64_t G = groups_per_head(g.BH, nitems);
  std::unique_ptr<T[]> shared_acc = G > 1 ? alloc<T>(g.BH * G * hsz) : nullptr;

  struct Scratch {
    std::unique_ptr<T[]> Pp, Pt, dOp, dOt, Lneg, D, acc, S, dA, dA2;
  };
  const T scale = g.scale;
  run_dynamic(
      g.BH * G,
      [&] {
        return Scratch{alloc<T>(hsz),
                       alloc<T>(transposed_size(g)),
                       alloc<T>(hsz),
                       need_dot ? alloc<T>(transposed_size(g)) : nullptr,
                       alloc<T>(g.Npad),
                       alloc<T>(g.Npad),
                       G == 1 ? alloc<T>(hsz) : nullptr,
                       alloc<T>(kTile * kTile),
                       alloc<T>(kTile * kTile),
                       alloc<T>(kTile * kTile)};
      },
      [&](int64_t t, Scratch& s) {
        const int64_t bh = t / G, grp = t % G, b = bh / g.H, h = bh % g.H;
        T* pp_ = s.Pp.get();
        T* pt_ = s.Pt.get();
        T* dop = s.dOp.get();
        T* dot = s.dOt.get();
        T* ln = s.Lneg.get();
        T* dv = s.D.get();
        pad_head(g, P, b, h, pp_);
        transpose_head(g, pp_, pt_);
        pad_head(g, dO, b, h, dop);
        if (dot) transpose_head(g, dop, dot);
        for (int64_t i = 0; i < g.Npad; ++i) {
          T lv = inf, dsum = T(0);
          if (i < g.N) {
            const T li = L[bh * g.N + i];
            lv = li == -inf ? inf : li;
            const T* o = O + (b * g.N + i) * ld + h * g.p;
            const T* d = dop + i * g.pp;
            for (int64_t k = 0; k < g.p; ++k) dsum += o[k] * d[k];
          }
          ln[i] = lv;
          dv[i] = dsum;
        }
        T* acc = G == 1 ? s.acc.get() : shared_acc.get() + (bh * G + grp) * hsz;
        std::fill(acc, acc + hsz, T(0));
        const T* madd = g.madd.get() + b * g.Npad;
        const uint8_t* any = g.tile_any.data() + b * g.nt;
        T* S = s.S.get();
        T* dA = s.dA.get();
        T* dA2 = s.dA2.get();
        const int64_t pp = g.pp;
        for (int64_t it = grp; it < nitems; it += G) {
          const Item item = items[it];
          const int64_t I = item.I, J = item.J;
          const int64_t i0 = I * kTile, er = round_up(std::min(kTile, g.N - i0), kPad);
          const int64_t j0 = J * kTile, ec = round_up(std::min(kTile, g.N - j0), kPad);
          if (item.kind == 2) {
            if (!any[I] && !any[J]) continue;
            K::template tgemm<T>(er, ec, g.p, pp_ + i0 * pp, pp, 1, pt_ + j0 * g.p, kTile, S, kTile, false);
            K::template tgemm<T>(er, ec, g.p, dop + i0 * pp, pp, 1, pt_ + j0 * g.p, kTile, dA, kTile, false);
            K::template tgemm<T>(er, ec, g.p, pp_ + i0 * pp, pp, 1, dot + j0 * g.p, kTile, dA2, kTile, false);
            K::template bwd_pair<T>(S, dA, dA2, kTile, er, ec, scale, ln + i0, dv + i0, madd + i0, ln + j0, dv + j0,
                                    madd + j0);
            // rows I += E P_J + A2T dO_J ; rows J += E^T P_I + A1^T dO_I
            K::template tgemm<T>(er, pp, ec, dA, kTile, 1, pp_ + j0 * pp, pp, acc + i0 * pp, pp, true);
            K::template tgemm<T>(er, pp, ec, dA2, kTile, 1, dop + j0 * pp, pp, acc + i0 * pp, pp, true);
            K::template tgemm<T>(ec, pp, er, dA, 1, kTile, pp_ + i0 * pp, pp, acc + j0 * pp, pp, true);
            K::template tgemm<T>(ec, pp, er, S, 1, kTile, dop + i0 * pp, pp, acc + j0 * pp, pp, true);
          } else {
            if (!any[J]) continue;
            const bool diag_causal = g.causal && I == J;
            K::template tgemm<T>(er, ec, g.p, pp_ + i0 * pp, pp, 1, pt_ + j0 * g.p, kTile, S, kTile, false);
            K::template tgemm<T>(er, ec, g.p, dop + i0 * pp, pp, 1, pt_ + j0 * g.p, kTile, dA, kTile, false);
            K::template bwd_single<T>(S, dA, kTile, er, ec, scale, ln + i0, dv + i0, madd + j0, diag_causal);
            if (item.kind == 1) {
              // E = dS + dS^T on the diagonal tile: rows I += E P_I (dQ and dK at once).
              for (int64_t r = 0; r < er; ++r) {
                for (int64_t c = 0; c < r; ++c) {
                  const T e = dA[r * kTile + c] + dA[c * kTile + r];
                  dA[r * kTile + c] = e;
                  dA[c * kTile + r] = e;
                }
                dA[r * kTile + r] *= T(2);
              }
              K::template tgemm<T>(er, pp, er, dA, kTile, 1, pp_ + i0 * pp, pp, acc + i0 * pp, pp, true);
            } else {
              K::template tgemm<T>(er, pp, ec, dA, kTile, 1, pp_ + j0 * pp, pp, acc + i0 * pp, pp, true);  // dQ
              K::template tgemm<T>(ec, pp, er, dA, 1, kTile, pp_ + i0 * pp, pp, acc + j0 * pp, pp, true);  // dK
            }
            K::template tgemm<T>(ec, pp, er, S, 1, kTile, dop + i0 * pp, pp, acc + j0 * pp, pp, true);  // dV
          }
        }
        if (G == 1) {
          for (int64_t i = 0; i < g.N; ++i)
            std::memcpy(dP + (b * g.N + i) * ld + h * g.p, acc + i * pp, sizeof(T) * g.p);
        }
      });
  if (G > 1) {
    parallel_for(0, g.BH * g.N, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) {
        const int64_t bh = x / g.N, i = x % g.N, b = bh / g.H, h = bh % g.H;
        T* out = dP + (b * g.N + i) * ld + h * g.p;
        const T* src = shared_acc.get() + bh * G * hsz + i * g.pp;
        for (int64_t k = 0; k < g.p; ++k) out[k] = src[k];
        for (int64_t q = 1; q < G; ++q) {
          const T* sq = src + q * hsz;
          for (int64_t k = 0; k < g.p; ++k) out[k] += sq[k];
        }
      }
    });
  }
}

template <class T>
bool use_avx2() {
#if CRATE_VEC_HAVE_AVX2
  return g_isa.load() == 0 && vec_use_avx2();
#else
  return false;
#endif
}

}  // namespace

void mssa_set_isa(int isa) { g_isa.store(isa); }
void mssa_set_symmetric(int mode) { g_sym.store(mode & 3); }

template <class T>
void mssa_forward(const T* P, T* O, T* L, int64_t B, int64_t N, int64_t H, int64_t p, T scale, bool causal,
                  const uint8_t* key_mask) {
  const char* fn = "mssa_forward";
  check_sizes(fn, B, N, H, p);
  if (B == 0 || N == 0) return;
  check_ptr(fn, P, "P");
  check_ptr(fn, O, "O");
  Geo<T> g;
  init_geo(g, B, N, H, p, scale, causal, key_mask);
#if CRATE_VEC_HAVE_AVX2
  if (use_avx2<T>()) return forward_impl<T, KAvx2>(P, O, L, g);
#endif
  forward_impl<T, KGeneric>(P, O, L, g);
}

template <class T>
void mssa_backward(const T* P, const T* O, const T* L, const T* dO, T* dP, int64_t B, int64_t N, int64_t H, int64_t p,
                   T scale, bool causal, const uint8_t* key_mask) {
  const char* fn = "mssa_backward";
  check_sizes(fn, B, N, H, p);
  if (B == 0 || N == 0) return;
  check_ptr(fn, P, "P");
  check_ptr(fn, O, "O");
  check_ptr(fn, L, "L");
  check_ptr(fn, dO, "dO");
  check_ptr(fn, dP, "dP");
  Geo<T> g;
  init_geo(g, B, N, H, p, scale, causal, key_mask);
#if CRATE_VEC_HAVE_AVX2
  if (use_avx2<T>()) return backward_impl<T, KAvx2>(P, O, L, dO, dP, g);
#endif
  backward_impl<T, KGeneric>(P, O, L, dO, dP, g);
}

template void mssa_forward<float>(const float*, float*, float*, int64_t, int64_t, int64_t, int64_t, float, bool,
                                  const uint8_t*);
template void mssa_forward<double>(const double*, double*, double*, int64_t, int64_t, int64_t, int64_t, double, bool,
                                   const uint8_t*);
template void mssa_backward<float>(const float*, const float*, const float*, const float*, float*, int64_t, int64_t,
                                   int64_t, int64_t, float, bool, const uint8_t*);
template void mssa_backward<double>(const double*, const double*, const double*, const double*, double*, int64_t,
                                    int64_t, int64_t, int64_t, double, bool, const uint8_t*);

}  // namespace crate::cpu
