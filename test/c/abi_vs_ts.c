/* abi_vs_ts.c: reads inputs written by test/c_abi.test.ts, runs the CRATE kernels through the
 * plain C ABI (libcrate.so) and writes the outputs back, so the test can compare them with the
 * TypeScript path. Usage: abi_vs_ts <in.bin> <out.bin>
 * in.bin:  int64 B, N, H, p, d; then f64 P (B*N*H*p), W (d*d), Y (B*N*d), temp (H)
 * out.bin: f64 mssa O (B*N*H*p), ista Z (B*N*d), logdet heads R (B*H), tssa Y (B*N*H*p)
 * Build: gcc -std=c99 -Inative/include test/c/abi_vs_ts.c -Lbuild/Release -lcrate -Wl,-rpath,build/Release */
#include <stdio.h>
#include <stdlib.h>

#include "crate/crate.h"

static int check(crate_status s, const char* what) {
  if (s != CRATE_OK) {
    fprintf(stderr, "%s failed (%d): %s\n", what, (int)s, crate_last_error());
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s in.bin out.bin\n", argv[0]);
    return 2;
  }
  FILE* f = fopen(argv[1], "rb");
  if (!f) return 2;
  int64_t dims[5];
  if (fread(dims, sizeof(int64_t), 5, f) != 5) return 2;
  const int64_t B = dims[0], N = dims[1], H = dims[2], p = dims[3], d = dims[4];
  const size_t nP = (size_t)(B * N * H * p), nW = (size_t)(d * d), nY = (size_t)(B * N * d);
  double* P = malloc(nP * sizeof(double));
  double* W = malloc(nW * sizeof(double));
  double* Y = malloc(nY * sizeof(double));
  double* temp = malloc((size_t)H * sizeof(double));
  if (fread(P, sizeof(double), nP, f) != nP || fread(W, sizeof(double), nW, f) != nW ||
      fread(Y, sizeof(double), nY, f) != nY || fread(temp, sizeof(double), (size_t)H, f) != (size_t)H)
    return 2;
  fclose(f);

  double* O = malloc(nP * sizeof(double));
  double* L = malloc((size_t)(B * H * N) * sizeof(double));
  double* Z = malloc(nY * sizeof(double));
  double* R = malloc((size_t)(B * H) * sizeof(double));
  double* alpha = malloc((size_t)(B * H) * sizeof(double));
  double* T = malloc(nP * sizeof(double));
  for (int64_t i = 0; i < B * H; ++i) alpha[i] = 0.5;
  int bad = 0;
  bad |= check(crate_mssa_forward_f64(P, O, L, B, N, H, p, 0.125, 0, NULL), "crate_mssa_forward_f64");
  bad |= check(crate_ista_forward_f64(Y, W, Z, B * N, d, 0.1, 0.1, NULL), "crate_ista_forward_f64");
  bad |= check(crate_logdet_gram_heads_forward_f64(P, alpha, R, B, N, H, p, NULL), "crate_logdet_gram_heads_forward_f64");
  bad |= check(crate_tssa_forward_f64(P, temp, T, NULL, NULL, NULL, B, N, H, p), "crate_tssa_forward_f64");
  /* an invalid call must report an error, not crash */
  if (crate_mssa_forward_f64(P, O, L, B, N, H, -1, 0.1, 0, NULL) != CRATE_ERR_INVALID_ARGUMENT || !crate_last_error()[0]) {
    fprintf(stderr, "negative p was not rejected\n");
    bad = 1;
  }
  if (bad) return 1;
  FILE* g = fopen(argv[2], "wb");
  if (!g) return 2;
  fwrite(O, sizeof(double), nP, g);
  fwrite(Z, sizeof(double), nY, g);
  fwrite(R, sizeof(double), (size_t)(B * H), g);
  fwrite(T, sizeof(double), nP, g);
  fclose(g);
  printf("abi_vs_ts: ok (crate %s, %d threads)\n", crate_version(), crate_num_threads());
  return 0;
}
