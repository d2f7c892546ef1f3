// coding_rate.cc: batched ½·logdet(I + α·Z Zᵀ) and its gradient (see coding_rate.h).
// Per batch item: pack Z (or Zᵀ) into an f64 k×r panel (k = min(m,n) rows, r = max(m,n)),
// upper Gram A = I + α·Zp Zpᵀ by row-blocked gemm_f64, blocked Cholesky A = UᵀU (U = Lᵀ),
// logdet = 2 Σ log U_jj; backward: X = U⁻¹ U⁻ᵀ Zp by blocked triangular solves,
// dZ = dR·α·X (transposed back when m > n; that is the push-through identity
// (I + αZZᵀ)⁻¹Z = Z(I + αZᵀZ)⁻¹).
#include "coding_rate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../core/common.h"
#include "../core/parallel.h"
#include "gemm.h"

namespace crate::cpu {
namespace {

#ifndef CRATE_CHOL_NB
#define CRATE_CHOL_NB 16
#endif
#ifndef CRATE_SOLVE_NB
#define CRATE_SOLVE_NB 16
#endif
constexpr int64_t kNB = 64;                   // Gram row-block size
constexpr int64_t kCholNB = CRATE_CHOL_NB;    // Cholesky block: the update from earlier blocks goes to gemm
constexpr int64_t kSolveNB = CRATE_SOLVE_NB;  // triangular-solve block: the off-diagonal work goes to gemm

// ----------------------------------------------------------------------------------------------
// Item addressing: item idx of a batch starts at (idx / inner) * outer_stride + (idx % inner) *
// inner_stride; its element (i, j) sits at [i * ld + j]. Plain batches have inner = 1.
struct Layout {
  int64_t inner, outer_stride, inner_stride, ld;
  bool heads;  // only for error messages: name items X[b=.., h=..] instead of Z[..]
  int64_t offset(int64_t idx) const { return (idx / inner) * outer_stride + (idx % inner) * inner_stride; }
  std::string name(int64_t idx) const {
    if (!heads) return "Z[" + std::to_string(idx) + "]";
    return "X[b=" + std::to_string(idx / inner) + ", h=" + std::to_string(idx % inner) + "]";
  }
  std::string scalar(const char* what, int64_t idx) const {
    if (!heads) return std::string(what) + "[" + std::to_string(idx) + "]";
    return std::string(what) + "[b=" + std::to_string(idx / inner) + ", h=" + std::to_string(idx % inner) + "]";
  }
};

enum Code : int { kOk = 0, kZNaN, kZInf, kAlphaNaN, kAlphaInf, kAlphaNonPos, kDRNaN, kDRInf, kNotPD };
struct Status {
  int code = kOk;
  int64_t pivot = 0;
  double value = 0;
};

// Throws for the first failed item, in batch order (so the message does not depend on threads).
void raise_first(const std::vector<Status>& st, const Layout& lay) {
  for (size_t idx = 0; idx < st.size(); ++idx) {
    const Status& s = st[idx];
    const int64_t i = static_cast<int64_t>(idx);
    switch (s.code) {
      case kOk:
        continue;
      case kZNaN:
        throw NumericalError("coding_rate: " + lay.name(i) + " contains NaN");
      case kZInf:
        throw NumericalError("coding_rate: " + lay.name(i) + " contains Inf");
      case kAlphaNaN:
        throw NumericalError("coding_rate: " + lay.scalar("alpha", i) + " is NaN");
      case kAlphaInf:
        throw NumericalError("coding_rate: " + lay.scalar("alpha", i) + " is Inf");
      case kAlphaNonPos:
        throw Error("coding_rate: " + lay.scalar("alpha", i) + " = " + std::to_string(s.value) + " must be > 0");
      case kDRNaN:
        throw NumericalError("coding_rate: " + lay.scalar("dR", i) + " is NaN");
      case kDRInf:
        throw NumericalError("coding_rate: " + lay.scalar("dR", i) + " is Inf");
      case kNotPD:
        throw NumericalError("coding_rate: not positive definite at batch " + std::to_string(i) + ", pivot " +
                             std::to_string(s.pivot) + " (overflow in I + alpha*Gram?)");
    }
  }
}

// Pack item Z (m×n, row stride ld) into Zp (k×r, f64): Zp = Z when m <= n, Zᵀ when m > n.
// Returns kOk, kZNaN or kZInf (the first non-finite element in row-major order decides).
template <class T>
int pack(const T* Z, int64_t m, int64_t n, int64_t ld, double* Zp) {
  double poison = 0;  // stays 0 unless some element is NaN/Inf (v - v is NaN then)
  if (m <= n) {
    for (int64_t i = 0; i < m; ++i) {
      const T* zr = Z + i * ld;
      double* pr = Zp + i * n;
      for (int64_t j = 0; j < n; ++j) {
        const double v = static_cast<double>(zr[j]);
        pr[j] = v;
        poison += v - v;
      }
    }
  } else {
    constexpr int64_t TB = 32;  // tiled transpose
    for (int64_t i0 = 0; i0 < m; i0 += TB)
      for (int64_t j0 = 0; j0 < n; j0 += TB) {
        const int64_t i1 = std::min(m, i0 + TB), j1 = std::min(n, j0 + TB);
        for (int64_t i = i0; i < i1; ++i)
          for (int64_t j = j0; j < j1; ++j) {
            const double v = static_cast<double>(Z[i * ld + j]);
            Zp[j * m + i] = v;
            poison += v - v;
          }
      }
  }
  if (poison == 0) return kOk;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double v = static_cast<double>(Z[i * ld + j]);
      if (std::isnan(v)) return kZNaN;
      if (std::isinf(v)) return kZInf;
    }
  return kZNaN;  // unreachable in practice
}

// Upper triangle (and the lower part of the diagonal blocks) of A = I + alpha · Zp Zpᵀ; A is k×k.
void gram(const double* Zp, int64_t k, int64_t r, double alpha, double* A) {
  for (int64_t i0 = 0; i0 < k; i0 += kNB) {
    const int64_t i1 = std::min(k, i0 + kNB);
    gemm_f64(false, true, i1 - i0, k - i0, r, alpha, Zp + i0 * r, r, Zp + i0 * r, r, 0.0, A + i0 * k + i0, k);
  }
  for (int64_t i = 0; i < k; ++i) A[i * k + i] += 1.0;
}

// In-place blocked Cholesky A = Uᵀ U of the upper triangle of A (k×k, row-major), U upper
// (U = Lᵀ; row-major U is column-major L). Left-looking over row blocks (the update from earlier
// blocks is one gemm), right-looking inside a block, so every inner loop is a contiguous row axpy.
// Returns -1 on success, else the first pivot that is not positive and finite. The strict lower
// triangle is zeroed on success.
int64_t cholesky(double* A, int64_t k) {
  for (int64_t j0 = 0; j0 < k; j0 += kCholNB) {
    const int64_t j1 = std::min(k, j0 + kCholNB);
    // A[j0:j1, j0:k] -= U[0:j0, j0:j1]ᵀ · U[0:j0, j0:k]
    if (j0 > 0) gemm_f64(true, false, j1 - j0, k - j0, j0, -1.0, A + j0, k, A + j0, k, 1.0, A + j0 * k + j0, k);
    for (int64_t j = j0; j < j1; ++j) {
      double* Uj = A + j * k;
      const double d = Uj[j];
      if (!(d > 0.0) || !std::isfinite(d)) return j;
      const double ujj = std::sqrt(d);
      Uj[j] = ujj;
      const double inv = 1.0 / ujj;
      for (int64_t c = j + 1; c < k; ++c) Uj[c] *= inv;
      for (int64_t i = j + 1; i < j1; ++i) {
        double* Ai = A + i * k;
        const double f = Uj[i];
        for (int64_t c = i; c < k; ++c) Ai[c] -= f * Uj[c];
      }
    }
  }
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < i; ++j) A[i * k + j] = 0.0;
  return -1;
}

