// cuda_vs_cpu.cc: proves the CUDA backend (libcrate_cuda.so, native/include/crate/crate_cuda.h)
// against the CPU kernels. For every entry point of crate_cuda.h it runs the CUDA function on
// random inputs with shapes that straddle tile/warp sizes, copies the results back and compares
// them with the CPU function of the same semantics in f32 and with the CPU function in f64 (the
// ground truth), FlashAttention's criterion, per output (saved statistics and every gradient):
//
//     max|cuda - f64| <= 2 * max|cpu_f32 - f64| + floor * tol_scale * max|f64|
//
// (floor: a small per-output relative floor, see Tol below; needed where the CPU f32 kernel
// computes internally in f64 and its error is only the final rounding). GEMMs are compared with
// a plain f64 loop, element-wise: |cuda - ref| <= gamma * (|alpha| sum_k |a_ik||b_kj| + |beta||c_ij|)
// with gamma = 2^-24 * max(16, 2 sqrt(K)) (f32 accumulation), + 2^-9 for TF32 (input rounding), and
// for bf16 the f32 gamma against the f64 product of the bf16-rounded inputs (plus 2^-7 against the
// unrounded f32 inputs); bf16 output adds one rounding: u |ref| + gamma scale (1 + u), u = 2^-8.
// bf16 ISTA (every tensor bf16): the CPU f64 function on the bf16 inputs is the ground truth and
// an f64 emulation of the bf16 kernels (the same rounding points, exact arithmetic between them)
// takes the place of the CPU f32 result in the criterion above, with a floor of one bf16 ulp
// (2^-8 max|f64|); the emulation itself is checked against the f64 function with its roundings
// turned off (it must agree to 1e-9), so it cannot loosen the bound by being wrong.
// Every device buffer carries a 256-byte canary tail (writes past the end inside the caching
// allocator's rounded block are invisible to compute-sanitizer), outputs start as NaN (unwritten
// outputs show), and inputs are re-read after each case (kernels must not write their inputs).
//
// The CUDA library is loaded with dlopen (not linked), so the test builds and runs against a
// backend that lacks some entry points: each missing one fails the cases that need it, by name.
// The test needs only the ABI (no CUDA runtime, no nvcc): device memory comes from
// crate_cuda_malloc/crate_cuda_memcpy.
//
// Usage: crate_cuda_test [--small] [--filter SUBSTR] [--exclude SUBSTR]... [--seed N] [--tol-scale X]
//                        [--lib PATH] [--device N] [--sticky]
//   --small      small shapes only (for compute-sanitizer runs)
//   --filter     only cases whose name contains SUBSTR; --exclude (repeatable): not those
//   --tol-scale  multiplies the relative floors of the bounds (the 2x criterion is unchanged)
//   --sticky     the sticky-error check in its own process: provokes an illegal address and
//                checks that every later call fails with CRATE_ERR_CUDA and a message (the CUDA
//                context is unusable afterwards, so this never runs in the main process)
//   library:     --lib, else $CRATE_CUDA_LIB, else libcrate_cuda.so beside this executable
// Output: one line per case (PASS/FAIL/SKIP), then `cuda tests: N passed, M failed (S skipped)`.
// Exit 1 on any failure; exit 0 with `cuda tests: skipped (<reason>)` when no GPU is usable.
//
// Built by CMake as `crate_cuda_test` when the CUDA backend is built (links libcrate.so and the
// CPU kernel objects for the row-op references). Standalone (row-op references then come from the
// plain loops below, which mirror native/cpu/nn.cc):
//   g++ -std=c++17 -O2 -Inative/include test/cuda/cuda_vs_cpu.cc -L<build>/Release -lcrate -ldl
//       -lpthread -Wl,-rpath,<build>/Release -o /tmp/crate_cuda_test
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "crate/crate.h"
#include "crate/crate_cuda.h"
#ifdef CRATE_TEST_CPU_NN
#include "cpu/kernels.h"
#endif

// ------------------------------------------------------------------------------------- the ABI

// clang-format off
#define CRATE_CUDA_ENTRIES(X)                                                                       \
  X(crate_cuda_last_error) X(crate_cuda_status) X(crate_cuda_init) X(crate_cuda_default_stream)    \
  X(crate_cuda_malloc) X(crate_cuda_free) X(crate_cuda_empty_cache) X(crate_cuda_memory_stats_get) \
  X(crate_cuda_memcpy) X(crate_cuda_memcpy_d2h_async) X(crate_cuda_synchronize)                    \
  X(crate_cuda_gemm_f32) X(crate_cuda_gemm_bf16) X(crate_cuda_gemm_backend)                        \
  X(crate_cuda_gemm_force_own) X(crate_cuda_mssa_forward_f32) X(crate_cuda_mssa_backward_f32)      \
  X(crate_cuda_ista_forward_f32) X(crate_cuda_ista_backward_f32)                                   \
  X(crate_cuda_ista_overcomplete_forward_f32) X(crate_cuda_ista_overcomplete_backward_f32)         \
  X(crate_cuda_ista_tied_forward_f32) X(crate_cuda_ista_tied_backward_f32)                         \
  X(crate_cuda_logdet_gram_forward_f32) X(crate_cuda_logdet_gram_backward_f32)                     \
  X(crate_cuda_tssa_forward_f32) X(crate_cuda_tssa_backward_f32)                                   \
  X(crate_cuda_tssa_causal_forward_f32) X(crate_cuda_tssa_causal_backward_f32)                     \
  X(crate_cuda_layernorm_forward_f32) X(crate_cuda_layernorm_backward_f32)                         \
  X(crate_cuda_softmax_forward_f32) X(crate_cuda_softmax_backward_f32)                             \
  X(crate_cuda_cross_entropy_forward_f32) X(crate_cuda_cross_entropy_backward_f32)                   \
  X(crate_cuda_logdet_gram_heads_forward_f32) X(crate_cuda_logdet_gram_heads_backward_f32) X(crate_cuda_logdet_gram_forward_bf16) X(crate_cuda_logdet_gram_backward_bf16) X(crate_cuda_logdet_gram_heads_forward_bf16) X(crate_cuda_logdet_gram_heads_backward_bf16) \
  X(crate_cuda_mssa_forward_bf16) X(crate_cuda_mssa_backward_bf16) \
  X(crate_cuda_tssa_forward_bf16) X(crate_cuda_tssa_backward_bf16)                                 \
  X(crate_cuda_tssa_causal_forward_bf16) X(crate_cuda_tssa_causal_backward_bf16) \
  X(crate_cuda_gemm_bf16_bf16) X(crate_cuda_ista_forward_bf16) X(crate_cuda_ista_backward_bf16)    \
  X(crate_cuda_ista_overcomplete_forward_bf16) X(crate_cuda_ista_overcomplete_backward_bf16)       \
  X(crate_cuda_ista_tied_forward_bf16) X(crate_cuda_ista_tied_backward_bf16)                     \
  X(crate_cuda_gemm_f16) X(crate_cuda_gemm_f16_f16)
// clang-format on

namespace {

struct Api {
#define X(n) decltype(&::n) n = nullptr;
  CRATE_CUDA_ENTRIES(X)
#undef X
  void* handle = nullptr;
  std::string path;
  std::vector<std::string> missing;
};
Api g;

struct Options {
  bool small = false, sticky = false;
  std::string filter, lib;
  std::vector<std::string> exclude;
  uint64_t seed = 20240611;
  double tol_scale = 1.0;
  int device = 0;
} opt;

const char* status_name(crate_status s) {
  switch (s) {
    case CRATE_OK:
      return "CRATE_OK";
    case CRATE_ERR_INVALID_ARGUMENT:
      return "CRATE_ERR_INVALID_ARGUMENT";
    case CRATE_ERR_NUMERICAL:
      return "CRATE_ERR_NUMERICAL";
    case CRATE_ERR_OUT_OF_MEMORY:
      return "CRATE_ERR_OUT_OF_MEMORY";
    case CRATE_ERR_CUDA:
      return "CRATE_ERR_CUDA";
    case CRATE_ERR_INTERNAL:
      return "CRATE_ERR_INTERNAL";
  }
  return "crate_status(?)";
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

std::string cuda_msg() {
  const char* m = g.crate_cuda_last_error ? g.crate_cuda_last_error() : nullptr;
  return m ? m : "(no message)";
}

/** A failed step inside a case. */
struct Failure {
  std::string msg;
};
/** A case that does not apply here (e.g. cuBLAS not found), reported as SKIP. */
struct Skip {
  std::string msg;
};

[[noreturn]] crate_status missing_entry(const char* fn) {
  throw Failure{std::string(fn) + ": entry point missing from " + g.path};
}
void cu_check(const char* fn, crate_status st) {
  if (st != CRATE_OK) throw Failure{fmt("%s returned %s: %s", fn, status_name(st), cuda_msg().c_str())};
}
// Calls a CUDA entry point; a missing symbol or a non-OK status fails the case.
#define CU(fn, ...) cu_check(#fn, g.fn ? g.fn(__VA_ARGS__) : missing_entry(#fn))
// Calls a CUDA entry point and returns its status (missing symbol: fails the case).
#define CU_ST(fn, ...) (g.fn ? g.fn(__VA_ARGS__) : missing_entry(#fn))

void cpu_check(const char* fn, crate_status st) {
  if (st != CRATE_OK) throw Failure{fmt("CPU %s returned %s: %s", fn, status_name(st), crate_last_error())};
}
#define CPU(fn, ...) cpu_check(#fn, fn(__VA_ARGS__))

// ------------------------------------------------------------------------------------ cases

struct Case {
  std::string name;
  std::vector<std::string> parts;  // per-output results
  std::vector<std::string> fails;
};
Case* g_case = nullptr;
int g_pass = 0, g_fail = 0, g_skip = 0;
bool g_poisoned = false;
std::string g_suffix;  // appended to case names (the repeat pass of the leak check)

void note(const std::string& s) {
  if (g_case) g_case->parts.push_back(s);
}
void fail(const std::string& s) {
  if (g_case) g_case->fails.push_back(s);
}

bool selected(const std::string& name) {
  for (const auto& x : opt.exclude)
    if (name.find(x) != std::string::npos) return false;
  return opt.filter.empty() || name.find(opt.filter) != std::string::npos;
}

void run_case(const std::string& name_, const std::function<void()>& body) {
  const std::string name = name_ + g_suffix;
  if (g_poisoned || !selected(name)) return;
  Case c;
  c.name = name;
  g_case = &c;
  bool skipped = false;
  std::string skip_msg;
  try {
    body();
  } catch (const Failure& f) {
    c.fails.push_back(f.msg);
  } catch (const Skip& s) {
    skipped = true;
    skip_msg = s.msg;
  } catch (const std::exception& e) {
    c.fails.push_back(std::string("exception: ") + e.what());
  }
  g_case = nullptr;
  std::string line;
  for (const auto& p : c.parts) line += " | " + p;
  if (skipped && c.fails.empty()) {
    ++g_skip;
    std::printf("SKIP %s: %s\n", name.c_str(), skip_msg.c_str());
  } else if (c.fails.empty()) {
    ++g_pass;
    std::printf("PASS %s%s\n", name.c_str(), line.c_str());
  } else {
    ++g_fail;
    std::string why;
    for (const auto& f : c.fails) why += (why.empty() ? "" : "; ") + f;
    std::printf("FAIL %s%s | %s\n", name.c_str(), line.c_str(), why.c_str());
  }
  std::fflush(stdout);
  if (g.crate_cuda_status && g.crate_cuda_status() != CRATE_OK) {
    g_poisoned = true;
    ++g_fail;
    std::printf("FAIL context poisoned after '%s': %s (stopping: every later call would fail)\n", name.c_str(),
                cuda_msg().c_str());
  }
}

// ------------------------------------------------------------------------------------- random

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
};
/** Inputs depend only on the seed and the case name (the same with or without --filter). */
Rng case_rng() {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (char c : g_case ? g_case->name : std::string()) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  return Rng(opt.seed ^ h);
}

std::vector<float> randn(Rng& r, size_t n, double std = 1.0) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(r.normal() * std);
  return v;
}
std::vector<float> uniform(Rng& r, size_t n, double lo, double hi) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(lo + (hi - lo) * r.uniform());
  return v;
}
std::vector<double> to64(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }
std::vector<float> to32(const std::vector<double>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = static_cast<float>(v[i]);
  return o;
}

// ------------------------------------------------------------------------------ device buffers

constexpr size_t kPad = 256;  // canary tail bytes after every buffer
uint8_t canary(size_t i) { return static_cast<uint8_t>(0xA5u ^ (i * 29u)); }

/** A device buffer from crate_cuda_malloc with a canary tail. Inputs remember their content and
 * are checked for modification when freed; every buffer's tail is checked when freed. */
struct DBuf {
  void* p = nullptr;
  size_t bytes = 0;
  bool input = false;
  std::string name;
  std::vector<uint8_t> content;  // inputs: the uploaded bytes
  DBuf() = default;
  DBuf(const DBuf&) = delete;
  DBuf& operator=(const DBuf&) = delete;
  DBuf(DBuf&& o) noexcept { *this = std::move(o); }
  DBuf& operator=(DBuf&& o) noexcept {
    std::swap(p, o.p);
    std::swap(bytes, o.bytes);
    std::swap(input, o.input);
    std::swap(name, o.name);
    std::swap(content, o.content);
    return *this;
  }
  ~DBuf() { release(); }
  void release() {
    if (!p) return;
    if (!g_poisoned && g.crate_cuda_memcpy && g.crate_cuda_status && g.crate_cuda_status() == CRATE_OK) {
      std::vector<uint8_t> h(bytes + kPad);
      if (g.crate_cuda_memcpy(h.data(), p, bytes + kPad, 1, nullptr) == CRATE_OK) {
        for (size_t i = 0; i < kPad; ++i)
          if (h[bytes + i] != canary(i)) {
            fail(fmt("%s: canary after byte %zu overwritten (write past the end)", name.c_str(), bytes));
            break;
          }
        if (input && std::memcmp(h.data(), content.data(), bytes) != 0)
          fail(fmt("%s: input buffer was modified by the kernel", name.c_str()));
      }
    }
    if (g.crate_cuda_free) {
      crate_status st = g.crate_cuda_free(p, nullptr);
      if (st != CRATE_OK) fail(fmt("crate_cuda_free(%s): %s: %s", name.c_str(), status_name(st), cuda_msg().c_str()));
    }
    p = nullptr;
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

DBuf dalloc(const std::string& name, size_t bytes, const void* init, uint8_t fill, bool input) {
  DBuf b;
  b.name = name;
  b.bytes = bytes;
  b.input = input;
  CU(crate_cuda_malloc, &b.p, bytes + kPad, nullptr);
  if (!b.p) throw Failure{"crate_cuda_malloc returned NULL for " + name};
  std::vector<uint8_t> h(bytes + kPad);
  if (init)
    std::memcpy(h.data(), init, bytes);
  else
    std::memset(h.data(), fill, bytes);
  for (size_t i = 0; i < kPad; ++i) h[bytes + i] = canary(i);
  if (input) b.content.assign(h.begin(), h.begin() + static_cast<ptrdiff_t>(bytes));
  CU(crate_cuda_memcpy, b.p, h.data(), bytes + kPad, 0, nullptr);
  return b;
}
template <class T>
DBuf din(const std::string& name, const std::vector<T>& v) {
  return dalloc(name, v.size() * sizeof(T), v.data(), 0, true);
}
/** An output initialised with 0xFF bytes (NaN for floats) so unwritten elements show. */
template <class T>
DBuf dout(const std::string& name, size_t n) {
  return dalloc(name, n * sizeof(T), nullptr, 0xFF, false);
}
/** An output with initial content (accumulated into, or checked for untouched padding). */
template <class T>
DBuf dinit(const std::string& name, const std::vector<T>& v) {
  return dalloc(name, v.size() * sizeof(T), v.data(), 0, false);
}
template <class T>
std::vector<T> down(const DBuf& b) {
  std::vector<T> v(b.bytes / sizeof(T));
  if (b.bytes) CU(crate_cuda_memcpy, v.data(), b.p, b.bytes, 1, nullptr);
  return v;
}

// ---------------------------------------------------------------------------------- comparing

/** Relative floors of the bound (times --tol-scale), per kind of output. */
struct Tol {
  static constexpr double out = 2e-6;    // forward outputs of f32-accumulating kernels
  static constexpr double grad = 5e-6;   // gradients
  static constexpr double f64i = 2e-5;   // kernels whose CPU f32 path computes in f64 (coding rate, TSSA)
  static constexpr double f64ig = 5e-5;  // their gradients / parameter gradients summed over tokens
};

/** FlashAttention's criterion on one output (see the header). Infinities must match exactly; a
 * NaN in the CUDA result where the reference is finite fails. */
void check_out(const char* what, const std::vector<float>& cu, const std::vector<float>& cpu,
               const std::vector<double>& ref, double floor_rel) {
  if (cu.size() != ref.size() || cpu.size() != ref.size())
    throw Failure{fmt("%s: size mismatch (%zu, %zu, %zu)", what, cu.size(), cpu.size(), ref.size())};
  double ec = 0, ep = 0, scale = 0;
  size_t worst = 0, bad_inf = 0, nan = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double r = ref[i];
    if (std::isnan(r)) continue;  // not produced by these tests; never compared
    if (std::isinf(r)) {
      if (static_cast<double>(cu[i]) != r) ++bad_inf;
      continue;
    }
    if (std::isnan(cu[i]) || std::isinf(cu[i])) {
      ++nan;
      worst = i;
      continue;
    }
    scale = std::max(scale, std::fabs(r));
    const double d = std::fabs(static_cast<double>(cu[i]) - r);
    if (d > ec) {
      ec = d;
      worst = i;
    }
    if (std::isfinite(cpu[i])) ep = std::max(ep, std::fabs(static_cast<double>(cpu[i]) - r));
  }
  const double bound = 2 * ep + floor_rel * opt.tol_scale * std::max(scale, 1e-30);
  note(fmt("%s err %.2e cpu %.2e bound %.2e", what, ec, ep, bound));
  if (nan)
    fail(fmt("%s: %zu non-finite values where the reference is finite (first at %zu: %g vs %g)", what, nan, worst,
             static_cast<double>(cu[worst]), ref[worst]));
  if (bad_inf) fail(fmt("%s: %zu infinite reference values not reproduced", what, bad_inf));
  if (ec > bound)
    fail(fmt("%s: max|cuda-f64| %.3e > bound %.3e (at %zu: cuda %.9g, f64 %.9g, cpu f32 %.9g)", what, ec, bound, worst,
             static_cast<double>(cu[worst]), ref[worst], static_cast<double>(cpu[worst])));
}

std::vector<uint8_t> key_mask(Rng& r, int64_t B, int64_t N, const std::string& kind) {
  std::vector<uint8_t> m(static_cast<size_t>(B * N), 1);
  if (kind == "none") return m;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < N; ++j) m[b * N + j] = r.uniform() < 0.3 ? 0 : 1;
  m[0] = 0;  // key 0 of batch 0 masked: with causal, query 0 of batch 0 has no valid key
  if (B > 1)
    for (int64_t j = 0; j < N; ++j) m[(B - 1) * N + j] = 0;  // last batch: every row fully masked
  return m;
}

// ====================================================================================== runtime

