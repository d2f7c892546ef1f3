// selftest.cu: proves that the CUDA host emulator catches what README.md says it catches. Each
// case is a small kernel, correct or with one deliberate bug, run by `cuda_emu_selftest <case>`
// in a process of its own (a fault makes the context sticky-failed, as on a GPU). A case prints
// `PASS <case>: ...` when the emulator behaved as expected (right result, or the expected fault)
// and `FAIL <case>: ...` otherwise; exit status 0 / 1. `cuda_emu_selftest --list` lists the cases.
// Built by build.mjs --selftest; run by test/cuda_emu.test.ts.
#include <cuda_runtime.h>
#include <mma.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

constexpr int kThreads = 128;

// ------------------------------------------------------------------------------ kernels

/** Correct: block sum by shuffles + shared memory; every thread also writes its rank. */
__global__ void block_sum_ok(const float* x, float* out, int n) {
  __shared__ float partial[kThreads / 32];
  const int t = threadIdx.x, lane = t % 32, warp = t / 32;
  float v = 0.f;
  for (int i = blockIdx.x * kThreads + t; i < n; i += gridDim.x * kThreads) v += x[i];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (t == 0) {
    float s = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) s += partial[w];
    out[blockIdx.x] = s;
  }
}

/** Bug: reads the neighbour's shared-memory slot without a __syncthreads in between. */
__global__ void missing_syncthreads(float* out) {
  __shared__ float s[kThreads];
  const int t = threadIdx.x;
  s[t] = static_cast<float>(t);
  out[t] = s[(t + 1) % kThreads];  // race: the neighbour may not have written yet
}

/** Bug: warp-synchronous exchange through shared memory without __syncwarp (pre-Volta style). */
__global__ void missing_syncwarp(float* out) {
  __shared__ float s[32];
  const int lane = threadIdx.x;
  s[lane] = static_cast<float>(lane);
  out[lane] = s[lane ^ 1];
}

/** Bug: __syncthreads inside a branch that only half of the block takes. */
__global__ void divergent_syncthreads(float* out) {
  if (threadIdx.x < kThreads / 2) __syncthreads();
  out[threadIdx.x] = 1.f;
}

/** Bug: threads past n return, the others then meet at __syncthreads. */
__global__ void exited_then_syncthreads(float* out, int n) {
  __shared__ float s[kThreads];
  if (static_cast<int>(threadIdx.x) >= n) return;
  s[threadIdx.x] = 1.f;
  __syncthreads();
  out[threadIdx.x] = s[0];
}

/** Bug: a full-mask shuffle executed by half of the warp. */
__global__ void shuffle_half_warp(float* out) {
  float v = static_cast<float>(threadIdx.x);
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

/** Bug: float4 access through a pointer that is only 4-byte aligned. */
__global__ void misaligned_float4(const float* x, float* out) {
  const float4 v = reinterpret_cast<const float4*>(x + 1)[threadIdx.x];
  out[threadIdx.x] = v.x + v.y + v.z + v.w;
}

/** Bug: writes past the end of its buffer (n elements). */
__global__ void global_out_of_bounds(float* out, int n) { out[n + threadIdx.x] = 1.f; }

/** Bug: indexes a static shared array one past its end. */
__global__ void shared_out_of_bounds(float* out) {
  __shared__ float s[kThreads];
  s[threadIdx.x + 1] = 1.f;
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];
}

/** Bug: writes past the end of the dynamic shared memory (through a pointer: no bounds check). */
__global__ void dynamic_shared_overflow(float* out, int floats) {
  extern __shared__ __align__(16) float dyn[];
  if (threadIdx.x < 4) dyn[floats + threadIdx.x] = 1.f;
  __syncthreads();
  out[threadIdx.x] = dyn[0];
}

/** Bug: reads shared memory nobody wrote (the emulator poisons it with NaN). */
__global__ void uninitialised_shared(float* out) {
  __shared__ float s[kThreads];
  if (threadIdx.x == 0) s[0] = 1.f;
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];
}

