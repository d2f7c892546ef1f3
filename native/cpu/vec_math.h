// vec_math.h: SIMD vectors for the CPU kernels (GCC/Clang vector extensions) and branch-free math
// on them. Kernels that use it are compiled twice, portable (16-byte vectors: SSE2 / NEON) and
// with CRATE_VEC_AVX2_TARGET (32-byte vectors, AVX2+FMA), and pick a build with vec_use_avx2().
//   vexp          f32 (~3 ulp) / f64 exp for softmax-style arguments: results below the normal
//                 range flush to 0, large arguments are clamped (mssa.cc's exp)
//   vexp_ieee     f32 exp over the whole IEEE range, as std::exp: +inf above 88.72, subnormals
//   vtanh, vsigmoid, vgelu_tanh (+ _grad), vgelu (erf form, + _grad)   f32
// NaN in gives NaN out everywhere. Max errors over all 2^32 f32 inputs (AVX2 / portable build):
// vexp_ieee 1.01 / 0.99, vtanh 1.33, vsigmoid 2.83, vgelu_tanh 3.48 / 3.37, vgelu 4.67 ulp
// (test/vec_math.test.ts asserts them on a dense sweep).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>

// 32-byte vector arguments in code compiled without AVX: these helpers are always inlined into
// the AVX2 builds, so the ABI note does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace crate::cpu {

#define CRATE_VEC_INLINE inline __attribute__((always_inline))

// Vectors of VB bytes (16 = portable path, 32 = AVX2 path).
template <class T, int VB>
struct Vec;
template <int VB>
struct Vec<float, VB> {
  typedef float type __attribute__((vector_size(VB)));
  typedef uint32_t utype __attribute__((vector_size(VB)));
  typedef int32_t itype __attribute__((vector_size(VB)));
  static constexpr int n = VB / 4;
};
template <int VB>
struct Vec<double, VB> {
  typedef double type __attribute__((vector_size(VB)));
  typedef uint64_t utype __attribute__((vector_size(VB)));
  typedef int64_t itype __attribute__((vector_size(VB)));
  static constexpr int n = VB / 8;
};

template <class T, int VB>
CRATE_VEC_INLINE typename Vec<T, VB>::type vload(const T* p) {
  typename Vec<T, VB>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T, int VB>
CRATE_VEC_INLINE void vstore(T* p, const typename Vec<T, VB>::type& v) {
  std::memcpy(p, &v, sizeof v);
}
template <class T, int VB>
CRATE_VEC_INLINE typename Vec<T, VB>::type vset(T s) {
  return typename Vec<T, VB>::type{} + s;  // costs a scalar add (0 + -0 != -0): keep out of hot loops
}
// The first n (< lanes) elements of p, the other lanes set to `fill`.
template <class T, int VB>
CRATE_VEC_INLINE typename Vec<T, VB>::type vload_partial(const T* p, int64_t n, T fill) {
  T buf[Vec<T, VB>::n];
  for (int i = 0; i < Vec<T, VB>::n; ++i) buf[i] = fill;
  std::memcpy(buf, p, sizeof(T) * n);
  return vload<T, VB>(buf);
}
// Stores the first n (< lanes) lanes of v.
template <class T, int VB>
CRATE_VEC_INLINE void vstore_partial(T* p, int64_t n, const typename Vec<T, VB>::type& v) {
  T buf[Vec<T, VB>::n];
  vstore<T, VB>(buf, v);
  std::memcpy(p, buf, sizeof(T) * n);
}
template <class T, int VB>
CRATE_VEC_INLINE T hmax(const typename Vec<T, VB>::type& v) {
  T m = v[0];
  for (int i = 1; i < Vec<T, VB>::n; ++i) m = v[i] > m ? v[i] : m;
  return m;
}
template <class T, int VB>
CRATE_VEC_INLINE T hsum(const typename Vec<T, VB>::type& v) {
  T s = v[0];
  for (int i = 1; i < Vec<T, VB>::n; ++i) s += v[i];
  return s;
}
// The f32 lanes of v as two double vectors (low, high half), and back (rounding). With
// __builtin_shufflevector (Clang, GCC >= 12) the halves stay in registers; else they go through
// memory (same results). One double vector of 2 VB bytes instead would be simpler, but GCC keeps
// such over-wide loop-carried vectors in memory and scalarises their compares.
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define CRATE_VEC_HAVE_SHUFFLE 1
#endif
#endif
template <int VB>
struct VecHalf {
  typedef float type __attribute__((vector_size(VB / 2)));
};
template <int VB>
CRATE_VEC_INLINE void vwiden(const typename Vec<float, VB>::type& v, typename Vec<double, VB>::type& lo,
                             typename Vec<double, VB>::type& hi) {
  typename VecHalf<VB>::type h[2];
#ifdef CRATE_VEC_HAVE_SHUFFLE
  if constexpr (VB == 32) {
    h[0] = __builtin_shufflevector(v, v, 0, 1, 2, 3);
    h[1] = __builtin_shufflevector(v, v, 4, 5, 6, 7);
  } else {
    static_assert(VB == 16);
    h[0] = __builtin_shufflevector(v, v, 0, 1);
    h[1] = __builtin_shufflevector(v, v, 2, 3);
  }
#else
  std::memcpy(h, &v, sizeof v);
#endif
  lo = __builtin_convertvector(h[0], typename Vec<double, VB>::type);
  hi = __builtin_convertvector(h[1], typename Vec<double, VB>::type);
}
// The vector with lanes lo, then hi.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vjoin(const typename VecHalf<VB>::type& lo,
                                                     const typename VecHalf<VB>::type& hi) {
#ifdef CRATE_VEC_HAVE_SHUFFLE
  if constexpr (VB == 32) {
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7);
  } else {
    static_assert(VB == 16);
    return __builtin_shufflevector(lo, hi, 0, 1, 2, 3);
  }
