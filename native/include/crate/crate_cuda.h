/* crate_cuda.h: the plain C ABI of the CUDA backend (libcrate_cuda.so): device pointers and a
 * CUDA stream, for other native code or PyTorch via ctypes (pass tensor.data_ptr() and
 * torch.cuda.current_stream().cuda_stream). The Node addon loads the same library with dlopen and
 * calls these same entry points, so what the C ABI serves is exactly what the TS layer runs.
 *
 * Conventions (as crate.h):
 * - Every function returns a crate_status; on failure crate_cuda_last_error() returns a message
 *   (thread-local; valid until the next call on the same thread). A launch error or an error
 *   the device reports later (illegal address, ...) is "sticky": the CUDA context is unusable,
 *   and every later call returns CRATE_ERR_CUDA with a message that says so (crate_cuda_status).
 * - All tensors are dense row-major device pointers with the layouts of the CPU ABI: the CUDA
 *   function crate_cuda_X computes exactly what crate_X (crate.h family) computes on the CPU,
 *   to f32 rounding; the CPU functions are the reference the CUDA tests compare against.
 * - `stream` is a cudaStream_t (NULL: the library's own stream of the current device, see
 *   crate_cuda_default_stream). Work is queued on it and the call returns without waiting.
 * - Scratch memory comes from the library's caching allocator, stream-ordered on `stream`.
 * - CRATE_SYNC=1 in the environment synchronizes after every launch and reports errors at the
 *   call that caused them (for debugging).
 * - Kernels support f32 everywhere (f32 accumulation); bf16 where the function name says so.
 */
#ifndef CRATE_CRATE_CUDA_H
#define CRATE_CRATE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "crate/crate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ runtime */

typedef struct crate_cuda_memory_stats {
  size_t allocated_bytes; /* handed out by crate_cuda_malloc and not yet freed */
  size_t cached_bytes;    /* held by the caching allocator for reuse (not handed out) */
  size_t peak_allocated_bytes;
  size_t device_free_bytes; /* cudaMemGetInfo at the time of the call */
  size_t device_total_bytes;
  int64_t num_allocs;        /* crate_cuda_malloc calls served */
  int64_t num_device_allocs; /* cudaMalloc calls made (cache misses) */
  int64_t num_oom_retries;   /* times the cache was emptied to satisfy a request */
  int64_t num_host_syncs;    /* blocking waits of the host on the device so far (process-wide):
                                device->host copies, large host->device copies, synchronize, and
                                the entry points that read a device-side check back */
} crate_cuda_memory_stats;

CRATE_API const char* crate_cuda_last_error(void);
/* CRATE_OK, or CRATE_ERR_CUDA when the context is poisoned by a sticky error (message says which). */
CRATE_API crate_status crate_cuda_status(void);
/* Selects and initialises device `device` for the calling thread (creates the library's stream). */
CRATE_API crate_status crate_cuda_init(int device);
CRATE_API void* crate_cuda_default_stream(void);

/* Caching allocator: size classes (512 B granularity below 1 MiB, 2 MiB above), per-stream free
 * lists; a block freed on stream s is reused by a later request on s at once (stream order), by
 * another stream only after an event recorded on s completes. On cudaErrorMemoryAllocation the
 * cache is emptied and the cudaMalloc retried once; then CRATE_ERR_OUT_OF_MEMORY with the bytes
 * asked, free and cached in the message. crate_cuda_malloc(0) gives NULL and CRATE_OK. */
CRATE_API crate_status crate_cuda_malloc(void** ptr, size_t bytes, void* stream);
CRATE_API crate_status crate_cuda_free(void* ptr, void* stream);
/* Returns cached (unused) blocks to the driver; returns the bytes released. */
CRATE_API size_t crate_cuda_empty_cache(void);
CRATE_API crate_status crate_cuda_memory_stats_get(crate_cuda_memory_stats* out);

/* kind: 0 host->device, 1 device->host, 2 device->device. Host->device and device->device are
 * stream-ordered and return at once (host memory is staged, so the caller may reuse it on
 * return); device->host waits for the stream and then copies (synchronous). */
