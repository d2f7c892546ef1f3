// host_backend.cc: a host-memory stand-in for libcrate_cuda.so, for self-testing the harness
// test/cuda/cuda_vs_cpu.cc on a machine with no GPU. It implements every entry of crate_cuda.h
// with "device" memory = host memory: a caching allocator with the documented statistics, memcpy,
// a callback thread for memcpy_d2h_async, GEMMs as plain f32 loops (TF32 / bf16 input rounding
// emulated; bf16 output rounded once), the CRATE kernels through the CPU C ABI (libcrate.so; the
// bf16 ISTA entries widen to f32 and round the results once) and the row ops as f32 loops.
// A kernel handed a pointer outside every allocation records a sticky "illegal memory access"
// (so --sticky can be exercised). Nothing here is part of the product; it proves that the
// harness's plumbing (argument order, sizes, canaries, NaN-initialised outputs, tolerances) is
// right before a GPU session spends its time on it.
//
//   g++ -std=c++17 -O2 -shared -fPIC -Inative/include test/cuda/host_backend.cc
//       -L<build>/Release -lcrate -lpthread -Wl,-rpath,<build>/Release -o /tmp/libcrate_cuda_host.so
//   <build>/Release/crate_cuda_test --lib /tmp/libcrate_cuda_host.so
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "crate/crate.h"
#include "crate/crate_cuda.h"

namespace {
thread_local std::string t_err;
std::mutex g_mu;
std::string g_sticky;                  // non-empty: the "context" is poisoned
std::map<uintptr_t, size_t> g_live;    // ptr -> rounded size
std::multimap<size_t, void*> g_cache;  // rounded size -> free block
crate_cuda_memory_stats g_stats{};
// The blocking waits the real library would make at the copies and synchronize calls (its entry
// points' own device-side checks are not modelled: the fake's kernels run on the host).
void count_host_sync() {
  std::lock_guard<std::mutex> lk(g_mu);
  ++g_stats.num_host_syncs;
}
bool g_own = false;
std::string g_backend = "cublasLt 0 (host fake)";

crate_status err(crate_status s, const std::string& m) {
  t_err = m;
  return s;
}
crate_status sticky_check(const char* fn) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_sticky.empty())
    return err(CRATE_ERR_CUDA, std::string(fn) + ": CUDA context unusable after a sticky error: " + g_sticky);
  return CRATE_OK;
}
#define GUARD(fn)                       \
  do {                                  \
    crate_status s_ = sticky_check(fn); \
    if (s_ != CRATE_OK) return s_;      \
  } while (0)

// CRATE_HOST_FAKE_BUG=<name> injects one bug, to show the harness catches it.
bool bug(const char* name) {
  const char* e = std::getenv("CRATE_HOST_FAKE_BUG");
  return e && std::strcmp(e, name) == 0;
}
size_t round_size(size_t b) {
  return b < (1u << 20) ? (b + 511) / 512 * 512 : (b + (2u << 20) - 1) / (2u << 20) * (2u << 20);
}
bool valid_ptr(const void* p) {  // inside a live allocation?
  std::lock_guard<std::mutex> lk(g_mu);
  auto u = reinterpret_cast<uintptr_t>(p);
  auto it = g_live.upper_bound(u);
  if (it == g_live.begin()) return false;
  --it;
  return u >= it->first && u < it->first + it->second;
}
float tf32(float f) {  // round to 10 mantissa bits (nearest)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x1000u) & ~0x1FFFu;
  std::memcpy(&f, &u, 4);
  return f;
}
float bf(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
template <class TA, class F>
crate_status gemm(const char* fn, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const TA* A,
                  int64_t lda, const TA* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch, int64_t sa,
                  int64_t sb, int64_t sc, F conv) {
  GUARD(fn);
  if (M < 0 || N < 0 || K < 0 || batch < 0) return err(CRATE_ERR_INVALID_ARGUMENT, std::string(fn) + ": negative size");
  if (lda < (ta ? M : K) || ldb < (tb ? K : N) || ldc < N)
    return err(CRATE_ERR_INVALID_ARGUMENT, std::string(fn) + ": leading dimension too small");
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        float s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += conv(A[b * sa + (ta ? k * lda + i : i * lda + k)]) * conv(B[b * sb + (tb ? j * ldb + k : k * ldb + j)]);
        float& c = C[b * sc + i * ldc + j];
        c = (beta == 0.f && !bug("gemm_reads_c")) ? alpha * s : alpha * s + beta * c;  // bug: 0 * NaN leaks
        if (ldc > N && j == N - 1 && bug("gemm_pad")) C[b * sc + i * ldc + N] = 0.f;
      }
  return CRATE_OK;
}
crate_status wrap(crate_status st) {
  if (st != CRATE_OK) t_err = crate_last_error();
  return st;
}
// bf16 coding rate: Z widened to f64 (exact), alpha / dR f32 -> f64, the CPU f64 kernel, R -> f32
// and dZ rounded once to bf16 (via f32 rounded to odd), as the CUDA kernels (f64 inside).
std::vector<double> wide(const uint16_t* x, int64_t n) {
  std::vector<double> v(x && n > 0 ? static_cast<size_t>(n) : 0);
  for (size_t i = 0; i < v.size(); ++i) v[i] = bf(x[i]);
  return v;
}
std::vector<double> wide(const float* x, int64_t n) {
  return x && n > 0 ? std::vector<double>(x, x + n) : std::vector<double>();
}
uint16_t bf16_of(double v) {  // round to nearest even, once; NaN stays NaN
  float f = static_cast<float>(v);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (v == v && std::isfinite(f) && static_cast<double>(f) != v && (u & 1u) == 0) {
    f = std::nextafter(f, v > static_cast<double>(f) ? INFINITY : -INFINITY);
    std::memcpy(&u, &f, 4);
  }
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
// items / numel of a call (0 for invalid sizes: the CPU kernel then reports them).
crate_status rate_fwd_bf16(const uint16_t* Z, const float* alpha, float* R, int64_t items, int64_t numel,
                           const std::function<crate_status(const double*, const double*, double*)>& cpu) {
  const std::vector<double> z = wide(Z, numel), a = wide(alpha, items);
  std::vector<double> r(R && items > 0 ? static_cast<size_t>(items) : 0);
  const crate_status st = wrap(cpu(Z ? z.data() : nullptr, alpha ? a.data() : nullptr, R ? r.data() : nullptr));
  if (st == CRATE_OK)
    for (size_t i = 0; i < r.size(); ++i) R[i] = static_cast<float>(r[i]);
  return st;
}
crate_status rate_bwd_bf16(
    const uint16_t* Z, const float* alpha, const float* dR, uint16_t* dZ, int64_t items, int64_t numel,
    const std::function<crate_status(const double*, const double*, const double*, double*)>& cpu) {
  const std::vector<double> z = wide(Z, numel), a = wide(alpha, items), g = wide(dR, items);
  std::vector<double> dz(dZ && numel > 0 ? static_cast<size_t>(numel) : 0);
  const crate_status st =
      wrap(cpu(Z ? z.data() : nullptr, alpha ? a.data() : nullptr, dR ? g.data() : nullptr, dZ ? dz.data() : nullptr));
  if (st == CRATE_OK)
    for (size_t i = 0; i < dz.size(); ++i) dZ[i] = bf16_of(dz[i]);
  return st;
}
struct Wide {  // an f64 copy of a bf16 / f32 buffer (NULL stays NULL), written back on request
  std::vector<double> v;
  bool null = true;
  Wide(const uint16_t* x, int64_t n) : v(static_cast<size_t>(n > 0 ? n : 1)), null(!x) {
    for (int64_t i = 0; x && i < n; ++i) v[i] = bf(x[i]);
  }
  Wide(const float* x, int64_t n) : v(static_cast<size_t>(n > 0 ? n : 1)), null(!x) {
    for (int64_t i = 0; x && i < n; ++i) v[i] = x[i];
  }
  double* p() { return null ? nullptr : v.data(); }
  void to(uint16_t* y, int64_t n) const {
    for (int64_t i = 0; y && i < n; ++i) y[i] = bf16_of(v[i]);
  }
  void to(float* y, int64_t n) const {
    for (int64_t i = 0; y && i < n; ++i) y[i] = static_cast<float>(v[i]);
  }
};
// Element counts, 0 when a size is negative (the CPU kernel then reports the error).
int64_t cnt(std::initializer_list<int64_t> d) {
  int64_t n = 1;
  for (int64_t x : d) {
    if (x < 0) return 0;
    n *= x;
  }
  return n;
}
}  // namespace

