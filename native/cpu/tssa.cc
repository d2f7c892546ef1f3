// tssa.cc: ToST token-statistics self-attention (vision and causal), fused forward/backward.
// See tssa.h for the maths. One batch item per task; per item the vision kernels make 3 passes
// over W (column norms; head softmax + weighted column sums; output), the causal forward one
// sweep over time with running prefix sums. The hand-derived backward is written out next to
// each kernel below.
#include "tssa.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../core/common.h"
#include "../core/parallel.h"

namespace crate::cpu {
namespace {

constexpr double kNormEps = 1e-12;  // F.normalize eps (vision) / clamp_min of the causal cumsum
constexpr double kPiEps = 1e-8;     // Σ Π + 1e-8
constexpr int64_t kChunk = 64;      // causal backward: time steps per recomputed chunk

// ---- argument checks -----------------------------------------------------------------------

int64_t mul_checked(int64_t a, int64_t b, const char* fn) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) throw Error(std::string(fn) + ": size overflow");
  return a * b;
}

void check_sizes(const char* fn, int64_t B, int64_t N, int64_t H, int64_t p, const char* nname) {
  if (B < 0 || N < 0 || H < 0 || p < 0)
    throw Error(std::string(fn) + ": sizes must be >= 0 (got B=" + std::to_string(B) + ", " + nname + "=" +
                std::to_string(N) + ", H=" + std::to_string(H) + ", p=" + std::to_string(p) + ")");
  mul_checked(mul_checked(mul_checked(B, N, fn), H, fn), p, fn);
  mul_checked(mul_checked(mul_checked(B, N, fn), H, fn), 8, fn);
}

void need(const void* ptr, const char* fn, const char* arg) {
  if (!ptr) throw Error(std::string(fn) + ": " + arg + " must not be NULL");
}

template <class T>
std::vector<double> load_temp(const char* fn, const T* temp, int64_t H) {
  std::vector<double> tau(static_cast<size_t>(H));
  for (int64_t h = 0; h < H; ++h) {
    tau[h] = static_cast<double>(temp[h]);
    if (!std::isfinite(tau[h]))
      throw NumericalError(std::string(fn) + ": temp[" + std::to_string(h) + "] is " +
                           (std::isnan(tau[h]) ? "NaN" : "Inf"));
  }
  return tau;
}

double* workspace_or(void* ws, std::vector<double>& own, size_t n, const char* fn) {
  if (ws) {
    if (reinterpret_cast<uintptr_t>(ws) % alignof(double) != 0)
      throw Error(std::string(fn) + ": workspace must be 8-byte aligned");
    return static_cast<double*>(ws);
  }
  own.assign(n, 0.0);
  return own.data();
}

// ---- NaN/Inf reporting ---------------------------------------------------------------------

struct Status {
  int code = 0;  // 0 ok, 1 NaN, 2 Inf, 3 overflow of a squared norm / cumulative sum
  int64_t n = 0, c = 0;
};

// Called when a column sum of squares came out non-finite: find the first bad element of W_b.
template <class T>
Status locate_bad(const T* Wb, int64_t N, int64_t D) {
  Status s;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < D; ++c) {
      const double v = static_cast<double>(Wb[n * D + c]);
      if (!std::isfinite(v)) {
        s.code = std::isnan(v) ? 1 : 2;
        s.n = n;
        s.c = c;
        return s;
      }
    }
  s.code = 3;
  return s;
}

void raise_first(const std::vector<Status>& st, const char* fn, const char* tname) {
  for (size_t b = 0; b < st.size(); ++b) {
    const Status& s = st[b];
    if (s.code == 0) continue;
    if (s.code == 3)
      throw NumericalError(std::string(fn) + ": sum of W[b=" + std::to_string(b) + "]² over " + tname + " overflows");
    throw NumericalError(std::string(fn) + ": W[b=" + std::to_string(b) + ", " + tname + "=" + std::to_string(s.n) +
                         ", c=" + std::to_string(s.c) + "] is " + (s.code == 1 ? "NaN" : "Inf"));
  }
}

