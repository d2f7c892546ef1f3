/* test_mssa_ista.c: plain C99 test of the MSSA and ISTA-family C ABI (crate/mssa.h, crate/ista.h):
 * f64 and f32 results against naive double loops (full N x N softmax; the unfused three-GEMM ISTA
 * formulas), backward passes against central finite differences in f64, masks (causal, key
 * padding, fully masked rows), workspaces, and error reporting.
 *
 * Build and run (repo root):
 *   cmake -S . -B /tmp/build-mi -DCRATE_CUDA=OFF && cmake --build /tmp/build-mi --target crate -j2
 *   gcc -std=c99 -O1 -Inative/include test/c/test_mssa_ista.c -L/tmp/build-mi/Release -lcrate -lm \
 *       -Wl,-rpath,/tmp/build-mi/Release -o /tmp/test_mi && /tmp/test_mi
 * Exits non-zero on any failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crate/crate.h"

static int g_pass = 0, g_fail = 0;
static unsigned long long g_rng = 0x9E3779B97F4A7C15ULL;

static double urand(void) { /* uniform in [-1, 1) from a 64-bit LCG */
  g_rng = g_rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}

static void check(int ok, const char* what, double err) {
  if (ok) {
    ++g_pass;
  } else {
    ++g_fail;
    printf("FAIL %s (err %.3g)\n", what, err);
  }
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
static void fill(double* x, size_t n, double s) {
  size_t i;
  for (i = 0; i < n; ++i) x[i] = urand() * s;
}
static void to_f32(const double* x, float* y, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) y[i] = (float)x[i];
}
/* max |a - b| / max(max |b|, 1e-300); infinities must match exactly, NaN fails */
static double rel_err_d(const double* a, const double* b, size_t n) {
  double md = 0, mx = 0;
  size_t i;
  for (i = 0; i < n; ++i) {
    if (isnan(a[i]) || isnan(b[i])) return 1e300;
    if (isinf(b[i]) || isinf(a[i])) {
      if (a[i] != b[i]) return 1e300;
      continue;
    }
    if (fabs(b[i]) > mx) mx = fabs(b[i]);
    if (fabs(a[i] - b[i]) > md) md = fabs(a[i] - b[i]);
  }
  return md / (mx > 1e-300 ? mx : 1e-300);
}
static double rel_err_f(const float* a, const double* b, size_t n) {
  double* t = dalloc(n);
  double e;
  size_t i;
  for (i = 0; i < n; ++i) t[i] = a[i];
  e = rel_err_d(t, b, n);
  free(t);
  return e;
}
static int ok_status(crate_status s, const char* fn) {
  if (s != CRATE_OK) {
    printf("FAIL %s returned %d: %s\n", fn, (int)s, crate_last_error());
    ++g_fail;
    return 0;
  }
  return 1;
}

/* ---------------------------------------------------------------------------------------- MSSA */

/* Naive reference: full N x N scores per head. O (B, N, H*p), L (B, H, N). */
static void mssa_ref(const double* P, double* O, double* L, int B, int N, int H, int p, double scale, int causal,
                     const unsigned char* km) {
  int b, h, i, j, k, ld = H * p;
  double* s = dalloc((size_t)N);
  for (b = 0; b < B; ++b)
    for (h = 0; h < H; ++h)
      for (i = 0; i < N; ++i) {
        double mx = -INFINITY, sum = 0;
        for (j = 0; j < N; ++j) {
          int valid = (!causal || j <= i) && (!km || km[b * N + j]);
          s[j] = -INFINITY;
          if (!valid) continue;
          s[j] = 0;
          for (k = 0; k < p; ++k) s[j] += P[((size_t)b * N + i) * ld + h * p + k] * P[((size_t)b * N + j) * ld + h * p + k];
          s[j] *= scale;
          if (s[j] > mx) mx = s[j];
        }
        for (k = 0; k < p; ++k) O[((size_t)b * N + i) * ld + h * p + k] = 0;
        if (mx == -INFINITY) {
          L[((size_t)b * H + h) * N + i] = -INFINITY;
          continue;
        }
        for (j = 0; j < N; ++j) sum += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
        L[((size_t)b * H + h) * N + i] = mx + log(sum);
        for (j = 0; j < N; ++j) {
          double a = s[j] == -INFINITY ? 0 : exp(s[j] - mx) / sum;
          for (k = 0; k < p; ++k) O[((size_t)b * N + i) * ld + h * p + k] += a * P[((size_t)b * N + j) * ld + h * p + k];
        }
      }
  free(s);
}