void runtime_cases() {
  run_case("runtime: crate_cuda_status OK and default stream", [] {
    crate_status st = CU_ST(crate_cuda_status);
    if (st != CRATE_OK) fail(fmt("crate_cuda_status: %s: %s", status_name(st), cuda_msg().c_str()));
    if (!g.crate_cuda_default_stream) missing_entry("crate_cuda_default_stream");
    void* s = g.crate_cuda_default_stream();
    note(fmt("stream %p", s));
    if (!s) fail("crate_cuda_default_stream() returned NULL after crate_cuda_init");
    if (!g.crate_cuda_gemm_backend) missing_entry("crate_cuda_gemm_backend");
    const char* b = g.crate_cuda_gemm_backend();
    note(std::string("gemm backend: ") + (b ? b : "(null)"));
  });

  run_case("runtime: malloc(0) gives NULL and CRATE_OK", [] {
    void* p = reinterpret_cast<void*>(0x1);
    CU(crate_cuda_malloc, &p, 0, nullptr);
    if (p) fail(fmt("malloc(0) gave %p, expected NULL", p));
  });

  run_case("runtime: malloc/free/stats/empty_cache", [] {
    crate_cuda_memory_stats s0{}, s1{}, s2{}, s3{}, s4{};
    CU(crate_cuda_memory_stats_get, &s0);
    void* a = nullptr;
    const size_t small = 1000, big = 3u << 20;
    CU(crate_cuda_malloc, &a, small, nullptr);
    CU(crate_cuda_memory_stats_get, &s1);
    if (!a) fail("malloc(1000) gave NULL");
    if (s1.allocated_bytes < s0.allocated_bytes + small)
      fail(fmt("allocated_bytes %zu after malloc(1000), was %zu", s1.allocated_bytes, s0.allocated_bytes));
    if (s1.num_allocs != s0.num_allocs + 1)
      fail(fmt("num_allocs %lld -> %lld after one malloc", (long long)s0.num_allocs, (long long)s1.num_allocs));
    if (s1.peak_allocated_bytes < s1.allocated_bytes) fail("peak_allocated_bytes < allocated_bytes");
    if (s1.device_total_bytes == 0 || s1.device_free_bytes > s1.device_total_bytes)
      fail(fmt("device free/total %zu/%zu", s1.device_free_bytes, s1.device_total_bytes));
    CU(crate_cuda_free, a, nullptr);
    CU(crate_cuda_memory_stats_get, &s2);
    if (s2.allocated_bytes != s0.allocated_bytes)
      fail(fmt("allocated_bytes %zu after free, expected %zu", s2.allocated_bytes, s0.allocated_bytes));
    if (s2.cached_bytes < small) fail(fmt("cached_bytes %zu after freeing 1000 B (block not cached)", s2.cached_bytes));
    // same size, same stream: served from the cache (no new cudaMalloc)
    void* b = nullptr;
    CU(crate_cuda_malloc, &b, small, nullptr);
    CU(crate_cuda_memory_stats_get, &s3);
    if (s3.num_device_allocs != s2.num_device_allocs)
      fail(fmt("re-malloc of a just-freed size on the same stream called cudaMalloc (%lld -> %lld)",
               (long long)s2.num_device_allocs, (long long)s3.num_device_allocs));
    CU(crate_cuda_free, b, nullptr);
    void* c = nullptr;
    CU(crate_cuda_malloc, &c, big, nullptr);
    CU(crate_cuda_free, c, nullptr);
    CU(crate_cuda_synchronize, nullptr);
    if (!g.crate_cuda_empty_cache) missing_entry("crate_cuda_empty_cache");
    const size_t released = g.crate_cuda_empty_cache();
    CU(crate_cuda_memory_stats_get, &s4);
    note(fmt("released %zu B, cached %zu, allocated %zu, peak %zu, device allocs %lld", released, s4.cached_bytes,
             s4.allocated_bytes, s4.peak_allocated_bytes, (long long)s4.num_device_allocs));
    if (released < big) fail(fmt("empty_cache released %zu B, expected >= %zu (the freed 3 MiB block)", released, big));
    if (s4.cached_bytes != 0) fail(fmt("cached_bytes %zu after empty_cache", s4.cached_bytes));
    if (s4.allocated_bytes != s0.allocated_bytes) fail("allocated_bytes changed by empty_cache");
  });

  run_case("runtime: 1 PiB request -> CRATE_ERR_OUT_OF_MEMORY with the bytes in the message", [] {
    const size_t pib = size_t(1) << 50;
    void* p = nullptr;
    crate_status st = CU_ST(crate_cuda_malloc, &p, pib, nullptr);
    const std::string m = cuda_msg();
    note("message: " + m);
    if (st != CRATE_ERR_OUT_OF_MEMORY) fail(fmt("status %s, expected CRATE_ERR_OUT_OF_MEMORY", status_name(st)));
    if (p) fail("pointer set on failure");
    if (m.find("1125899906842624") == std::string::npos && m.find("PiB") == std::string::npos &&
        m.find("1024 TiB") == std::string::npos && m.find("1024.0 TiB") == std::string::npos)
      fail("message does not state the bytes asked (1125899906842624 / 1 PiB)");
    if (CU_ST(crate_cuda_status) != CRATE_OK) fail("OOM poisoned the context (it must not be sticky)");
    void* q = nullptr;
    CU(crate_cuda_malloc, &q, 1u << 20, nullptr);
    CU(crate_cuda_free, q, nullptr);
  });

  run_case("runtime: free of a bad pointer / double free -> error, not a crash", [] {
    crate_status st = CU_ST(crate_cuda_free, reinterpret_cast<void*>(uintptr_t(0xdead0000)), nullptr);
    note(fmt("bad pointer: %s: %s", status_name(st), cuda_msg().c_str()));
    if (st == CRATE_OK) fail("free(0xdead0000) returned CRATE_OK");
    void* p = nullptr;
    CU(crate_cuda_malloc, &p, 4096, nullptr);
    CU(crate_cuda_free, p, nullptr);
    st = CU_ST(crate_cuda_free, p, nullptr);
    note(fmt("double free: %s", status_name(st)));
    if (st == CRATE_OK) fail("double free returned CRATE_OK");
    st = CU_ST(crate_cuda_free, nullptr, nullptr);
    note(fmt("free(NULL): %s", status_name(st)));
    if (CU_ST(crate_cuda_status) != CRATE_OK) fail("a bad free poisoned the context");
  });

  run_case("runtime: memcpy h2d/d2d/d2h round trip, staged h2d, bad kind", [] {
    Rng r = case_rng();
    for (size_t n : {size_t(1), size_t(1001), size_t(1) << 20, (size_t(5) << 20) + 3}) {
      std::vector<uint8_t> h(n), back(n);
      for (auto& x : h) x = static_cast<uint8_t>(r.next());
      void *a = nullptr, *b = nullptr;
      CU(crate_cuda_malloc, &a, n, nullptr);
      CU(crate_cuda_malloc, &b, n, nullptr);
      std::vector<uint8_t> staged = h;
      CU(crate_cuda_memcpy, a, staged.data(), n, 0, nullptr);
      std::fill(staged.begin(), staged.end(), 0);  // host memory may be reused on return (staged)
      CU(crate_cuda_memcpy, b, a, n, 2, nullptr);
      CU(crate_cuda_memcpy, back.data(), b, n, 1, nullptr);
      if (back != h) fail(fmt("round trip of %zu bytes differs", n));
      CU(crate_cuda_free, a, nullptr);
      CU(crate_cuda_free, b, nullptr);
    }
    char x[16] = {0};
    void* d = nullptr;
    CU(crate_cuda_malloc, &d, 16, nullptr);
    crate_status st = CU_ST(crate_cuda_memcpy, d, x, 16, 7, nullptr);
    if (st != CRATE_ERR_INVALID_ARGUMENT)
      fail(fmt("memcpy kind 7: %s, expected CRATE_ERR_INVALID_ARGUMENT", status_name(st)));
    CU(crate_cuda_free, d, nullptr);
    CU(crate_cuda_synchronize, nullptr);
  });

  run_case("runtime: memcpy_d2h_async delivers the data through the callback", [] {
    struct State {
      std::atomic<int> calls{0};
      std::atomic<int> status{-1};
    } s;
    Rng r = case_rng();
    const size_t n = (size_t(3) << 20) + 17;
    std::vector<uint8_t> h(n), back(n, 0);
    for (auto& x : h) x = static_cast<uint8_t>(r.next());
    void* d = nullptr;
    CU(crate_cuda_malloc, &d, n, nullptr);
    CU(crate_cuda_memcpy, d, h.data(), n, 0, nullptr);
    auto done = [](void* user, crate_status st) {
      auto* st_ = static_cast<State*>(user);
      st_->status = static_cast<int>(st);
      st_->calls.fetch_add(1);
    };
    CU(crate_cuda_memcpy_d2h_async, back.data(), d, n, nullptr, +done, &s);
    const auto t0 = std::chrono::steady_clock::now();
    while (s.calls.load() == 0 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    note(fmt("callback after %.1f ms",
             std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()));
    if (s.calls.load() != 1)
      fail(fmt("callback called %d times, expected once (20 s timeout)", s.calls.load()));
    else if (s.status.load() != CRATE_OK)
      fail(fmt("callback status %d", s.status.load()));
    else if (back != h)
      fail("bytes delivered to dst differ");
    CU(crate_cuda_synchronize, nullptr);
    CU(crate_cuda_free, d, nullptr);
  });

  run_case("runtime: invalid sizes -> CRATE_ERR_INVALID_ARGUMENT (not sticky); empty sizes -> OK", [] {
    // finite inputs (zeros), so only the size is wrong; the CUDA status must equal the CPU's
    DBuf x = dinit("x", std::vector<float>(64, 0.f)), y = dout<float>("y", 64), l = dout<float>("L", 64);
    std::vector<float> hx(64, 0.f), hy(64), hl(64);
    auto same = [](const char* what, crate_status cuda, crate_status cpu) {
      if (cuda != cpu) fail(fmt("%s: CUDA %s, CPU %s", what, status_name(cuda), status_name(cpu)));
    };
    same("mssa H=0",
         CU_ST(crate_cuda_mssa_forward_f32, x.as<float>(), y.as<float>(), l.as<float>(), 1, 4, 0, 4, 0.5f, 0, nullptr,
               nullptr),
         crate_mssa_forward_f32(hx.data(), hy.data(), hl.data(), 1, 4, 0, 4, 0.5f, 0, nullptr));
    same("mssa P=NULL",
         CU_ST(crate_cuda_mssa_forward_f32, nullptr, y.as<float>(), l.as<float>(), 1, 4, 1, 4, 0.5f, 0, nullptr,
               nullptr),
         crate_mssa_forward_f32(nullptr, hy.data(), hl.data(), 1, 4, 1, 4, 0.5f, 0, nullptr));
    same("ista d=0",
         CU_ST(crate_cuda_ista_forward_f32, x.as<float>(), x.as<float>(), y.as<float>(), 4, 0, 0.1f, 0.1f, nullptr),
         crate_ista_forward_f32(hx.data(), hx.data(), hy.data(), 4, 0, 0.1f, 0.1f, nullptr));
    same("tssa H=0",
         CU_ST(crate_cuda_tssa_forward_f32, x.as<float>(), x.as<float>(), y.as<float>(), nullptr, nullptr, nullptr, 1,
               4, 0, 4, nullptr),
         crate_tssa_forward_f32(hx.data(), hx.data(), hy.data(), nullptr, nullptr, nullptr, 1, 4, 0, 4));
    same("logdet m=-1",
         CU_ST(crate_cuda_logdet_gram_forward_f32, x.as<float>(), x.as<float>(), y.as<float>(), 1, -1, 4, nullptr,
               nullptr),
         crate_logdet_gram_forward_f32(hx.data(), hx.data(), hy.data(), 1, -1, 4, nullptr));
    crate_status st = CU_ST(crate_cuda_gemm_f32, 0, 0, -1, 4, 4, 1.f, x.as<float>(), 4, x.as<float>(), 4, 0.f,
                            y.as<float>(), 4, 1, 0, 0, 0, 0, nullptr);
    if (st != CRATE_ERR_INVALID_ARGUMENT) fail(fmt("gemm M=-1: %s", status_name(st)));
    st = CU_ST(crate_cuda_gemm_f32, 0, 0, 4, 4, 4, 1.f, x.as<float>(), 2, x.as<float>(), 4, 0.f, y.as<float>(), 4, 1, 0,
               0, 0, 0, nullptr);
    if (st != CRATE_ERR_INVALID_ARGUMENT) fail(fmt("gemm lda < K: %s", status_name(st)));
    if (CU_ST(crate_cuda_status) != CRATE_OK) fail("an argument error poisoned the context");
    // empty problems are no-ops
    CU(crate_cuda_mssa_forward_f32, x.as<float>(), y.as<float>(), l.as<float>(), 2, 0, 2, 16, 0.25f, 1, nullptr,
       nullptr);
    CU(crate_cuda_ista_forward_f32, x.as<float>(), x.as<float>(), y.as<float>(), 0, 4, 0.1f, 0.1f, nullptr);
    CU(crate_cuda_layernorm_forward_f32, x.as<float>(), nullptr, nullptr, y.as<float>(), l.as<float>(), l.as<float>(),
       0, 8, 1e-5, nullptr);
    CU(crate_cuda_gemm_f32, 0, 0, 0, 4, 4, 1.f, x.as<float>(), 4, x.as<float>(), 4, 0.f, y.as<float>(), 4, 1, 0, 0, 0,
       0, nullptr);
    DBuf cnt = dinit("counted", std::vector<int64_t>{77});
    CU(crate_cuda_cross_entropy_forward_f32, x.as<float>(), reinterpret_cast<const int32_t*>(x.p), y.as<float>(),
       l.as<float>(), cnt.as<int64_t>(), 0, 5, 0.0, -100, nullptr);
    if (down<int64_t>(cnt)[0] != 0) fail("cross_entropy rows=0: counted != 0");
    CU(crate_cuda_synchronize, nullptr);
  });
}

// ========================================================================================= GEMM

uint16_t f32_to_bf16(float f) {  // round to nearest even (NaN not produced here)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half, written arithmetically (frexp / ldexp, nearest-even through nearbyint) rather than with
// bit tricks, so that it checks the emulator's and the device's conversions independently.
uint16_t f32_to_f16(float f) {  // round to nearest even; overflow -> inf (NaN not produced here)
  const double a = std::fabs(static_cast<double>(f));
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  if (a == 0) return sign;
  int e = 0;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1): the unit in the last place is 2^(e - 11), at least 2^-24
  const int ulp_exp = std::max(e - 11, -24);
  const double q = std::nearbyint(std::ldexp(a, -ulp_exp));  // a in ulps, rounded to even
  const double r = std::ldexp(q, ulp_exp);                   // the rounded magnitude
  if (r >= 65536.0) return static_cast<uint16_t>(sign | 0x7C00);
  if (r < std::ldexp(1.0, -14)) return static_cast<uint16_t>(sign | static_cast<uint16_t>(std::ldexp(r, 24)));
  int re = 0;
  const double rm = std::frexp(r, &re);  // r = rm 2^re: biased exponent re - 1 + 15, mantissa (2 rm - 1) 2^10
  return static_cast<uint16_t>(sign | ((re + 14) << 10) | static_cast<uint16_t>((2 * rm - 1) * 1024));
}
float f16_to_f32(uint16_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const double v = e == 0 ? std::ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp(1024 + m, e - 25);
  return static_cast<float>(h & 0x8000 ? -v : v);
}

// IEEE half or bf16 (uint16_t bits) from / to f32, by kind.
uint16_t to_half(bool f16, float f) { return f16 ? f32_to_f16(f) : f32_to_bf16(f); }
float from_half(bool f16, uint16_t h) { return f16 ? f16_to_f32(h) : bf16_to_f32(h); }

/** Selects the own GEMM or cuBLAS for a case; skips the case when cuBLAS is asked for but absent. */
void use_gemm_backend(bool own) {
  crate_status fs = CU_ST(crate_cuda_gemm_force_own, own ? 1 : 0);
  if (fs != CRATE_OK) {
    if (!own) throw Skip{"cuBLAS not available: " + cuda_msg()};
    cu_check("crate_cuda_gemm_force_own(1)", fs);
  }
  if (!own && g.crate_cuda_gemm_backend) {
    const char* be = g.crate_cuda_gemm_backend();
    if (be && std::strncmp(be, "own", 3) == 0) throw Skip{std::string("cuBLAS not loaded: ") + be};
  }
}

/** Row-major storage of a GEMM case: A stored ra x ca (op(A) = M x K), B rb x cb, rows padded by
 * `pad`; batch strides (0 for batch 1, and for B when it is broadcast) and element counts. */
struct GemmLayout {
  int64_t ra, ca, lda, rb, cb, ldb, ldc, sa, sb, sc;
  size_t na, nb, nc;
  GemmLayout(int ta, int tb, int64_t M, int64_t N, int64_t K, int64_t batch, bool bcast_b, int64_t pad)
      : ra(ta ? K : M),
        ca(ta ? M : K),
        lda(ca + pad),
        rb(tb ? N : K),
        cb(tb ? K : N),
        ldb(cb + pad),
        ldc(N + pad),
        sa(batch > 1 ? ra * lda : 0),
        sb((batch > 1 && !bcast_b) ? rb * ldb : 0),
        sc(batch > 1 ? M * ldc : 0),
        na(static_cast<size_t>((batch - 1) * sa + ra * lda)),
        nb(static_cast<size_t>((batch - 1) * sb + rb * ldb)),
        nc(static_cast<size_t>((batch - 1) * sc + M * ldc)) {}
};

std::string gemm_case_name(bool own, const char* kind, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                           float beta, int64_t batch, bool bcast_b, int64_t pad) {
  return fmt("gemm %s %s ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g batch=%lld%s pad=%lld",
             own ? "own" : "cublas", kind, ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta,
             (long long)batch, bcast_b ? " bcastB" : "", (long long)pad);
}

enum GemmMode { kF32 = 0, kTF32 = 1, kBF16 = 2, kF16 = 3 };

void gemm_case(bool own, GemmMode mode, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
               int64_t batch, bool bcast_b, int64_t pad) {
  const char* mode_name = mode == kF32 ? "f32" : mode == kTF32 ? "tf32" : mode == kBF16 ? "bf16" : "f16";
  const bool half_in = mode == kBF16 || mode == kF16;
  auto to16 = [&](float f) { return to_half(mode == kF16, f); };
  auto from16 = [&](uint16_t h) { return from_half(mode == kF16, h); };
  const std::string name = gemm_case_name(own, mode_name, ta, tb, M, N, K, alpha, beta, batch, bcast_b, pad);
  run_case(name, [&] {
    use_gemm_backend(own);
    Rng r = case_rng();
    const auto [ra, ca, lda, rb, cb, ldb, ldc, sa, sb, sc, na, nb, nc] =
        GemmLayout(ta, tb, M, N, K, batch, bcast_b, pad);
    const float qnan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> A(na, qnan), Bm(nb, qnan), C0(nc, qnan);  // padding stays NaN (must not be read)
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t i = 0; i < ra; ++i)
        for (int64_t j = 0; j < ca; ++j) A[b * sa + i * lda + j] = static_cast<float>(r.normal());
      if (b == 0 || sb)
        for (int64_t i = 0; i < rb; ++i)
          for (int64_t j = 0; j < cb; ++j) Bm[b * sb + i * ldb + j] = static_cast<float>(r.normal());
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j)
          C0[b * sc + i * ldc + j] = beta == 0.f ? qnan : static_cast<float>(r.normal());  // beta = 0: C not read
    }
    // effective inputs (bf16 / f16: rounded; NaN padding stays NaN)
    std::vector<uint16_t> A16, B16;
    std::vector<float> Ae = A, Be = Bm;
    if (half_in) {
      A16.resize(na);
      B16.resize(nb);
      for (size_t i = 0; i < na; ++i) {
        A16[i] = std::isnan(A[i]) ? 0xFFFF : to16(A[i]);
        Ae[i] = from16(A16[i]);
      }
      for (size_t i = 0; i < nb; ++i) {
        B16[i] = std::isnan(Bm[i]) ? 0xFFFF : to16(Bm[i]);
        Be[i] = from16(B16[i]);
      }
    }
    DBuf dA = half_in ? din("A", A16) : din("A", A);
    DBuf dB = half_in ? din("B", B16) : din("B", Bm);
    DBuf dC = dinit("C", C0);
    if (mode == kBF16)
      CU(crate_cuda_gemm_bf16, ta, tb, M, N, K, alpha, dA.as<uint16_t>(), lda, dB.as<uint16_t>(), ldb, beta,
         dC.as<float>(), ldc, batch, sa, sb, sc, nullptr);
    else if (mode == kF16)
      CU(crate_cuda_gemm_f16, ta, tb, M, N, K, alpha, dA.as<uint16_t>(), lda, dB.as<uint16_t>(), ldb, beta,
         dC.as<float>(), ldc, batch, sa, sb, sc, nullptr);
    else
      CU(crate_cuda_gemm_f32, ta, tb, M, N, K, alpha, dA.as<float>(), lda, dB.as<float>(), ldb, beta, dC.as<float>(),
         ldc, batch, sa, sb, sc, mode == kTF32 ? 1 : 0, nullptr);
    const std::vector<float> C = down<float>(dC);
    // f32 accumulation: u * max(16, 2 sqrt(K)); TF32 adds the rounding of both inputs to 10
    // mantissa bits (2^-9 covers truncation as well as rounding); bf16 / f16 inputs are exact in the
    // reference, so only the f32 accumulation term remains.
    const double gamma = std::ldexp(1.0, -24) * std::max(16.0, 2.0 * std::sqrt(static_cast<double>(K))) +
                         (mode == kTF32 ? std::ldexp(1.0, -9) : 0.0);
    // vs the unrounded f32 inputs: each input off by at most u (bf16 2^-8, f16 2^-11), a product by 2u
    const double gamma_raw = std::ldexp(1.0, mode == kF16 ? -10 : -7);
    double worst = 0, worst_raw = 0, max_err = 0;
    size_t bad = 0, bad_raw = 0, pad_touched = 0;
    std::string first;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) {
          double s = 0, sabs = 0, s_raw = 0;
          for (int64_t k = 0; k < K; ++k) {
            const size_t ia = static_cast<size_t>(b * sa + (ta ? k * lda + i : i * lda + k));
            const size_t ib = static_cast<size_t>(b * sb + (tb ? j * ldb + k : k * ldb + j));
            const double pa = Ae[ia], pb = Be[ib];
            s += pa * pb;
            sabs += std::fabs(pa * pb);
            if (half_in) s_raw += static_cast<double>(A[ia]) * Bm[ib];
          }
          const size_t ic = static_cast<size_t>(b * sc + i * ldc + j);
          const double c0 = beta == 0.f ? 0.0 : static_cast<double>(C0[ic]);
          const double ref = alpha * s + beta * c0;
          const double scl = std::fabs(alpha) * sabs + std::fabs(beta) * std::fabs(c0);
          const double err = std::fabs(static_cast<double>(C[ic]) - ref);
          const double tol = gamma * scl + 1e-30;
          max_err = std::max(max_err, err / std::max(scl, 1e-30));
          if (!(err <= tol)) {
            if (!bad)
              first = fmt("C[%lld,%lld,%lld] = %.9g, ref %.9g, tol %.3g%s", (long long)b, (long long)i, (long long)j,
                          static_cast<double>(C[ic]), ref, tol,
                          beta == 0.f && std::isnan(C[ic])
                              ? " (beta = 0 but C's initial NaN reached the result: C must not be read when beta = 0)"
                              : "");
            ++bad;
          }
          worst = std::max(worst, err / tol);
          if (half_in) {
            const double e2 = std::fabs(static_cast<double>(C[ic]) - (alpha * s_raw + beta * c0));
            const double t2 = gamma_raw * scl + 1e-30;
            if (!(e2 <= t2)) ++bad_raw;
            worst_raw = std::max(worst_raw, e2 / t2);
          }
        }
        for (int64_t j = N; j < ldc; ++j) {  // padding columns of C must be untouched (NaN bit pattern)
          const size_t ic = static_cast<size_t>(b * sc + i * ldc + j);
          if (std::memcmp(&C[ic], &C0[ic], 4) != 0) ++pad_touched;
        }
      }
    note(fmt("max err/scale %.2e (gamma %.2e), worst err/tol %.3f", max_err, gamma, worst));
    if (half_in) note(fmt("vs unrounded inputs: worst err/tol(%g) %.3f", gamma_raw, worst_raw));
    if (bad) fail(fmt("%zu elements out of tolerance; first %s", bad, first.c_str()));
    if (bad_raw) fail(fmt("%zu elements off the unrounded-input product by more than %g relative", bad_raw, gamma_raw));
    if (pad_touched) fail(fmt("%zu padding elements of C (ldc > N) were written", pad_touched));
    const char* be = g.crate_cuda_gemm_backend ? g.crate_cuda_gemm_backend() : "";
    if (own && be && std::strncmp(be, "own", 3) != 0) fail(std::string("forced own GEMM but backend is ") + be);
  });
}

// 16-bit A, B and C (crate_cuda_gemm_bf16_bf16, crate_cuda_gemm_f16_f16): C = round(alpha acc + beta
// C), against the f64 product of the 16-bit inputs: |C - ref| <= u |ref| + gamma scl (1 + u), u =
// 2^-8 (bf16) or 2^-11 (f16) (one rounding of the f32 result, whose error is the f32 gamma bound);
// padding of C untouched, C not read when beta = 0.
void gemm_halfout_case(bool own, bool f16, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                       int64_t batch, bool bcast_b, int64_t pad) {
  const std::string name =
      gemm_case_name(own, f16 ? "f16->f16" : "bf16->bf16", ta, tb, M, N, K, alpha, beta, batch, bcast_b, pad);
  auto to16 = [&](float f) { return to_half(f16, f); };
  auto from16 = [&](uint16_t h) { return from_half(f16, h); };
  run_case(name, [&] {
    use_gemm_backend(own);
    Rng r = case_rng();
    const auto [ra, ca, lda, rb, cb, ldb, ldc, sa, sb, sc, na, nb, nc] =
        GemmLayout(ta, tb, M, N, K, batch, bcast_b, pad);
    const uint16_t nan16 = 0xFFFF;
    std::vector<uint16_t> A(na, nan16), Bm(nb, nan16), C0(nc, nan16);  // padding NaN (must not be read)
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t i = 0; i < ra; ++i)
        for (int64_t j = 0; j < ca; ++j) A[b * sa + i * lda + j] = to16(static_cast<float>(r.normal()));
      if (b == 0 || sb)
        for (int64_t i = 0; i < rb; ++i)
          for (int64_t j = 0; j < cb; ++j) Bm[b * sb + i * ldb + j] = to16(static_cast<float>(r.normal()));
      if (beta != 0.f)
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) C0[b * sc + i * ldc + j] = to16(static_cast<float>(r.normal()));
    }
    DBuf dA = din("A", A), dB = din("B", Bm), dC = dinit("C", C0);
    if (f16)
      CU(crate_cuda_gemm_f16_f16, ta, tb, M, N, K, alpha, dA.as<uint16_t>(), lda, dB.as<uint16_t>(), ldb, beta,
         dC.as<uint16_t>(), ldc, batch, sa, sb, sc, nullptr);
    else
      CU(crate_cuda_gemm_bf16_bf16, ta, tb, M, N, K, alpha, dA.as<uint16_t>(), lda, dB.as<uint16_t>(), ldb, beta,
         dC.as<uint16_t>(), ldc, batch, sa, sb, sc, nullptr);
    const std::vector<uint16_t> C = down<uint16_t>(dC);
    const double u = std::ldexp(1.0, f16 ? -11 : -8);
    const double gamma = std::ldexp(1.0, -24) * std::max(16.0, 2.0 * std::sqrt(static_cast<double>(K)));
    double worst = 0;
    size_t bad = 0, pad_touched = 0;
    std::string first;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j) {
          double sum = 0, sabs = 0;
          for (int64_t k = 0; k < K; ++k) {
            const double pa = from16(A[static_cast<size_t>(b * sa + (ta ? k * lda + i : i * lda + k))]);
            const double pb = from16(Bm[static_cast<size_t>(b * sb + (tb ? j * ldb + k : k * ldb + j))]);
            sum += pa * pb;
            sabs += std::fabs(pa * pb);
          }
          const size_t ic = static_cast<size_t>(b * sc + i * ldc + j);
          const double c0 = beta == 0.f ? 0.0 : static_cast<double>(from16(C0[ic]));
          const double ref = alpha * sum + beta * c0;
          const double scl = std::fabs(alpha) * sabs + std::fabs(beta) * std::fabs(c0);
          const double got = from16(C[ic]);
          const double err = std::fabs(got - ref);
          const double tol = u * std::fabs(ref) + gamma * scl * (1 + u) + 1e-30;
          if (!(err <= tol)) {
            if (!bad)
              first = fmt("C[%lld,%lld,%lld] = %.9g, ref %.9g, tol %.3g", (long long)b, (long long)i, (long long)j, got,
                          ref, tol);
            ++bad;
          }
          worst = std::max(worst, err / tol);
        }
        for (int64_t j = N; j < ldc; ++j)
          if (C[static_cast<size_t>(b * sc + i * ldc + j)] != C0[static_cast<size_t>(b * sc + i * ldc + j)])
            ++pad_touched;
      }
    note(fmt("worst err/tol %.3f (u 2^-%d, gamma %.2e)", worst, f16 ? 11 : 8, gamma));
    if (bad) fail(fmt("%zu elements out of tolerance; first %s", bad, first.c_str()));
    if (pad_touched) fail(fmt("%zu padding elements of C (ldc > N) were written", pad_touched));
  });
}