// X (k×r) ← U⁻¹ U⁻ᵀ X = (UᵀU)⁻¹ X, U upper k×k (row-major), blocked: the off-diagonal blocks
// go to gemm, the diagonal blocks are row axpys.
void cholesky_solve(const double* U, int64_t k, double* X, int64_t r) {
  // Forward: Uᵀ Y = X.
  for (int64_t i0 = 0; i0 < k; i0 += kSolveNB) {
    const int64_t i1 = std::min(k, i0 + kSolveNB);
    // X[i0:i1] -= U[0:i0, i0:i1]ᵀ · X[0:i0]
    if (i0 > 0) gemm_f64(true, false, i1 - i0, r, i0, -1.0, U + i0, k, X, r, 1.0, X + i0 * r, r);
    for (int64_t i = i0; i < i1; ++i) {
      double* xi = X + i * r;
      for (int64_t j = i0; j < i; ++j) {
        const double u = U[j * k + i];
        const double* xj = X + j * r;
        for (int64_t c = 0; c < r; ++c) xi[c] -= u * xj[c];
      }
      const double inv = 1.0 / U[i * k + i];
      for (int64_t c = 0; c < r; ++c) xi[c] *= inv;
    }
  }
  // Backward: U X = Y.
  const int64_t nblk = (k + kSolveNB - 1) / kSolveNB;
  for (int64_t bi = nblk - 1; bi >= 0; --bi) {
    const int64_t i0 = bi * kSolveNB, i1 = std::min(k, i0 + kSolveNB);
    // X[i0:i1] -= U[i0:i1, i1:k] · X[i1:k]
    if (i1 < k) gemm_f64(false, false, i1 - i0, r, k - i1, -1.0, U + i0 * k + i1, k, X + i1 * r, r, 1.0, X + i0 * r, r);
    for (int64_t i = i1 - 1; i >= i0; --i) {
      double* xi = X + i * r;
      for (int64_t j = i + 1; j < i1; ++j) {
        const double u = U[i * k + j];
        const double* xj = X + j * r;
        for (int64_t c = 0; c < r; ++c) xi[c] -= u * xj[c];
      }
      const double inv = 1.0 / U[i * k + i];
      for (int64_t c = 0; c < r; ++c) xi[c] *= inv;
    }
  }
}