// For host_prim.cc (the primitive entries of the same fake library).
void host_fake_set_error(const std::string& msg) { t_err = msg; }

extern "C" {
const char* crate_cuda_last_error(void) { return t_err.c_str(); }
crate_status crate_cuda_status(void) { return sticky_check("crate_cuda_status"); }
crate_status crate_cuda_init(int device) {
  if (const char* e = std::getenv("CRATE_HOST_FAKE_NO_GPU"))
    return err(CRATE_ERR_CUDA, std::string("crate_cuda_init: ") + e);
  return device == 0 ? CRATE_OK : err(CRATE_ERR_CUDA, "crate_cuda_init: no such device");
}
void* crate_cuda_default_stream(void) { return reinterpret_cast<void*>(uintptr_t(0x5157)); }

crate_status crate_cuda_malloc(void** ptr, size_t bytes, void* stream) {
  GUARD("crate_cuda_malloc");
  if (!ptr) return err(CRATE_ERR_INVALID_ARGUMENT, "crate_cuda_malloc: ptr is NULL");
  *ptr = nullptr;
  if (bytes == 0) return CRATE_OK;
  const size_t r = round_size(bytes);
  std::lock_guard<std::mutex> lk(g_mu);
  if (bytes > (size_t(1) << 40))
    return err(CRATE_ERR_OUT_OF_MEMORY, "crate_cuda_malloc: out of memory asking " + std::to_string(bytes) +
                                            " bytes (free 0, cached " + std::to_string(g_stats.cached_bytes) + ")");
  void* p = nullptr;
  auto it = g_cache.find(r);
  if (it != g_cache.end()) {
    p = it->second;
    g_cache.erase(it);
    g_stats.cached_bytes -= r;
  } else {
    p = std::aligned_alloc(256, r);
    ++g_stats.num_device_allocs;
  }
  g_live[reinterpret_cast<uintptr_t>(p)] = r;
  g_stats.allocated_bytes += r;
  g_stats.peak_allocated_bytes = std::max(g_stats.peak_allocated_bytes, g_stats.allocated_bytes);
  ++g_stats.num_allocs;
  *ptr = p;
  return CRATE_OK;
}
crate_status crate_cuda_free(void* ptr, void* stream) {
  GUARD("crate_cuda_free");
  if (!ptr) return CRATE_OK;
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_live.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_live.end())
    return err(CRATE_ERR_INVALID_ARGUMENT, "crate_cuda_free: pointer not allocated by crate_cuda_malloc");
  g_stats.allocated_bytes -= it->second;
  g_stats.cached_bytes += it->second;
  g_cache.emplace(it->second, ptr);
  g_live.erase(it);
  return CRATE_OK;
}
size_t crate_cuda_empty_cache(void) {
  std::lock_guard<std::mutex> lk(g_mu);
  size_t n = 0;
  for (auto& kv : g_cache) {
    n += kv.first;
    std::free(kv.second);
  }
  g_cache.clear();
  g_stats.cached_bytes = 0;
  return n;
}
crate_status crate_cuda_memory_stats_get(crate_cuda_memory_stats* out) {
  std::lock_guard<std::mutex> lk(g_mu);
  *out = g_stats;
  out->device_total_bytes = size_t(80) << 30;
  out->device_free_bytes = out->device_total_bytes - g_stats.allocated_bytes - g_stats.cached_bytes;
  return CRATE_OK;
}
crate_status crate_cuda_memcpy(void* dst, const void* src, size_t bytes, int kind, void* stream) {
  GUARD("crate_cuda_memcpy");
  if (kind < 0 || kind > 2) return err(CRATE_ERR_INVALID_ARGUMENT, "crate_cuda_memcpy: kind must be 0, 1 or 2");
  std::memcpy(dst, src, bytes);
  if (kind == 1 && bytes > 0) count_host_sync();  // a device->host copy waits for the stream
  return CRATE_OK;
}
crate_status crate_cuda_memcpy_d2h_async(void* dst, const void* src, size_t bytes, void* stream,
                                         void (*done)(void*, crate_status), void* user) {
  GUARD("crate_cuda_memcpy_d2h_async");
  std::thread([=] {
    std::memcpy(dst, src, bytes);
    done(user, CRATE_OK);
  }).detach();
  return CRATE_OK;
}
crate_status crate_cuda_synchronize(void* stream) {
  count_host_sync();
  return sticky_check("crate_cuda_synchronize");
}

