// layout.cc: data movement kernels: strided copy (permute, slice, concat, expand and their
// adjoints with accumulate), gather/index-select (embeddings) and its adjoint index_add.
#include <string>

#include "../core/parallel.h"
#include "kernels.h"

namespace crate::cpu {

template <class T>
void strided_copy(const T* src, int64_t src_off, const int64_t* src_str, T* dst, int64_t dst_off,
                  const int64_t* dst_str, const int64_t* shape, int ndim, bool accumulate) {
  CRATE_CHECK(ndim <= 16, "strided_copy: more than 16 dimensions");
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  if (n == 0) return;
  if (ndim == 0) {
    dst[dst_off] = accumulate ? dst[dst_off] + src[src_off] : src[src_off];
    return;
  }
  const int64_t len = shape[ndim - 1];
  const int64_t rows = n / len;
  const int64_t ss = src_str[ndim - 1], ds = dst_str[ndim - 1];
  // With accumulate, two rows may alias the same destination (expand adjoint): stay serial then.
  bool dst_overlaps = false;
  for (int d = 0; d < ndim; ++d)
    if (dst_str[d] == 0 && shape[d] > 1) dst_overlaps = true;
  auto body = [&](int64_t lo, int64_t hi) {
    int64_t idx[16] = {0};
    int64_t rem = lo;
    for (int d = ndim - 2; d >= 0; --d) {
      idx[d] = rem % shape[d];
      rem /= shape[d];
    }
    int64_t so = src_off, dof = dst_off;
    for (int d = 0; d < ndim - 1; ++d) {
      so += idx[d] * src_str[d];
      dof += idx[d] * dst_str[d];
    }
    for (int64_t r = lo; r < hi; ++r) {
      const T* s = src + so;
      T* o = dst + dof;
      if (accumulate) {
        for (int64_t j = 0; j < len; ++j) o[j * ds] += s[j * ss];
      } else if (ss == 1 && ds == 1) {
        for (int64_t j = 0; j < len; ++j) o[j] = s[j];
      } else {
        for (int64_t j = 0; j < len; ++j) o[j * ds] = s[j * ss];
      }
      for (int d = ndim - 2; d >= 0; --d) {
        ++idx[d];
        so += src_str[d];
        dof += dst_str[d];
        if (idx[d] < shape[d]) break;
        so -= idx[d] * src_str[d];
        dof -= idx[d] * dst_str[d];
        idx[d] = 0;
      }
    }
  };
  if (accumulate && dst_overlaps) {
    body(0, rows);
  } else {
    parallel_for(0, rows, std::max<int64_t>(1, 32768 / len), body);
  }
}

template <class T>
void gather(const T* x, const int32_t* idx, T* out, int64_t outer, int64_t dim, int64_t inner, int64_t k) {
  for (int64_t j = 0; j < k; ++j)
    CRATE_CHECK(idx[j] >= 0 && idx[j] < dim, "gather: index " + std::to_string(idx[j]) + " at position " +
                                                 std::to_string(j) + " is out of range [0, " + std::to_string(dim) +
                                                 ")");
  parallel_for(0, outer * k, std::max<int64_t>(1, 32768 / std::max<int64_t>(inner, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const int64_t o = r / k, j = r % k;
      const T* s = x + (o * dim + idx[j]) * inner;
      T* d = out + r * inner;
      for (int64_t i = 0; i < inner; ++i) d[i] = s[i];
    }
  });
}

template <class T>
void index_add(const T* g, const int32_t* idx, T* dx, int64_t outer, int64_t dim, int64_t inner, int64_t k) {
  for (int64_t j = 0; j < k; ++j)
    CRATE_CHECK(idx[j] >= 0 && idx[j] < dim,
                "index_add: index " + std::to_string(idx[j]) + " out of range [0, " + std::to_string(dim) + ")");
  // Rows with equal indices collide, so parallelise over the inner (feature) axis instead.
  parallel_for(0, inner, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t j = 0; j < k; ++j) {
        const T* s = g + (o * k + j) * inner;
        T* d = dx + (o * dim + idx[j]) * inner;
        for (int64_t i = lo; i < hi; ++i) d[i] += s[i];
      }
  });
}

#define INST(T)                                                                                                      \
  template void strided_copy<T>(const T*, int64_t, const int64_t*, T*, int64_t, const int64_t*, const int64_t*, int, \
                                bool);                                                                               \
  template void gather<T>(const T*, const int32_t*, T*, int64_t, int64_t, int64_t, int64_t);
INST(float)
INST(double)
INST(int32_t)
template void index_add<float>(const float*, const int32_t*, float*, int64_t, int64_t, int64_t, int64_t);
template void index_add<double>(const double*, const int32_t*, double*, int64_t, int64_t, int64_t, int64_t);

}  // namespace crate::cpu
