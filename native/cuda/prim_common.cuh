// prim_common.cuh: what the primitive-kernel sources (elementwise.cu, reduce.cu, layout.cu,
// random.cu, optim.cu) share: host/device helpers that round exactly like the CPU build (no FMA
// contraction), fast 32-bit division by run-time divisors, the by-value N-operand strided indexer
// (up to 16 dims) with its host-side canonicalisation, and argument checks. Everything marked
// PRIM_HD runs on the host too, so index math can be emulated serially in host tests.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/philox.h"
#include "common.cuh"
#include "crate/crate_cuda_prim.h"

#if defined(__CUDACC__)
#define PRIM_HD __host__ __device__ __forceinline__
#else
#define PRIM_HD inline
#endif

#if defined(__CUDA_ARCH__)
#define PRIM_UNROLL _Pragma("unroll")
#else
#define PRIM_UNROLL
#endif

namespace crate::cuda::prim {

constexpr int kMaxDims = CRATE_CUDA_MAX_DIMS;
constexpr int kBlock = 256;

// ------------------------------------------------------------------ arithmetic
// The CPU build (x86-64 baseline, no -mfma) rounds every + and * separately; nvcc contracts
// a*b+c into an FMA unless told not to. These keep the device rounding identical to the CPU's.
PRIM_HD float add_f32(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
PRIM_HD float sub_f32(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
PRIM_HD float mul_f32(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
PRIM_HD double add_f64(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
PRIM_HD double sub_f64(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
PRIM_HD double mul_f64(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

/** static_cast<int32_t>(double) as x86-64 does it (cvttsd2si): truncation toward zero, INT32_MIN
 * for NaN and out-of-range values (the CPU kernels' behaviour, defined here on both sides). */
PRIM_HD int32_t trunc_i32_x86(double v) {
  if (!(v > -2147483649.0 && v < 2147483648.0)) return INT32_MIN;
  return static_cast<int32_t>(v);
}

// ------------------------------------------------------------------ fast division
/** Division by a run-time constant d (1 <= d <= INT32_MAX) for dividends n <= INT32_MAX, with a
 * multiply-high and a shift (Granlund-Montgomery, as PyTorch's IntDivider). */
struct DivMod32 {
  uint32_t d = 1, magic = 1, shift = 0;
  static DivMod32 make(uint32_t divisor) {
    DivMod32 r;
    r.d = divisor;
    uint32_t s = 0;
    while (s < 32 && (uint64_t(1) << s) < divisor) ++s;
    r.shift = s;
    r.magic = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << s) - divisor)) / divisor + 1);
    return r;
  }
  PRIM_HD uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t t = __umulhi(n, magic);
#else
    const uint32_t t = static_cast<uint32_t>((static_cast<uint64_t>(n) * magic) >> 32);
#endif
    return (t + n) >> shift;
  }
};

struct DivMod64 {
  uint64_t d = 1;
  static DivMod64 make(uint64_t divisor) {
    DivMod64 r;
    r.d = divisor;
    return r;
  }
  PRIM_HD uint64_t div(uint64_t n) const { return n / d; }
};

template <class Idx>
struct DivFor;
template <>
struct DivFor<uint32_t> {
  using type = DivMod32;
};
template <>
struct DivFor<uint64_t> {
  using type = DivMod64;
};

// ------------------------------------------------------------------ strided indexing
/** Canonical iteration space of an op over `nops` strided operands: size-1 dims dropped and
 * neighbouring dims merged wherever every operand's strides allow it (row-major order). */
struct Canon {
  std::vector<int64_t> shape;             // outer ... inner
  std::vector<std::vector<int64_t>> str;  // [op][dim]
  int64_t numel = 1;
};

inline Canon canonicalize(const int64_t* shape, int ndim, const int64_t* const* strides, int nops) {
  Canon c;
  c.str.assign(nops, {});
  // Walk from the innermost dim outwards, building reversed lists, then flip.
  std::vector<int64_t> rs;
  std::vector<std::vector<int64_t>> rstr(nops);
  for (int d = ndim - 1; d >= 0; --d) {
    c.numel *= shape[d];
    if (shape[d] == 1) continue;
    bool merge = !rs.empty();
    for (int o = 0; o < nops && merge; ++o) merge = strides[o][d] == rstr[o].back() * rs.back();
    if (merge) {
      rs.back() *= shape[d];
    } else {
      rs.push_back(shape[d]);
      for (int o = 0; o < nops; ++o) rstr[o].push_back(strides[o][d]);
    }
  }
  c.shape.assign(rs.rbegin(), rs.rend());
  for (int o = 0; o < nops; ++o) c.str[o].assign(rstr[o].rbegin(), rstr[o].rend());
  return c;
}

/** Offsets of NOPS operands at a linear (row-major) index of a canonical shape. Dims are stored
 * innermost first; passed to kernels by value (kernel parameter space). */
template <int NOPS, class Idx>
struct Indexer {
  using Div = typename DivFor<Idx>::type;
  int ndim = 0;
  Div size[kMaxDims];
  int64_t str[NOPS][kMaxDims];

  static Indexer make(const Canon& c) {
    Indexer ix;
    ix.ndim = static_cast<int>(c.shape.size());
    for (int i = 0; i < ix.ndim; ++i) {
      const int d = ix.ndim - 1 - i;
      ix.size[i] = Div::make(static_cast<Idx>(c.shape[d]));
      for (int o = 0; o < NOPS; ++o) ix.str[o][i] = c.str[o][d];
    }
    for (int i = ix.ndim; i < kMaxDims; ++i)
      for (int o = 0; o < NOPS; ++o) ix.str[o][i] = 0;
    return ix;
  }

  PRIM_HD void offsets(Idx lin, int64_t (&off)[NOPS]) const {
    PRIM_UNROLL
    for (int o = 0; o < NOPS; ++o) off[o] = 0;
    PRIM_UNROLL
    for (int i = 0; i < kMaxDims; ++i) {
      if (i >= ndim) break;
      Idx r;
      if (i == ndim - 1) {
        r = lin;
      } else {
        const Idx q = size[i].div(lin);
        r = lin - q * static_cast<Idx>(size[i].d);
        lin = q;
      }
      PRIM_UNROLL
      for (int o = 0; o < NOPS; ++o) off[o] += static_cast<int64_t>(r) * str[o][i];
    }
  }
};

/** Whether the 32-bit indexer applies: numel (hence every dim and every linear index) fits. */
inline bool fits_u32(int64_t n) { return n <= INT32_MAX; }

// ------------------------------------------------------------------ op bodies
// Each mirrors native/cpu/*.cc expression by expression, in the same evaluation order.

constexpr int kUnaryCount = 18;   // crate::cpu::UnaryOp::count
constexpr int kBinaryCount = 13;  // crate::cpu::BinaryOp::count
enum UnaryCode : int {
  kNeg = 0,
  kExp,
  kLog,
  kSqrt,
  kAbs,
  kRelu,
  kGelu,
  kGeluTanh,
  kTanh,
  kSigmoid,
  kPowScalar,
  kClamp,
  kAffine,
  kSign,
  kSquare,
  kRsqrt,
  kSin,
  kCos
};
enum BinaryCode : int { kAdd = 0, kSub, kMul, kDiv, kPow, kMaximum, kMinimum, kEq, kNe, kLt, kLe, kGt, kGe };

/** The two double parameters of a unary op and the f32 values the CPU derives from them. */
struct UnaryParams {
  double a, b;
  float fa, fb, fam1;  // T(a), T(b), T(a - 1.0)
  static UnaryParams make(double a, double b) {
    return UnaryParams{a, b, static_cast<float>(a), static_cast<float>(b), static_cast<float>(a - 1.0)};
  }
};

template <int Op>
PRIM_HD float unary_value(float x, const UnaryParams& p) {
  constexpr float kInvSqrt2 = static_cast<float>(0.7071067811865476);
  constexpr float kSqrt2OverPi = static_cast<float>(0.7978845608028654);
  constexpr float kC = static_cast<float>(0.044715);
  if constexpr (Op == kNeg)
    return -x;
  else if constexpr (Op == kExp)
    return expf(x);
  else if constexpr (Op == kLog)
    return logf(x);
  else if constexpr (Op == kSqrt)
    return sqrtf(x);
  else if constexpr (Op == kAbs)
    return fabsf(x);
  else if constexpr (Op == kRelu)
    return x > 0.f ? x : 0.f;
  else if constexpr (Op == kGelu)
    return mul_f32(mul_f32(0.5f, x), add_f32(1.f, erff(mul_f32(x, kInvSqrt2))));
  else if constexpr (Op == kGeluTanh) {
    const float u = mul_f32(kSqrt2OverPi, add_f32(x, mul_f32(mul_f32(mul_f32(kC, x), x), x)));
    return mul_f32(mul_f32(0.5f, x), add_f32(1.f, tanhf(u)));
  } else if constexpr (Op == kTanh)
    return tanhf(x);
  else if constexpr (Op == kSigmoid)
    return x >= 0.f ? 1.f / add_f32(1.f, expf(-x)) : expf(x) / add_f32(1.f, expf(x));
  else if constexpr (Op == kPowScalar)
    return powf(x, p.fa);
  else if constexpr (Op == kClamp)
    return x < p.fa ? p.fa : (x > p.fb ? p.fb : x);
  else if constexpr (Op == kAffine)
    return add_f32(mul_f32(x, p.fa), p.fb);
  else if constexpr (Op == kSign)
    return x > 0.f ? 1.f : (x < 0.f ? -1.f : 0.f);
  else if constexpr (Op == kSquare)
    return mul_f32(x, x);
  else if constexpr (Op == kRsqrt)
    return 1.f / sqrtf(x);
  else if constexpr (Op == kSin)
    return sinf(x);
  else if constexpr (Op == kCos)
    return cosf(x);
  else
    return x;
}

template <int Op>
PRIM_HD float unary_grad(float x, float y, float g, const UnaryParams& p) {
  constexpr float kInvSqrt2 = static_cast<float>(0.7071067811865476);
  constexpr float kSqrt2OverPi = static_cast<float>(0.7978845608028654);
  constexpr float kC = static_cast<float>(0.044715);
  constexpr float k3C = static_cast<float>(3 * 0.044715);
  constexpr float kInvSqrt2Pi = static_cast<float>(0.3989422804014327);
  if constexpr (Op == kNeg)
    return -g;
  else if constexpr (Op == kExp)
    return mul_f32(g, y);
  else if constexpr (Op == kLog)
    return g / x;
  else if constexpr (Op == kSqrt)
    return mul_f32(g, 0.5f) / y;
  else if constexpr (Op == kAbs)
    return x > 0.f ? g : (x < 0.f ? -g : 0.f);
  else if constexpr (Op == kRelu)
    return x > 0.f ? g : 0.f;
  else if constexpr (Op == kGelu) {
    const float cdf = mul_f32(0.5f, add_f32(1.f, erff(mul_f32(x, kInvSqrt2))));
    const float pdf = mul_f32(expf(mul_f32(mul_f32(-0.5f, x), x)), kInvSqrt2Pi);
    return mul_f32(g, add_f32(cdf, mul_f32(x, pdf)));
  } else if constexpr (Op == kGeluTanh) {
    const float x2 = mul_f32(x, x);
    const float u = mul_f32(kSqrt2OverPi, add_f32(x, mul_f32(mul_f32(kC, x2), x)));
    const float t = tanhf(u);
    const float du = mul_f32(kSqrt2OverPi, add_f32(1.f, mul_f32(k3C, x2)));
    const float rest = mul_f32(mul_f32(mul_f32(0.5f, x), sub_f32(1.f, mul_f32(t, t))), du);
    return mul_f32(g, add_f32(mul_f32(0.5f, add_f32(1.f, t)), rest));
  } else if constexpr (Op == kTanh)
    return mul_f32(g, sub_f32(1.f, mul_f32(y, y)));
  else if constexpr (Op == kSigmoid)
    return mul_f32(mul_f32(g, y), sub_f32(1.f, y));
  else if constexpr (Op == kPowScalar)
    return p.a == 0.0 ? 0.f : mul_f32(mul_f32(g, p.fa), powf(x, p.fam1));
  else if constexpr (Op == kClamp)
    return (x >= p.fa && x <= p.fb) ? g : 0.f;
  else if constexpr (Op == kAffine)
    return mul_f32(g, p.fa);
  else if constexpr (Op == kSign)
    return 0.f;
  else if constexpr (Op == kSquare)
    return mul_f32(mul_f32(g, 2.f), x);
  else if constexpr (Op == kRsqrt)
    return mul_f32(mul_f32(mul_f32(mul_f32(g, -0.5f), y), y), y);
  else if constexpr (Op == kSin)
    return mul_f32(g, cosf(x));
  else if constexpr (Op == kCos)
    return mul_f32(-g, sinf(x));
  else
    return 0.f;
}

/** The CPU's static_cast<int32_t>(std::pow(double(a), double(b))) computed exactly with integers
 * (glibc's pow is exact whenever the result is representable; CUDA's pow is only within 2 ulp, so
 * e.g. 3^4 could truncate to 80): truncation toward zero, INT32_MIN where x86 gives it (results
 * outside the int32 range, 0^negative = inf). */
PRIM_HD int32_t int_pow_i32(int32_t a, int32_t b) {
  if (b < 0) {
    if (a == 1) return 1;
    if (a == -1) return (b & 1) ? -1 : 1;
    if (a == 0) return INT32_MIN;
    return 0;  // |a^b| < 1 truncates to 0
  }
  const int64_t lim = int64_t(1) << 31;
  int64_t r = 1, base = a;
  uint32_t e = static_cast<uint32_t>(b);
  while (e) {
    if (e & 1u) {
      r *= base;  // |r|, |base| <= 2^31: no int64 overflow
      if (r > INT32_MAX || r < INT32_MIN) return INT32_MIN;
    }
    e >>= 1;
    if (e) {
      if (base > lim || base < -lim) return INT32_MIN;  // r * base^(>=1) would be out of range (r != 0)
      base *= base;
      if (base > lim) return r == 0 ? 0 : INT32_MIN;
    }
  }
  return static_cast<int32_t>(r);
}

template <class T, int Op>
PRIM_HD T binary_value(T a, T b) {
  if constexpr (std::is_same_v<T, int32_t>) {
    // Two's-complement wrap-around for + - * (as the CPU's uint32 arithmetic).
    if constexpr (Op == kAdd)
      return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
    else if constexpr (Op == kSub)
      return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
    else if constexpr (Op == kMul)
      return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
    else if constexpr (Op == kDiv)
      return b == 0 ? 0 : (a == INT32_MIN && b == -1 ? a : a / b);
    else if constexpr (Op == kPow)
      return int_pow_i32(a, b);
    else if constexpr (Op == kMaximum)
      return a > b ? a : b;
    else if constexpr (Op == kMinimum)
      return a < b ? a : b;
    else if constexpr (Op == kEq)
      return a == b;
    else if constexpr (Op == kNe)
      return a != b;
    else if constexpr (Op == kLt)
      return a < b;
    else if constexpr (Op == kLe)
      return a <= b;
    else if constexpr (Op == kGt)
      return a > b;
    else if constexpr (Op == kGe)
      return a >= b;
    else
      return 0;
  } else {
    if constexpr (Op == kAdd)
      return add_f32(a, b);
    else if constexpr (Op == kSub)
      return sub_f32(a, b);
    else if constexpr (Op == kMul)
      return mul_f32(a, b);
    else if constexpr (Op == kDiv)
      return a / b;
    else if constexpr (Op == kPow)
      return static_cast<float>(pow(static_cast<double>(a), static_cast<double>(b)));
    else if constexpr (Op == kMaximum)
      return (a != a || a > b) ? a : b;  // NaN propagates
    else if constexpr (Op == kMinimum)
      return (a != a || a < b) ? a : b;
    else if constexpr (Op == kEq)
      return a == b ? 1.f : 0.f;
    else if constexpr (Op == kNe)
      return a != b ? 1.f : 0.f;
    else if constexpr (Op == kLt)
      return a < b ? 1.f : 0.f;
    else if constexpr (Op == kLe)
      return a <= b ? 1.f : 0.f;
    else if constexpr (Op == kGt)
      return a > b ? 1.f : 0.f;
    else if constexpr (Op == kGe)
      return a >= b ? 1.f : 0.f;
    else
      return 0.f;
  }
}

// ------------------------------------------------------------------ dtypes and casts
constexpr int kDtypeF32 = 0, kDtypeI32 = 2, kDtypeBf16 = 3;

/** A bf16 value as its uint16 bit pattern (the upper half of an f32). */
struct Bf16 {
  uint16_t bits;
};
static_assert(sizeof(Bf16) == 2 && alignof(Bf16) == 2, "Bf16 is the uint16_t of the C ABI's bf16 entries");

PRIM_HD uint32_t f32_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
#endif
}
PRIM_HD float f32_from_bits(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, 4);
  return x;
#endif
}
PRIM_HD bool is_finite_f32(float x) { return (f32_bits(x) & 0x7f800000u) != 0x7f800000u; }