crate_status crate_cuda_gemm_f32(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                                 int64_t batch, int64_t sa, int64_t sb, int64_t sc, int allow_tf32, void* stream) {
  if (allow_tf32)
    return gemm("crate_cuda_gemm_f32", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, sa, sb, sc,
                [](float x) { return tf32(x); });
  return gemm("crate_cuda_gemm_f32", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, sa, sb, sc,
              [](float x) { return x; });
}
crate_status crate_cuda_gemm_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                                  int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc,
                                  int64_t batch, int64_t sa, int64_t sb, int64_t sc, void* stream) {
  return gemm("crate_cuda_gemm_bf16", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, sa, sb, sc,
              [](uint16_t x) { return bf(x); });
}
crate_status crate_cuda_gemm_f16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                                 int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc,
                                 int64_t batch, int64_t sa, int64_t sb, int64_t sc, void* stream) {
  return gemm("crate_cuda_gemm_f16", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, sa, sb, sc,
              [](uint16_t h) {  // IEEE half -> f32
                const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
                const float v = e == 0    ? std::ldexp(static_cast<float>(m), -24)
                                : e == 31 ? (m ? NAN : INFINITY)
                                          : std::ldexp(static_cast<float>(1024 + m), e - 25);
                return (h & 0x8000) ? -v : v;
              });
}
const char* crate_cuda_gemm_backend(void) { return g_own ? "own tensor-core GEMM (host fake)" : g_backend.c_str(); }
crate_status crate_cuda_gemm_force_own(int own) {
  g_own = own != 0;
  return CRATE_OK;
}

crate_status crate_cuda_mssa_forward_f32(const float* P, float* O, float* L, int64_t B, int64_t N, int64_t H, int64_t p,
                                         float scale, int causal, const uint8_t* key_mask, void* stream) {
  GUARD("crate_cuda_mssa_forward_f32");
  crate_status st = wrap(crate_mssa_forward_f32(P, O, L, B, N, H, p, scale, causal, key_mask));
  void* scratch = nullptr;
  if (bug("mssa_leaks_scratch")) crate_cuda_malloc(&scratch, 4096, stream);  // never freed
  if (bug("mssa_1e-4"))  // a relative error of 1e-4 (e.g. a low-precision exp)
    for (int64_t i = 0; i < B * N * H * p; ++i) O[i] *= 1.0001f;
  return st;
}
crate_status crate_cuda_mssa_backward_f32(const float* P, const float* O, const float* L, const float* dO, float* dP,
                                          int64_t B, int64_t N, int64_t H, int64_t p, float scale, int causal,
                                          const uint8_t* key_mask, void* stream) {
  GUARD("crate_cuda_mssa_backward_f32");
  return wrap(crate_mssa_backward_f32(P, O, L, dO, dP, B, N, H, p, scale, causal, key_mask));
}
// bf16 MSSA: the bf16 operands widened to f32, the CPU f32 kernel, the outputs rounded to bf16
// (nearest even); L stays f32. (The real kernels also round the probabilities before their
// products: the fake is the more accurate, which the tests' bf16 tolerances allow.)
namespace {
std::vector<float> mssa_widen(const uint16_t* x, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = bf(x[i]);
  return v;
}
void mssa_round(const std::vector<float>& v, uint16_t* y) {
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &v[i], 4);
    y[i] = (u & 0x7fffffffu) > 0x7f800000u ? static_cast<uint16_t>((u >> 16) | 0x40u)
                                           : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}