// max(x, eps) written so that it maps onto a single maxsd/maxpd (std::max's NaN ordering does
// not, which stops GCC from vectorising the loops it sits in).
inline double clamp_eps(double x) { return x > kNormEps ? x : kNormEps; }

// Reductions over a head's p features use 8 independent partial sums: this breaks the FP-add
// latency chain and lets the compiler vectorise without -ffast-math. Lanes(f) calls f(c, l) for
// c in [c0, c1), with lane l = (c - c0) % 8 (the caller accumulates into its own lane arrays).
template <class F>
inline void lanes8(int64_t c0, int64_t c1, F&& f) {
  int64_t c = c0;
  for (; c + 8 <= c1; c += 8)
    for (int l = 0; l < 8; ++l) f(c + l, l);
  for (int l = 0; c < c1; ++c, ++l) f(c, l);
}
inline double sum8(const double* a) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

// Softmax over H entries in place.
inline void softmax_inplace(double* x, int64_t H) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t h = 0; h < H; ++h) mx = std::max(mx, x[h]);
  double sum = 0;
  for (int64_t h = 0; h < H; ++h) {
    x[h] = std::exp(x[h] - mx);
    sum += x[h];
  }
  const double inv = 1.0 / sum;
  for (int64_t h = 0; h < H; ++h) x[h] *= inv;
}

// =============================================================================================
// Vision TSSA
// =============================================================================================

// Per-item statistics of the forward.
//   Wb  (N, D)  D = H*p
//   q   (D)     out: ‖W[:,c]‖₂          inv2 (D) out: 1/max(q,eps)²
//   Pi  (H, N)  out: Π                  m    (D) out: m
//   sig (H)     out: Σ_n Π + 1e-8       lg   (H) scratch
template <class T>
Status vision_stats(const T* Wb, const double* tau, int64_t N, int64_t H, int64_t p, double* q, double* inv2,
                    double* Pi, double* m, double* sig, double* lg) {
  const int64_t D = H * p;
  // Pass 1: column sums of squares over tokens.
  std::fill(q, q + D, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const T* w = Wb + n * D;
    for (int64_t c = 0; c < D; ++c) {
      const double v = static_cast<double>(w[c]);
      q[c] += v * v;
    }
  }
  for (int64_t c = 0; c < D; ++c) {
    if (!std::isfinite(q[c])) return locate_bad(Wb, N, D);
    q[c] = std::sqrt(q[c]);
    const double nu = clamp_eps(q[c]);
    inv2[c] = 1.0 / (nu * nu);
  }
  // Pass 2: s[h,n] = Σ_i W²/ν², Π = softmax_h(τ s), σ_h = Σ_n Π, A[c] = Σ_n Π W² (in m).
  std::fill(m, m + D, 0.0);
  std::fill(sig, sig + H, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    const T* w = Wb + n * D;
    for (int64_t h = 0; h < H; ++h) {
      double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      lanes8(h * p, (h + 1) * p, [&](int64_t c, int l) {
        const double v = static_cast<double>(w[c]);
        acc[l] += v * v * inv2[c];
      });
      lg[h] = tau[h] * sum8(acc);
    }
    softmax_inplace(lg, H);
    for (int64_t h = 0; h < H; ++h) {
      const double P = lg[h];
      Pi[h * N + n] = P;
      sig[h] += P;
      for (int64_t c = h * p; c < (h + 1) * p; ++c) {
        const double v = static_cast<double>(w[c]);
        m[c] += P * v * v;
      }
    }
  }
  for (int64_t h = 0; h < H; ++h) {
    sig[h] += kPiEps;
    const double inv = 1.0 / sig[h];
    for (int64_t c = h * p; c < (h + 1) * p; ++c) m[c] *= inv;
  }
  return Status{};
}

size_t vision_bwd_per_item(int64_t N, int64_t H, int64_t p) {
  // Pi, s, dPi (H,N) | q, inv2, m, g, dA, cc (D) | sig, dsig, dtau, lg (H)
  return static_cast<size_t>(3 * H * N + 6 * H * p + 4 * H);
}

}  // namespace