void gemm_cases() {
  struct S {
    int64_t M, N, K;
  };
  std::vector<S> shapes = opt.small ? std::vector<S>{{1, 1, 1}, {7, 33, 31}, {33, 65, 63}}
                                    : std::vector<S>{{1, 1, 1},      {7, 33, 31},     {32, 32, 32},    {33, 65, 63},
                                                     {64, 64, 64},   {65, 127, 129},  {127, 129, 65},  {128, 128, 256},
                                                     {197, 64, 197}, {256, 256, 256}, {513, 129, 1024}};
  for (int own : {1, 0}) {
    int idx = 0;
    for (const S& s : shapes)
      for (int ta : {0, 1})
        for (int tb : {0, 1}) {
          const int v = idx++;
          const bool ab = v % 3 == 1;
          gemm_case(own, kF32, ta, tb, s.M, s.N, s.K, ab ? 0.5f : 1.f, ab ? -0.75f : 0.f, v % 4 == 2 ? 3 : 1,
                    v % 8 == 6, v % 5 == 3 ? 3 : 0);
        }
    const std::vector<S> sub =
        opt.small ? std::vector<S>{{33, 65, 63}}
                  : std::vector<S>{{7, 33, 31}, {64, 64, 64}, {65, 127, 129}, {256, 256, 256}, {513, 129, 1024}};
    idx = 0;
    for (const S& s : sub)
      for (int t : {0, 1, 2}) {
        const int v = idx++;
        gemm_case(own, kTF32, t == 2, t == 1, s.M, s.N, s.K, 1.f, v % 2 ? 0.5f : 0.f, v % 3 == 1 ? 2 : 1, v % 6 == 4,
                  0);
        gemm_case(own, kBF16, t == 2, t == 1, s.M, s.N, s.K, v % 2 ? 0.5f : 1.f, v % 2 ? 1.f : 0.f, v % 3 == 2 ? 2 : 1,
                  v % 6 == 5, v % 4 == 1 ? 5 : 0);
        gemm_halfout_case(own, false, t == 1, t == 2, s.M, s.N, s.K, v % 2 ? -0.5f : 1.f, v % 2 ? 0.75f : 0.f,
                          v % 3 == 1 ? 2 : 1, v % 6 == 4, v % 4 == 2 ? 3 : 0);
        gemm_case(own, kF16, t == 1, t == 2, s.M, s.N, s.K, v % 2 ? 1.f : 0.5f, v % 2 ? 0.f : -1.f, v % 3 == 0 ? 2 : 1,
                  v % 6 == 3, v % 4 == 3 ? 5 : 0);
        gemm_halfout_case(own, true, t == 2, t == 1, s.M, s.N, s.K, v % 2 ? 1.f : -0.5f, v % 2 ? 0.f : 0.75f,
                          v % 3 == 2 ? 2 : 1, v % 6 == 1, v % 4 == 0 ? 3 : 0);
      }
  }
  if (g.crate_cuda_gemm_force_own) g.crate_cuda_gemm_force_own(0);  // back to the default choice
}

// ========================================================================================= MSSA

void mssa_case(int64_t B, int64_t N, int64_t H, int64_t p, int causal, const std::string& mask_kind) {
  const std::string name = fmt("mssa B=%lld N=%lld H=%lld p=%lld causal=%d mask=%s", (long long)B, (long long)N,
                               (long long)H, (long long)p, causal, mask_kind.c_str());
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t nP = static_cast<size_t>(B * N * H * p), nL = static_cast<size_t>(B * H * N);
    const std::vector<float> P = randn(r, nP);
    const std::vector<double> P64 = to64(P);
    const std::vector<uint8_t> mask = key_mask(r, B, N, mask_kind);
    const uint8_t* hm = mask_kind == "none" ? nullptr : mask.data();
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p)));
    std::vector<double> O64(nP), L64(nL);
    std::vector<float> O32(nP), L32(nL);
    CPU(crate_mssa_forward_f64, P64.data(), O64.data(), L64.data(), B, N, H, p, scale, causal, hm);
    CPU(crate_mssa_forward_f32, P.data(), O32.data(), L32.data(), B, N, H, p, scale, causal, hm);
    DBuf dP = din("P", P), dO = dout<float>("O", nP), dL = dout<float>("L", nL);
    DBuf dM = din("key_mask", mask);
    const uint8_t* dm = hm ? dM.as<uint8_t>() : nullptr;
    CU(crate_cuda_mssa_forward_f32, dP.as<float>(), dO.as<float>(), dL.as<float>(), B, N, H, p, scale, causal, dm,
       nullptr);
    check_out("O", down<float>(dO), O32, O64, Tol::out);
    check_out("L", down<float>(dL), L32, L64, Tol::out);
    // backward on the f64 forward's O and L (rounded for the f32 paths): all three see one mask
    const std::vector<float> G = randn(r, nP);
    const std::vector<double> G64 = to64(G);
    const std::vector<float> Oi = to32(O64), Li = to32(L64);
    std::vector<double> dP64(nP);
    std::vector<float> dP32(nP);
    CPU(crate_mssa_backward_f64, P64.data(), O64.data(), L64.data(), G64.data(), dP64.data(), B, N, H, p, scale, causal,
        hm);
    CPU(crate_mssa_backward_f32, P.data(), Oi.data(), Li.data(), G.data(), dP32.data(), B, N, H, p, scale, causal, hm);
    DBuf dOi = din("O(in)", Oi), dLi = din("L(in)", Li), dG = din("dO", G), ddP = dout<float>("dP", nP);
    CU(crate_cuda_mssa_backward_f32, dP.as<float>(), dOi.as<float>(), dLi.as<float>(), dG.as<float>(), ddP.as<float>(),
       B, N, H, p, scale, causal, dm, nullptr);
    check_out("dP", down<float>(ddP), dP32, dP64, Tol::grad);
  });
}

void mssa_cases() {
  const int64_t ps[4] = {16, 32, 64, 128};
  if (opt.small) {
    int i = 0;
    for (int64_t N : {1, 7, 33, 65})
      for (int causal : {0, 1}) {
        mssa_case(2, N, 2, ps[i % 4], causal, (i % 2) ? "some" : "none");
        ++i;
      }
    mssa_case(2, 33, 1, 128, 1, "some");
    return;
  }
  int i = 0;
  for (int64_t N : {1, 7, 31, 32, 33, 63, 64, 65, 127, 129, 197, 256}) {
    for (int causal : {0, 1}) {
      mssa_case(2, N, 2, ps[i % 4], causal, (i + causal) % 2 ? "some" : "none");
      mssa_case(2, N, 1, ps[(i + 2) % 4], causal, (i + causal) % 2 ? "none" : "some");
    }
    ++i;
  }
  for (int64_t p : ps) {
    mssa_case(3, 129, 2, p, 1, "some");
    mssa_case(1, 65, 3, p, 0, "none");
  }
  mssa_case(1, 1024, 2, 64, 0, "none");
  mssa_case(1, 1024, 2, 64, 1, "some");
  mssa_case(1, 1024, 1, 128, 0, "some");
  mssa_case(1, 1024, 1, 16, 1, "none");
}

// ==================================================================================== MSSA bf16
//
// The bf16 kernels against the CPU f64 kernels run on the bf16-rounded inputs (P, dO exactly
// representable in both), element-wise. The kernels compute scores, softmax statistics and
// accumulations in f32 from exact bf16 products, and round three things to bf16 (unit roundoff
// u = 2^-8: 8 significant bits; half an ulp is 2^-8 relative at worst, 2^-9 only just below a
// power of two): the probabilities A (forward) and E = scale (dS + dS^T), A^T (backward) before
// their products, as FlashAttention-2 does; the O the backward reads (D = rowsum(dO o O) then
// uses the rounded O); and every output once. Hence, with W_ik = sum_j A_ij |P_jk| (>= |O_ik|):
//   O:  |O - O64| <= u |O64| + (u + s) W                     (output rounding; A rounded in A V)
//   dP: |dP - dP64| <= u |dP64| + (u + s) (M_E + M_V + M_D) with
//       M_E = sum_i (|e1_ji| + |e2_ji|) |P_ik|, e1_ji = scale A_ji (dA_ji - D_j),
//             e2_ji = scale A_ij (dA_ij - D_i), dA_qk = dO_q . P_k   (E = e1 + e2, rounded),
//       M_V = sum_i A_ij |dO_ik|                                 (A^T dO with A rounded),
//       M_D = scale sum_i (A_ji Du_j + A_ij Du_i) |P_ik|, Du_i = sum_k |dO_ik O_ik|  (D from the
//             rounded O: |D' - D_i| <= u Du_i, entering E times scale A);
//   s = 2^-10 (a quarter of u) is the slack for everything at the f32 level: scores from p exact
//   products summed in f32 (relative ~p 2^-24 <= 2^-17 of sum |q||k|), expf, the f32 and
//   tensor-core accumulations, D, the f32-rounded L the backward gets.
//   L (f32, never rounded to bf16): |L - L64| <= 2^-24 (4 p scale max_j sum_k |P_ik P_jk| +
//       2 (N + 8) + 2 |L64|): a score error of at most 2 gamma_p (tensor-core accumulation) moves
//       both the max and log l; the N-term f32 row sum and exp/log add (N + 8) ulps.
// -inf (rows with no valid key) must match exactly, and O = dP = 0 exactly where W = M = 0.
// The reference's A, W, M come from a plain f64 loop here, whose O and L must also agree with
// crate_mssa_forward_f64 to 1e-9 (a check of the loop, not of the kernel).

/** f64 -> bf16 via f32 (the double rounding adds at most 2^-24 relative: inside the slack). */
uint16_t f64_to_bf16_bits(double v) { return f32_to_bf16(static_cast<float>(v)); }

/** Element-wise |cu - ref| <= tol[i] (tol from the derivation above). */
void check_bound(const char* what, const std::vector<float>& cu, const std::vector<double>& ref,
                 const std::vector<double>& tol) {
  size_t bad = 0, nonfinite = 0, first = 0;
  double worst = 0, max_err = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double r = ref[i], c = cu[i];
    if (std::isinf(r)) {
      if (c != r) {
        if (!bad && !nonfinite) first = i;
        ++bad;
      }
      continue;
    }
    if (!std::isfinite(c)) {
      if (!bad && !nonfinite) first = i;
      ++nonfinite;
      continue;
    }
    const double e = std::fabs(c - r);
    max_err = std::max(max_err, e);
    const double t = tol[i] * opt.tol_scale;
    if (!(e <= t)) {
      if (!bad && !nonfinite) first = i;
      ++bad;
    }
    if (t > 0) worst = std::max(worst, e / t);
  }
  note(fmt("%s max err %.2e, worst err/tol %.3f", what, max_err, worst));
  if (bad || nonfinite)
    fail(fmt("%s: %zu values out of tolerance, %zu non-finite (first at %zu: cuda %.9g, f64 %.9g, tol %.3g)", what, bad,
             nonfinite, first, static_cast<double>(cu[first]), ref[first], tol[first] * opt.tol_scale));
}

std::vector<float> bf16_values(const std::vector<uint16_t>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = bf16_to_f32(v[i]);
  return o;
}

void mssa_bf16_case(int64_t B, int64_t N, int64_t H, int64_t p, int causal, const std::string& mask_kind) {
  const std::string name = fmt("mssa bf16 B=%lld N=%lld H=%lld p=%lld causal=%d mask=%s", (long long)B, (long long)N,
                               (long long)H, (long long)p, causal, mask_kind.c_str());
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t nP = static_cast<size_t>(B * N * H * p), nL = static_cast<size_t>(B * H * N);
    const int64_t HP = H * p;
    std::vector<uint16_t> P16(nP), G16(nP);
    for (auto& x : P16) x = f32_to_bf16(static_cast<float>(r.normal()));
    const std::vector<float> Pf = bf16_values(P16);
    const std::vector<double> P64 = to64(Pf);
    const std::vector<uint8_t> mask = key_mask(r, B, N, mask_kind);
    const uint8_t* hm = mask_kind == "none" ? nullptr : mask.data();
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(p)));
    const double sc = scale, u = std::ldexp(1.0, -8), slack = std::ldexp(1.0, -10), e24 = std::ldexp(1.0, -24);
    std::vector<double> O64(nP), L64(nL);
    CPU(crate_mssa_forward_f64, P64.data(), O64.data(), L64.data(), B, N, H, p, sc, causal, hm);

    // the plain f64 loop: A (per head), W, the L tolerance; then (below) the backward's M
    std::vector<double> A(static_cast<size_t>(B * H * N * N), 0.0), tolO(nP), tolL(nL);
    const auto at = [&](int64_t b, int64_t i, int64_t h, int64_t k) {
      return static_cast<size_t>((b * N + i) * HP + h * p + k);
    };
    double loop_err = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        double* Ah = A.data() + static_cast<size_t>((b * H + h) * N * N);
        for (int64_t i = 0; i < N; ++i) {
          double m = -INFINITY, Mi = 0;
          std::vector<double> srow(static_cast<size_t>(N), -INFINITY);
          for (int64_t j = 0; j < N; ++j) {
            if ((hm && !hm[b * N + j]) || (causal && j > i)) continue;
            double s = 0, sa = 0;
            for (int64_t k = 0; k < p; ++k) {
              s += P64[at(b, i, h, k)] * P64[at(b, j, h, k)];
              sa += std::fabs(P64[at(b, i, h, k)] * P64[at(b, j, h, k)]);
            }
            srow[j] = sc * s;
            m = std::max(m, srow[j]);
            Mi = std::max(Mi, sa);
          }
          double l = 0;
          for (int64_t j = 0; j < N; ++j) l += (srow[j] == -INFINITY) ? 0.0 : std::exp(srow[j] - m);
          for (int64_t j = 0; j < N; ++j)
            Ah[i * N + j] = (m == -INFINITY || srow[j] == -INFINITY) ? 0.0 : std::exp(srow[j] - m) / l;
          const double L = m == -INFINITY ? -INFINITY : m + std::log(l);
          const size_t li = static_cast<size_t>((b * H + h) * N + i);
          if (!(L == L64[li])) loop_err = std::max(loop_err, std::fabs(L - L64[li]));
          tolL[li] = e24 * (4.0 * p * sc * Mi + 2.0 * (N + 8) + 2.0 * std::fabs(L));
          for (int64_t k = 0; k < p; ++k) {
            double o = 0, w = 0;
            for (int64_t j = 0; j < N; ++j) {
              o += Ah[i * N + j] * P64[at(b, j, h, k)];
              w += Ah[i * N + j] * std::fabs(P64[at(b, j, h, k)]);
            }
            loop_err = std::max(loop_err, std::fabs(o - O64[at(b, i, h, k)]));
            tolO[at(b, i, h, k)] = u * std::fabs(O64[at(b, i, h, k)]) + (u + slack) * w;
          }
        }
      }
    if (!(loop_err <= 1e-9))
      throw Failure{fmt("harness: the plain f64 loop disagrees with crate_mssa_forward_f64 by %.3g", loop_err)};

    DBuf dP = din("P", P16), dO = dout<uint16_t>("O", nP), dL = dout<float>("L", nL);
    DBuf dM = din("key_mask", mask);
    const uint8_t* dm = hm ? dM.as<uint8_t>() : nullptr;
    CU(crate_cuda_mssa_forward_bf16, dP.as<uint16_t>(), dO.as<uint16_t>(), dL.as<float>(), B, N, H, p, scale, causal,
       dm, nullptr);
    check_bound("O", bf16_values(down<uint16_t>(dO)), O64, tolO);
    check_bound("L", down<float>(dL), L64, tolL);

    // backward: the kernel gets bf16(O64) and f32(L64); the reference the exact O64, L64
    for (auto& x : G16) x = f32_to_bf16(static_cast<float>(r.normal()));
    const std::vector<double> G64 = to64(bf16_values(G16));
    std::vector<uint16_t> Oi16(nP);
    for (size_t i = 0; i < nP; ++i) Oi16[i] = f64_to_bf16_bits(O64[i]);
    const std::vector<float> Li = to32(L64);
    std::vector<double> dP64(nP), tolP(nP, 0.0);
    CPU(crate_mssa_backward_f64, P64.data(), O64.data(), L64.data(), G64.data(), dP64.data(), B, N, H, p, sc, causal,
        hm);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const double* Ah = A.data() + static_cast<size_t>((b * H + h) * N * N);
        std::vector<double> D(static_cast<size_t>(N)), Du(static_cast<size_t>(N));
        for (int64_t i = 0; i < N; ++i) {
          double d = 0, da = 0;
          for (int64_t k = 0; k < p; ++k) {
            d += G64[at(b, i, h, k)] * O64[at(b, i, h, k)];
            da += std::fabs(G64[at(b, i, h, k)] * O64[at(b, i, h, k)]);
          }
          D[i] = d;
          Du[i] = da;
        }
        // dA[q][k] = dO_q . P_k
        std::vector<double> dA(static_cast<size_t>(N * N));
        for (int64_t q = 0; q < N; ++q)
          for (int64_t kk = 0; kk < N; ++kk) {
            double s = 0;
            for (int64_t k = 0; k < p; ++k) s += G64[at(b, q, h, k)] * P64[at(b, kk, h, k)];
            dA[q * N + kk] = s;
          }
        for (int64_t j = 0; j < N; ++j) {
          std::vector<double> cP(static_cast<size_t>(N)), cG(static_cast<size_t>(N));  // weights of |P_i|, |dO_i|
          for (int64_t i = 0; i < N; ++i) {
            const double a_ji = Ah[j * N + i], a_ij = Ah[i * N + j];
            const double e1 = sc * a_ji * (dA[j * N + i] - D[j]), e2 = sc * a_ij * (dA[i * N + j] - D[i]);
            cP[i] = std::fabs(e1) + std::fabs(e2) + sc * (a_ji * Du[j] + a_ij * Du[i]);  // M_E and M_D
            cG[i] = a_ij;                                                                // M_V
          }
          for (int64_t k = 0; k < p; ++k) {
            double M = 0;
            for (int64_t i = 0; i < N; ++i)
              M += cP[i] * std::fabs(P64[at(b, i, h, k)]) + cG[i] * std::fabs(G64[at(b, i, h, k)]);
            tolP[at(b, j, h, k)] = u * std::fabs(dP64[at(b, j, h, k)]) + (u + slack) * M;
          }
        }
      }
    DBuf dOi = din("O(in)", Oi16), dLi = din("L(in)", Li), dG = din("dO", G16), ddP = dout<uint16_t>("dP", nP);
    CU(crate_cuda_mssa_backward_bf16, dP.as<uint16_t>(), dOi.as<uint16_t>(), dLi.as<float>(), dG.as<uint16_t>(),
       ddP.as<uint16_t>(), B, N, H, p, scale, causal, dm, nullptr);
    check_bound("dP", bf16_values(down<uint16_t>(ddP)), dP64, tolP);
  });
}

void mssa_bf16_cases() {
  // p = 16, 40 (padded to 48), 64, 128; N straddling the tiles (forward 64, backward 64 / 32)
  if (opt.small) {
    mssa_bf16_case(2, 33, 2, 16, 0, "none");
    mssa_bf16_case(2, 65, 1, 40, 1, "some");
    mssa_bf16_case(1, 7, 2, 64, 1, "none");
    mssa_bf16_case(2, 33, 1, 128, 0, "some");
    return;
  }
  const int64_t ps[4] = {16, 40, 64, 128};
  int i = 0;
  for (int64_t N : {1, 31, 33, 64, 65, 97, 129}) {
    for (int causal : {0, 1}) mssa_bf16_case(2, N, 2, ps[(i + causal) % 4], causal, (i + causal) % 2 ? "some" : "none");
    ++i;
  }
  mssa_bf16_case(1, 200, 2, 64, 1, "some");
  mssa_bf16_case(1, 200, 1, 128, 0, "none");
  mssa_bf16_case(3, 129, 1, 40, 0, "some");
  mssa_bf16_case(1, 256, 1, 16, 1, "none");
}

// ========================================================================================= ISTA

void ista_case(int64_t T, int64_t d, float eta, float lambd, bool skip_dW) {
  const std::string name =
      fmt("ista T=%lld d=%lld eta=%g lambda=%g%s", (long long)T, (long long)d, eta, lambd, skip_dW ? " dW=NULL" : "");
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t nY = static_cast<size_t>(T * d), nW = static_cast<size_t>(d * d);
    const std::vector<float> Y = randn(r, nY), W = randn(r, nW, 1.0 / std::sqrt(static_cast<double>(d)));
    const std::vector<double> Y64 = to64(Y), W64 = to64(W);
    std::vector<double> Z64(nY);
    std::vector<float> Z32(nY);
    CPU(crate_ista_forward_f64, Y64.data(), W64.data(), Z64.data(), T, d, eta, lambd, nullptr);
    CPU(crate_ista_forward_f32, Y.data(), W.data(), Z32.data(), T, d, eta, lambd, nullptr);
    DBuf dY = din("Y", Y), dW = din("W", W), dZ = dout<float>("Z", nY);
    CU(crate_cuda_ista_forward_f32, dY.as<float>(), dW.as<float>(), dZ.as<float>(), T, d, eta, lambd, nullptr);
    check_out("Z", down<float>(dZ), Z32, Z64, Tol::out);
    const std::vector<float> G = randn(r, nY), Zi = to32(Z64);  // the f64 forward's ReLU mask for all three
    const std::vector<double> G64 = to64(G), Zi64 = to64(Zi);
    std::vector<double> gY64(nY), gW64(nW);
    std::vector<float> gY32(nY), gW32(nW);
    CPU(crate_ista_backward_f64, Y64.data(), W64.data(), Zi64.data(), G64.data(), gY64.data(), gW64.data(), T, d, eta,
        nullptr);
    CPU(crate_ista_backward_f32, Y.data(), W.data(), Zi.data(), G.data(), gY32.data(), gW32.data(), T, d, eta, nullptr);
    DBuf dZi = din("Z(in)", Zi), dG = din("dZ", G), dgY = dout<float>("dY", nY), dgW = dout<float>("dW", nW);
    CU(crate_cuda_ista_backward_f32, dY.as<float>(), dW.as<float>(), dZi.as<float>(), dG.as<float>(), dgY.as<float>(),
       skip_dW ? nullptr : dgW.as<float>(), T, d, eta, nullptr);
    check_out("dY", down<float>(dgY), gY32, gY64, Tol::grad);
    if (!skip_dW) {
      check_out("dW", down<float>(dgW), gW32, gW64, Tol::grad);
    } else {
      const std::vector<float> untouched = down<float>(dgW);
      for (float v : untouched)
        if (!std::isnan(v)) {
          fail("dW = NULL, yet the dW buffer was written (a NULL gradient output must be skipped)");
          break;
        }
    }
  });
}

void ista_cases() {
  struct S {
    int64_t T, d;
  };
  const std::vector<S> shapes =
      opt.small ? std::vector<S>{{1, 16}, {7, 33}, {33, 31}, {65, 64}}
                : std::vector<S>{{1, 16},    {7, 33},    {31, 32},   {33, 31},   {64, 64},    {65, 63},
                                 {127, 129}, {129, 127}, {197, 384}, {256, 256}, {1024, 128}, {2080, 384}};
  int i = 0;
  for (const S& s : shapes) ista_case(s.T, s.d, 0.1f, (i++ % 3 == 2) ? 0.5f : 0.1f, false);
  ista_case(33, 65, 0.1f, 0.1f, true);
}

// ============================================================ CRATE-alpha overcomplete / tied ISTA

// Which saved tensors the forward gets: all (training), none (inference: the second iterate
// overwrites the first in scratch) or only the first iterate (the second and R in scratch).
enum OcSaved { kSavedAll = 0, kSavedNone = 1, kSavedFirst = 2 };
// Requested gradient outputs, a bitmask: dY, dD (dW for tied), dD1 (overcomplete only).
enum OcGrad { kGradY = 1, kGradD = 2, kGradD1 = 4 };

std::string oc_variant(bool tied, int saved, int grads) {
  std::string v = saved == kSavedAll ? "" : saved == kSavedNone ? " saved=NULL" : tied ? " saved=A0" : " saved=A1";
  const int all = tied ? (kGradY | kGradD) : (kGradY | kGradD | kGradD1);
  if (grads != all) {
    v += " grads=";
    if (grads & kGradY) v += "dY,";
    if (grads & kGradD) v += tied ? "dW," : "dD,";
    if (grads & kGradD1) v += "dD1,";
    v.pop_back();
  }
  return v;
}