bool mssa_sizes_ok(int64_t B, int64_t N, int64_t H, int64_t p) {
  return B >= 0 && N >= 0 && H >= 1 && p >= 1 && B <= (1 << 20) && N <= (1 << 24) && H <= (1 << 16) && p <= (1 << 16);
}
}  // namespace
crate_status crate_cuda_mssa_forward_bf16(const uint16_t* P, uint16_t* O, float* L, int64_t B, int64_t N, int64_t H,
                                          int64_t p, float scale, int causal, const uint8_t* key_mask, void* stream) {
  GUARD("crate_cuda_mssa_forward_bf16");
  if (!mssa_sizes_ok(B, N, H, p) || !P || !O)  // the CPU kernel's argument errors
    return wrap(crate_mssa_forward_f32(nullptr, nullptr, L, B, N, H, p, scale, causal, key_mask));
  const int64_t n = B * N * H * p;
  const std::vector<float> Pf = mssa_widen(P, n);
  std::vector<float> Of(static_cast<size_t>(n));
  crate_status st = wrap(crate_mssa_forward_f32(Pf.data(), Of.data(), L, B, N, H, p, scale, causal, key_mask));
  if (st == CRATE_OK) mssa_round(Of, O);
  return st;
}
crate_status crate_cuda_mssa_backward_bf16(const uint16_t* P, const uint16_t* O, const float* L, const uint16_t* dO,
                                           uint16_t* dP, int64_t B, int64_t N, int64_t H, int64_t p, float scale,
                                           int causal, const uint8_t* key_mask, void* stream) {
  GUARD("crate_cuda_mssa_backward_bf16");
  if (!mssa_sizes_ok(B, N, H, p) || !P || !O || !dO || !dP)
    return wrap(crate_mssa_backward_f32(nullptr, nullptr, L, nullptr, nullptr, B, N, H, p, scale, causal, key_mask));
  const int64_t n = B * N * H * p;
  const std::vector<float> Pf = mssa_widen(P, n), Of = mssa_widen(O, n), Gf = mssa_widen(dO, n);
  std::vector<float> dPf(static_cast<size_t>(n));
  crate_status st = wrap(
      crate_mssa_backward_f32(Pf.data(), Of.data(), L, Gf.data(), dPf.data(), B, N, H, p, scale, causal, key_mask));
  if (st == CRATE_OK) mssa_round(dPf, dP);
  return st;
}
crate_status crate_cuda_ista_forward_f32(const float* Y, const float* W, float* Z, int64_t T, int64_t d, float eta,
                                         float lambd, void* stream) {
  GUARD("crate_cuda_ista_forward_f32");
  crate_status st = wrap(crate_ista_forward_f32(Y, W, Z, T, d, eta, lambd, nullptr));
  if (bug("ista_writes_input") && T * d > 0) const_cast<float*>(Y)[0] += 1.f;
  return st;
}
crate_status crate_cuda_ista_backward_f32(const float* Y, const float* W, const float* Z, const float* dZ, float* dY,
                                          float* dW, int64_t T, int64_t d, float eta, void* stream) {
  GUARD("crate_cuda_ista_backward_f32");
  return wrap(crate_ista_backward_f32(Y, W, Z, dZ, dY, dW, T, d, eta, nullptr));
}
crate_status crate_cuda_ista_overcomplete_forward_f32(const float* Y, const float* D, const float* D1, float* out,
                                                      float* A1, float* A2, float* R, int64_t T, int64_t d, int64_t m,
                                                      float eta, float lambd, void* stream) {
  GUARD("crate_cuda_ista_overcomplete_forward_f32");
  return wrap(crate_ista_overcomplete_forward_f32(Y, D, D1, out, A1, A2, R, T, d, m, eta, lambd, nullptr));
}
crate_status crate_cuda_ista_overcomplete_backward_f32(const float* Y, const float* D, const float* D1, const float* A1,
                                                       const float* A2, const float* R, const float* dOut, float* dY,
                                                       float* dD, float* dD1, int64_t T, int64_t d, int64_t m,
                                                       float eta, void* stream) {
  GUARD("crate_cuda_ista_overcomplete_backward_f32");
  return wrap(crate_ista_overcomplete_backward_f32(Y, D, D1, A1, A2, R, dOut, dY, dD, dD1, T, d, m, eta, nullptr));
}
crate_status crate_cuda_ista_tied_forward_f32(const float* Y, const float* W, float* out, float* A0, float* A1,
                                              float* R, int64_t T, int64_t d, int64_t m, float eta, float lambd,
                                              void* stream) {
  GUARD("crate_cuda_ista_tied_forward_f32");
  return wrap(crate_ista_tied_forward_f32(Y, W, out, A0, A1, R, T, d, m, eta, lambd, nullptr));
}
crate_status crate_cuda_ista_tied_backward_f32(const float* Y, const float* W, const float* A0, const float* A1,
                                               const float* R, const float* dOut, float* dY, float* dW, int64_t T,
                                               int64_t d, int64_t m, float eta, void* stream) {
  GUARD("crate_cuda_ista_tied_backward_f32");
  return wrap(crate_ista_tied_backward_f32(Y, W, A0, A1, R, dOut, dY, dW, T, d, m, eta, nullptr));
}
crate_status crate_cuda_logdet_gram_forward_f32(const float* Z, const float* alpha, float* R, int64_t batch, int64_t m,
                                                int64_t n, double* chol, void* stream) {
  GUARD("crate_cuda_logdet_gram_forward_f32");
  return wrap(crate_logdet_gram_forward_f32(Z, alpha, R, batch, m, n, chol));
}
crate_status crate_cuda_logdet_gram_backward_f32(const float* Z, const float* alpha, const float* dR, float* dZ,
                                                 int64_t batch, int64_t m, int64_t n, const double* chol,
                                                 void* stream) {
  GUARD("crate_cuda_logdet_gram_backward_f32");
  return wrap(crate_logdet_gram_backward_f32(Z, alpha, dR, dZ, batch, m, n, chol));
}
crate_status crate_cuda_logdet_gram_heads_forward_f32(const float* X, const float* alpha, float* R, int64_t B,
                                                      int64_t N, int64_t H, int64_t p, double* chol, void* stream) {
  GUARD("crate_cuda_logdet_gram_heads_forward_f32");
  return wrap(crate_logdet_gram_heads_forward_f32(X, alpha, R, B, N, H, p, chol));
}
crate_status crate_cuda_logdet_gram_heads_backward_f32(const float* X, const float* alpha, const float* dR, float* dX,
                                                       int64_t B, int64_t N, int64_t H, int64_t p, const double* chol,
                                                       void* stream) {
  GUARD("crate_cuda_logdet_gram_heads_backward_f32");
  return wrap(crate_logdet_gram_heads_backward_f32(X, alpha, dR, dX, B, N, H, p, chol));
}
crate_status crate_cuda_logdet_gram_forward_bf16(const uint16_t* Z, const float* alpha, float* R, int64_t batch,
                                                 int64_t m, int64_t n, double* chol, void* stream) {
  GUARD("crate_cuda_logdet_gram_forward_bf16");
  const bool ok = batch >= 0 && m >= 0 && n >= 0;
  return rate_fwd_bf16(Z, alpha, R, ok ? batch : 0, ok ? batch * m * n : 0,
                       [&](const double* z, const double* a, double* r) {
                         return crate_logdet_gram_forward_f64(z, a, r, batch, m, n, chol);
                       });
}
crate_status crate_cuda_logdet_gram_backward_bf16(const uint16_t* Z, const float* alpha, const float* dR, uint16_t* dZ,
                                                  int64_t batch, int64_t m, int64_t n, const double* chol,
                                                  void* stream) {
  GUARD("crate_cuda_logdet_gram_backward_bf16");
  const bool ok = batch >= 0 && m >= 0 && n >= 0;
  return rate_bwd_bf16(Z, alpha, dR, dZ, ok ? batch : 0, ok ? batch * m * n : 0,
                       [&](const double* z, const double* a, const double* g, double* dz) {
                         return crate_logdet_gram_backward_f64(z, a, g, dz, batch, m, n, chol);
                       });
}
crate_status crate_cuda_logdet_gram_heads_forward_bf16(const uint16_t* X, const float* alpha, float* R, int64_t B,
                                                       int64_t N, int64_t H, int64_t p, double* chol, void* stream) {
  GUARD("crate_cuda_logdet_gram_heads_forward_bf16");
  const bool ok = B >= 0 && N >= 0 && H >= 0 && p >= 0;
  return rate_fwd_bf16(X, alpha, R, ok ? B * H : 0, ok ? B * N * H * p : 0,
                       [&](const double* x, const double* a, double* r) {
                         return crate_logdet_gram_heads_forward_f64(x, a, r, B, N, H, p, chol);
                       });
}
crate_status crate_cuda_logdet_gram_heads_backward_bf16(const uint16_t* X, const float* alpha, const float* dR,
                                                        uint16_t* dX, int64_t B, int64_t N, int64_t H, int64_t p,
                                                        const double* chol, void* stream) {
  GUARD("crate_cuda_logdet_gram_heads_backward_bf16");
  const bool ok = B >= 0 && N >= 0 && H >= 0 && p >= 0;
  return rate_bwd_bf16(X, alpha, dR, dX, ok ? B * H : 0, ok ? B * N * H * p : 0,
                       [&](const double* x, const double* a, const double* g, double* dx) {
                         return crate_logdet_gram_heads_backward_f64(x, a, g, dx, B, N, H, p, chol);
                       });
}
crate_status crate_cuda_tssa_forward_f32(const float* W, const float* temp, float* Y, float* Pi, float* colnorm,
                                         float* mstat, int64_t B, int64_t N, int64_t H, int64_t p, void* stream) {
  GUARD("crate_cuda_tssa_forward_f32");
  return wrap(crate_tssa_forward_f32(W, temp, Y, Pi, colnorm, mstat, B, N, H, p));
}
crate_status crate_cuda_tssa_backward_f32(const float* W, const float* temp, const float* dY, const float* Pi,
                                          const float* colnorm, const float* mstat, float* dW, float* dtemp, int64_t B,
                                          int64_t N, int64_t H, int64_t p, void* stream) {
  GUARD("crate_cuda_tssa_backward_f32");
  std::vector<float> keep(bug("tssa_last_unwritten") && B * N * H * p > 0 ? 1 : 0);
  if (!keep.empty()) keep[0] = dW[B * N * H * p - 1];
  crate_status st = wrap(crate_tssa_backward_f32(W, temp, dY, Pi, colnorm, mstat, dW, dtemp, B, N, H, p, nullptr));
  if (!keep.empty()) dW[B * N * H * p - 1] = keep[0];
  return st;
}
crate_status crate_cuda_tssa_causal_forward_f32(const float* W, const float* temp, const float* denom_bias, float* Y,
                                                float* Pi, int64_t B, int64_t T, int64_t H, int64_t p, int64_t Tmax,
                                                void* stream) {
  GUARD("crate_cuda_tssa_causal_forward_f32");
  return wrap(crate_tssa_causal_forward_f32(W, temp, denom_bias, Y, Pi, B, T, H, p, Tmax));
}
crate_status crate_cuda_tssa_causal_backward_f32(const float* W, const float* temp, const float* denom_bias,
                                                 const float* dY, float* dW, float* dtemp, float* ddenom_bias,
                                                 int64_t B, int64_t T, int64_t H, int64_t p, int64_t Tmax,
                                                 void* stream) {
  GUARD("crate_cuda_tssa_causal_backward_f32");
  return wrap(
      crate_tssa_causal_backward_f32(W, temp, denom_bias, dY, dW, dtemp, ddenom_bias, B, T, H, p, Tmax, nullptr));
}

