// blas_loader.h: a CBLAS (OpenBLAS, BLIS, MKL) found at run time with dlopen, so one binary
// works with and without a system BLAS. Search: $CRATE_BLAS_LIB, libopenblas.so.0, libopenblas.so,
// libopenblasp.so.0, libblis.so.4, libmkl_rt.so, then libblas.so.3 (only when it is OpenBLAS:
// Debian's reference BLAS is ~30x slower than the own kernel and is never used by default).
#pragma once
#include <cstdint>
#include <string>

namespace crate::cpu::blas {

struct Api {
  // cblas_?gemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), LP64 ints
  void (*sgemm)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*,
                int) = nullptr;
  void (*dgemm)(int, int, int, int, int, int, double, const double*, int, const double*, int, double, double*,
                int) = nullptr;
  void (*set_num_threads)(int) = nullptr;
  std::string path;
  std::string reason;
};

// Loads once (thread-safe); the result says what was found and why not.
const Api& api();

}  // namespace crate::cpu::blas
