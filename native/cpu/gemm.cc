// gemm.cc: TEMPORARY naive GEMM so the tree links; replaced by the blocked AVX2 kernel.
#include "gemm.h"

#include "../core/common.h"

namespace crate::cpu {
namespace {
template <class T>
void naive(bool tA, bool tB, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
           int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += (tA ? A[k * lda + i] : A[i * lda + k]) * (tB ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = alpha * acc + (beta == T(0) ? T(0) : beta * C[i * ldc + j]);
    }
}
}  // namespace
void gemm_f32(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  naive(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_f64(bool tA, bool tB, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
              const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  naive(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_batched_f32(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                      int64_t sA, const float* B, int64_t ldb, int64_t sB, float beta, float* C, int64_t ldc,
                      int64_t sC, int64_t batch) {
  for (int64_t b = 0; b < batch; ++b) naive(tA, tB, M, N, K, alpha, A + b * sA, lda, B + b * sB, ldb, beta, C + b * sC, ldc);
}
void gemm_batched_f64(bool tA, bool tB, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                      int64_t sA, const double* B, int64_t ldb, int64_t sB, double beta, double* C, int64_t ldc,
                      int64_t sC, int64_t batch) {
  for (int64_t b = 0; b < batch; ++b) naive(tA, tB, M, N, K, alpha, A + b * sA, lda, B + b * sB, ldb, beta, C + b * sC, ldc);
}
void gemm_f32_own(bool tA, bool tB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                  const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  naive(tA, tB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void set_gemm_backend(GemmBackend) {}
GemmBackend gemm_backend() { return GemmBackend::own; }
const BlasInfo& blas_info() {
  static BlasInfo info{false, "", "not implemented yet"};
  return info;
}
}  // namespace crate::cpu