// bf16 TSSA: W / dY widened exactly to f64, temp / denom_bias / saved statistics (f32) too, the CPU
// f64 kernel, then Y / dW rounded once to bf16 (via f32 rounded to odd) and the f32 outputs to f32,
// as the CUDA kernels (f64 statistics, one rounding on store).
crate_status crate_cuda_tssa_forward_bf16(const uint16_t* W, const float* temp, uint16_t* Y, float* Pi, float* colnorm,
                                          float* mstat, int64_t B, int64_t N, int64_t H, int64_t p, void* stream) {
  GUARD("crate_cuda_tssa_forward_bf16");
  const int64_t n = cnt({B, N, H, p}), nPi = cnt({B, H, N}), nS = cnt({B, H, p});
  Wide w(W, n), t(temp, cnt({H})), y(Y, n), pi(Pi, nPi), cn(colnorm, nS), ms(mstat, nS);
  crate_status st = wrap(crate_tssa_forward_f64(w.p(), t.p(), y.p(), pi.p(), cn.p(), ms.p(), B, N, H, p));
  if (st != CRATE_OK) return st;
  y.to(Y, n);
  pi.to(Pi, nPi);
  cn.to(colnorm, nS);
  ms.to(mstat, nS);
  return CRATE_OK;
}
crate_status crate_cuda_tssa_backward_bf16(const uint16_t* W, const float* temp, const uint16_t* dY, const float* Pi,
                                           const float* colnorm, const float* mstat, uint16_t* dW, float* dtemp,
                                           int64_t B, int64_t N, int64_t H, int64_t p, void* stream) {
  GUARD("crate_cuda_tssa_backward_bf16");
  const int64_t n = cnt({B, N, H, p}), nPi = cnt({B, H, N}), nS = cnt({B, H, p}), nH = cnt({H});
  Wide w(W, n), t(temp, nH), g(dY, n), pi(Pi, nPi), cn(colnorm, nS), ms(mstat, nS), gw(dW, n), gt(dtemp, nH);
  crate_status st =
      wrap(crate_tssa_backward_f64(w.p(), t.p(), g.p(), pi.p(), cn.p(), ms.p(), gw.p(), gt.p(), B, N, H, p, nullptr));
  if (st != CRATE_OK) return st;
  gw.to(dW, n);
  gt.to(dtemp, nH);
  return CRATE_OK;
}
crate_status crate_cuda_tssa_causal_forward_bf16(const uint16_t* W, const float* temp, const float* denom_bias,
                                                 uint16_t* Y, float* Pi, int64_t B, int64_t T, int64_t H, int64_t p,
                                                 int64_t Tmax, void* stream) {
  GUARD("crate_cuda_tssa_causal_forward_bf16");
  const int64_t n = cnt({B, T, H, p}), nPi = cnt({B, H, T});
  Wide w(W, n), t(temp, cnt({H})), bias(denom_bias, cnt({H, Tmax})), y(Y, n), pi(Pi, nPi);
  crate_status st = wrap(crate_tssa_causal_forward_f64(w.p(), t.p(), bias.p(), y.p(), pi.p(), B, T, H, p, Tmax));
  if (st != CRATE_OK) return st;
  y.to(Y, n);
  pi.to(Pi, nPi);
  return CRATE_OK;
}
crate_status crate_cuda_tssa_causal_backward_bf16(const uint16_t* W, const float* temp, const float* denom_bias,
                                                  const uint16_t* dY, uint16_t* dW, float* dtemp, float* ddenom_bias,
                                                  int64_t B, int64_t T, int64_t H, int64_t p, int64_t Tmax,
                                                  void* stream) {
  GUARD("crate_cuda_tssa_causal_backward_bf16");
  const int64_t n = cnt({B, T, H, p}), nH = cnt({H}), nB = cnt({H, Tmax});
  Wide w(W, n), t(temp, nH), bias(denom_bias, nB), g(dY, n), gw(dW, n), gt(dtemp, nH), gb(ddenom_bias, nB);
  crate_status st = wrap(
      crate_tssa_causal_backward_f64(w.p(), t.p(), bias.p(), g.p(), gw.p(), gt.p(), gb.p(), B, T, H, p, Tmax, nullptr));
  if (st != CRATE_OK) return st;
  gw.to(dW, n);
  gt.to(dtemp, nH);
  gb.to(ddenom_bias, nB);
  return CRATE_OK;
}

