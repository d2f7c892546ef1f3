// mssa_ista_test.cc: C++ tests of the fused MSSA and ISTA-family CPU kernels (native/cpu/mssa.h,
// ista.h) against naive double-precision references, for both ISA paths and both backward modes.
// Build (from the repo root, with the kernels' dependencies; add -fsanitize=address,undefined -g
// for a sanitizer run):
//   g++ -std=gnu++17 -O2 -Inative/include -Inative test/native/mssa_ista_test.cc native/cpu/mssa.cc
//   ... native/cpu/ista.cc native/cpu/gemm.cc native/core/parallel.cc -lpthread -o /tmp/mssa_ista_test
//   (gemm.cc may need native/cpu/blas_loader.cc and -ldl once the blocked GEMM lands)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "core/common.h"
#include "core/parallel.h"
#include "cpu/ista.h"
#include "cpu/mssa.h"

using namespace crate::cpu;

static int g_fail = 0, g_pass = 0;
static uint64_t g_rng = 12345;
static double urand() {
  g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return ((g_rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0 - 1.0;
}

static void check(bool ok, const std::string& what) {
  if (ok) {
    ++g_pass;
  } else {
    ++g_fail;
    std::printf("FAIL %s\n", what.c_str());
  }
}

// relative error: max|a-b| / max(max|b|, tiny); NaN counts as failure.
template <class T>
static double relerr(const std::vector<T>& a, const std::vector<double>& b) {
  double mx = 0, md = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (std::isnan((double)a[i]) != std::isnan(b[i])) return 1e300;
    if (std::isinf(b[i])) {
      if ((double)a[i] != b[i]) return 1e300;
      continue;
    }
    mx = std::max(mx, std::fabs(b[i]));
    md = std::max(md, std::fabs((double)a[i] - b[i]));
  }
  return md / std::max(mx, 1e-300);
}

struct MssaRef {
  std::vector<double> O, L, dP;
};

static MssaRef mssa_ref(const std::vector<double>& P, const std::vector<double>& dO, int64_t B, int64_t N, int64_t H,
                        int64_t p, double scale, bool causal, const uint8_t* km) {
  MssaRef r;
  const int64_t ld = H * p;
  r.O.assign(B * N * ld, 0);
  r.L.assign(B * H * N, 0);
  r.dP.assign(B * N * ld, 0);
  std::vector<double> A(N * N), dA(N * N), dS(N * N);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      auto Pa = [&](int64_t i, int64_t k) { return P[(b * N + i) * ld + h * p + k]; };
      auto dOa = [&](int64_t i, int64_t k) { return dO[(b * N + i) * ld + h * p + k]; };
      for (int64_t i = 0; i < N; ++i) {
        double mx = -INFINITY;
        std::vector<double> s(N, -INFINITY);
        for (int64_t j = 0; j < N; ++j) {
          bool valid = (!causal || j <= i) && (!km || km[b * N + j]);
          if (!valid) continue;
          double acc = 0;
          for (int64_t k = 0; k < p; ++k) acc += Pa(i, k) * Pa(j, k);
          s[j] = acc * scale;
          mx = std::max(mx, s[j]);
        }
        if (mx == -INFINITY) {
          r.L[(b * H + h) * N + i] = -INFINITY;
          for (int64_t j = 0; j < N; ++j) A[i * N + j] = 0;
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < N; ++j) sum += (s[j] == -INFINITY ? 0 : std::exp(s[j] - mx));
        r.L[(b * H + h) * N + i] = mx + std::log(sum);
        for (int64_t j = 0; j < N; ++j) A[i * N + j] = s[j] == -INFINITY ? 0 : std::exp(s[j] - mx) / sum;
      }
      for (int64_t i = 0; i < N; ++i)
        for (int64_t k = 0; k < p; ++k) {
          double acc = 0;
          for (int64_t j = 0; j < N; ++j) acc += A[i * N + j] * Pa(j, k);
          r.O[(b * N + i) * ld + h * p + k] = acc;
        }
      // backward
      for (int64_t i = 0; i < N; ++i) {
        double D = 0;
        for (int64_t k = 0; k < p; ++k) D += dOa(i, k) * r.O[(b * N + i) * ld + h * p + k];
        for (int64_t j = 0; j < N; ++j) {
          double acc = 0;
          for (int64_t k = 0; k < p; ++k) acc += dOa(i, k) * Pa(j, k);
          dS[i * N + j] = A[i * N + j] * (acc - D);
        }
      }
      for (int64_t i = 0; i < N; ++i)
        for (int64_t k = 0; k < p; ++k) {
          double acc = 0;
          for (int64_t j = 0; j < N; ++j)
            acc += scale * dS[i * N + j] * Pa(j, k) + scale * dS[j * N + i] * Pa(j, k) + A[j * N + i] * dOa(j, k);
          r.dP[(b * N + i) * ld + h * p + k] = acc;
        }
    }
  return r;
}

