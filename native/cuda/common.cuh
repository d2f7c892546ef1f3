// common.cuh: what every CUDA translation unit of libcrate_cuda.so shares: the error model
// (C++ exceptions inside, crate_status + thread-local message at the C ABI, sticky-error
// poisoning), stream resolution, CRATE_SYNC, stream-ordered scratch from the caching allocator,
// and the internal GEMM entries (f32, bf16 -> f32, bf16 -> bf16) the CRATE kernels call. Implemented in runtime.cu and
// gemm.cu.
#pragma once
#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

#include "crate/crate_cuda.h"

namespace crate::cuda {

/** An error with the status the C ABI returns. */
struct Error : std::runtime_error {
  crate_status status;
  Error(crate_status s, const std::string& msg) : std::runtime_error(msg), status(s) {}
};

/** Throws Error(CRATE_ERR_INVALID_ARGUMENT, "<fn>: <msg>") unless cond. */
#define CRATE_CUDA_REQUIRE(cond, fn, msg)                                                                \
  do {                                                                                                   \
    if (!(cond)) throw ::crate::cuda::Error(CRATE_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + (msg)); \
  } while (0)

/** Throws the argument error "<fn>: <name> must not be null" for the first null pointer, in order. */
inline void require_nonnull(const char* fn, std::initializer_list<std::pair<const char*, const void*>> ptrs) {
  for (const auto& [name, ptr] : ptrs) CRATE_CUDA_REQUIRE(ptr != nullptr, fn, std::string(name) + " must not be null");
}

/** Throws Error(CRATE_ERR_CUDA) naming `what` when err != cudaSuccess; sticky errors poison the
 * context (every later call fails with a message that says so). */
void check(cudaError_t err, const char* what);

/** After a kernel launch: cudaGetLastError, and with CRATE_SYNC=1 a stream synchronize so the
 * failing launch is the one reported. */
void check_launch(const char* what, cudaStream_t stream);

/** NULL -> the library's stream for the current device (created by crate_cuda_init on first use). */
cudaStream_t resolve_stream(void* stream);

/** Sets the thread-local message returned by crate_cuda_last_error. */
void set_last_error(const std::string& msg);

/** Runs body() and maps exceptions to a status + message prefixed with fn. Fails fast with
 * CRATE_ERR_CUDA when the context is already poisoned. */
template <class F>
crate_status guard(const char* fn, F&& body) noexcept {
  try {
    crate_status st = crate_cuda_status();
    if (st != CRATE_OK) return st;  // message already set by crate_cuda_status
    body();
    return CRATE_OK;
  } catch (const Error& e) {
    set_last_error(std::string(fn) + ": " + e.what());
    return e.status;
  } catch (const std::bad_alloc&) {
    set_last_error(std::string(fn) + ": out of host memory");
    return CRATE_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(std::string(fn) + ": " + e.what());
    return CRATE_ERR_INTERNAL;
  } catch (...) {
    set_last_error(std::string(fn) + ": unknown error");
    return CRATE_ERR_INTERNAL;
  }
}

/** Waits for `stream` (cudaStreamSynchronize): every blocking wait of the host on the device in
 * this library goes through here or read_back, so crate_cuda_memory_stats.num_host_syncs counts
 * them (the hot path of a training step should make ~1 per step). */
void host_sync(cudaStream_t stream, const char* what);
extern std::atomic<uint64_t> host_syncs;  // the count (runtime.cu)

/** Copies `bytes` device -> host on `stream` and waits for it (one counted host sync). */
void read_back(void* host, const void* dev, size_t bytes, cudaStream_t stream, const char* what);

/** Stream-ordered device scratch from the caching allocator, freed (on the same stream) when it
 * goes out of scope. Throws Error(CRATE_ERR_OUT_OF_MEMORY) when the request cannot be met. */
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t stream);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  cudaStream_t stream_;
};

/** The internal GEMM (same semantics as crate_cuda_gemm_f32, row-major); throws on error. */
void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
              const float* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch, int64_t stride_a,
              int64_t stride_b, int64_t stride_c, bool allow_tf32, cudaStream_t stream);
/** bf16 inputs (uint16_t bits), f32 accumulation: f32 C (crate_cuda_gemm_bf16), or bf16 C
 * (crate_cuda_gemm_bf16_bf16: alpha * acc + beta * C rounded once on store); throw on error. */
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A, int64_t lda,
               const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc, int64_t batch, int64_t stride_a,
               int64_t stride_b, int64_t stride_c, cudaStream_t stream);
void gemm_bf16_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
                    int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc, int64_t batch,
                    int64_t stride_a, int64_t stride_b, int64_t stride_c, cudaStream_t stream);

/** Grid size for n items at `block` per block, capped for grid-stride loops. */
inline unsigned grid_for(int64_t n, int block, int64_t cap = 65535LL * 32) {
  int64_t g = (n + block - 1) / block;
  if (g < 1) g = 1;
  return static_cast<unsigned>(g < cap ? g : cap);
}

}  // namespace crate::cuda
