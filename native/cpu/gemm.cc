// gemm.cc: the CPU GEMM. Two backends behind one interface (gemm.h):
//  - own: a Goto/BLIS-style blocked GEMM. B is packed into KC×NR column strips and A into MR×KC
//    row strips (transposes are absorbed by the packing), and an MR×NR register-blocked
//    micro-kernel (6×16 floats / 6×8 doubles = 12 AVX2 accumulators, FMA) runs over them. The
//    AVX2+FMA kernel is chosen at run time (__builtin_cpu_supports) with a portable C++ fallback,
//    so the binary stays portable (no -mavx2 build flag). Threads split the M blocks, or the
//    N strips when M is small.
//  - blas: a CBLAS found at run time (blas_loader.h), the default when present.
// Napkin math (this 2-core Zen 3): 2 FMA pipes × 8 floats × 2 FLOP × 3 GHz = 96 GFLOP/s per core;
// the 6×16 kernel does 12 FMAs per 2 loads + 6 broadcasts per k, which keeps both pipes busy.
#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../core/common.h"
#include "../core/parallel.h"
#include "blas_loader.h"

namespace crate::cpu {
namespace {

template <class T>
struct Tile;
template <>
struct Tile<float> {
  static constexpr int MR = 6, NR = 16;
};
template <>
struct Tile<double> {
  static constexpr int MR = 6, NR = 8;
};
constexpr int64_t KC = 256;   // depth of a packed block (A strip 6×256×4 B = 6 KiB in L1)
constexpr int64_t MC = 96;    // rows of A per block (96×256×4 B = 96 KiB in L2)
constexpr int64_t NC = 3072;  // columns of B per block (256×3072×4 B = 3 MiB in L3)

bool has_avx2() {
  static const bool ok = [] {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !std::getenv("CRATE_NO_AVX2");
#else
    return false;
#endif
  }();
  return ok;
}

// ---------------------------------------------------------------------------------- packing
// Ap: ceil(mc/MR) strips, each kc × MR (k-major), zero-padded rows.
template <class T>
void pack_a(bool tA, const T* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc, T* Ap) {
  constexpr int MR = Tile<T>::MR;
  for (int64_t is = 0; is < mc; is += MR) {
    const int64_t mr = std::min<int64_t>(MR, mc - is);
    T* dst = Ap + is * kc;
    for (int64_t k = 0; k < kc; ++k) {
      for (int64_t r = 0; r < mr; ++r) {
        const int64_t i = i0 + is + r, kk = p0 + k;
        dst[k * MR + r] = tA ? A[kk * lda + i] : A[i * lda + kk];
      }
      for (int64_t r = mr; r < MR; ++r) dst[k * MR + r] = T(0);
    }
  }
}

// Bp: ceil(nc/NR) strips, each kc × NR (k-major), zero-padded columns.
template <class T>
void pack_b_strip(bool tB, const T* B, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t nr, T* dst) {
  constexpr int NR = Tile<T>::NR;
  for (int64_t k = 0; k < kc; ++k) {
    const int64_t kk = p0 + k;
    T* d = dst + k * NR;
    if (!tB) {
      const T* s = B + kk * ldb + j0;
      for (int64_t c = 0; c < nr; ++c) d[c] = s[c];
    } else {
      for (int64_t c = 0; c < nr; ++c) d[c] = B[(j0 + c) * ldb + kk];
    }
    for (int64_t c = nr; c < NR; ++c) d[c] = T(0);
  }
}

// ---------------------------------------------------------------------------------- kernels
// acc(MR×NR) = Σ_k Ap[k][r] Bp[k][c]; then C = alpha·acc + beta·C over the mr×nr valid part.
template <class T>
void store_tile(const T* acc, T* C, int64_t ldc, int64_t mr, int64_t nr, T alpha, T beta) {
  constexpr int NR = Tile<T>::NR;
  for (int64_t r = 0; r < mr; ++r)
    for (int64_t c = 0; c < nr; ++c) {
      T v = alpha * acc[r * NR + c];
      C[r * ldc + c] = beta == T(0) ? v : v + beta * C[r * ldc + c];
    }
}

template <class T>
void kernel_portable(int64_t kc, const T* Ap, const T* Bp, T* C, int64_t ldc, int64_t mr, int64_t nr, T alpha, T beta) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  T acc[MR * NR] = {};
  for (int64_t k = 0; k < kc; ++k) {
    const T* a = Ap + k * MR;
    const T* b = Bp + k * NR;
    for (int r = 0; r < MR; ++r)
      for (int c = 0; c < NR; ++c) acc[r * NR + c] += a[r] * b[c];
  }
  store_tile(acc, C, ldc, mr, nr, alpha, beta);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* Ap, const float* Bp, float* C,
                                                     int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(Bp + k * 16), b1 = _mm256_loadu_ps(Bp + k * 16 + 8);
    const float* a = Ap + k * 6;
    __m256 a0 = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(a0, b0, c00);
    c01 = _mm256_fmadd_ps(a0, b1, c01);
    __m256 a1 = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(a1, b0, c10);
    c11 = _mm256_fmadd_ps(a1, b1, c11);
    __m256 a2 = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(a2, b0, c20);
    c21 = _mm256_fmadd_ps(a2, b1, c21);
    __m256 a3 = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(a3, b0, c30);
    c31 = _mm256_fmadd_ps(a3, b1, c31);
    __m256 a4 = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(a4, b0, c40);
    c41 = _mm256_fmadd_ps(a4, b1, c41);
    __m256 a5 = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(a5, b0, c50);
    c51 = _mm256_fmadd_ps(a5, b1, c51);
  }
  alignas(32) float acc[6 * 16];
  _mm256_store_ps(acc + 0, c00), _mm256_store_ps(acc + 8, c01), _mm256_store_ps(acc + 16, c10);
  _mm256_store_ps(acc + 24, c11), _mm256_store_ps(acc + 32, c20), _mm256_store_ps(acc + 40, c21);
  _mm256_store_ps(acc + 48, c30), _mm256_store_ps(acc + 56, c31), _mm256_store_ps(acc + 64, c40);
  _mm256_store_ps(acc + 72, c41), _mm256_store_ps(acc + 80, c50), _mm256_store_ps(acc + 88, c51);
  if (mr == 6 && nr == 16) {
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    for (int r = 0; r < 6; ++r) {
      float* cr = C + r * ldc;
      __m256 x0 = _mm256_mul_ps(va, _mm256_load_ps(acc + r * 16));
      __m256 x1 = _mm256_mul_ps(va, _mm256_load_ps(acc + r * 16 + 8));
      if (beta != 0.f) {
        x0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), x0);
        x1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), x1);
      }
      _mm256_storeu_ps(cr, x0);
      _mm256_storeu_ps(cr + 8, x1);
    }
    return;
  }
  store_tile<float>(acc, C, ldc, mr, nr, alpha, beta);
}

