/* test_rate_tssa.c: plain C99 check of the coding-rate (log-det) and TSSA C ABI against naive
 * double-precision references written here, plus central finite differences for every gradient,
 * error statuses and messages.
 *
 * Build and run (from the repository root):
 *   cmake -S . -B /tmp/build-rt -DCRATE_CUDA=OFF && cmake --build /tmp/build-rt --target crate -j2
 *   gcc -std=c99 -O1 -Inative/include test/c/test_rate_tssa.c -L/tmp/build-rt/Release -lcrate -lm \
 *       -Wl,-rpath,/tmp/build-rt/Release -o /tmp/test_rt && /tmp/test_rt
 * Exit status 0 when every check passes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crate/crate.h"

static int g_checks = 0, g_fail = 0;
#define CHECK(cond, ...)                                   \
  do {                                                     \
    ++g_checks;                                            \
    if (!(cond)) {                                         \
      ++g_fail;                                            \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);          \
      printf(__VA_ARGS__);                                 \
      printf("\n");                                        \
    }                                                      \
  } while (0)

/* ---- helpers --------------------------------------------------------------------------------- */

static unsigned long long g_rng = 0x9E3779B97F4A7C15ULL;
static double urand(void) { /* uniform in [0, 1) */
  g_rng ^= g_rng >> 12;
  g_rng ^= g_rng << 25;
  g_rng ^= g_rng >> 27;
  return (double)((g_rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}
static double nrand(void) {
  double u = urand(), v = urand();
  if (u < 1e-300) u = 1e-300;
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
static double* dalloc(size_t n) {
  double* p = (double*)calloc(n ? n : 1, sizeof(double));
  if (!p) {
    printf("out of memory\n");
    exit(2);
  }
  return p;
}
static float* falloc(size_t n) {
  float* p = (float*)calloc(n ? n : 1, sizeof(float));
  if (!p) {
    printf("out of memory\n");
    exit(2);
  }
  return p;
}
static void fill_normal(double* x, size_t n, double scale) {
  size_t i;
  for (i = 0; i < n; ++i) x[i] = scale * nrand();
}
static void to_f32(const double* x, float* y, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) y[i] = (float)x[i];
}
static void f32_to_f64(const float* x, double* y, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) y[i] = (double)x[i];
}
/* max |a-b| / (max |b| + tiny) */
static double rel_err(const double* a, const double* b, size_t n) {
  double num = 0, den = 0;
  size_t i;
  for (i = 0; i < n; ++i) {
    double d = fabs(a[i] - b[i]);
    if (d != d) return INFINITY;
    if (d > num) num = d;
    if (fabs(b[i]) > den) den = fabs(b[i]);
  }
  return num / (den + 1e-300);
}
static double rel_err_f(const float* a, const double* b, size_t n) {
  double num = 0, den = 0;
  size_t i;
  for (i = 0; i < n; ++i) {
    double d = fabs((double)a[i] - b[i]);
    if (d != d) return INFINITY;
    if (d > num) num = d;
    if (fabs(b[i]) > den) den = fabs(b[i]);
  }
  return num / (den + 1e-300);
}
static int all_finite(const double* x, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i)
    if (!(x[i] - x[i] == 0)) return 0;
  return 1;
}

/* ---- naive references: log-det ------------------------------------------------------------------ */

/* log|det A| by Gaussian elimination with partial pivoting (A n×n, destroyed). */
static double ref_logdet(double* A, int n) {
  double acc = 0;
  int i, j, k;
  for (k = 0; k < n; ++k) {
    int piv = k;
    for (i = k + 1; i < n; ++i)
      if (fabs(A[i * n + k]) > fabs(A[piv * n + k])) piv = i;
    if (piv != k)
      for (j = 0; j < n; ++j) {
        double t = A[k * n + j];
        A[k * n + j] = A[piv * n + j];
        A[piv * n + j] = t;
      }
    acc += log(fabs(A[k * n + k]));
    for (i = k + 1; i < n; ++i) {
      double f = A[i * n + k] / A[k * n + k];
      for (j = k; j < n; ++j) A[i * n + j] -= f * A[k * n + j];
    }
  }
  return acc;
}
/* Solve A X = Bm in place (A n×n destroyed, Bm n×r). */
static void ref_solve(double* A, double* Bm, int n, int r) {
  int i, j, k;
  for (k = 0; k < n; ++k) {
    int piv = k;
    for (i = k + 1; i < n; ++i)
      if (fabs(A[i * n + k]) > fabs(A[piv * n + k])) piv = i;
    if (piv != k) {
      for (j = 0; j < n; ++j) {
        double t = A[k * n + j];
        A[k * n + j] = A[piv * n + j];
        A[piv * n + j] = t;
      }
      for (j = 0; j < r; ++j) {
        double t = Bm[k * r + j];
        Bm[k * r + j] = Bm[piv * r + j];
        Bm[piv * r + j] = t;
      }
    }
    for (i = k + 1; i < n; ++i) {
      double f = A[i * n + k] / A[k * n + k];
      for (j = k; j < n; ++j) A[i * n + j] -= f * A[k * n + j];
      for (j = 0; j < r; ++j) Bm[i * r + j] -= f * Bm[k * r + j];
    }
  }
  for (k = n - 1; k >= 0; --k) {
    for (j = 0; j < r; ++j) {
      double v = Bm[k * r + j];
      for (i = k + 1; i < n; ++i) v -= A[k * n + i] * Bm[i * r + j];
      Bm[k * r + j] = v / A[k * n + k];
    }
  }
}
/* ½ logdet(I + α Z Zᵀ) on the m side (side 0) or ½ logdet(I + α Zᵀ Z) on the n side (side 1). */
static double ref_rate(const double* Z, int m, int n, double alpha, int side) {
  int k = side ? n : m, i, j, s;
  double* A = dalloc((size_t)k * k);
  double r;
  for (i = 0; i < k; ++i)
    for (j = 0; j < k; ++j) {
      double acc = 0;
      if (!side)
        for (s = 0; s < n; ++s) acc += Z[i * n + s] * Z[j * n + s];
      else
        for (s = 0; s < m; ++s) acc += Z[s * n + i] * Z[s * n + j];
      A[i * k + j] = alpha * acc + (i == j ? 1.0 : 0.0);
    }
  r = 0.5 * ref_logdet(A, k);
  free(A);
  return r;
}
/* dZ = g α (I_m + α Z Zᵀ)⁻¹ Z, with the explicit m×m system. */
static void ref_rate_grad(const double* Z, int m, int n, double alpha, double g, double* dZ) {
  double* A = dalloc((size_t)m * m);
  int i, j, s;
  for (i = 0; i < m; ++i)
    for (j = 0; j < m; ++j) {
      double acc = 0;
      for (s = 0; s < n; ++s) acc += Z[i * n + s] * Z[j * n + s];
      A[i * m + j] = alpha * acc + (i == j ? 1.0 : 0.0);
    }
  memcpy(dZ, Z, sizeof(double) * (size_t)m * n);
  ref_solve(A, dZ, m, n);
  for (i = 0; i < m * n; ++i) dZ[i] *= g * alpha;
  free(A);
}