CRATE_API crate_status crate_cuda_memcpy(void* dst, const void* src, size_t bytes, int kind, void* stream);
/* Device->host without blocking: copies into pinned staging memory on `stream` and calls
 * done(user, status) from a CUDA host callback thread when the bytes are in `dst`. The caller
 * must not touch dst until then. */
CRATE_API crate_status crate_cuda_memcpy_d2h_async(void* dst, const void* src, size_t bytes, void* stream,
                                                   void (*done)(void* user, crate_status status), void* user);
CRATE_API crate_status crate_cuda_synchronize(void* stream);

/* ------------------------------------------------------------------ GEMM
 * C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b], row-major, for b < batch with element strides
 * stride_a/b/c between matrices (0 broadcasts one matrix). op(A) is M x K, op(B) is K x N.
 * Backed by cuBLASLt (else cuBLAS) loaded at run time with dlopen (CRATE_CUBLAS_LIB /
 * CRATE_CUBLASLT_LIB, the CUDA folders, pip's nvidia/{cublas}/lib folders), else by the own
 * tensor-core GEMM. allow_tf32 != 0 lets f32 GEMMs use TF32 tensor cores. */
CRATE_API crate_status crate_cuda_gemm_f32(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                           const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                                           float* C, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                                           int64_t stride_c, int allow_tf32, void* stream);
/* bf16 inputs (uint16_t bit patterns), f32 accumulation, f32 output. */
CRATE_API crate_status crate_cuda_gemm_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                            const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                                            float* C, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                                            int64_t stride_c, void* stream);
/* bf16 inputs and bf16 C: C = bf16(alpha * acc + beta * C) with f32 accumulation and one rounding
 * (nearest even) per element; C is read (as bf16) only when beta != 0. */
CRATE_API crate_status crate_cuda_gemm_bf16_bf16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                                 const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
                                                 float beta, uint16_t* C, int64_t ldc, int64_t batch, int64_t stride_a,
                                                 int64_t stride_b, int64_t stride_c, void* stream);
/* IEEE half (f16) inputs (uint16_t bit patterns), f32 accumulation: f32 C, or f16 C (one rounding,
 * nearest even, overflow to inf; read as f16 only when beta != 0). For C ABI users: the library's
 * own tensors have no f16 dtype. */
CRATE_API crate_status crate_cuda_gemm_f16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                           const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb, float beta,
                                           float* C, int64_t ldc, int64_t batch, int64_t stride_a, int64_t stride_b,
                                           int64_t stride_c, void* stream);
CRATE_API crate_status crate_cuda_gemm_f16_f16(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                               const uint16_t* A, int64_t lda, const uint16_t* B, int64_t ldb,
                                               float beta, uint16_t* C, int64_t ldc, int64_t batch, int64_t stride_a,
                                               int64_t stride_b, int64_t stride_c, void* stream);
/* Which GEMM is in use: "cublasLt <version> (<path>)", "cublas <version> (<path>)" or
 * "own tensor-core GEMM (cuBLAS not found: <why>)". */
CRATE_API const char* crate_cuda_gemm_backend(void);
/* Forces the own GEMM (1) or the loaded cuBLAS (0) for tests and benchmarks. */
CRATE_API crate_status crate_cuda_gemm_force_own(int own);

/* ------------------------------------------------------------------ CRATE kernels
 * Same arguments and layouts as the CPU functions of mssa.h, ista.h, coding_rate.h, tssa.h, plus
 * the stream; workspaces come from the caching allocator. */

CRATE_API crate_status crate_cuda_mssa_forward_f32(const float* P, float* O, float* L, int64_t B, int64_t N, int64_t H,
                                                   int64_t p, float scale, int causal, const uint8_t* key_mask,
                                                   void* stream);
CRATE_API crate_status crate_cuda_mssa_backward_f32(const float* P, const float* O, const float* L, const float* dO,
                                                    float* dP, int64_t B, int64_t N, int64_t H, int64_t p, float scale,
                                                    int causal, const uint8_t* key_mask, void* stream);