__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const double* Ap, const double* Bp, double* C,
                                                     int64_t ldc, int64_t mr, int64_t nr, double alpha, double beta) {
  __m256d c[6][2];
  for (int r = 0; r < 6; ++r) c[r][0] = c[r][1] = _mm256_setzero_pd();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256d b0 = _mm256_loadu_pd(Bp + k * 8), b1 = _mm256_loadu_pd(Bp + k * 8 + 4);
    const double* a = Ap + k * 6;
    for (int r = 0; r < 6; ++r) {
      const __m256d ar = _mm256_broadcast_sd(a + r);
      c[r][0] = _mm256_fmadd_pd(ar, b0, c[r][0]);
      c[r][1] = _mm256_fmadd_pd(ar, b1, c[r][1]);
    }
  }
  alignas(32) double acc[6 * 8];
  for (int r = 0; r < 6; ++r) {
    _mm256_store_pd(acc + r * 8, c[r][0]);
    _mm256_store_pd(acc + r * 8 + 4, c[r][1]);
  }
  store_tile<double>(acc, C, ldc, mr, nr, alpha, beta);
}
#endif

template <class T>
inline void micro(int64_t kc, const T* Ap, const T* Bp, T* C, int64_t ldc, int64_t mr, int64_t nr, T alpha, T beta) {
#if defined(__x86_64__) || defined(__i386__)
  if (has_avx2()) {
    kernel_avx2(kc, Ap, Bp, C, ldc, mr, nr, alpha, beta);
    return;
  }
#endif
  kernel_portable<T>(kc, Ap, Bp, C, ldc, mr, nr, alpha, beta);
}

// ---------------------------------------------------------------------------------- driver
// Per-thread packing buffers, grown on demand and never zero-filled (packing writes every element).
template <class T>
T* scratch(int slot, size_t n) {
  struct Buf {
    T* p = nullptr;
    size_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[2];
  Buf& b = bufs[slot];
  if (b.n < n) {
    std::free(b.p);
    b.p = static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64));
    if (!b.p) throw std::bad_alloc();
    b.n = n;
  }
  return b.p;
}

template <class T>
void scale_c(T* C, int64_t ldc, int64_t M, int64_t N, T beta) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
}

