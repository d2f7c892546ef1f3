// ista.cc: fused CPU ISTA-step kernels (CRATE, CRATE-alpha overcomplete, CRATE-GPT tied),
// forward and backward, float/double. Big products go through crate::cpu::gemm_f32/f64; the
// thresholds, ReLU masks and residual sums are single parallel passes ("epilogues").
//
// CRATE ISTA: M = W - W^T W, K = I + eta M (d x d, formed once per call), Z = ReLU(Y K - eta lambda)
//   (one token GEMM + the threshold/ReLU epilogue). Backward with G = dZ o [Z > 0]:  dY = G K^T,
//   dM = eta Y^T G,  dW = dM - W (dM + dM^T)   (from d<dM, W^T W>/dW = W (dM + dM^T)).
//   Few tokens (T < d, e.g. small-batch inference): forming W^T W (d^3) costs more than it saves, so
//   Z = ReLU(Y + eta (Y - Y W^T) W - eta lambda) and dY = G + eta (V - V W), V = G W^T
//   (two T x d x d GEMMs instead of d^3 + T d^2).
// Overcomplete (CRATE-alpha), with G2 = (dOut D1) o [A2 > 0], E = G2 D^T:
//   dD1 = dOut^T A2;  G1 = (G2 - eta E D) o [A1 > 0];  dY = eta (G1 + G2) D^T;
//   dD = -eta R^T G2 - eta E^T A1 + eta Y^T G1.
// Tied (CRATE-GPT), with G1 = (dOut W^T) o [A1 > 0], E = G1 W:
//   G0 = (G1 - eta E W^T) o [A0 > 0];  dY = eta (G1 + G0) W;
//   dW = A1^T dOut + eta G1^T R - eta A0^T E + eta G0^T Y.
// (All verified against finite differences in test/c/test_mssa_ista.c.)
#include "ista.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "../core/common.h"
#include "../core/parallel.h"
#include "gemm.h"

namespace crate::cpu {
namespace {

constexpr int64_t kGrain = 16384;  // elements per epilogue chunk

inline void gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_f32(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                 const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  gemm_f64(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// ReLU that keeps NaN (x < 0 is false for NaN).
template <class Real>
inline Real relu(Real x) {
  return x < Real(0) ? Real(0) : x;
}

template <class F>
void pfor(int64_t n, F f) {
  parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) { f(lo, hi); });
}

std::string num(int64_t v) { return std::to_string(v); }

void check_dim(const char* fn, const char* name, int64_t v, int64_t minv) {
  if (v < minv) throw Error(std::string(fn) + ": " + name + " must be >= " + num(minv) + ", got " + num(v));
  if (v > (int64_t(1) << 40)) throw Error(std::string(fn) + ": " + name + " too large, got " + num(v));
}
void check_prod(const char* fn, int64_t a, int64_t b) {
  if ((double)a * (double)b > 1e15)
    throw Error(std::string(fn) + ": tensor too large (" + num(a) + " x " + num(b) + ")");
}
void check_ptr(const char* fn, const void* p, const char* name) {
  if (!p) throw Error(std::string(fn) + ": " + name + " must not be null");
}

// Workspace layout: a list of slots, each 64-byte aligned inside a caller buffer of any alignment.
constexpr size_t kAlign = 64;
inline size_t slot_bytes(int64_t n, size_t elem) {
  return (static_cast<size_t>(n) * elem + kAlign - 1) / kAlign * kAlign;
}

class Workspace {
 public:
  Workspace(void* user, size_t bytes) {
    if (!user && bytes > 0) {
      own_.reset(new char[bytes]);
      user = own_.get();
    }
    base_ = static_cast<char*>(user);
    if (base_) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(base_);
      off_ = ((a + kAlign - 1) / kAlign * kAlign) - a;
    }
  }
  template <class Real>
  Real* take(int64_t n) {
    Real* p = reinterpret_cast<Real*>(base_ + off_);
    off_ += slot_bytes(n, sizeof(Real));
    return p;
  }

 private:
  std::unique_ptr<char[]> own_;
  char* base_ = nullptr;
  size_t off_ = 0;
};

// K = I + eta (W - W^T W)  (d, d)
template <class Real>
void form_K(const Real* W, Real* K, int64_t d, Real eta) {
  gemm(true, false, d, d, d, -eta, W, d, W, d, Real(0), K, d);
  pfor(d * d, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) K[x] += eta * W[x] + ((x / d) == (x % d) ? Real(1) : Real(0));
  });
}