// tied = false: CRATE-alpha, D and D1 (d, m), saved A1, A2, R.  tied = true: causal CRATE, W (m, d)
// in the D slot, saved A0, A1, R. Every output and gradient against the CPU f64 function.
void ista_oc_case(bool tied, int64_t T, int64_t d, int64_t m, float eta, float lambd, int saved, int grads) {
  const std::string name =
      fmt("%s T=%lld d=%lld m=%lld eta=%g lambda=%g%s", tied ? "ista_tied" : "ista_overcomplete", (long long)T,
          (long long)d, (long long)m, eta, lambd, oc_variant(tied, saved, grads).c_str());
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t nY = static_cast<size_t>(T * d), nA = static_cast<size_t>(T * m), nD = static_cast<size_t>(d * m);
    const double sd = 1.0 / std::sqrt(static_cast<double>(d));
    const std::vector<float> Y = randn(r, nY), D = randn(r, nD, sd);
    const std::vector<float> D1 = tied ? std::vector<float>() : randn(r, nD, sd);
    const std::vector<double> Y64 = to64(Y), D64 = to64(D), D164 = to64(D1);
    const char* nameD = tied ? "W" : "D";
    const char* nameA = tied ? "A0" : "A1";                        // first iterate
    const char* nameB = tied ? "A1" : "A2";                        // second iterate
    const bool sa = saved != kSavedNone, sb = saved == kSavedAll;  // R is saved with the second iterate
    auto p32 = [](bool on, std::vector<float>& v) { return on ? v.data() : nullptr; };

    // forward: f64 (everything saved), CPU f32 and CUDA with the same NULL pattern
    std::vector<double> o64(nY), a64(nA), b64(nA), r64(nY);
    std::vector<float> o32(nY), a32(nA), b32(nA), r32(nY);
    if (tied) {
      CPU(crate_ista_tied_forward_f64, Y64.data(), D64.data(), o64.data(), a64.data(), b64.data(), r64.data(), T, d, m,
          eta, lambd, nullptr);
      CPU(crate_ista_tied_forward_f32, Y.data(), D.data(), o32.data(), p32(sa, a32), p32(sb, b32), p32(sb, r32), T, d,
          m, eta, lambd, nullptr);
    } else {
      CPU(crate_ista_overcomplete_forward_f64, Y64.data(), D64.data(), D164.data(), o64.data(), a64.data(), b64.data(),
          r64.data(), T, d, m, eta, lambd, nullptr);
      CPU(crate_ista_overcomplete_forward_f32, Y.data(), D.data(), D1.data(), o32.data(), p32(sa, a32), p32(sb, b32),
          p32(sb, r32), T, d, m, eta, lambd, nullptr);
    }
    DBuf dY = din("Y", Y), dD = din(nameD, D), dD1 = tied ? DBuf() : din("D1", D1), dO = dout<float>("out", nY);
    DBuf dA = sa ? dout<float>(nameA, nA) : DBuf(), dB = sb ? dout<float>(nameB, nA) : DBuf(),
         dR = sb ? dout<float>("R", nY) : DBuf();
    if (tied)
      CU(crate_cuda_ista_tied_forward_f32, dY.as<float>(), dD.as<float>(), dO.as<float>(), dA.as<float>(),
         dB.as<float>(), dR.as<float>(), T, d, m, eta, lambd, nullptr);
    else
      CU(crate_cuda_ista_overcomplete_forward_f32, dY.as<float>(), dD.as<float>(), dD1.as<float>(), dO.as<float>(),
         dA.as<float>(), dB.as<float>(), dR.as<float>(), T, d, m, eta, lambd, nullptr);
    check_out("out", down<float>(dO), o32, o64, Tol::out);
    if (sa) check_out(nameA, down<float>(dA), a32, a64, Tol::out);
    if (sb) check_out(nameB, down<float>(dB), b32, b64, Tol::out);
    if (sb) check_out("R", down<float>(dR), r32, r64, Tol::out);

    // backward: the saved tensors are the f64 forward's, rounded, so all three see the same masks
    const std::vector<float> G = randn(r, nY), Ai = to32(a64), Bi = to32(b64), Ri = to32(r64);
    const std::vector<double> G64 = to64(G), Ai64 = to64(Ai), Bi64 = to64(Bi), Ri64 = to64(Ri);
    const bool gy = grads & kGradY, gd = grads & kGradD, gd1 = !tied && (grads & kGradD1);
    std::vector<double> gY64(nY), gD64(nD), gD164(nD);
    std::vector<float> gY32(nY), gD32(nD), gD132(nD);
    if (tied) {
      CPU(crate_ista_tied_backward_f64, Y64.data(), D64.data(), Ai64.data(), Bi64.data(), Ri64.data(), G64.data(),
          gY64.data(), gD64.data(), T, d, m, eta, nullptr);
      CPU(crate_ista_tied_backward_f32, Y.data(), D.data(), Ai.data(), Bi.data(), Ri.data(), G.data(), p32(gy, gY32),
          p32(gd, gD32), T, d, m, eta, nullptr);
    } else {
      CPU(crate_ista_overcomplete_backward_f64, Y64.data(), D64.data(), D164.data(), Ai64.data(), Bi64.data(),
          Ri64.data(), G64.data(), gY64.data(), gD64.data(), gD164.data(), T, d, m, eta, nullptr);
      CPU(crate_ista_overcomplete_backward_f32, Y.data(), D.data(), D1.data(), Ai.data(), Bi.data(), Ri.data(),
          G.data(), p32(gy, gY32), p32(gd, gD32), p32(gd1, gD132), T, d, m, eta, nullptr);
    }
    DBuf dAi = din(std::string(nameA) + "(in)", Ai), dBi = din(std::string(nameB) + "(in)", Bi), dRi = din("R(in)", Ri),
         dG = din("dOut", G);
    DBuf dgY = gy ? dout<float>("dY", nY) : DBuf(), dgD = gd ? dout<float>(tied ? "dW" : "dD", nD) : DBuf(),
         dgD1 = gd1 ? dout<float>("dD1", nD) : DBuf();
    if (tied)
      CU(crate_cuda_ista_tied_backward_f32, dY.as<float>(), dD.as<float>(), dAi.as<float>(), dBi.as<float>(),
         dRi.as<float>(), dG.as<float>(), dgY.as<float>(), dgD.as<float>(), T, d, m, eta, nullptr);
    else
      CU(crate_cuda_ista_overcomplete_backward_f32, dY.as<float>(), dD.as<float>(), dD1.as<float>(), dAi.as<float>(),
         dBi.as<float>(), dRi.as<float>(), dG.as<float>(), dgY.as<float>(), dgD.as<float>(), dgD1.as<float>(), T, d, m,
         eta, nullptr);
    if (gy) check_out("dY", down<float>(dgY), gY32, gY64, Tol::grad);
    if (gd) check_out(tied ? "dW" : "dD", down<float>(dgD), gD32, gD64, Tol::grad);
    if (gd1) check_out("dD1", down<float>(dgD1), gD132, gD164, Tol::grad);
  });
}

// A NaN in Y: NaN exactly where the CPU f32 forward has NaN (its token row), finite elsewhere.
void ista_oc_nan_case(bool tied) {
  const char* op = tied ? "ista_tied" : "ista_overcomplete";
  run_case(fmt("%s: a NaN in Y propagates like the CPU (ReLU keeps NaN)", op), [&] {
    Rng r = case_rng();
    const int64_t T = 7, d = 33, m = 67;
    const size_t nY = static_cast<size_t>(T * d), nA = static_cast<size_t>(T * m), nD = static_cast<size_t>(d * m);
    const double sd = 1.0 / std::sqrt(static_cast<double>(d));
    std::vector<float> Y = randn(r, nY);
    const std::vector<float> D = randn(r, nD, sd), D1 = randn(r, nD, sd);
    Y[static_cast<size_t>(2 * d + 5)] = std::numeric_limits<float>::quiet_NaN();  // token 2
    std::vector<float> o32(nY), a32(nA), b32(nA), r32(nY);
    DBuf dY = din("Y", Y), dD = din(tied ? "W" : "D", D), dD1 = din("D1", D1), dO = dout<float>("out", nY),
         dA = dout<float>("A", nA), dB = dout<float>("B", nA), dR = dout<float>("R", nY);
    if (tied) {
      CPU(crate_ista_tied_forward_f32, Y.data(), D.data(), o32.data(), a32.data(), b32.data(), r32.data(), T, d, m,
          0.1f, 0.1f, nullptr);
      CU(crate_cuda_ista_tied_forward_f32, dY.as<float>(), dD.as<float>(), dO.as<float>(), dA.as<float>(),
         dB.as<float>(), dR.as<float>(), T, d, m, 0.1f, 0.1f, nullptr);
    } else {
      CPU(crate_ista_overcomplete_forward_f32, Y.data(), D.data(), D1.data(), o32.data(), a32.data(), b32.data(),
          r32.data(), T, d, m, 0.1f, 0.1f, nullptr);
      CU(crate_cuda_ista_overcomplete_forward_f32, dY.as<float>(), dD.as<float>(), dD1.as<float>(), dO.as<float>(),
         dA.as<float>(), dB.as<float>(), dR.as<float>(), T, d, m, 0.1f, 0.1f, nullptr);
    }
    auto same_nan = [](const char* what, const std::vector<float>& cu, const std::vector<float>& cpu) {
      size_t nan_cpu = 0, differ = 0;
      for (size_t i = 0; i < cpu.size(); ++i) {
        nan_cpu += std::isnan(cpu[i]);
        differ += std::isnan(cu[i]) != std::isnan(cpu[i]);
      }
      note(fmt("%s: %zu NaN", what, nan_cpu));
      if (nan_cpu == 0) fail(fmt("%s: the CPU reference has no NaN (the case is broken)", what));
      if (differ) fail(fmt("%s: %zu elements NaN on one side only", what, differ));
    };
    same_nan("out", down<float>(dO), o32);
    same_nan("A", down<float>(dA), a32);
    same_nan("B", down<float>(dB), b32);
    same_nan("R", down<float>(dR), r32);
  });
}

// Argument errors give the CPU's status (and do not poison the context); T = 0 is a no-op forward
// and zeroes the requested parameter gradients, as on the CPU.
void ista_oc_edge_cases() {
  run_case("ista_overcomplete/ista_tied: invalid sizes and NULLs -> the CPU's status; T = 0", [] {
    DBuf x = dinit("x", std::vector<float>(64, 0.f)), y = dout<float>("y", 64);
    std::vector<float> hx(64, 0.f), hy(64);
    float *X = x.as<float>(), *Yd = y.as<float>(), *hX = hx.data(), *hY = hy.data();
    auto same = [](const char* what, crate_status cuda, crate_status cpu) {
      if (cuda != cpu) fail(fmt("%s: CUDA %s, CPU %s", what, status_name(cuda), status_name(cpu)));
      if (cpu == CRATE_OK) fail(fmt("%s: the CPU accepted it (the case is broken)", what));
    };
    same("overcomplete m=0",
         CU_ST(crate_cuda_ista_overcomplete_forward_f32, X, X, X, Yd, nullptr, nullptr, nullptr, 2, 4, 0, 0.1f, 0.1f,
               nullptr),
         crate_ista_overcomplete_forward_f32(hX, hX, hX, hY, nullptr, nullptr, nullptr, 2, 4, 0, 0.1f, 0.1f, nullptr));
    same("overcomplete T=-1",
         CU_ST(crate_cuda_ista_overcomplete_forward_f32, X, X, X, Yd, nullptr, nullptr, nullptr, -1, 4, 4, 0.1f, 0.1f,
               nullptr),
         crate_ista_overcomplete_forward_f32(hX, hX, hX, hY, nullptr, nullptr, nullptr, -1, 4, 4, 0.1f, 0.1f, nullptr));
    same("overcomplete D1=NULL",
         CU_ST(crate_cuda_ista_overcomplete_forward_f32, X, X, nullptr, Yd, nullptr, nullptr, nullptr, 2, 4, 4, 0.1f,
               0.1f, nullptr),
         crate_ista_overcomplete_forward_f32(hX, hX, nullptr, hY, nullptr, nullptr, nullptr, 2, 4, 4, 0.1f, 0.1f,
                                             nullptr));
    same("overcomplete backward A2=NULL",
         CU_ST(crate_cuda_ista_overcomplete_backward_f32, X, X, X, X, nullptr, X, X, Yd, nullptr, nullptr, 2, 4, 4,
               0.1f, nullptr),
         crate_ista_overcomplete_backward_f32(hX, hX, hX, hX, nullptr, hX, hX, hY, nullptr, nullptr, 2, 4, 4, 0.1f,
                                              nullptr));
    same("tied d=0",
         CU_ST(crate_cuda_ista_tied_forward_f32, X, X, Yd, nullptr, nullptr, nullptr, 2, 0, 4, 0.1f, 0.1f, nullptr),
         crate_ista_tied_forward_f32(hX, hX, hY, nullptr, nullptr, nullptr, 2, 0, 4, 0.1f, 0.1f, nullptr));
    same("tied W=NULL",
         CU_ST(crate_cuda_ista_tied_forward_f32, X, nullptr, Yd, nullptr, nullptr, nullptr, 2, 4, 4, 0.1f, 0.1f,
               nullptr),
         crate_ista_tied_forward_f32(hX, nullptr, hY, nullptr, nullptr, nullptr, 2, 4, 4, 0.1f, 0.1f, nullptr));
    same("tied backward R=NULL",
         CU_ST(crate_cuda_ista_tied_backward_f32, X, X, X, X, nullptr, X, Yd, nullptr, 2, 4, 4, 0.1f, nullptr),
         crate_ista_tied_backward_f32(hX, hX, hX, hX, nullptr, hX, hY, nullptr, 2, 4, 4, 0.1f, nullptr));
    if (CU_ST(crate_cuda_status) != CRATE_OK) fail("an argument error poisoned the context");
    // T = 0: forwards are no-ops (NULL data allowed), backwards zero dD, dD1, dW and leave dY alone
    CU(crate_cuda_ista_overcomplete_forward_f32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 4, 8,
       0.1f, 0.1f, nullptr);
    CU(crate_cuda_ista_tied_forward_f32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 0, 4, 8, 0.1f, 0.1f,
       nullptr);
    DBuf gD = dout<float>("dD", 32), gD1 = dout<float>("dD1", 32), gW = dout<float>("dW", 32);
    CU(crate_cuda_ista_overcomplete_backward_f32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
       nullptr, gD.as<float>(), gD1.as<float>(), 0, 4, 8, 0.1f, nullptr);
    CU(crate_cuda_ista_tied_backward_f32, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, gW.as<float>(),
       0, 4, 8, 0.1f, nullptr);
    for (const DBuf* b : {&gD, &gD1, &gW})
      for (float v : down<float>(*b))
        if (v != 0.f) {
          fail(fmt("T = 0: %s not zeroed (%g)", b->name.c_str(), static_cast<double>(v)));
          break;
        }
    CU(crate_cuda_synchronize, nullptr);
  });
}

void ista_oc_cases() {
  const std::vector<int64_t> Ts = opt.small ? std::vector<int64_t>{1, 7, 65} : std::vector<int64_t>{1, 7, 64, 65, 300};
  const std::vector<int64_t> ds = opt.small ? std::vector<int64_t>{8, 33} : std::vector<int64_t>{8, 33, 64};
  const int oc_grads[] = {kGradY | kGradD | kGradD1, kGradY | kGradD, kGradD1, kGradD, kGradY};
  const int tied_grads[] = {kGradY | kGradD, kGradY, kGradD};
  int i = 0;
  for (int64_t T : Ts)
    for (int64_t d : ds)
      for (int64_t m : {d, 2 * d, 4 * d + 1}) {
        if (opt.small && m == 2 * d) continue;
        const float lambd = (i % 3 == 2) ? 0.5f : 0.1f;
        ista_oc_case(false, T, d, m, 0.1f, lambd, i % 3, oc_grads[i % 5]);
        ista_oc_case(true, T, d, m, 0.1f, lambd, (i + 1) % 3, tied_grads[(i / 3) % 3]);
        ++i;
      }
  ista_oc_nan_case(false);
  ista_oc_nan_case(true);
  ista_oc_edge_cases();
}

// ================================================================================ bf16 ISTA

// Row-major f64 GEMM: C (M x N) = alpha op(A) op(B) + beta C; A stored (ta ? K x M : M x K), B
// stored (tb ? N x K : K x N).
void mm64(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const std::vector<double>& A,
          const std::vector<double>& B, double beta, std::vector<double>& C) {
  C.resize(static_cast<size_t>(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += A[static_cast<size_t>(ta ? k * M + i : i * K + k)] * B[static_cast<size_t>(tb ? j * K + k : k * N + j)];
      double& c = C[static_cast<size_t>(i * N + j)];
      c = alpha * s + (beta == 0 ? 0.0 : beta * c);
    }
}

double round_bf16(double v) { return bf16_to_f32(f32_to_bf16(static_cast<float>(v))); }  // inputs here: |v| < 1e30

/** The f64 emulation of the bf16 kernels of ista.cu: exact arithmetic, rounded to bf16 exactly
 * where the kernel stores a bf16 value (rnd = false: no rounding, the exact function). */
struct Emu16 {
  bool rnd;
  double r(double v) const { return rnd ? round_bf16(v) : v; }
  std::vector<double> r(std::vector<double> v) const {
    if (rnd)
      for (auto& x : v) x = round_bf16(x);
    return v;
  }
  static double relu(double x) { return x < 0 ? 0 : x; }
  using V = std::vector<double>;

  // plain ISTA (W d x d)
  V kp(const V& W, int64_t d, double eta) const {  // K' = bf16(eta (W - W^T W))
    V K;
    mm64(true, false, d, d, d, -eta, W, W, 0, K);
    for (size_t i = 0; i < K.size(); ++i) K[i] = r(K[i] + eta * W[i]);
    return K;
  }
  V ista_fwd(const V& Y, const V& W, int64_t T, int64_t d, double eta, double thr) const {
    V Z, acc;
    if (T >= d) {
      mm64(false, false, T, d, d, 1, Y, kp(W, d, eta), 0, acc);
    } else {
      V U;
      mm64(false, true, T, d, d, -1, Y, W, 0, U);
      for (size_t i = 0; i < U.size(); ++i) U[i] = r(U[i] + Y[i]);
      mm64(false, false, T, d, d, eta, U, W, 0, acc);
    }
    Z.resize(acc.size());
    for (size_t i = 0; i < Z.size(); ++i) Z[i] = r(relu(acc[i] + Y[i] - thr));
    return Z;
  }
  void ista_bwd(const V& Y, const V& W, const V& Z, const V& dZ, int64_t T, int64_t d, double eta, V& dY, V& dW) const {
    V G(Z.size()), acc;
    for (size_t i = 0; i < G.size(); ++i) G[i] = Z[i] > 0 ? dZ[i] : 0;
    dY.resize(G.size());
    if (T >= d) {
      mm64(false, true, T, d, d, 1, G, kp(W, d, eta), 0, acc);
      for (size_t i = 0; i < G.size(); ++i) dY[i] = r(acc[i] + G[i]);
    } else {
      V Vf;
      mm64(false, true, T, d, d, 1, G, W, 0, Vf);
      mm64(false, false, T, d, d, -eta, r(Vf), W, 0, acc);
      for (size_t i = 0; i < G.size(); ++i) dY[i] = r(acc[i] + (G[i] + eta * Vf[i]));
    }
    V dM, Sym(static_cast<size_t>(d * d));
    mm64(true, false, d, d, T, eta, Y, G, 0, dM);
    for (int64_t i = 0; i < d; ++i)
      for (int64_t j = 0; j < d; ++j) Sym[i * d + j] = r(dM[i * d + j] + dM[j * d + i]);
    mm64(false, false, d, d, d, -1, W, Sym, 1, dM);
    dW = r(dM);
  }

  // CRATE-alpha: D, D1 (d x m); saved A1, A2, R
  void oc_fwd(const V& Y, const V& D, const V& D1, int64_t T, int64_t d, int64_t m, double eta, double thr, V& out,
              V& A1, V& A2, V& R) const {
    V acc;
    mm64(false, false, T, m, d, eta, Y, D, 0, acc);
    A1.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) A1[i] = r(relu(acc[i] - thr));
    mm64(false, true, T, d, m, 1, A1, D, 0, acc);
    R.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) R[i] = r(acc[i] - Y[i]);
    mm64(false, false, T, m, d, -eta, R, D, 0, acc);
    A2.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) A2[i] = r(relu(acc[i] + A1[i] - thr));
    mm64(false, true, T, d, m, 1, A2, D1, 0, out);
    out = r(out);
  }
  void oc_bwd(const V& Y, const V& D, const V& D1, const V& A1, const V& A2, const V& R, const V& dO, int64_t T,
              int64_t d, int64_t m, double eta, V& dY, V& dD, V& dD1) const {
    mm64(true, false, d, m, T, 1, dO, A2, 0, dD1);
    dD1 = r(dD1);
    V acc, G2, G1, E;
    mm64(false, false, T, m, d, 1, dO, D1, 0, acc);
    G2.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) G2[i] = r(A2[i] > 0 ? acc[i] : 0);
    mm64(false, true, T, d, m, 1, G2, D, 0, E);
    E = r(E);
    mm64(true, false, d, m, T, -eta, R, G2, 0, dD);
    mm64(false, false, T, m, d, -eta, E, D, 0, acc);
    G1.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) {
      const double g = A1[i] > 0 ? acc[i] + G2[i] : 0;
      G1[i] = r(g);
      G2[i] = r(G2[i] + g);
    }
    mm64(true, false, d, m, T, -eta, E, A1, 1, dD);
    mm64(true, false, d, m, T, eta, Y, G1, 1, dD);
    dD = r(dD);
    mm64(false, true, T, d, m, eta, G2, D, 0, dY);
    dY = r(dY);
  }

  // causal tied: W (m x d); saved A0, A1, R
  void tied_fwd(const V& Y, const V& W, int64_t T, int64_t d, int64_t m, double eta, double thr, V& out, V& A0, V& A1,
                V& R) const {
    V acc;
    mm64(false, true, T, m, d, eta, Y, W, 0, acc);
    A0.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) A0[i] = r(relu(acc[i] - thr));
    mm64(false, false, T, d, m, -1, A0, W, 0, acc);
    R.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) R[i] = r(acc[i] + Y[i]);
    mm64(false, true, T, m, d, eta, R, W, 0, acc);
    A1.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) A1[i] = r(relu(acc[i] + A0[i] - thr));
    mm64(false, false, T, d, m, 1, A1, W, 0, out);
    out = r(out);
  }
  void tied_bwd(const V& Y, const V& W, const V& A0, const V& A1, const V& R, const V& dO, int64_t T, int64_t d,
                int64_t m, double eta, V& dY, V& dW) const {
    V acc, G1, G0, E;
    mm64(false, true, T, m, d, 1, dO, W, 0, acc);
    G1.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) G1[i] = r(A1[i] > 0 ? acc[i] : 0);
    mm64(false, false, T, d, m, 1, G1, W, 0, E);
    E = r(E);
    mm64(true, false, m, d, T, 1, A1, dO, 0, dW);
    mm64(true, false, m, d, T, eta, G1, R, 1, dW);
    mm64(false, true, T, m, d, -eta, E, W, 0, acc);
    G0.resize(acc.size());
    for (size_t i = 0; i < acc.size(); ++i) {
      const double g = A0[i] > 0 ? acc[i] + G1[i] : 0;
      G0[i] = r(g);
      G1[i] = r(G1[i] + g);
    }
    mm64(true, false, m, d, T, -eta, A0, E, 1, dW);
    mm64(true, false, m, d, T, eta, G0, Y, 1, dW);
    dW = r(dW);
    mm64(false, false, T, d, m, eta, G1, W, 0, dY);
    dY = r(dY);
  }
};

/** bf16 random inputs: the bits for the device and their values. */
struct In16 {
  std::vector<uint16_t> bits;
  std::vector<double> v;
};
In16 randn16(Rng& r, size_t n, double sd = 1.0) {
  In16 x;
  x.bits.resize(n);
  x.v.resize(n);
  for (size_t i = 0; i < n; ++i) {
    x.bits[i] = f32_to_bf16(static_cast<float>(r.normal() * sd));
    x.v[i] = bf16_to_f32(x.bits[i]);
  }
  return x;
}
In16 to16(const std::vector<double>& v) {  // values already bf16-exact (the emulation's saved tensors)
  In16 x;
  x.v = v;
  x.bits.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) x.bits[i] = f32_to_bf16(static_cast<float>(v[i]));
  return x;
}
std::vector<float> down16(const DBuf& b) {
  const std::vector<uint16_t> h = down<uint16_t>(b);
  std::vector<float> o(h.size());
  for (size_t i = 0; i < h.size(); ++i) o[i] = bf16_to_f32(h[i]);
  return o;
}

constexpr double kTol16 = 1.0 / 256;  // one bf16 ulp (2^-8) of max|f64|

/** check_out with the bf16 emulation in the CPU-f32 role; the emulation must be close to the f64
 * function (within 2^-4 max|f64|) and, unrounded, equal to it (1e-9). */
void check16(const char* what, const DBuf& cu, const std::vector<double>& emu, const std::vector<double>& exact,
             const std::vector<double>& ref) {
  double scale = 0, e_exact = 0, e_emu = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    scale = std::max(scale, std::fabs(ref[i]));
    e_exact = std::max(e_exact, std::fabs(exact[i] - ref[i]));
    e_emu = std::max(e_emu, std::fabs(emu[i] - ref[i]));
  }
  if (e_exact > 1e-9 * std::max(scale, 1.0))
    fail(fmt("%s: the unrounded emulation is off the f64 function by %.3e (the harness is broken)", what, e_exact));
  if (e_emu > std::ldexp(scale, -4))
    fail(fmt("%s: the bf16 emulation is off the f64 function by %.3e of %.3e (the harness is broken)", what, e_emu,
             scale));
  check_out(what, down16(cu), to32(emu), ref, kTol16);
}

