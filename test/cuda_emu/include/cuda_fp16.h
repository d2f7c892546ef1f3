// cuda_fp16.h (CUDA host emulator): __half as a 16-bit storage type with the device's conversions
// (float -> half rounds to nearest even, with subnormals; overflow -> inf; NaN stays NaN).
#pragma once
#include "cuda_emu.h"

namespace cuda_emu {
inline unsigned short float_to_half_rn(float f) {
  const unsigned u = __float_as_uint(f);
  const unsigned short sign = static_cast<unsigned short>((u >> 16) & 0x8000u);
  const unsigned a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<unsigned short>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // quiet NaN
  if (a >= 0x477ff000u) return static_cast<unsigned short>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (a >= 0x38800000u) {                                                    // normal half (|f| >= 2^-14)
    const unsigned m = a - 0x38000000u;  // rebias exponent 127 -> 15 (in the f32 bit layout)
    return static_cast<unsigned short>(sign | ((m + 0xfffu + ((m >> 13) & 1u)) >> 13));
  }
  if (a < 0x33000000u) return sign;  // below half the smallest subnormal (2^-25): zero
  // subnormal half: value = mant * 2^-24, mant = round(|f| * 2^24) with ties to even
  const unsigned e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;
  const unsigned shift = 126u - e;  // |f| = mant * 2^(e - 150); mant * 2^(e - 150 + 24) = mant >> (126 - e)
  const unsigned q = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  const unsigned r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
  return static_cast<unsigned short>(sign | r);
}

inline float half_to_float(unsigned short h) {
  const unsigned sign = (static_cast<unsigned>(h) & 0x8000u) << 16;
  const unsigned exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return __uint_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
  const float v = static_cast<float>(mant) * 5.9604644775390625e-8f;  // subnormal: mant * 2^-24 (exact)
  return sign ? -v : v;
}
}  // namespace cuda_emu

struct alignas(2) __half {
  unsigned short __x;
  __half() = default;
  __half(float f) : __x(cuda_emu::float_to_half_rn(f)) {}
  operator float() const { return cuda_emu::half_to_float(__x); }
};
typedef __half half;

inline __half __ushort_as_half(unsigned short v) {
  __half h;
  h.__x = v;
  return h;
}
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __float2half_rn(float f) { return __half(f); }
inline __half __float2half(float f) { return __half(f); }
inline float __half2float(__half h) { return static_cast<float>(h); }
