// kernels.h: the CPU primitive kernels behind the core ops (elementwise, reductions, layout,
// random, softmax/layernorm/cross-entropy). All operate on dense row-major buffers; broadcasting
// and views are expressed with element strides (0 = broadcast) computed by the TS layer.
// Every kernel is templated on the element type and dispatched by DType in the binding.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/common.h"

namespace crate::cpu {

// ---------------------------------------------------------------------------- elementwise
enum class UnaryOp : int {
  neg = 0,
  exp,
  log,
  sqrt,
  abs,
  relu,
  gelu,
  gelu_tanh,
  tanh,
  sigmoid,
  pow_scalar,  // x^alpha
  clamp,       // min(max(x, alpha), beta)
  affine,      // x*alpha + beta
  sign,
  square,
  rsqrt,
  sin,
  cos,
  count
};
enum class BinaryOp : int { add = 0, sub, mul, div, pow, maximum, minimum, eq, ne, lt, le, gt, ge, count };

template <class T>
void unary(UnaryOp op, const T* x, T* y, int64_t n, double alpha, double beta);
// dx = g * f'(x) (y = f(x) may be used where cheaper); overwrites dx.
template <class T>
void unary_backward(UnaryOp op, const T* x, const T* y, const T* g, T* dx, int64_t n, double alpha, double beta);

// out (shape, contiguous) = a op b with a, b addressed by element strides (0 on broadcast dims).
template <class T>
void binary(BinaryOp op, const T* a, const int64_t* astr, const T* b, const int64_t* bstr, T* out, const int64_t* shape,
            int ndim);
// out = cond != 0 ? a : b  (cond has the same dtype as a and b)
template <class T>
void where(const T* c, const int64_t* cstr, const T* a, const int64_t* astr, const T* b, const int64_t* bstr, T* out,
           const int64_t* shape, int ndim);

template <class T>
void fill(T* y, int64_t n, double value);
template <class T>
void arange(T* y, int64_t n, double start, double step);
template <class S, class D>
void cast(const S* x, D* y, int64_t n);

// Scans for NaN/Inf; returns the first offending index or -1.
template <class T>
int64_t find_nonfinite(const T* x, int64_t n);

// Which build the vectorised CPU kernels (vec_math.h) run: "avx2" (AVX2+FMA, 32-byte vectors) or
// "generic" (16-byte vectors; also when the environment sets CRATE_CPU_VECTOR=generic).
const char* cpu_vector_isa();

// ---------------------------------------------------------------------------- reductions
enum class ReduceOp : int { sum = 0, max = 1, min = 2 };
// x has `shape` (ndim dims); reduced[d] != 0 marks reduced dims; out is the kept dims in order.
template <class T>
void reduce(ReduceOp op, const T* x, const int64_t* shape, const uint8_t* reduced, int ndim, T* out);

// ---------------------------------------------------------------------------- layout
// dst[dst_off + Σ i_d*dst_str[d]] (=|+=) src[src_off + Σ i_d*src_str[d]] for every index i of `shape`.
template <class T>
void strided_copy(const T* src, int64_t src_off, const int64_t* src_str, T* dst, int64_t dst_off,
                  const int64_t* dst_str, const int64_t* shape, int ndim, bool accumulate);
// x viewed as (outer, dim, inner); out (outer, k, inner) = x[:, idx[j], :]. idx values checked.
template <class T>
void gather(const T* x, const int32_t* idx, T* out, int64_t outer, int64_t dim, int64_t inner, int64_t k);
// dx (outer, dim, inner) += g (outer, k, inner) at idx (the adjoint of gather).
template <class T>
void index_add(const T* g, const int32_t* idx, T* dx, int64_t outer, int64_t dim, int64_t inner, int64_t k);

// ---------------------------------------------------------------------------- matmul
// out (batch..., M, N) = op(A) op(B); batch dims broadcast via per-operand batch strides.
template <class T>
void matmul(const T* A, const T* B, T* C, const int64_t* batch_shape, const int64_t* a_bstr, const int64_t* b_bstr,
            int nbatch, int64_t M, int64_t N, int64_t K, bool transA, bool transB);

// ---------------------------------------------------------------------------- random
// Counter-based Philox4x32-10: element i of a draw with (seed, offset) is a pure function of
// (seed, offset + i), so CPU and CUDA streams agree and draws are reproducible.
enum class RandomKind : int { uniform = 0, normal = 1, bernoulli = 2 };
template <class T>
void random(RandomKind kind, T* y, int64_t n, uint64_t seed, uint64_t offset, double a, double b);

// ---------------------------------------------------------------------------- nn
// Row-wise over the last dim: x (rows, cols).
template <class T>
void softmax(const T* x, T* y, int64_t rows, int64_t cols, bool log);
template <class T>
void softmax_backward(const T* y, const T* g, T* dx, int64_t rows, int64_t cols, bool log);
// y = (x - mean) * rstd * w + b; saves mean, rstd (rows). w, b nullable.
template <class T>
void layernorm(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t cols, double eps);
// dx (overwrite); dw, db accumulate (+=) when non-null.
template <class T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* g, T* dx, T* dw, T* db,
                        int64_t rows, int64_t cols);
// loss_row (rows): smoothed NLL, 0 for ignored rows; lse (rows) saved for backward.
// Returns the number of counted (non-ignored) rows. Target out of range (not ignore) -> Error.
template <class T>
int64_t cross_entropy(const T* logits, const int32_t* target, T* loss_row, T* lse, int64_t rows, int64_t classes,
                      double smoothing, int64_t ignore_index);
// dlogits = (softmax - smoothed one-hot) * g_row[r] (g_row (rows): per-row upstream weight).
template <class T>
void cross_entropy_backward(const T* logits, const int32_t* target, const T* lse, const T* g_row, T* dlogits,
                            int64_t rows, int64_t classes, double smoothing, int64_t ignore_index);

// ---------------------------------------------------------------------------- optimizers
// One fused AdamW update in place (see optim.cc); bc1 = 1 − β1^t, bc2 = 1 − β2^t.
template <class T>
void adamw_step(T* p, const T* g, T* m, T* v, int64_t n, double lr, double b1, double b2, double eps, double wd,
                double bc1, double bc2);

}  // namespace crate::cpu
