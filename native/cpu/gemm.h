// gemm.h: the CPU GEMM every matmul, linear and CRATE kernel goes through.
// Row-major. C(M,N) = alpha * op(A)(M,K) * op(B)(K,N) + beta * C.
// op(A) = A (M,K) with leading dimension lda, or Aᵀ when transA (A stored (K,M)).
// The backend is either the own blocked AVX2/FMA kernel (always compiled) or a system
// CBLAS (OpenBLAS) loaded at run time with dlopen when one is found.
#pragma once
#include <cstdint>
#include <string>

namespace crate::cpu {

void gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_f64(bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
              const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// Strided batch: matrix i of A starts at A + i*strideA (strideA may be 0 to broadcast).
void gemm_batched_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                      int64_t lda, int64_t strideA, const float* B, int64_t ldb, int64_t strideB, float beta, float* C,
                      int64_t ldc, int64_t strideC, int64_t batch);
void gemm_batched_f64(bool transA, bool transB, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                      int64_t lda, int64_t strideA, const double* B, int64_t ldb, int64_t strideB, double beta,
                      double* C, int64_t ldc, int64_t strideC, int64_t batch);

enum class GemmBackend { own = 0, blas = 1 };
// Which backend gemm_* uses. Default: blas when a CBLAS library was found, else own.
// Selecting blas when none was found throws crate::Error.
void set_gemm_backend(GemmBackend b);
GemmBackend gemm_backend();
// The own kernel regardless of the selected backend (used by benchmarks and tests).
void gemm_f32_own(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

struct BlasInfo {
  bool found;
  std::string path;    // the library that was loaded
  std::string reason;  // why none was loaded (every path tried), when !found
};
const BlasInfo& blas_info();

}  // namespace crate::cpu
