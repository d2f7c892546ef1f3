/* crate_cuda_prim.h: the CUDA primitive kernels behind the core tensor ops (elementwise,
 * reductions, layout, random, optimizer), exported by libcrate_cuda.so with a C ABI. Each is the
 * CUDA twin of a CPU kernel in native/cpu/kernels.h, with the same arguments plus the stream, and
 * computes the same result (to f32 rounding; random draws are bit-identical for uniform and
 * bernoulli, since both use the counter-based Philox4x32-10 of native/core/philox.h).
 *
 * Conventions: as crate_cuda.h. Op codes are the integer values of crate::cpu::UnaryOp,
 * BinaryOp, ReduceOp and RandomKind. Shape and stride arrays (`shape`, `*_str`, `reduced`,
 * batch arrays) are HOST arrays of at most 16 entries, copied by value into the launch; data
 * pointers are device pointers. Sizes and offsets are int64 element counts. Supported dtypes:
 * f32 for math, i32 where the name says so (labels, indices, comparisons), and bf16 where the name
 * says so (unary + backward, binary, where, fill, reduce, strided_copy, matmul, random, AdamW's
 * parameter and gradient): uint16_t bit patterns,
 * loaded as f32, computed exactly as the f32 entry computes and rounded once to bf16 (nearest
 * even) on store; reductions accumulate in f32; copies move the bits unchanged.
 */
#ifndef CRATE_CRATE_CUDA_PRIM_H
#define CRATE_CRATE_CUDA_PRIM_H

#include <stddef.h>
#include <stdint.h>

#include "crate/crate.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CRATE_CUDA_MAX_DIMS 16

/* elementwise */
CRATE_API crate_status crate_cuda_unary_f32(int op, const float* x, float* y, int64_t n, double alpha, double beta,
                                            void* stream);
CRATE_API crate_status crate_cuda_unary_backward_f32(int op, const float* x, const float* y, const float* g, float* dx,
                                                     int64_t n, double alpha, double beta, void* stream);
CRATE_API crate_status crate_cuda_binary_f32(int op, const float* a, const int64_t* a_str, const float* b,
                                             const int64_t* b_str, float* out, const int64_t* shape, int ndim,
                                             void* stream);
CRATE_API crate_status crate_cuda_unary_bf16(int op, const uint16_t* x, uint16_t* y, int64_t n, double alpha,
                                             double beta, void* stream);
CRATE_API crate_status crate_cuda_unary_backward_bf16(int op, const uint16_t* x, const uint16_t* y, const uint16_t* g,
                                                      uint16_t* dx, int64_t n, double alpha, double beta, void* stream);
CRATE_API crate_status crate_cuda_binary_bf16(int op, const uint16_t* a, const int64_t* a_str, const uint16_t* b,
                                              const int64_t* b_str, uint16_t* out, const int64_t* shape, int ndim,
                                              void* stream);
CRATE_API crate_status crate_cuda_binary_i32(int op, const int32_t* a, const int64_t* a_str, const int32_t* b,
                                             const int64_t* b_str, int32_t* out, const int64_t* shape, int ndim,
                                             void* stream);
CRATE_API crate_status crate_cuda_where_f32(const float* c, const int64_t* c_str, const float* a, const int64_t* a_str,
                                            const float* b, const int64_t* b_str, float* out, const int64_t* shape,
                                            int ndim, void* stream);
/* c has the dtype of a and b (nonzero: selects a); bf16 moves the selected bits unchanged. */
CRATE_API crate_status crate_cuda_where_bf16(const uint16_t* c, const int64_t* c_str, const uint16_t* a,
                                             const int64_t* a_str, const uint16_t* b, const int64_t* b_str,
                                             uint16_t* out, const int64_t* shape, int ndim, void* stream);