template <class T>
static void test_mssa_case(int64_t B, int64_t N, int64_t H, int64_t p, bool causal, int maskmode, int isa, int sym,
                           double tolf, double tolb) {
  const int64_t n = B * N * H * p;
  std::vector<double> P(n), dO(n);
  for (auto& v : P) v = urand();
  for (auto& v : dO) v = urand();
  std::vector<uint8_t> km(B * N, 1);
  if (maskmode == 1)
    for (int64_t i = 0; i < B * N; ++i) km[i] = (i % 3) != 1;
  if (maskmode == 2) {  // batch 0 fully masked, batch 1 partially
    for (int64_t i = 0; i < N; ++i) km[i] = 0;
    for (int64_t i = N; i < B * N; ++i) km[i] = (i % 5) == 2;
  }
  const uint8_t* kmp = maskmode ? km.data() : nullptr;
  const double scale = 1.0 / std::sqrt((double)p);
  MssaRef ref = mssa_ref(P, dO, B, N, H, p, scale, causal, kmp);
  std::vector<T> Pt(P.begin(), P.end()), dOt(dO.begin(), dO.end()), O(n), L(B * H * N), dP(n);
  mssa_set_isa(isa);
  mssa_set_symmetric(sym);
  mssa_forward<T>(Pt.data(), O.data(), L.data(), B, N, H, p, (T)scale, causal, kmp);
  // backward against the reference O/L (so the check isolates the backward)
  std::vector<T> Or(ref.O.begin(), ref.O.end()), Lr(ref.L.begin(), ref.L.end());
  mssa_backward<T>(Pt.data(), Or.data(), Lr.data(), dOt.data(), dP.data(), B, N, H, p, (T)scale, causal, kmp);
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s B=%lld N=%lld H=%lld p=%lld causal=%d mask=%d isa=%d sym=%d",
                sizeof(T) == 4 ? "f32" : "f64", (long long)B, (long long)N, (long long)H, (long long)p, causal,
                maskmode, isa, sym);
  const double eo = relerr(O, ref.O), el = relerr(L, ref.L), eb = relerr(dP, ref.dP);
  check(eo < tolf, std::string(buf) + " O err=" + std::to_string(eo));
  check(el < tolf, std::string(buf) + " L err=" + std::to_string(el));
  check(eb < tolb, std::string(buf) + " dP err=" + std::to_string(eb));
  // also: the own forward's O/L drive the backward equally well
  std::vector<T> dP2(n);
  mssa_backward<T>(Pt.data(), O.data(), L.data(), dOt.data(), dP2.data(), B, N, H, p, (T)scale, causal, kmp);
  const double eb2 = relerr(dP2, ref.dP);
  check(eb2 < tolb * 2, std::string(buf) + " dP(own fwd) err=" + std::to_string(eb2));
  mssa_set_isa(0);
  mssa_set_symmetric(3);
}