/* ---- naive references: TSSA --------------------------------------------------------------------- */

/* Vision TSSA, direct loops, everything in double. Pi (B,H,N), cn (B,D), ms (B,D) nullable. */
static void ref_tssa(const double* W, const double* temp, double* Y, double* Pi_out, double* cn_out, double* m_out,
                     int B, int N, int H, int p) {
  int D = H * p, b, h, n, i;
  double* lg = dalloc((size_t)H * N);
  double* nu = dalloc((size_t)D);
  for (b = 0; b < B; ++b) {
    const double* Wb = W + (size_t)b * N * D;
    for (i = 0; i < D; ++i) {
      double acc = 0;
      for (n = 0; n < N; ++n) acc += Wb[n * D + i] * Wb[n * D + i];
      if (cn_out) cn_out[b * D + i] = sqrt(acc);
      nu[i] = sqrt(acc) > 1e-12 ? sqrt(acc) : 1e-12;
    }
    for (h = 0; h < H; ++h)
      for (n = 0; n < N; ++n) {
        double acc = 0;
        for (i = 0; i < p; ++i) {
          double wn = Wb[n * D + h * p + i] / nu[h * p + i];
          acc += wn * wn;
        }
        lg[h * N + n] = temp[h] * acc;
      }
    for (n = 0; n < N; ++n) {
      double mx = -1e300, sum = 0;
      for (h = 0; h < H; ++h)
        if (lg[h * N + n] > mx) mx = lg[h * N + n];
      for (h = 0; h < H; ++h) sum += exp(lg[h * N + n] - mx);
      for (h = 0; h < H; ++h) lg[h * N + n] = exp(lg[h * N + n] - mx) / sum;
    }
    for (h = 0; h < H; ++h) {
      double S = 0;
      for (n = 0; n < N; ++n) S += lg[h * N + n];
      for (i = 0; i < p; ++i) {
        double mm = 0, g;
        for (n = 0; n < N; ++n) {
          double w = Wb[n * D + h * p + i];
          mm += lg[h * N + n] / (S + 1e-8) * w * w;
        }
        if (m_out) m_out[b * D + h * p + i] = mm;
        g = 1.0 / (1.0 + mm);
        for (n = 0; n < N; ++n) Y[(size_t)b * N * D + n * D + h * p + i] = -Wb[n * D + h * p + i] * lg[h * N + n] * g;
      }
      if (Pi_out)
        for (n = 0; n < N; ++n) Pi_out[(b * H + h) * N + n] = lg[h * N + n];
    }
  }
  free(lg);
  free(nu);
}

/* Causal TSSA, direct loops with explicit (quadratic) prefix sums. bias (H, Tmax). */
static void ref_tssa_causal(const double* W, const double* temp, const double* bias, double* Y, int B, int T, int H,
                            int p, int Tmax) {
  int D = H * p, b, h, t, s, i;
  double* Pi = dalloc((size_t)H * T);
  for (b = 0; b < B; ++b) {
    const double* Wb = W + (size_t)b * T * D;
    for (t = 0; t < T; ++t) {
      double mx = -1e300, sum = 0;
      for (h = 0; h < H; ++h) {
        double acc = 0;
        for (i = 0; i < p; ++i) {
          int c = h * p + i;
          double cs = 0, w = Wb[t * D + c];
          for (s = 0; s <= t; ++s) cs += Wb[s * D + c] * Wb[s * D + c];
          if (cs < 1e-12) cs = 1e-12;
          acc += w * w / cs + bias[h * Tmax + t]; /* bias broadcast over the p features */
        }
        Pi[h * T + t] = temp[h] * acc;
        if (Pi[h * T + t] > mx) mx = Pi[h * T + t];
      }
      for (h = 0; h < H; ++h) sum += exp(Pi[h * T + t] - mx);
      for (h = 0; h < H; ++h) Pi[h * T + t] = exp(Pi[h * T + t] - mx) / sum;
    }
    for (h = 0; h < H; ++h)
      for (t = 0; t < T; ++t) {
        double P = 0;
        for (s = 0; s <= t; ++s) P += Pi[h * T + s];
        for (i = 0; i < p; ++i) {
          int c = h * p + i;
          double num = 0, m;
          for (s = 0; s <= t; ++s) num += Wb[s * D + c] * Wb[s * D + c] * Pi[h * T + s];
          m = num / (P + 1e-8);
          Y[(size_t)b * T * D + t * D + c] = -Wb[t * D + c] * Pi[h * T + t] / (1.0 + m);
        }
      }
  }
  free(Pi);
}