template <class Real>
void zero(Real* p, int64_t n) {
  if (p && n > 0) std::memset(p, 0, sizeof(Real) * static_cast<size_t>(n));
}

}  // namespace

// ============================================================================ CRATE ISTA

template <class Real>
size_t ista_workspace_size(int64_t T, int64_t d, bool backward) {
  if (T < 0 || d < 0) return 0;
  const size_t e = sizeof(Real);
  if (!backward) return kAlign + slot_bytes(d * std::min(T, d), e);  // K (d, d) or U (T, d) when T < d
  return kAlign + 2 * slot_bytes(d * d, e) + 2 * slot_bytes(T * d, e);
}

template <class Real>
void ista_forward(const Real* Y, const Real* W, Real* Z, int64_t T, int64_t d, Real eta, Real lambda, void* workspace) {
  const char* fn = "ista_forward";
  check_dim(fn, "T", T, 0);
  check_dim(fn, "d", d, 1);
  check_prod(fn, T, d);
  check_prod(fn, d, d);
  if (T == 0) return;
  check_ptr(fn, Y, "Y");
  check_ptr(fn, W, "W");
  check_ptr(fn, Z, "Z");
  Workspace ws(workspace, ista_workspace_size<Real>(T, d, false));
  const Real thr = eta * lambda;
  if (T >= d) {
    Real* K = ws.take<Real>(d * d);
    form_K(W, K, d, eta);
    // Z (T, d) = Y (T, d) K (d, d), then the threshold + ReLU epilogue.
    gemm(false, false, T, d, d, Real(1), Y, d, K, d, Real(0), Z, d);
    pfor(T * d, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) Z[x] = relu(Z[x] - thr);
    });
  } else {
    Real* U = ws.take<Real>(T * d);
    gemm(false, true, T, d, d, Real(-1), Y, d, W, d, Real(0), U, d);  // U = Y - Y W^T
    pfor(T * d, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) U[x] += Y[x];
    });
    gemm(false, false, T, d, d, eta, U, d, W, d, Real(0), Z, d);  // Z = ReLU(Y + eta U W - eta lambda)
    pfor(T * d, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) Z[x] = relu(Z[x] + Y[x] - thr);
    });
  }
}

template <class Real>
void ista_backward(const Real* Y, const Real* W, const Real* Z, const Real* dZ, Real* dY, Real* dW, int64_t T,
                   int64_t d, Real eta, void* workspace) {
  const char* fn = "ista_backward";
  check_dim(fn, "T", T, 0);
  check_dim(fn, "d", d, 1);
  check_prod(fn, T, d);
  check_prod(fn, d, d);
  if (!dY && !dW) return;
  check_ptr(fn, W, "W");
  if (T == 0) {
    zero(dW, d * d);
    return;
  }
  check_ptr(fn, Y, "Y");
  check_ptr(fn, Z, "Z");
  check_ptr(fn, dZ, "dZ");
  Workspace ws(workspace, ista_workspace_size<Real>(T, d, true));
  Real* K = ws.take<Real>(d * d);  // K, later dM + dM^T
  Real* dM = ws.take<Real>(d * d);
  Real* G = ws.take<Real>(T * d);
  Real* V = ws.take<Real>(T * d);
  // G (T, d) = dZ o [Z > 0]
  pfor(T * d, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) G[x] = Z[x] > Real(0) ? dZ[x] : Real(0);
  });
  if (dY) {
    if (T >= d) {
      form_K(W, K, d, eta);
      gemm(false, true, T, d, d, Real(1), G, d, K, d, Real(0), dY, d);  // dY = G K^T
    } else {
      gemm(false, true, T, d, d, Real(1), G, d, W, d, Real(0), V, d);  // V = G W^T
      gemm(false, false, T, d, d, -eta, V, d, W, d, Real(0), dY, d);   // dY = G + eta (V - V W)
      pfor(T * d, [&](int64_t lo, int64_t hi) {
        for (int64_t x = lo; x < hi; ++x) dY[x] += G[x] + eta * V[x];
      });
    }
  }
  if (dW) {
    gemm(true, false, d, d, T, eta, Y, d, G, d, Real(0), dM, d);  // dM = eta Y^T G
    Real* Sym = K;
    pfor(d * d, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) {
        const int64_t i = x / d, j = x % d;
        Sym[x] = dM[x] + dM[j * d + i];
        dW[x] = dM[x];
      }
    });
    gemm(false, false, d, d, d, Real(-1), W, d, Sym, d, Real(1), dW, d);  // dW = dM - W (dM + dM^T)
  }
}