/** f32 -> bf16, round to nearest even; NaN stays NaN (quieted, sign kept); overflow -> Inf. */
PRIM_HD Bf16 f32_to_bf16(float x) {
  const uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return Bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};
  return Bf16{static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

PRIM_HD float bf16_to_f32(Bf16 v) { return f32_from_bits(static_cast<uint32_t>(v.bits) << 16); }

// Storage types of the f32-computing kernels (unary, binary, where, reduce, strided copy): f32,
// or bf16 loaded to f32, computed exactly as the f32 kernel does and rounded once on store.
PRIM_HD float as_f32(float v) { return v; }
PRIM_HD float as_f32(Bf16 v) { return bf16_to_f32(v); }
/** An f32 result stored as T: itself for f32, rounded to nearest even for bf16. */
template <class T>
PRIM_HD T round_to(float v) {
  if constexpr (std::is_same_v<T, Bf16>)
    return f32_to_bf16(v);
  else
    return v;
}

/** f64 -> bf16 rounded once (nearest even, host): via f32 rounded to odd, which keeps the sticky
 * bit so that the second rounding cannot double-round (f32 has 16 more significand bits). */
inline Bf16 f64_to_bf16(double v) {
  float f = static_cast<float>(v);
  if (v == v && std::isfinite(f) && static_cast<double>(f) != v && (f32_bits(f) & 1u) == 0)
    f = std::nextafter(f, static_cast<float>(v > static_cast<double>(f) ? INFINITY : -INFINITY));
  return f32_to_bf16(f);
}

/** i32 -> bf16 rounded once (nearest even) from the exact integer, not via a rounded f32. */
PRIM_HD Bf16 i32_to_bf16(int32_t v) {
  const uint32_t mag = v < 0 ? 0u - static_cast<uint32_t>(v) : static_cast<uint32_t>(v);
  if (mag < (1u << 24)) return f32_to_bf16(static_cast<float>(v));  // exact in f32
  int top = 31;
  while (!(mag >> top)) --top;  // top >= 24
  const int shift = top - 7;    // keep 8 significant bits
  uint32_t mant = mag >> shift;
  const uint32_t rem = mag & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (mant & 1u))) ++mant;                                              // mant <= 256
  const float r = static_cast<float>(static_cast<double>(mant) * static_cast<double>(1ull << shift));  // exact
  return f32_to_bf16(v < 0 ? -r : r);
}