template <class T>
void tssa_forward(const T* W, const T* temp, T* Y, T* Pi, T* colnorm, T* mstat, int64_t B, int64_t N, int64_t H,
                  int64_t p) {
  const char* fn = "tssa_forward";
  check_sizes(fn, B, N, H, p, "N");
  const int64_t D = H * p;
  if (B == 0 || N == 0 || H == 0) return;
  need(temp, fn, "temp");
  if (p > 0) {
    need(W, fn, "W");
    need(Y, fn, "Y");
  }
  const std::vector<double> tau = load_temp(fn, temp, H);
  std::vector<Status> st(static_cast<size_t>(B));
  parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    std::vector<double> buf(static_cast<size_t>(H * N + 4 * D + 2 * H));
    double* pi = buf.data();
    double* q = pi + H * N;
    double* inv2 = q + D;
    double* m = inv2 + D;
    double* g = m + D;
    double* sig = g + D;
    double* lg = sig + H;
    for (int64_t b = lo; b < hi; ++b) {
      const T* Wb = W + b * N * D;
      st[b] = vision_stats(Wb, tau.data(), N, H, p, q, inv2, pi, m, sig, lg);
      if (st[b].code) continue;
      for (int64_t c = 0; c < D; ++c) g[c] = 1.0 / (1.0 + m[c]);
      // Pass 3: Y = −W Π g.
      T* Yb = Y + b * N * D;
      for (int64_t n = 0; n < N; ++n) {
        const T* w = Wb + n * D;
        T* y = Yb + n * D;
        for (int64_t h = 0; h < H; ++h) {
          const double P = pi[h * N + n];
          for (int64_t c = h * p; c < (h + 1) * p; ++c) y[c] = static_cast<T>(-static_cast<double>(w[c]) * P * g[c]);
        }
      }
      if (Pi)
        for (int64_t i = 0; i < H * N; ++i) Pi[b * H * N + i] = static_cast<T>(pi[i]);
      if (colnorm)
        for (int64_t c = 0; c < D; ++c) colnorm[b * D + c] = static_cast<T>(q[c]);
      if (mstat)
        for (int64_t c = 0; c < D; ++c) mstat[b * D + c] = static_cast<T>(m[c]);
    }
  });
  raise_first(st, fn, "n");
}

size_t tssa_backward_workspace_size(int64_t B, int64_t N, int64_t H, int64_t p) {
  check_sizes("tssa_backward_workspace_size", B, N, H, p, "N");
  if (B == 0 || N == 0 || H == 0 || p == 0) return 0;
  const int64_t per = static_cast<int64_t>(vision_bwd_per_item(N, H, p));
  return static_cast<size_t>(
      mul_checked(mul_checked(B, per, "tssa_backward_workspace_size"), 8, "tssa_backward_workspace_size"));
}