void ista16_case(int64_t T, int64_t d, float eta, float lambd, bool skip_dW) {
  const std::string name = fmt("ista bf16 T=%lld d=%lld eta=%g lambda=%g%s", (long long)T, (long long)d, eta, lambd,
                               skip_dW ? " dW=NULL" : "");
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t nY = static_cast<size_t>(T * d), nW = static_cast<size_t>(d * d);
    const In16 Y = randn16(r, nY), W = randn16(r, nW, 1.0 / std::sqrt(static_cast<double>(d)));
    const double thr = static_cast<double>(eta) * lambd;
    const Emu16 em{true}, ex{false};
    std::vector<double> Z64(nY);
    CPU(crate_ista_forward_f64, Y.v.data(), W.v.data(), Z64.data(), T, d, eta, lambd, nullptr);
    const std::vector<double> Zem = em.ista_fwd(Y.v, W.v, T, d, eta, thr);
    DBuf dY = din("Y", Y.bits), dW = din("W", W.bits), dZ = dout<uint16_t>("Z", nY);
    CU(crate_cuda_ista_forward_bf16, dY.as<uint16_t>(), dW.as<uint16_t>(), dZ.as<uint16_t>(), T, d, eta, lambd,
       nullptr);
    check16("Z", dZ, Zem, ex.ista_fwd(Y.v, W.v, T, d, eta, thr), Z64);
    // backward: Z from the emulation (bf16 values), G random bf16: one ReLU mask for all
    const In16 Zi = to16(Zem), G = randn16(r, nY);
    std::vector<double> gY64(nY), gW64(nW), gYem, gWem, gYex, gWex;
    CPU(crate_ista_backward_f64, Y.v.data(), W.v.data(), Zi.v.data(), G.v.data(), gY64.data(), gW64.data(), T, d, eta,
        nullptr);
    em.ista_bwd(Y.v, W.v, Zi.v, G.v, T, d, eta, gYem, gWem);
    ex.ista_bwd(Y.v, W.v, Zi.v, G.v, T, d, eta, gYex, gWex);
    DBuf dZi = din("Z(in)", Zi.bits), dG = din("dZ", G.bits), dgY = dout<uint16_t>("dY", nY),
         dgW = dout<uint16_t>("dW", nW);
    CU(crate_cuda_ista_backward_bf16, dY.as<uint16_t>(), dW.as<uint16_t>(), dZi.as<uint16_t>(), dG.as<uint16_t>(),
       dgY.as<uint16_t>(), skip_dW ? nullptr : dgW.as<uint16_t>(), T, d, eta, nullptr);
    check16("dY", dgY, gYem, gYex, gY64);
    if (!skip_dW) {
      check16("dW", dgW, gWem, gWex, gW64);
    } else {
      for (uint16_t v : down<uint16_t>(dgW))
        if (v != 0xFFFF) {
          fail("dW = NULL, yet the dW buffer was written");
          break;
        }
    }
  });
}

void ista16_oc_case(bool tied, int64_t T, int64_t d, int64_t m, float eta, float lambd, int saved, int grads) {
  const std::string name =
      fmt("%s bf16 T=%lld d=%lld m=%lld eta=%g lambda=%g%s", tied ? "ista_tied" : "ista_overcomplete", (long long)T,
          (long long)d, (long long)m, eta, lambd, oc_variant(tied, saved, grads).c_str());
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t nY = static_cast<size_t>(T * d), nA = static_cast<size_t>(T * m), nD = static_cast<size_t>(d * m);
    const double sd = 1.0 / std::sqrt(static_cast<double>(d)), thr = static_cast<double>(eta) * lambd;
    const In16 Y = randn16(r, nY), D = randn16(r, nD, sd), D1 = tied ? In16() : randn16(r, nD, sd);
    const char* nameD = tied ? "W" : "D";
    const char* nameA = tied ? "A0" : "A1";
    const char* nameB = tied ? "A1" : "A2";
    const bool sa = saved != kSavedNone, sb = saved == kSavedAll;
    const Emu16 em{true}, ex{false};
    std::vector<double> o64(nY), a64(nA), b64(nA), r64(nY), oE, aE, bE, rE, oX, aX, bX, rX;
    if (tied) {
      CPU(crate_ista_tied_forward_f64, Y.v.data(), D.v.data(), o64.data(), a64.data(), b64.data(), r64.data(), T, d, m,
          eta, lambd, nullptr);
      em.tied_fwd(Y.v, D.v, T, d, m, eta, thr, oE, aE, bE, rE);
      ex.tied_fwd(Y.v, D.v, T, d, m, eta, thr, oX, aX, bX, rX);
    } else {
      CPU(crate_ista_overcomplete_forward_f64, Y.v.data(), D.v.data(), D1.v.data(), o64.data(), a64.data(), b64.data(),
          r64.data(), T, d, m, eta, lambd, nullptr);
      em.oc_fwd(Y.v, D.v, D1.v, T, d, m, eta, thr, oE, aE, bE, rE);
      ex.oc_fwd(Y.v, D.v, D1.v, T, d, m, eta, thr, oX, aX, bX, rX);
    }
    DBuf dY = din("Y", Y.bits), dD = din(nameD, D.bits), dD1 = tied ? DBuf() : din("D1", D1.bits),
         dO = dout<uint16_t>("out", nY);
    DBuf dA = sa ? dout<uint16_t>(nameA, nA) : DBuf(), dB = sb ? dout<uint16_t>(nameB, nA) : DBuf(),
         dR = sb ? dout<uint16_t>("R", nY) : DBuf();
    if (tied)
      CU(crate_cuda_ista_tied_forward_bf16, dY.as<uint16_t>(), dD.as<uint16_t>(), dO.as<uint16_t>(), dA.as<uint16_t>(),
         dB.as<uint16_t>(), dR.as<uint16_t>(), T, d, m, eta, lambd, nullptr);
    else
      CU(crate_cuda_ista_overcomplete_forward_bf16, dY.as<uint16_t>(), dD.as<uint16_t>(), dD1.as<uint16_t>(),
         dO.as<uint16_t>(), dA.as<uint16_t>(), dB.as<uint16_t>(), dR.as<uint16_t>(), T, d, m, eta, lambd, nullptr);
    check16("out", dO, oE, oX, o64);
    if (sa) check16(nameA, dA, aE, aX, a64);
    if (sb) check16(nameB, dB, bE, bX, b64);
    if (sb) check16("R", dR, rE, rX, r64);

    // backward: the saved tensors are the emulation's (bf16 values), so all see the same masks
    const In16 Ai = to16(aE), Bi = to16(bE), Ri = to16(rE), G = randn16(r, nY);
    const bool gy = grads & kGradY, gd = grads & kGradD, gd1 = !tied && (grads & kGradD1);
    std::vector<double> gY64(nY), gD64(nD), gD164(nD), yE, dE, d1E, yX, dX, d1X;
    if (tied) {
      CPU(crate_ista_tied_backward_f64, Y.v.data(), D.v.data(), Ai.v.data(), Bi.v.data(), Ri.v.data(), G.v.data(),
          gY64.data(), gD64.data(), T, d, m, eta, nullptr);
      em.tied_bwd(Y.v, D.v, Ai.v, Bi.v, Ri.v, G.v, T, d, m, eta, yE, dE);
      ex.tied_bwd(Y.v, D.v, Ai.v, Bi.v, Ri.v, G.v, T, d, m, eta, yX, dX);
    } else {
      CPU(crate_ista_overcomplete_backward_f64, Y.v.data(), D.v.data(), D1.v.data(), Ai.v.data(), Bi.v.data(),
          Ri.v.data(), G.v.data(), gY64.data(), gD64.data(), gD164.data(), T, d, m, eta, nullptr);
      em.oc_bwd(Y.v, D.v, D1.v, Ai.v, Bi.v, Ri.v, G.v, T, d, m, eta, yE, dE, d1E);
      ex.oc_bwd(Y.v, D.v, D1.v, Ai.v, Bi.v, Ri.v, G.v, T, d, m, eta, yX, dX, d1X);
    }
    DBuf dAi = din(std::string(nameA) + "(in)", Ai.bits), dBi = din(std::string(nameB) + "(in)", Bi.bits),
         dRi = din("R(in)", Ri.bits), dG = din("dOut", G.bits);
    DBuf dgY = gy ? dout<uint16_t>("dY", nY) : DBuf(), dgD = gd ? dout<uint16_t>(tied ? "dW" : "dD", nD) : DBuf(),
         dgD1 = gd1 ? dout<uint16_t>("dD1", nD) : DBuf();
    if (tied)
      CU(crate_cuda_ista_tied_backward_bf16, dY.as<uint16_t>(), dD.as<uint16_t>(), dAi.as<uint16_t>(),
         dBi.as<uint16_t>(), dRi.as<uint16_t>(), dG.as<uint16_t>(), dgY.as<uint16_t>(), dgD.as<uint16_t>(), T, d, m,
         eta, nullptr);
    else
      CU(crate_cuda_ista_overcomplete_backward_bf16, dY.as<uint16_t>(), dD.as<uint16_t>(), dD1.as<uint16_t>(),
         dAi.as<uint16_t>(), dBi.as<uint16_t>(), dRi.as<uint16_t>(), dG.as<uint16_t>(), dgY.as<uint16_t>(),
         dgD.as<uint16_t>(), dgD1.as<uint16_t>(), T, d, m, eta, nullptr);
    if (gy) check16("dY", dgY, yE, yX, gY64);
    if (gd) check16(tied ? "dW" : "dD", dgD, dE, dX, gD64);
    if (gd1) check16("dD1", dgD1, d1E, d1X, gD164);
  });
}

void ista16_cases() {
  struct S {
    int64_t T, d;
  };
  // T >= d (the K' path) and T < d (the few-token path), straddling the 64 x 64 x 32 GEMM tiles
  const std::vector<S> shapes = opt.small ? std::vector<S>{{1, 16}, {7, 33}, {65, 63}}
                                          : std::vector<S>{{1, 16}, {7, 33}, {33, 65}, {65, 63}, {130, 64}, {97, 129}};
  int i = 0;
  for (const S& s : shapes) ista16_case(s.T, s.d, 0.1f, (i++ % 3 == 2) ? 0.5f : 0.1f, false);
  ista16_case(33, 65, 0.1f, 0.1f, true);
  struct O {
    int64_t T, d, m;
  };
  const std::vector<O> oc = opt.small
                                ? std::vector<O>{{7, 33, 67}, {65, 16, 64}}
                                : std::vector<O>{{1, 8, 8}, {7, 33, 67}, {65, 16, 64}, {70, 33, 129}, {33, 64, 257}};
  const int oc_grads[] = {kGradY | kGradD | kGradD1, kGradY | kGradD, kGradD1, kGradD, kGradY};
  const int tied_grads[] = {kGradY | kGradD, kGradY, kGradD};
  int j = 0;
  for (const O& s : oc) {
    const float lambd = (j % 3 == 2) ? 0.5f : 0.1f;
    ista16_oc_case(false, s.T, s.d, s.m, 0.1f, lambd, j % 3, oc_grads[j % 5]);
    ista16_oc_case(true, s.T, s.d, s.m, 0.1f, lambd, (j + 1) % 3, tied_grads[j % 3]);
    ++j;
  }
  // every gradient with every saved tensor, both variants
  ista16_oc_case(false, 33, 33, 133, 0.1f, 0.1f, kSavedAll, kGradY | kGradD | kGradD1);
  ista16_oc_case(true, 33, 33, 133, 0.1f, 0.1f, kSavedAll, kGradY | kGradD);
}

// ================================================================================= coding rate

void logdet_case(int64_t batch, int64_t m, int64_t n, bool null_chol) {
  const std::string name = fmt("logdet_gram batch=%lld m=%lld n=%lld%s", (long long)batch, (long long)m, (long long)n,
                               null_chol ? " backward chol=NULL" : "");
  run_case(name, [&] {
    Rng r = case_rng();
    const int64_t k = std::min(m, n);
    const size_t nZ = static_cast<size_t>(batch * m * n), nC = static_cast<size_t>(batch * k * k);
    const size_t chol_bytes = crate_logdet_gram_chol_size(batch, m, n);
    if (chol_bytes != nC * sizeof(double)) throw Failure{fmt("crate_logdet_gram_chol_size = %zu", chol_bytes)};
    const std::vector<float> Z = randn(r, nZ);
    std::vector<float> alpha = uniform(r, static_cast<size_t>(batch), 0.05, 1.0);
    for (auto& a : alpha) a = static_cast<float>(a * 64.0 / std::max(m, n));  // alpha ~ p / (N eps^2) scale
    const std::vector<double> Z64 = to64(Z), a64 = to64(alpha);
    std::vector<double> R64(batch), C64(nC), C32(nC);
    std::vector<float> R32(batch);
    CPU(crate_logdet_gram_forward_f64, Z64.data(), a64.data(), R64.data(), batch, m, n, C64.data());
    CPU(crate_logdet_gram_forward_f32, Z.data(), alpha.data(), R32.data(), batch, m, n, C32.data());
    DBuf dZ = din("Z", Z), da = din("alpha", alpha), dR = dout<float>("R", batch), dC = dout<double>("chol", nC);
    CU(crate_cuda_logdet_gram_forward_f32, dZ.as<float>(), da.as<float>(), dR.as<float>(), batch, m, n, dC.as<double>(),
       nullptr);
    check_out("R", down<float>(dR), R32, R64, Tol::f64i);
    {  // the saved Cholesky factor (f64 on both sides; the CPU f32 path forms it in f64 too)
      const std::vector<double> Cc = down<double>(dC);
      std::vector<float> Cc32(nC), C32f(nC);
      for (size_t i = 0; i < nC; ++i) {
        Cc32[i] = static_cast<float>(Cc[i]);
        C32f[i] = static_cast<float>(C32[i]);
      }
      // compare in f32 resolution: only the f32 Gram-vs-f64-Gram difference is expected
      check_out("chol", Cc32, C32f, C64, Tol::f64i);
    }
    const std::vector<float> gR = uniform(r, static_cast<size_t>(batch), -1.0, 1.0);
    const std::vector<double> gR64 = to64(gR);
    std::vector<double> gZ64(nZ);
    std::vector<float> gZ32(nZ);
    CPU(crate_logdet_gram_backward_f64, Z64.data(), a64.data(), gR64.data(), gZ64.data(), batch, m, n, C64.data());
    CPU(crate_logdet_gram_backward_f32, Z.data(), alpha.data(), gR.data(), gZ32.data(), batch, m, n,
        null_chol ? nullptr : C64.data());
    DBuf dCi = din("chol(in)", C64), dgR = din("dR", gR), dgZ = dout<float>("dZ", nZ);
    CU(crate_cuda_logdet_gram_backward_f32, dZ.as<float>(), da.as<float>(), dgR.as<float>(), dgZ.as<float>(), batch, m,
       n, null_chol ? nullptr : dCi.as<double>(), nullptr);
    check_out("dZ", down<float>(dgZ), gZ32, gZ64, Tol::f64ig);
  });
}

// Per-head: X (B, N, H*p), item (b, h) = X[b, :, h*p:(h+1)*p] read in place; the CPU heads kernels
// (f64 and f32) are the references, as for the batched entries.
void logdet_heads_case(int64_t B, int64_t N, int64_t H, int64_t p, bool null_chol) {
  const std::string name = fmt("logdet_gram heads B=%lld N=%lld H=%lld p=%lld%s", (long long)B, (long long)N,
                               (long long)H, (long long)p, null_chol ? " backward chol=NULL" : "");
  run_case(name, [&] {
    Rng r = case_rng();
    const int64_t items = B * H, k = std::min(N, p);
    const size_t nX = static_cast<size_t>(B * N * H * p), nC = static_cast<size_t>(items * k * k);
    const std::vector<float> X = randn(r, nX);
    std::vector<float> alpha = uniform(r, static_cast<size_t>(items), 0.05, 1.0);
    for (auto& a : alpha) a = static_cast<float>(a * 64.0 / std::max(N, p));
    const std::vector<double> X64 = to64(X), a64 = to64(alpha);
    std::vector<double> R64(items), C64(nC), C32(nC);
    std::vector<float> R32(items);
    CPU(crate_logdet_gram_heads_forward_f64, X64.data(), a64.data(), R64.data(), B, N, H, p, C64.data());
    CPU(crate_logdet_gram_heads_forward_f32, X.data(), alpha.data(), R32.data(), B, N, H, p, C32.data());
    DBuf dX = din("X", X), da = din("alpha", alpha), dR = dout<float>("R", items), dC = dout<double>("chol", nC);
    CU(crate_cuda_logdet_gram_heads_forward_f32, dX.as<float>(), da.as<float>(), dR.as<float>(), B, N, H, p,
       dC.as<double>(), nullptr);
    check_out("R", down<float>(dR), R32, R64, Tol::f64i);
    const std::vector<double> Cc = down<double>(dC);
    check_out("chol", to32(Cc), to32(C32), C64, Tol::f64i);
    const std::vector<float> gR = uniform(r, static_cast<size_t>(items), -1.0, 1.0);
    const std::vector<double> gR64 = to64(gR);
    std::vector<double> gX64(nX);
    std::vector<float> gX32(nX);
    CPU(crate_logdet_gram_heads_backward_f64, X64.data(), a64.data(), gR64.data(), gX64.data(), B, N, H, p, C64.data());
    CPU(crate_logdet_gram_heads_backward_f32, X.data(), alpha.data(), gR.data(), gX32.data(), B, N, H, p,
        null_chol ? nullptr : C64.data());
    DBuf dCi = din("chol(in)", C64), dgR = din("dR", gR), dgX = dout<float>("dX", nX);
    CU(crate_cuda_logdet_gram_heads_backward_f32, dX.as<float>(), da.as<float>(), dgR.as<float>(), dgX.as<float>(), B,
       N, H, p, null_chol ? nullptr : dCi.as<double>(), nullptr);
    check_out("dX", down<float>(dgX), gX32, gX64, Tol::f64ig);
  });
}

// bf16 storage (H = 0: the batched entries on Z (B, m=N, n=p); H > 0: the heads entries). The
// references are the CPU kernels on the exact f64 / f32 values of the bf16 inputs. R and the
// factor are f32 / f64 outputs of an f64 computation, as for f32 inputs (same criterion). dZ is
// rounded once from f64 to bf16, so each element must be within half a bf16 ulp of the f64
// reference, <= 2^-8 |ref| (2^-9 of the leading binade's value, up to 2^-8 at its bottom), plus
// 1e-9 max|ref| for the difference between two f64 computations (it can move a value across a
// rounding tie; only then does the second term matter).
void logdet_bf16_case(int64_t B, int64_t N, int64_t H, int64_t p, bool null_chol) {
  const bool heads = H > 0;
  const std::string name = heads ? fmt("logdet_gram bf16 heads B=%lld N=%lld H=%lld p=%lld%s", (long long)B,
                                       (long long)N, (long long)H, (long long)p, null_chol ? " backward chol=NULL" : "")
                                 : fmt("logdet_gram bf16 batch=%lld m=%lld n=%lld%s", (long long)B, (long long)N,
                                       (long long)p, null_chol ? " backward chol=NULL" : "");
  run_case(name, [&] {
    Rng r = case_rng();
    const int64_t items = heads ? B * H : B, k = std::min(N, p);
    const size_t nZ = static_cast<size_t>(items * N * p), nC = static_cast<size_t>(items * k * k);
    std::vector<uint16_t> Zh(nZ);
    std::vector<float> Zf(nZ);
    for (size_t i = 0; i < nZ; ++i) {
      Zh[i] = f32_to_bf16(static_cast<float>(r.normal()));
      Zf[i] = bf16_to_f32(Zh[i]);  // exact
    }
    std::vector<float> alpha = uniform(r, static_cast<size_t>(items), 0.05, 1.0);
    for (auto& a : alpha) a = static_cast<float>(a * 64.0 / std::max(N, p));
    const std::vector<double> Z64 = to64(Zf), a64 = to64(alpha);
    std::vector<double> R64(items), C64(nC), C32(nC);
    std::vector<float> R32(items);
    if (heads) {
      CPU(crate_logdet_gram_heads_forward_f64, Z64.data(), a64.data(), R64.data(), B, N, H, p, C64.data());
      CPU(crate_logdet_gram_heads_forward_f32, Zf.data(), alpha.data(), R32.data(), B, N, H, p, C32.data());
    } else {
      CPU(crate_logdet_gram_forward_f64, Z64.data(), a64.data(), R64.data(), B, N, p, C64.data());
      CPU(crate_logdet_gram_forward_f32, Zf.data(), alpha.data(), R32.data(), B, N, p, C32.data());
    }
    DBuf dZ = din("Z", Zh), da = din("alpha", alpha), dR = dout<float>("R", items), dC = dout<double>("chol", nC);
    if (heads)
      CU(crate_cuda_logdet_gram_heads_forward_bf16, dZ.as<uint16_t>(), da.as<float>(), dR.as<float>(), B, N, H, p,
         dC.as<double>(), nullptr);
    else
      CU(crate_cuda_logdet_gram_forward_bf16, dZ.as<uint16_t>(), da.as<float>(), dR.as<float>(), B, N, p,
         dC.as<double>(), nullptr);
    check_out("R", down<float>(dR), R32, R64, Tol::f64i);
    check_out("chol", to32(down<double>(dC)), to32(C32), C64, Tol::f64i);
    const std::vector<float> gR = uniform(r, static_cast<size_t>(items), -1.0, 1.0);
    const std::vector<double> gR64 = to64(gR);
    std::vector<double> gZ64(nZ);
    if (heads)
      CPU(crate_logdet_gram_heads_backward_f64, Z64.data(), a64.data(), gR64.data(), gZ64.data(), B, N, H, p,
          C64.data());
    else
      CPU(crate_logdet_gram_backward_f64, Z64.data(), a64.data(), gR64.data(), gZ64.data(), B, N, p, C64.data());
    DBuf dCi = din("chol(in)", C64), dgR = din("dR", gR), dgZ = dout<uint16_t>("dZ", nZ);
    const double* cin = null_chol ? nullptr : dCi.as<double>();
    if (heads)
      CU(crate_cuda_logdet_gram_heads_backward_bf16, dZ.as<uint16_t>(), da.as<float>(), dgR.as<float>(),
         dgZ.as<uint16_t>(), B, N, H, p, cin, nullptr);
    else
      CU(crate_cuda_logdet_gram_backward_bf16, dZ.as<uint16_t>(), da.as<float>(), dgR.as<float>(), dgZ.as<uint16_t>(),
         B, N, p, cin, nullptr);
    const std::vector<uint16_t> got = down<uint16_t>(dgZ);
    double scale = 0;
    for (double v : gZ64) scale = std::max(scale, std::fabs(v));
    size_t bad = 0, worst = 0, exact = 0;
    double worst_rel = 0;
    for (size_t i = 0; i < nZ; ++i) {
      const double c = bf16_to_f32(got[i]), ref = gZ64[i], d = std::fabs(c - ref);
      const double bound = std::ldexp(std::fabs(ref), -8) + 1e-9 * scale;
      exact += got[i] == f32_to_bf16(static_cast<float>(ref));  // approximately "rounded once" (f32 first)
      if (!(d <= bound)) {
        if (!bad) worst = i;
        ++bad;
      }
      if (scale > 0) worst_rel = std::max(worst_rel, d / std::max(std::fabs(ref), 1e-30 * scale));
    }
    note(fmt("dZ bf16: max rel err %.2e (one rounding <= 3.9e-03), %zu/%zu equal to the rounded f64", worst_rel, exact,
             nZ));
    if (bad)
      fail(fmt("dZ bf16: %zu elements off by more than one bf16 rounding (first at %zu: %.9g vs f64 %.9g)", bad, worst,
               static_cast<double>(bf16_to_f32(got[worst])), gZ64[worst]));
  });
}

