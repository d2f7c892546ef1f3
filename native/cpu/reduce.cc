// reduce.cc: sum/max/min over any set of axes with a precomputed offset table for the
// reduced sub-space. Two layouts get their own loops because they dominate training:
// reducing trailing axes (row reductions) and reducing leading axes (bias gradients).
#include <algorithm>
#include <limits>
#include <vector>

#include "../core/parallel.h"
#include "kernels.h"

namespace crate::cpu {
namespace {

template <class T>
inline T init_value(ReduceOp op) {
  if (op == ReduceOp::sum) return T(0);
  if (op == ReduceOp::max)
    return std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                : std::numeric_limits<T>::lowest();
  return std::numeric_limits<T>::has_infinity ? std::numeric_limits<T>::infinity() : std::numeric_limits<T>::max();
}

template <class T>
inline T combine(ReduceOp op, T acc, T v) {
  if (op == ReduceOp::sum) return acc + v;
  if (v != v) return v;  // NaN propagates
  if (op == ReduceOp::max) return (acc != acc || acc >= v) ? acc : v;
  return (acc != acc || acc <= v) ? acc : v;
}

// Sum in double for float inputs (cheap insurance for long reductions).
template <class T>
using Acc = std::conditional_t<std::is_same_v<T, float>, double, T>;

}  // namespace

template <class T>
void reduce(ReduceOp op, const T* x, const int64_t* shape, const uint8_t* reduced, int ndim, T* out) {
  // Merge the shape into alternating kept/reduced runs; compute strides.
  std::vector<int64_t> kept_shape, kept_str, red_shape, red_str;
  int64_t stride = 1;
  std::vector<int64_t> strides(ndim);
  for (int d = ndim - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= shape[d];
  }
  const int64_t total = stride;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    (reduced[d] ? red_shape : kept_shape).push_back(shape[d]);
    (reduced[d] ? red_str : kept_str).push_back(strides[d]);
  }
  int64_t n_out = 1, n_red = 1;
  for (auto s : kept_shape) n_out *= s;
  for (auto s : red_shape) n_red *= s;
  if (n_out == 0) return;
  if (total == 0) {
    for (int64_t i = 0; i < n_out; ++i) out[i] = init_value<T>(op);
    return;
  }
  // Case A: the reduced dims are exactly the trailing contiguous block -> rows of length n_red.
  const bool trailing =
      red_str.empty() || (red_str.back() == 1 && (kept_str.empty() || kept_str.back() == n_red) && [&] {
        int64_t s = 1;
        for (int i = static_cast<int>(red_shape.size()) - 1; i >= 0; --i) {
          if (red_str[i] != s) return false;
          s *= red_shape[i];
        }
        return true;
      }());
  if (trailing) {
    parallel_for(0, n_out, std::max<int64_t>(1, 16384 / std::max<int64_t>(n_red, 1)), [&](int64_t lo, int64_t hi) {
      for (int64_t o = lo; o < hi; ++o) {
        const T* row = x + o * n_red;
        if (op == ReduceOp::sum) {
          Acc<T> acc = 0;
          for (int64_t r = 0; r < n_red; ++r) acc += row[r];
          out[o] = static_cast<T>(acc);
        } else {
          T acc = init_value<T>(op);
          for (int64_t r = 0; r < n_red; ++r) acc = combine(op, acc, row[r]);
          out[o] = acc;
        }
      }
    });
    return;
  }
  // Case B: the kept dims are the trailing contiguous block (e.g. bias grads (T, D) -> (D)):
  // accumulate whole rows of length n_out, parallel over column chunks.
  bool kept_trailing = !kept_str.empty() && kept_str.back() == 1 && [&] {
    int64_t s = 1;
    for (int i = static_cast<int>(kept_shape.size()) - 1; i >= 0; --i) {
      if (kept_str[i] != s) return false;
      s *= kept_shape[i];
    }
    return red_str.front() == s;
  }() && [&] {
    int64_t s = n_out;
    for (int i = static_cast<int>(red_shape.size()) - 1; i >= 0; --i) {
      if (red_str[i] != s) return false;
      s *= red_shape[i];
    }
    return true;
  }();
  if (kept_trailing) {
    parallel_for(0, n_out, 256, [&](int64_t lo, int64_t hi) {
      std::vector<Acc<T>> acc(hi - lo);
      std::vector<T> accm(hi - lo, init_value<T>(op));
      for (int64_t r = 0; r < n_red; ++r) {
        const T* row = x + r * n_out;
        if (op == ReduceOp::sum)
          for (int64_t j = lo; j < hi; ++j) acc[j - lo] += row[j];
        else
          for (int64_t j = lo; j < hi; ++j) accm[j - lo] = combine(op, accm[j - lo], row[j]);
      }
      for (int64_t j = lo; j < hi; ++j) out[j] = op == ReduceOp::sum ? static_cast<T>(acc[j - lo]) : accm[j - lo];
    });
    return;
  }
  // General case: offset table over the reduced sub-space.
  std::vector<int64_t> roff(n_red);
  {
    std::vector<int64_t> idx(red_shape.size(), 0);
    int64_t off = 0;
    for (int64_t r = 0; r < n_red; ++r) {
      roff[r] = off;
      for (int d = static_cast<int>(red_shape.size()) - 1; d >= 0; --d) {
        ++idx[d];
        off += red_str[d];
        if (idx[d] < red_shape[d]) break;
        off -= idx[d] * red_str[d];
        idx[d] = 0;
      }
    }
  }
  parallel_for(0, n_out, std::max<int64_t>(1, 16384 / std::max<int64_t>(n_red, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t o = lo; o < hi; ++o) {
      int64_t rem = o, base = 0;
      for (int d = static_cast<int>(kept_shape.size()) - 1; d >= 0; --d) {
        base += (rem % kept_shape[d]) * kept_str[d];
        rem /= kept_shape[d];
      }
      if (op == ReduceOp::sum) {
        Acc<T> acc = 0;
        for (int64_t r = 0; r < n_red; ++r) acc += x[base + roff[r]];
        out[o] = static_cast<T>(acc);
      } else {
        T acc = init_value<T>(op);
        for (int64_t r = 0; r < n_red; ++r) acc = combine(op, acc, x[base + roff[r]]);
        out[o] = acc;
      }
    }
  });
}

template void reduce<float>(ReduceOp, const float*, const int64_t*, const uint8_t*, int, float*);
template void reduce<double>(ReduceOp, const double*, const int64_t*, const uint8_t*, int, double*);
template void reduce<int32_t>(ReduceOp, const int32_t*, const int64_t*, const uint8_t*, int, int32_t*);

}  // namespace crate::cpu
