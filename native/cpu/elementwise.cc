// elementwise.cc: CPU unary/binary/where/fill/arange/cast kernels with broadcasting by strides.
// Contiguous fast paths run a flat loop the compiler vectorizes; the general path walks the
// output in rows of the last dimension. Work is split over the thread pool in large chunks.
// The f32 exp / tanh / sigmoid / gelu / gelu_tanh (and the gelu backwards) run on vec_math.h's
// polynomial kernels instead of scalar libm, compiled portable and for AVX2+FMA; f64 stays on libm.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>

#include "../core/parallel.h"
#include "kernels.h"
#include "vec_math.h"

namespace crate::cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;  // elements per task: small tensors stay on one thread
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kInvSqrt2 = 0.7071067811865476;

template <UnaryOp Op>
using UnaryTag = std::integral_constant<UnaryOp, Op>;

/** Calls f(UnaryTag<op>{}) with the op as a compile-time constant. */
template <class F>
void with_unary_op(UnaryOp op, F&& f) {
  switch (op) {
#define CRATE_UNARY_CASE(name) \
  case UnaryOp::name:          \
    return f(UnaryTag<UnaryOp::name>{});
    CRATE_UNARY_CASE(neg)
    CRATE_UNARY_CASE(exp)
    CRATE_UNARY_CASE(log)
    CRATE_UNARY_CASE(sqrt)
    CRATE_UNARY_CASE(abs)
    CRATE_UNARY_CASE(relu)
    CRATE_UNARY_CASE(gelu)
    CRATE_UNARY_CASE(gelu_tanh)
    CRATE_UNARY_CASE(tanh)
    CRATE_UNARY_CASE(sigmoid)
    CRATE_UNARY_CASE(pow_scalar)
    CRATE_UNARY_CASE(clamp)
    CRATE_UNARY_CASE(affine)
    CRATE_UNARY_CASE(sign)
    CRATE_UNARY_CASE(square)
    CRATE_UNARY_CASE(rsqrt)
    CRATE_UNARY_CASE(sin)
    CRATE_UNARY_CASE(cos)
#undef CRATE_UNARY_CASE
    default:
      throw Error("unary: unknown op " + std::to_string(static_cast<int>(op)));
  }
}

template <class T>
inline T unary_value(UnaryOp op, T x, double a, double b) {
  switch (op) {
    case UnaryOp::neg:
      return -x;
    case UnaryOp::exp:
      return std::exp(x);
    case UnaryOp::log:
      return std::log(x);
    case UnaryOp::sqrt:
      return std::sqrt(x);
    case UnaryOp::abs:
      return std::abs(x);
    case UnaryOp::relu:
      return x > T(0) ? x : T(0);
    case UnaryOp::gelu:
      return T(0.5) * x * (T(1) + std::erf(x * T(kInvSqrt2)));
    case UnaryOp::gelu_tanh: {
      T u = T(kSqrt2OverPi) * (x + T(0.044715) * x * x * x);
      return T(0.5) * x * (T(1) + std::tanh(u));
    }
    case UnaryOp::tanh:
      return std::tanh(x);
    case UnaryOp::sigmoid:
      return x >= T(0) ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
    case UnaryOp::pow_scalar:
      return std::pow(x, T(a));
    case UnaryOp::clamp:
      return x < T(a) ? T(a) : (x > T(b) ? T(b) : x);
    case UnaryOp::affine:
      return x * T(a) + T(b);
    case UnaryOp::sign:
      return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::square:
      return x * x;
    case UnaryOp::rsqrt:
      return T(1) / std::sqrt(x);
    case UnaryOp::sin:
      return std::sin(x);
    case UnaryOp::cos:
      return std::cos(x);
    default:
      return x;
  }
}