static double dotv(const double* a, const double* b, size_t n) {
  double acc = 0;
  size_t i;
  for (i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

/* ---- coding-rate tests -------------------------------------------------------------------------- */

static double loss_rate(const double* Z, const double* alpha, const double* dR, int batch, int m, int n) {
  double* R = dalloc((size_t)batch);
  double acc;
  crate_status s = crate_logdet_gram_forward_f64(Z, alpha, R, batch, m, n, NULL);
  CHECK(s == CRATE_OK, "forward in FD: %s", crate_last_error());
  acc = dotv(R, dR, (size_t)batch);
  free(R);
  return acc;
}

static void test_rate_shape(int batch, int m, int n, double zscale, int fd) {
  size_t mn = (size_t)m * n, tot = (size_t)batch * mn, k = (size_t)(m < n ? m : n);
  double *Z = dalloc(tot), *alpha = dalloc((size_t)batch), *R = dalloc((size_t)batch), *dR = dalloc((size_t)batch);
  double *dZ = dalloc(tot), *dZ2 = dalloc(tot), *ref = dalloc(tot), *chol = dalloc((size_t)batch * k * k);
  double *Zr = dalloc(tot), *Rr = dalloc((size_t)batch);
  float *Zf = falloc(tot), *af = falloc((size_t)batch), *Rf = falloc((size_t)batch), *dRf = falloc((size_t)batch);
  float* dZf = falloc(tot);
  double e_r = 0, e_syl = 0, e_g, e_gc, e_rf, e_gf;
  int b;
  crate_status s;
  fill_normal(Z, tot, zscale);
  for (b = 0; b < batch; ++b) {
    alpha[b] = 0.1 + 2.0 * urand();
    dR[b] = nrand();
  }
  CHECK(crate_logdet_gram_chol_size(batch, m, n) == (size_t)batch * k * k * sizeof(double), "chol size");
  s = crate_logdet_gram_forward_f64(Z, alpha, R, batch, m, n, chol);
  CHECK(s == CRATE_OK, "logdet fwd f64 %dx%dx%d: %s", batch, m, n, crate_last_error());
  for (b = 0; b < batch; ++b) {
    double r0 = ref_rate(Z + b * mn, m, n, alpha[b], 0), r1 = ref_rate(Z + b * mn, m, n, alpha[b], 1);
    double d0 = fabs(R[b] - r0) / (fabs(r0) + 1e-300), d1 = fabs(r0 - r1) / (fabs(r0) + 1e-300);
    if (d0 > e_r) e_r = d0;
    if (d1 > e_syl) e_syl = d1;
    ref_rate_grad(Z + b * mn, m, n, alpha[b], dR[b], ref + b * mn);
  }
  CHECK(e_r < 1e-10, "logdet f64 %dx%dx%d: rel err %.3g vs Gaussian elimination", batch, m, n, e_r);
  CHECK(e_syl < 1e-10, "reference Sylvester m-side vs n-side %.3g", e_syl);
  s = crate_logdet_gram_backward_f64(Z, alpha, dR, dZ, batch, m, n, NULL);
  CHECK(s == CRATE_OK, "logdet bwd f64: %s", crate_last_error());
  s = crate_logdet_gram_backward_f64(Z, alpha, dR, dZ2, batch, m, n, chol);
  CHECK(s == CRATE_OK, "logdet bwd f64 (chol): %s", crate_last_error());
  e_g = rel_err(dZ, ref, tot);
  e_gc = rel_err(dZ2, dZ, tot);
  CHECK(e_g < 1e-9, "logdet grad f64 %dx%dx%d: rel err %.3g vs explicit solve", batch, m, n, e_g);
  CHECK(e_gc < 1e-13, "logdet grad with saved chol vs recompute: %.3g", e_gc);

  /* f32 against the f64 reference on the same (rounded) inputs */
  to_f32(Z, Zf, tot);
  to_f32(alpha, af, (size_t)batch);
  to_f32(dR, dRf, (size_t)batch);
  f32_to_f64(Zf, Zr, tot);
  for (b = 0; b < batch; ++b) Rr[b] = ref_rate(Zr + b * mn, m, n, (double)af[b], 0);
  s = crate_logdet_gram_forward_f32(Zf, af, Rf, batch, m, n, NULL);
  CHECK(s == CRATE_OK, "logdet fwd f32: %s", crate_last_error());
  e_rf = 0;
  for (b = 0; b < batch; ++b) {
    double d = fabs((double)Rf[b] - Rr[b]) / (fabs(Rr[b]) + 1e-300);
    if (d > e_rf) e_rf = d;
  }
  CHECK(e_rf < 1e-6, "logdet f32 %dx%dx%d: rel err %.3g vs f64 reference", batch, m, n, e_rf);
  for (b = 0; b < batch; ++b) ref_rate_grad(Zr + b * mn, m, n, (double)af[b], (double)dRf[b], ref + b * mn);
  s = crate_logdet_gram_backward_f32(Zf, af, dRf, dZf, batch, m, n, NULL);
  CHECK(s == CRATE_OK, "logdet bwd f32: %s", crate_last_error());
  e_gf = rel_err_f(dZf, ref, tot);
  CHECK(e_gf < 1e-6, "logdet grad f32 %dx%dx%d: rel err %.3g vs f64 reference", batch, m, n, e_gf);

  if (fd) {
    size_t i;
    double worst = 0, gmax = 1e-8;
    for (i = 0; i < tot; ++i) {
      double keep = Z[i], h = 1e-6, lp, lm, num, err;
      Z[i] = keep + h;
      lp = loss_rate(Z, alpha, dR, batch, m, n);
      Z[i] = keep - h;
      lm = loss_rate(Z, alpha, dR, batch, m, n);
      Z[i] = keep;
      num = (lp - lm) / (2 * h);
      err = fabs(num - dZ[i]);
      if (err > worst) worst = err;
      if (fabs(dZ[i]) > gmax) gmax = fabs(dZ[i]);
    }
    worst /= gmax;
    CHECK(worst < 1e-6, "logdet FD %dx%dx%d: worst rel err %.3g", batch, m, n, worst);
  }
  printf("  logdet %3dx%3dx%3d: R f64 %.1e, dZ f64 %.1e, R f32 %.1e, dZ f32 %.1e%s\n", batch, m, n, e_r, e_g, e_rf,
         e_gf, fd ? ", FD ok" : "");
  free(Z), free(alpha), free(R), free(dR), free(dZ), free(dZ2), free(ref), free(chol), free(Zr), free(Rr);
  free(Zf), free(af), free(Rf), free(dRf), free(dZf);
}

static void test_rate_heads(int B, int N, int H, int p) {
  int D = H * p, b, h, n, i;
  size_t tot = (size_t)B * N * D;
  double *X = dalloc(tot), *alpha = dalloc((size_t)B * H), *R = dalloc((size_t)B * H), *dR = dalloc((size_t)B * H);
  double *dX = dalloc(tot), *dXc = dalloc(tot), *Zb = dalloc((size_t)N * p), *dZb = dalloc((size_t)N * p);
  size_t k = (size_t)(N < p ? N : p);
  double* chol = dalloc((size_t)B * H * k * k);
  double worst_r = 0, worst_g = 0;
  fill_normal(X, tot, 0.3);
  for (i = 0; i < B * H; ++i) {
    alpha[i] = (double)p / (N * 0.01) * (0.5 + urand()); /* the authors' p/(N·eps) scale */
    dR[i] = nrand();
  }
  CHECK(crate_logdet_gram_heads_forward_f64(X, alpha, R, B, N, H, p, chol) == CRATE_OK, "heads fwd: %s",
        crate_last_error());
  CHECK(crate_logdet_gram_heads_backward_f64(X, alpha, dR, dX, B, N, H, p, NULL) == CRATE_OK, "heads bwd: %s",
        crate_last_error());
  CHECK(crate_logdet_gram_heads_backward_f64(X, alpha, dR, dXc, B, N, H, p, chol) == CRATE_OK, "heads bwd chol: %s",
        crate_last_error());
  CHECK(rel_err(dXc, dX, tot) < 1e-13, "heads bwd chol vs recompute");
  for (b = 0; b < B; ++b)
    for (h = 0; h < H; ++h) {
      double r, e;
      for (n = 0; n < N; ++n)
        for (i = 0; i < p; ++i) Zb[n * p + i] = X[(size_t)b * N * D + n * D + h * p + i];
      r = ref_rate(Zb, N, p, alpha[b * H + h], 1);
      e = fabs(r - R[b * H + h]) / fabs(r);
      if (e > worst_r) worst_r = e;
      ref_rate_grad(Zb, N, p, alpha[b * H + h], dR[b * H + h], dZb);
      for (n = 0; n < N; ++n)
        for (i = 0; i < p; ++i) Zb[n * p + i] = dX[(size_t)b * N * D + n * D + h * p + i];
      e = rel_err(Zb, dZb, (size_t)N * p);
      if (e > worst_g) worst_g = e;
    }
  CHECK(worst_r < 1e-10 && worst_g < 1e-8, "heads (%d,%d,%d,%d): R %.3g dX %.3g", B, N, H, p, worst_r, worst_g);
  printf("  logdet heads B=%d N=%d H=%d p=%d: R %.1e, dX %.1e\n", B, N, H, p, worst_r, worst_g);
  free(X), free(alpha), free(R), free(dR), free(dX), free(dXc), free(Zb), free(dZb), free(chol);
}

static void test_rate_errors(void) {
  double Z[2 * 3 * 4], alpha[2] = {1.0, 0.5}, R[2], dR[2] = {1, 1}, dZ[24];
  float Zf[24], af[2] = {1.0f, 0.5f}, Rf[2];
  crate_status s;
  int i;
  for (i = 0; i < 24; ++i) Z[i] = 0.1 * (i % 5) - 0.2;
  Z[12 + 5] = NAN;
  s = crate_logdet_gram_forward_f64(Z, alpha, R, 2, 3, 4, NULL);
  CHECK(s == CRATE_ERR_NUMERICAL && strstr(crate_last_error(), "Z[1]") && strstr(crate_last_error(), "NaN"),
        "NaN in Z[1]: status %d, message '%s'", (int)s, crate_last_error());
  printf("  NaN message: %s\n", crate_last_error());
  s = crate_logdet_gram_backward_f64(Z, alpha, dR, dZ, 2, 3, 4, NULL);
  CHECK(s == CRATE_ERR_NUMERICAL, "NaN in Z backward: %d", (int)s);
  Z[12 + 5] = INFINITY;
  s = crate_logdet_gram_forward_f64(Z, alpha, R, 2, 4, 3, NULL);
  CHECK(s == CRATE_ERR_NUMERICAL && strstr(crate_last_error(), "Inf"), "Inf in Z: '%s'", crate_last_error());
  to_f32(Z, Zf, 24);
  s = crate_logdet_gram_forward_f32(Zf, af, Rf, 2, 3, 4, NULL);
  CHECK(s == CRATE_ERR_NUMERICAL, "Inf in Z f32: %d", (int)s);
  Z[12 + 5] = 0.3;
  alpha[1] = -1.0;
  s = crate_logdet_gram_forward_f64(Z, alpha, R, 2, 3, 4, NULL);
  CHECK(s == CRATE_ERR_INVALID_ARGUMENT && strstr(crate_last_error(), "alpha[1]"), "alpha<0: %d '%s'", (int)s,
        crate_last_error());
  alpha[1] = NAN;
  s = crate_logdet_gram_forward_f64(Z, alpha, R, 2, 3, 4, NULL);
  CHECK(s == CRATE_ERR_NUMERICAL, "alpha NaN: %d", (int)s);
  alpha[1] = 0.5;
  dR[0] = NAN;
  s = crate_logdet_gram_backward_f64(Z, alpha, dR, dZ, 2, 3, 4, NULL);
  CHECK(s == CRATE_ERR_NUMERICAL && strstr(crate_last_error(), "dR[0]"), "dR NaN: '%s'", crate_last_error());
  dR[0] = 1;
  s = crate_logdet_gram_forward_f64(NULL, alpha, R, 2, 3, 4, NULL);
  CHECK(s == CRATE_ERR_INVALID_ARGUMENT && strstr(crate_last_error(), "Z"), "NULL Z: %d", (int)s);
  printf("  bad-argument message: %s\n", crate_last_error());
  s = crate_logdet_gram_forward_f64(Z, alpha, R, 2, -3, 4, NULL);
  CHECK(s == CRATE_ERR_INVALID_ARGUMENT, "negative m: %d", (int)s);
  CHECK(crate_logdet_gram_chol_size(-1, 2, 2) == 0, "chol size of invalid sizes");
  for (i = 0; i < 24; ++i) Z[i] = 1e200; /* the Gram overflows to Inf: pivot check */
  s = crate_logdet_gram_forward_f64(Z, alpha, R, 2, 3, 4, NULL);
  CHECK(s == CRATE_ERR_NUMERICAL && strstr(crate_last_error(), "not positive definite"), "overflow: %d '%s'", (int)s,
        crate_last_error());
  printf("  overflow message: %s\n", crate_last_error());
  /* empty shapes are fine: R = 0 */
  R[0] = R[1] = 7;
  s = crate_logdet_gram_forward_f64(Z, alpha, R, 2, 0, 4, NULL);
  CHECK(s == CRATE_OK && R[0] == 0 && R[1] == 0, "m = 0 gives R = 0");
}

/* ---- TSSA tests --------------------------------------------------------------------------------- */

static double loss_tssa(const double* W, const double* temp, const double* dY, int B, int N, int H, int p) {
  size_t tot = (size_t)B * N * H * p;
  double* Y = dalloc(tot);
  double acc;
  CHECK(crate_tssa_forward_f64(W, temp, Y, NULL, NULL, NULL, B, N, H, p) == CRATE_OK, "tssa fwd in FD: %s",
        crate_last_error());
  acc = dotv(Y, dY, tot);
  free(Y);
  return acc;
}

static void test_tssa_shape(int B, int N, int H, int p) {
  int D = H * p, h;
  size_t tot = (size_t)B * N * D, i;
  double *W = dalloc(tot), *temp = dalloc((size_t)H), *Y = dalloc(tot), *Yr = dalloc(tot), *dY = dalloc(tot);
  double *Pi = dalloc((size_t)B * H * N), *cn = dalloc((size_t)B * D), *ms = dalloc((size_t)B * D);
  double *Pir = dalloc((size_t)B * H * N), *cnr = dalloc((size_t)B * D), *msr = dalloc((size_t)B * D);
  double *dW = dalloc(tot), *dW2 = dalloc(tot), *dtemp = dalloc((size_t)H), *dtemp2 = dalloc((size_t)H);
  float *Wf = falloc(tot), *tf = falloc((size_t)H), *Yf = falloc(tot), *dYf = falloc(tot), *dWf = falloc(tot);
  float *Pif = falloc((size_t)B * H * N), *cnf = falloc((size_t)B * D), *msf = falloc((size_t)B * D);
  float* dtf = falloc((size_t)H);
  double *Wr = dalloc(tot), *tr = dalloc((size_t)H), *dWr = dalloc(tot);
  size_t wsz = crate_tssa_backward_workspace_size(B, N, H, p);
  void* ws = malloc(wsz ? wsz : 1);
  /* FD errors are normwise: max |fd - analytic| / max |analytic|, the parameter gradients with a
   1e-3 floor (below it the FD round-off of ~1e-10 dominates) */
  double e_y, e_s, e_g, e_yf, e_gf, worst = 0, worst_t = 0, worst_max = 1e-8, worst_t_max = 1e-3;
  crate_status s;
  fill_normal(W, tot, 1.0);
  fill_normal(dY, tot, 1.0);
  for (h = 0; h < H; ++h) temp[h] = 0.5 + 1.5 * urand();

  ref_tssa(W, temp, Yr, Pir, cnr, msr, B, N, H, p);
  s = crate_tssa_forward_f64(W, temp, Y, Pi, cn, ms, B, N, H, p);
  CHECK(s == CRATE_OK, "tssa fwd f64: %s", crate_last_error());
  e_y = rel_err(Y, Yr, tot);
  e_s = rel_err(Pi, Pir, (size_t)B * H * N);
  if (rel_err(cn, cnr, (size_t)B * D) > e_s) e_s = rel_err(cn, cnr, (size_t)B * D);
  if (rel_err(ms, msr, (size_t)B * D) > e_s) e_s = rel_err(ms, msr, (size_t)B * D);
  CHECK(e_y < 1e-12 && e_s < 1e-12, "tssa f64 (B%d N%d H%d p%d): Y %.3g saved %.3g", B, N, H, p, e_y, e_s);

  s = crate_tssa_backward_f64(W, temp, dY, Pi, cn, ms, dW, dtemp, B, N, H, p, ws);
  CHECK(s == CRATE_OK, "tssa bwd f64: %s", crate_last_error());
  s = crate_tssa_backward_f64(W, temp, dY, NULL, NULL, NULL, dW2, dtemp2, B, N, H, p, NULL);
  CHECK(s == CRATE_OK, "tssa bwd f64 (recompute): %s", crate_last_error());
  CHECK(rel_err(dW2, dW, tot) < 1e-13 && rel_err(dtemp2, dtemp, (size_t)H) < 1e-13, "tssa bwd saved vs recompute");
  /* finite differences over every W element and temp */
  for (i = 0; i < tot; ++i) {
    double keep = W[i], hh = 1e-6, num, err;
    W[i] = keep + hh;
    num = loss_tssa(W, temp, dY, B, N, H, p);
    W[i] = keep - hh;
    num -= loss_tssa(W, temp, dY, B, N, H, p);
    W[i] = keep;
    num /= 2 * hh;
    err = fabs(num - dW[i]);
    if (err > worst) worst = err;
    if (fabs(dW[i]) > worst_max) worst_max = fabs(dW[i]);
  }
  for (h = 0; h < H; ++h) {
    double keep = temp[h], hh = 1e-6, num, err;
    temp[h] = keep + hh;
    num = loss_tssa(W, temp, dY, B, N, H, p);
    temp[h] = keep - hh;
    num -= loss_tssa(W, temp, dY, B, N, H, p);
    temp[h] = keep;
    num /= 2 * hh;
    err = fabs(num - dtemp[h]);
    if (err > worst_t) worst_t = err;
    if (fabs(dtemp[h]) > worst_t_max) worst_t_max = fabs(dtemp[h]);
  }
  worst /= worst_max;
  worst_t /= worst_t_max;
  e_g = worst > worst_t ? worst : worst_t;
  CHECK(worst < 1e-6 && worst_t < 1e-6, "tssa FD (B%d N%d H%d p%d): dW %.3g dtemp %.3g (max dtemp %.3g)", B, N, H, p, worst, worst_t, worst_t_max);

  /* f32 vs f64 on rounded inputs */
  to_f32(W, Wf, tot);
  to_f32(temp, tf, (size_t)H);
  to_f32(dY, dYf, tot);
  f32_to_f64(Wf, Wr, tot);
  f32_to_f64(tf, tr, (size_t)H);
  ref_tssa(Wr, tr, Yr, NULL, NULL, NULL, B, N, H, p);
  s = crate_tssa_forward_f32(Wf, tf, Yf, Pif, cnf, msf, B, N, H, p);
  CHECK(s == CRATE_OK, "tssa fwd f32: %s", crate_last_error());
  e_yf = rel_err_f(Yf, Yr, tot);
  CHECK(e_yf < 1e-6, "tssa f32 Y rel err %.3g", e_yf);
  {
    double* dYr = dalloc(tot);
    f32_to_f64(dYf, dYr, tot);
    CHECK(crate_tssa_backward_f64(Wr, tr, dYr, NULL, NULL, NULL, dWr, dtemp2, B, N, H, p, NULL) == CRATE_OK, "f64 ref");
    free(dYr);
  }
  s = crate_tssa_backward_f32(Wf, tf, dYf, Pif, cnf, msf, dWf, dtf, B, N, H, p, NULL);
  CHECK(s == CRATE_OK, "tssa bwd f32: %s", crate_last_error());
  e_gf = rel_err_f(dWf, dWr, tot);
  {
    double et = 0;
    for (h = 0; h < H; ++h) {
      double d = fabs((double)dtf[h] - dtemp2[h]) / (fabs(dtemp2[h]) + 1e-3);
      if (d > et) et = d;
    }
    CHECK(e_gf < 1e-5 && et < 1e-4, "tssa f32 grads: dW %.3g dtemp %.3g", e_gf, et);
  }
  printf("  tssa   B=%d N=%2d H=%d p=%d: Y f64 %.1e, saved %.1e, FD %.1e, Y f32 %.1e, dW f32 %.1e\n", B, N, H, p, e_y,
         e_s, e_g, e_yf, e_gf);
  free(W), free(temp), free(Y), free(Yr), free(dY), free(Pi), free(cn), free(ms), free(Pir), free(cnr), free(msr);
  free(dW), free(dW2), free(dtemp), free(dtemp2), free(Wf), free(tf), free(Yf), free(dYf), free(dWf), free(Pif);
  free(cnf), free(msf), free(dtf), free(Wr), free(tr), free(dWr), free(ws);
}

static double loss_causal(const double* W, const double* temp, const double* bias, const double* dY, int B, int T,
                          int H, int p, int Tmax) {
  size_t tot = (size_t)B * T * H * p;
  double* Y = dalloc(tot);
  double acc;
  CHECK(crate_tssa_causal_forward_f64(W, temp, bias, Y, NULL, B, T, H, p, Tmax) == CRATE_OK, "causal fwd in FD: %s",
        crate_last_error());
  acc = dotv(Y, dY, tot);
  free(Y);
  return acc;
}

static void test_causal_shape(int B, int T, int H, int p) {
  int D = H * p, Tmax = T + 3, h;
  size_t tot = (size_t)B * T * D, nb = (size_t)H * Tmax, i;
  double *W = dalloc(tot), *temp = dalloc((size_t)H), *bias = dalloc(nb), *Y = dalloc(tot), *Yr = dalloc(tot);
  double *dY = dalloc(tot), *dW = dalloc(tot), *dW2 = dalloc(tot), *dtemp = dalloc((size_t)H), *db = dalloc(nb);
  double *dtemp2 = dalloc((size_t)H), *db2 = dalloc(nb), *Pi = dalloc((size_t)B * H * T);
  float *Wf = falloc(tot), *tf = falloc((size_t)H), *bf = falloc(nb), *Yf = falloc(tot), *dYf = falloc(tot);
  float *dWf = falloc(tot), *dtf = falloc((size_t)H), *dbf = falloc(nb);
  double *Wr = dalloc(tot), *tr = dalloc((size_t)H), *br = dalloc(nb), *dYr = dalloc(tot);
  size_t wsz = crate_tssa_causal_backward_workspace_size(B, T, H, p);
  void* ws = malloc(wsz ? wsz : 1);
  double e_y, wd = 0, wt = 0, wb = 0, wd_max = 1e-8, wt_max = 1e-3, wb_max = 1e-3, e_yf, e_gf;
  int tail_zero = 1;
  crate_status s;
  fill_normal(W, tot, 1.0);
  fill_normal(dY, tot, 1.0);
  for (h = 0; h < H; ++h) temp[h] = 0.5 + 1.5 * urand();
  fill_normal(bias, nb, 0.1);
  ref_tssa_causal(W, temp, bias, Yr, B, T, H, p, Tmax);
  s = crate_tssa_causal_forward_f64(W, temp, bias, Y, Pi, B, T, H, p, Tmax);
  CHECK(s == CRATE_OK, "causal fwd f64: %s", crate_last_error());
  e_y = rel_err(Y, Yr, tot);
  CHECK(e_y < 1e-12, "causal f64 (B%d T%d H%d p%d): Y %.3g", B, T, H, p, e_y);
  for (i = 0; i < nb; ++i) db[i] = 99; /* must be overwritten, tail zeroed */
  s = crate_tssa_causal_backward_f64(W, temp, bias, dY, dW, dtemp, db, B, T, H, p, Tmax, ws);
  CHECK(s == CRATE_OK, "causal bwd f64: %s", crate_last_error());
  s = crate_tssa_causal_backward_f64(W, temp, bias, dY, dW2, dtemp2, db2, B, T, H, p, Tmax, NULL);
  CHECK(s == CRATE_OK && rel_err(dW2, dW, tot) == 0 && rel_err(db2, db, nb) == 0, "causal ws vs NULL workspace");
  for (h = 0; h < H; ++h)
    for (i = (size_t)T; i < (size_t)Tmax; ++i)
      if (db[h * Tmax + i] != 0) tail_zero = 0;
  CHECK(tail_zero, "ddenom_bias columns >= T must be 0");
  for (i = 0; i < tot; ++i) {
    double keep = W[i], hh = 1e-6, num, err;
    W[i] = keep + hh;
    num = loss_causal(W, temp, bias, dY, B, T, H, p, Tmax);
    W[i] = keep - hh;
    num -= loss_causal(W, temp, bias, dY, B, T, H, p, Tmax);
    W[i] = keep;
    num /= 2 * hh;
    err = fabs(num - dW[i]);
    if (err > wd) wd = err;
    if (fabs(dW[i]) > wd_max) wd_max = fabs(dW[i]);
  }
  for (h = 0; h < H; ++h) {
    double keep = temp[h], hh = 1e-6, num, err;
    temp[h] = keep + hh;
    num = loss_causal(W, temp, bias, dY, B, T, H, p, Tmax);
    temp[h] = keep - hh;
    num -= loss_causal(W, temp, bias, dY, B, T, H, p, Tmax);
    temp[h] = keep;
    num /= 2 * hh;
    err = fabs(num - dtemp[h]);
    if (err > wt) wt = err;
    if (fabs(dtemp[h]) > wt_max) wt_max = fabs(dtemp[h]);
  }
  for (i = 0; i < nb; ++i) {
    double keep = bias[i], hh = 1e-6, num, err;
    bias[i] = keep + hh;
    num = loss_causal(W, temp, bias, dY, B, T, H, p, Tmax);
    bias[i] = keep - hh;
    num -= loss_causal(W, temp, bias, dY, B, T, H, p, Tmax);
    bias[i] = keep;
    num /= 2 * hh;
    err = fabs(num - db[i]);
    if (err > wb) wb = err;
    if (fabs(db[i]) > wb_max) wb_max = fabs(db[i]);
  }
  wd /= wd_max;
  wt /= wt_max;
  wb /= wb_max;
  CHECK(wd < 1e-6 && wt < 1e-6 && wb < 1e-6, "causal FD (B%d T%d H%d p%d): dW %.3g dtemp %.3g dbias %.3g", B, T, H, p,
        wd, wt, wb);
  /* f32 */
  to_f32(W, Wf, tot);
  to_f32(temp, tf, (size_t)H);
  to_f32(bias, bf, nb);
  to_f32(dY, dYf, tot);
  f32_to_f64(Wf, Wr, tot);
  f32_to_f64(tf, tr, (size_t)H);
  f32_to_f64(bf, br, nb);
  f32_to_f64(dYf, dYr, tot);
  ref_tssa_causal(Wr, tr, br, Yr, B, T, H, p, Tmax);
  CHECK(crate_tssa_causal_forward_f32(Wf, tf, bf, Yf, NULL, B, T, H, p, Tmax) == CRATE_OK, "causal f32 fwd: %s",
        crate_last_error());
  e_yf = rel_err_f(Yf, Yr, tot);
  CHECK(crate_tssa_causal_backward_f64(Wr, tr, br, dYr, dW2, dtemp2, db2, B, T, H, p, Tmax, NULL) == CRATE_OK, "ref");
  CHECK(crate_tssa_causal_backward_f32(Wf, tf, bf, dYf, dWf, dtf, dbf, B, T, H, p, Tmax, NULL) == CRATE_OK,
        "causal f32 bwd: %s", crate_last_error());
  e_gf = rel_err_f(dWf, dW2, tot);
  CHECK(e_yf < 1e-6 && e_gf < 1e-5, "causal f32: Y %.3g dW %.3g", e_yf, e_gf);
  printf("  causal B=%d T=%3d H=%d p=%d: Y f64 %.1e, FD dW %.1e dtemp %.1e dbias %.1e, Y f32 %.1e, dW f32 %.1e\n", B,
         T, H, p, e_y, wd, wt, wb, e_yf, e_gf);
  free(W), free(temp), free(bias), free(Y), free(Yr), free(dY), free(dW), free(dW2), free(dtemp), free(db);
  free(dtemp2), free(db2), free(Pi), free(Wf), free(tf), free(bf), free(Yf), free(dYf), free(dWf), free(dtf), free(dbf);
  free(Wr), free(tr), free(br), free(dYr), free(ws);
}

static void test_tssa_edge(void) {
  /* a column that is identically zero (norm clamp active), N = 5, H = 2, p = 3 */
  enum { B = 1, N = 5, H = 2, P = 3, D = H * P };
  double W[B * N * D], Y[B * N * D], Yr[B * N * D], dY[B * N * D], dW[B * N * D], temp[H] = {1.0, 0.7}, dt[H];
  double bias[H * 8], db[H * 8];
  float Wf[B * N * D], Yf[B * N * D], tf[H] = {1.0f, 0.7f};
  crate_status s;
  int i;
  fill_normal(W, B * N * D, 1.0);
  fill_normal(dY, B * N * D, 1.0);
  for (i = 0; i < N; ++i) W[i * D + 4] = 0.0;
  ref_tssa(W, temp, Yr, NULL, NULL, NULL, B, N, H, P);
  CHECK(crate_tssa_forward_f64(W, temp, Y, NULL, NULL, NULL, B, N, H, P) == CRATE_OK, "zero column fwd");
  CHECK(rel_err(Y, Yr, B * N * D) < 1e-12, "zero column matches reference");
  CHECK(crate_tssa_backward_f64(W, temp, dY, NULL, NULL, NULL, dW, dt, B, N, H, P, NULL) == CRATE_OK &&
            all_finite(dW, B * N * D) && all_finite(dt, H),
        "zero column bwd finite");
  /* NaN → numerical error naming the element */
  W[2 * D + 3] = NAN;
  s = crate_tssa_forward_f64(W, temp, Y, NULL, NULL, NULL, B, N, H, P);
  CHECK(s == CRATE_ERR_NUMERICAL && strstr(crate_last_error(), "n=2, c=3"), "tssa NaN: %d '%s'", (int)s,
        crate_last_error());
  printf("  tssa NaN message: %s\n", crate_last_error());
  s = crate_tssa_backward_f64(W, temp, dY, NULL, NULL, NULL, dW, dt, B, N, H, P, NULL);
  CHECK(s == CRATE_ERR_NUMERICAL, "tssa bwd NaN: %d", (int)s);
  for (i = 0; i < H * 8; ++i) bias[i] = 0;
  s = crate_tssa_causal_forward_f64(W, temp, bias, Y, NULL, B, N, H, P, 8);
  CHECK(s == CRATE_ERR_NUMERICAL && strstr(crate_last_error(), "t=2, c=3"), "causal NaN: '%s'", crate_last_error());
  s = crate_tssa_causal_backward_f64(W, temp, bias, dY, dW, dt, db, B, N, H, P, 8, NULL);
  CHECK(s == CRATE_ERR_NUMERICAL, "causal bwd NaN: %d", (int)s);
  W[2 * D + 3] = 0.5;
  to_f32(W, Wf, B * N * D);
  Wf[7] = INFINITY;
  s = crate_tssa_forward_f32(Wf, tf, Yf, NULL, NULL, NULL, B, N, H, P);
  CHECK(s == CRATE_ERR_NUMERICAL && strstr(crate_last_error(), "Inf"), "tssa f32 Inf: '%s'", crate_last_error());
  temp[1] = NAN;
  s = crate_tssa_forward_f64(W, temp, Y, NULL, NULL, NULL, B, N, H, P);
  CHECK(s == CRATE_ERR_NUMERICAL && strstr(crate_last_error(), "temp[1]"), "temp NaN: '%s'", crate_last_error());
  temp[1] = 0.7;
  /* bad arguments */
  s = crate_tssa_forward_f64(W, NULL, Y, NULL, NULL, NULL, B, N, H, P);
  CHECK(s == CRATE_ERR_INVALID_ARGUMENT && strstr(crate_last_error(), "temp"), "NULL temp: %d", (int)s);
  s = crate_tssa_forward_f64(W, temp, Y, NULL, NULL, NULL, B, -1, H, P);
  CHECK(s == CRATE_ERR_INVALID_ARGUMENT, "negative N: %d", (int)s);
  s = crate_tssa_causal_forward_f64(W, temp, bias, Y, NULL, B, N, H, P, N - 1);
  CHECK(s == CRATE_ERR_INVALID_ARGUMENT && strstr(crate_last_error(), "Tmax"), "T > Tmax: '%s'", crate_last_error());
  printf("  T > Tmax message: %s\n", crate_last_error());
  s = crate_tssa_causal_backward_f64(W, temp, bias, dY, NULL, dt, db, B, N, H, P, 8, NULL);
  CHECK(s == CRATE_ERR_INVALID_ARGUMENT && strstr(crate_last_error(), "dW"), "NULL dW: %d", (int)s);
  s = crate_tssa_backward_f64(W, temp, dY, NULL, NULL, NULL, dW, dt, B, N, H, P, (char*)dW + 1);
  CHECK(s == CRATE_ERR_INVALID_ARGUMENT, "misaligned workspace: %d", (int)s);
  CHECK(crate_tssa_backward_workspace_size(1, -2, 1, 1) == 0, "workspace size of invalid sizes");
}

int main(void) {
  printf("coding rate (log-det):\n");
  test_rate_shape(3, 5, 9, 1.0, 1);
  test_rate_shape(2, 9, 5, 1.0, 1);
  test_rate_shape(2, 4, 4, 1.0, 1);
  test_rate_shape(2, 1, 6, 1.0, 1);
  test_rate_shape(2, 6, 1, 1.0, 1);
  test_rate_shape(4, 64, 197, 0.3, 0);
  test_rate_shape(2, 197, 64, 0.3, 0);
  test_rate_shape(1, 150, 200, 0.2, 0);
  test_rate_shape(1, 300, 140, 0.2, 0);
  test_rate_shape(1, 256, 256, 0.1, 0);
  test_rate_heads(2, 17, 3, 8);
  test_rate_heads(2, 5, 2, 16);
  test_rate_errors();
  printf("TSSA (vision):\n");
  {
    int Ns[2] = {1, 17}, Hs[2] = {1, 3}, ps[2] = {16, 20}, a, b, c;
    for (a = 0; a < 2; ++a)
      for (b = 0; b < 2; ++b)
        for (c = 0; c < 2; ++c) test_tssa_shape(2, Ns[a], Hs[b], ps[c]);
  }
  printf("TSSA (causal):\n");
  {
    int Ts[2] = {1, 17}, Hs[2] = {1, 3}, ps[2] = {16, 20}, a, b, c;
    for (a = 0; a < 2; ++a)
      for (b = 0; b < 2; ++b)
        for (c = 0; c < 2; ++c) test_causal_shape(2, Ts[a], Hs[b], ps[c]);
    test_causal_shape(2, 130, 2, 3); /* crosses the 64-step recompute chunks */
  }
  printf("edge cases and errors:\n");
  test_tssa_edge();
  printf("%s: %d checks, %d failed\n", g_fail ? "FAILED" : "OK", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