static void test_mssa() {
  struct Shape {
    int64_t B, N, H, p;
  } shapes[] = {{2, 1, 2, 16}, {2, 17, 3, 20}, {1, 65, 2, 64}, {2, 130, 2, 33}, {2, 200, 1, 8}, {1, 64, 1, 1}};
  for (auto s : shapes)
    for (int causal = 0; causal < 2; ++causal)
      for (int mask = 0; mask < 3; ++mask)
        for (int isa = 0; isa < 2; ++isa)
          for (int sym : {0, 3}) {
            if (mask == 2 && s.B < 2) continue;
            test_mssa_case<double>(s.B, s.N, s.H, s.p, causal, mask, isa, sym, 1e-12, 1e-12);
            test_mssa_case<float>(s.B, s.N, s.H, s.p, causal, mask, isa, sym, 1e-5, 2e-5);
          }
  // thread-count variants exercise the G > 1 (split head) backward
  for (int th : {1, 3, 8}) {  // G > 1 (split heads) and G = 1 paths
    crate::set_num_threads(th);
    test_mssa_case<double>(1, 300, 1, 24, false, 0, 0, 1, 1e-12, 1e-12);
    test_mssa_case<double>(1, 300, 2, 24, true, 1, 0, 1, 1e-12, 1e-12);
    test_mssa_case<float>(2, 257, 1, 64, false, 1, 0, 0, 1e-5, 2e-5);
    test_mssa_case<double>(2, 300, 1, 24, false, 1, 0, 3, 1e-12, 1e-12);  // G = 1 at th = 1: paired forward
    test_mssa_case<float>(2, 300, 1, 24, false, 2, 1, 3, 1e-5, 2e-5);
  }
  crate::set_num_threads(0);
  // argument validation
  bool threw = false;
  try {
    float x = 0;
    mssa_forward<float>(&x, &x, &x, 1, 1, 1, 0, 1.f, false, nullptr);
  } catch (const crate::Error& e) {
    threw = std::string(e.what()).find("p must be >= 1") != std::string::npos;
  }
  check(threw, "mssa_forward p=0 throws");
  threw = false;
  try {
    mssa_backward<float>(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 2, 1, 4, 1.f, false, nullptr);
  } catch (const crate::Error& e) {
    threw = std::string(e.what()).find("P must not be null") != std::string::npos;
  }
  check(threw, "mssa_backward null P throws");
  // NaN propagates without crashing
  {
    std::vector<float> P(1 * 20 * 16, 0.5f), O(P.size()), L(20), dP(P.size());
    P[7] = NAN;
    mssa_forward<float>(P.data(), O.data(), L.data(), 1, 20, 1, 16, 0.25f, false, nullptr);
    mssa_backward<float>(P.data(), O.data(), L.data(), P.data(), dP.data(), 1, 20, 1, 16, 0.25f, false, nullptr);
    check(std::isnan(O[0]) && std::isnan(dP[0]), "NaN propagates through MSSA");
  }
}

// ------------------------------------------------------------------------------------ ISTA