// ============================================================================ CRATE-alpha

template <class Real>
size_t ista_overcomplete_workspace_size(int64_t T, int64_t d, int64_t m, bool backward) {
  if (T < 0 || d < 0 || m < 0) return 0;
  const size_t e = sizeof(Real);
  if (!backward) return kAlign + slot_bytes(T * m, e) + slot_bytes(T * d, e);
  return kAlign + 2 * slot_bytes(T * m, e) + slot_bytes(T * d, e);
}

namespace {
void check_tdm(const char* fn, int64_t T, int64_t d, int64_t m) {
  check_dim(fn, "T", T, 0);
  check_dim(fn, "d", d, 1);
  check_dim(fn, "m", m, 1);
  check_prod(fn, T, m);
  check_prod(fn, d, m);
}
}  // namespace

template <class Real>
void ista_overcomplete_forward(const Real* Y, const Real* D, const Real* D1, Real* out, Real* A1, Real* A2, Real* R,
                               int64_t T, int64_t d, int64_t m, Real eta, Real lambda, void* workspace) {
  const char* fn = "ista_overcomplete_forward";
  check_tdm(fn, T, d, m);
  if (T == 0) return;
  check_ptr(fn, Y, "Y");
  check_ptr(fn, D, "D");
  check_ptr(fn, D1, "D1");
  check_ptr(fn, out, "out");
  const bool need_ws = !A1 || !A2 || !R;
  Workspace ws(need_ws ? workspace : nullptr, need_ws ? ista_overcomplete_workspace_size<Real>(T, d, m, false) : 0);
  Real* slotA = need_ws ? ws.take<Real>(T * m) : nullptr;
  Real* slotR = need_ws ? ws.take<Real>(T * d) : nullptr;
  Real* a1 = A1 ? A1 : slotA;
  Real* r = R ? R : slotR;
  Real* a2 = A2 ? A2 : slotA;  // in place over A1 when A1 lives in the workspace
  const Real thr = eta * lambda;
  // A1 (T, m) = ReLU(eta Y D - eta lambda)
  gemm(false, false, T, m, d, eta, Y, d, D, m, Real(0), a1, m);
  pfor(T * m, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) a1[x] = relu(a1[x] - thr);
  });
  // R (T, d) = A1 D^T - Y
  gemm(false, true, T, d, m, Real(1), a1, m, D, m, Real(0), r, d);
  pfor(T * d, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) r[x] -= Y[x];
  });
  // A2 (T, m) = ReLU(A1 - eta R D - eta lambda)
  if (a2 == a1) {
    gemm(false, false, T, m, d, -eta, r, d, D, m, Real(1), a2, m);
    pfor(T * m, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) a2[x] = relu(a2[x] - thr);
    });
  } else {
    gemm(false, false, T, m, d, -eta, r, d, D, m, Real(0), a2, m);
    pfor(T * m, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) a2[x] = relu(a2[x] + a1[x] - thr);
    });
  }
  // out (T, d) = A2 D1^T
  gemm(false, true, T, d, m, Real(1), a2, m, D1, m, Real(0), out, d);
}