template <class T>
void gemm_own(bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
              int64_t ldb, T beta, T* C, int64_t ldc) {
  constexpr int MR = Tile<T>::MR, NR = Tile<T>::NR;
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == T(0)) {
    scale_c(C, ldc, M, N, beta);
    return;
  }
  const int threads = num_threads();
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const bool parallel = threads > 1 && flops > 2e6;
  // Balanced M blocks: a multiple of the thread count, each at most MC rows (a multiple of MR).
  const int64_t nb = parallel ? threads * ((M + threads * MC - 1) / (threads * MC)) : (M + MC - 1) / MC;
  const int64_t mcb = std::min<int64_t>(MC, ((M + nb - 1) / nb + MR - 1) / MR * MR);
  if (parallel && K <= KC && N <= NC) {
    // One block of B: a single parallel region; every thread packs B for itself (cheap next to
    // its share of the product) and then its own M blocks, so there is one thread sync, not two.
    const int64_t nstrips = (N + NR - 1) / NR;
    const int64_t mblocks = (M + mcb - 1) / mcb;
    parallel_for(0, mblocks, 1, [&](int64_t b0, int64_t b1) {
      T* Bp = scratch<T>(0, static_cast<size_t>(K * nstrips * NR));
      T* Ap = scratch<T>(1, static_cast<size_t>(((mcb + MR - 1) / MR) * MR * K));
      for (int64_t s = 0; s < nstrips; ++s)
        pack_b_strip(tB, B, ldb, 0, K, s * NR, std::min<int64_t>(NR, N - s * NR), Bp + s * K * NR);
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t ic = b * mcb, mc = std::min(mcb, M - ic);
        pack_a(tA, A, lda, ic, mc, 0, K, Ap);
        for (int64_t s = 0; s < nstrips; ++s) {
          const int64_t nr = std::min<int64_t>(NR, N - s * NR);
          for (int64_t is = 0; is < mc; is += MR)
            micro<T>(K, Ap + is * K, Bp + s * K * NR, C + (ic + is) * ldc + s * NR, ldc, std::min<int64_t>(MR, mc - is),
                     nr, alpha, beta);
        }
      }
    });
    return;
  }
  T* Bbuf = scratch<T>(0, static_cast<size_t>(KC * ((std::min(N, NC) + NR - 1) / NR) * NR));
  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t nstrips = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const T beta_eff = pc == 0 ? beta : T(1);
      T* Bp = Bbuf;
      auto pack_strips = [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s)
          pack_b_strip(tB, B, ldb, pc, kc, jc + s * NR, std::min<int64_t>(NR, nc - s * NR), Bp + s * kc * NR);
      };
      if (parallel)
        parallel_for(0, nstrips, 4, pack_strips);
      else
        pack_strips(0, nstrips);
      const int64_t mblocks = (M + mcb - 1) / mcb;
      auto run_block = [&](int64_t ic, const T* Ap, int64_t s0, int64_t s1) {
        const int64_t mc = std::min(mcb, M - ic);
        for (int64_t s = s0; s < s1; ++s) {
          const int64_t nr = std::min<int64_t>(NR, nc - s * NR);
          for (int64_t is = 0; is < mc; is += MR) {
            const int64_t mr = std::min<int64_t>(MR, mc - is);
            micro<T>(kc, Ap + is * kc, Bp + s * kc * NR, C + (ic + is) * ldc + jc + s * NR, ldc, mr, nr, alpha,
                     beta_eff);
          }
        }
      };
      if (!parallel || mblocks >= threads) {
        // Split M blocks across threads; each thread packs its own A block.
        auto body = [&](int64_t b0, int64_t b1) {
          T* Ap = scratch<T>(1, static_cast<size_t>(((mcb + MR - 1) / MR) * MR * kc));
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t ic = b * mcb;
            pack_a(tA, A, lda, ic, std::min(mcb, M - ic), pc, kc, Ap);
            run_block(ic, Ap, 0, nstrips);
          }
        };
        if (parallel)
          parallel_for(0, mblocks, 1, body);
        else
          body(0, mblocks);
      } else {
        // Few M blocks: pack each once, split the N strips across threads.
        T* Ap = scratch<T>(1, static_cast<size_t>(((mcb + MR - 1) / MR) * MR * kc));
        for (int64_t b = 0; b < mblocks; ++b) {
          const int64_t ic = b * mcb;
          pack_a(tA, A, lda, ic, std::min(mcb, M - ic), pc, kc, Ap);
          parallel_for(0, nstrips, 2, [&](int64_t s0, int64_t s1) { run_block(ic, Ap, s0, s1); });
        }
      }
    }
  }
}

void check_args(const char* fn, bool tA, bool tB, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
                const void* B, int64_t ldb, const void* C, int64_t ldc) {
  if (M < 0 || N < 0 || K < 0)
    throw Error(std::string(fn) + ": negative size M=" + std::to_string(M) + " N=" + std::to_string(N) +
                " K=" + std::to_string(K));
  const int64_t acols = tA ? M : K, bcols = tB ? K : N;
  if (lda < std::max<int64_t>(1, acols) || ldb < std::max<int64_t>(1, bcols) || ldc < std::max<int64_t>(1, N))
    throw Error(std::string(fn) + ": leading dimension too small (lda=" + std::to_string(lda) +
                ", ldb=" + std::to_string(ldb) + ", ldc=" + std::to_string(ldc) + ")");
  if ((M * N > 0 && !C) || (M * K > 0 && !A) || (K * N > 0 && !B)) throw Error(std::string(fn) + ": null pointer");
}