/* bf16 MSSA: P, O, dO, dP bf16 (uint16_t bit patterns), L (B, H, N) f32 (the saved logsumexp),
 * otherwise as the f32 entries. Tile products on bf16 tensor cores (sm_80+) with f32
 * accumulation; scores, softmax statistics, the O / dP accumulators and the D = rowsum(dO o O)
 * scratch are f32; the probabilities (and the backward's dS) are rounded to bf16 before their
 * products, as in FlashAttention-2; each output is rounded once. Expected error: about 2^-8
 * relative to sum_j A_ij |P_j| (see native/cuda/mssa.cu). */
CRATE_API crate_status crate_cuda_mssa_forward_bf16(const uint16_t* P, uint16_t* O, float* L, int64_t B, int64_t N,
                                                    int64_t H, int64_t p, float scale, int causal,
                                                    const uint8_t* key_mask, void* stream);
CRATE_API crate_status crate_cuda_mssa_backward_bf16(const uint16_t* P, const uint16_t* O, const float* L,
                                                     const uint16_t* dO, uint16_t* dP, int64_t B, int64_t N, int64_t H,
                                                     int64_t p, float scale, int causal, const uint8_t* key_mask,
                                                     void* stream);

CRATE_API crate_status crate_cuda_ista_forward_f32(const float* Y, const float* W, float* Z, int64_t T, int64_t d,
                                                   float eta, float lambd, void* stream);
CRATE_API crate_status crate_cuda_ista_backward_f32(const float* Y, const float* W, const float* Z, const float* dZ,
                                                    float* dY, float* dW, int64_t T, int64_t d, float eta,
                                                    void* stream);
/* CRATE-alpha overcomplete ISTA (ista.h's crate_ista_overcomplete_*): Y (T, d), D, D1 (d, m) -> out (T, d);
 * A1, A2 (T, m) and R (T, d) are saved for the backward and may each be NULL (inference). The
 * backward overwrites dY (T, d), dD, dD1 (d, m); any of them may be NULL to skip it (dD1 needs only
 * dOut and A2). Scratch comes from the caching allocator. */
CRATE_API crate_status crate_cuda_ista_overcomplete_forward_f32(const float* Y, const float* D, const float* D1,
                                                                float* out, float* A1, float* A2, float* R, int64_t T,
                                                                int64_t d, int64_t m, float eta, float lambd,
                                                                void* stream);
CRATE_API crate_status crate_cuda_ista_overcomplete_backward_f32(const float* Y, const float* D, const float* D1,
                                                                 const float* A1, const float* A2, const float* R,
                                                                 const float* dOut, float* dY, float* dD, float* dD1,
                                                                 int64_t T, int64_t d, int64_t m, float eta,
                                                                 void* stream);
/* Causal-CRATE tied ISTA (ista.h's crate_ista_tied_*): Y (T, d), W (m, d) -> out (T, d); A0, A1
 * (T, m) and R (T, d) saved (each may be NULL). The backward overwrites dY (T, d) and dW (m, d),
 * either may be NULL. */
CRATE_API crate_status crate_cuda_ista_tied_forward_f32(const float* Y, const float* W, float* out, float* A0,
                                                        float* A1, float* R, int64_t T, int64_t d, int64_t m, float eta,
                                                        float lambd, void* stream);
CRATE_API crate_status crate_cuda_ista_tied_backward_f32(const float* Y, const float* W, const float* A0,
                                                         const float* A1, const float* R, const float* dOut, float* dY,
                                                         float* dW, int64_t T, int64_t d, int64_t m, float eta,
                                                         void* stream);
/* The ISTA family with bf16 storage (uint16_t bit patterns) for every tensor argument: Y, the
 * dictionaries (W, D, D1: bf16 too, a pure-bf16 model), outputs, saved iterates (A0/A1/A2, R) and
 * gradients. Each GEMM is a bf16 tensor-core GEMM with f32 accumulation; the residual / step /
 * threshold / ReLU / mask epilogues run in f32 and round once on store; parameter gradients
 * accumulate in f32 and are rounded once. A saved iterate is the rounded value the next GEMM
 * used. Same arguments, NULL rules and T = 0 behaviour as the f32 entries. */
CRATE_API crate_status crate_cuda_ista_forward_bf16(const uint16_t* Y, const uint16_t* W, uint16_t* Z, int64_t T,
                                                    int64_t d, float eta, float lambd, void* stream);