template <class T>
inline T unary_grad(UnaryOp op, T x, T y, T g, double a, double b) {
  switch (op) {
    case UnaryOp::neg:
      return -g;
    case UnaryOp::exp:
      return g * y;
    case UnaryOp::log:
      return g / x;
    case UnaryOp::sqrt:
      return g * T(0.5) / y;
    case UnaryOp::abs:
      return x > T(0) ? g : (x < T(0) ? -g : T(0));
    case UnaryOp::relu:
      return x > T(0) ? g : T(0);
    case UnaryOp::gelu: {
      T cdf = T(0.5) * (T(1) + std::erf(x * T(kInvSqrt2)));
      T pdf = std::exp(T(-0.5) * x * x) * T(0.3989422804014327);
      return g * (cdf + x * pdf);
    }
    case UnaryOp::gelu_tanh: {
      T x2 = x * x;
      T u = T(kSqrt2OverPi) * (x + T(0.044715) * x2 * x);
      T t = std::tanh(u);
      T du = T(kSqrt2OverPi) * (T(1) + T(3 * 0.044715) * x2);
      return g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);
    }
    case UnaryOp::tanh:
      return g * (T(1) - y * y);
    case UnaryOp::sigmoid:
      return g * y * (T(1) - y);
    case UnaryOp::pow_scalar:
      return a == 0.0 ? T(0) : g * T(a) * std::pow(x, T(a - 1.0));
    case UnaryOp::clamp:
      return (x >= T(a) && x <= T(b)) ? g : T(0);
    case UnaryOp::affine:
      return g * T(a);
    case UnaryOp::sign:
      return T(0);
    case UnaryOp::square:
      return g * T(2) * x;
    case UnaryOp::rsqrt:
      return g * T(-0.5) * y * y * y;
    case UnaryOp::sin:
      return g * std::cos(x);
    case UnaryOp::cos:
      return -g * std::sin(x);
    default:
      return T(0);
  }
}

// ---------------------------------------------------------------------------- f32 vector paths

// Whether the f32 forward / backward of op has a vec_math.h kernel.
bool has_f32_vector_forward(UnaryOp op) {
  return op == UnaryOp::exp || op == UnaryOp::tanh || op == UnaryOp::sigmoid || op == UnaryOp::gelu ||
         op == UnaryOp::gelu_tanh;
}
bool has_f32_vector_backward(UnaryOp op) { return op == UnaryOp::gelu || op == UnaryOp::gelu_tanh; }

template <UnaryOp Op, int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type unary_f32_vec(const typename Vec<float, VB>::type& x) {
  if constexpr (Op == UnaryOp::exp) {
    return vexp_ieee<VB>(x);
  } else if constexpr (Op == UnaryOp::tanh) {
    return vtanh<VB>(x);
  } else if constexpr (Op == UnaryOp::sigmoid) {
    return vsigmoid<VB>(x);
  } else if constexpr (Op == UnaryOp::gelu) {
    return vgelu<VB>(x);
  } else {
    static_assert(Op == UnaryOp::gelu_tanh);
    return vgelu_tanh<VB>(x);
  }
}
template <UnaryOp Op, int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type unary_grad_f32_vec(const typename Vec<float, VB>::type& x,
                                                                  const typename Vec<float, VB>::type& g) {
  if constexpr (Op == UnaryOp::gelu) {
    return g * vgelu_grad<VB>(x);
  } else {
    static_assert(Op == UnaryOp::gelu_tanh);
    return g * vgelu_tanh_grad<VB>(x);
  }
}
// y = f(x) on [0, n); the tail (< one vector) goes through a padded vector, so every element gets
// the same arithmetic.
template <UnaryOp Op, int VB>
CRATE_VEC_INLINE void unary_f32_span(const float* x, float* y, int64_t n) {
  constexpr int VL = Vec<float, VB>::n;
  int64_t i = 0;
  for (; i + VL <= n; i += VL) vstore<float, VB>(y + i, unary_f32_vec<Op, VB>(vload<float, VB>(x + i)));
  if (i < n)
    vstore_partial<float, VB>(y + i, n - i, unary_f32_vec<Op, VB>(vload_partial<float, VB>(x + i, n - i, 0.0f)));
}
// dx = g * f'(x) for gelu / gelu_tanh.
template <UnaryOp Op, int VB>
CRATE_VEC_INLINE void unary_grad_f32_span(const float* x, const float* g, float* dx, int64_t n) {
  constexpr int VL = Vec<float, VB>::n;
  int64_t i = 0;
  for (; i + VL <= n; i += VL)
    vstore<float, VB>(dx + i, unary_grad_f32_vec<Op, VB>(vload<float, VB>(x + i), vload<float, VB>(g + i)));
  if (i < n)
    vstore_partial<float, VB>(dx + i, n - i,
                              unary_grad_f32_vec<Op, VB>(vload_partial<float, VB>(x + i, n - i, 0.0f),
                                                         vload_partial<float, VB>(g + i, n - i, 0.0f)));
}
template <int VB>
CRATE_VEC_INLINE void unary_f32_dispatch(UnaryOp op, const float* x, float* y, int64_t n) {
  switch (op) {
    case UnaryOp::exp:
      return unary_f32_span<UnaryOp::exp, VB>(x, y, n);
    case UnaryOp::tanh:
      return unary_f32_span<UnaryOp::tanh, VB>(x, y, n);
    case UnaryOp::sigmoid:
      return unary_f32_span<UnaryOp::sigmoid, VB>(x, y, n);
    case UnaryOp::gelu:
      return unary_f32_span<UnaryOp::gelu, VB>(x, y, n);
    case UnaryOp::gelu_tanh:
      return unary_f32_span<UnaryOp::gelu_tanh, VB>(x, y, n);
    default:
      return;
  }
}
template <int VB>
CRATE_VEC_INLINE void unary_grad_f32_dispatch(UnaryOp op, const float* x, const float* g, float* dx, int64_t n) {
  if (op == UnaryOp::gelu) return unary_grad_f32_span<UnaryOp::gelu, VB>(x, g, dx, n);
  if (op == UnaryOp::gelu_tanh) return unary_grad_f32_span<UnaryOp::gelu_tanh, VB>(x, g, dx, n);
}