CRATE_API crate_status crate_cuda_fill_f32(float* y, int64_t n, double value, void* stream);
/* value rounded once to bf16 (nearest even). */
CRATE_API crate_status crate_cuda_fill_bf16(uint16_t* y, int64_t n, double value, void* stream);
CRATE_API crate_status crate_cuda_fill_i32(int32_t* y, int64_t n, double value, void* stream);
CRATE_API crate_status crate_cuda_arange_f32(float* y, int64_t n, double start, double step, void* stream);
CRATE_API crate_status crate_cuda_arange_i32(int32_t* y, int64_t n, double start, double step, void* stream);
/* dtype codes: 0 f32, 2 i32, 3 bf16 (uint16 bit pattern, round-to-nearest-even from f32). */
CRATE_API crate_status crate_cuda_cast(const void* x, int src_dtype, void* y, int dst_dtype, int64_t n, void* stream);
/* y[i] = (x[i] != 0) as one byte (NaN counts as nonzero), x of dtype 0 f32, 2 i32 or 3 bf16: the
 * uint8 key mask the MSSA kernels take, made on the device. */
CRATE_API crate_status crate_cuda_nonzero_u8(const void* x, int dtype, uint8_t* y, int64_t n, void* stream);
/* First index of a NaN/Inf in x, or -1, written to *host_result (synchronous). */
CRATE_API crate_status crate_cuda_find_nonfinite_f32(const float* x, int64_t n, int64_t* host_result, void* stream);

/* reductions: x has `shape` (ndim dims); reduced[d] != 0 marks reduced dims; out holds the kept
 * dims in order. Sums accumulate in f32 with a deterministic tree order. */
CRATE_API crate_status crate_cuda_reduce_f32(int op, const float* x, const int64_t* shape, const uint8_t* reduced,
                                             int ndim, float* out, void* stream);
/* bf16 in and out; f32 accumulation (and f32 scratch between passes), one rounding per output. */
CRATE_API crate_status crate_cuda_reduce_bf16(int op, const uint16_t* x, const int64_t* shape, const uint8_t* reduced,
                                              int ndim, uint16_t* out, void* stream);

/* layout: dst[dst_off + Σ i_d·dst_str[d]] (= or +=) src[src_off + Σ i_d·src_str[d]] over `shape`.
 * accumulate (+=) must not be used where two indices map to the same dst element (no atomics). */
CRATE_API crate_status crate_cuda_strided_copy_f32(const float* src, int64_t src_off, const int64_t* src_str,
                                                   float* dst, int64_t dst_off, const int64_t* dst_str,
                                                   const int64_t* shape, int ndim, int accumulate, void* stream);
/* bf16: bits copied unchanged; accumulate adds in f32 and rounds once per element (it needs every
 * dst element to have one source: a 0 dst stride over a dim of size > 1 is refused). */
CRATE_API crate_status crate_cuda_strided_copy_bf16(const uint16_t* src, int64_t src_off, const int64_t* src_str,
                                                    uint16_t* dst, int64_t dst_off, const int64_t* dst_str,
                                                    const int64_t* shape, int ndim, int accumulate, void* stream);
CRATE_API crate_status crate_cuda_strided_copy_i32(const int32_t* src, int64_t src_off, const int64_t* src_str,
                                                   int32_t* dst, int64_t dst_off, const int64_t* dst_str,
                                                   const int64_t* shape, int ndim, void* stream);
/* x (outer, dim, inner) -> out (outer, k, inner) = x[:, idx[j], :]; an index outside [0, dim)
 * gives CRATE_ERR_INVALID_ARGUMENT naming it (checked on the device, reported synchronously). */
CRATE_API crate_status crate_cuda_gather_f32(const float* x, const int32_t* idx, float* out, int64_t outer, int64_t dim,
                                             int64_t inner, int64_t k, void* stream);
CRATE_API crate_status crate_cuda_gather_i32(const int32_t* x, const int32_t* idx, int32_t* out, int64_t outer,
                                             int64_t dim, int64_t inner, int64_t k, void* stream);
/* bf16: bits moved unchanged. */
CRATE_API crate_status crate_cuda_gather_bf16(const uint16_t* x, const int32_t* idx, uint16_t* out, int64_t outer,
                                              int64_t dim, int64_t inner, int64_t k, void* stream);
/* The same gathers without the check's host wait, for indices the caller has validated: an index
 * outside [0, dim) still reads nothing out of bounds (its output row is zero-filled) but is not
 * reported. Fully asynchronous. */