#else
  const typename VecHalf<VB>::type both[2] = {lo, hi};
  typename Vec<float, VB>::type v;
  std::memcpy(&v, both, sizeof v);
  return v;
#endif
}
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vnarrow(const typename Vec<double, VB>::type& lo,
                                                       const typename Vec<double, VB>::type& hi) {
  return vjoin<VB>(__builtin_convertvector(lo, typename VecHalf<VB>::type),
                   __builtin_convertvector(hi, typename VecHalf<VB>::type));
}
// lo, hi += v widened to double (exact).
template <int VB>
CRATE_VEC_INLINE void vadd_widened(typename Vec<double, VB>::type& lo, typename Vec<double, VB>::type& hi,
                                   const typename Vec<float, VB>::type& v) {
  typename Vec<double, VB>::type l, h;
  vwiden<VB>(v, l, h);
  lo += l;
  hi += h;
}
// lo, hi += a * b widened to double (products of floats are exact in double).
template <int VB>
CRATE_VEC_INLINE void vadd_widened(typename Vec<double, VB>::type& lo, typename Vec<double, VB>::type& hi,
                                   const typename Vec<float, VB>::type& a, const typename Vec<float, VB>::type& b) {
  typename Vec<double, VB>::type al, ah, bl, bh;
  vwiden<VB>(a, al, ah);
  vwiden<VB>(b, bl, bh);
  lo += al * bl;
  hi += ah * bh;
}

// ------------------------------------------------------------------------------------ f32 exp

// Cody-Waite reduction x = n ln2 + r, n = round(x / ln2), |r| <= ~0.35 (ln2 split so that n * hi is
// exact). Returns n; x must be clamped to a finite range (NaN gives NaN in r).
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::itype vexp_reduce(const typename Vec<float, VB>::type& x,
                                                            typename Vec<float, VB>::type& r) {
  typedef typename Vec<float, VB>::type VF;
  typedef typename Vec<float, VB>::utype VU;
  typedef typename Vec<float, VB>::itype VI;
  const VF magic = vset<float, VB>(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const VF t = x * 1.44269504088896341f + magic;
  const VF n = t - magic;
  r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  return (VI)((VU)t - (VU)magic);
}
// e^r on the reduced range, degree-6 Taylor (truncation up to 1.4 ulp at r = -ln2/2): vexp's.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vexp_taylor6(const typename Vec<float, VB>::type& r) {
  typedef typename Vec<float, VB>::type VF;
  VF q = vset<float, VB>(1.0f / 720.0f);
  q = q * r + 1.0f / 120.0f;
  q = q * r + 1.0f / 24.0f;
  q = q * r + 1.0f / 6.0f;
  q = q * r + 0.5f;
  q = q * r + 1.0f;
  q = q * r + 1.0f;
  return q;
}
// e^r on the reduced range as 1 + r + r^2 P(r), P a degree-4 minimax fit (relative error 3.3e-9
// with the f32 coefficients; the last add of 1 carries the leading bits): vexp_ieee's.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vexp_minimax6(const typename Vec<float, VB>::type& r) {
  typedef typename Vec<float, VB>::type VF;
  VF p = vset<float, VB>(1.382189570e-03f);
  p = p * r + 8.368964307e-03f;
  p = p * r + 4.166825488e-02f;
  p = p * r + 1.666651815e-01f;
  p = p * r + 4.999999404e-01f;
  return ((r * r) * p + r) + 1.0f;
}

