// nn.cc: fused row kernels: softmax / log-softmax, LayerNorm and cross-entropy (with label
// smoothing and ignore index), forward and backward. Softmax and cross-entropy statistics accumulate in
// double; LayerNorm accumulates in T over SIMD lanes (see layernorm).
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../core/parallel.h"
#include "kernels.h"

namespace crate::cpu {
namespace {
inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)); }
}  // namespace

template <class T>
void softmax(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  parallel_for(0, rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < cols; ++j) mx = xr[j] > mx ? xr[j] : mx;
      if (mx == -std::numeric_limits<T>::infinity()) mx = 0;  // all -inf row: avoid inf-inf
      double sum = 0;
      for (int64_t j = 0; j < cols; ++j) sum += std::exp(static_cast<double>(xr[j] - mx));
      if (log) {
        const T lse = mx + static_cast<T>(std::log(sum));
        for (int64_t j = 0; j < cols; ++j) yr[j] = xr[j] - lse;
      } else {
        const double inv = 1.0 / sum;
        for (int64_t j = 0; j < cols; ++j) yr[j] = static_cast<T>(std::exp(static_cast<double>(xr[j] - mx)) * inv);
      }
    }
  });
}

template <class T>
void softmax_backward(const T* y, const T* g, T* dx, int64_t rows, int64_t cols, bool log) {
  parallel_for(0, rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* yr = y + r * cols;
      const T* gr = g + r * cols;
      T* dr = dx + r * cols;
      double s = 0;
      if (log) {
        for (int64_t j = 0; j < cols; ++j) s += gr[j];
        for (int64_t j = 0; j < cols; ++j) dr[j] = gr[j] - std::exp(yr[j]) * static_cast<T>(s);
      } else {
        for (int64_t j = 0; j < cols; ++j) s += static_cast<double>(gr[j]) * yr[j];
        for (int64_t j = 0; j < cols; ++j) dr[j] = yr[j] * (gr[j] - static_cast<T>(s));
      }
    }
  });
}

template <class T>
void layernorm(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t cols, double eps) {
  // Row statistics accumulate in T over SIMD lanes (`omp simd`, -fopenmp-simd: no OpenMP runtime):
  // a row is then throughput-bound rather than bound by one serial add chain, and the lane-wise
  // partial sums keep f32 error at ~1e-7 relative for rows of thousands (two-pass variance).
  parallel_for(0, rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      T m = 0;
#pragma omp simd reduction(+ : m)
      for (int64_t j = 0; j < cols; ++j) m += xr[j];
      m /= static_cast<T>(cols);
      T v = 0;
#pragma omp simd reduction(+ : v)
      for (int64_t j = 0; j < cols; ++j) {
        const T d = xr[j] - m;
        v += d * d;
      }
      v /= static_cast<T>(cols);
      const T rs = static_cast<T>(1.0 / std::sqrt(static_cast<double>(v) + eps));
      mean[r] = m;
      rstd[r] = rs;
      const T mt = m, rt = rs;
      if (w && b) {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - mt) * rt * w[j] + b[j];
      } else if (w) {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - mt) * rt * w[j];
      } else if (b) {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - mt) * rt + b[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - mt) * rt;
      }
    }
  });
}

