// rate_tssa_bench.cc: quick timings of the log-det coding rate and TSSA kernels through the C ABI.
// Build and run (from the repository root, after building libcrate as in test/c/test_rate_tssa.c):
//   g++ -std=c++17 -O2 -Inative/include bench/native/rate_tssa_bench.cc -L/tmp/build-rt/Release -lcrate \
//       -Wl,-rpath,/tmp/build-rt/Release -o /tmp/rt_bench && /tmp/rt_bench
// Prints the best of 11 timed runs (after 1 warm-up) per case, forward and backward separately: the
// best, not the median, because the 2-vCPU dev VM is shared and noisy.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "crate/crate.h"

namespace {

double best_ms(const std::function<void()>& fn, int reps = 11) {
  fn();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return *std::min_element(t.begin(), t.end());
}

void ok(crate_status s) {
  if (s != CRATE_OK) std::printf("error: %s\n", crate_last_error());
}

std::vector<float> randn(size_t n, float scale, std::mt19937& rng) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void bench_logdet(int64_t batch, int64_t m, int64_t n, std::mt19937& rng) {
  auto Z = randn(batch * m * n, 0.1f, rng);
  const float a = float(m) / (n * 0.01f);  // the authors' p/(N·eps)
  std::vector<float> alpha(batch, a), R(batch), dR(batch, 1.f), dZ(Z.size());
  std::vector<double> chol(crate_logdet_gram_chol_size(batch, m, n) / sizeof(double));
  double f =
      best_ms([&] { ok(crate_logdet_gram_forward_f32(Z.data(), alpha.data(), R.data(), batch, m, n, chol.data())); });
  double b = best_ms([&] {
    ok(crate_logdet_gram_backward_f32(Z.data(), alpha.data(), dR.data(), dZ.data(), batch, m, n, chol.data()));
  });
  double br = best_ms(
      [&] { ok(crate_logdet_gram_backward_f32(Z.data(), alpha.data(), dR.data(), dZ.data(), batch, m, n, nullptr)); });
  const double k = std::min(m, n), r = std::max(m, n);
  const double gf = batch * (k * k * r + k * k * k / 3) * 1e-9, gb = batch * 2 * k * k * r * 1e-9;
  std::printf(
      "logdet f32 batch=%lld m=%lld n=%lld: fwd %.2f ms (%.1f GFLOP/s), bwd(saved chol) %.2f ms (%.1f GFLOP/s), "
      "bwd(recompute) %.2f ms, fwd+bwd %.2f ms\n",
      (long long)batch, (long long)m, (long long)n, f, gf / f * 1e3, b, gb / b * 1e3, br, f + b);
}

void bench_tssa(int64_t B, int64_t N, int64_t H, int64_t p, std::mt19937& rng) {
  const int64_t D = H * p;
  auto W = randn(B * N * D, 1.f, rng), dY = randn(B * N * D, 1.f, rng);
  std::vector<float> temp(H, 1.f), Y(W.size()), dW(W.size()), Pi(B * H * N), cn(B * D), ms(B * D), dt(H);
  std::vector<char> ws(crate_tssa_backward_workspace_size(B, N, H, p) + 8);
  double f = best_ms([&] {
    ok(crate_tssa_forward_f32(W.data(), temp.data(), Y.data(), Pi.data(), cn.data(), ms.data(), B, N, H, p));
  });
  double b = best_ms([&] {
    ok(crate_tssa_backward_f32(W.data(), temp.data(), dY.data(), Pi.data(), cn.data(), ms.data(), dW.data(), dt.data(),
                               B, N, H, p, ws.data()));
  });
  const double gb = double(B * N * D) * 4 * 1e-9;  // GB of one f32 tensor
  std::printf("tssa   f32 B=%lld H=%lld N=%lld p=%lld: fwd %.2f ms (%.1f GB/s of W), bwd %.2f ms, fwd+bwd %.2f ms\n",
              (long long)B, (long long)H, (long long)N, (long long)p, f, gb / f * 1e3, b, f + b);
}

void bench_causal(int64_t B, int64_t T, int64_t H, int64_t p, std::mt19937& rng) {
  const int64_t D = H * p;
  auto W = randn(B * T * D, 1.f, rng), dY = randn(B * T * D, 1.f, rng);
  std::vector<float> temp(H, 1.f), bias(H * T, 0.f), Y(W.size()), dW(W.size()), dt(H), db(H * T);
  std::vector<char> ws(crate_tssa_causal_backward_workspace_size(B, T, H, p) + 8);
  double f = best_ms(
      [&] { ok(crate_tssa_causal_forward_f32(W.data(), temp.data(), bias.data(), Y.data(), nullptr, B, T, H, p, T)); });
  double b = best_ms([&] {
    ok(crate_tssa_causal_backward_f32(W.data(), temp.data(), bias.data(), dY.data(), dW.data(), dt.data(), db.data(), B,
                                      T, H, p, T, ws.data()));
  });
  std::printf("causal f32 B=%lld H=%lld T=%lld p=%lld: fwd %.2f ms, bwd %.2f ms, fwd+bwd %.2f ms\n", (long long)B,
              (long long)H, (long long)T, (long long)p, f, b, f + b);
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  std::printf("threads: %d\n", crate_num_threads());
  bench_logdet(384, 64, 197, rng);
  bench_logdet(384, 197, 64, rng);
  bench_tssa(8, 1024, 6, 64, rng);
  bench_tssa(8, 4096, 6, 64, rng);
  bench_causal(8, 1024, 12, 64, rng);
  return 0;
}