/** f32 -> i32 as the CPU: NaN -> 0, saturating, truncation toward zero. */
PRIM_HD int32_t f32_to_i32(float x) {
  const double v = static_cast<double>(x);
  return v != v ? 0 : v >= 2147483647.0 ? 2147483647 : v <= -2147483648.0 ? INT32_MIN : static_cast<int32_t>(v);
}

template <class S, class D>
PRIM_HD D cast_value(S x) {
  if constexpr (std::is_same_v<S, D>)
    return x;
  else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, int32_t>)
    return f32_to_i32(x);
  else if constexpr (std::is_same_v<S, float> && std::is_same_v<D, Bf16>)
    return f32_to_bf16(x);
  else if constexpr (std::is_same_v<S, int32_t> && std::is_same_v<D, float>)
    return static_cast<float>(x);
  else if constexpr (std::is_same_v<S, int32_t> && std::is_same_v<D, Bf16>)
    return i32_to_bf16(x);
  else if constexpr (std::is_same_v<S, Bf16> && std::is_same_v<D, float>)
    return bf16_to_f32(x);
  else  // bf16 -> i32
    return f32_to_i32(bf16_to_f32(x));
}

/** y[i] of arange, computed in double as the CPU: start + double(i) * step. */
template <class T>
PRIM_HD T arange_value(int64_t i, double start, double step) {
  const double v = add_f64(start, mul_f64(static_cast<double>(i), step));
  if constexpr (std::is_same_v<T, int32_t>)
    return trunc_i32_x86(v);
  else
    return static_cast<float>(v);
}

