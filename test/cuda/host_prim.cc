// host_prim.cc: the rest of the host-memory stand-in for libcrate_cuda.so (with host_backend.cc):
// the device query (a "GPU" named "host fake") and every entry of crate_cuda_prim.h, each calling
// the CPU kernel of native/cpu/kernels.h on "device" memory that is host memory. Built together
// with the CPU sources into a shared library, it lets the addon run its CUDA code paths on a
// machine without a GPU (CRATE_CUDA_LIB=<fake>): argument order, device dispatch, Tensor.to,
// await data() from a callback thread, Module.to, checkpoints and autocast are exercised end to
// end (test/cuda_fake.test.ts). It proves the plumbing, not the CUDA kernels.
//
// dtypes: as crate_cuda_prim.h; the bf16 entries (unary + backward, binary, where, fill, reduce,
// strided_copy, gather, index_add, layernorm / softmax / cross-entropy forward and backward, matmul,
// random, AdamW's parameter and gradient) widen their bf16 operands
// to f32, run the CPU f32 kernel and round the result back to bf16 (nearest even), as the CUDA kernels compute.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/kernels.h"
#include "crate/crate_cuda.h"
#include "crate/crate_cuda_prim.h"
#include "cuda/cuda_backend_api.h"

// Defined in host_backend.cc: sets the message crate_cuda_last_error returns.
void host_fake_set_error(const std::string& msg);