// Errors: the first failing item in batch order, with the CPU's status and message (after the
// function-name prefix), through the heads, batched and bf16 entries.
void logdet_error_cases() {
  auto tail = [](const std::string& m) {
    const size_t c = m.find(": ");
    return c == std::string::npos ? m : m.substr(c + 2);
  };
  auto same = [&](const char* what, crate_status cu, crate_status cpu, const std::string& cpu_msg) {
    const std::string cm = cuda_msg();
    note(fmt("%s: %s", what, tail(cpu_msg).c_str()));
    if (cpu == CRATE_OK) fail(fmt("%s: the CPU reference reported no error (the case is broken)", what));
    if (cu != cpu) fail(fmt("%s: CUDA %s, CPU %s (%s)", what, status_name(cu), status_name(cpu), cm.c_str()));
    if (tail(cm) != tail(cpu_msg)) fail(fmt("%s: CUDA says '%s', the CPU '%s'", what, cm.c_str(), cpu_msg.c_str()));
  };
  run_case("logdet_gram heads errors: first failing item, status and message as the CPU", [&] {
    Rng r = case_rng();
    const int64_t B = 2, N = 5, H = 3, p = 4, items = B * H;
    const size_t nX = static_cast<size_t>(B * N * H * p);
    auto at = [&](int64_t b, int64_t n, int64_t h, int64_t j) {
      return static_cast<size_t>(((b * N + n) * H + h) * p + j);
    };
    std::vector<float> X = randn(r, nX);
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    X[at(1, 2, 1, 3)] = nan;  // item 4 = (b=1, h=1): NaN at row 2 ...
    X[at(1, 3, 1, 0)] = inf;  // ... and an Inf after it (row-major): NaN decides
    X[at(1, 0, 2, 0)] = inf;  // item 5: an Inf earlier in memory than item 4's NaN, later in item order
    std::vector<float> alpha(static_cast<size_t>(items), 0.5f);
    alpha[5] = -1.f;  // a later item: not reported
    std::vector<uint16_t> Xh(nX);
    for (size_t i = 0; i < nX; ++i) Xh[i] = std::isnan(X[i]) ? 0x7FC0 : f32_to_bf16(X[i]);
    std::vector<float> Xw(nX);
    for (size_t i = 0; i < nX; ++i) Xw[i] = bf16_to_f32(Xh[i]);
    std::vector<float> R(items), dRh(items, 1.f), dXh(nX);
    DBuf dX = din("X", X), dXb = din("Xbf16", Xh), da = din("alpha", alpha), dR = dout<float>("R", items),
         dg = din("dR", dRh), dgX = dout<float>("dX", nX), dgXb = dout<uint16_t>("dXbf16", nX);
    crate_status cpu = crate_logdet_gram_heads_forward_f32(X.data(), alpha.data(), R.data(), B, N, H, p, nullptr);
    std::string cm = crate_last_error();
    same("heads f32 forward",
         CU_ST(crate_cuda_logdet_gram_heads_forward_f32, dX.as<float>(), da.as<float>(), dR.as<float>(), B, N, H, p,
               nullptr, nullptr),
         cpu, cm);
    same("heads bf16 forward",
         CU_ST(crate_cuda_logdet_gram_heads_forward_bf16, dXb.as<uint16_t>(), da.as<float>(), dR.as<float>(), B, N, H,
               p, nullptr, nullptr),
         crate_logdet_gram_heads_forward_f32(Xw.data(), alpha.data(), R.data(), B, N, H, p, nullptr),
         crate_last_error());
    cpu = crate_logdet_gram_heads_backward_f32(X.data(), alpha.data(), dRh.data(), dXh.data(), B, N, H, p, nullptr);
    cm = crate_last_error();
    same("heads f32 backward (chol NULL)",
         CU_ST(crate_cuda_logdet_gram_heads_backward_f32, dX.as<float>(), da.as<float>(), dg.as<float>(),
               dgX.as<float>(), B, N, H, p, nullptr, nullptr),
         cpu, cm);
    // finite X: alpha <= 0 at item 1 = (b=0, h=1) is the first failure (INVALID_ARGUMENT); a NaN dR
    // at item 2 and alpha[5] come later
    std::vector<float> Xok = randn(r, nX), alpha2(static_cast<size_t>(items), 0.5f), dR2(items, 1.f);
    alpha2[1] = 0.f;
    alpha2[5] = nan;
    dR2[2] = nan;
    DBuf dXok = din("Xok", Xok), da2 = din("alpha2", alpha2), dg2 = din("dR2", dR2);
    cpu = crate_logdet_gram_heads_forward_f32(Xok.data(), alpha2.data(), R.data(), B, N, H, p, nullptr);
    cm = crate_last_error();
    same("heads alpha = 0",
         CU_ST(crate_cuda_logdet_gram_heads_forward_f32, dXok.as<float>(), da2.as<float>(), dR.as<float>(), B, N, H, p,
               nullptr, nullptr),
         cpu, cm);
    std::vector<float> alpha3(static_cast<size_t>(items), 0.5f);
    DBuf da3 = din("alpha3", alpha3);
    cpu = crate_logdet_gram_heads_backward_f32(Xok.data(), alpha3.data(), dR2.data(), dXh.data(), B, N, H, p, nullptr);
    cm = crate_last_error();
    same("heads dR NaN",
         CU_ST(crate_cuda_logdet_gram_heads_backward_f32, dXok.as<float>(), da3.as<float>(), dg2.as<float>(),
               dgX.as<float>(), B, N, H, p, nullptr, nullptr),
         cpu, cm);
    // the batched bf16 entry names Z[i]: Z (6, 5, 4) = the same bytes, item 3 has the first NaN
    std::vector<uint16_t> Zh(nX);
    for (size_t i = 0; i < nX; ++i) Zh[i] = f32_to_bf16(Xok[i]);
    Zh[3 * 20 + 7] = 0x7F80;  // +Inf in item 3
    Zh[4 * 20 + 0] = 0xFFC0;  // NaN in item 4
    std::vector<float> Zw(nX);
    for (size_t i = 0; i < nX; ++i) Zw[i] = bf16_to_f32(Zh[i]);
    DBuf dZb = din("Zbf16", Zh);
    cpu = crate_logdet_gram_backward_f32(Zw.data(), alpha3.data(), dRh.data(), dXh.data(), items, N, p, nullptr);
    cm = crate_last_error();
    same("batched bf16 backward",
         CU_ST(crate_cuda_logdet_gram_backward_bf16, dZb.as<uint16_t>(), da3.as<float>(), dg.as<float>(),
               dgXb.as<uint16_t>(), items, N, p, nullptr, nullptr),
         cpu, cm);
    cpu = crate_logdet_gram_heads_forward_f32(Xok.data(), alpha3.data(), R.data(), B, N, -1, p, nullptr);
    cm = crate_last_error();
    same("heads H = -1",
         CU_ST(crate_cuda_logdet_gram_heads_forward_f32, dXok.as<float>(), da3.as<float>(), dR.as<float>(), B, N, -1, p,
               nullptr, nullptr),
         cpu, cm);
    if (CU_ST(crate_cuda_status) != CRATE_OK) fail("an error poisoned the context");
    // empty problems are no-ops
    CU(crate_cuda_logdet_gram_heads_forward_f32, dXok.as<float>(), da3.as<float>(), dR.as<float>(), B, N, 0, p, nullptr,
       nullptr);
    CU(crate_cuda_logdet_gram_heads_forward_bf16, dXb.as<uint16_t>(), da3.as<float>(), dR.as<float>(), 0, N, H, p,
       nullptr, nullptr);
  });
}

void logdet_cases() {
  struct S {
    int64_t b, m, n;
  };
  const std::vector<S> shapes =
      opt.small
          ? std::vector<S>{{1, 1, 1}, {2, 7, 33}, {2, 33, 7}, {2, 31, 32}}
          : std::vector<S>{{1, 1, 1},    {2, 7, 33},   {2, 33, 7},    {3, 31, 32},     {2, 32, 31},   {4, 64, 197},
                           {2, 197, 64}, {2, 65, 129}, {1, 129, 127}, {12, 128, 1024}, {1, 256, 300}, {2, 1024, 16}};
  for (const S& s : shapes) logdet_case(s.b, s.m, s.n, false);
  logdet_case(2, 33, 65, true);
  if (!opt.small) logdet_case(2, 129, 64, true);
  struct SH {
    int64_t B, N, H, p;
  };
  // p > 32 and not a multiple of 32; N < p (the N-side Gram) and N > p; H = 1
  const std::vector<SH> hs = opt.small
                                 ? std::vector<SH>{{1, 3, 2, 5}, {2, 9, 3, 37}, {2, 41, 2, 35}}
                                 : std::vector<SH>{{1, 3, 2, 5},   {2, 9, 3, 37},   {2, 41, 2, 35}, {1, 70, 1, 33},
                                                   {3, 20, 4, 64}, {2, 197, 3, 64}, {1, 40, 2, 97}};
  for (const SH& s : hs) logdet_heads_case(s.B, s.N, s.H, s.p, false);
  logdet_heads_case(2, 33, 3, 40, true);
  const std::vector<SH> bs = opt.small ? std::vector<SH>{{2, 7, 0, 33}, {2, 33, 0, 7}, {2, 9, 3, 37}, {1, 41, 2, 35}}
                                       : std::vector<SH>{{2, 7, 0, 33}, {2, 33, 0, 7},  {2, 65, 0, 129},
                                                         {2, 9, 3, 37}, {1, 41, 2, 35}, {2, 197, 3, 64}};
  for (const SH& s : bs) logdet_bf16_case(s.B, s.N, s.H, s.p, false);
  logdet_bf16_case(2, 33, 2, 40, true);
  logdet_bf16_case(2, 40, 0, 33, true);
  logdet_error_cases();
}

// ========================================================================================= TSSA

void tssa_case(int64_t B, int64_t N, int64_t H, int64_t p, bool saved) {
  const std::string name = fmt("tssa B=%lld N=%lld H=%lld p=%lld%s", (long long)B, (long long)N, (long long)H,
                               (long long)p, saved ? "" : " backward saved=NULL");
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t nW = static_cast<size_t>(B * N * H * p), nPi = static_cast<size_t>(B * H * N),
                 nS = static_cast<size_t>(B * H * p);
    const std::vector<float> W = randn(r, nW), temp = uniform(r, static_cast<size_t>(H), 0.5, 2.0);
    const std::vector<double> W64 = to64(W), t64 = to64(temp);
    std::vector<double> Y64(nW), Pi64(nPi), cn64(nS), ms64(nS);
    std::vector<float> Y32(nW), Pi32(nPi), cn32(nS), ms32(nS);
    CPU(crate_tssa_forward_f64, W64.data(), t64.data(), Y64.data(), Pi64.data(), cn64.data(), ms64.data(), B, N, H, p);
    CPU(crate_tssa_forward_f32, W.data(), temp.data(), Y32.data(), Pi32.data(), cn32.data(), ms32.data(), B, N, H, p);
    DBuf dW = din("W", W), dt = din("temp", temp), dY = dout<float>("Y", nW), dPi = dout<float>("Pi", nPi),
         dcn = dout<float>("colnorm", nS), dms = dout<float>("mstat", nS);
    CU(crate_cuda_tssa_forward_f32, dW.as<float>(), dt.as<float>(), dY.as<float>(), dPi.as<float>(), dcn.as<float>(),
       dms.as<float>(), B, N, H, p, nullptr);
    check_out("Y", down<float>(dY), Y32, Y64, Tol::f64i);
    check_out("Pi", down<float>(dPi), Pi32, Pi64, Tol::f64i);
    check_out("colnorm", down<float>(dcn), cn32, cn64, Tol::f64i);
    check_out("mstat", down<float>(dms), ms32, ms64, Tol::f64i);
    const std::vector<float> G = randn(r, nW), Pii = to32(Pi64), cni = to32(cn64), msi = to32(ms64);
    const std::vector<double> G64 = to64(G);
    std::vector<double> gW64(nW), gt64(H);
    std::vector<float> gW32(nW), gt32(H);
    CPU(crate_tssa_backward_f64, W64.data(), t64.data(), G64.data(), Pi64.data(), cn64.data(), ms64.data(), gW64.data(),
        gt64.data(), B, N, H, p, nullptr);
    CPU(crate_tssa_backward_f32, W.data(), temp.data(), G.data(), saved ? Pii.data() : nullptr,
        saved ? cni.data() : nullptr, saved ? msi.data() : nullptr, gW32.data(), gt32.data(), B, N, H, p, nullptr);
    DBuf dG = din("dY", G), dPii = din("Pi(in)", Pii), dcni = din("colnorm(in)", cni), dmsi = din("mstat(in)", msi),
         dgW = dout<float>("dW", nW), dgt = dout<float>("dtemp", H);
    CU(crate_cuda_tssa_backward_f32, dW.as<float>(), dt.as<float>(), dG.as<float>(), saved ? dPii.as<float>() : nullptr,
       saved ? dcni.as<float>() : nullptr, saved ? dmsi.as<float>() : nullptr, dgW.as<float>(), dgt.as<float>(), B, N,
       H, p, nullptr);
    check_out("dW", down<float>(dgW), gW32, gW64, Tol::f64ig);
    check_out("dtemp", down<float>(dgt), gt32, gt64, Tol::f64ig);
  });
}

void tssa_cases() {
  struct S {
    int64_t B, N, H, p;
  };
  const std::vector<S> shapes =
      opt.small ? std::vector<S>{{2, 1, 2, 16}, {2, 7, 3, 32}, {2, 33, 2, 64}}
                : std::vector<S>{{2, 1, 2, 16},   {2, 7, 3, 32},   {2, 33, 2, 64},   {2, 65, 2, 128},  {2, 129, 3, 16},
                                 {1, 197, 6, 64}, {2, 256, 2, 32}, {1, 1024, 4, 64}, {2, 4096, 2, 32}, {1, 31, 1, 1}};
  for (const S& s : shapes) tssa_case(s.B, s.N, s.H, s.p, true);
  tssa_case(2, 33, 3, 16, false);
  if (!opt.small) tssa_case(1, 1024, 2, 64, false);
}

// ================================================================================== causal TSSA

// The causal TSSA's parameter gradients vs the CPU, and ddenom_bias's columns >= T exactly 0
// (steps past the sequence). Shared by the f32 and bf16 cases: both take f32 parameters.
void check_causal_param_grads(const DBuf& dgt, const DBuf& dgb, const std::vector<float>& gt32,
                              const std::vector<double>& gt64, const std::vector<float>& gb32,
                              const std::vector<double>& gb64, int64_t H, int64_t T, int64_t Tmax) {
  check_out("dtemp", down<float>(dgt), gt32, gt64, Tol::f64ig);
  const std::vector<float> gb = down<float>(dgb);
  check_out("ddenom_bias", gb, gb32, gb64, Tol::f64ig);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t t = T; t < Tmax; ++t)
      if (gb[h * Tmax + t] != 0.f) {
        fail(fmt("ddenom_bias[%lld, %lld] = %g past T, expected 0", (long long)h, (long long)t,
                 static_cast<double>(gb[h * Tmax + t])));
        return;
      }
}

// W (B, T, H*p), temp (H), denom_bias (H, Tmax) with T <= Tmax. denom_bias's columns >= T are NaN
// (they must not be read) and the first 3 steps of feature 0 are 0 (the clamp's value path), or
// with tiny = true 1e-7 (cumulative sum 1e-14..3e-14 < 1e-12: the clamp is active on a nonzero
// value, so its gradient mask matters; dW there is ~1e5, so only a small case uses it). Pi and the
// parameter gradients are nullable outputs; ddenom_bias's columns >= T must come back exactly 0.
void tssa_causal_case(int64_t B, int64_t T, int64_t H, int64_t p, int64_t Tmax, bool with_pi, bool param_grads,
                      bool tiny = false) {
  const std::string name = fmt("tssa_causal B=%lld T=%lld H=%lld p=%lld Tmax=%lld%s%s%s", (long long)B, (long long)T,
                               (long long)H, (long long)p, (long long)Tmax, with_pi ? "" : " Pi=NULL",
                               param_grads ? "" : " dtemp=ddenom=NULL", tiny ? " clamp-active" : "");
  run_case(name, [&] {
    Rng r = case_rng();
    const int64_t D = H * p;
    const size_t nW = static_cast<size_t>(B * T * D), nPi = static_cast<size_t>(B * H * T),
                 nB = static_cast<size_t>(H * Tmax);
    std::vector<float> W = randn(r, nW), temp = uniform(r, static_cast<size_t>(H), 0.5, 2.0),
                       bias = uniform(r, nB, -0.5, 0.5);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = T; t < Tmax; ++t) bias[h * Tmax + t] = std::numeric_limits<float>::quiet_NaN();
    if (D > 0)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < std::min<int64_t>(T, 3); ++t) W[(b * T + t) * D] = tiny ? 1e-7f : 0.f;
    const std::vector<double> W64 = to64(W), t64 = to64(temp), b64 = to64(bias);
    std::vector<double> Y64(nW), Pi64(nPi);
    std::vector<float> Y32(nW), Pi32(nPi);
    CPU(crate_tssa_causal_forward_f64, W64.data(), t64.data(), b64.data(), Y64.data(), Pi64.data(), B, T, H, p, Tmax);
    CPU(crate_tssa_causal_forward_f32, W.data(), temp.data(), bias.data(), Y32.data(), Pi32.data(), B, T, H, p, Tmax);
    DBuf dW = din("W", W), dt = din("temp", temp), db = din("denom_bias", bias), dY = dout<float>("Y", nW),
         dPi = with_pi ? dout<float>("Pi", nPi) : DBuf();
    CU(crate_cuda_tssa_causal_forward_f32, dW.as<float>(), dt.as<float>(), db.as<float>(), dY.as<float>(),
       dPi.as<float>(), B, T, H, p, Tmax, nullptr);
    check_out("Y", down<float>(dY), Y32, Y64, Tol::f64i);
    if (with_pi) check_out("Pi", down<float>(dPi), Pi32, Pi64, Tol::f64i);
    const std::vector<float> G = randn(r, nW);
    const std::vector<double> G64 = to64(G);
    std::vector<double> gW64(nW), gt64(H), gb64(nB);
    std::vector<float> gW32(nW), gt32(H), gb32(nB);
    CPU(crate_tssa_causal_backward_f64, W64.data(), t64.data(), b64.data(), G64.data(), gW64.data(), gt64.data(),
        gb64.data(), B, T, H, p, Tmax, nullptr);
    CPU(crate_tssa_causal_backward_f32, W.data(), temp.data(), bias.data(), G.data(), gW32.data(), gt32.data(),
        gb32.data(), B, T, H, p, Tmax, nullptr);
    DBuf dG = din("dY", G), dgW = dout<float>("dW", nW), dgt = param_grads ? dout<float>("dtemp", H) : DBuf(),
         dgb = param_grads ? dout<float>("ddenom_bias", nB) : DBuf();
    CU(crate_cuda_tssa_causal_backward_f32, dW.as<float>(), dt.as<float>(), db.as<float>(), dG.as<float>(),
       dgW.as<float>(), dgt.as<float>(), dgb.as<float>(), B, T, H, p, Tmax, nullptr);
    check_out("dW", down<float>(dgW), gW32, gW64, Tol::f64ig);
    if (param_grads) check_causal_param_grads(dgt, dgb, gt32, gt64, gb32, gb64, H, T, Tmax);
  });
}

// Statuses and messages as the CPU: bad sizes, empty sizes (no-ops; p = 0 still writes Pi = 1/H and
// zeroes the parameter gradients), NaN in W / temp / denom_bias, and NaN in dY propagated to the
// same elements as on the CPU.
void tssa_causal_error_cases() {
  run_case("tssa_causal: argument errors, empty sizes, NaN reporting and propagation as the CPU", [] {
    Rng r = case_rng();
    const int64_t B = 2, T = 21, H = 3, p = 5, Tmax = 24, D = H * p;
    const size_t nW = static_cast<size_t>(B * T * D), nB = static_cast<size_t>(H * Tmax);
    const std::vector<float> W = randn(r, nW), temp = uniform(r, H, 0.5, 2.0), bias = uniform(r, nB, -0.5, 0.5);
    DBuf dW = din("W", W), dt = din("temp", temp), db = din("denom_bias", bias), dY = dout<float>("Y", nW),
         dPi = dout<float>("Pi", static_cast<size_t>(B * H * T)), dgt = dout<float>("dtemp", H),
         dgb = dout<float>("ddenom_bias", nB);
    std::vector<float> Y(nW), Pi(static_cast<size_t>(B * H * T)), gt(H), gb(nB);
    auto same = [](const char* what, crate_status cuda, crate_status cpu, const std::string& cuda_message,
                   const char* expect_in_message) {
      const std::string cpu_message = cpu == CRATE_OK ? "" : crate_last_error();
      note(fmt("%s: %s", what, status_name(cuda)));
      if (cuda != cpu)
        fail(fmt("%s: CUDA %s, CPU %s (%s)", what, status_name(cuda), status_name(cpu), cpu_message.c_str()));
      if (expect_in_message && cuda_message.find(expect_in_message) == std::string::npos)
        fail(fmt("%s: message '%s' lacks '%s' (CPU: '%s')", what, cuda_message.c_str(), expect_in_message,
                 cpu_message.c_str()));
    };
    // T > Tmax, negative sizes
    crate_status cs = CU_ST(crate_cuda_tssa_causal_forward_f32, dW.as<float>(), dt.as<float>(), db.as<float>(),
                            dY.as<float>(), nullptr, 1, 25, H, p, Tmax, nullptr);
    same("T > Tmax", cs,
         crate_tssa_causal_forward_f32(W.data(), temp.data(), bias.data(), Y.data(), nullptr, 1, 25, H, p, Tmax),
         cuda_msg(), "exceeds Tmax");
    cs = CU_ST(crate_cuda_tssa_causal_backward_f32, dW.as<float>(), dt.as<float>(), db.as<float>(), dW.as<float>(),
               dY.as<float>(), nullptr, nullptr, B, -1, H, p, Tmax, nullptr);
    same("T = -1 (backward)", cs,
         crate_tssa_causal_backward_f32(W.data(), temp.data(), bias.data(), W.data(), Y.data(), nullptr, nullptr, B, -1,
                                        H, p, Tmax, nullptr),
         cuda_msg(), "sizes must be >= 0");
    // empty sizes: no-ops; the backward still zeroes dtemp and ddenom_bias
    CU(crate_cuda_tssa_causal_forward_f32, dW.as<float>(), dt.as<float>(), db.as<float>(), dY.as<float>(),
       dPi.as<float>(), 0, T, H, p, Tmax, nullptr);
    CU(crate_cuda_tssa_causal_backward_f32, dW.as<float>(), dt.as<float>(), db.as<float>(), dW.as<float>(),
       dY.as<float>(), dgt.as<float>(), dgb.as<float>(), B, 0, H, p, Tmax, nullptr);
    for (float v : down<float>(dgt))
      if (v != 0.f) fail("T = 0: dtemp not zeroed");
    for (float v : down<float>(dgb))
      if (v != 0.f) fail("T = 0: ddenom_bias not zeroed");
    // p = 0: Pi is still written (uniform 1/H), as on the CPU
    {
      DBuf pi0 = dout<float>("Pi(p=0)", static_cast<size_t>(B * H * T));
      std::vector<float> pi_cpu(static_cast<size_t>(B * H * T), -1.f);
      CU(crate_cuda_tssa_causal_forward_f32, nullptr, dt.as<float>(), db.as<float>(), nullptr, pi0.as<float>(), B, T, H,
         0, Tmax, nullptr);
      CPU(crate_tssa_causal_forward_f32, nullptr, temp.data(), bias.data(), nullptr, pi_cpu.data(), B, T, H, 0, Tmax);
      const std::vector<float> got = down<float>(pi0);
      for (size_t i = 0; i < got.size(); ++i)
        if (std::fabs(got[i] - pi_cpu[i]) > 1e-7f) {
          fail(fmt("p = 0: Pi[%zu] = %g, CPU %g", i, static_cast<double>(got[i]), static_cast<double>(pi_cpu[i])));
          break;
        }
    }
    // NaN in W -> CRATE_ERR_NUMERICAL naming the first bad element of the first bad batch item
    {
      std::vector<float> Wn = W;
      Wn[(1 * T + 5) * D + 2] = std::numeric_limits<float>::quiet_NaN();
      Wn[(1 * T + 9) * D + 0] = std::numeric_limits<float>::infinity();
      DBuf dWn = din("W(NaN)", Wn);
      cs = CU_ST(crate_cuda_tssa_causal_forward_f32, dWn.as<float>(), dt.as<float>(), db.as<float>(), dY.as<float>(),
                 nullptr, B, T, H, p, Tmax, nullptr);
      same("NaN in W (forward)", cs,
           crate_tssa_causal_forward_f32(Wn.data(), temp.data(), bias.data(), Y.data(), nullptr, B, T, H, p, Tmax),
           cuda_msg(), "W[b=1, t=5, c=2] is NaN");
      cs = CU_ST(crate_cuda_tssa_causal_backward_f32, dWn.as<float>(), dt.as<float>(), db.as<float>(), dW.as<float>(),
                 dY.as<float>(), dgt.as<float>(), dgb.as<float>(), B, T, H, p, Tmax, nullptr);
      same("NaN in W (backward)", cs,
           crate_tssa_causal_backward_f32(Wn.data(), temp.data(), bias.data(), W.data(), Y.data(), gt.data(), gb.data(),
                                          B, T, H, p, Tmax, nullptr),
           cuda_msg(), "W[b=1, t=5, c=2] is NaN");
    }
    // NaN in temp; NaN in denom_bias (reported first, as the CPU checks it first); NaN past T is ignored
    {
      std::vector<float> tn = temp, bn = bias, bpast = bias;
      tn[2] = std::numeric_limits<float>::quiet_NaN();
      bn[1 * Tmax + 3] = std::numeric_limits<float>::infinity();
      bpast[1 * Tmax + T] = std::numeric_limits<float>::quiet_NaN();
      DBuf dtn = din("temp(NaN)", tn), dbn = din("denom_bias(Inf)", bn), dbp = din("denom_bias(NaN past T)", bpast);
      cs = CU_ST(crate_cuda_tssa_causal_forward_f32, dW.as<float>(), dtn.as<float>(), db.as<float>(), dY.as<float>(),
                 nullptr, B, T, H, p, Tmax, nullptr);
      same("NaN in temp", cs,
           crate_tssa_causal_forward_f32(W.data(), tn.data(), bias.data(), Y.data(), nullptr, B, T, H, p, Tmax),
           cuda_msg(), "temp[2] is NaN");
      cs = CU_ST(crate_cuda_tssa_causal_backward_f32, dW.as<float>(), dtn.as<float>(), dbn.as<float>(), dW.as<float>(),
                 dY.as<float>(), nullptr, nullptr, B, T, H, p, Tmax, nullptr);
      same("Inf in denom_bias and NaN in temp (backward)", cs,
           crate_tssa_causal_backward_f32(W.data(), tn.data(), bn.data(), W.data(), Y.data(), nullptr, nullptr, B, T, H,
                                          p, Tmax, nullptr),
           cuda_msg(), "denom_bias[1, 3] is Inf");
      cs = CU_ST(crate_cuda_tssa_causal_forward_f32, dW.as<float>(), dt.as<float>(), dbp.as<float>(), dY.as<float>(),
                 nullptr, B, T, H, p, Tmax, nullptr);
      same("NaN in denom_bias past T", cs,
           crate_tssa_causal_forward_f32(W.data(), temp.data(), bpast.data(), Y.data(), nullptr, B, T, H, p, Tmax),
           cuda_msg(), nullptr);
    }
    // NaN in dY propagates to the same elements of dW, dtemp and ddenom_bias as on the CPU
    {
      std::vector<float> G = randn(r, nW);
      G[(0 * T + 11) * D + 7] = std::numeric_limits<float>::quiet_NaN();
      DBuf dG = din("dY(NaN)", G), dgW = dout<float>("dW", nW);
      std::vector<float> gW(nW);
      CU(crate_cuda_tssa_causal_backward_f32, dW.as<float>(), dt.as<float>(), db.as<float>(), dG.as<float>(),
         dgW.as<float>(), dgt.as<float>(), dgb.as<float>(), B, T, H, p, Tmax, nullptr);
      CPU(crate_tssa_causal_backward_f32, W.data(), temp.data(), bias.data(), G.data(), gW.data(), gt.data(), gb.data(),
          B, T, H, p, Tmax, nullptr);
      auto nan_pattern = [](const char* what, const std::vector<float>& cu, const std::vector<float>& cpu) {
        size_t n_cu = 0, n_cpu = 0, differ = 0;
        for (size_t i = 0; i < cu.size(); ++i) {
          n_cu += std::isnan(cu[i]);
          n_cpu += std::isnan(cpu[i]);
          differ += std::isnan(cu[i]) != std::isnan(cpu[i]);
        }
        note(fmt("%s NaN %zu/%zu", what, n_cu, n_cpu));
        if (differ) fail(fmt("%s: NaN pattern differs from the CPU's in %zu elements", what, differ));
        if (!n_cpu) fail(fmt("%s: the CPU reference has no NaN (test setup)", what));
      };
      nan_pattern("dW", down<float>(dgW), gW);
      nan_pattern("dtemp", down<float>(dgt), gt);
      nan_pattern("ddenom_bias", down<float>(dgb), gb);
    }
  });
}