// ------------------------------------------------------------------ random / optimizer bodies
constexpr int kRandomUniform = 0, kRandomNormal = 1, kRandomBernoulli = 2;

/** Element i of a draw, exactly as crate::cpu::random (double math, one Philox block per element). */
template <int Kind>
PRIM_HD float random_value(uint64_t seed, uint64_t counter, double a, double b, double b_minus_a) {
  const Philox4 r = philox4x32(seed, 0, counter);
  const double u1 = u32_to_unit(r.v[0], r.v[1]);
  double v;
  if constexpr (Kind == kRandomUniform) {
    v = add_f64(a, mul_f64(b_minus_a, sub_f64(1.0, u1)));  // [a, b)
  } else if constexpr (Kind == kRandomNormal) {
    const double u2 = u32_to_unit(r.v[2], r.v[3]);
    v = add_f64(a, mul_f64(mul_f64(b, sqrt(mul_f64(-2.0, log(u1)))), cos(mul_f64(6.283185307179586, u2))));
  } else {
    v = sub_f64(1.0, u1) < a ? 1.0 : 0.0;  // bernoulli(p = a)
  }
  return static_cast<float>(v);
}

/** AdamW constants as crate::cpu::adamw_step derives them (f32, from the double arguments). */
struct AdamWParams {
  float decay, step, ib2, tb1, tb2, te, omb1, omb2;
  static AdamWParams make(double lr, double b1, double b2, double eps, double wd, double bc1, double bc2) {
    AdamWParams q;
    q.decay = static_cast<float>(1.0 - lr * wd);
    q.step = static_cast<float>(lr / bc1);
    q.ib2 = static_cast<float>(1.0 / std::sqrt(bc2));
    q.tb1 = static_cast<float>(b1);
    q.tb2 = static_cast<float>(b2);
    q.te = static_cast<float>(eps);
    q.omb1 = 1.f - q.tb1;
    q.omb2 = 1.f - q.tb2;
    return q;
  }
};