// exp with ~3 ulp error; exp(-inf) = 0, NaN -> NaN, results below the normal range flush to 0,
// arguments above 88 are clamped to 88 (finite). For softmax-style arguments; see vexp_ieee.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vexp(const typename Vec<float, VB>::type& x_in) {
  typedef typename Vec<float, VB>::type VF;
  typedef typename Vec<float, VB>::utype VU;
  typedef typename Vec<float, VB>::itype VI;
  const VF lo = vset<float, VB>(-87.0f), hi = vset<float, VB>(88.0f);
  VF x = x_in;
  const VI small = x < lo;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  VF r;
  const VI n = vexp_reduce<VB>(x, r);
  const VF q = vexp_taylor6<VB>(r);
  const VU e = ((VU)n + 127u) << 23;
  const VF res = q * (VF)e;
  return small ? VF{} : res;
}

// v * 2^n for n in [-252, 252] as v * 2^n1 * 2^n2 with both factors normal, so that the product
// overflows to inf or rounds into the subnormals in the last multiply only (one rounding).
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vldexp(const typename Vec<float, VB>::type& v,
                                                      const typename Vec<float, VB>::itype& n) {
  typedef typename Vec<float, VB>::type VF;
  typedef typename Vec<float, VB>::itype VI;
  const VI n1 = n >> 1, n2 = n - n1;
  return v * (VF)((n1 + 127) << 23) * (VF)((n2 + 127) << 23);
}
// e^x = q 2^n, q in [0.7, 1.42], for the whole f32 range: q = 0 for x < -110 (e^x underflows; so
// vldexp(q * m, n) is 0 for any finite m, NaN for m = inf), x clamped to 89 (e^89 overflows; n in
// [-159, 129]); NaN gives q = NaN.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vexp_ieee_parts(const typename Vec<float, VB>::type& x_in,
                                                               typename Vec<float, VB>::itype& n) {
  typedef typename Vec<float, VB>::type VF;
  typedef typename Vec<float, VB>::itype VI;
  const VF lo = vset<float, VB>(-110.0f), hi = vset<float, VB>(89.0f);
  const VI tiny = x_in < lo;
  VF x = tiny ? lo : x_in;  // NaN stays NaN
  x = x > hi ? hi : x;
  VF r;
  n = vexp_reduce<VB>(x, r);
  const VF q = vexp_minimax6<VB>(r);
  return tiny ? VF{} : q;
}
// exp over the whole f32 range, as std::exp: +inf above 88.7228, gradual underflow into the
// subnormals (0 below -103.98), exp(-inf) = 0, exp(+inf) = +inf, NaN -> NaN.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vexp_ieee(const typename Vec<float, VB>::type& x) {
  typename Vec<float, VB>::itype n;
  const typename Vec<float, VB>::type q = vexp_ieee_parts<VB>(x, n);
  return vldexp<VB>(q, n);
}

// e^a = q 2^n (as vexp_ieee_parts) for an argument given in double (as two halves, vwiden's), a in
// [-170, 88] or NaN: the reduction a - n ln2 runs in double, so an argument computed in double
// keeps its accuracy.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vexp_ieee_parts_f64(const typename Vec<double, VB>::type& a_lo,
                                                                   const typename Vec<double, VB>::type& a_hi,
                                                                   typename Vec<float, VB>::itype& n) {
  typedef typename Vec<float, VB>::type VF;
  typedef typename Vec<float, VB>::utype VU;
  typedef typename Vec<float, VB>::itype VI;
  typedef typename Vec<double, VB>::type VD;
  const VD magic = vset<double, VB>(6755399441055744.0);  // 1.5 * 2^52: adding it rounds to an integer
  const VD n_lo = (a_lo * 1.4426950408889634074 + magic) - magic, n_hi = (a_hi * 1.4426950408889634074 + magic) - magic;
  const VD r_lo = (a_lo - n_lo * 6.93145751953125e-1) - n_lo * 1.42860682030941723212e-6;
  const VD r_hi = (a_hi - n_hi * 6.93145751953125e-1) - n_hi * 1.42860682030941723212e-6;
  const VF magic_f = vset<float, VB>(12582912.0f);
  n = (VI)((VU)(vnarrow<VB>(n_lo, n_hi) + magic_f) - (VU)magic_f);     // n is an exact small integer
  const VI tiny = vnarrow<VB>(a_lo, a_hi) < vset<float, VB>(-110.0f);  // as vexp_ieee_parts: q = 0
  const VF q = vexp_minimax6<VB>(vnarrow<VB>(r_lo, r_hi));
  return tiny ? VF{} : q;
}