template <class Real>
void ista_overcomplete_backward(const Real* Y, const Real* D, const Real* D1, const Real* A1, const Real* A2,
                                const Real* R, const Real* dOut, Real* dY, Real* dD, Real* dD1, int64_t T, int64_t d,
                                int64_t m, Real eta, void* workspace) {
  const char* fn = "ista_overcomplete_backward";
  check_tdm(fn, T, d, m);
  if (!dY && !dD && !dD1) return;
  if (T == 0) {
    zero(dD, d * m);
    zero(dD1, d * m);
    return;
  }
  check_ptr(fn, dOut, "dOut");
  check_ptr(fn, A2, "A2");
  if (dY || dD) {
    check_ptr(fn, Y, "Y");
    check_ptr(fn, D, "D");
    check_ptr(fn, D1, "D1");
    check_ptr(fn, A1, "A1");
    check_ptr(fn, R, "R");
  }
  if (dD1) gemm(true, false, d, m, T, Real(1), dOut, d, A2, m, Real(0), dD1, m);  // dD1 = dOut^T A2
  if (!dY && !dD) return;
  Workspace ws(workspace, ista_overcomplete_workspace_size<Real>(T, d, m, true));
  Real* X = ws.take<Real>(T * m);   // G2, later G1 + G2
  Real* Y2 = ws.take<Real>(T * m);  // G1
  Real* E = ws.take<Real>(T * d);   // G2 D^T
  // G2 (T, m) = (dOut D1) o [A2 > 0]
  gemm(false, false, T, m, d, Real(1), dOut, d, D1, m, Real(0), X, m);
  pfor(T * m, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) X[x] = A2[x] > Real(0) ? X[x] : Real(0);
  });
  gemm(false, true, T, d, m, Real(1), X, m, D, m, Real(0), E, d);  // E = G2 D^T
  // G1 = (G2 - eta E D) o [A1 > 0]
  gemm(false, false, T, m, d, -eta, E, d, D, m, Real(0), Y2, m);
  pfor(T * m, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) Y2[x] = A1[x] > Real(0) ? Y2[x] + X[x] : Real(0);
  });
  if (dD) {
    gemm(true, false, d, m, T, -eta, R, d, X, m, Real(0), dD, m);   // -eta R^T G2
    gemm(true, false, d, m, T, -eta, E, d, A1, m, Real(1), dD, m);  // -eta E^T A1
    gemm(true, false, d, m, T, eta, Y, d, Y2, m, Real(1), dD, m);   // +eta Y^T G1
  }
  if (dY) {
    pfor(T * m, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) X[x] += Y2[x];
    });
    gemm(false, true, T, d, m, eta, X, m, D, m, Real(0), dY, d);  // dY = eta (G1 + G2) D^T
  }
}

// ============================================================================ CRATE-GPT tied

template <class Real>
size_t ista_tied_workspace_size(int64_t T, int64_t d, int64_t m, bool backward) {
  return ista_overcomplete_workspace_size<Real>(T, d, m, backward);
}

template <class Real>
void ista_tied_forward(const Real* Y, const Real* W, Real* out, Real* A0, Real* A1, Real* R, int64_t T, int64_t d,
                       int64_t m, Real eta, Real lambda, void* workspace) {
  const char* fn = "ista_tied_forward";
  check_tdm(fn, T, d, m);
  if (T == 0) return;
  check_ptr(fn, Y, "Y");
  check_ptr(fn, W, "W");
  check_ptr(fn, out, "out");
  const bool need_ws = !A0 || !A1 || !R;
  Workspace ws(need_ws ? workspace : nullptr, need_ws ? ista_tied_workspace_size<Real>(T, d, m, false) : 0);
  Real* slotA = need_ws ? ws.take<Real>(T * m) : nullptr;
  Real* slotR = need_ws ? ws.take<Real>(T * d) : nullptr;
  Real* a0 = A0 ? A0 : slotA;
  Real* r = R ? R : slotR;
  Real* a1 = A1 ? A1 : slotA;
  const Real thr = eta * lambda;
  // A0 (T, m) = ReLU(eta Y W^T - eta lambda)
  gemm(false, true, T, m, d, eta, Y, d, W, d, Real(0), a0, m);
  pfor(T * m, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) a0[x] = relu(a0[x] - thr);
  });
  // R (T, d) = Y - A0 W
  gemm(false, false, T, d, m, Real(-1), a0, m, W, d, Real(0), r, d);
  pfor(T * d, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) r[x] += Y[x];
  });
  // A1 (T, m) = ReLU(A0 + eta R W^T - eta lambda)   [= A0 + eta (Y W^T - A0 W W^T)]
  if (a1 == a0) {
    gemm(false, true, T, m, d, eta, r, d, W, d, Real(1), a1, m);
    pfor(T * m, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) a1[x] = relu(a1[x] - thr);
    });
  } else {
    gemm(false, true, T, m, d, eta, r, d, W, d, Real(0), a1, m);
    pfor(T * m, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) a1[x] = relu(a1[x] + a0[x] - thr);
    });
  }
  // out (T, d) = A1 W
  gemm(false, false, T, d, m, Real(1), a1, m, W, d, Real(0), out, d);
}