void unary_f32_portable(UnaryOp op, const float* x, float* y, int64_t n) { unary_f32_dispatch<16>(op, x, y, n); }
void unary_grad_f32_portable(UnaryOp op, const float* x, const float* g, float* dx, int64_t n) {
  unary_grad_f32_dispatch<16>(op, x, g, dx, n);
}
#if CRATE_VEC_HAVE_AVX2
CRATE_VEC_AVX2_TARGET void unary_f32_avx2(UnaryOp op, const float* x, float* y, int64_t n) {
  unary_f32_dispatch<32>(op, x, y, n);
}
CRATE_VEC_AVX2_TARGET void unary_grad_f32_avx2(UnaryOp op, const float* x, const float* g, float* dx, int64_t n) {
  unary_grad_f32_dispatch<32>(op, x, g, dx, n);
}
#endif

void unary_f32_vector(UnaryOp op, const float* x, float* y, int64_t n) {
#if CRATE_VEC_HAVE_AVX2
  if (vec_use_avx2()) return unary_f32_avx2(op, x, y, n);
#endif
  unary_f32_portable(op, x, y, n);
}
void unary_grad_f32_vector(UnaryOp op, const float* x, const float* g, float* dx, int64_t n) {
#if CRATE_VEC_HAVE_AVX2
  if (vec_use_avx2()) return unary_grad_f32_avx2(op, x, g, dx, n);
#endif
  unary_grad_f32_portable(op, x, g, dx, n);
}

template <BinaryOp Op>
using BinaryTag = std::integral_constant<BinaryOp, Op>;

/** Calls f(BinaryTag<op>{}) with the op as a compile-time constant. */
template <class F>
void with_binary_op(BinaryOp op, F&& f) {
  switch (op) {
#define CRATE_BINARY_CASE(name) \
  case BinaryOp::name:          \
    return f(BinaryTag<BinaryOp::name>{});
    CRATE_BINARY_CASE(add)
    CRATE_BINARY_CASE(sub)
    CRATE_BINARY_CASE(mul)
    CRATE_BINARY_CASE(div)
    CRATE_BINARY_CASE(pow)
    CRATE_BINARY_CASE(maximum)
    CRATE_BINARY_CASE(minimum)
    CRATE_BINARY_CASE(eq)
    CRATE_BINARY_CASE(ne)
    CRATE_BINARY_CASE(lt)
    CRATE_BINARY_CASE(le)
    CRATE_BINARY_CASE(gt)
    CRATE_BINARY_CASE(ge)
#undef CRATE_BINARY_CASE
    default:
      throw Error("binary: unknown op " + std::to_string(static_cast<int>(op)));
  }
}

template <class T>
inline T binary_value(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::add:
      return a + b;
    case BinaryOp::sub:
      return a - b;
    case BinaryOp::mul:
      return a * b;
    case BinaryOp::div:
      return a / b;
    case BinaryOp::pow:
      return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    case BinaryOp::maximum:
      return (a != a || a > b) ? a : b;  // NaN propagates
    case BinaryOp::minimum:
      return (a != a || a < b) ? a : b;
    case BinaryOp::eq:
      return a == b ? T(1) : T(0);
    case BinaryOp::ne:
      return a != b ? T(1) : T(0);
    case BinaryOp::lt:
      return a < b ? T(1) : T(0);
    case BinaryOp::le:
      return a <= b ? T(1) : T(0);
    case BinaryOp::gt:
      return a > b ? T(1) : T(0);
    case BinaryOp::ge:
      return a >= b ? T(1) : T(0);
    default:
      return T(0);
  }
}