static std::vector<double> mm(const std::vector<double>& A, const std::vector<double>& Bm, int64_t M, int64_t K,
                              int64_t N, bool tA = false, bool tB = false) {
  std::vector<double> C(M * N, 0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += (tA ? A[k * M + i] : A[i * K + k]) * (tB ? Bm[j * K + k] : Bm[k * N + j]);
      C[i * N + j] = acc;
    }
  return C;
}
static std::vector<double> rnd(int64_t n, double s = 1) {
  std::vector<double> v(n);
  for (auto& x : v) x = urand() * s;
  return v;
}
template <class T>
static std::vector<T> cv(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Loss = sum(out * R) for a fixed random R; checks analytic gradients with central differences.
template <class F>
static double fd_grad(F loss, std::vector<double>& x, int64_t idx, double h = 1e-6) {
  const double x0 = x[idx];
  x[idx] = x0 + h;
  const double lp = loss();
  x[idx] = x0 - h;
  const double lm = loss();
  x[idx] = x0;
  return (lp - lm) / (2 * h);
}

template <class T>
static void test_ista_complete(int64_t Tn, int64_t d, double tol) {
  auto Y = rnd(Tn * d), W = rnd(d * d, 0.3), dZ = rnd(Tn * d);
  const double eta = 0.1, lam = 0.1;
  auto ref_fwd = [&](const std::vector<double>& Yv, const std::vector<double>& Wv) {
    auto YW = mm(Yv, Wv, Tn, d, d), YWt = mm(Yv, Wv, Tn, d, d, false, true), YWtW = mm(YWt, Wv, Tn, d, d);
    std::vector<double> Z(Tn * d);
    for (int64_t i = 0; i < Tn * d; ++i) Z[i] = std::max(0.0, Yv[i] + eta * (YW[i] - YWtW[i]) - eta * lam);
    return Z;
  };
  auto Zr = ref_fwd(Y, W);
  std::vector<T> Z(Tn * d), dY(Tn * d), dW(d * d);
  auto Yt = cv<T>(Y), Wt = cv<T>(W), dZt = cv<T>(dZ);
  ista_forward<T>(Yt.data(), Wt.data(), Z.data(), Tn, d, (T)eta, (T)lam, nullptr);
  check(relerr(Z, Zr) < tol, "ista_forward " + std::to_string(sizeof(T)) + " err=" + std::to_string(relerr(Z, Zr)));
  std::vector<char> ws(ista_workspace_size<T>(Tn, d, true));
  ista_backward<T>(Yt.data(), Wt.data(), Z.data(), dZt.data(), dY.data(), dW.data(), Tn, d, (T)eta, ws.data());
  if (sizeof(T) == 8) {
    auto loss = [&] {
      auto z = ref_fwd(Y, W);
      double s = 0;
      for (int64_t i = 0; i < Tn * d; ++i) s += z[i] * dZ[i];
      return s;
    };
    double md = 0, mx = 0;
    for (int64_t i = 0; i < Tn * d; i += 3) {
      md = std::max(md, std::fabs(fd_grad(loss, Y, i) - (double)dY[i]));
      mx = std::max(mx, std::fabs((double)dY[i]));
    }
    for (int64_t i = 0; i < d * d; i += 2) {
      md = std::max(md, std::fabs(fd_grad(loss, W, i) - (double)dW[i]));
      mx = std::max(mx, std::fabs((double)dW[i]));
    }
    check(md / mx < 1e-6, "ista_backward fd err=" + std::to_string(md / mx));
  }
}

template <class T>
static void test_ista_overcomplete(int64_t Tn, int64_t d, int64_t m, double tol) {
  auto Y = rnd(Tn * d), D = rnd(d * m, 0.3), D1 = rnd(d * m, 0.3), dO = rnd(Tn * d);
  const double eta = 0.1, lam = 0.1;
  auto ref_fwd = [&](const std::vector<double>& Yv, const std::vector<double>& Dv, const std::vector<double>& D1v) {
    auto A1 = mm(Yv, Dv, Tn, d, m);
    for (auto& x : A1) x = std::max(0.0, eta * x - eta * lam);
    auto R = mm(A1, Dv, Tn, m, d, false, true);
    for (int64_t i = 0; i < Tn * d; ++i) R[i] -= Yv[i];
    auto RD = mm(R, Dv, Tn, d, m);
    std::vector<double> A2(Tn * m);
    for (int64_t i = 0; i < Tn * m; ++i) A2[i] = std::max(0.0, A1[i] - eta * RD[i] - eta * lam);
    return mm(A2, D1v, Tn, m, d, false, true);
  };
  auto outr = ref_fwd(Y, D, D1);
  auto Yt = cv<T>(Y), Dt = cv<T>(D), D1t = cv<T>(D1), dOt = cv<T>(dO);
  std::vector<T> out(Tn * d), out2(Tn * d), A1(Tn * m), A2(Tn * m), R(Tn * d), dY(Tn * d), dD(d * m), dD1(d * m);
  ista_overcomplete_forward<T>(Yt.data(), Dt.data(), D1t.data(), out.data(), A1.data(), A2.data(), R.data(), Tn, d, m,
                               (T)eta, (T)lam, nullptr);
  ista_overcomplete_forward<T>(Yt.data(), Dt.data(), D1t.data(), out2.data(), nullptr, nullptr, nullptr, Tn, d, m,
                               (T)eta, (T)lam, nullptr);
  check(relerr(out, outr) < tol, "ista_overcomplete_forward err=" + std::to_string(relerr(out, outr)));
  check(relerr(out2, outr) < tol, "ista_overcomplete_forward (no saved) err=" + std::to_string(relerr(out2, outr)));
  ista_overcomplete_backward<T>(Yt.data(), Dt.data(), D1t.data(), A1.data(), A2.data(), R.data(), dOt.data(), dY.data(),
                                dD.data(), dD1.data(), Tn, d, m, (T)eta, nullptr);
  if (sizeof(T) == 8) {
    auto loss = [&] {
      auto z = ref_fwd(Y, D, D1);
      double s = 0;
      for (int64_t i = 0; i < Tn * d; ++i) s += z[i] * dO[i];
      return s;
    };
    double md = 0, mx = 0;
    auto acc = [&](double fd, double an) {
      md = std::max(md, std::fabs(fd - an));
      mx = std::max(mx, std::fabs(an));
    };
    for (int64_t i = 0; i < Tn * d; i += 3) acc(fd_grad(loss, Y, i), dY[i]);
    for (int64_t i = 0; i < d * m; i += 5) acc(fd_grad(loss, D, i), dD[i]);
    for (int64_t i = 0; i < d * m; i += 5) acc(fd_grad(loss, D1, i), dD1[i]);
    check(md / mx < 1e-6, "ista_overcomplete_backward fd err=" + std::to_string(md / mx));
  }
}

template <class T>
static void test_ista_tied(int64_t Tn, int64_t d, int64_t m, double tol) {
  auto Y = rnd(Tn * d), W = rnd(m * d, 0.3), dO = rnd(Tn * d);
  const double eta = 0.1, lam = 0.1;
  auto ref_fwd = [&](const std::vector<double>& Yv, const std::vector<double>& Wv) {
    auto C = mm(Yv, Wv, Tn, d, m, false, true);
    std::vector<double> A0(Tn * m);
    for (int64_t i = 0; i < Tn * m; ++i) A0[i] = std::max(0.0, eta * C[i] - eta * lam);
    auto AWWt = mm(mm(A0, Wv, Tn, m, d), Wv, Tn, d, m, false, true);
    std::vector<double> A1(Tn * m);
    for (int64_t i = 0; i < Tn * m; ++i) A1[i] = std::max(0.0, A0[i] + eta * (C[i] - AWWt[i]) - eta * lam);
    return mm(A1, Wv, Tn, m, d);
  };
  auto outr = ref_fwd(Y, W);
  auto Yt = cv<T>(Y), Wt = cv<T>(W), dOt = cv<T>(dO);
  std::vector<T> out(Tn * d), A0(Tn * m), A1(Tn * m), R(Tn * d), dY(Tn * d), dW(m * d);
  ista_tied_forward<T>(Yt.data(), Wt.data(), out.data(), A0.data(), A1.data(), R.data(), Tn, d, m, (T)eta, (T)lam,
                       nullptr);
  check(relerr(out, outr) < tol, "ista_tied_forward err=" + std::to_string(relerr(out, outr)));
  ista_tied_backward<T>(Yt.data(), Wt.data(), A0.data(), A1.data(), R.data(), dOt.data(), dY.data(), dW.data(), Tn, d,
                        m, (T)eta, nullptr);
  if (sizeof(T) == 8) {
    auto loss = [&] {
      auto z = ref_fwd(Y, W);
      double s = 0;
      for (int64_t i = 0; i < Tn * d; ++i) s += z[i] * dO[i];
      return s;
    };
    double md = 0, mx = 0;
    auto acc = [&](double fd, double an) {
      md = std::max(md, std::fabs(fd - an));
      mx = std::max(mx, std::fabs(an));
    };
    for (int64_t i = 0; i < Tn * d; i += 3) acc(fd_grad(loss, Y, i), dY[i]);
    for (int64_t i = 0; i < m * d; i += 5) acc(fd_grad(loss, W, i), dW[i]);
    check(md / mx < 1e-6, "ista_tied_backward fd err=" + std::to_string(md / mx));
  }
}

static void test_ista() {
  test_ista_complete<double>(13, 8, 1e-12);
  test_ista_complete<float>(37, 24, 1e-5);
  test_ista_complete<double>(5, 16, 1e-12);  // T < d: the two-GEMM path
  test_ista_complete<float>(6, 32, 1e-5);
  test_ista_overcomplete<double>(11, 6, 24, 1e-12);
  test_ista_overcomplete<float>(29, 16, 64, 1e-5);
  test_ista_tied<double>(11, 6, 24, 1e-12);
  test_ista_tied<float>(29, 16, 64, 1e-5);
  bool threw = false;
  try {
    float x = 0;
    ista_forward<float>(&x, &x, &x, -1, 4, 0.1f, 0.1f, nullptr);
  } catch (const crate::Error& e) {
    threw = std::string(e.what()).find("T must be >= 0") != std::string::npos;
  }
  check(threw, "ista_forward T=-1 throws");
}

int main() {
  test_mssa();
  test_ista();
  std::printf("mssa_ista_test: %d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
