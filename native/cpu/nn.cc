// nn.cc: fused row kernels: softmax / log-softmax, LayerNorm and cross-entropy (with label
// smoothing and ignore index), forward and backward. Statistics accumulate in double.
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
  parallel_for(0, rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      double m = 0;
      for (int64_t j = 0; j < cols; ++j) m += xr[j];
      m /= static_cast<double>(cols);
      double v = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double d = xr[j] - m;
        v += d * d;
      }
      v /= static_cast<double>(cols);
      const double rs = 1.0 / std::sqrt(v + eps);
      mean[r] = static_cast<T>(m);
      rstd[r] = static_cast<T>(rs);
      for (int64_t j = 0; j < cols; ++j) {
        T n = static_cast<T>((xr[j] - m) * rs);
        if (w) n *= w[j];
        if (b) n += b[j];
        yr[j] = n;
      }
    }
  });
}

template <class T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* g, T* dx, T* dw, T* db,
                        int64_t rows, int64_t cols) {
  // dx = rstd * (gw - mean(gw) - xhat * mean(gw * xhat)), gw = g * w
  parallel_for(0, rows, row_grain(cols), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const T* xr = x + r * cols;
      const T* gr = g + r * cols;
      T* dr = dx + r * cols;
      const double m = mean[r], rs = rstd[r];
      double s1 = 0, s2 = 0;
      for (int64_t j = 0; j < cols; ++j) {
        const double gw = w ? static_cast<double>(gr[j]) * w[j] : gr[j];
        const double xh = (xr[j] - m) * rs;
        s1 += gw;
        s2 += gw * xh;
      }
      s1 /= static_cast<double>(cols);
      s2 /= static_cast<double>(cols);
      for (int64_t j = 0; j < cols; ++j) {
        const double gw = w ? static_cast<double>(gr[j]) * w[j] : gr[j];
        const double xh = (xr[j] - m) * rs;
        dr[j] = static_cast<T>(rs * (gw - s1 - xh * s2));
      }
    }
  });
  if (dw || db) {
    // Column sums of g·x̂ and g: each task sums a block of rows into its own contiguous partials
    // (row-major friendly), then the partials are added in task order (deterministic).
    const int64_t chunk = std::max<int64_t>(64, (rows + 7) / 8);
    const int64_t tasks = (rows + chunk - 1) / chunk;
    std::vector<double> part(static_cast<size_t>(tasks) * 2 * cols, 0.0);
    parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        double* sw = part.data() + t * 2 * cols;
        double* sb = sw + cols;
        for (int64_t r = t * chunk; r < std::min(rows, (t + 1) * chunk); ++r) {
          const T* xr = x + r * cols;
          const T* gr = g + r * cols;
          const double m = mean[r], rs = rstd[r];
          for (int64_t j = 0; j < cols; ++j) {
            sw[j] += static_cast<double>(gr[j]) * ((xr[j] - m) * rs);
            sb[j] += gr[j];
          }
        }
      }
    });
    for (int64_t j = 0; j < cols; ++j) {
      double sw = 0, sb = 0;
      for (int64_t t = 0; t < tasks; ++t) {
        sw += part[t * 2 * cols + j];
        sb += part[t * 2 * cols + cols + j];
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

#define INST(T)                                                                                               \
  template void softmax<T>(const T*, T*, int64_t, int64_t, bool);                                             \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t, bool);                          \
  template void layernorm<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, double);             \
  template void layernorm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, int64_t,  \
                                      int64_t);                                                               \
  template int64_t cross_entropy<T>(const T*, const int32_t*, T*, T*, int64_t, int64_t, double, int64_t);     \
  template void cross_entropy_backward<T>(const T*, const int32_t*, const T*, const T*, T*, int64_t, int64_t, \
                                          double, int64_t);
INST(float)
INST(double)

}  // namespace crate::cpu