// Backward, per (b, h), with g = 1/(1+m), ν = max(q, eps):
//   dΠ[n]  = −Σ_i dY W g                         (through Y)
//   dg[i]  = −Σ_n dY W Π ;  dm = −g² dg ;  dA = dm/σ ;  dσ = −Σ_i dm m / σ
//   dΠ[n] += Σ_i dA W² + dσ                      (through A = Σ_n Π W² and σ = Σ_n Π + 1e-8)
//   dℓ     = Π ⊙ (dΠ − Σ_h Π dΠ)                 (softmax over heads, per token)
//   dτ    += Σ_n dℓ s ;  ds = τ dℓ
//   cc[i]  = Σ_n ds W² ;  dν = −2 cc / ν³ ;  dq = dν · [q >= eps]
//   dW     = −dY Π g + 2 dA Π W + 2 ds W / ν² + dq W / q
template <class T>
void tssa_backward(const T* W, const T* temp, const T* dY, const T* Pi, const T* colnorm, const T* mstat, T* dW,
                   T* dtemp, int64_t B, int64_t N, int64_t H, int64_t p, void* workspace) {
  const char* fn = "tssa_backward";
  check_sizes(fn, B, N, H, p, "N");
  const int64_t D = H * p;
  if (dtemp && H > 0) std::fill(dtemp, dtemp + H, T(0));
  if (B == 0 || N == 0 || H == 0 || p == 0) return;
  need(W, fn, "W");
  need(temp, fn, "temp");
  need(dY, fn, "dY");
  need(dW, fn, "dW");
  const std::vector<double> tau = load_temp(fn, temp, H);
  const bool saved = Pi && colnorm && mstat;
  const size_t per = vision_bwd_per_item(N, H, p);
  std::vector<double> own;
  double* ws = workspace_or(workspace, own, per * static_cast<size_t>(B), fn);
  std::vector<Status> st(static_cast<size_t>(B));
  parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      double* pi = ws + b * per;
      double* s = pi + H * N;
      double* dpi = s + H * N;
      double* q = dpi + H * N;
      double* inv2 = q + D;
      double* m = inv2 + D;
      double* g = m + D;
      double* dA = g + D;
      double* cc = dA + D;
      double* sig = cc + D;
      double* dsig = sig + H;
      double* dtau = dsig + H;
      double* lg = dtau + H;
      const T* Wb = W + b * N * D;
      const T* dYb = dY + b * N * D;
      T* dWb = dW + b * N * D;
      if (saved) {
        for (int64_t i = 0; i < H * N; ++i) pi[i] = static_cast<double>(Pi[b * H * N + i]);
        for (int64_t c = 0; c < D; ++c) {
          q[c] = static_cast<double>(colnorm[b * D + c]);
          m[c] = static_cast<double>(mstat[b * D + c]);
          const double nu = clamp_eps(q[c]);
          inv2[c] = 1.0 / (nu * nu);
        }
        for (int64_t h = 0; h < H; ++h) {
          double acc = 0;
          for (int64_t n = 0; n < N; ++n) acc += pi[h * N + n];
          sig[h] = acc + kPiEps;
        }
      } else {
        st[b] = vision_stats(Wb, tau.data(), N, H, p, q, inv2, pi, m, sig, lg);
        if (st[b].code) continue;
      }
      for (int64_t c = 0; c < D; ++c) {
        g[c] = 1.0 / (1.0 + m[c]);
        dA[c] = 0;
        cc[c] = 0;
      }
      // Pass B1: s, dΠ (through Y), dg (in dA).
      for (int64_t n = 0; n < N; ++n) {
        const T* w = Wb + n * D;
        const T* dy = dYb + n * D;
        for (int64_t h = 0; h < H; ++h) {
          const double P = pi[h * N + n];
          double sh[8] = {0, 0, 0, 0, 0, 0, 0, 0}, dp[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          lanes8(h * p, (h + 1) * p, [&](int64_t c, int l) {
            const double wv = static_cast<double>(w[c]), dv = static_cast<double>(dy[c]);
            sh[l] += wv * wv * inv2[c];
            dp[l] -= dv * wv * g[c];
            dA[c] -= dv * wv * P;
          });
          s[h * N + n] = sum8(sh);
          dpi[h * N + n] = sum8(dp);
        }
      }
      for (int64_t h = 0; h < H; ++h) {
        const double isig = 1.0 / sig[h];
        double ds = 0;
        for (int64_t c = h * p; c < (h + 1) * p; ++c) {
          const double dm = -g[c] * g[c] * dA[c];
          dA[c] = dm * isig;
          ds -= dm * m[c] * isig;
        }
        dsig[h] = ds;
        dtau[h] = 0;
      }
      // Pass B2: complete dΠ, softmax backward over heads, dτ, ds (into s), cc.
      for (int64_t n = 0; n < N; ++n) {
        const T* w = Wb + n * D;
        double dot = 0;
        for (int64_t h = 0; h < H; ++h) {
          double a8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
          lanes8(h * p, (h + 1) * p, [&](int64_t c, int l) {
            const double wv = static_cast<double>(w[c]);
            a8[l] += dA[c] * wv * wv;
          });
          const double acc = dpi[h * N + n] + dsig[h] + sum8(a8);
          lg[h] = acc;
          dot += pi[h * N + n] * acc;
        }
        for (int64_t h = 0; h < H; ++h) {
          const double dl = pi[h * N + n] * (lg[h] - dot);
          dtau[h] += dl * s[h * N + n];
          const double ds = tau[h] * dl;
          s[h * N + n] = ds;
          for (int64_t c = h * p; c < (h + 1) * p; ++c) {
            const double wv = static_cast<double>(w[c]);
            cc[c] += ds * wv * wv;
          }
        }
      }
      // Column-norm path: coefficient of W in dW, −2 cc / ν⁴ where the clamp is inactive.
      for (int64_t c = 0; c < D; ++c) {
        if (q[c] >= kNormEps) {
          const double nu2 = q[c] * q[c];
          cc[c] = -2.0 * cc[c] / (nu2 * nu2);
        } else {
          cc[c] = 0;
        }
      }
      // Pass B3: dW.
      for (int64_t n = 0; n < N; ++n) {
        const T* w = Wb + n * D;
        const T* dy = dYb + n * D;
        T* dw = dWb + n * D;
        for (int64_t h = 0; h < H; ++h) {
          const double P = pi[h * N + n], ds2 = 2.0 * s[h * N + n];
          for (int64_t c = h * p; c < (h + 1) * p; ++c) {
            const double wv = static_cast<double>(w[c]), dv = static_cast<double>(dy[c]);
            dw[c] = static_cast<T>(wv * (2.0 * dA[c] * P + ds2 * inv2[c] + cc[c]) - dv * P * g[c]);
          }
        }
      }
    }
  });
  raise_first(st, fn, "n");
  if (dtemp) {
    for (int64_t h = 0; h < H; ++h) {
      double acc = 0;
      for (int64_t b = 0; b < B; ++b) acc += ws[b * per + 3 * H * N + 6 * D + 2 * H + h];
      dtemp[h] = static_cast<T>(acc);
    }
  }
}

