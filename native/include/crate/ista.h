/* ista.h: C ABI of the fused CPU ISTA-step kernels, forward and backward, f32 and f64
 * (see crate.h for conventions). Rows are tokens: T = B*N, d = model width, m = dictionary size.
 *
 *   crate_ista_*              CRATE:      Z = ReLU(Y + eta (Y W - Y W^T W) - eta lambda), W (d, d)
 *   crate_ista_overcomplete_* CRATE-alpha: A1 = ReLU(eta Y D - eta lambda)
 *                                          A2 = ReLU(A1 - eta (A1 D^T - Y) D - eta lambda)
 *                                          out = A2 D1^T,                 D, D1 (d, m)
 *   crate_ista_tied_*         CRATE-GPT:   A0 = ReLU(eta Y W^T - eta lambda)
 *                                          A1 = ReLU(A0 + eta (Y W^T - A0 W W^T) - eta lambda)
 *                                          out = A1 W,                    W (m, d)
 * All arrays are dense row-major. Defaults: eta = lambda = 0.1 (the CRATE-MAE encoder uses
 * lambda = 0.5). Backward functions overwrite (do not accumulate) their gradient outputs; any
 * gradient output may be NULL to skip it. workspace: NULL (allocated internally) or a buffer of at
 * least *_workspace_size(...) bytes (any alignment; backward = 0 for the forward's size, 1 for the
 * backward's). The saved tensors of the overcomplete/tied forwards may be NULL for inference.
 * Outputs must not alias inputs. Errors: CRATE_ERR_INVALID_ARGUMENT (T < 0, d, m < 1, NULL
 * pointers), CRATE_ERR_OUT_OF_MEMORY.
 */
#ifndef CRATE_ISTA_H
#define CRATE_ISTA_H
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "crate/crate.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CRATE ISTA: Y (T, d), W (d, d) -> Z (T, d). */
CRATE_API size_t crate_ista_workspace_size(crate_dtype dtype, int64_t T, int64_t d, int backward);
CRATE_API crate_status crate_ista_forward_f32(const float* Y, const float* W, float* Z, int64_t T, int64_t d, float eta,
                                              float lambd, void* workspace);
CRATE_API crate_status crate_ista_forward_f64(const double* Y, const double* W, double* Z, int64_t T, int64_t d,
                                              double eta, double lambd, void* workspace);
/* Y (T, d), W (d, d), Z (T, d) = forward output (ReLU mask Z > 0), dZ (T, d) -> dY (T, d), dW (d, d). */
CRATE_API crate_status crate_ista_backward_f32(const float* Y, const float* W, const float* Z, const float* dZ,
                                               float* dY, float* dW, int64_t T, int64_t d, float eta, void* workspace);
CRATE_API crate_status crate_ista_backward_f64(const double* Y, const double* W, const double* Z, const double* dZ,
                                               double* dY, double* dW, int64_t T, int64_t d, double eta,
                                               void* workspace);

/* ---- CRATE-alpha overcomplete: Y (T, d), D (d, m), D1 (d, m) -> out (T, d).
 * Saved for the backward (each may be NULL): A1 (T, m) first iterate, A2 (T, m) second iterate,
 * R (T, d) = A1 D^T - Y. */
CRATE_API size_t crate_ista_overcomplete_workspace_size(crate_dtype dtype, int64_t T, int64_t d, int64_t m,
                                                        int backward);
CRATE_API crate_status crate_ista_overcomplete_forward_f32(const float* Y, const float* D, const float* D1, float* out,
                                                           float* A1, float* A2, float* R, int64_t T, int64_t d,
                                                           int64_t m, float eta, float lambd, void* workspace);
CRATE_API crate_status crate_ista_overcomplete_forward_f64(const double* Y, const double* D, const double* D1,
                                                           double* out, double* A1, double* A2, double* R, int64_t T,
                                                           int64_t d, int64_t m, double eta, double lambd,
                                                           void* workspace);
/* dOut (T, d) -> dY (T, d), dD (d, m), dD1 (d, m). */
CRATE_API crate_status crate_ista_overcomplete_backward_f32(const float* Y, const float* D, const float* D1,
                                                            const float* A1, const float* A2, const float* R,
                                                            const float* dOut, float* dY, float* dD, float* dD1,
                                                            int64_t T, int64_t d, int64_t m, float eta,
                                                            void* workspace);
CRATE_API crate_status crate_ista_overcomplete_backward_f64(const double* Y, const double* D, const double* D1,
                                                            const double* A1, const double* A2, const double* R,
                                                            const double* dOut, double* dY, double* dD, double* dD1,
                                                            int64_t T, int64_t d, int64_t m, double eta,
                                                            void* workspace);

/* ---- CRATE-GPT tied: Y (T, d), W (m, d) -> out (T, d).
 * Saved for the backward (each may be NULL): A0 (T, m) first iterate, A1 (T, m) second iterate,
 * R (T, d) = Y - A0 W. */
CRATE_API size_t crate_ista_tied_workspace_size(crate_dtype dtype, int64_t T, int64_t d, int64_t m, int backward);
CRATE_API crate_status crate_ista_tied_forward_f32(const float* Y, const float* W, float* out, float* A0, float* A1,
                                                   float* R, int64_t T, int64_t d, int64_t m, float eta, float lambd,
                                                   void* workspace);
CRATE_API crate_status crate_ista_tied_forward_f64(const double* Y, const double* W, double* out, double* A0,
                                                   double* A1, double* R, int64_t T, int64_t d, int64_t m, double eta,
                                                   double lambd, void* workspace);
/* dOut (T, d) -> dY (T, d), dW (m, d). */
CRATE_API crate_status crate_ista_tied_backward_f32(const float* Y, const float* W, const float* A0, const float* A1,
                                                    const float* R, const float* dOut, float* dY, float* dW, int64_t T,
                                                    int64_t d, int64_t m, float eta, void* workspace);
CRATE_API crate_status crate_ista_tied_backward_f64(const double* Y, const double* W, const double* A0,
                                                    const double* A1, const double* R, const double* dOut, double* dY,
                                                    double* dW, int64_t T, int64_t d, int64_t m, double eta,
                                                    void* workspace);

#ifdef __cplusplus
}
#endif

#endif /* CRATE_ISTA_H */
