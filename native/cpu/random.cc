// random.cc: seeded uniform/normal/bernoulli fills from the counter-based Philox generator.
// Element i uses counter (offset + i): a draw is reproducible and independent of threading.
#include <cmath>

#include "../core/parallel.h"
#include "../core/philox.h"
#include "kernels.h"

namespace crate::cpu {

template <class T>
void random(RandomKind kind, T* y, int64_t n, uint64_t seed, uint64_t offset, double a, double b) {
  parallel_for(0, n, 1 << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const Philox4 r = philox4x32(seed, 0, offset + static_cast<uint64_t>(i));
      const double u1 = u32_to_unit(r.v[0], r.v[1]);
      double v;
      if (kind == RandomKind::uniform) {
        v = a + (b - a) * (1.0 - u1);  // [a, b)
      } else if (kind == RandomKind::normal) {
        const double u2 = u32_to_unit(r.v[2], r.v[3]);
        v = a + b * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
      } else {
        v = (1.0 - u1) < a ? 1.0 : 0.0;  // bernoulli(p = a)
      }
      y[i] = static_cast<T>(v);
    }
  });
}

template void random<float>(RandomKind, float*, int64_t, uint64_t, uint64_t, double, double);
template void random<double>(RandomKind, double*, int64_t, uint64_t, uint64_t, double, double);

}  // namespace crate::cpu