CRATE_API crate_status crate_cuda_ista_backward_bf16(const uint16_t* Y, const uint16_t* W, const uint16_t* Z,
                                                     const uint16_t* dZ, uint16_t* dY, uint16_t* dW, int64_t T,
                                                     int64_t d, float eta, void* stream);
CRATE_API crate_status crate_cuda_ista_overcomplete_forward_bf16(const uint16_t* Y, const uint16_t* D,
                                                                 const uint16_t* D1, uint16_t* out, uint16_t* A1,
                                                                 uint16_t* A2, uint16_t* R, int64_t T, int64_t d,
                                                                 int64_t m, float eta, float lambd, void* stream);
CRATE_API crate_status crate_cuda_ista_overcomplete_backward_bf16(const uint16_t* Y, const uint16_t* D,
                                                                  const uint16_t* D1, const uint16_t* A1,
                                                                  const uint16_t* A2, const uint16_t* R,
                                                                  const uint16_t* dOut, uint16_t* dY, uint16_t* dD,
                                                                  uint16_t* dD1, int64_t T, int64_t d, int64_t m,
                                                                  float eta, void* stream);
CRATE_API crate_status crate_cuda_ista_tied_forward_bf16(const uint16_t* Y, const uint16_t* W, uint16_t* out,
                                                         uint16_t* A0, uint16_t* A1, uint16_t* R, int64_t T, int64_t d,
                                                         int64_t m, float eta, float lambd, void* stream);
CRATE_API crate_status crate_cuda_ista_tied_backward_bf16(const uint16_t* Y, const uint16_t* W, const uint16_t* A0,
                                                          const uint16_t* A1, const uint16_t* R, const uint16_t* dOut,
                                                          uint16_t* dY, uint16_t* dW, int64_t T, int64_t d, int64_t m,
                                                          float eta, void* stream);

/* chol: f64 scratch of crate_logdet_gram_chol_size(batch, m, n) bytes (device memory) that the
 * forward fills and the backward reads (NULL: the backward refactors), as on the CPU. Each call
 * synchronizes the stream once: NaN/Inf, alpha <= 0 and not-PD are part of its status. */
CRATE_API crate_status crate_cuda_logdet_gram_forward_f32(const float* Z, const float* alpha, float* R, int64_t batch,
                                                          int64_t m, int64_t n, double* chol, void* stream);
CRATE_API crate_status crate_cuda_logdet_gram_backward_f32(const float* Z, const float* alpha, const float* dR,
                                                           float* dZ, int64_t batch, int64_t m, int64_t n,
                                                           const double* chol, void* stream);
/* Per-head coding rate (coding_rate.h's crate_logdet_gram_heads_*): item (b, h) is the N x p block
 * X[b, :, h*p:(h+1)*p] of X (B, N, H*p), read in place (no permute copy); alpha, R, dR (B, H);
 * dX (B, N, H*p) overwritten; chol (B*H, k, k), k = min(N, p). Errors name the item as the CPU
 * does ("X[b=1, h=0] contains NaN"). */
CRATE_API crate_status crate_cuda_logdet_gram_heads_forward_f32(const float* X, const float* alpha, float* R, int64_t B,
                                                                int64_t N, int64_t H, int64_t p, double* chol,
                                                                void* stream);
CRATE_API crate_status crate_cuda_logdet_gram_heads_backward_f32(const float* X, const float* alpha, const float* dR,
                                                                 float* dX, int64_t B, int64_t N, int64_t H, int64_t p,
                                                                 const double* chol, void* stream);
/* bf16 storage: Z / X and dZ / dX bf16 (uint16_t bit patterns), alpha, R and dR f32, f64 inside
 * (the Gram of the exact bf16 values, as the f32 entries); dZ rounded once from f64 to bf16. */
CRATE_API crate_status crate_cuda_logdet_gram_forward_bf16(const uint16_t* Z, const float* alpha, float* R,
                                                           int64_t batch, int64_t m, int64_t n, double* chol,
                                                           void* stream);
CRATE_API crate_status crate_cuda_logdet_gram_backward_bf16(const uint16_t* Z, const float* alpha, const float* dR,
                                                            uint16_t* dZ, int64_t batch, int64_t m, int64_t n,
                                                            const double* chol, void* stream);