/** One element of the AdamW update (m, v, p in place), same operation order as the CPU. */
PRIM_HD void adamw_update(float& p, float g, float& m, float& v, const AdamWParams& q) {
  const float mi = add_f32(mul_f32(q.tb1, m), mul_f32(q.omb1, g));
  const float vi = add_f32(mul_f32(q.tb2, v), mul_f32(mul_f32(q.omb2, g), g));
  m = mi;
  v = vi;
  p = sub_f32(mul_f32(p, q.decay), mul_f32(q.step, mi) / add_f32(mul_f32(sqrtf(vi), q.ib2), q.te));
}

// ------------------------------------------------------------------ checks
inline int64_t checked_numel(const char* op, const int64_t* shape, int ndim) {
  CRATE_CUDA_REQUIRE(ndim >= 0 && ndim <= kMaxDims, op,
                     "ndim " + std::to_string(ndim) + " is outside [0, " + std::to_string(kMaxDims) + "]");
  CRATE_CUDA_REQUIRE(ndim == 0 || shape != nullptr, op, "shape is NULL");
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) {
    CRATE_CUDA_REQUIRE(shape[d] >= 0, op, "negative size " + std::to_string(shape[d]) + " in dim " + std::to_string(d));
    n *= shape[d];
  }
  return n;
}

inline void require_strides(const char* op, const int64_t* str, int ndim, const char* name) {
  CRATE_CUDA_REQUIRE(ndim == 0 || str != nullptr, op, std::string(name) + " is NULL");
}

inline void require_ptr(const char* op, const void* p, const char* name) {
  CRATE_CUDA_REQUIRE(p != nullptr, op, std::string(name) + " is NULL");
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace crate::cuda::prim
