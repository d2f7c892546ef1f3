// nn.cc: fused row kernels: softmax / log-softmax, LayerNorm and cross-entropy (with label
// smoothing and ignore index), forward and backward. Softmax and cross-entropy statistics accumulate in
// double; LayerNorm accumulates in T over SIMD lanes (see layernorm). The f32 softmax / log-softmax /
// cross-entropy rows run on vec_math.h vectors (vexp_ieee instead of a libm exp in double per
// element; sums still in double), compiled portable and for AVX2+FMA; f64 stays on libm.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/parallel.h"
#include "kernels.h"
#include "vec_math.h"

namespace crate::cpu {
namespace {
inline int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(cols, 1)); }

// ---------------------------------------------------------------------------- f32 vector rows
// Each row loop runs over whole vectors, then the tail (< one vector) as a padded vector whose
// extra lanes are neutral (-inf for max / exp sums, 0 for plain sums) and never stored.

template <int VB>
CRATE_VEC_INLINE float row_max_f32(const float* x, int64_t n) {  // NaN ignored, as the scalar loop
  typedef typename Vec<float, VB>::type VF;
  constexpr int VL = Vec<float, VB>::n;
  const float ninf = -std::numeric_limits<float>::infinity();
  VF mx = vset<float, VB>(ninf);
  int64_t j = 0;
  for (; j + VL <= n; j += VL) {
    const VF v = vload<float, VB>(x + j);
    mx = v > mx ? v : mx;
  }
  if (j < n) {
    const VF v = vload_partial<float, VB>(x + j, n - j, ninf);
    mx = v > mx ? v : mx;
  }
  return hmax<float, VB>(mx);
}
// sum_j exp(x[j] - m) in double; with y, also stores the exps.
template <int VB>
CRATE_VEC_INLINE double row_sum_exp_f32(const float* x, float m, float* y, int64_t n) {
  typedef typename Vec<float, VB>::type VF;
  constexpr int VL = Vec<float, VB>::n;
  const VF vm = vset<float, VB>(m);
  typename Vec<double, VB>::type lo{}, hi{};
  int64_t j = 0;
  for (; j + VL <= n; j += VL) {
    const VF e = vexp_ieee<VB>(vload<float, VB>(x + j) - vm);
    if (y) vstore<float, VB>(y + j, e);
    vadd_widened<VB>(lo, hi, e);
  }
  if (j < n) {
    const VF e = vexp_ieee<VB>(vload_partial<float, VB>(x + j, n - j, -std::numeric_limits<float>::infinity()) - vm);
    if (y) vstore_partial<float, VB>(y + j, n - j, e);
    vadd_widened<VB>(lo, hi, e);
  }
  return hsum<double, VB>(lo + hi);
}
// sum_j a[j] (b == nullptr) or sum_j a[j] b[j], in double.
template <int VB>
CRATE_VEC_INLINE double row_sum_f32(const float* a, const float* b, int64_t n) {
  constexpr int VL = Vec<float, VB>::n;
  typename Vec<double, VB>::type lo{}, hi{};
  int64_t j = 0;
  for (; j + VL <= n; j += VL) {
    if (b)
      vadd_widened<VB>(lo, hi, vload<float, VB>(a + j), vload<float, VB>(b + j));
    else
      vadd_widened<VB>(lo, hi, vload<float, VB>(a + j));
  }
  if (j < n) {
    if (b)
      vadd_widened<VB>(lo, hi, vload_partial<float, VB>(a + j, n - j, 0.0f),
                       vload_partial<float, VB>(b + j, n - j, 0.0f));
    else
      vadd_widened<VB>(lo, hi, vload_partial<float, VB>(a + j, n - j, 0.0f));
  }
  return hsum<double, VB>(lo + hi);
}
// y[j] = x[j] * s + c (s, c broadcast).
template <int VB>
CRATE_VEC_INLINE void row_affine_f32(const float* x, float s, float c, float* y, int64_t n) {
  typedef typename Vec<float, VB>::type VF;
  constexpr int VL = Vec<float, VB>::n;
  const VF vs = vset<float, VB>(s), vc = vset<float, VB>(c);
  int64_t j = 0;
  for (; j + VL <= n; j += VL) vstore<float, VB>(y + j, vload<float, VB>(x + j) * vs + vc);
  if (j < n) vstore_partial<float, VB>(y + j, n - j, vload_partial<float, VB>(x + j, n - j, 0.0f) * vs + vc);
}