std::atomic<int> g_backend{-1};

GemmBackend resolve_backend() {
  int b = g_backend.load();
  if (b >= 0) return static_cast<GemmBackend>(b);
  const bool found = blas::api().sgemm != nullptr;
  const char* env = std::getenv("CRATE_GEMM");
  GemmBackend want = found ? GemmBackend::blas : GemmBackend::own;
  if (env && std::string(env) == "own") want = GemmBackend::own;
  if (found && blas::api().set_num_threads) blas::api().set_num_threads(num_threads());
  g_backend.store(static_cast<int>(want));
  return want;
}

constexpr int64_t kIntMax = 2147483647;
bool fits_int(int64_t M, int64_t N, int64_t K, int64_t lda, int64_t ldb, int64_t ldc) {
  return M <= kIntMax && N <= kIntMax && K <= kIntMax && lda <= kIntMax && ldb <= kIntMax && ldc <= kIntMax;
}

template <class T>
void gemm_dispatch(const char* fn, bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                   const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  check_args(fn, tA, tB, M, N, K, A, lda, B, ldb, C, ldc);
  if (M == 0 || N == 0) return;
  if (resolve_backend() == GemmBackend::blas && K > 0 && fits_int(M, N, K, lda, ldb, ldc)) {
    const auto& api = blas::api();
    if constexpr (std::is_same_v<T, float>)
      api.sgemm(101, tA ? 112 : 111, tB ? 112 : 111, int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C,
                int(ldc));
    else
      api.dgemm(101, tA ? 112 : 111, tB ? 112 : 111, int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C,
                int(ldc));
    return;
  }
  gemm_own<T>(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
void gemm_batched(const char* fn, bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                  int64_t sA, const T* B, int64_t ldb, int64_t sB, T beta, T* C, int64_t ldc, int64_t sC,
                  int64_t batch) {
  if (batch < 0) throw Error(std::string(fn) + ": negative batch");
  if (batch == 0) return;
  check_args(fn, tA, tB, M, N, K, A, lda, B, ldb, C, ldc);
  const double flops = 2.0 * double(M) * double(N) * double(K);
  if (batch > 1 && flops < 4e6 && num_threads() > 1) {
    // Many small matrices: one own GEMM per item, items spread over the threads (the BLAS would
    // serialise or oversubscribe here).
    parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b)
        gemm_own<T>(tA, tB, M, N, K, alpha, A + b * sA, lda, B + b * sB, ldb, beta, C + b * sC, ldc);
    });
    return;
  }
  for (int64_t b = 0; b < batch; ++b)
    gemm_dispatch<T>(fn, tA, tB, M, N, K, alpha, A + b * sA, lda, B + b * sB, ldb, beta, C + b * sC, ldc);
}

}  // namespace

void gemm_f32(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_dispatch<float>("gemm_f32", tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_f64(bool tA, bool tB, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
              const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_dispatch<double>("gemm_f64", tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_batched_f32(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                      int64_t sA, const float* B, int64_t ldb, int64_t sB, float beta, float* C, int64_t ldc,
                      int64_t sC, int64_t batch) {
  gemm_batched<float>("gemm_batched_f32", tA, tB, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}
void gemm_batched_f64(bool tA, bool tB, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                      int64_t sA, const double* B, int64_t ldb, int64_t sB, double beta, double* C, int64_t ldc,
                      int64_t sC, int64_t batch) {
  gemm_batched<double>("gemm_batched_f64", tA, tB, M, N, K, alpha, A, lda, sA, B, ldb, sB, beta, C, ldc, sC, batch);
}
void gemm_f32_own(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  check_args("gemm_f32_own", tA, tB, M, N, K, A, lda, B, ldb, C, ldc);
  gemm_own<float>(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void set_gemm_backend(GemmBackend b) {
  if (b == GemmBackend::blas && !blas::api().sgemm)
    throw Error("gemm: no BLAS library is loaded: " + blas::api().reason);
  resolve_backend();
  g_backend.store(static_cast<int>(b));
}
GemmBackend gemm_backend() { return resolve_backend(); }

const BlasInfo& blas_info() {
  static BlasInfo info = [] {
    const auto& a = blas::api();
    return BlasInfo{a.sgemm != nullptr, a.path, a.reason};
  }();
  return info;
}

}  // namespace crate::cpu