// ------------------------------------------------------------------------------------ f32 tanh, sigmoid, gelu

template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vabs(const typename Vec<float, VB>::type& x) {
  typedef typename Vec<float, VB>::utype VU;
  return (typename Vec<float, VB>::type)((VU)x & (VU{} + 0x7fffffffu));
}

// tanh: |x| < 0.625: x + x^3 P(x^2) (Cephes tanhf's odd polynomial: exact for tiny x, no
// cancellation); else sign(x) (1 - 2 / (e^{2|x|} + 1)), which reaches +-1 for large |x| (e^{2|x|}
// = inf). tanh(+-0) = +-0, tanh(+-inf) = +-1.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vtanh(const typename Vec<float, VB>::type& x) {
  typedef typename Vec<float, VB>::type VF;
  typedef typename Vec<float, VB>::utype VU;
  const VU sign = (VU)x & (VU{} + 0x80000000u);
  const VF a = vabs<VB>(x);
  const VF z = a * a;
  VF p = vset<float, VB>(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z + -5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z + -3.33332819422e-1f;
  const VF small = (a * z) * p + a;
  const VF large = 1.0f - 2.0f / (vexp_ieee<VB>(a + a) + 1.0f);
  const VF r = a < vset<float, VB>(0.625f) ? small : large;  // NaN takes `large`: NaN
  return (VF)((VU)r | sign);
}

// sigmoid = 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) for x < 0: no overflow, relative accuracy
// kept down into the subnormals for x << 0; sigmoid(-inf) = 0, sigmoid(+inf) = 1.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vsigmoid(const typename Vec<float, VB>::type& x) {
  typedef typename Vec<float, VB>::type VF;
  const VF e = vexp_ieee<VB>(-vabs<VB>(x));
  const VF inv = 1.0f / (1.0f + e);
  return x < VF{} ? e * inv : inv;
}

// gelu, tanh approximation: 0.5 x (1 + tanh(u)) = x sigmoid(z), z = 2u = 2 sqrt(2/pi) (x + 0.044715
// x^3). The sigmoid form has no cancellation for x < 0 (where 1 + tanh(u) has), and z is computed
// in double: e^-|z| turns an absolute error in z (up to ~100 f32 ulps of |z| for the f32 formula)
// into a relative one. |x| is clamped to 12 first (|z| > 110 from |x| = 10.6 on: e^-|z| = 0).
// Gives e^-|z| = q 2^n (parts, for the caller's last multiply) and inv = 1 / (1 + e^-|z|).
template <int VB>
CRATE_VEC_INLINE void vgelu_tanh_parts(const typename Vec<float, VB>::type& x, typename Vec<float, VB>::type& q,
                                       typename Vec<float, VB>::itype& n, typename Vec<float, VB>::type& inv) {
  typedef typename Vec<float, VB>::type VF;
  typedef typename Vec<double, VB>::type VD;
  const VF lim = vset<float, VB>(12.0f);
  VF a = vabs<VB>(x);
  a = a > lim ? lim : a;  // NaN stays NaN
  VD lo, hi;
  vwiden<VB>(a, lo, hi);
  lo = -(lo * ((lo * lo) * (1.5957691216057308 * 0.044715) + 1.5957691216057308));  // -|z|
  hi = -(hi * ((hi * hi) * (1.5957691216057308 * 0.044715) + 1.5957691216057308));
  q = vexp_ieee_parts_f64<VB>(lo, hi, n);
  inv = 1.0f / (1.0f + vldexp<VB>(q, n));
}
// gelu_tanh(+inf) = +inf, gelu_tanh(-inf) = NaN (-inf * 0, as the scalar formula gives).
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vgelu_tanh(const typename Vec<float, VB>::type& x) {
  typedef typename Vec<float, VB>::type VF;
  VF q, inv;
  typename Vec<float, VB>::itype n;
  vgelu_tanh_parts<VB>(x, q, n, inv);
  const VF xinv = x * inv;
  return x < VF{} ? vldexp<VB>(q * xinv, n) : xinv;  // x e / (1 + e) rounds into the subnormals once
}
// d/dx x sigmoid(z) = s + x s (1 - s) z', s (1 - s) = e inv^2, z' = 2 sqrt(2/pi) (1 + 3 0.044715 x^2):
// inv (1 + x z' e inv) for x >= 0, e inv (1 + x z' inv) for x < 0 (scaled by 2^n last). x is clamped
// to +-32 inside (the e-term is 0 beyond, and x^3 must not overflow); +-inf give NaN (as the scalar
// formula's inf * 0).
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vgelu_tanh_grad(const typename Vec<float, VB>::type& x) {
  typedef typename Vec<float, VB>::type VF;
  VF q, inv;
  typename Vec<float, VB>::itype n;
  vgelu_tanh_parts<VB>(x, q, n, inv);
  const VF lim = vset<float, VB>(32.0f);
  VF xc = x > lim ? lim : x;
  xc = xc < -lim ? -lim : xc;
  const VF xdz = xc * ((xc * xc) * static_cast<float>(1.5957691216057308 * 3 * 0.044715) + 1.5957691216057308f);
  const VF inf_to_nan = x - x;
  const VF g = x < VF{} ? vldexp<VB>(q * inv * (1.0f + xdz * inv), n) : inv * (1.0f + xdz * vldexp<VB>(q, n) * inv);
  return g + inf_to_nan;
}