void tssa_causal_cases() {
  struct S {
    int64_t B, T, H, p;
  };
  const std::vector<S> shapes =
      opt.small ? std::vector<S>{{2, 1, 3, 16}, {2, 17, 3, 33}, {1, 65, 8, 16}}
                : std::vector<S>{{1, 1, 1, 1},   {2, 1, 3, 16},   {2, 15, 3, 16},   {2, 16, 2, 33},  {1, 17, 8, 1},
                                 {2, 63, 3, 33}, {1, 64, 8, 16},  {2, 65, 1, 64},   {2, 200, 3, 64}, {1, 200, 8, 33},
                                 {2, 63, 1, 1},  {1, 65, 3, 100}, {2, 1024, 4, 64}, {1, 513, 12, 64}};
  for (const S& s : shapes) tssa_causal_case(s.B, s.T, s.H, s.p, s.T + 7, true, true);
  tssa_causal_case(2, 64, 3, 16, 64, true, true);  // T == Tmax
  tssa_causal_case(2, 65, 3, 16, 70, false, false);
  tssa_causal_case(2, 20, 2, 4, 24, true, true, true);
  tssa_causal_error_cases();
}

// ================================================================================ bf16 TSSA

// bf16 W / Y / dY / dW; temp, denom_bias, Pi, colnorm, mstat, dtemp, ddenom_bias f32. The inputs
// are rounded to bf16 first and the references (CPU f64, and CPU f32 for the f32 outputs) are
// computed from the rounded values, so what is checked is the kernel, not the input rounding.
// The kernels compute in f64 and round each bf16 output once, so element-wise
//     |cuda - f64| <= 2^-8 |f64| (1 + 2^-16)  +  2 max|cpu_f32 - f64|  +  1e-9 tol_scale max|f64|
// (half a bf16 ulp of the element itself: 8 significant bits; the second term covers what the f32-rounded saved
// statistics of the backward inputs move the result, as in the f32 cases; the last, f64 summation
// order on cancelling elements). This bound catches wrong maths and bf16 arithmetic, not f32
// arithmetic (its error is far below a bf16 ulp); the note therefore also counts the elements that
// are not the f64 reference rounded to bf16: ~0 for one rounding of an f64 result (a few where the
// f32-rounded saved statistics move a value across a rounding midpoint).
// f32 outputs use check_out as the f32 cases.
std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = f32_to_bf16(v[i]);
  return o;
}
std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) o[i] = bf16_to_f32(v[i]);
  return o;
}
uint16_t f64_to_bf16(double v) {  // one rounding (via f32 rounded to odd)
  float f = static_cast<float>(v);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isfinite(f) && static_cast<double>(f) != v && (u & 1u) == 0)
    f = std::nextafter(f, v > static_cast<double>(f) ? INFINITY : -INFINITY);
  return f32_to_bf16(f);
}

void check_bf16_out(const char* what, const std::vector<uint16_t>& cu16, const std::vector<float>& cpu,
                    const std::vector<double>& ref) {
  if (cu16.size() != ref.size() || cpu.size() != ref.size())
    throw Failure{fmt("%s: size mismatch (%zu, %zu, %zu)", what, cu16.size(), cpu.size(), ref.size())};
  double scale = 0, ep = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(ref[i])) continue;
    scale = std::max(scale, std::fabs(ref[i]));
    if (std::isfinite(cpu[i])) ep = std::max(ep, std::fabs(static_cast<double>(cpu[i]) - ref[i]));
  }
  const double abs_part = 2 * ep + 1e-9 * opt.tol_scale * std::max(scale, 1e-30);
  double worst_ratio = 0, max_rel_ulp = 0;
  size_t worst = 0, bad = 0, nan = 0, not_nearest = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double r = ref[i], c = static_cast<double>(bf16_to_f32(cu16[i]));
    if (std::isnan(r)) continue;
    if (!std::isfinite(c)) {
      nan += std::isfinite(r) || c != r;
      worst = i;
      continue;
    }
    const double d = std::fabs(c - r), bound = std::ldexp(std::fabs(r), -8) * (1 + std::ldexp(1.0, -16)) + abs_part;
    if (d > bound) ++bad;
    if (d / bound > worst_ratio) {
      worst_ratio = d / bound;
      worst = i;
    }
    if (r != 0) max_rel_ulp = std::max(max_rel_ulp, d / std::ldexp(std::fabs(r), -8));
    not_nearest += cu16[i] != f64_to_bf16(r);
  }
  note(fmt("%s max err/bound %.2f, max err/(2^-8|f64|) %.2f, not the nearest bf16 of f64 %zu/%zu", what, worst_ratio,
           max_rel_ulp, not_nearest, ref.size()));
  if (nan) fail(fmt("%s: %zu non-finite values where the reference is finite", what, nan));
  if (bad)
    fail(fmt("%s: %zu elements past the bound (worst at %zu: cuda %.9g, f64 %.9g, %.2f x bound)", what, bad, worst,
             static_cast<double>(bf16_to_f32(cu16[worst])), ref[worst], worst_ratio));
}

void tssa_bf16_case(int64_t B, int64_t N, int64_t H, int64_t p, bool saved) {
  const std::string name = fmt("tssa bf16 B=%lld N=%lld H=%lld p=%lld%s", (long long)B, (long long)N, (long long)H,
                               (long long)p, saved ? "" : " backward saved=NULL");
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t nW = static_cast<size_t>(B * N * H * p), nPi = static_cast<size_t>(B * H * N),
                 nS = static_cast<size_t>(B * H * p);
    const std::vector<uint16_t> W16 = to_bf16(randn(r, nW));
    const std::vector<float> W = from_bf16(W16), temp = uniform(r, static_cast<size_t>(H), 0.5, 2.0);
    const std::vector<double> W64 = to64(W), t64 = to64(temp);
    std::vector<double> Y64(nW), Pi64(nPi), cn64(nS), ms64(nS);
    std::vector<float> Y32(nW), Pi32(nPi), cn32(nS), ms32(nS);
    CPU(crate_tssa_forward_f64, W64.data(), t64.data(), Y64.data(), Pi64.data(), cn64.data(), ms64.data(), B, N, H, p);
    CPU(crate_tssa_forward_f32, W.data(), temp.data(), Y32.data(), Pi32.data(), cn32.data(), ms32.data(), B, N, H, p);
    DBuf dW = din("W", W16), dt = din("temp", temp), dY = dout<uint16_t>("Y", nW), dPi = dout<float>("Pi", nPi),
         dcn = dout<float>("colnorm", nS), dms = dout<float>("mstat", nS);
    CU(crate_cuda_tssa_forward_bf16, dW.as<uint16_t>(), dt.as<float>(), dY.as<uint16_t>(), dPi.as<float>(),
       dcn.as<float>(), dms.as<float>(), B, N, H, p, nullptr);
    check_bf16_out("Y", down<uint16_t>(dY), Y32, Y64);
    check_out("Pi", down<float>(dPi), Pi32, Pi64, Tol::f64i);
    check_out("colnorm", down<float>(dcn), cn32, cn64, Tol::f64i);
    check_out("mstat", down<float>(dms), ms32, ms64, Tol::f64i);
    const std::vector<uint16_t> G16 = to_bf16(randn(r, nW));
    const std::vector<float> G = from_bf16(G16), Pii = to32(Pi64), cni = to32(cn64), msi = to32(ms64);
    const std::vector<double> G64 = to64(G);
    std::vector<double> gW64(nW), gt64(H);
    std::vector<float> gW32(nW), gt32(H);
    CPU(crate_tssa_backward_f64, W64.data(), t64.data(), G64.data(), Pi64.data(), cn64.data(), ms64.data(), gW64.data(),
        gt64.data(), B, N, H, p, nullptr);
    CPU(crate_tssa_backward_f32, W.data(), temp.data(), G.data(), saved ? Pii.data() : nullptr,
        saved ? cni.data() : nullptr, saved ? msi.data() : nullptr, gW32.data(), gt32.data(), B, N, H, p, nullptr);
    DBuf dG = din("dY", G16), dPii = din("Pi(in)", Pii), dcni = din("colnorm(in)", cni), dmsi = din("mstat(in)", msi),
         dgW = dout<uint16_t>("dW", nW), dgt = dout<float>("dtemp", H);
    CU(crate_cuda_tssa_backward_bf16, dW.as<uint16_t>(), dt.as<float>(), dG.as<uint16_t>(),
       saved ? dPii.as<float>() : nullptr, saved ? dcni.as<float>() : nullptr, saved ? dmsi.as<float>() : nullptr,
       dgW.as<uint16_t>(), dgt.as<float>(), B, N, H, p, nullptr);
    check_bf16_out("dW", down<uint16_t>(dgW), gW32, gW64);
    check_out("dtemp", down<float>(dgt), gt32, gt64, Tol::f64ig);
  });
}

// As tssa_causal_case (NaN denom_bias past T, zero / tiny first steps of feature 0, nullable Pi
// and parameter gradients), with bf16 W, dY, Y, dW.
void tssa_causal_bf16_case(int64_t B, int64_t T, int64_t H, int64_t p, int64_t Tmax, bool with_pi, bool param_grads,
                           bool tiny = false) {
  const std::string name = fmt("tssa_causal bf16 B=%lld T=%lld H=%lld p=%lld Tmax=%lld%s%s%s", (long long)B,
                               (long long)T, (long long)H, (long long)p, (long long)Tmax, with_pi ? "" : " Pi=NULL",
                               param_grads ? "" : " dtemp=ddenom=NULL", tiny ? " clamp-active" : "");
  run_case(name, [&] {
    Rng r = case_rng();
    const int64_t D = H * p;
    const size_t nW = static_cast<size_t>(B * T * D), nPi = static_cast<size_t>(B * H * T),
                 nB = static_cast<size_t>(H * Tmax);
    std::vector<float> Wf = randn(r, nW), temp = uniform(r, static_cast<size_t>(H), 0.5, 2.0),
                       bias = uniform(r, nB, -0.5, 0.5);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = T; t < Tmax; ++t) bias[h * Tmax + t] = std::numeric_limits<float>::quiet_NaN();
    if (D > 0)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < std::min<int64_t>(T, 3); ++t) Wf[(b * T + t) * D] = tiny ? 1e-7f : 0.f;
    const std::vector<uint16_t> W16 = to_bf16(Wf);
    const std::vector<float> W = from_bf16(W16);
    const std::vector<double> W64 = to64(W), t64 = to64(temp), b64 = to64(bias);
    std::vector<double> Y64(nW), Pi64(nPi);
    std::vector<float> Y32(nW), Pi32(nPi);
    CPU(crate_tssa_causal_forward_f64, W64.data(), t64.data(), b64.data(), Y64.data(), Pi64.data(), B, T, H, p, Tmax);
    CPU(crate_tssa_causal_forward_f32, W.data(), temp.data(), bias.data(), Y32.data(), Pi32.data(), B, T, H, p, Tmax);
    DBuf dW = din("W", W16), dt = din("temp", temp), db = din("denom_bias", bias), dY = dout<uint16_t>("Y", nW),
         dPi = with_pi ? dout<float>("Pi", nPi) : DBuf();
    CU(crate_cuda_tssa_causal_forward_bf16, dW.as<uint16_t>(), dt.as<float>(), db.as<float>(), dY.as<uint16_t>(),
       dPi.as<float>(), B, T, H, p, Tmax, nullptr);
    check_bf16_out("Y", down<uint16_t>(dY), Y32, Y64);
    if (with_pi) check_out("Pi", down<float>(dPi), Pi32, Pi64, Tol::f64i);
    const std::vector<uint16_t> G16 = to_bf16(randn(r, nW));
    const std::vector<float> G = from_bf16(G16);
    const std::vector<double> G64 = to64(G);
    std::vector<double> gW64(nW), gt64(H), gb64(nB);
    std::vector<float> gW32(nW), gt32(H), gb32(nB);
    CPU(crate_tssa_causal_backward_f64, W64.data(), t64.data(), b64.data(), G64.data(), gW64.data(), gt64.data(),
        gb64.data(), B, T, H, p, Tmax, nullptr);
    CPU(crate_tssa_causal_backward_f32, W.data(), temp.data(), bias.data(), G.data(), gW32.data(), gt32.data(),
        gb32.data(), B, T, H, p, Tmax, nullptr);
    DBuf dG = din("dY", G16), dgW = dout<uint16_t>("dW", nW), dgt = param_grads ? dout<float>("dtemp", H) : DBuf(),
         dgb = param_grads ? dout<float>("ddenom_bias", nB) : DBuf();
    CU(crate_cuda_tssa_causal_backward_bf16, dW.as<uint16_t>(), dt.as<float>(), db.as<float>(), dG.as<uint16_t>(),
       dgW.as<uint16_t>(), dgt.as<float>(), dgb.as<float>(), B, T, H, p, Tmax, nullptr);
    check_bf16_out("dW", down<uint16_t>(dgW), gW32, gW64);
    if (param_grads) check_causal_param_grads(dgt, dgb, gt32, gt64, gb32, gb64, H, T, Tmax);
  });
}

// NaN reporting of the bf16 entries as the CPU (same statuses and messages as the f32 entries).
void tssa_bf16_error_cases() {
  run_case("tssa bf16: NaN in W / temp / denom_bias reported as the CPU", [] {
    Rng r = case_rng();
    const int64_t B = 2, T = 21, H = 3, p = 5, Tmax = 24, D = H * p;
    const size_t nW = static_cast<size_t>(B * T * D), nB = static_cast<size_t>(H * Tmax);
    std::vector<float> W = from_bf16(to_bf16(randn(r, nW)));
    const std::vector<float> temp = uniform(r, H, 0.5, 2.0), bias = uniform(r, nB, -0.5, 0.5);
    W[(1 * T + 5) * D + 2] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> tn = temp, bn = bias;
    tn[1] = std::numeric_limits<float>::infinity();
    bn[2 * Tmax + 4] = std::numeric_limits<float>::quiet_NaN();
    std::vector<uint16_t> Wn16 = to_bf16(W), W16 = to_bf16(from_bf16(to_bf16(randn(r, nW))));
    Wn16[(1 * T + 5) * D + 2] = 0x7FC0;  // NaN
    DBuf dWn = din("W(NaN)", Wn16), dWok = din("W", W16), dt = din("temp", temp), dtn = din("temp(Inf)", tn),
         db = din("denom_bias", bias), dbn = din("denom_bias(NaN)", bn), dY = dout<uint16_t>("Y", nW),
         dG = din("dY", W16), dgW = dout<uint16_t>("dW", nW), dPi = dout<float>("Pi", static_cast<size_t>(B * H * T)),
         dcn = dout<float>("colnorm", static_cast<size_t>(B * D)),
         dms = dout<float>("mstat", static_cast<size_t>(B * D));
    std::vector<float> Y(nW), Pi(static_cast<size_t>(B * H * T)), cn(static_cast<size_t>(B * D)),
        ms(static_cast<size_t>(B * D));
    auto same = [](const char* what, crate_status cuda, crate_status cpu, const char* expect_in_message) {
      const std::string cpu_message = cpu == CRATE_OK ? "" : crate_last_error(), cuda_message = cuda_msg();
      note(fmt("%s: %s", what, status_name(cuda)));
      if (cuda != cpu)
        fail(fmt("%s: CUDA %s, CPU %s (%s)", what, status_name(cuda), status_name(cpu), cpu_message.c_str()));
      if (cuda_message.find(expect_in_message) == std::string::npos)
        fail(fmt("%s: message '%s' lacks '%s' (CPU: '%s')", what, cuda_message.c_str(), expect_in_message,
                 cpu_message.c_str()));
    };
    // vision (N = T): NaN in W, Inf in temp
    same("vision forward, NaN in W",
         CU_ST(crate_cuda_tssa_forward_bf16, dWn.as<uint16_t>(), dt.as<float>(), dY.as<uint16_t>(), dPi.as<float>(),
               dcn.as<float>(), dms.as<float>(), B, T, H, p, nullptr),
         crate_tssa_forward_f32(W.data(), temp.data(), Y.data(), Pi.data(), cn.data(), ms.data(), B, T, H, p),
         "W[b=1, n=5, c=2] is NaN");
    same("vision forward, Inf in temp",
         CU_ST(crate_cuda_tssa_forward_bf16, dWok.as<uint16_t>(), dtn.as<float>(), dY.as<uint16_t>(), dPi.as<float>(),
               dcn.as<float>(), dms.as<float>(), B, T, H, p, nullptr),
         crate_tssa_forward_f32(W.data(), tn.data(), Y.data(), Pi.data(), cn.data(), ms.data(), B, T, H, p),
         "temp[1] is Inf");
    same("vision backward (saved=NULL), NaN in W",
         CU_ST(crate_cuda_tssa_backward_bf16, dWn.as<uint16_t>(), dt.as<float>(), dG.as<uint16_t>(), nullptr, nullptr,
               nullptr, dgW.as<uint16_t>(), nullptr, B, T, H, p, nullptr),
         crate_tssa_backward_f32(W.data(), temp.data(), W.data(), nullptr, nullptr, nullptr, Y.data(), nullptr, B, T, H,
                                 p, nullptr),
         "W[b=1, n=5, c=2] is NaN");
    // causal: NaN in W (forward, backward), NaN in denom_bias (reported before temp)
    same("causal forward, NaN in W",
         CU_ST(crate_cuda_tssa_causal_forward_bf16, dWn.as<uint16_t>(), dt.as<float>(), db.as<float>(),
               dY.as<uint16_t>(), nullptr, B, T, H, p, Tmax, nullptr),
         crate_tssa_causal_forward_f32(W.data(), temp.data(), bias.data(), Y.data(), nullptr, B, T, H, p, Tmax),
         "W[b=1, t=5, c=2] is NaN");
    same("causal backward, NaN in W",
         CU_ST(crate_cuda_tssa_causal_backward_bf16, dWn.as<uint16_t>(), dt.as<float>(), db.as<float>(),
               dG.as<uint16_t>(), dgW.as<uint16_t>(), nullptr, nullptr, B, T, H, p, Tmax, nullptr),
         crate_tssa_causal_backward_f32(W.data(), temp.data(), bias.data(), W.data(), Y.data(), nullptr, nullptr, B, T,
                                        H, p, Tmax, nullptr),
         "W[b=1, t=5, c=2] is NaN");
    same("causal backward, NaN in denom_bias and Inf in temp",
         CU_ST(crate_cuda_tssa_causal_backward_bf16, dWok.as<uint16_t>(), dtn.as<float>(), dbn.as<float>(),
               dG.as<uint16_t>(), dgW.as<uint16_t>(), nullptr, nullptr, B, T, H, p, Tmax, nullptr),
         crate_tssa_causal_backward_f32(W.data(), tn.data(), bn.data(), W.data(), Y.data(), nullptr, nullptr, B, T, H,
                                        p, Tmax, nullptr),
         "denom_bias[2, 4] is NaN");
  });
}

void tssa_bf16_cases() {
  struct S {
    int64_t B, N, H, p;
  };
  // vision: token slices of 8, feature CTAs of 32, head slabs of 32 lanes
  const std::vector<S> vs = opt.small ? std::vector<S>{{2, 7, 3, 32}, {2, 33, 2, 48}}
                                      : std::vector<S>{{2, 1, 2, 16},  {2, 7, 3, 32},   {2, 33, 2, 48},
                                                       {2, 65, 3, 64}, {1, 197, 4, 33}, {2, 256, 2, 32}};
  for (const S& s : vs) tssa_bf16_case(s.B, s.N, s.H, s.p, true);
  tssa_bf16_case(2, 33, 3, 16, false);
  // causal: chunks of 16 steps, head slabs of 32, token scans of 128 steps
  const std::vector<S> cs = opt.small ? std::vector<S>{{2, 17, 3, 33}, {1, 65, 8, 16}}
                                      : std::vector<S>{{2, 1, 3, 16},  {2, 17, 3, 33},  {1, 65, 8, 16},
                                                       {2, 63, 1, 64}, {2, 129, 3, 40}, {1, 200, 4, 33}};
  for (const S& s : cs) tssa_causal_bf16_case(s.B, s.N, s.H, s.p, s.N + 7, true, true);
  tssa_causal_bf16_case(2, 33, 3, 16, 33, false, false);
  tssa_causal_bf16_case(2, 20, 2, 4, 24, true, true, true);
  tssa_bf16_error_cases();
}

// ===================================================================================== row ops

// Row-op references when the CPU kernel objects are not linked (standalone build): the same math
// as native/cpu/nn.cc, plain loops.
namespace rowref {
template <class T>
void softmax(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, xr[j]);
    double s = 0;
    for (int64_t j = 0; j < cols; ++j) s += std::exp(static_cast<double>(xr[j] - mx));
    for (int64_t j = 0; j < cols; ++j)
      yr[j] = log ? static_cast<T>(xr[j] - (mx + static_cast<T>(std::log(s))))
                  : static_cast<T>(std::exp(static_cast<double>(xr[j] - mx)) / s);
  }
}
template <class T>
void softmax_backward(const T* y, const T* g, T* dx, int64_t rows, int64_t cols, bool log) {
  for (int64_t r = 0; r < rows; ++r) {
    const T *yr = y + r * cols, *gr = g + r * cols;
    double s = 0;
    for (int64_t j = 0; j < cols; ++j) s += log ? static_cast<double>(gr[j]) : static_cast<double>(gr[j]) * yr[j];
    for (int64_t j = 0; j < cols; ++j)
      dx[r * cols + j] = log ? static_cast<T>(gr[j] - std::exp(yr[j]) * static_cast<T>(s))
                             : static_cast<T>(yr[j] * (gr[j] - static_cast<T>(s)));
  }
}
template <class T>
void layernorm(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t cols, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T m = 0, v = 0;
    for (int64_t j = 0; j < cols; ++j) m += xr[j];
    m /= static_cast<T>(cols);
    for (int64_t j = 0; j < cols; ++j) v += (xr[j] - m) * (xr[j] - m);
    v /= static_cast<T>(cols);
    const T rs = static_cast<T>(1.0 / std::sqrt(static_cast<double>(v) + eps));
    mean[r] = m;
    rstd[r] = rs;
    for (int64_t j = 0; j < cols; ++j) y[r * cols + j] = (xr[j] - m) * rs * (w ? w[j] : T(1)) + (b ? b[j] : T(0));
  }
}
template <class T>
void layernorm_backward(const T* x, const T* w, const T* mean, const T* rstd, const T* g, T* dx, T* dw, T* db,
                        int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    const T *xr = x + r * cols, *gr = g + r * cols;
    T s1 = 0, s2 = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const T gw = gr[j] * (w ? w[j] : T(1));
      s1 += gw;
      s2 += gw * ((xr[j] - mean[r]) * rstd[r]);
    }
    s1 /= static_cast<T>(cols);
    s2 /= static_cast<T>(cols);
    for (int64_t j = 0; j < cols; ++j) {
      const T xh = (xr[j] - mean[r]) * rstd[r];
      dx[r * cols + j] = rstd[r] * (gr[j] * (w ? w[j] : T(1)) - s1 - xh * s2);
      if (dw) dw[j] += gr[j] * xh;
      if (db) db[j] += gr[j];
    }
  }
}
template <class T>
int64_t cross_entropy(const T* logits, const int32_t* target, T* loss_row, T* lse, int64_t rows, int64_t classes,
                      double smoothing, int64_t ignore_index) {
  int64_t counted = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = logits + r * classes;
    T mx = -std::numeric_limits<T>::infinity();
    double s = 0, sx = 0;
    for (int64_t j = 0; j < classes; ++j) mx = std::max(mx, xr[j]);
    for (int64_t j = 0; j < classes; ++j) {
      s += std::exp(static_cast<double>(xr[j] - mx));
      sx += xr[j];
    }
    const double l = static_cast<double>(mx) + std::log(s);
    lse[r] = static_cast<T>(l);
    if (target[r] == ignore_index) {
      loss_row[r] = 0;
      continue;
    }
    ++counted;
    loss_row[r] = static_cast<T>((1.0 - smoothing) * (l - xr[target[r]]) + smoothing * (l - sx / classes));
  }
  return counted;
}
template <class T>
void cross_entropy_backward(const T* logits, const int32_t* target, const T* lse, const T* g_row, T* dlogits,
                            int64_t rows, int64_t classes, double smoothing, int64_t ignore_index) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < classes; ++j)
      dlogits[r * classes + j] = target[r] == ignore_index
                                     ? T(0)
                                     : static_cast<T>(static_cast<double>(g_row[r]) *
                                                      (std::exp(static_cast<double>(logits[r * classes + j]) - lse[r]) -
                                                       smoothing / classes - (j == target[r] ? 1.0 - smoothing : 0.0)));
}
}  // namespace rowref