template <>
inline int32_t binary_value<int32_t>(BinaryOp op, int32_t a, int32_t b) {
  switch (op) {
    case BinaryOp::add:
      return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
    case BinaryOp::sub:
      return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
    case BinaryOp::mul:
      return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
    case BinaryOp::div:
      return b == 0 ? 0 : (a == std::numeric_limits<int32_t>::min() && b == -1 ? a : a / b);
    case BinaryOp::pow:
      return static_cast<int32_t>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    case BinaryOp::maximum:
      return a > b ? a : b;
    case BinaryOp::minimum:
      return a < b ? a : b;
    case BinaryOp::eq:
      return a == b;
    case BinaryOp::ne:
      return a != b;
    case BinaryOp::lt:
      return a < b;
    case BinaryOp::le:
      return a <= b;
    case BinaryOp::gt:
      return a > b;
    case BinaryOp::ge:
      return a >= b;
    default:
      return 0;
  }
}

// Walks out-index rows [row_lo, row_hi) of an ndim-dim shape (rows = all dims but the last),
// calling fn(offsets_of_each_operand_at_row_start, row_len).
template <int NOps, class F>
void for_rows(const int64_t* shape, int ndim, const int64_t* const* strides, int64_t row_lo, int64_t row_hi, F&& fn) {
  int64_t idx[16] = {0};
  int64_t rem = row_lo;
  for (int d = ndim - 2; d >= 0; --d) {
    idx[d] = rem % shape[d];
    rem /= shape[d];
  }
  int64_t off[NOps];
  for (int o = 0; o < NOps; ++o) {
    off[o] = 0;
    for (int d = 0; d < ndim - 1; ++d) off[o] += idx[d] * strides[o][d];
  }
  const int64_t len = shape[ndim - 1];
  for (int64_t r = row_lo; r < row_hi; ++r) {
    fn(off, len);
    for (int d = ndim - 2; d >= 0; --d) {
      ++idx[d];
      for (int o = 0; o < NOps; ++o) off[o] += strides[o][d];
      if (idx[d] < shape[d]) break;
      for (int o = 0; o < NOps; ++o) off[o] -= idx[d] * strides[o][d];
      idx[d] = 0;
    }
  }
}

int64_t numel_of(const int64_t* shape, int ndim) {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  return n;
}

}  // namespace

template <class T>
void unary(UnaryOp op, const T* x, T* y, int64_t n, double a, double b) {
  if constexpr (std::is_same_v<T, float>) {
    if (has_f32_vector_forward(op)) {
      parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) { unary_f32_vector(op, x + lo, y + lo, hi - lo); });
      return;
    }
  }
  // The op is a template argument of the loop (one switch per call, not per element), so each
  // loop body is straight-line code the compiler can vectorise.
  with_unary_op(op, [&](auto tag) {
    constexpr UnaryOp kOp = decltype(tag)::value;
    parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) y[i] = unary_value<T>(kOp, x[i], a, b);
    });
  });
}

template <class T>
void unary_backward(UnaryOp op, const T* x, const T* y, const T* g, T* dx, int64_t n, double a, double b) {
  if constexpr (std::is_same_v<T, float>) {
    if (x && has_f32_vector_backward(op)) {
      parallel_for(0, n, kGrain,
                   [&](int64_t lo, int64_t hi) { unary_grad_f32_vector(op, x + lo, g + lo, dx + lo, hi - lo); });
      return;
    }
  }
  with_unary_op(op, [&](auto tag) {
    constexpr UnaryOp kOp = decltype(tag)::value;
    parallel_for(0, n, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) dx[i] = unary_grad<T>(kOp, x ? x[i] : T(0), y ? y[i] : T(0), g[i], a, b);
    });
  });
}

template <class T>
void binary(BinaryOp op, const T* a, const int64_t* astr, const T* b, const int64_t* bstr, T* out, const int64_t* shape,
            int ndim) {
  CRATE_CHECK(ndim <= 16, "binary: more than 16 dimensions");
  const int64_t n = numel_of(shape, ndim);
  if (n == 0) return;
  if (ndim == 0) {
    out[0] = binary_value<T>(op, a[0], b[0]);
    return;
  }
  const int64_t rows = n / shape[ndim - 1];
  const int64_t ostr_last = 1;
  const int64_t* strides[2] = {astr, bstr};
  const int64_t as = astr[ndim - 1], bs = bstr[ndim - 1];
  const int64_t grain_rows = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, shape[ndim - 1]));
  with_binary_op(op, [&](auto tag) {
    constexpr BinaryOp kOp = decltype(tag)::value;
    parallel_for(0, rows, grain_rows, [&](int64_t lo, int64_t hi) {
      T* o = out + lo * shape[ndim - 1];
      for_rows<2>(shape, ndim, strides, lo, hi, [&](const int64_t* off, int64_t len) {
        const T* pa = a + off[0];
        const T* pb = b + off[1];
        if (as == 1 && bs == 1) {
          for (int64_t j = 0; j < len; ++j) o[j] = binary_value<T>(kOp, pa[j], pb[j]);
        } else if (as == 1 && bs == 0) {
          const T vb = pb[0];
          for (int64_t j = 0; j < len; ++j) o[j] = binary_value<T>(kOp, pa[j], vb);
        } else if (as == 0 && bs == 1) {
          const T va = pa[0];
          for (int64_t j = 0; j < len; ++j) o[j] = binary_value<T>(kOp, va, pb[j]);
        } else {
          for (int64_t j = 0; j < len; ++j) o[j] = binary_value<T>(kOp, pa[j * as], pb[j * bs]);
        }
        o += len * ostr_last;
      });
    });
  });
}