namespace {
thread_local std::string t_prim_err;

template <class F>
crate_status run(const char* fn, F&& body) {
  try {
    body();
    return CRATE_OK;
  } catch (const std::exception& e) {
    t_prim_err = std::string(fn) + ": " + e.what();
    host_fake_set_error(t_prim_err);
    return CRATE_ERR_INVALID_ARGUMENT;
  }
}
using crate::cpu::BinaryOp;
using crate::cpu::RandomKind;
using crate::cpu::ReduceOp;
using crate::cpu::UnaryOp;

uint16_t bf16_round(float f) {  // round to nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float bf16_widen(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
/** double -> bf16 rounded once: via f32 rounded to odd (keeps the sticky bit). */
uint16_t bf16_round_f64(double v) {
  float f = static_cast<float>(v);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (v == v && std::isfinite(f) && static_cast<double>(f) != v && (u & 1u) == 0)
    f = std::nextafter(f, v > static_cast<double>(f) ? INFINITY : -INFINITY);
  return bf16_round(f);
}

/** Elements a strided view reaches in its buffer (max offset + 1; 0 when empty). */
int64_t extent_of(int64_t off, const int64_t* str, const int64_t* shape, int nd) {
  int64_t hi = off;
  for (int d = 0; d < nd; ++d) {
    if (shape[d] == 0) return 0;
    hi += (shape[d] - 1) * str[d];
  }
  return hi + 1;
}
int64_t numel_of(const int64_t* shape, int nd) {
  int64_t n = 1;
  for (int d = 0; d < nd; ++d) n *= shape[d];
  return n;
}
std::vector<float> widen(const uint16_t* x, int64_t n) {
  std::vector<float> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[i] = bf16_widen(x[i]);
  return r;
}
void narrow(const std::vector<float>& x, uint16_t* y) {
  for (size_t i = 0; i < x.size(); ++i) y[i] = bf16_round(x[i]);
}
}  // namespace

extern "C" {
__attribute__((visibility("default"))) int crate_cuda_query(crate_cuda_info* out) {
  std::memset(out, 0, sizeof(*out));
  out->device_count = 1;
  out->driver_version = 13000;
  out->runtime_version = 13000;
  out->cc_major = 9;
  out->cc_minor = 0;
  out->sm_count = 1;
  out->total_mem = size_t(80) << 30;
  std::snprintf(out->name, sizeof(out->name), "host fake (CPU memory, CPU kernels)");
  std::snprintf(out->compiled_archs, sizeof(out->compiled_archs), "none (test fake)");
  return 0;
}

crate_status crate_cuda_unary_f32(int op, const float* x, float* y, int64_t n, double a, double b, void*) {
  return run("crate_cuda_unary_f32", [&] { crate::cpu::unary<float>(static_cast<UnaryOp>(op), x, y, n, a, b); });
}
crate_status crate_cuda_unary_backward_f32(int op, const float* x, const float* y, const float* g, float* dx, int64_t n,
                                           double a, double b, void*) {
  return run("crate_cuda_unary_backward_f32",
             [&] { crate::cpu::unary_backward<float>(static_cast<UnaryOp>(op), x, y, g, dx, n, a, b); });
}
crate_status crate_cuda_binary_f32(int op, const float* a, const int64_t* as, const float* b, const int64_t* bs,
                                   float* out, const int64_t* shape, int nd, void*) {
  return run("crate_cuda_binary_f32",
             [&] { crate::cpu::binary<float>(static_cast<BinaryOp>(op), a, as, b, bs, out, shape, nd); });
}
crate_status crate_cuda_binary_i32(int op, const int32_t* a, const int64_t* as, const int32_t* b, const int64_t* bs,
                                   int32_t* out, const int64_t* shape, int nd, void*) {
  return run("crate_cuda_binary_i32",
             [&] { crate::cpu::binary<int32_t>(static_cast<BinaryOp>(op), a, as, b, bs, out, shape, nd); });
}
crate_status crate_cuda_where_f32(const float* c, const int64_t* cs, const float* a, const int64_t* as, const float* b,
                                  const int64_t* bs, float* out, const int64_t* shape, int nd, void*) {
  return run("crate_cuda_where_f32", [&] { crate::cpu::where<float>(c, cs, a, as, b, bs, out, shape, nd); });
}
crate_status crate_cuda_fill_f32(float* y, int64_t n, double v, void*) {
  return run("crate_cuda_fill_f32", [&] { crate::cpu::fill<float>(y, n, v); });
}
crate_status crate_cuda_fill_i32(int32_t* y, int64_t n, double v, void*) {
  return run("crate_cuda_fill_i32", [&] { crate::cpu::fill<int32_t>(y, n, v); });
}
crate_status crate_cuda_arange_f32(float* y, int64_t n, double s, double st, void*) {
  return run("crate_cuda_arange_f32", [&] { crate::cpu::arange<float>(y, n, s, st); });
}
crate_status crate_cuda_arange_i32(int32_t* y, int64_t n, double s, double st, void*) {
  return run("crate_cuda_arange_i32", [&] { crate::cpu::arange<int32_t>(y, n, s, st); });
}
crate_status crate_cuda_cast(const void* x, int sd, void* y, int dd, int64_t n, void*) {
  return run("crate_cuda_cast", [&] {
    auto bf16_of = bf16_round;
    auto f_of = bf16_widen;
    if (sd == 0 && dd == 0)
      crate::cpu::cast<float, float>(static_cast<const float*>(x), static_cast<float*>(y), n);
    else if (sd == 0 && dd == 2)
      crate::cpu::cast<float, int32_t>(static_cast<const float*>(x), static_cast<int32_t*>(y), n);
    else if (sd == 2 && dd == 0)
      crate::cpu::cast<int32_t, float>(static_cast<const int32_t*>(x), static_cast<float*>(y), n);
    else if (sd == 2 && dd == 2)
      crate::cpu::cast<int32_t, int32_t>(static_cast<const int32_t*>(x), static_cast<int32_t*>(y), n);
    else if (sd == 0 && dd == 3)
      for (int64_t i = 0; i < n; ++i) static_cast<uint16_t*>(y)[i] = bf16_of(static_cast<const float*>(x)[i]);
    else if (sd == 3 && dd == 0)
      for (int64_t i = 0; i < n; ++i) static_cast<float*>(y)[i] = f_of(static_cast<const uint16_t*>(x)[i]);
    else if (sd == 3 && dd == 3)
      std::memcpy(y, x, static_cast<size_t>(n) * 2);
    else
      throw std::runtime_error("unsupported cast " + std::to_string(sd) + " -> " + std::to_string(dd));
  });
}
crate_status crate_cuda_nonzero_u8(const void* x, int dt, uint8_t* y, int64_t n, void*) {
  return run("crate_cuda_nonzero_u8", [&] {
    for (int64_t i = 0; i < n; ++i) {
      if (dt == 0)
        y[i] = static_cast<const float*>(x)[i] != 0.f;
      else if (dt == 2)
        y[i] = static_cast<const int32_t*>(x)[i] != 0;
      else if (dt == 3)
        y[i] = (static_cast<const uint16_t*>(x)[i] & 0x7fffu) != 0;
      else
        throw std::runtime_error("unsupported dtype " + std::to_string(dt));
    }
  });
}
crate_status crate_cuda_find_nonfinite_f32(const float* x, int64_t n, int64_t* r, void*) {
  return run("crate_cuda_find_nonfinite_f32", [&] { *r = crate::cpu::find_nonfinite<float>(x, n); });
}
crate_status crate_cuda_reduce_f32(int op, const float* x, const int64_t* shape, const uint8_t* red, int nd, float* out,
                                   void*) {
  return run("crate_cuda_reduce_f32",
             [&] { crate::cpu::reduce<float>(static_cast<ReduceOp>(op), x, shape, red, nd, out); });
}
crate_status crate_cuda_strided_copy_f32(const float* s, int64_t so, const int64_t* ss, float* d, int64_t dof,
                                         const int64_t* ds, const int64_t* shape, int nd, int acc, void*) {
  return run("crate_cuda_strided_copy_f32",
             [&] { crate::cpu::strided_copy<float>(s, so, ss, d, dof, ds, shape, nd, acc != 0); });
}
crate_status crate_cuda_strided_copy_i32(const int32_t* s, int64_t so, const int64_t* ss, int32_t* d, int64_t dof,
                                         const int64_t* ds, const int64_t* shape, int nd, void*) {
  return run("crate_cuda_strided_copy_i32",
             [&] { crate::cpu::strided_copy<int32_t>(s, so, ss, d, dof, ds, shape, nd, false); });
}
crate_status crate_cuda_gather_f32(const float* x, const int32_t* idx, float* out, int64_t o, int64_t dim, int64_t in,
                                   int64_t k, void*) {
  return run("crate_cuda_gather_f32", [&] { crate::cpu::gather<float>(x, idx, out, o, dim, in, k); });
}
crate_status crate_cuda_gather_i32(const int32_t* x, const int32_t* idx, int32_t* out, int64_t o, int64_t dim,
                                   int64_t in, int64_t k, void*) {
  return run("crate_cuda_gather_i32", [&] { crate::cpu::gather<int32_t>(x, idx, out, o, dim, in, k); });
}
crate_status crate_cuda_index_add_f32(const float* g, const int32_t* idx, float* dx, int64_t o, int64_t dim, int64_t in,
                                      int64_t k, void*) {
  return run("crate_cuda_index_add_f32", [&] { crate::cpu::index_add<float>(g, idx, dx, o, dim, in, k); });
}
crate_status crate_cuda_matmul_f32(const float* A, const float* B, float* C, const int64_t* bshape, const int64_t* as,
                                   const int64_t* bs, int nb, int64_t M, int64_t N, int64_t K, int ta, int tb, int,
                                   void*) {
  return run("crate_cuda_matmul_f32",
             [&] { crate::cpu::matmul<float>(A, B, C, bshape, as, bs, nb, M, N, K, ta != 0, tb != 0); });
}
crate_status crate_cuda_random_f32(int kind, float* y, int64_t n, uint64_t seed, uint64_t off, double a, double b,
                                   void*) {
  return run("crate_cuda_random_f32",
             [&] { crate::cpu::random<float>(static_cast<RandomKind>(kind), y, n, seed, off, a, b); });
}
crate_status crate_cuda_adamw_step_f32(float* p, const float* g, float* m, float* v, int64_t n, double lr, double b1,
                                       double b2, double eps, double wd, double bc1, double bc2, void*) {
  return run("crate_cuda_adamw_step_f32",
             [&] { crate::cpu::adamw_step<float>(p, g, m, v, n, lr, b1, b2, eps, wd, bc1, bc2); });
}

crate_status crate_cuda_unary_bf16(int op, const uint16_t* x, uint16_t* y, int64_t n, double a, double b, void*) {
  return run("crate_cuda_unary_bf16", [&] {
    const std::vector<float> xf = widen(x, n);
    std::vector<float> yf(static_cast<size_t>(n));
    crate::cpu::unary<float>(static_cast<UnaryOp>(op), xf.data(), yf.data(), n, a, b);
    narrow(yf, y);
  });
}
crate_status crate_cuda_unary_backward_bf16(int op, const uint16_t* x, const uint16_t* y, const uint16_t* g,
                                            uint16_t* dx, int64_t n, double a, double b, void*) {
  return run("crate_cuda_unary_backward_bf16", [&] {
    const std::vector<float> xf = x ? widen(x, n) : std::vector<float>(), yf = y ? widen(y, n) : std::vector<float>();
    const std::vector<float> gf = widen(g, n);
    std::vector<float> df(static_cast<size_t>(n));
    crate::cpu::unary_backward<float>(static_cast<UnaryOp>(op), x ? xf.data() : nullptr, y ? yf.data() : nullptr,
                                      gf.data(), df.data(), n, a, b);
    narrow(df, dx);
  });
}
crate_status crate_cuda_binary_bf16(int op, const uint16_t* a, const int64_t* as, const uint16_t* b, const int64_t* bs,
                                    uint16_t* out, const int64_t* shape, int nd, void*) {
  return run("crate_cuda_binary_bf16", [&] {
    const std::vector<float> af = widen(a, extent_of(0, as, shape, nd)), bf = widen(b, extent_of(0, bs, shape, nd));
    std::vector<float> of(static_cast<size_t>(numel_of(shape, nd)));
    crate::cpu::binary<float>(static_cast<BinaryOp>(op), af.data(), as, bf.data(), bs, of.data(), shape, nd);
    narrow(of, out);
  });
}
crate_status crate_cuda_where_bf16(const uint16_t* c, const int64_t* cs, const uint16_t* a, const int64_t* as,
                                   const uint16_t* b, const int64_t* bs, uint16_t* out, const int64_t* shape, int nd,
                                   void*) {
  return run("crate_cuda_where_bf16", [&] {
    const std::vector<float> cf = widen(c, extent_of(0, cs, shape, nd)), af = widen(a, extent_of(0, as, shape, nd)),
                             bf = widen(b, extent_of(0, bs, shape, nd));
    std::vector<float> of(static_cast<size_t>(numel_of(shape, nd)));
    crate::cpu::where<float>(cf.data(), cs, af.data(), as, bf.data(), bs, of.data(), shape, nd);
    narrow(of, out);
  });
}
crate_status crate_cuda_fill_bf16(uint16_t* y, int64_t n, double v, void*) {
  return run("crate_cuda_fill_bf16", [&] {
    const uint16_t h = bf16_round_f64(v);
    for (int64_t i = 0; i < n; ++i) y[i] = h;
  });
}
crate_status crate_cuda_reduce_bf16(int op, const uint16_t* x, const int64_t* shape, const uint8_t* red, int nd,
                                    uint16_t* out, void*) {
  return run("crate_cuda_reduce_bf16", [&] {
    int64_t n_out = 1;
    for (int d = 0; d < nd; ++d)
      if (!red[d]) n_out *= shape[d];
    const std::vector<float> xf = widen(x, numel_of(shape, nd));
    std::vector<float> of(static_cast<size_t>(n_out));
    crate::cpu::reduce<float>(static_cast<ReduceOp>(op), xf.data(), shape, red, nd, of.data());
    narrow(of, out);
  });
}
crate_status crate_cuda_strided_copy_bf16(const uint16_t* s, int64_t so, const int64_t* ss, uint16_t* d, int64_t dof,
                                          const int64_t* ds, const int64_t* shape, int nd, int acc, void*) {
  return run("crate_cuda_strided_copy_bf16", [&] {
    // The dst elements the copy does not reach are widened and rounded back unchanged.
    const std::vector<float> sf = widen(s, extent_of(so, ss, shape, nd));
    std::vector<float> df = widen(d, extent_of(dof, ds, shape, nd));
    crate::cpu::strided_copy<float>(sf.data(), so, ss, df.data(), dof, ds, shape, nd, acc != 0);
    narrow(df, d);
  });
}
crate_status crate_cuda_gather_bf16(const uint16_t* x, const int32_t* idx, uint16_t* out, int64_t o, int64_t dim,
                                    int64_t in, int64_t k, void*) {
  return run("crate_cuda_gather_bf16", [&] {  // bf16 -> f32 -> bf16 is exact (NaN aside)
    const std::vector<float> xf = widen(x, o * dim * in);
    std::vector<float> of(static_cast<size_t>(o * k * in));
    crate::cpu::gather<float>(xf.data(), idx, of.data(), o, dim, in, k);
    narrow(of, out);
  });
}
}  // extern "C"
// unchecked gathers: the fake has no wait to skip; an out-of-range index is zero-filled as on the
// device (validated in-range indices take the checked path's code).
namespace {
template <class T, class F>
crate_status gather_unchecked(const char* name, const T* x, const int32_t* idx, T* out, int64_t o, int64_t dim,
                              int64_t in, int64_t k, F checked) {
  if (o < 0 || dim < 0 || in < 0 || k < 0) return checked();
  bool all_in = true;
  for (int64_t j = 0; j < k && idx; ++j) all_in = all_in && idx[j] >= 0 && idx[j] < dim;
  if (all_in) return checked();
  return run(name, [&] {
    for (int64_t a = 0; a < o; ++a)
      for (int64_t j = 0; j < k; ++j)
        for (int64_t i = 0; i < in; ++i)
          out[(a * k + j) * in + i] = (idx[j] >= 0 && idx[j] < dim) ? x[(a * dim + idx[j]) * in + i] : T{};
  });
}
}  // namespace
extern "C" {
crate_status crate_cuda_gather_unchecked_f32(const float* x, const int32_t* idx, float* out, int64_t o, int64_t dim,
                                             int64_t in, int64_t k, void* s) {
  return gather_unchecked("crate_cuda_gather_unchecked_f32", x, idx, out, o, dim, in, k,
                          [&] { return crate_cuda_gather_f32(x, idx, out, o, dim, in, k, s); });
}
crate_status crate_cuda_gather_unchecked_i32(const int32_t* x, const int32_t* idx, int32_t* out, int64_t o, int64_t dim,
                                             int64_t in, int64_t k, void* s) {
  return gather_unchecked("crate_cuda_gather_unchecked_i32", x, idx, out, o, dim, in, k,
                          [&] { return crate_cuda_gather_i32(x, idx, out, o, dim, in, k, s); });
}
crate_status crate_cuda_gather_unchecked_bf16(const uint16_t* x, const int32_t* idx, uint16_t* out, int64_t o,
                                              int64_t dim, int64_t in, int64_t k, void* s) {
  return gather_unchecked("crate_cuda_gather_unchecked_bf16", x, idx, out, o, dim, in, k,
                          [&] { return crate_cuda_gather_bf16(x, idx, out, o, dim, in, k, s); });
}
crate_status crate_cuda_index_add_bf16(const uint16_t* g, const int32_t* idx, uint16_t* dx, int64_t o, int64_t dim,
                                       int64_t in, int64_t k, void*) {
  return run("crate_cuda_index_add_bf16", [&] {
    const std::vector<float> gf = widen(g, o * k * in);
    std::vector<float> df = widen(dx, o * dim * in);
    crate::cpu::index_add<float>(gf.data(), idx, df.data(), o, dim, in, k);
    narrow(df, dx);
  });
}
// Row ops: bf16 tensors widened, the CPU f32 kernel, results rounded back; statistics f32.
crate_status crate_cuda_layernorm_forward_bf16(const uint16_t* x, const uint16_t* w, const uint16_t* b, uint16_t* y,
                                               float* mean, float* rstd, int64_t rows, int64_t cols, double eps,
                                               void*) {
  return run("crate_cuda_layernorm_forward_bf16", [&] {
    const std::vector<float> xf = widen(x, rows * cols), wf = w ? widen(w, cols) : std::vector<float>(),
                             bfv = b ? widen(b, cols) : std::vector<float>();
    std::vector<float> yf(static_cast<size_t>(rows * cols));
    crate::cpu::layernorm<float>(xf.data(), w ? wf.data() : nullptr, b ? bfv.data() : nullptr, yf.data(), mean, rstd,
                                 rows, cols, eps);
    narrow(yf, y);
  });
}
crate_status crate_cuda_layernorm_backward_bf16(const uint16_t* x, const uint16_t* w, const float* mean,
                                                const float* rstd, const uint16_t* g, uint16_t* dx, uint16_t* dw,
                                                uint16_t* db, int64_t rows, int64_t cols, void*) {
  return run("crate_cuda_layernorm_backward_bf16", [&] {
    const std::vector<float> xf = widen(x, rows * cols), wf = w ? widen(w, cols) : std::vector<float>(),
                             gf = widen(g, rows * cols);
    std::vector<float> df(static_cast<size_t>(rows * cols));
    std::vector<float> dwf = dw ? widen(dw, cols) : std::vector<float>(),
                       dbf = db ? widen(db, cols) : std::vector<float>();
    crate::cpu::layernorm_backward<float>(xf.data(), w ? wf.data() : nullptr, mean, rstd, gf.data(), df.data(),
                                          dw ? dwf.data() : nullptr, db ? dbf.data() : nullptr, rows, cols);
    narrow(df, dx);
    if (dw) narrow(dwf, dw);
    if (db) narrow(dbf, db);
  });
}
crate_status crate_cuda_softmax_forward_bf16(const uint16_t* x, uint16_t* y, int64_t rows, int64_t cols, int log,
                                             void*) {
  return run("crate_cuda_softmax_forward_bf16", [&] {
    const std::vector<float> xf = widen(x, rows * cols);
    std::vector<float> yf(static_cast<size_t>(rows * cols));
    crate::cpu::softmax<float>(xf.data(), yf.data(), rows, cols, log != 0);
    narrow(yf, y);
  });
}
crate_status crate_cuda_softmax_backward_bf16(const uint16_t* y, const uint16_t* g, uint16_t* dx, int64_t rows,
                                              int64_t cols, int log, void*) {
  return run("crate_cuda_softmax_backward_bf16", [&] {
    const std::vector<float> yf = widen(y, rows * cols), gf = widen(g, rows * cols);
    std::vector<float> df(static_cast<size_t>(rows * cols));
    crate::cpu::softmax_backward<float>(yf.data(), gf.data(), df.data(), rows, cols, log != 0);
    narrow(df, dx);
  });
}
crate_status crate_cuda_cross_entropy_forward_bf16(const uint16_t* logits, const int32_t* target, float* loss_row,
                                                   float* lse, int64_t* counted, int64_t rows, int64_t classes,
                                                   double smoothing, int64_t ignore_index, void*) {
  return run("crate_cuda_cross_entropy_forward_bf16", [&] {
    const std::vector<float> xf = widen(logits, rows * classes);
    *counted =
        crate::cpu::cross_entropy<float>(xf.data(), target, loss_row, lse, rows, classes, smoothing, ignore_index);
  });
}
crate_status crate_cuda_cross_entropy_backward_bf16(const uint16_t* logits, const int32_t* target, const float* lse,
                                                    const float* g_row, uint16_t* dlogits, int64_t rows,
                                                    int64_t classes, double smoothing, int64_t ignore_index, void*) {
  return run("crate_cuda_cross_entropy_backward_bf16", [&] {
    const std::vector<float> xf = widen(logits, rows * classes);
    std::vector<float> df(static_cast<size_t>(rows * classes));
    crate::cpu::cross_entropy_backward<float>(xf.data(), target, lse, g_row, df.data(), rows, classes, smoothing,
                                              ignore_index);
    narrow(df, dlogits);
  });
}
// matmul, random and AdamW on bf16: widened, the CPU f32 kernel, rounded once.
crate_status crate_cuda_matmul_bf16(const uint16_t* A, const uint16_t* B, uint16_t* C, const int64_t* bshape,
                                    const int64_t* as, const int64_t* bs, int nb, int64_t M, int64_t N, int64_t K,
                                    int ta, int tb, void*) {
  return run("crate_cuda_matmul_bf16", [&] {
    const int64_t batch = numel_of(bshape, nb);
    if (batch == 0 || M == 0 || N == 0) return;
    const std::vector<int64_t> shape(bshape, bshape + nb);
    const int64_t na = extent_of(0, as, bshape, nb) - 1 + M * K, nbb = extent_of(0, bs, bshape, nb) - 1 + K * N;
    const std::vector<float> a = widen(A, K ? na : 0), b = widen(B, K ? nbb : 0);
    std::vector<float> c(static_cast<size_t>(batch * M * N));
    crate::cpu::matmul<float>(a.data(), b.data(), c.data(), bshape, as, bs, nb, M, N, K, ta != 0, tb != 0);
    narrow(c, C);
  });
}
crate_status crate_cuda_random_bf16(int kind, uint16_t* y, int64_t n, uint64_t seed, uint64_t off, double a, double b,
                                    void*) {
  return run("crate_cuda_random_bf16", [&] {
    std::vector<float> f(static_cast<size_t>(n > 0 ? n : 0));
    crate::cpu::random<float>(static_cast<RandomKind>(kind), f.data(), n, seed, off, a, b);
    narrow(f, y);  // the f32 stream, each value rounded once
  });
}
crate_status crate_cuda_adamw_step_bf16(uint16_t* p, const uint16_t* g, float* m, float* v, int64_t n, double lr,
                                        double b1, double b2, double eps, double wd, double bc1, double bc2, void*) {
  return run("crate_cuda_adamw_step_bf16", [&] {
    std::vector<float> pf = widen(p, n);
    const std::vector<float> gf = widen(g, n);
    crate::cpu::adamw_step<float>(pf.data(), gf.data(), m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
    narrow(pf, p);
  });
}
}  // extern "C"