#ifdef CRATE_TEST_CPU_NN
namespace nn = crate::cpu;  // the real CPU kernels of native/cpu/nn.cc
const char* kRowRef = "native/cpu/nn.cc kernels";
#else
namespace nn = rowref;
const char* kRowRef = "plain-loop references (standalone build)";
#endif

void layernorm_case(int64_t rows, int64_t cols, bool affine) {
  const std::string name =
      fmt("layernorm rows=%lld cols=%lld%s", (long long)rows, (long long)cols, affine ? "" : " w=b=NULL");
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t n = static_cast<size_t>(rows * cols);
    std::vector<float> x = randn(r, n, 2.0);
    for (size_t i = 0; i < n; ++i) x[i] += static_cast<float>(3.0 * ((i / cols) % 3));  // row offsets
    const std::vector<float> w = uniform(r, cols, 0.5, 1.5), b = randn(r, cols, 0.1);
    const std::vector<double> x64 = to64(x), w64 = to64(w), b64 = to64(b);
    const float* pw = affine ? w.data() : nullptr;
    const float* pb = affine ? b.data() : nullptr;
    std::vector<double> y64(n), m64(rows), s64(rows);
    std::vector<float> y32(n), m32(rows), s32(rows);
    const double eps = 1e-5;
    nn::layernorm<double>(x64.data(), affine ? w64.data() : nullptr, affine ? b64.data() : nullptr, y64.data(),
                          m64.data(), s64.data(), rows, cols, eps);
    nn::layernorm<float>(x.data(), pw, pb, y32.data(), m32.data(), s32.data(), rows, cols, eps);
    DBuf dx = din("x", x), dw = din("w", w), db = din("b", b), dy = dout<float>("y", n), dm = dout<float>("mean", rows),
         ds = dout<float>("rstd", rows);
    CU(crate_cuda_layernorm_forward_f32, dx.as<float>(), affine ? dw.as<float>() : nullptr,
       affine ? db.as<float>() : nullptr, dy.as<float>(), dm.as<float>(), ds.as<float>(), rows, cols, eps, nullptr);
    check_out("y", down<float>(dy), y32, y64, Tol::out);
    check_out("mean", down<float>(dm), m32, m64, Tol::out);
    check_out("rstd", down<float>(ds), s32, s64, Tol::out);
    const std::vector<float> G = randn(r, n), mi = to32(m64), si = to32(s64);
    const std::vector<double> G64 = to64(G), mi64 = to64(mi), si64 = to64(si);
    const std::vector<float> acc_w = randn(r, cols), acc_b = randn(r, cols);  // dw, db accumulate into these
    std::vector<double> gx64(n), gw64 = to64(acc_w), gb64 = to64(acc_b);
    std::vector<float> gx32(n), gw32 = acc_w, gb32 = acc_b;
    nn::layernorm_backward<double>(x64.data(), affine ? w64.data() : nullptr, mi64.data(), si64.data(), G64.data(),
                                   gx64.data(), gw64.data(), gb64.data(), rows, cols);
    nn::layernorm_backward<float>(x.data(), pw, mi.data(), si.data(), G.data(), gx32.data(), gw32.data(), gb32.data(),
                                  rows, cols);
    DBuf dmi = din("mean(in)", mi), dsi = din("rstd(in)", si), dG = din("g", G), dgx = dout<float>("dx", n),
         dgw = dinit("dw", acc_w), dgb = dinit("db", acc_b);
    CU(crate_cuda_layernorm_backward_f32, dx.as<float>(), affine ? dw.as<float>() : nullptr, dmi.as<float>(),
       dsi.as<float>(), dG.as<float>(), dgx.as<float>(), dgw.as<float>(), dgb.as<float>(), rows, cols, nullptr);
    check_out("dx", down<float>(dgx), gx32, gx64, Tol::grad);
    check_out("dw(+=)", down<float>(dgw), gw32, gw64, Tol::grad);
    check_out("db(+=)", down<float>(dgb), gb32, gb64, Tol::grad);
  });
}

void softmax_case(int64_t rows, int64_t cols, int log) {
  const std::string name = fmt("softmax rows=%lld cols=%lld log=%d", (long long)rows, (long long)cols, log);
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t n = static_cast<size_t>(rows * cols);
    std::vector<float> x = randn(r, n, 3.0);
    for (size_t i = 0; i < n; i += 17) x[i] += 30.f;  // large logits: the max subtraction matters
    const std::vector<double> x64 = to64(x);
    std::vector<double> y64(n);
    std::vector<float> y32(n);
    nn::softmax<double>(x64.data(), y64.data(), rows, cols, log != 0);
    nn::softmax<float>(x.data(), y32.data(), rows, cols, log != 0);
    DBuf dx = din("x", x), dy = dout<float>("y", n);
    CU(crate_cuda_softmax_forward_f32, dx.as<float>(), dy.as<float>(), rows, cols, log, nullptr);
    check_out("y", down<float>(dy), y32, y64, Tol::out);
    const std::vector<float> G = randn(r, n), yi = to32(y64);
    const std::vector<double> G64 = to64(G), yi64 = to64(yi);
    std::vector<double> gx64(n);
    std::vector<float> gx32(n);
    nn::softmax_backward<double>(yi64.data(), G64.data(), gx64.data(), rows, cols, log != 0);
    nn::softmax_backward<float>(yi.data(), G.data(), gx32.data(), rows, cols, log != 0);
    DBuf dyi = din("y(in)", yi), dG = din("g", G), dgx = dout<float>("dx", n);
    CU(crate_cuda_softmax_backward_f32, dyi.as<float>(), dG.as<float>(), dgx.as<float>(), rows, cols, log, nullptr);
    check_out("dx", down<float>(dgx), gx32, gx64, Tol::grad);
  });
}

void cross_entropy_case(int64_t rows, int64_t classes, double smoothing, int64_t ignore_index) {
  const std::string name = fmt("cross_entropy rows=%lld classes=%lld smoothing=%g ignore=%lld", (long long)rows,
                               (long long)classes, smoothing, (long long)ignore_index);
  run_case(name, [&] {
    Rng r = case_rng();
    const size_t n = static_cast<size_t>(rows * classes);
    const std::vector<float> x = randn(r, n, 2.0);
    std::vector<int32_t> t(rows);
    for (int64_t i = 0; i < rows; ++i) {
      t[i] = static_cast<int32_t>(r.next() % static_cast<uint64_t>(classes));
      if (i % 5 == 3) t[i] = static_cast<int32_t>(ignore_index);
    }
    const std::vector<double> x64 = to64(x);
    std::vector<double> l64(rows), lse64(rows);
    std::vector<float> l32(rows), lse32(rows);
    const int64_t c64 = nn::cross_entropy<double>(x64.data(), t.data(), l64.data(), lse64.data(), rows, classes,
                                                  smoothing, ignore_index);
    nn::cross_entropy<float>(x.data(), t.data(), l32.data(), lse32.data(), rows, classes, smoothing, ignore_index);
    DBuf dx = din("logits", x), dt = din("target", t), dl = dout<float>("loss_row", rows),
         dlse = dout<float>("lse", rows), dc = dout<int64_t>("counted", 1);
    CU(crate_cuda_cross_entropy_forward_f32, dx.as<float>(), dt.as<int32_t>(), dl.as<float>(), dlse.as<float>(),
       dc.as<int64_t>(), rows, classes, smoothing, ignore_index, nullptr);
    check_out("loss_row", down<float>(dl), l32, l64, Tol::out);
    check_out("lse", down<float>(dlse), lse32, lse64, Tol::out);
    const int64_t counted = down<int64_t>(dc)[0];
    note(fmt("counted %lld", (long long)counted));
    if (counted != c64) fail(fmt("counted %lld, expected %lld", (long long)counted, (long long)c64));
    const std::vector<float> gr = uniform(r, rows, 0.1, 1.0), lsei = to32(lse64);
    const std::vector<double> gr64 = to64(gr), lsei64 = to64(lsei);
    std::vector<double> gx64(n);
    std::vector<float> gx32(n);
    nn::cross_entropy_backward<double>(x64.data(), t.data(), lsei64.data(), gr64.data(), gx64.data(), rows, classes,
                                       smoothing, ignore_index);
    nn::cross_entropy_backward<float>(x.data(), t.data(), lsei.data(), gr.data(), gx32.data(), rows, classes, smoothing,
                                      ignore_index);
    DBuf dlsei = din("lse(in)", lsei), dgr = din("g_row", gr), dgx = dout<float>("dlogits", n);
    CU(crate_cuda_cross_entropy_backward_f32, dx.as<float>(), dt.as<int32_t>(), dlsei.as<float>(), dgr.as<float>(),
       dgx.as<float>(), rows, classes, smoothing, ignore_index, nullptr);
    check_out("dlogits", down<float>(dgx), gx32, gx64, Tol::grad);
  });
}

void row_cases() {
  struct S {
    int64_t rows, cols;
  };
  const std::vector<S> ln = opt.small ? std::vector<S>{{1, 1}, {7, 31}, {33, 65}, {4, 384}}
                                      : std::vector<S>{{1, 1},      {7, 31},    {33, 32},   {65, 33},  {129, 127},
                                                       {1024, 384}, {64, 1024}, {16, 4096}, {3, 12289}};
  int i = 0;
  for (const S& s : ln) layernorm_case(s.rows, s.cols, i++ % 4 != 2);
  const std::vector<S> sm = opt.small ? std::vector<S>{{1, 1}, {7, 31}, {33, 65}}
                                      : std::vector<S>{{1, 1},      {7, 31},    {33, 32},  {65, 33},  {129, 127},
                                                       {1024, 384}, {64, 1024}, {8, 4097}, {2, 50257}};
  i = 0;
  for (const S& s : sm) softmax_case(s.rows, s.cols, i++ % 2);
  const std::vector<S> ce = opt.small ? std::vector<S>{{1, 2}, {7, 10}, {33, 33}}
                                      : std::vector<S>{{1, 2}, {7, 10}, {33, 33}, {129, 1000}, {64, 4097}, {8, 50257}};
  i = 0;
  for (const S& s : ce) {
    cross_entropy_case(s.rows, s.cols, i % 2 ? 0.1 : 0.0, -100);
    ++i;
  }
  cross_entropy_case(opt.small ? 9 : 65, 7, 0.1, 3);  // a valid class id as ignore_index
}

// ====================================================================================== leaks

/** Allocation balance: after a first pass over every kernel (persistent workspaces, e.g. a cuBLAS
 * workspace or a heuristic cache, are allocated by then), a second pass over one case per kernel
 * must leave allocated_bytes exactly where it was. */
void leak_cases(const crate_cuda_memory_stats& base) {
  crate_cuda_memory_stats a1{};
  if (!g.crate_cuda_memory_stats_get || g.crate_cuda_synchronize(nullptr) != CRATE_OK ||
      g.crate_cuda_memory_stats_get(&a1) != CRATE_OK)
    return;
  g_suffix = " (leak-check pass)";
  for (int own : {1, 0}) gemm_case(own, kF32, 0, 1, 33, 65, 63, 1.f, 0.f, 2, false, 0);
  gemm_case(true, kBF16, 1, 0, 33, 65, 63, 1.f, 0.f, 1, false, 0);
  gemm_halfout_case(true, false, 0, 1, 33, 65, 63, 1.f, 0.5f, 2, false, 0);
  gemm_halfout_case(true, true, 1, 0, 33, 65, 63, 1.f, 0.5f, 1, false, 0);
  ista16_case(65, 63, 0.1f, 0.1f, false);
  ista16_oc_case(false, 33, 33, 67, 0.1f, 0.1f, kSavedNone, kGradY | kGradD | kGradD1);
  ista16_oc_case(true, 33, 33, 67, 0.1f, 0.1f, kSavedFirst, kGradY | kGradD);
  mssa_case(2, 65, 2, 64, 1, "some");
  mssa_bf16_case(2, 65, 2, 40, 1, "some");
  ista_case(65, 63, 0.1f, 0.1f, false);
  ista_oc_case(false, 65, 33, 133, 0.1f, 0.1f, kSavedNone, kGradY | kGradD | kGradD1);
  ista_oc_case(true, 65, 33, 133, 0.1f, 0.1f, kSavedFirst, kGradY | kGradD);
  logdet_case(2, 33, 65, false);
  logdet_case(2, 33, 65, true);
  logdet_heads_case(2, 9, 3, 37, true);
  logdet_bf16_case(2, 9, 3, 37, true);
  tssa_case(2, 33, 2, 32, true);
  tssa_case(2, 33, 2, 32, false);
  tssa_causal_case(2, 33, 2, 32, 40, true, true);
  tssa_bf16_case(2, 33, 2, 32, false);
  tssa_causal_bf16_case(2, 33, 2, 32, 40, true, true);
  layernorm_case(33, 65, true);
  softmax_case(33, 65, 1);
  cross_entropy_case(33, 65, 0.1, -100);
  g_suffix.clear();
  if (g.crate_cuda_gemm_force_own) g.crate_cuda_gemm_force_own(0);
  run_case("runtime: allocated_bytes unchanged by a second pass (no scratch leaked)", [&] {
    CU(crate_cuda_synchronize, nullptr);
    crate_cuda_memory_stats s{};
    CU(crate_cuda_memory_stats_get, &s);
    note(
        fmt("allocated %zu after the first pass, %zu after the second (persistent since start: %lld B); peak %zu, "
            "cached %zu, allocs %lld, device allocs %lld, oom retries %lld",
            a1.allocated_bytes, s.allocated_bytes, (long long)a1.allocated_bytes - (long long)base.allocated_bytes,
            s.peak_allocated_bytes, s.cached_bytes, (long long)s.num_allocs, (long long)s.num_device_allocs,
            (long long)s.num_oom_retries));
    if (s.allocated_bytes != a1.allocated_bytes)
      fail(fmt("allocated_bytes changed by %lld over the second pass",
               (long long)s.allocated_bytes - (long long)a1.allocated_bytes));
    if (g.crate_cuda_empty_cache) g.crate_cuda_empty_cache();
  });
}

// ===================================================================================== sticky

int sticky_mode() {
  // Provoke an illegal address inside a kernel: device pointers far outside any allocation (the
  // first that faults wins; 2^46 is above where the driver places allocations, 0x1000 is page 1).
  DBuf out = dout<float>("out", 1 << 20);
  crate_status st_call = CRATE_OK, st_sync = CRATE_OK;
  std::string how, m_call, m_sync;
  for (uintptr_t addr : {uintptr_t(1) << 46, uintptr_t(0x1000), (uintptr_t(1) << 47) - (uintptr_t(1) << 30)}) {
    float* bogus = reinterpret_cast<float*>(addr);
    if (g.crate_cuda_softmax_forward_f32) {
      how = fmt("softmax_forward reading %p", static_cast<void*>(bogus));
      st_call = g.crate_cuda_softmax_forward_f32(bogus, out.as<float>(), 1024, 1024, 0, nullptr);
    } else if (g.crate_cuda_layernorm_forward_f32) {
      how = fmt("layernorm_forward reading %p", static_cast<void*>(bogus));
      st_call = g.crate_cuda_layernorm_forward_f32(bogus, nullptr, nullptr, out.as<float>(), out.as<float>(),
                                                   out.as<float>(), 1024, 1024, 1e-5, nullptr);
    } else {
      std::printf("FAIL sticky: neither crate_cuda_softmax_forward_f32 nor crate_cuda_layernorm_forward_f32 exists\n");
      std::printf("cuda tests: 0 passed, 1 failed\n");
      return 1;
    }
    m_call = cuda_msg();
    st_sync = g.crate_cuda_synchronize ? g.crate_cuda_synchronize(nullptr) : CRATE_ERR_INTERNAL;
    m_sync = cuda_msg();
    std::printf("sticky: %s: call %s, synchronize %s\n", how.c_str(), status_name(st_call), status_name(st_sync));
    if (st_call != CRATE_OK || st_sync != CRATE_OK) break;
  }
  crate_status st_status = g.crate_cuda_status ? g.crate_cuda_status() : CRATE_ERR_INTERNAL;
  const std::string m_status = cuda_msg();
  void* p = nullptr;
  crate_status st_malloc = g.crate_cuda_malloc ? g.crate_cuda_malloc(&p, 1024, nullptr) : CRATE_ERR_INTERNAL;
  const std::string m_malloc = cuda_msg();
  crate_status st_kernel =
      g.crate_cuda_ista_forward_f32
          ? g.crate_cuda_ista_forward_f32(out.as<float>(), out.as<float>(), out.as<float>(), 4, 4, 0.1f, 0.1f, nullptr)
          : CRATE_ERR_CUDA;
  const std::string m_kernel = cuda_msg();
  g_poisoned = true;  // the DBuf destructor must not try to use the context
  std::printf("sticky: provoked with %s\n", how.c_str());
  std::printf("  call:        %s %s\n", status_name(st_call), st_call ? m_call.c_str() : "");
  std::printf("  synchronize: %s %s\n", status_name(st_sync), m_sync.c_str());
  std::printf("  status:      %s %s\n", status_name(st_status), m_status.c_str());
  std::printf("  malloc:      %s %s\n", status_name(st_malloc), m_malloc.c_str());
  std::printf("  ista:        %s %s\n", status_name(st_kernel), m_kernel.c_str());
  std::vector<std::string> bad;
  if (st_call != CRATE_OK && st_call != CRATE_ERR_CUDA)
    bad.push_back(
        fmt("the launch returned %s (expected OK, or CRATE_ERR_CUDA with CRATE_SYNC=1)", status_name(st_call)));
  if (st_call == CRATE_OK && st_sync != CRATE_ERR_CUDA) bad.push_back("synchronize did not report CRATE_ERR_CUDA");
  if (st_status != CRATE_ERR_CUDA) bad.push_back("crate_cuda_status() is not CRATE_ERR_CUDA after the fault");
  if (st_malloc != CRATE_ERR_CUDA) bad.push_back("crate_cuda_malloc after the fault is not CRATE_ERR_CUDA");
  if (st_kernel != CRATE_ERR_CUDA) bad.push_back("a kernel call after the fault is not CRATE_ERR_CUDA");
  std::string lower = m_status;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.find("illegal") == std::string::npos && lower.find("sticky") == std::string::npos &&
      lower.find("unusable") == std::string::npos)
    bad.push_back("crate_cuda_status message names neither the illegal access nor the sticky state");
  if (m_malloc.empty() || m_malloc == "(no message)") bad.push_back("no message after the failed malloc");
  if (bad.empty()) {
    std::printf("PASS sticky: every call after the fault fails with CRATE_ERR_CUDA and says why\n");
    std::printf("cuda tests: 1 passed, 0 failed\n");
    return 0;
  }
  for (const auto& b : bad) std::printf("FAIL sticky: %s\n", b.c_str());
  std::printf("cuda tests: 0 passed, 1 failed\n");
  return 1;
}

// ======================================================================================= main

std::string exe_dir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  std::string p = buf;
  const auto s = p.rfind('/');
  return s == std::string::npos ? "." : p.substr(0, s);
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--small] [--filter SUBSTR] [--exclude SUBSTR]... [--seed N] [--tol-scale X] [--lib PATH] "
               "[--device N] [--sticky]\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--small")
      opt.small = true;
    else if (a == "--sticky")
      opt.sticky = true;
    else if (a == "--filter")
      opt.filter = val();
    else if (a == "--exclude")
      opt.exclude.push_back(val());
    else if (a == "--seed")
      opt.seed = std::strtoull(val().c_str(), nullptr, 10);
    else if (a == "--tol-scale")
      opt.tol_scale = std::atof(val().c_str());
    else if (a == "--lib")
      opt.lib = val();
    else if (a == "--device")
      opt.device = std::atoi(val().c_str());
    else if (a == "--help" || a == "-h") {
      usage(argv[0]);
      return 0;
    } else
      return usage(argv[0]);
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const char* env = std::getenv("CRATE_CUDA_LIB");
  g.path = !opt.lib.empty() ? opt.lib : (env && *env) ? env : exe_dir() + "/libcrate_cuda.so";
  g.handle = dlopen(g.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!g.handle) {
    const char* e = dlerror();
    std::printf("cuda tests: FAILED: cannot load %s: %s\n", g.path.c_str(), e ? e : "?");
    return 1;
  }
#define X(n)                                                   \
  g.n = reinterpret_cast<decltype(&::n)>(dlsym(g.handle, #n)); \
  if (!g.n) g.missing.push_back(#n);
  CRATE_CUDA_ENTRIES(X)
#undef X
  std::printf("crate cuda tests: %s (crate %s, CPU threads %d, row-op reference: %s, seed %llu%s%s)\n", g.path.c_str(),
              crate_version(), crate_num_threads(), kRowRef, (unsigned long long)opt.seed, opt.small ? ", --small" : "",
              opt.filter.empty() ? "" : (", --filter " + opt.filter).c_str());
  if (!g.missing.empty()) {
    std::string m;
    for (const auto& s : g.missing) m += " " + s;
    std::printf("warning: %zu entry points missing from the library:%s\n", g.missing.size(), m.c_str());
  }
  // Is a GPU usable? crate_cuda_init says; without it, the device query every build exports.
  std::string reason;
  bool usable = false;
  if (g.crate_cuda_init) {
    const crate_status st = g.crate_cuda_init(opt.device);
    usable = st == CRATE_OK;
    if (!usable) reason = fmt("crate_cuda_init(%d): %s: %s", opt.device, status_name(st), cuda_msg().c_str());
  } else {
    struct Info {  // crate_cuda_info of native/cuda/cuda_backend_api.h
      int device_count, driver_version, runtime_version, cc_major, cc_minor, sm_count;
      size_t total_mem;
      char name[256], compiled_archs[128], error[512];
    } info{};
    auto q = reinterpret_cast<int (*)(Info*)>(dlsym(g.handle, "crate_cuda_query"));
    if (q && q(&info) != 0)
      reason = std::string("no usable GPU: ") + info.error;
    else if (q)
      reason = "crate_cuda_init is missing from the library (a GPU is present)";
    else
      reason = "neither crate_cuda_init nor crate_cuda_query is exported";
    if (q && reason.rfind("no usable GPU", 0) != 0) {
      std::printf("FAIL %s\ncuda tests: 0 passed, 1 failed\n", reason.c_str());
      return 1;
    }
  }
  if (!usable) {
    std::printf("cuda tests: skipped (%s)\n", reason.c_str());
    return 0;
  }
  if (opt.sticky) {
    try {
      return sticky_mode();
    } catch (const Failure& f) {
      std::printf("FAIL sticky: %s\ncuda tests: 0 passed, 1 failed\n", f.msg.c_str());
      return 1;
    }
  }

  const auto t0 = std::chrono::steady_clock::now();
  crate_cuda_memory_stats base{};
  if (g.crate_cuda_memory_stats_get) g.crate_cuda_memory_stats_get(&base);
  runtime_cases();
  if (g.crate_cuda_memory_stats_get) g.crate_cuda_memory_stats_get(&base);
  gemm_cases();
  mssa_cases();
  mssa_bf16_cases();
  ista_cases();
  ista_oc_cases();
  ista16_cases();
  logdet_cases();
  tssa_cases();
  tssa_causal_cases();
  tssa_bf16_cases();
  row_cases();
  if (!g_poisoned && opt.filter.empty() && opt.exclude.empty()) leak_cases(base);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("cuda tests: %d passed, %d failed (%d skipped) in %.1f s\n", g_pass, g_fail, g_skip, secs);
  return g_fail ? 1 : 0;
}
