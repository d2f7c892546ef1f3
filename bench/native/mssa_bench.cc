// mssa_bench.cc: timings of the fused CPU MSSA (fwd, bwd; symmetric vs plain backward; AVX2 vs
// portable path) and of the ISTA-family forward/backward, f32, against one bare GEMM of the same
// token shape (so the ISTA overhead over its GEMMs is visible whatever GEMM backend is linked).
// Build and run (repo root):
//   g++ -std=gnu++17 -O3 -Inative/include -Inative bench/native/mssa_bench.cc native/cpu/mssa.cc
//       native/cpu/ista.cc native/cpu/gemm.cc native/core/parallel.cc -lpthread -o /tmp/mssa_bench
//   (plus native/cpu/blas_loader.cc -ldl if gemm.cc needs it);  /tmp/mssa_bench [overcomplete]
// With -DMSSA_BENCH_CBLAS (and without gemm.cc, linking -lopenblas instead) the crate::cpu::gemm_*
// entry points are provided here by CBLAS, to time the ISTA kernels with a fast GEMM before the
// own blocked GEMM is in place. Set OPENBLAS_NUM_THREADS to the thread count used.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/parallel.h"
#include "cpu/gemm.h"
#include "cpu/ista.h"
#include "cpu/mssa.h"

using namespace crate::cpu;

#ifdef MSSA_BENCH_CBLAS
#include <cblas.h>
namespace crate::cpu {
void gemm_f32(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
void gemm_f64(bool tA, bool tB, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
              const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}
}  // namespace crate::cpu
#endif

#include <ctime>
// MSSA_BENCH_CPU=1 in the environment: measure process CPU time instead of wall time (robust on a
// shared, oversubscribed machine; equals wall time x threads when nothing else runs).
static bool g_cpu_clock = false;
static double now() {
  if (g_cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
template <class F>
static double best_ms(F f, int reps = 5) {
  f();  // warm-up
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now();
    f();
    best = std::min(best, now() - t0);
  }
  return best * 1e3;
}
static std::vector<float> rnd(int64_t n) {
  std::vector<float> v(n);
  uint64_t s = 88172645463325252ULL ^ (uint64_t)n;
  for (auto& x : v) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    x = (float)(((s >> 40) * (1.0 / 16777216.0)) * 2.0 - 1.0);
  }
  return v;
}

static void bench_mssa(int64_t B, int64_t H, int64_t N, int64_t p, bool causal) {
  const int64_t n = B * N * H * p;
  auto P = rnd(n), dO = rnd(n);
  std::vector<float> O(n), L(B * H * N), dP(n);
  const float scale = 1.0f / std::sqrt((float)p);
  std::printf("MSSA f32 B=%lld H=%lld N=%lld p=%lld causal=%d\n", (long long)B, (long long)H, (long long)N,
              (long long)p, causal);
  for (int isa : {0, 1}) {
    mssa_set_isa(isa);
    double b[2], f2[2];
    for (int sym : {0, 1}) {
      mssa_set_symmetric(sym ? 3 : 0);
      f2[sym] = best_ms([&] { mssa_forward<float>(P.data(), O.data(), L.data(), B, N, H, p, scale, causal, nullptr); });
      b[sym] = best_ms([&] {
        mssa_backward<float>(P.data(), O.data(), L.data(), dO.data(), dP.data(), B, N, H, p, scale, causal, nullptr);
      });
    }
    const double f = f2[1];
    const double flops_f = 4.0 * B * H * N * N * p * (causal ? 0.5 : 1.0);
    std::printf(
        "  %-8s fwd plain %7.3f sym %7.3f ms (%5.1f GFLOP/s) | bwd plain %7.3f sym %7.3f ms | fwd+bwd %7.3f ms\n",
        isa == 0 ? "avx2" : "portable", f2[0], f, flops_f / f * 1e-6, b[0], b[1], f + b[1]);
  }
  mssa_set_isa(0);
  mssa_set_symmetric(1);
}

static void bench_ista(int64_t T, int64_t d) {
  auto Y = rnd(T * d), W = rnd(d * d), dZ = rnd(T * d);
  for (auto& w : W) w *= 0.05f;
  std::vector<float> Z(T * d), dY(T * d), dW(d * d), C(T * d);
  std::vector<char> ws(ista_workspace_size<float>(T, d, true));
  const double g = best_ms([&] { gemm_f32(false, false, T, d, d, 1.f, Y.data(), d, W.data(), d, 0.f, C.data(), d); });
  const double f = best_ms([&] { ista_forward<float>(Y.data(), W.data(), Z.data(), T, d, 0.1f, 0.1f, ws.data()); });
  const double b = best_ms([&] {
    ista_backward<float>(Y.data(), W.data(), Z.data(), dZ.data(), dY.data(), dW.data(), T, d, 0.1f, ws.data());
  });
  std::printf("ISTA f32 T=%lld d=%lld: fwd %.3f ms, bwd %.3f ms; one gemm_f32 (T x d x d) %.3f ms\n", (long long)T,
              (long long)d, f, b, g);
}

static void bench_overcomplete(int64_t T, int64_t d, int64_t m) {
  auto Y = rnd(T * d), D = rnd(d * m), D1 = rnd(d * m), dO = rnd(T * d);
  std::vector<float> out(T * d), A1(T * m), A2(T * m), R(T * d), dY(T * d), dD(d * m), dD1(d * m);
  std::vector<char> ws(ista_overcomplete_workspace_size<float>(T, d, m, true));
  const double f = best_ms(
      [&] {
        ista_overcomplete_forward<float>(Y.data(), D.data(), D1.data(), out.data(), A1.data(), A2.data(), R.data(), T,
                                         d, m, 0.1f, 0.1f, ws.data());
      },
      3);
  const double b = best_ms(
      [&] {
        ista_overcomplete_backward<float>(Y.data(), D.data(), D1.data(), A1.data(), A2.data(), R.data(), dO.data(),
                                          dY.data(), dD.data(), dD1.data(), T, d, m, 0.1f, ws.data());
      },
      3);
  std::printf("ISTA overcomplete f32 T=%lld d=%lld m=%lld: fwd %.3f ms (4 GEMMs), bwd %.3f ms (8 GEMMs)\n",
              (long long)T, (long long)d, (long long)m, f, b);
}

int main(int argc, char** argv) {
  g_cpu_clock = std::getenv("MSSA_BENCH_CPU") != nullptr;
  std::printf("threads: %d, clock: %s\n", crate::num_threads(), g_cpu_clock ? "process CPU time" : "wall");
  bench_mssa(8, 6, 65, 64, false);
  bench_mssa(8, 6, 65, 64, true);
  bench_mssa(1, 6, 1024, 64, false);
  bench_mssa(1, 6, 1024, 64, true);
  bench_ista(2080, 384);
  if (argc > 1) bench_overcomplete(2080, 384, 1536);
  return 0;
}