/** Correct: one 16 x 16 x 8 TF32 wmma product per warp, A row-major, B col-major. */
__global__ void wmma_tf32_ok(const float* A, const float* B, float* C) {
  namespace wmma = nvcuda::wmma;
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> b;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
  wmma::fill_fragment(c, 0.f);
  wmma::load_matrix_sync(a, A, 8);
  wmma::load_matrix_sync(b, B, 8);
  for (int e = 0; e < a.num_elements; ++e) a.x[e] = wmma::__float_to_tf32(a.x[e]);
  for (int e = 0; e < b.num_elements; ++e) b.x[e] = wmma::__float_to_tf32(b.x[e]);
  wmma::mma_sync(c, a, b, c);
  wmma::store_matrix_sync(C, c, 16, wmma::mem_row_major);
}

/** Bug: wmma inside a branch only some lanes take. */
__global__ void wmma_divergent(const float* A, float* C) {
  namespace wmma = nvcuda::wmma;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
  if (threadIdx.x < 8)
    wmma::load_matrix_sync(c, A, 16, wmma::mem_row_major);
  else
    wmma::fill_fragment(c, 0.f);
  wmma::store_matrix_sync(C, c, 16, wmma::mem_row_major);
}

/** Bug (racecheck): lanes read a shared value, shuffle, then lane 0 overwrites it; shuffles do not
 * order memory accesses (the fix is a __syncwarp before the write: `fixed`). */
__global__ void write_after_shuffle(float* out, bool fixed) {
  __shared__ float stat[kThreads / 32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) stat[warp] = 1.f;
  __syncthreads();
  const float old = stat[warp];
  float v = old + static_cast<float>(lane);
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (fixed) __syncwarp();
  if (lane == 0) stat[warp] = v;
  out[threadIdx.x] = old;
}

/** Correct (racecheck): every thread adds into one shared counter with atomicAdd. */
__global__ void shared_atomics(float* out) {
  __shared__ unsigned count;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  atomicAdd(&count, 1u);
  __syncthreads();
  out[threadIdx.x] = static_cast<float>(count);
}

/** Correct (racecheck): a wmma fragment through a per-warp staging buffer, as mssa.cu's
 * AccTc::scale_rows: store, __syncwarp, every lane scales its elements, __syncwarp, load. */
__global__ void wmma_staging(const float* A, float* C) {
  namespace wmma = nvcuda::wmma;
  __shared__ __align__(32) float stage[256];
  const int lane = threadIdx.x;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> c;
  wmma::load_matrix_sync(c, A, 16, wmma::mem_row_major);
  for (int round = 0; round < 2; ++round) {
    wmma::store_matrix_sync(stage, c, 16, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 256; e += 32) stage[e] *= 2.f;
    __syncwarp();
    wmma::load_matrix_sync(c, stage, 16, wmma::mem_row_major);
    __syncwarp();
  }
  wmma::store_matrix_sync(C, c, 16, wmma::mem_row_major);
}

__global__ void traps(float* out) {
  if (threadIdx.x == 5) __trap();
  out[threadIdx.x] = 0.f;
}

// ------------------------------------------------------------------------------ host side

struct Buf {
  float* p = nullptr;
  size_t n = 0;
  explicit Buf(size_t count, float fill = 0.f) : n(count) {
    cudaMalloc(&p, n * sizeof(float));
    std::vector<float> h(n, fill);
    cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  }
  std::vector<float> get() const {
    std::vector<float> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost);
    return h;
  }
};

std::string g_msg;

bool expect_fault(cudaError_t want) {
  const cudaError_t e = cudaDeviceSynchronize();
  g_msg = std::string("got ") + cudaGetErrorName(e) + ", expected " + cudaGetErrorName(want);
  return e == want;
}

/** Runs a racy launch `tries` times; passes when some run gives another result than the first. */
bool differs_sometimes(const std::function<void(float*)>& launch, size_t n, int tries) {
  Buf out(n);
  launch(out.p);
  const std::vector<float> first = out.get();
  for (int i = 1; i < tries; ++i) {
    launch(out.p);
    const std::vector<float> again = out.get();
    if (std::memcmp(again.data(), first.data(), n * sizeof(float)) != 0) {
      g_msg = "the result changed between runs (schedule-dependent: a race)";
      return true;
    }
  }
  g_msg = "the same result in every run: the race went unnoticed";
  return false;
}