template <class T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* g, T* dx, T* dw, T* db,
                        int64_t rows, int64_t cols) {
  // dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w; dw = Σ_rows g·xhat, db = Σ_rows g.
  // One pass over x and g: each task takes a fixed block of rows, writes its dx rows and sums its
  // dw/db partials; the partials are added in task order afterwards (deterministic for any
  // thread count).
  const bool want_wb = dw != nullptr || db != nullptr;
  const int64_t chunk = std::max<int64_t>(64, (rows + 15) / 16);
  const int64_t tasks = rows == 0 ? 0 : (rows + chunk - 1) / chunk;
  std::vector<T> part(want_wb ? static_cast<size_t>(tasks) * 2 * cols : 0, T(0));
  std::vector<T> ones;
  if (!w) ones.assign(static_cast<size_t>(cols), T(1));
  const T* wv = w ? w : ones.data();
  parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      T* sw = want_wb ? part.data() + t * 2 * cols : nullptr;
      T* sb = want_wb ? sw + cols : nullptr;
      for (int64_t r = t * chunk; r < std::min(rows, (t + 1) * chunk); ++r) {
        const T* xr = x + r * cols;
        const T* gr = g + r * cols;
        T* dr = dx + r * cols;
        const T mt = mean[r], rt = rstd[r];
        T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t j = 0; j < cols; ++j) {
          const T gw = gr[j] * wv[j];
          s1 += gw;
          s2 += gw * ((xr[j] - mt) * rt);
        }
        const T s1t = s1 / static_cast<T>(cols), s2t = s2 / static_cast<T>(cols);
        if (want_wb) {
#pragma omp simd
          for (int64_t j = 0; j < cols; ++j) {
            const T xh = (xr[j] - mt) * rt;
            dr[j] = rt * (gr[j] * wv[j] - s1t - xh * s2t);
            sw[j] += gr[j] * xh;
            sb[j] += gr[j];
          }
        } else {
#pragma omp simd
          for (int64_t j = 0; j < cols; ++j) {
            const T xh = (xr[j] - mt) * rt;
            dr[j] = rt * (gr[j] * wv[j] - s1t - xh * s2t);
          }
        }
      }
    }
  });
  if (want_wb) {
    for (int64_t j = 0; j < cols; ++j) {
      double sw = 0, sb = 0;  // the ≤ 16 task partials (each a sum over a row block) add in double
      for (int64_t t = 0; t < tasks; ++t) {
        sw += static_cast<double>(part[t * 2 * cols + j]);
        sb += static_cast<double>(part[t * 2 * cols + cols + j]);
      }
      if (dw) dw[j] += static_cast<T>(sw);
      if (db) db[j] += static_cast<T>(sb);
    }
  }
}

template <class T>
int64_t cross_entropy(const T* logits, const int32_t* target, T* loss_row, T* lse, int64_t rows, int64_t classes,
                      double smoothing, int64_t ignore_index) {
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = target[r];
    if (t == ignore_index) continue;
    CRATE_CHECK(t >= 0 && t < classes, "crossEntropy: target " + std::to_string(t) + " at row " + std::to_string(r) +
                                           " is out of range [0, " + std::to_string(classes) + ")");
    ++counted;
  }
  parallel_for(0, rows, row_grain(classes), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = logits + r * classes;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < classes; ++j) mx = xr[j] > mx ? xr[j] : mx;
      double s = 0, sum_x = 0;
      for (int64_t j = 0; j < classes; ++j) {
        s += std::exp(static_cast<double>(xr[j] - mx));
        sum_x += xr[j];
      }
      const double l = static_cast<double>(mx) + std::log(s);
      lse[r] = static_cast<T>(l);
      const int64_t t = target[r];
      if (t == ignore_index) {
        loss_row[r] = 0;
        continue;
      }
      // -(1-eps) * logp[t] - eps/C * sum_j logp[j]
      const double nll = l - xr[t];
      const double smooth = l - sum_x / static_cast<double>(classes);
      loss_row[r] = static_cast<T>((1.0 - smoothing) * nll + smoothing * smooth);
    }
  });
  return counted;
}

template <class T>
void cross_entropy_backward(const T* logits, const int32_t* target, const T* lse, const T* g_row, T* dlogits,
                            int64_t rows, int64_t classes, double smoothing, int64_t ignore_index) {
  parallel_for(0, rows, row_grain(classes), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = logits + r * classes;
      T* dr = dlogits + r * classes;
      const int64_t t = target[r];
      if (t == ignore_index) {
        for (int64_t j = 0; j < classes; ++j) dr[j] = 0;
        continue;
      }
      const double gr = g_row[r], l = lse[r], off = smoothing / static_cast<double>(classes);
      for (int64_t j = 0; j < classes; ++j) {
        const double p = std::exp(static_cast<double>(xr[j]) - l);
        dr[j] = static_cast<T>(gr * (p - off - (j == t ? 1.0 - smoothing : 0.0)));
      }
    }
  });
}

#define INST(T)                                                                                                        \
  template void softmax<T>(const T*, T*, int64_t, int64_t, bool);                                                      \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t, bool);                                   \
  template void layernorm<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double);                      \
  template void layernorm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t); \
  template int64_t cross_entropy<T>(const T*, const int32_t*, T*, T*, int64_t, int64_t, double, int64_t);              \
  template void cross_entropy_backward<T>(const T*, const int32_t*, const T*, const T*, T*, int64_t, int64_t, double,  \
                                          int64_t);
INST(float)
INST(double)

}  // namespace crate::cpu