int check_alpha(double a, Status& s) {
  if (std::isnan(a)) return kAlphaNaN;
  if (std::isinf(a)) return kAlphaInf;
  if (!(a > 0)) {
    s.value = a;
    return kAlphaNonPos;
  }
  return kOk;
}

int64_t mul_checked(int64_t a, int64_t b, const char* what) {
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) throw Error(std::string(what) + ": size overflow");
  return a * b;
}

void check_sizes(const char* fn, int64_t batch, int64_t m, int64_t n) {
  if (batch < 0 || m < 0 || n < 0)
    throw Error(std::string(fn) + ": sizes must be >= 0 (got batch=" + std::to_string(batch) +
                ", m=" + std::to_string(m) + ", n=" + std::to_string(n) + ")");
  mul_checked(mul_checked(batch, m, fn), n, fn);
  const int64_t k = std::min(m, n);
  mul_checked(mul_checked(batch, k, fn), k, fn);
}

void need(const void* ptr, const char* fn, const char* arg) {
  if (!ptr) throw Error(std::string(fn) + ": " + arg + " must not be NULL");
}

// ----------------------------------------------------------------------------------------------
template <class T>
void forward_impl(const char* fn, const T* Z, const Layout& lay, const T* alpha, T* R, int64_t batch, int64_t m,
                  int64_t n, double* chol) {
  if (batch == 0) return;
  need(alpha, fn, "alpha");
  need(R, fn, "R");
  if (m > 0 && n > 0) need(Z, fn, "Z");
  const int64_t k = std::min(m, n), r = std::max(m, n);
  std::vector<Status> st(static_cast<size_t>(batch));
  parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
    std::vector<double> zp(static_cast<size_t>(k * r));
    std::vector<double> own(chol ? 0 : static_cast<size_t>(k * k));
    for (int64_t b = lo; b < hi; ++b) {
      Status& s = st[b];
      const double a = static_cast<double>(alpha[b]);
      if ((s.code = check_alpha(a, s)) != kOk) continue;
      if (k == 0) {
        R[b] = T(0);
        continue;
      }
      if ((s.code = pack(Z + lay.offset(b), m, n, lay.ld, zp.data())) != kOk) continue;
      double* A = chol ? chol + b * k * k : own.data();  // becomes U
      gram(zp.data(), k, r, a, A);
      const int64_t piv = cholesky(A, k);
      if (piv >= 0) {
        s.code = kNotPD;
        s.pivot = piv;
        continue;
      }
      double acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += std::log(A[j * k + j]);
      R[b] = static_cast<T>(acc);  // ½ · 2 Σ log U_jj
    }
  });
  raise_first(st, lay);
}

template <class T>
void backward_impl(const char* fn, const T* Z, const Layout& lay, const T* alpha, const T* dR, T* dZ, int64_t batch,
                   int64_t m, int64_t n, const double* chol) {
  if (batch == 0) return;
  need(alpha, fn, "alpha");
  need(dR, fn, "dR");
  if (m > 0 && n > 0) {
    need(Z, fn, "Z");
    need(dZ, fn, "dZ");
  }
  const int64_t k = std::min(m, n), r = std::max(m, n);
  std::vector<Status> st(static_cast<size_t>(batch));
  parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
    std::vector<double> x(static_cast<size_t>(k * r));
    std::vector<double> own(chol ? 0 : static_cast<size_t>(k * k));
    for (int64_t b = lo; b < hi; ++b) {
      Status& s = st[b];
      const double a = static_cast<double>(alpha[b]);
      if ((s.code = check_alpha(a, s)) != kOk) continue;
      const double g = static_cast<double>(dR[b]);
      if (!std::isfinite(g)) {
        s.code = std::isnan(g) ? kDRNaN : kDRInf;
        continue;
      }
      if (k == 0) continue;
      const T* Zb = Z + lay.offset(b);
      if ((s.code = pack(Zb, m, n, lay.ld, x.data())) != kOk) continue;
      const double* U;
      if (chol) {
        U = chol + b * k * k;
      } else {
        gram(x.data(), k, r, a, own.data());
        const int64_t piv = cholesky(own.data(), k);
        if (piv >= 0) {
          s.code = kNotPD;
          s.pivot = piv;
          continue;
        }
        U = own.data();
      }
      cholesky_solve(U, k, x.data(), r);
      const double scale = g * a;
      T* dZb = dZ + lay.offset(b);
      const int64_t ld = lay.ld;
      if (m <= n) {
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) dZb[i * ld + j] = static_cast<T>(scale * x[i * n + j]);
      } else {
        constexpr int64_t TB = 32;
        for (int64_t i0 = 0; i0 < m; i0 += TB)
          for (int64_t j0 = 0; j0 < n; j0 += TB) {
            const int64_t i1 = std::min(m, i0 + TB), j1 = std::min(n, j0 + TB);
            for (int64_t i = i0; i < i1; ++i)
              for (int64_t j = j0; j < j1; ++j) dZb[i * ld + j] = static_cast<T>(scale * x[j * m + i]);
          }
      }
    }
  });
  raise_first(st, lay);
}