// =============================================================================================
// Causal TSSA
// =============================================================================================
namespace {

// One forward time step: fold row t into the running prefix sums and compute Π[:,t], u[:,t].
//   w (D) = W[b,t,:];  C, Nacc (D) and P (H) running sums;  Pi, u (H) out.
template <class T>
inline void causal_step(const T* w, const double* tau, const T* bias, int64_t t, int64_t Tmax, int64_t H, int64_t p,
                        double* C, double* Nacc, double* P, double* Pi, double* u) {
  const int64_t D = H * p;
  for (int64_t c = 0; c < D; ++c) {
    const double v = static_cast<double>(w[c]);
    C[c] += v * v;
  }
  for (int64_t h = 0; h < H; ++h) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    lanes8(h * p, (h + 1) * p, [&](int64_t c, int l) {
      const double v = static_cast<double>(w[c]);
      acc[l] += v * v / clamp_eps(C[c]);
    });
    u[h] = sum8(acc) + static_cast<double>(p) * static_cast<double>(bias[h * Tmax + t]);
    Pi[h] = tau[h] * u[h];
  }
  softmax_inplace(Pi, H);
  for (int64_t h = 0; h < H; ++h) {
    const double Pv = Pi[h];
    P[h] += Pv;
    for (int64_t c = h * p; c < (h + 1) * p; ++c) {
      const double v = static_cast<double>(w[c]);
      Nacc[c] += Pv * v * v;
    }
  }
}

template <class T>
void check_causal(const char* fn, const T* temp, const T* denom_bias, int64_t B, int64_t Tn, int64_t H, int64_t p,
                  int64_t Tmax) {
  check_sizes(fn, B, Tn, H, p, "T");
  if (Tmax < Tn)
    throw Error(std::string(fn) + ": T=" + std::to_string(Tn) + " exceeds Tmax=" + std::to_string(Tmax) +
                " (denom_bias has shape (H, Tmax))");
  mul_checked(H, Tmax, fn);
  if (B == 0 || Tn == 0 || H == 0) return;
  need(temp, fn, "temp");
  need(denom_bias, fn, "denom_bias");
  for (int64_t h = 0; h < H; ++h)
    for (int64_t t = 0; t < Tn; ++t) {
      const double v = static_cast<double>(denom_bias[h * Tmax + t]);
      if (!std::isfinite(v))
        throw NumericalError(std::string(fn) + ": denom_bias[" + std::to_string(h) + ", " + std::to_string(t) +
                             "] is " + (std::isnan(v) ? "NaN" : "Inf"));
    }
}