crate_status crate_cuda_layernorm_forward_f32(const float* x, const float* w, const float* b, float* y, float* mean,
                                              float* rstd, int64_t rows, int64_t cols, double eps, void* stream) {
  GUARD("crate_cuda_layernorm_forward_f32");
  if (rows < 0 || cols < 1) return err(CRATE_ERR_INVALID_ARGUMENT, "layernorm: bad sizes");
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float m = 0, v = 0;
    for (int64_t j = 0; j < cols; ++j) m += xr[j];
    m /= cols;
    for (int64_t j = 0; j < cols; ++j) v += (xr[j] - m) * (xr[j] - m);
    v /= cols;
    const float rs = static_cast<float>(1.0 / std::sqrt(v + eps));
    mean[r] = m;
    rstd[r] = rs;
    for (int64_t j = 0; j < cols; ++j) y[r * cols + j] = (xr[j] - m) * rs * (w ? w[j] : 1.f) + (b ? b[j] : 0.f);
  }
  return CRATE_OK;
}
crate_status crate_cuda_layernorm_backward_f32(const float* x, const float* w, const float* mean, const float* rstd,
                                               const float* g, float* dx, float* dw, float* db, int64_t rows,
                                               int64_t cols, void* stream) {
  GUARD("crate_cuda_layernorm_backward_f32");
  for (int64_t r = 0; r < rows - (bug("ln_skip_row") ? 1 : 0); ++r) {
    const float *xr = x + r * cols, *gr = g + r * cols;
    float s1 = 0, s2 = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const float gw = gr[j] * (w ? w[j] : 1.f);
      s1 += gw;
      s2 += gw * (xr[j] - mean[r]) * rstd[r];
    }
    s1 /= cols;
    s2 /= cols;
    for (int64_t j = 0; j < cols; ++j) {
      const float xh = (xr[j] - mean[r]) * rstd[r];
      dx[r * cols + j] = rstd[r] * (gr[j] * (w ? w[j] : 1.f) - s1 - xh * s2);
      if (dw) dw[j] += gr[j] * xh;
      if (db) db[j] += gr[j];
    }
  }
  return CRATE_OK;
}
crate_status crate_cuda_softmax_forward_f32(const float* x, float* y, int64_t rows, int64_t cols, int log,
                                            void* stream) {
  GUARD("crate_cuda_softmax_forward_f32");
  const auto u = reinterpret_cast<uintptr_t>(x);  // the bogus addresses crate_cuda_test --sticky uses
  const bool bogus = u < 0x10000 || (u >= (uintptr_t(1) << 46) && u < (uintptr_t(1) << 46) + (uintptr_t(1) << 32));
  if (rows > 0 && bogus && !valid_ptr(x)) {  // what the GPU would do: an illegal address, reported later
    std::lock_guard<std::mutex> lk(g_mu);
    g_sticky = "cudaErrorIllegalAddress: an illegal memory access was encountered";
    return CRATE_OK;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * cols;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, xr[j]);
    float s = 0;
    for (int64_t j = 0; j < cols; ++j) s += std::exp(xr[j] - mx);
    for (int64_t j = 0; j < cols; ++j) y[r * cols + j] = log ? xr[j] - mx - std::log(s) : std::exp(xr[j] - mx) / s;
  }
  if (bug("softmax_past_end") && rows * cols > 0) y[rows * cols] = 0.f;
  return CRATE_OK;
}
crate_status crate_cuda_softmax_backward_f32(const float* y, const float* g, float* dx, int64_t rows, int64_t cols,
                                             int log, void* stream) {
  GUARD("crate_cuda_softmax_backward_f32");
  for (int64_t r = 0; r < rows; ++r) {
    const float *yr = y + r * cols, *gr = g + r * cols;
    float s = 0;
    for (int64_t j = 0; j < cols; ++j) s += log ? gr[j] : gr[j] * yr[j];
    for (int64_t j = 0; j < cols; ++j) dx[r * cols + j] = log ? gr[j] - std::exp(yr[j]) * s : yr[j] * (gr[j] - s);
  }
  return CRATE_OK;
}
crate_status crate_cuda_cross_entropy_forward_f32(const float* logits, const int32_t* target, float* loss_row,
                                                  float* lse, int64_t* counted, int64_t rows, int64_t classes,
                                                  double smoothing, int64_t ignore_index, void* stream) {
  GUARD("crate_cuda_cross_entropy_forward_f32");
  int64_t c = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = logits + r * classes;
    float mx = -std::numeric_limits<float>::infinity(), s = 0, sx = 0;
    for (int64_t j = 0; j < classes; ++j) mx = std::max(mx, xr[j]);
    for (int64_t j = 0; j < classes; ++j) {
      s += std::exp(xr[j] - mx);
      sx += xr[j];
    }
    const float l = mx + std::log(s);
    lse[r] = l;
    if (target[r] == ignore_index) {
      loss_row[r] = 0;
      continue;
    }
    ++c;
    loss_row[r] = static_cast<float>((1 - smoothing) * (l - xr[target[r]]) + smoothing * (l - sx / classes));
  }
  *counted = c;
  return CRATE_OK;
}
crate_status crate_cuda_cross_entropy_backward_f32(const float* logits, const int32_t* target, const float* lse,
                                                   const float* g_row, float* dlogits, int64_t rows, int64_t classes,
                                                   double smoothing, int64_t ignore_index, void* stream) {
  GUARD("crate_cuda_cross_entropy_backward_f32");
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < classes; ++j)
      dlogits[r * classes + j] =
          target[r] == ignore_index
              ? 0.f
              : static_cast<float>(g_row[r] * (std::exp(logits[r * classes + j] - lse[r]) - smoothing / classes -
                                               (j == target[r] ? 1 - smoothing : 0)));
  return CRATE_OK;
}
}  // extern "C"