CRATE_API crate_status crate_cuda_gather_unchecked_f32(const float* x, const int32_t* idx, float* out, int64_t outer,
                                                       int64_t dim, int64_t inner, int64_t k, void* stream);
CRATE_API crate_status crate_cuda_gather_unchecked_i32(const int32_t* x, const int32_t* idx, int32_t* out,
                                                       int64_t outer, int64_t dim, int64_t inner, int64_t k,
                                                       void* stream);
CRATE_API crate_status crate_cuda_gather_unchecked_bf16(const uint16_t* x, const int32_t* idx, uint16_t* out,
                                                        int64_t outer, int64_t dim, int64_t inner, int64_t k,
                                                        void* stream);
/* dx (outer, dim, inner) += g (outer, k, inner) at idx (atomicAdd: order of additions not fixed). */
CRATE_API crate_status crate_cuda_index_add_f32(const float* g, const int32_t* idx, float* dx, int64_t outer,
                                                int64_t dim, int64_t inner, int64_t k, void* stream);
/* bf16 g and dx: dx is widened to an f32 scratch copy (4 bytes per element of dx), g added there
 * with f32 atomicAdd, and every element rounded back once (one rounding of the f32 sum, however
 * many indices repeat; the f32 order of additions is not fixed, as for the f32 entry). */
CRATE_API crate_status crate_cuda_index_add_bf16(const uint16_t* g, const int32_t* idx, uint16_t* dx, int64_t outer,
                                                 int64_t dim, int64_t inner, int64_t k, void* stream);

/* batched matmul with broadcast batch dims: out (batch..., M, N) = op(A) op(B); a_bstr/b_bstr
 * are element strides of A and B over the nbatch batch dims (0 = broadcast). */
CRATE_API crate_status crate_cuda_matmul_f32(const float* A, const float* B, float* C, const int64_t* batch_shape,
                                             const int64_t* a_bstr, const int64_t* b_bstr, int nbatch, int64_t M,
                                             int64_t N, int64_t K, int trans_a, int trans_b, int allow_tf32,
                                             void* stream);
/* bf16 A, B and C: bf16 tensor-core GEMMs with f32 accumulation, each output rounded once. */
CRATE_API crate_status crate_cuda_matmul_bf16(const uint16_t* A, const uint16_t* B, uint16_t* C,
                                              const int64_t* batch_shape, const int64_t* a_bstr, const int64_t* b_bstr,
                                              int nbatch, int64_t M, int64_t N, int64_t K, int trans_a, int trans_b,
                                              void* stream);

/* random: element i of a draw is a pure function of (seed, offset + i), as on the CPU. */
CRATE_API crate_status crate_cuda_random_f32(int kind, float* y, int64_t n, uint64_t seed, uint64_t offset, double a,
                                             double b, void* stream);
/* bf16: element i is the f32 draw of crate_cuda_random_f32 rounded once (nearest even): the same
 * stream, rounded (a uniform draw may round up to b). */
CRATE_API crate_status crate_cuda_random_bf16(int kind, uint16_t* y, int64_t n, uint64_t seed, uint64_t offset,
                                              double a, double b, void* stream);

/* One fused AdamW update in place, as crate::cpu::adamw_step. */
CRATE_API crate_status crate_cuda_adamw_step_f32(float* p, const float* g, float* m, float* v, int64_t n, double lr,
                                                 double b1, double b2, double eps, double wd, double bc1, double bc2,
                                                 void* stream);
/* bf16 parameter p and gradient g, f32 moments m and v: the f32 update of crate_cuda_adamw_step_f32
 * on the widened p and g, p rounded once per step (nearest even; an update below half a bf16 ulp
 * of p is lost). */
CRATE_API crate_status crate_cuda_adamw_step_bf16(uint16_t* p, const uint16_t* g, float* m, float* v, int64_t n,
                                                  double lr, double b1, double b2, double eps, double wd, double bc1,
                                                  double bc2, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* CRATE_CRATE_CUDA_PRIM_H */