template <class T>
void where(const T* c, const int64_t* cstr, const T* a, const int64_t* astr, const T* b, const int64_t* bstr, T* out,
           const int64_t* shape, int ndim) {
  CRATE_CHECK(ndim <= 16, "where: more than 16 dimensions");
  const int64_t n = numel_of(shape, ndim);
  if (n == 0) return;
  if (ndim == 0) {
    out[0] = c[0] != T(0) ? a[0] : b[0];
    return;
  }
  const int64_t rows = n / shape[ndim - 1];
  const int64_t* strides[3] = {cstr, astr, bstr};
  const int64_t cs = cstr[ndim - 1], as = astr[ndim - 1], bs = bstr[ndim - 1];
  const int64_t grain_rows = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, shape[ndim - 1]));
  parallel_for(0, rows, grain_rows, [&](int64_t lo, int64_t hi) {
    T* o = out + lo * shape[ndim - 1];
    for_rows<3>(shape, ndim, strides, lo, hi, [&](const int64_t* off, int64_t len) {
      for (int64_t j = 0; j < len; ++j) o[j] = c[off[0] + j * cs] != T(0) ? a[off[1] + j * as] : b[off[2] + j * bs];
      o += len;
    });
  });
}

template <class T>
void fill(T* y, int64_t n, double value) {
  const T v = static_cast<T>(value);
  parallel_for(0, n, kGrain * 4, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) y[i] = v;
  });
}

template <class T>
void arange(T* y, int64_t n, double start, double step) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(start + static_cast<double>(i) * step);
}

template <class S, class D>
void cast(const S* x, D* y, int64_t n) {
  parallel_for(0, n, kGrain * 4, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      if constexpr (std::is_same_v<D, int32_t> && !std::is_same_v<S, int32_t>) {
        const double v = static_cast<double>(x[i]);
        // Saturating, NaN -> 0, truncation toward zero (never UB).
        y[i] = v != v ? 0 : v >= 2147483647.0 ? 2147483647 : v <= -2147483648.0 ? INT32_MIN : static_cast<int32_t>(v);
      } else {
        y[i] = static_cast<D>(x[i]);
      }
    }
  });
}

const char* cpu_vector_isa() { return vec_use_avx2() ? "avx2" : "generic"; }

template <class T>
int64_t find_nonfinite(const T* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(static_cast<double>(x[i]))) return i;
  return -1;
}

#define CRATE_FLOAT_TYPES(X) X(float) X(double)
#define INST_UNARY(T)                                                                                  \
  template void unary<T>(UnaryOp, const T*, T*, int64_t, double, double);                              \
  template void unary_backward<T>(UnaryOp, const T*, const T*, const T*, T*, int64_t, double, double); \
  template int64_t find_nonfinite<T>(const T*, int64_t);
CRATE_FLOAT_TYPES(INST_UNARY)
#define INST_ALL(T)                                                                                               \
  template void binary<T>(BinaryOp, const T*, const int64_t*, const T*, const int64_t*, T*, const int64_t*, int); \
  template void where<T>(const T*, const int64_t*, const T*, const int64_t*, const T*, const int64_t*, T*,        \
                         const int64_t*, int);                                                                    \
  template void fill<T>(T*, int64_t, double);                                                                     \
  template void arange<T>(T*, int64_t, double, double);
INST_ALL(float)
INST_ALL(double)
INST_ALL(int32_t)
#define INST_CAST(S, D) template void cast<S, D>(const S*, D*, int64_t);
INST_CAST(float, double)
INST_CAST(double, float)
INST_CAST(float, int32_t)
INST_CAST(int32_t, float)
INST_CAST(double, int32_t)
INST_CAST(int32_t, double)
INST_CAST(float, float)
INST_CAST(double, double)
INST_CAST(int32_t, int32_t)

}  // namespace crate::cpu