const std::vector<std::pair<std::string, std::function<bool()>>>& cases() {
  static const std::vector<std::pair<std::string, std::function<bool()>>> list = {
      {"ok_block_sum",
       [] {
         const int n = 5000, blocks = 3;
         std::vector<float> h(n);
         double want = 0;
         for (int i = 0; i < n; ++i) want += (h[i] = static_cast<float>(i % 7) - 3.f);
         Buf x(n), out(blocks);
         cudaMemcpy(x.p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice);
         block_sum_ok<<<blocks, kThreads>>>(x.p, out.p, n);
         double got = 0;
         for (float v : out.get()) got += v;
         g_msg = "sum " + std::to_string(got) + ", expected " + std::to_string(want);
         return cudaDeviceSynchronize() == cudaSuccess && got == want;
       }},
      {"racecheck_missing_syncthreads",
       [] {
         Buf out(kThreads);
         missing_syncthreads<<<1, kThreads>>>(out.p);
         return expect_fault(cudaErrorLaunchFailure);
       }},
      {"racecheck_missing_syncwarp",
       [] {
         Buf out(32);
         missing_syncwarp<<<1, 32>>>(out.p);
         return expect_fault(cudaErrorLaunchFailure);
       }},
      {"racecheck_write_after_shuffle",
       [] {
         Buf out(kThreads);
         write_after_shuffle<<<1, kThreads>>>(out.p, false);
         return expect_fault(cudaErrorLaunchFailure);
       }},
      {"racecheck_ok_syncwarp_atomics_wmma_staging",
       [] {
         Buf out(kThreads), A(256, 1.5f), C(256);
         write_after_shuffle<<<1, kThreads>>>(out.p, true);
         shared_atomics<<<1, kThreads>>>(out.p);
         const float count = out.get()[7];
         wmma_staging<<<1, 32>>>(A.p, C.p);
         const float c = C.get()[100];
         g_msg = "atomic count " + std::to_string(count) + ", staged value " + std::to_string(c);
         return cudaDeviceSynchronize() == cudaSuccess && count == kThreads && c == 6.f;
       }},
      {"schedule_missing_syncthreads",  // with the race detector off: the random order shows it
       [] {
         setenv("CRATE_EMU_RACECHECK", "0", 1);
         return differs_sometimes([](float* o) { missing_syncthreads<<<1, kThreads>>>(o); }, kThreads, 20);
       }},
      {"schedule_missing_syncwarp",
       [] {
         setenv("CRATE_EMU_RACECHECK", "0", 1);
         return differs_sometimes([](float* o) { missing_syncwarp<<<1, 32>>>(o); }, 32, 20);
       }},
      {"divergent_syncthreads",
       [] {
         Buf out(kThreads);
         divergent_syncthreads<<<1, kThreads>>>(out.p);
         return expect_fault(cudaErrorIllegalInstruction);
       }},
      {"exited_then_syncthreads",
       [] {
         Buf out(kThreads);
         exited_then_syncthreads<<<1, kThreads>>>(out.p, 100);
         return expect_fault(cudaErrorIllegalInstruction);
       }},
      {"shuffle_half_warp",
       [] {
         Buf out(32);
         shuffle_half_warp<<<1, 32>>>(out.p);
         return expect_fault(cudaErrorIllegalInstruction);
       }},
      {"misaligned_float4",
       [] {
         Buf x(4 * kThreads + 8), out(kThreads);
         misaligned_float4<<<1, kThreads>>>(x.p, out.p);
         return expect_fault(cudaErrorMisalignedAddress);
       }},
      {"global_out_of_bounds",
       [] {
         Buf out(256);
         global_out_of_bounds<<<1, 32>>>(out.p, 256);
         return expect_fault(cudaErrorIllegalAddress);
       }},
      {"shared_out_of_bounds",
       [] {
         Buf out(kThreads);
         shared_out_of_bounds<<<1, kThreads>>>(out.p);
         return expect_fault(cudaErrorIllegalAddress);
       }},
      {"dynamic_shared_overflow",
       [] {
         Buf out(kThreads);
         dynamic_shared_overflow<<<1, kThreads, 100 * sizeof(float)>>>(out.p, 100);
         return expect_fault(cudaErrorIllegalAddress);
       }},
      {"initcheck_uninitialised_shared",
       [] {
         setenv("CRATE_EMU_INITCHECK", "1", 1);
         Buf out(kThreads);
         uninitialised_shared<<<1, kThreads>>>(out.p);
         return expect_fault(cudaErrorLaunchFailure);
       }},
      {"uninitialised_shared_is_nan",
       [] {
         Buf out(kThreads);
         uninitialised_shared<<<1, kThreads>>>(out.p);
         const std::vector<float> h = out.get();
         int nans = 0;
         for (float v : h) nans += std::isnan(v);
         g_msg = std::to_string(nans) + " NaN of " + std::to_string(kThreads) + " (expected all but element 0)";
         return h[0] == 1.f && nans == kThreads - 1;
       }},
      {"ok_wmma_tf32",
       [] {
         std::vector<float> a(16 * 8), b(16 * 8);
         for (size_t i = 0; i < a.size(); ++i) a[i] = 1.f + static_cast<float>(i % 13) / 1024.f;
         for (size_t i = 0; i < b.size(); ++i) b[i] = 1.f - static_cast<float>(i % 11) / 4096.f;
         Buf A(a.size()), B(b.size()), C(256);
         cudaMemcpy(A.p, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
         cudaMemcpy(B.p, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
         wmma_tf32_ok<<<1, 32>>>(A.p, B.p, C.p);
         const std::vector<float> c = C.get();
         double worst = 0;
         for (int i = 0; i < 16; ++i)
           for (int j = 0; j < 16; ++j) {
             double ref = 0;  // B is col-major (16 x 8 stored as [j][k])
             for (int k = 0; k < 8; ++k) ref += static_cast<double>(a[i * 8 + k]) * b[j * 8 + k];
             worst = std::fmax(worst, std::fabs(c[i * 16 + j] - ref) / std::fabs(ref));
           }
         g_msg = "max relative error " + std::to_string(worst) + " (TF32: < 2^-10)";
         return cudaDeviceSynchronize() == cudaSuccess && worst < 1.0 / 1024 && worst > 0;
       }},
      {"wmma_divergent",
       [] {
         Buf A(256), C(256);
         wmma_divergent<<<1, 32>>>(A.p, C.p);
         return expect_fault(cudaErrorIllegalInstruction);
       }},
      {"trap",
       [] {
         Buf out(32);
         traps<<<1, 32>>>(out.p);
         return expect_fault(cudaErrorLaunchFailure);
       }},
      {"smem_over_default_limit",
       [] {
         Buf out(kThreads);
         dynamic_shared_overflow<<<1, kThreads, 64 * 1024>>>(out.p, 0);  // no cudaFuncSetAttribute
         const cudaError_t launch = cudaGetLastError();
         const cudaError_t after = cudaGetLastError();  // a launch error is not sticky
         g_msg = std::string("launch: ") + cudaGetErrorName(launch) + ", then " + cudaGetErrorName(after);
         return launch == cudaErrorInvalidValue && after == cudaSuccess;
       }},
  };
  return list;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <case> | --list\n", argv[0]);
    return 2;
  }
  const std::string want = argv[1];
  for (const auto& c : cases()) {
    if (want == "--list") {
      std::printf("%s\n", c.first.c_str());
      continue;
    }
    if (c.first != want) continue;
    const bool ok = c.second();
    std::printf("%s %s: %s\n", ok ? "PASS" : "FAIL", c.first.c_str(), g_msg.c_str());
    return ok ? 0 : 1;
  }
  if (want == "--list") return 0;
  std::fprintf(stderr, "unknown case %s\n", want.c_str());
  return 2;
}