template <class Real>
void ista_tied_backward(const Real* Y, const Real* W, const Real* A0, const Real* A1, const Real* R, const Real* dOut,
                        Real* dY, Real* dW, int64_t T, int64_t d, int64_t m, Real eta, void* workspace) {
  const char* fn = "ista_tied_backward";
  check_tdm(fn, T, d, m);
  if (!dY && !dW) return;
  if (T == 0) {
    zero(dW, m * d);
    return;
  }
  check_ptr(fn, Y, "Y");
  check_ptr(fn, W, "W");
  check_ptr(fn, A0, "A0");
  check_ptr(fn, A1, "A1");
  check_ptr(fn, R, "R");
  check_ptr(fn, dOut, "dOut");
  Workspace ws(workspace, ista_tied_workspace_size<Real>(T, d, m, true));
  Real* X = ws.take<Real>(T * m);   // G1, later G1 + G0
  Real* Y2 = ws.take<Real>(T * m);  // G0
  Real* E = ws.take<Real>(T * d);   // G1 W
  // G1 (T, m) = (dOut W^T) o [A1 > 0]
  gemm(false, true, T, m, d, Real(1), dOut, d, W, d, Real(0), X, m);
  pfor(T * m, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) X[x] = A1[x] > Real(0) ? X[x] : Real(0);
  });
  gemm(false, false, T, d, m, Real(1), X, m, W, d, Real(0), E, d);  // E = G1 W
  // G0 = (G1 - eta E W^T) o [A0 > 0]
  gemm(false, true, T, m, d, -eta, E, d, W, d, Real(0), Y2, m);
  pfor(T * m, [&](int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x) Y2[x] = A0[x] > Real(0) ? Y2[x] + X[x] : Real(0);
  });
  if (dW) {
    gemm(true, false, m, d, T, Real(1), A1, m, dOut, d, Real(0), dW, d);  // A1^T dOut
    gemm(true, false, m, d, T, eta, X, m, R, d, Real(1), dW, d);          // +eta G1^T R
    gemm(true, false, m, d, T, -eta, A0, m, E, d, Real(1), dW, d);        // -eta A0^T E
    gemm(true, false, m, d, T, eta, Y2, m, Y, d, Real(1), dW, d);         // +eta G0^T Y
  }
  if (dY) {
    pfor(T * m, [&](int64_t lo, int64_t hi) {
      for (int64_t x = lo; x < hi; ++x) X[x] += Y2[x];
    });
    gemm(false, false, T, d, m, eta, X, m, W, d, Real(0), dY, d);  // dY = eta (G1 + G0) W
  }
}

#define ISTA_INSTANTIATE(Real)                                                                                         \
  template size_t ista_workspace_size<Real>(int64_t, int64_t, bool);                                                   \
  template void ista_forward<Real>(const Real*, const Real*, Real*, int64_t, int64_t, Real, Real, void*);              \
  template void ista_backward<Real>(const Real*, const Real*, const Real*, const Real*, Real*, Real*, int64_t,         \
                                    int64_t, Real, void*);                                                             \
  template size_t ista_overcomplete_workspace_size<Real>(int64_t, int64_t, int64_t, bool);                             \
  template void ista_overcomplete_forward<Real>(const Real*, const Real*, const Real*, Real*, Real*, Real*, Real*,     \
                                                int64_t, int64_t, int64_t, Real, Real, void*);                         \
  template void ista_overcomplete_backward<Real>(const Real*, const Real*, const Real*, const Real*, const Real*,      \
                                                 const Real*, const Real*, Real*, Real*, Real*, int64_t, int64_t,      \
                                                 int64_t, Real, void*);                                                \
  template size_t ista_tied_workspace_size<Real>(int64_t, int64_t, int64_t, bool);                                     \
  template void ista_tied_forward<Real>(const Real*, const Real*, Real*, Real*, Real*, Real*, int64_t, int64_t,        \
                                        int64_t, Real, Real, void*);                                                   \
  template void ista_tied_backward<Real>(const Real*, const Real*, const Real*, const Real*, const Real*, const Real*, \
                                         Real*, Real*, int64_t, int64_t, int64_t, Real, void*);

ISTA_INSTANTIATE(float)
ISTA_INSTANTIATE(double)

}  // namespace crate::cpu