// softmax / log-softmax of one row, with the scalar loop's semantics: NaN in a row makes it NaN,
// +inf makes it NaN (inf - inf), an all -inf row gives NaN (0 * inf, -inf - -inf).
template <int VB>
CRATE_VEC_INLINE void softmax_row_f32(const float* x, float* y, int64_t n, bool log) {
  float mx = row_max_f32<VB>(x, n);
  if (mx == -std::numeric_limits<float>::infinity()) mx = 0;  // all -inf row: avoid inf-inf
  if (log) {
    const double sum = row_sum_exp_f32<VB>(x, mx, nullptr, n);
    row_affine_f32<VB>(x, 1.0f, -(mx + static_cast<float>(std::log(sum))), y, n);
  } else {
    const double sum = row_sum_exp_f32<VB>(x, mx, y, n);
    row_affine_f32<VB>(y, static_cast<float>(1.0 / sum), 0.0f, y, n);
  }
}
// dx = y * (g - sum(g y)) (softmax) or g - exp(y) sum(g) (log-softmax).
template <int VB, bool Log>
CRATE_VEC_INLINE typename Vec<float, VB>::type softmax_grad_f32(const typename Vec<float, VB>::type& y,
                                                                const typename Vec<float, VB>::type& g,
                                                                const typename Vec<float, VB>::type& s) {
  if constexpr (Log) {
    return g - vexp_ieee<VB>(y) * s;
  } else {
    return y * (g - s);
  }
}
template <int VB, bool Log>
CRATE_VEC_INLINE void softmax_backward_row_f32(const float* y, const float* g, float* dx, int64_t n) {
  typedef typename Vec<float, VB>::type VF;
  constexpr int VL = Vec<float, VB>::n;
  const VF s = vset<float, VB>(static_cast<float>(row_sum_f32<VB>(g, Log ? nullptr : y, n)));
  int64_t j = 0;
  for (; j + VL <= n; j += VL)
    vstore<float, VB>(dx + j, softmax_grad_f32<VB, Log>(vload<float, VB>(y + j), vload<float, VB>(g + j), s));
  if (j < n)
    vstore_partial<float, VB>(dx + j, n - j,
                              softmax_grad_f32<VB, Log>(vload_partial<float, VB>(y + j, n - j, 0.0f),
                                                        vload_partial<float, VB>(g + j, n - j, 0.0f), s));
}

// Cross-entropy forward of one row: lse and the smoothed NLL, as the scalar loop (no all -inf
// guard: such a row gives NaN, as NaN / +inf logits do).
template <int VB>
CRATE_VEC_INLINE void cross_entropy_row_f32(const float* x, int64_t t, int64_t ignore_index, double smoothing,
                                            int64_t n, float* loss, float* lse) {
  const float mx = row_max_f32<VB>(x, n);
  const double l = static_cast<double>(mx) + std::log(row_sum_exp_f32<VB>(x, mx, nullptr, n));
  *lse = static_cast<float>(l);
  if (t == ignore_index) {
    *loss = 0;
    return;
  }
  // -(1-eps) * logp[t] - eps/C * sum_j logp[j]
  const double nll = l - x[t];
  const double smooth = l - row_sum_f32<VB>(x, nullptr, n) / static_cast<double>(n);
  *loss = static_cast<float>((1.0 - smoothing) * nll + smoothing * smooth);
}
// dlogits = g (exp(x - lse) - eps/C - (1-eps) onehot(t)); the target entry in double (p_t - 1
// cancels when the row is confident).
template <int VB>
CRATE_VEC_INLINE void cross_entropy_backward_row_f32(const float* x, int64_t t, int64_t ignore_index, float lse,
                                                     float g_row, double smoothing, int64_t n, float* dx) {
  typedef typename Vec<float, VB>::type VF;
  constexpr int VL = Vec<float, VB>::n;
  if (t == ignore_index) {
    std::fill(dx, dx + n, 0.0f);
    return;
  }
  const double off = smoothing / static_cast<double>(n);
  const VF vl = vset<float, VB>(lse), vg = vset<float, VB>(g_row), voff = vset<float, VB>(static_cast<float>(off));
  int64_t j = 0;
  for (; j + VL <= n; j += VL) vstore<float, VB>(dx + j, vg * (vexp_ieee<VB>(vload<float, VB>(x + j) - vl) - voff));
  if (j < n)
    vstore_partial<float, VB>(dx + j, n - j,
                              vg * (vexp_ieee<VB>(vload_partial<float, VB>(x + j, n - j, 0.0f) - vl) - voff));
  const double p = std::exp(static_cast<double>(x[t]) - lse);
  dx[t] = static_cast<float>(static_cast<double>(g_row) * (p - off - (1.0 - smoothing)));
}