// bf16 entries (widen to f32, the f32 path above, round each result once): the plumbing, not the
// kernels' rounding points (the real kernels also round their intermediates).
namespace {
uint16_t bf_round(float f) {  // nearest even; NaN stays NaN
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
/** f32 copy of n bf16 values (empty for NULL). */
struct W32 {
  std::vector<float> v;
  W32(const uint16_t* x, int64_t n) {
    if (x && n > 0) {
      v.resize(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) v[i] = bf(x[i]);
    }
  }
  float* p() { return v.empty() ? nullptr : v.data(); }
};
/** An f32 output for a bf16 destination (NULL stays NULL); put() rounds it back. */
struct O32 {
  uint16_t* dst;
  std::vector<float> v;
  O32(uint16_t* d, int64_t n) : dst(d) {
    if (d && n > 0) v.assign(static_cast<size_t>(n), 0.f);
  }
  float* p() { return dst ? (v.empty() ? reinterpret_cast<float*>(dst) : v.data()) : nullptr; }
  void put() {
    for (size_t i = 0; i < v.size(); ++i) dst[i] = bf_round(v[i]);
  }
};
int64_t nn(int64_t a, int64_t b) { return a > 0 && b > 0 ? a * b : 0; }
}  // namespace

extern "C" {
crate_status crate_cuda_gemm_bf16_bf16(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                                       int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C,
                                       int64_t ldc, int64_t batch, int64_t sa, int64_t sb, int64_t sc, void* stream) {
  GUARD("crate_cuda_gemm_bf16_bf16");
  if (M < 0 || N < 0 || batch < 0 || ldc < N || sc < 0)
    return err(CRATE_ERR_INVALID_ARGUMENT, "crate_cuda_gemm_bf16_bf16: bad size");
  const int64_t nc = batch > 0 && M > 0 ? (batch - 1) * (batch > 1 ? sc : 0) + M * ldc : 0;
  std::vector<float> Cf(static_cast<size_t>(nc), 0.f);
  if (beta != 0.f)
    for (int64_t i = 0; i < nc; ++i) Cf[i] = bf(C[i]);
  const crate_status st = gemm("crate_cuda_gemm_bf16_bf16", ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cf.data(),
                               ldc, batch, sa, sb, sc, [](uint16_t x) { return bf(x); });
  if (st != CRATE_OK) return st;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        const int64_t ic = b * (batch > 1 ? sc : 0) + i * ldc + j;
        C[ic] = bf_round(Cf[ic]);
      }
  return CRATE_OK;
}
crate_status crate_cuda_ista_forward_bf16(const uint16_t* Y, const uint16_t* W, uint16_t* Z, int64_t T, int64_t d,
                                          float eta, float lambd, void* stream) {
  GUARD("crate_cuda_ista_forward_bf16");
  W32 y(Y, nn(T, d)), w(W, nn(d, d));
  O32 z(Z, nn(T, d));
  const crate_status st = wrap(crate_ista_forward_f32(y.p(), w.p(), z.p(), T, d, eta, lambd, nullptr));
  if (st == CRATE_OK) z.put();
  return st;
}
crate_status crate_cuda_ista_backward_bf16(const uint16_t* Y, const uint16_t* W, const uint16_t* Z, const uint16_t* dZ,
                                           uint16_t* dY, uint16_t* dW, int64_t T, int64_t d, float eta, void* stream) {
  GUARD("crate_cuda_ista_backward_bf16");
  W32 y(Y, nn(T, d)), w(W, nn(d, d)), z(Z, nn(T, d)), g(dZ, nn(T, d));
  O32 gy(dY, nn(T, d)), gw(dW, nn(d, d));
  const crate_status st = wrap(crate_ista_backward_f32(y.p(), w.p(), z.p(), g.p(), gy.p(), gw.p(), T, d, eta, nullptr));
  if (st == CRATE_OK) gy.put(), gw.put();
  return st;
}
crate_status crate_cuda_ista_overcomplete_forward_bf16(const uint16_t* Y, const uint16_t* D, const uint16_t* D1,
                                                       uint16_t* out, uint16_t* A1, uint16_t* A2, uint16_t* R,
                                                       int64_t T, int64_t d, int64_t m, float eta, float lambd,
                                                       void* stream) {
  GUARD("crate_cuda_ista_overcomplete_forward_bf16");
  W32 y(Y, nn(T, d)), dd(D, nn(d, m)), d1(D1, nn(d, m));
  O32 o(out, nn(T, d)), a1(A1, nn(T, m)), a2(A2, nn(T, m)), r(R, nn(T, d));
  const crate_status st = wrap(crate_ista_overcomplete_forward_f32(y.p(), dd.p(), d1.p(), o.p(), a1.p(), a2.p(), r.p(),
                                                                   T, d, m, eta, lambd, nullptr));
  if (st == CRATE_OK) o.put(), a1.put(), a2.put(), r.put();
  return st;
}
crate_status crate_cuda_ista_overcomplete_backward_bf16(const uint16_t* Y, const uint16_t* D, const uint16_t* D1,
                                                        const uint16_t* A1, const uint16_t* A2, const uint16_t* R,
                                                        const uint16_t* dOut, uint16_t* dY, uint16_t* dD, uint16_t* dD1,
                                                        int64_t T, int64_t d, int64_t m, float eta, void* stream) {
  GUARD("crate_cuda_ista_overcomplete_backward_bf16");
  W32 y(Y, nn(T, d)), dd(D, nn(d, m)), d1(D1, nn(d, m)), a1(A1, nn(T, m)), a2(A2, nn(T, m)), r(R, nn(T, d)),
      g(dOut, nn(T, d));
  O32 gy(dY, nn(T, d)), gd(dD, nn(d, m)), gd1(dD1, nn(d, m));
  const crate_status st = wrap(crate_ista_overcomplete_backward_f32(y.p(), dd.p(), d1.p(), a1.p(), a2.p(), r.p(), g.p(),
                                                                    gy.p(), gd.p(), gd1.p(), T, d, m, eta, nullptr));
  if (st == CRATE_OK) gy.put(), gd.put(), gd1.put();
  return st;
}
crate_status crate_cuda_ista_tied_forward_bf16(const uint16_t* Y, const uint16_t* W, uint16_t* out, uint16_t* A0,
                                               uint16_t* A1, uint16_t* R, int64_t T, int64_t d, int64_t m, float eta,
                                               float lambd, void* stream) {
  GUARD("crate_cuda_ista_tied_forward_bf16");
  W32 y(Y, nn(T, d)), w(W, nn(m, d));
  O32 o(out, nn(T, d)), a0(A0, nn(T, m)), a1(A1, nn(T, m)), r(R, nn(T, d));
  const crate_status st =
      wrap(crate_ista_tied_forward_f32(y.p(), w.p(), o.p(), a0.p(), a1.p(), r.p(), T, d, m, eta, lambd, nullptr));
  if (st == CRATE_OK) o.put(), a0.put(), a1.put(), r.put();
  return st;
}
crate_status crate_cuda_ista_tied_backward_bf16(const uint16_t* Y, const uint16_t* W, const uint16_t* A0,
                                                const uint16_t* A1, const uint16_t* R, const uint16_t* dOut,
                                                uint16_t* dY, uint16_t* dW, int64_t T, int64_t d, int64_t m, float eta,
                                                void* stream) {
  GUARD("crate_cuda_ista_tied_backward_bf16");
  W32 y(Y, nn(T, d)), w(W, nn(m, d)), a0(A0, nn(T, m)), a1(A1, nn(T, m)), r(R, nn(T, d)), g(dOut, nn(T, d));
  O32 gy(dY, nn(T, d)), gw(dW, nn(m, d));
  const crate_status st = wrap(
      crate_ista_tied_backward_f32(y.p(), w.p(), a0.p(), a1.p(), r.p(), g.p(), gy.p(), gw.p(), T, d, m, eta, nullptr));
  if (st == CRATE_OK) gy.put(), gw.put();
  return st;
}
}  // extern "C"