// The normal tail Phi(-a) = W(a) e^{-a^2/2}, a = min(|x|, 16), W = Phi(-a) e^{a^2/2} (the Mills
// ratio over sqrt(2 pi)), for gelu = x Phi(x):
//   e^{-a^2/2} = q 2^n (1 - lo/2), from a^2 = hi + lo split exactly (Dekker): the rounding error of
//                a^2 is never amplified, so the tail keeps its relative accuracy for large |x|;
//   W          degree-10 polynomial fits: in a - 1 for a < 2, t G(u) with t = 1/a, u = (t - c) s
//                for a >= 2 (relative error 7e-9 / 2.3e-9; c, s exact in f32).
// Phi(x) = tail for x < 0 and 1 - tail for x >= 0 (no cancellation on either side).
template <int VB>
CRATE_VEC_INLINE void vnormal_tail_parts(const typename Vec<float, VB>::type& x, typename Vec<float, VB>::type& q,
                                         typename Vec<float, VB>::itype& n, typename Vec<float, VB>::type& w) {
  typedef typename Vec<float, VB>::type VF;
  typedef typename Vec<float, VB>::utype VU;
  VF a = vabs<VB>(x);
  const VF amax = vset<float, VB>(16.0f);
  a = a > amax ? amax : a;  // e^-128 = 0 in f32; keeps inf out of the split (NaN stays NaN)
  const VF hi = a * a;
  const VF ah = (VF)((VU)a & (VU{} + 0xfffff000u)), al = a - ah;  // 12 + 12 significant bits
  const VF lo = ((ah * ah - hi) + 2.0f * ah * al) + al * al;      // a^2 - hi, exactly
  q = vexp_ieee_parts<VB>(-0.5f * hi, n) * (1.0f - 0.5f * lo);
  const VF v = a - 1.0f;
  VF wa = vset<float, VB>(7.201555945e-06f);
  wa = wa * v + -2.910657349e-05f;
  wa = wa * v + 8.821395022e-05f;
  wa = wa * v + -3.025924379e-04f;
  wa = wa * v + 1.014606562e-03f;
  wa = wa * v + -3.167995717e-03f;
  wa = wa * v + 9.255554527e-03f;
  wa = wa * v + -2.508530207e-02f;
  wa = wa * v + 6.210713089e-02f;
  wa = wa * v + -1.373640001e-01f;
  wa = wa * v + 2.615782917e-01f;
  const VF t = 1.0f / a;
  const VF u = (t - 0.28125f) * 4.5703125f;
  VF g = vset<float, VB>(-2.375924396e-06f);
  g = g * u + 3.982192084e-06f;
  g = g * u + 9.051292182e-06f;
  g = g * u + -4.655135126e-05f;
  g = g * u + 9.852177027e-05f;
  g = g * u + -2.635845522e-05f;
  g = g * u + -7.728285273e-04f;
  g = g * u + 3.488789313e-03f;
  g = g * u + -5.437185988e-03f;
  g = g * u + -3.402462974e-02f;
  g = g * u + 3.729044795e-01f;
  w = a < vset<float, VB>(2.0f) ? wa : t * g;
}
// gelu(x) = x Phi(x) (the erf form 0.5 x (1 + erf(x / sqrt 2))); gelu(-inf) = NaN as the scalar formula.
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vgelu(const typename Vec<float, VB>::type& x) {
  typedef typename Vec<float, VB>::type VF;
  VF q, w;
  typename Vec<float, VB>::itype n;
  vnormal_tail_parts<VB>(x, q, n, w);
  // x < 0: x W e^{-a^2/2} rounds into the subnormals once, in the last multiply
  return x < VF{} ? vldexp<VB>(q * (x * w), n) : x * (1.0f - w * vldexp<VB>(q, n));
}
// d gelu / dx = Phi(x) + x pdf(x) = e^{-x^2/2} (W + x / sqrt(2 pi)) for x < 0 (scaled by 2^n last),
// 1 + e^{-x^2/2} (x / sqrt(2 pi) - W) for x >= 0; +-inf give NaN (inf * 0, as the scalar formula).
template <int VB>
CRATE_VEC_INLINE typename Vec<float, VB>::type vgelu_grad(const typename Vec<float, VB>::type& x) {
  typedef typename Vec<float, VB>::type VF;
  VF q, w;
  typename Vec<float, VB>::itype n;
  vnormal_tail_parts<VB>(x, q, n, w);
  const VF xpdf = x * 0.3989422804014327f;
  return x < VF{} ? vldexp<VB>(q * (w + xpdf), n) : 1.0f + vldexp<VB>(q, n) * (xpdf - w);
}

