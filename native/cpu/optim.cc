// optim.cc: fused optimizer updates (one pass over p, g and the moment buffers, in place).
// AdamW follows torch.optim.AdamW (amsgrad off): p ← p·(1 − lr·wd);
// m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; p ← p − (lr/bc1)·m / (√v/√bc2 + eps).
#include <cmath>

#include "../core/parallel.h"
#include "kernels.h"

namespace crate::cpu {

template <class T>
void adamw_step(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps, double wd,
                double bc1, double bc2) {
  const T decay = static_cast<T>(1.0 - lr * wd), step = static_cast<T>(lr / bc1),
          ib2 = static_cast<T>(1.0 / std::sqrt(bc2));
  const T tb1 = static_cast<T>(b1), tb2 = static_cast<T>(b2), te = static_cast<T>(eps);
  parallel_for(0, n, 1 << 15, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const T gi = g[i];
      const T mi = tb1 * m[i] + (T(1) - tb1) * gi;
      const T vi = tb2 * v[i] + (T(1) - tb2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      p[i] = p[i] * decay - step * mi / (std::sqrt(vi) * ib2 + te);
    }
  });
}

template void adamw_step<float>(float*, const float*, float*, float*, int64_t, double, double, double, double, double,
                                double, double);
template void adamw_step<double>(double*, const double*, double*, double*, int64_t, double, double, double, double,
                                 double, double, double);

}  // namespace crate::cpu