// The f32 row loops, compiled portable (16-byte vectors) and for AVX2+FMA (32-byte).
#define CRATE_NN_F32_LEAVES(ATTR, VB)                                                                                  \
  ATTR static void softmax(const float* x, float* y, int64_t r0, int64_t r1, int64_t cols, bool log) {                 \
    for (int64_t r = r0; r < r1; ++r) softmax_row_f32<VB>(x + r * cols, y + r * cols, cols, log);                      \
  }                                                                                                                    \
  ATTR static void softmax_backward(const float* y, const float* g, float* dx, int64_t r0, int64_t r1, int64_t cols,   \
                                    bool log) {                                                                        \
    for (int64_t r = r0; r < r1; ++r) {                                                                                \
      if (log)                                                                                                         \
        softmax_backward_row_f32<VB, true>(y + r * cols, g + r * cols, dx + r * cols, cols);                           \
      else                                                                                                             \
        softmax_backward_row_f32<VB, false>(y + r * cols, g + r * cols, dx + r * cols, cols);                          \
    }                                                                                                                  \
  }                                                                                                                    \
  ATTR static void cross_entropy(const float* x, const int32_t* target, float* loss, float* lse, int64_t r0,           \
                                 int64_t r1, int64_t classes, double smoothing, int64_t ignore_index) {                \
    for (int64_t r = r0; r < r1; ++r)                                                                                  \
      cross_entropy_row_f32<VB>(x + r * classes, target[r], ignore_index, smoothing, classes, loss + r, lse + r);      \
  }                                                                                                                    \
  ATTR static void cross_entropy_backward(const float* x, const int32_t* target, const float* lse, const float* g_row, \
                                          float* dx, int64_t r0, int64_t r1, int64_t classes, double smoothing,        \
                                          int64_t ignore_index) {                                                      \
    for (int64_t r = r0; r < r1; ++r)                                                                                  \
      cross_entropy_backward_row_f32<VB>(x + r * classes, target[r], ignore_index, lse[r], g_row[r], smoothing,        \
                                         classes, dx + r * classes);                                                   \
  }

struct RowsF32Portable {
  CRATE_NN_F32_LEAVES(, 16)
};
#if CRATE_VEC_HAVE_AVX2
struct RowsF32Avx2 {
  CRATE_NN_F32_LEAVES(CRATE_VEC_AVX2_TARGET, 32)
};
#endif
// f(RowsF32Avx2{}) or f(RowsF32Portable{}) (vec_use_avx2()).
template <class F>
void with_rows_f32(F&& f) {
#if CRATE_VEC_HAVE_AVX2
  if (vec_use_avx2()) return f(RowsF32Avx2{});
#endif
  f(RowsF32Portable{});
}
}  // namespace

template <class T>
void softmax(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  if constexpr (std::is_same_v<T, float>) {
    return with_rows_f32([&](auto k) {
      parallel_for(0, rows, row_grain(cols), [&](int64_t lo, int64_t hi) { k.softmax(x, y, lo, hi, cols, log); });
    });
  }
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
  if constexpr (std::is_same_v<T, float>) {
    return with_rows_f32([&](auto k) {
      parallel_for(0, rows, row_grain(cols),
                   [&](int64_t lo, int64_t hi) { k.softmax_backward(y, g, dx, lo, hi, cols, log); });
    });
  }
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
  if constexpr (std::is_same_v<T, float>) {
    with_rows_f32([&](auto k) {
      parallel_for(0, rows, row_grain(classes), [&](int64_t lo, int64_t hi) {
        k.cross_entropy(logits, target, loss_row, lse, lo, hi, classes, smoothing, ignore_index);
      });
    });
    return counted;
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
  if constexpr (std::is_same_v<T, float>) {
    return with_rows_f32([&](auto k) {
      parallel_for(0, rows, row_grain(classes), [&](int64_t lo, int64_t hi) {
        k.cross_entropy_backward(logits, target, lse, g_row, dlogits, lo, hi, classes, smoothing, ignore_index);
      });
    });
  }
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