struct CausalWs {
  int64_t nck, rows, D, H, Tn;
  // ck (nck, 2D+3H) | chunk (rows, 2D+3H) | state C,N (D), P (H) | RN, RC, gt (D) | RP, dPi, dtau (H) | dbias (H,T)
  int64_t row() const { return 2 * D + 3 * H; }
  int64_t per_item() const { return (nck + rows) * row() + 5 * D + 4 * H + H * Tn; }
};

CausalWs causal_ws(int64_t Tn, int64_t H, int64_t p) {
  CausalWs w;
  w.nck = (Tn + kChunk - 1) / kChunk;
  w.rows = std::min(Tn, kChunk);
  w.D = H * p;
  w.H = H;
  w.Tn = Tn;
  return w;
}

}  // namespace

template <class T>
void tssa_causal_forward(const T* W, const T* temp, const T* denom_bias, T* Y, T* Pi, int64_t B, int64_t Tn, int64_t H,
                         int64_t p, int64_t Tmax) {
  const char* fn = "tssa_causal_forward";
  check_causal(fn, temp, denom_bias, B, Tn, H, p, Tmax);
  if (B == 0 || Tn == 0 || H == 0) return;
  const int64_t D = H * p;
  if (p > 0) {
    need(W, fn, "W");
    need(Y, fn, "Y");
  }
  const std::vector<double> tau = load_temp(fn, temp, H);
  std::vector<Status> st(static_cast<size_t>(B));
  parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    std::vector<double> buf(static_cast<size_t>(2 * D + 3 * H));
    for (int64_t b = lo; b < hi; ++b) {
      double* C = buf.data();
      double* Nacc = C + D;
      double* P = Nacc + D;
      double* pi = P + H;
      double* u = pi + H;
      std::fill(buf.begin(), buf.end(), 0.0);
      const T* Wb = W + b * Tn * D;
      T* Yb = Y + b * Tn * D;
      for (int64_t t = 0; t < Tn; ++t) {
        const T* w = Wb + t * D;
        causal_step(w, tau.data(), denom_bias, t, Tmax, H, p, C, Nacc, P, pi, u);
        T* y = Yb + t * D;
        for (int64_t h = 0; h < H; ++h) {
          const double Pv = pi[h], iden = 1.0 / (P[h] + kPiEps);
          for (int64_t c = h * p; c < (h + 1) * p; ++c)
            y[c] = static_cast<T>(-static_cast<double>(w[c]) * Pv / (1.0 + Nacc[c] * iden));
          if (Pi) Pi[(b * H + h) * Tn + t] = static_cast<T>(Pv);
        }
      }
      for (int64_t c = 0; c < D; ++c)
        if (!std::isfinite(C[c])) {
          st[b] = locate_bad(Wb, Tn, D);
          break;
        }
    }
  });
  raise_first(st, fn, "t");
}

size_t tssa_causal_backward_workspace_size(int64_t B, int64_t Tn, int64_t H, int64_t p) {
  const char* fn = "tssa_causal_backward_workspace_size";
  check_sizes(fn, B, Tn, H, p, "T");
  if (B == 0 || Tn == 0 || H == 0 || p == 0) return 0;
  const CausalWs w = causal_ws(Tn, H, p);
  return static_cast<size_t>(mul_checked(mul_checked(B, w.per_item(), fn), 8, fn));
}