Layout plain_layout(int64_t m, int64_t n) { return Layout{1, m * n, 0, n, false}; }
Layout heads_layout(int64_t N, int64_t H, int64_t p) { return Layout{H, N * H * p, p, H * p, true}; }

void check_heads(const char* fn, int64_t B, int64_t N, int64_t H, int64_t p) {
  if (B < 0 || N < 0 || H < 0 || p < 0)
    throw Error(std::string(fn) + ": sizes must be >= 0 (got B=" + std::to_string(B) + ", N=" + std::to_string(N) +
                ", H=" + std::to_string(H) + ", p=" + std::to_string(p) + ")");
  mul_checked(mul_checked(mul_checked(B, N, fn), H, fn), p, fn);
  const int64_t k = std::min(N, p);
  mul_checked(mul_checked(mul_checked(B, H, fn), k, fn), k, fn);
}

}  // namespace

// ----------------------------------------------------------------------------------------------
size_t logdet_gram_chol_numel(int64_t batch, int64_t m, int64_t n) {
  check_sizes("logdet_gram_chol_numel", batch, m, n);
  const int64_t k = std::min(m, n);
  return static_cast<size_t>(batch * k * k);
}

template <class T>
void logdet_gram_forward(const T* Z, const T* alpha, T* R, int64_t batch, int64_t m, int64_t n, double* chol) {
  check_sizes("logdet_gram_forward", batch, m, n);
  forward_impl("logdet_gram_forward", Z, plain_layout(m, n), alpha, R, batch, m, n, chol);
}

template <class T>
void logdet_gram_backward(const T* Z, const T* alpha, const T* dR, T* dZ, int64_t batch, int64_t m, int64_t n,
                          const double* chol) {
  check_sizes("logdet_gram_backward", batch, m, n);
  backward_impl("logdet_gram_backward", Z, plain_layout(m, n), alpha, dR, dZ, batch, m, n, chol);
}

template <class T>
void logdet_gram_heads_forward(const T* X, const T* alpha, T* R, int64_t B, int64_t N, int64_t H, int64_t p,
                               double* chol) {
  check_heads("logdet_gram_heads_forward", B, N, H, p);
  forward_impl("logdet_gram_heads_forward", X, heads_layout(N, H, p), alpha, R, B * H, N, p, chol);
}

template <class T>
void logdet_gram_heads_backward(const T* X, const T* alpha, const T* dR, T* dX, int64_t B, int64_t N, int64_t H,
                                int64_t p, const double* chol) {
  check_heads("logdet_gram_heads_backward", B, N, H, p);
  backward_impl("logdet_gram_heads_backward", X, heads_layout(N, H, p), alpha, dR, dX, B * H, N, p, chol);
}

template void logdet_gram_forward<float>(const float*, const float*, float*, int64_t, int64_t, int64_t, double*);
template void logdet_gram_forward<double>(const double*, const double*, double*, int64_t, int64_t, int64_t, double*);
template void logdet_gram_backward<float>(const float*, const float*, const float*, float*, int64_t, int64_t, int64_t,
                                          const double*);
template void logdet_gram_backward<double>(const double*, const double*, const double*, double*, int64_t, int64_t,
                                           int64_t, const double*);
template void logdet_gram_heads_forward<float>(const float*, const float*, float*, int64_t, int64_t, int64_t, int64_t,
                                               double*);
template void logdet_gram_heads_forward<double>(const double*, const double*, double*, int64_t, int64_t, int64_t,
                                                int64_t, double*);
template void logdet_gram_heads_backward<float>(const float*, const float*, const float*, float*, int64_t, int64_t,
                                                int64_t, int64_t, const double*);
template void logdet_gram_heads_backward<double>(const double*, const double*, const double*, double*, int64_t, int64_t,
                                                 int64_t, int64_t, const double*);

}  // namespace crate::cpu
