// matmul.cc: batched matmul with broadcast batch dims on top of the GEMM. When one operand is
// shared across the batch and not transposed-A, the batch folds into M (one large GEMM).
#include <vector>

#include "../core/parallel.h"
#include "gemm.h"
#include "kernels.h"

namespace crate::cpu {
namespace {
inline void gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
                 int64_t ldb, float* C, int64_t ldc) {
  gemm_f32(tA, tB, M, N, K, 1.f, A, lda, B, ldb, 0.f, C, ldc);
}
inline void gemm(bool tA, bool tB, int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, const double* B,
                 int64_t ldb, double* C, int64_t ldc) {
  gemm_f64(tA, tB, M, N, K, 1.0, A, lda, B, ldb, 0.0, C, ldc);
}
inline void gemm_b(bool tA, bool tB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, int64_t sA,
                   const float* B, int64_t ldb, int64_t sB, float* C, int64_t ldc, int64_t sC, int64_t batch) {
  gemm_batched_f32(tA, tB, M, N, K, 1.f, A, lda, sA, B, ldb, sB, 0.f, C, ldc, sC, batch);
}
inline void gemm_b(bool tA, bool tB, int64_t M, int64_t N, int64_t K, const double* A, int64_t lda, int64_t sA,
                   const double* B, int64_t ldb, int64_t sB, double* C, int64_t ldc, int64_t sC, int64_t batch) {
  gemm_batched_f64(tA, tB, M, N, K, 1.0, A, lda, sA, B, ldb, sB, 0.0, C, ldc, sC, batch);
}
}  // namespace

template <class T>
void matmul(const T* A, const T* B, T* C, const int64_t* batch_shape, const int64_t* a_bstr, const int64_t* b_bstr,
            int nbatch, int64_t M, int64_t N, int64_t K, bool transA, bool transB) {
  int64_t batch = 1;
  for (int d = 0; d < nbatch; ++d) batch *= batch_shape[d];
  if (batch == 0 || M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: C = 0 (and no GEMM, whose leading dimensions would be 0)
    for (int64_t i = 0; i < batch * M * N; ++i) C[i] = T(0);
    return;
  }
  const int64_t lda = transA ? M : K, ldb = transB ? K : N;
  // Single effective batch stride per operand? (true for 0/1 batch dims or contiguous batches)
  auto flat_stride = [&](const int64_t* s, int64_t mat, int64_t& out) {
    if (nbatch == 0) {
      out = 0;
      return true;
    }
    int64_t expect = s[nbatch - 1];
    if (expect != 0 && expect != mat) return false;
    for (int d = nbatch - 1; d > 0; --d) {
      const int64_t want = s[d] == 0 ? 0 : s[d] * batch_shape[d];
      if (s[d - 1] != want) return false;
    }
    out = expect;
    return true;
  };
  int64_t sa = 0, sb = 0;
  if (flat_stride(a_bstr, M * K, sa) && flat_stride(b_bstr, K * N, sb)) {
    // fold the batch into M ((batch*M, K) x (K, N)) only when A's matrices are back to back
    if (sb == 0 && sa == M * K && !transA && batch > 1) {
      gemm(false, transB, batch * M, N, K, A, lda, B, ldb, C, N);
      return;
    }
    gemm_b(transA, transB, M, N, K, A, lda, sa, B, ldb, sb, C, N, M * N, batch);
    return;
  }
  // General broadcast: compute per-batch offsets.
  std::vector<int64_t> aoff(batch), boff(batch);
  std::vector<int64_t> idx(nbatch, 0);
  for (int64_t i = 0; i < batch; ++i) {
    int64_t ao = 0, bo = 0;
    for (int d = 0; d < nbatch; ++d) {
      ao += idx[d] * a_bstr[d];
      bo += idx[d] * b_bstr[d];
    }
    aoff[i] = ao;
    boff[i] = bo;
    for (int d = nbatch - 1; d >= 0; --d) {
      if (++idx[d] < batch_shape[d]) break;
      idx[d] = 0;
    }
  }
  parallel_for(0, batch, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i)
      gemm(transA, transB, M, N, K, A + aoff[i], lda, B + boff[i], ldb, C + i * M * N, N);
  });
}

template void matmul<float>(const float*, const float*, float*, const int64_t*, const int64_t*, const int64_t*, int,
                            int64_t, int64_t, int64_t, bool, bool);
template void matmul<double>(const double*, const double*, double*, const int64_t*, const int64_t*, const int64_t*, int,
                             int64_t, int64_t, int64_t, bool, bool);

}  // namespace crate::cpu