CRATE_API crate_status crate_cuda_logdet_gram_heads_forward_bf16(const uint16_t* X, const float* alpha, float* R,
                                                                 int64_t B, int64_t N, int64_t H, int64_t p,
                                                                 double* chol, void* stream);
CRATE_API crate_status crate_cuda_logdet_gram_heads_backward_bf16(const uint16_t* X, const float* alpha,
                                                                  const float* dR, uint16_t* dX, int64_t B, int64_t N,
                                                                  int64_t H, int64_t p, const double* chol,
                                                                  void* stream);

CRATE_API crate_status crate_cuda_tssa_forward_f32(const float* W, const float* temp, float* Y, float* Pi,
                                                   float* colnorm, float* mstat, int64_t B, int64_t N, int64_t H,
                                                   int64_t p, void* stream);
CRATE_API crate_status crate_cuda_tssa_backward_f32(const float* W, const float* temp, const float* dY, const float* Pi,
                                                    const float* colnorm, const float* mstat, float* dW, float* dtemp,
                                                    int64_t B, int64_t N, int64_t H, int64_t p, void* stream);
/* Causal TSSA (tssa.h's crate_tssa_causal_*): W (B, T, H*p), temp (H), denom_bias (H, Tmax) with
 * T <= Tmax -> Y (B, T, H*p); Pi (B, H, T) nullable output of the head weights. The backward
 * recomputes the forward's running sums itself (no saved buffers) and overwrites dW; dtemp (H) and
 * ddenom_bias (H, Tmax; columns >= T zeroed) are nullable, summed over the batch and overwritten.
 * O(B*T*H*p) work, f64 statistics (as the CPU). NaN/Inf in W, temp or denom_bias is reported as
 * CRATE_ERR_NUMERICAL by the call itself, as on the CPU: the host waits once per call (TSSA's
 * forwards, the causal backward, the vision backward without saved buffers) for the validation
 * pass, with the op's remaining kernels already queued (see native/cuda/tssa.cu). */
CRATE_API crate_status crate_cuda_tssa_causal_forward_f32(const float* W, const float* temp, const float* denom_bias,
                                                          float* Y, float* Pi, int64_t B, int64_t T, int64_t H,
                                                          int64_t p, int64_t Tmax, void* stream);
CRATE_API crate_status crate_cuda_tssa_causal_backward_f32(const float* W, const float* temp, const float* denom_bias,
                                                           const float* dY, float* dW, float* dtemp, float* ddenom_bias,
                                                           int64_t B, int64_t T, int64_t H, int64_t p, int64_t Tmax,
                                                           void* stream);
/* bf16 TSSA: W, Y, dY, dW bf16 (uint16_t bit patterns); temp, denom_bias and their gradients
 * dtemp, ddenom_bias f32 (the f32 master parameters of mixed precision); the saved statistics Pi,
 * colnorm, mstat f32. Loaded exactly, computed in f64 as the f32 entries, each bf16 result rounded
 * once (nearest even). Same sizes, nullability, errors and waits as the f32 entries. */
CRATE_API crate_status crate_cuda_tssa_forward_bf16(const uint16_t* W, const float* temp, uint16_t* Y, float* Pi,
                                                    float* colnorm, float* mstat, int64_t B, int64_t N, int64_t H,
                                                    int64_t p, void* stream);
CRATE_API crate_status crate_cuda_tssa_backward_bf16(const uint16_t* W, const float* temp, const uint16_t* dY,
                                                     const float* Pi, const float* colnorm, const float* mstat,
                                                     uint16_t* dW, float* dtemp, int64_t B, int64_t N, int64_t H,
                                                     int64_t p, void* stream);
CRATE_API crate_status crate_cuda_tssa_causal_forward_bf16(const uint16_t* W, const float* temp,
                                                           const float* denom_bias, uint16_t* Y, float* Pi, int64_t B,
                                                           int64_t T, int64_t H, int64_t p, int64_t Tmax, void* stream);
CRATE_API crate_status crate_cuda_tssa_causal_backward_bf16(const uint16_t* W, const float* temp,
                                                            const float* denom_bias, const uint16_t* dY, uint16_t* dW,
                                                            float* dtemp, float* ddenom_bias, int64_t B, int64_t T,
                                                            int64_t H, int64_t p, int64_t Tmax, void* stream);