static double dot(const double* a, const double* b, size_t n) {
  double s = 0;
  size_t i;
  for (i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

/* One MSSA case: forward vs reference (f64, f32), backward vs central differences (f64), f32
 * backward vs f64 backward. */
static void mssa_case(int B, int N, int H, int p, int causal, int maskmode, int do_fd) {
  const size_t n = (size_t)B * N * H * p, nl = (size_t)B * H * N;
  const double scale = 1.0 / sqrt((double)p);
  double *P = dalloc(n), *R = dalloc(n), *O = dalloc(n), *L = dalloc(nl), *Or = dalloc(n), *Lr = dalloc(nl);
  double *dP = dalloc(n), *Ot = dalloc(n);
  float *Pf = falloc(n), *Rf = falloc(n), *Of = falloc(n), *Lf = falloc(nl), *dPf = falloc(n);
  unsigned char* km = (unsigned char*)malloc((size_t)B * N);
  const unsigned char* kmp = NULL;
  char name[200];
  int i;
  fill(P, n, 1.0);
  fill(R, n, 1.0);
  for (i = 0; i < B * N; ++i) km[i] = 1;
  if (maskmode == 1) { /* every third key masked; in the causal case query 0 loses its only key */
    for (i = 0; i < B * N; ++i) km[i] = (unsigned char)(i % 3 != 0);
    kmp = km;
  } else if (maskmode == 2) { /* batch 0: all keys masked (fully masked rows) */
    for (i = 0; i < N; ++i) km[i] = 0;
    kmp = km;
  }
  sprintf(name, "mssa B=%d N=%d H=%d p=%d causal=%d mask=%d", B, N, H, p, causal, maskmode);
  mssa_ref(P, Or, Lr, B, N, H, p, scale, causal, kmp);

  if (ok_status(crate_mssa_forward_f64(P, O, L, B, N, H, p, scale, causal, kmp), "crate_mssa_forward_f64")) {
    char w[260];
    sprintf(w, "%s f64 O", name);
    check(rel_err_d(O, Or, n) < 1e-12, w, rel_err_d(O, Or, n));
    sprintf(w, "%s f64 L", name);
    check(rel_err_d(L, Lr, nl) < 1e-12, w, rel_err_d(L, Lr, nl));
  }
  to_f32(P, Pf, n);
  to_f32(R, Rf, n);
  if (ok_status(crate_mssa_forward_f32(Pf, Of, Lf, B, N, H, p, (float)scale, causal, kmp), "crate_mssa_forward_f32")) {
    char w[260];
    sprintf(w, "%s f32 O", name);
    check(rel_err_f(Of, Or, n) < 1e-5, w, rel_err_f(Of, Or, n));
    sprintf(w, "%s f32 L", name);
    check(rel_err_f(Lf, Lr, nl) < 1e-5, w, rel_err_f(Lf, Lr, nl));
  }
  if (ok_status(crate_mssa_backward_f64(P, O, L, R, dP, B, N, H, p, scale, causal, kmp), "crate_mssa_backward_f64")) {
    char w[260];
    size_t t;
    int finite = 1;
    for (t = 0; t < n; ++t) finite &= isfinite(dP[t]) != 0;
    sprintf(w, "%s f64 dP finite", name);
    check(finite, w, 0);
    if (maskmode == 2) { /* batch 0 is fully masked: zero output and zero gradient */
      double mx = 0;
      for (t = 0; t < n / B; ++t) mx = fmax(mx, fabs(dP[t]) + fabs(O[t]));
      sprintf(w, "%s masked batch has O = 0, dP = 0", name);
      check(mx == 0, w, mx);
    }
    if (do_fd) { /* loss = sum(O o R); d loss / dP by central differences */
      const double hstep = 1e-5;
      double md = 0, mx = 0;
      for (t = 0; t < n; ++t) {
        const double x0 = P[t];
        double lp, lm, fd;
        P[t] = x0 + hstep;
        crate_mssa_forward_f64(P, Ot, NULL, B, N, H, p, scale, causal, kmp);
        lp = dot(Ot, R, n);
        P[t] = x0 - hstep;
        crate_mssa_forward_f64(P, Ot, NULL, B, N, H, p, scale, causal, kmp);
        lm = dot(Ot, R, n);
        P[t] = x0;
        fd = (lp - lm) / (2 * hstep);
        md = fmax(md, fabs(fd - dP[t]));
        mx = fmax(mx, fabs(dP[t]));
      }
      sprintf(w, "%s f64 dP vs finite differences", name);
      check(md <= 1e-7 * fmax(mx, 1.0), w, md / fmax(mx, 1e-300));
    }
  }
  if (ok_status(crate_mssa_backward_f32(Pf, Of, Lf, Rf, dPf, B, N, H, p, (float)scale, causal, kmp),
                "crate_mssa_backward_f32")) {
    char w[260];
    sprintf(w, "%s f32 dP vs f64", name);
    check(rel_err_f(dPf, dP, n) < 2e-5, w, rel_err_f(dPf, dP, n));
  }
  free(P), free(R), free(O), free(L), free(Or), free(Lr), free(dP), free(Ot);
  free(Pf), free(Rf), free(Of), free(Lf), free(dPf), free(km);
}

static void test_mssa(void) {
  int Ns[2] = {1, 17}, ps[2] = {16, 20}, a, c, causal, mask;
  for (a = 0; a < 2; ++a)
    for (c = 0; c < 2; ++c)
      for (causal = 0; causal < 2; ++causal)
        for (mask = 0; mask < 3; ++mask) mssa_case(2, Ns[a], 2, ps[c], causal, mask, 1);
  /* several tiles, padded widths, no finite differences (too slow) */
  mssa_case(2, 130, 3, 64, 0, 0, 0);
  mssa_case(2, 130, 3, 64, 1, 1, 0);
  mssa_case(1, 200, 2, 33, 0, 1, 0);
  mssa_case(1, 67, 1, 64, 1, 0, 0);
}

/* ---------------------------------------------------------------------------------------- ISTA */

/* C (M, N) = op(A) op(B), naive; tA: A stored (K, M); tB: B stored (N, K). */
static void mm(const double* A, const double* B, double* C, int M, int K, int N, int tA, int tB) {
  int i, j, k;
  for (i = 0; i < M; ++i)
    for (j = 0; j < N; ++j) {
      double s = 0;
      for (k = 0; k < K; ++k) s += (tA ? A[k * M + i] : A[i * K + k]) * (tB ? B[j * K + k] : B[k * N + j]);
      C[i * N + j] = s;
    }
}
static double relu(double x) { return x > 0 ? x : 0; }

/* CRATE: Z = ReLU(Y + eta (Y W - Y W^T W) - eta lambda), three separate products. */
static void ista_ref(const double* Y, const double* W, double* Z, int T, int d, double eta, double lam) {
  double *YW = dalloc((size_t)T * d), *YWt = dalloc((size_t)T * d), *YWtW = dalloc((size_t)T * d);
  int i;
  mm(Y, W, YW, T, d, d, 0, 0);
  mm(Y, W, YWt, T, d, d, 0, 1);
  mm(YWt, W, YWtW, T, d, d, 0, 0);
  for (i = 0; i < T * d; ++i) Z[i] = relu(Y[i] + eta * (YW[i] - YWtW[i]) - eta * lam);
  free(YW), free(YWt), free(YWtW);
}
/* CRATE-alpha: A1 = ReLU(eta Y D - eta lam); A2 = ReLU(A1 - eta (A1 D^T - Y) D - eta lam); out = A2 D1^T */
static void over_ref(const double* Y, const double* D, const double* D1, double* out, int T, int d, int m, double eta,
                     double lam) {
  double *A1 = dalloc((size_t)T * m), *R = dalloc((size_t)T * d), *RD = dalloc((size_t)T * m), *A2 = dalloc((size_t)T * m);
  int i;
  mm(Y, D, A1, T, d, m, 0, 0);
  for (i = 0; i < T * m; ++i) A1[i] = relu(eta * A1[i] - eta * lam);
  mm(A1, D, R, T, m, d, 0, 1);
  for (i = 0; i < T * d; ++i) R[i] -= Y[i];
  mm(R, D, RD, T, d, m, 0, 0);
  for (i = 0; i < T * m; ++i) A2[i] = relu(A1[i] - eta * RD[i] - eta * lam);
  mm(A2, D1, out, T, m, d, 0, 1);
  free(A1), free(R), free(RD), free(A2);
}
/* CRATE-GPT: A0 = ReLU(eta Y W^T - eta lam); A1 = ReLU(A0 + eta (Y W^T - A0 W W^T) - eta lam); out = A1 W */
static void tied_ref(const double* Y, const double* W, double* out, int T, int d, int m, double eta, double lam) {
  double *C = dalloc((size_t)T * m), *A0 = dalloc((size_t)T * m), *AW = dalloc((size_t)T * d);
  double *AWWt = dalloc((size_t)T * m), *A1 = dalloc((size_t)T * m);
  int i;
  mm(Y, W, C, T, d, m, 0, 1);
  for (i = 0; i < T * m; ++i) A0[i] = relu(eta * C[i] - eta * lam);
  mm(A0, W, AW, T, m, d, 0, 0);
  mm(AW, W, AWWt, T, d, m, 0, 1);
  for (i = 0; i < T * m; ++i) A1[i] = relu(A0[i] + eta * (C[i] - AWWt[i]) - eta * lam);
  mm(A1, W, out, T, m, d, 0, 0);
  free(C), free(A0), free(AW), free(AWWt), free(A1);
}

/* Central-difference gradient of loss = sum(f(x) o R) w.r.t. x[idx]; f runs the ABI forward (f64). */
typedef double (*loss_fn)(void* ctx);
static double fd_at(double* x, size_t idx, loss_fn f, void* ctx) {
  const double h = 1e-6, x0 = x[idx];
  double lp, lm;
  x[idx] = x0 + h;
  lp = f(ctx);
  x[idx] = x0 - h;
  lm = f(ctx);
  x[idx] = x0;
  return (lp - lm) / (2 * h);
}

typedef struct {
  double *Y, *W, *D, *D1, *R, *out;
  int T, d, m, kind; /* 0 CRATE, 1 overcomplete, 2 tied */
  double eta, lam;
} ista_ctx;

static double ista_loss(void* vctx) {
  ista_ctx* c = (ista_ctx*)vctx;
  if (c->kind == 0)
    crate_ista_forward_f64(c->Y, c->W, c->out, c->T, c->d, c->eta, c->lam, NULL);
  else if (c->kind == 1)
    crate_ista_overcomplete_forward_f64(c->Y, c->D, c->D1, c->out, NULL, NULL, NULL, c->T, c->d, c->m, c->eta, c->lam,
                                        NULL);
  else
    crate_ista_tied_forward_f64(c->Y, c->W, c->out, NULL, NULL, NULL, c->T, c->d, c->m, c->eta, c->lam, NULL);
  return dot(c->out, c->R, (size_t)c->T * c->d);
}

/* max |fd - analytic| over a strided subset, relative to max |analytic| */
static double fd_check(double* x, const double* g, size_t n, size_t stride, ista_ctx* c) {
  double md = 0, mx = 0;
  size_t i;
  for (i = 0; i < n; i += stride) {
    md = fmax(md, fabs(fd_at(x, i, ista_loss, c) - g[i]));
    mx = fmax(mx, fabs(g[i]));
  }
  return md / fmax(mx, 1e-300);
}

static void test_ista_complete(int T, int d, double lam) {
  const double eta = 0.1;
  const size_t nt = (size_t)T * d, nw = (size_t)d * d;
  double *Y = dalloc(nt), *W = dalloc(nw), *Z = dalloc(nt), *Zr = dalloc(nt), *dZ = dalloc(nt), *dY = dalloc(nt),
         *dW = dalloc(nw);
  float *Yf = falloc(nt), *Wf = falloc(nw), *Zf = falloc(nt), *dZf = falloc(nt), *dYf = falloc(nt), *dWf = falloc(nw);
  size_t wsz = crate_ista_workspace_size(CRATE_F64, T, d, 1);
  void* ws = malloc(wsz + 3);
  ista_ctx c;
  fill(Y, nt, 1.0);
  fill(W, nw, 0.3);
  fill(dZ, nt, 1.0);
  ista_ref(Y, W, Zr, T, d, eta, lam);
  if (ok_status(crate_ista_forward_f64(Y, W, Z, T, d, eta, lam, NULL), "crate_ista_forward_f64"))
    check(rel_err_d(Z, Zr, nt) < 1e-12, "ista f64 forward", rel_err_d(Z, Zr, nt));
  to_f32(Y, Yf, nt), to_f32(W, Wf, nw), to_f32(dZ, dZf, nt);
  if (ok_status(crate_ista_forward_f32(Yf, Wf, Zf, T, d, (float)eta, (float)lam, NULL), "crate_ista_forward_f32"))
    check(rel_err_f(Zf, Zr, nt) < 1e-5, "ista f32 forward", rel_err_f(Zf, Zr, nt));
  /* misaligned caller workspace on purpose */
  if (ok_status(crate_ista_backward_f64(Y, W, Z, dZ, dY, dW, T, d, eta, (char*)ws + 3), "crate_ista_backward_f64")) {
    c.Y = Y, c.W = W, c.R = dZ, c.out = Zr, c.T = T, c.d = d, c.m = 0, c.kind = 0, c.eta = eta, c.lam = lam;
    check(fd_check(Y, dY, nt, 1, &c) < 1e-6, "ista f64 dY vs finite differences", fd_check(Y, dY, nt, 1, &c));
    check(fd_check(W, dW, nw, 1, &c) < 1e-6, "ista f64 dW vs finite differences", fd_check(W, dW, nw, 1, &c));
  }
  if (ok_status(crate_ista_backward_f32(Yf, Wf, Zf, dZf, dYf, dWf, T, d, (float)eta, NULL), "crate_ista_backward_f32")) {
    check(rel_err_f(dYf, dY, nt) < 1e-5, "ista f32 dY vs f64", rel_err_f(dYf, dY, nt));
    check(rel_err_f(dWf, dW, nw) < 1e-5, "ista f32 dW vs f64", rel_err_f(dWf, dW, nw));
  }
  free(Y), free(W), free(Z), free(Zr), free(dZ), free(dY), free(dW), free(ws);
  free(Yf), free(Wf), free(Zf), free(dZf), free(dYf), free(dWf);
}

static void test_ista_overcomplete(int T, int d, int m) {
  const double eta = 0.1, lam = 0.1;
  const size_t nt = (size_t)T * d, na = (size_t)T * m, nd = (size_t)d * m;
  double *Y = dalloc(nt), *D = dalloc(nd), *D1 = dalloc(nd), *out = dalloc(nt), *outr = dalloc(nt), *dO = dalloc(nt);
  double *A1 = dalloc(na), *A2 = dalloc(na), *R = dalloc(nt), *dY = dalloc(nt), *dD = dalloc(nd), *dD1 = dalloc(nd);
  float *Yf = falloc(nt), *Df = falloc(nd), *D1f = falloc(nd), *outf = falloc(nt), *dOf = falloc(nt);
  float *A1f = falloc(na), *A2f = falloc(na), *Rf = falloc(nt), *dYf = falloc(nt), *dDf = falloc(nd), *dD1f = falloc(nd);
  void* ws = malloc(crate_ista_overcomplete_workspace_size(CRATE_F64, T, d, m, 1));
  ista_ctx c;
  fill(Y, nt, 1.0);
  fill(D, nd, 0.3);
  fill(D1, nd, 0.3);
  fill(dO, nt, 1.0);
  over_ref(Y, D, D1, outr, T, d, m, eta, lam);
  if (ok_status(crate_ista_overcomplete_forward_f64(Y, D, D1, out, A1, A2, R, T, d, m, eta, lam, NULL),
                "crate_ista_overcomplete_forward_f64"))
    check(rel_err_d(out, outr, nt) < 1e-12, "overcomplete f64 forward", rel_err_d(out, outr, nt));
  to_f32(Y, Yf, nt), to_f32(D, Df, nd), to_f32(D1, D1f, nd), to_f32(dO, dOf, nt);
  if (ok_status(crate_ista_overcomplete_forward_f32(Yf, Df, D1f, outf, A1f, A2f, Rf, T, d, m, 0.1f, 0.1f, NULL),
                "crate_ista_overcomplete_forward_f32"))
    check(rel_err_f(outf, outr, nt) < 1e-5, "overcomplete f32 forward", rel_err_f(outf, outr, nt));
  if (ok_status(crate_ista_overcomplete_backward_f64(Y, D, D1, A1, A2, R, dO, dY, dD, dD1, T, d, m, eta, ws),
                "crate_ista_overcomplete_backward_f64")) {
    c.Y = Y, c.D = D, c.D1 = D1, c.R = dO, c.out = out, c.T = T, c.d = d, c.m = m, c.kind = 1, c.eta = eta, c.lam = lam;
    check(fd_check(Y, dY, nt, 1, &c) < 1e-6, "overcomplete f64 dY vs finite differences", fd_check(Y, dY, nt, 1, &c));
    check(fd_check(D, dD, nd, 1, &c) < 1e-6, "overcomplete f64 dD vs finite differences", fd_check(D, dD, nd, 1, &c));
    check(fd_check(D1, dD1, nd, 1, &c) < 1e-6, "overcomplete f64 dD1 vs finite differences",
          fd_check(D1, dD1, nd, 1, &c));
  }
  if (ok_status(crate_ista_overcomplete_backward_f32(Yf, Df, D1f, A1f, A2f, Rf, dOf, dYf, dDf, dD1f, T, d, m, 0.1f,
                                                     NULL),
                "crate_ista_overcomplete_backward_f32")) {
    check(rel_err_f(dYf, dY, nt) < 1e-5, "overcomplete f32 dY vs f64", rel_err_f(dYf, dY, nt));
    check(rel_err_f(dDf, dD, nd) < 1e-5, "overcomplete f32 dD vs f64", rel_err_f(dDf, dD, nd));
    check(rel_err_f(dD1f, dD1, nd) < 1e-5, "overcomplete f32 dD1 vs f64", rel_err_f(dD1f, dD1, nd));
  }
  free(Y), free(D), free(D1), free(out), free(outr), free(dO), free(A1), free(A2), free(R), free(dY), free(dD),
      free(dD1), free(ws);
  free(Yf), free(Df), free(D1f), free(outf), free(dOf), free(A1f), free(A2f), free(Rf), free(dYf), free(dDf),
      free(dD1f);
}

static void test_ista_tied(int T, int d, int m) {
  const double eta = 0.1, lam = 0.1;
  const size_t nt = (size_t)T * d, na = (size_t)T * m, nw = (size_t)m * d;
  double *Y = dalloc(nt), *W = dalloc(nw), *out = dalloc(nt), *outr = dalloc(nt), *dO = dalloc(nt);
  double *A0 = dalloc(na), *A1 = dalloc(na), *R = dalloc(nt), *dY = dalloc(nt), *dW = dalloc(nw);
  float *Yf = falloc(nt), *Wf = falloc(nw), *outf = falloc(nt), *dOf = falloc(nt);
  float *A0f = falloc(na), *A1f = falloc(na), *Rf = falloc(nt), *dYf = falloc(nt), *dWf = falloc(nw);
  ista_ctx c;
  fill(Y, nt, 1.0);
  fill(W, nw, 0.3);
  fill(dO, nt, 1.0);
  tied_ref(Y, W, outr, T, d, m, eta, lam);
  if (ok_status(crate_ista_tied_forward_f64(Y, W, out, A0, A1, R, T, d, m, eta, lam, NULL),
                "crate_ista_tied_forward_f64"))
    check(rel_err_d(out, outr, nt) < 1e-12, "tied f64 forward", rel_err_d(out, outr, nt));
  to_f32(Y, Yf, nt), to_f32(W, Wf, nw), to_f32(dO, dOf, nt);
  if (ok_status(crate_ista_tied_forward_f32(Yf, Wf, outf, A0f, A1f, Rf, T, d, m, 0.1f, 0.1f, NULL),
                "crate_ista_tied_forward_f32"))
    check(rel_err_f(outf, outr, nt) < 1e-5, "tied f32 forward", rel_err_f(outf, outr, nt));
  if (ok_status(crate_ista_tied_backward_f64(Y, W, A0, A1, R, dO, dY, dW, T, d, m, eta, NULL),
                "crate_ista_tied_backward_f64")) {
    c.Y = Y, c.W = W, c.R = dO, c.out = out, c.T = T, c.d = d, c.m = m, c.kind = 2, c.eta = eta, c.lam = lam;
    check(fd_check(Y, dY, nt, 1, &c) < 1e-6, "tied f64 dY vs finite differences", fd_check(Y, dY, nt, 1, &c));
    check(fd_check(W, dW, nw, 1, &c) < 1e-6, "tied f64 dW vs finite differences", fd_check(W, dW, nw, 1, &c));
  }
  if (ok_status(crate_ista_tied_backward_f32(Yf, Wf, A0f, A1f, Rf, dOf, dYf, dWf, T, d, m, 0.1f, NULL),
                "crate_ista_tied_backward_f32")) {
    check(rel_err_f(dYf, dY, nt) < 1e-5, "tied f32 dY vs f64", rel_err_f(dYf, dY, nt));
    check(rel_err_f(dWf, dW, nw) < 1e-5, "tied f32 dW vs f64", rel_err_f(dWf, dW, nw));
  }
  free(Y), free(W), free(out), free(outr), free(dO), free(A0), free(A1), free(R), free(dY), free(dW);
  free(Yf), free(Wf), free(outf), free(dOf), free(A0f), free(A1f), free(Rf), free(dYf), free(dWf);
}

/* ---------------------------------------------------------------------------------------- errors */

static void expect_invalid(crate_status s, const char* what) {
  const char* msg = crate_last_error();
  int ok = s == CRATE_ERR_INVALID_ARGUMENT && msg != NULL && msg[0] != '\0';
  if (!ok) printf("  (%s: status %d, message \"%s\")\n", what, (int)s, msg ? msg : "(null)");
  check(ok, what, 0);
}

static void test_errors(void) {
  float x[64] = {0};
  double y[64] = {0};
  expect_invalid(crate_mssa_forward_f32(x, x + 16, x + 32, 1, 2, 1, 0, 1.0f, 0, NULL), "mssa_forward p = 0");
  expect_invalid(crate_mssa_forward_f64(y, y, y, -1, 2, 1, 4, 1.0, 0, NULL), "mssa_forward B = -1");
  expect_invalid(crate_mssa_backward_f32(x, x, NULL, x, x, 1, 2, 1, 4, 1.0f, 0, NULL), "mssa_backward L = NULL");
  expect_invalid(crate_ista_forward_f32(x, NULL, x, 2, 2, 0.1f, 0.1f, NULL), "ista_forward W = NULL");
  expect_invalid(crate_ista_backward_f64(y, y, y, y, y, y, -3, 2, 0.1, NULL), "ista_backward T = -3");
  expect_invalid(crate_ista_overcomplete_forward_f32(x, x, x, x, NULL, NULL, NULL, 2, 2, 0, 0.1f, 0.1f, NULL),
                 "ista_overcomplete_forward m = 0");
  expect_invalid(crate_ista_tied_backward_f64(y, y, NULL, y, y, y, y, y, 2, 2, 4, 0.1, NULL),
                 "ista_tied_backward A0 = NULL");
  check(crate_ista_workspace_size((crate_dtype)7, 2, 2, 0) == 0, "workspace size of a bad dtype is 0", 0);
  /* empty problems are fine */
  check(crate_mssa_forward_f32(NULL, NULL, NULL, 0, 5, 2, 4, 1.0f, 0, NULL) == CRATE_OK, "mssa B = 0 is OK", 0);
  check(crate_ista_forward_f64(NULL, NULL, NULL, 0, 4, 0.1, 0.1, NULL) == CRATE_OK, "ista T = 0 is OK", 0);
}

int main(void) {
  printf("crate %s, %d threads\n", crate_version(), crate_num_threads());
  test_mssa();
  test_ista_complete(7, 5, 0.1);
  test_ista_complete(9, 12, 0.5);
  test_ista_complete(70, 48, 0.1);
  test_ista_overcomplete(6, 4, 16);
  test_ista_overcomplete(5, 7, 10);
  test_ista_tied(6, 4, 16);
  test_ista_tied(5, 7, 10);
  test_errors();
  crate_set_num_threads(1);
  mssa_case(1, 17, 2, 20, 1, 1, 1);
  test_ista_overcomplete(6, 4, 16);
  crate_set_num_threads(0);
  printf("test_mssa_ista: %d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