// Backward, per (b, h), g = 1/(1+m), den_t = Σ_{s<=t} Π + 1e-8, cl = max(C, eps); sweep t = T−1..0
// carrying reverse cumulative sums RN[i] = Σ_{t'>=t} dN[t',i], RP = Σ_{t'>=t} dden[t'],
// RC[i] = Σ_{t'>=t} dC[t',i]:
//   dm     = g² dY W Π ;  RN += dm/den ;  RP += −Σ_i dm m / den
//   dΠ     = −Σ_i dY W g + Σ_i RN W² + RP
//   dℓ     = Π ⊙ (dΠ − Σ_h Π dΠ) ;  dτ += dℓ u ;  du = τ dℓ ;  dbias[h,t] += p du
//   RC    += −du W² / cl² · [C >= eps]
//   dW     = −dY Π g + 2 RN Π W + 2 du W / cl + 2 RC W
// The prefix sums C, N, P at every t are recomputed per 64-step chunk from checkpoints.
template <class T>
void tssa_causal_backward(const T* W, const T* temp, const T* denom_bias, const T* dY, T* dW, T* dtemp, T* ddenom_bias,
                          int64_t B, int64_t Tn, int64_t H, int64_t p, int64_t Tmax, void* workspace) {
  const char* fn = "tssa_causal_backward";
  check_causal(fn, temp, denom_bias, B, Tn, H, p, Tmax);
  if (dtemp && H > 0) std::fill(dtemp, dtemp + H, T(0));
  if (ddenom_bias && H > 0 && Tmax > 0) std::fill(ddenom_bias, ddenom_bias + H * Tmax, T(0));
  if (B == 0 || Tn == 0 || H == 0 || p == 0) return;
  need(W, fn, "W");
  need(dY, fn, "dY");
  need(dW, fn, "dW");
  const std::vector<double> tau = load_temp(fn, temp, H);
  const CausalWs L = causal_ws(Tn, H, p);
  const int64_t D = L.D, R = L.row(), per = L.per_item();
  std::vector<double> own;
  double* ws = workspace_or(workspace, own, static_cast<size_t>(per * B), fn);
  std::vector<Status> st(static_cast<size_t>(B));
  parallel_for(0, B, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      double* ck = ws + b * per;
      double* chunk = ck + L.nck * R;
      double* C = chunk + L.rows * R;
      double* Nacc = C + D;
      double* P = Nacc + D;  // H
      double* RN = P + H;
      double* RC = RN + D;
      double* gt = RC + D;
      double* RP = gt + D;
      double* dPi = RP + H;
      double* dtau = dPi + H;
      double* dbias = dtau + H;  // (H, T)
      const T* Wb = W + b * Tn * D;
      const T* dYb = dY + b * Tn * D;
      T* dWb = dW + b * Tn * D;
      // Sweep 1: checkpoints of (C, N, P) at the start of every chunk.
      std::fill(C, C + 2 * D + H, 0.0);
      for (int64_t t = 0; t < Tn; ++t) {
        if (t % kChunk == 0) std::memcpy(ck + (t / kChunk) * R, C, sizeof(double) * (2 * D + H));
        double* scratch = chunk;  // Π, u of this step are not needed here
        causal_step(Wb + t * D, tau.data(), denom_bias, t, Tmax, H, p, C, Nacc, P, scratch, scratch + H);
      }
      bool bad = false;
      for (int64_t c = 0; c < D && !bad; ++c) bad = !std::isfinite(C[c]);
      if (bad) {
        st[b] = locate_bad(Wb, Tn, D);
        continue;
      }
      std::fill(RN, RN + 2 * D, 0.0);  // RN, RC
      std::fill(RP, RP + H, 0.0);
      std::fill(dtau, dtau + H, 0.0);
      std::fill(dbias, dbias + H * Tn, 0.0);
      for (int64_t j = L.nck - 1; j >= 0; --j) {
        const int64_t t0 = j * kChunk, t1 = std::min(Tn, t0 + kChunk);
        // Recompute the chunk's per-step prefix sums: row = C (D) | N (D) | P (H) | Π (H) | u (H).
        std::memcpy(C, ck + j * R, sizeof(double) * (2 * D + H));
        for (int64_t t = t0; t < t1; ++t) {
          double* row = chunk + (t - t0) * R;
          causal_step(Wb + t * D, tau.data(), denom_bias, t, Tmax, H, p, C, Nacc, P, row + 2 * D + H,
                      row + 2 * D + 2 * H);
          std::memcpy(row, C, sizeof(double) * (2 * D + H));
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const double* row = chunk + (t - t0) * R;
          const double* Ct = row;
          const double* Nt = row + D;
          const double* Pt = row + 2 * D;
          const double* pit = Pt + H;
          const double* ut = pit + H;
          const T* w = Wb + t * D;
          const T* dy = dYb + t * D;
          double dot = 0;
          for (int64_t h = 0; h < H; ++h) {
            const double Pv = pit[h], iden = 1.0 / (Pt[h] + kPiEps);
            double dp[8] = {0, 0, 0, 0, 0, 0, 0, 0}, dden[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            lanes8(h * p, (h + 1) * p, [&](int64_t c, int l) {
              const double wv = static_cast<double>(w[c]), dv = static_cast<double>(dy[c]);
              const double m = Nt[c] * iden, g = 1.0 / (1.0 + m);
              gt[c] = g;
              const double dm = g * g * dv * wv * Pv;
              RN[c] += dm * iden;
              dden[l] -= dm * m * iden;
              dp[l] += RN[c] * wv * wv - dv * wv * g;
            });
            RP[h] += sum8(dden);
            dPi[h] = sum8(dp) + RP[h];
            dot += Pv * dPi[h];
          }
          T* dw = dWb + t * D;
          for (int64_t h = 0; h < H; ++h) {
            const double Pv = pit[h];
            const double dl = Pv * (dPi[h] - dot);
            dtau[h] += dl * ut[h];
            const double du = tau[h] * dl;
            dbias[h * Tn + t] += static_cast<double>(p) * du;
            for (int64_t c = h * p; c < (h + 1) * p; ++c) {
              const double wv = static_cast<double>(w[c]), dv = static_cast<double>(dy[c]);
              const double cl = clamp_eps(Ct[c]), icl = 1.0 / cl;
              // clamp_min passes the gradient where C >= eps; C < eps exactly when the clamp
              // moved it (cl != C), which keeps the loop branch-free (vectorisable).
              const double dc = du * wv * wv * icl * icl;
              RC[c] -= cl == Ct[c] ? dc : 0.0;
              dw[c] = static_cast<T>(-dv * Pv * gt[c] + 2.0 * wv * (RN[c] * Pv + du * icl + RC[c]));
            }
          }
        }
      }
    }
  });
  raise_first(st, fn, "t");
  const int64_t off = L.nck * R + L.rows * R + 5 * D + 3 * H;  // dtau; dbias follows at + H
  if (dtemp)
    for (int64_t h = 0; h < H; ++h) {
      double acc = 0;
      for (int64_t b = 0; b < B; ++b) acc += ws[b * per + off + h];
      dtemp[h] = static_cast<T>(acc);
    }
  if (ddenom_bias)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < Tn; ++t) {
        double acc = 0;
        for (int64_t b = 0; b < B; ++b) acc += ws[b * per + off + H + h * Tn + t];
        ddenom_bias[h * Tmax + t] = static_cast<T>(acc);
      }
}

// ---- instantiations ------------------------------------------------------------------------
#define CRATE_TSSA_INST(T)                                                                                             \
  template void tssa_forward<T>(const T*, const T*, T*, T*, T*, T*, int64_t, int64_t, int64_t, int64_t);               \
  template void tssa_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t, \
                                 int64_t, int64_t, void*);                                                             \
  template void tssa_causal_forward<T>(const T*, const T*, const T*, T*, T*, int64_t, int64_t, int64_t, int64_t,       \
                                       int64_t);                                                                       \
  template void tssa_causal_backward<T>(const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int64_t, \
                                        int64_t, int64_t, void*);
CRATE_TSSA_INST(float)
CRATE_TSSA_INST(double)
#undef CRATE_TSSA_INST

}  // namespace crate::cpu