/* ------------------------------------------------------------------ fused row ops
 * Same math and saved statistics as the CPU kernels of native/cpu/nn.cc.
 * The *_bf16 twins take bf16 (uint16_t bit patterns) x / weight / bias / y / grad / dx / dweight /
 * dbias / logits / dlogits, load them as f32, compute exactly as the f32 entry and round each
 * stored result once (nearest even); saved statistics (mean, rstd, lse), loss_row and g_row stay
 * f32 so that the backward does not see rounded statistics. */
CRATE_API crate_status crate_cuda_layernorm_forward_f32(const float* x, const float* w, const float* b, float* y,
                                                        float* mean, float* rstd, int64_t rows, int64_t cols,
                                                        double eps, void* stream);
/* dw, db (may be NULL) are accumulated into (+=), dx is overwritten. */
CRATE_API crate_status crate_cuda_layernorm_backward_f32(const float* x, const float* w, const float* mean,
                                                         const float* rstd, const float* g, float* dx, float* dw,
                                                         float* db, int64_t rows, int64_t cols, void* stream);
CRATE_API crate_status crate_cuda_softmax_forward_f32(const float* x, float* y, int64_t rows, int64_t cols, int log,
                                                      void* stream);
CRATE_API crate_status crate_cuda_softmax_backward_f32(const float* y, const float* g, float* dx, int64_t rows,
                                                       int64_t cols, int log, void* stream);
/* loss_row (rows) per-row loss (0 for ignored rows), lse (rows) saved for the backward;
 * counted (device int64, 1 element) receives the number of rows not ignored. */
CRATE_API crate_status crate_cuda_cross_entropy_forward_f32(const float* logits, const int32_t* target, float* loss_row,
                                                            float* lse, int64_t* counted, int64_t rows, int64_t classes,
                                                            double smoothing, int64_t ignore_index, void* stream);
/* dlogits = g_row[r] * (softmax - smoothed one-hot); g_row (rows) the upstream gradient per row. */
CRATE_API crate_status crate_cuda_cross_entropy_backward_f32(const float* logits, const int32_t* target,
                                                             const float* lse, const float* g_row, float* dlogits,
                                                             int64_t rows, int64_t classes, double smoothing,
                                                             int64_t ignore_index, void* stream);

CRATE_API crate_status crate_cuda_layernorm_forward_bf16(const uint16_t* x, const uint16_t* w, const uint16_t* b,
                                                         uint16_t* y, float* mean, float* rstd, int64_t rows,
                                                         int64_t cols, double eps, void* stream);
/* dw, db (bf16, may be NULL): dw = round(dw + f32 sum), one rounding per element. */
CRATE_API crate_status crate_cuda_layernorm_backward_bf16(const uint16_t* x, const uint16_t* w, const float* mean,
                                                          const float* rstd, const uint16_t* g, uint16_t* dx,
                                                          uint16_t* dw, uint16_t* db, int64_t rows, int64_t cols,
                                                          void* stream);
CRATE_API crate_status crate_cuda_softmax_forward_bf16(const uint16_t* x, uint16_t* y, int64_t rows, int64_t cols,
                                                       int log, void* stream);
CRATE_API crate_status crate_cuda_softmax_backward_bf16(const uint16_t* y, const uint16_t* g, uint16_t* dx,
                                                        int64_t rows, int64_t cols, int log, void* stream);
/* bf16 logits; loss_row and lse f32. */
CRATE_API crate_status crate_cuda_cross_entropy_forward_bf16(const uint16_t* logits, const int32_t* target,
                                                             float* loss_row, float* lse, int64_t* counted,
                                                             int64_t rows, int64_t classes, double smoothing,
                                                             int64_t ignore_index, void* stream);
/* bf16 logits and dlogits; lse and g_row f32. */
CRATE_API crate_status crate_cuda_cross_entropy_backward_bf16(const uint16_t* logits, const int32_t* target,
                                                              const float* lse, const float* g_row, uint16_t* dlogits,
                                                              int64_t rows, int64_t classes, double smoothing,
                                                              int64_t ignore_index, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* CRATE_CRATE_CUDA_H */