// ------------------------------------------------------------------------------------ f64 exp

// exp with a degree-13 Taylor polynomial (truncation < 1e-17); exp(-inf) = 0, NaN -> NaN, results
// below ~e^-708 flush to 0, arguments above 709 are clamped.
template <int VB>
CRATE_VEC_INLINE typename Vec<double, VB>::type vexp(const typename Vec<double, VB>::type& x_in) {
  typedef typename Vec<double, VB>::type VD;
  typedef typename Vec<double, VB>::utype VU;
  typedef typename Vec<double, VB>::itype VI;
  const VD lo = vset<double, VB>(-708.0), hi = vset<double, VB>(709.0);
  VD x = x_in;
  const VI small = x < lo;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const VD magic = vset<double, VB>(6755399441055744.0);  // 1.5 * 2^52
  const VD t = x * 1.4426950408889634074 + magic;
  const VD n = t - magic;
  const VD r = (x - n * 6.93145751953125e-1) - n * 1.42860682030941723212e-6;
  // Taylor to degree 13 on |r| <= ln2/2: truncation error < 1e-17.
  VD q = vset<double, VB>(1.0 / 6227020800.0);
  const double inv_fact[13] = {1.0 / 479001600.0,
                               1.0 / 39916800.0,
                               1.0 / 3628800.0,
                               1.0 / 362880.0,
                               1.0 / 40320.0,
                               1.0 / 5040.0,
                               1.0 / 720.0,
                               1.0 / 120.0,
                               1.0 / 24.0,
                               1.0 / 6.0,
                               0.5,
                               1.0,
                               1.0};
#pragma GCC unroll 13
  for (int i = 0; i < 13; ++i) q = q * r + inv_fact[i];
  const VU e = (((VU)t - (VU)magic) + (uint64_t)1023) << 52;
  const VD res = q * (VD)e;
  return small ? VD{} : res;
}

// ------------------------------------------------------------------------------------ dispatch

#if defined(__x86_64__) || defined(__i386__)
#define CRATE_VEC_HAVE_AVX2 1
#define CRATE_VEC_AVX2_TARGET __attribute__((target("avx2,fma")))
// Whether the CPU runs AVX2+FMA code (checked once).
inline bool cpu_has_avx2_fma() {
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
}
#else
#define CRATE_VEC_HAVE_AVX2 0
inline bool cpu_has_avx2_fma() { return false; }
#endif

// Whether vector kernels run their AVX2 build: the CPU has AVX2+FMA and the environment variable
// CRATE_CPU_VECTOR is not "generic" (read once; "generic" forces the portable build, for tests).
inline bool vec_use_avx2() {
  static const bool use = [] {
    const char* env = std::getenv("CRATE_CPU_VECTOR");
    return cpu_has_avx2_fma() && !(env && std::strcmp(env, "generic") == 0);
  }();
  return use;
}

}  // namespace crate::cpu
