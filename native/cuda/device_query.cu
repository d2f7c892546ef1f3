// device_query.cu: the CUDA backend's device query, used by `crate info` / info() to say what
// was compiled in, which GPU and driver were found, and why CUDA is unusable when it is.
// cudart is linked statically, so this library loads even with no driver installed: the
// runtime then reports cudaErrorInsufficientDriver / NoDevice as an error code, never a crash.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>

#include "cuda_backend_api.h"

namespace {

// A trivial kernel so the build proves the device toolchain (SASS/PTX generation) end to end.
__global__ void probe_kernel(int* out) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *out = 42;
}

void archs_string(char* buf, size_t len) { std::snprintf(buf, len, "%s", CRATE_CUDA_ARCHS_STR); }

}  // namespace

extern "C" __attribute__((visibility("default"))) int crate_cuda_query(crate_cuda_info* out) {
  std::memset(out, 0, sizeof(*out));
  archs_string(out->compiled_archs, sizeof(out->compiled_archs));
  cudaRuntimeGetVersion(&out->runtime_version);
  cudaDriverGetVersion(&out->driver_version);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    out->device_count = -1;
    std::snprintf(out->error, sizeof(out->error), "cudaGetDeviceCount failed: %s (%s)", cudaGetErrorName(err),
                  cudaGetErrorString(err));
    cudaGetLastError();
    return 1;
  }
  out->device_count = count;
  if (count == 0) {
    std::snprintf(out->error, sizeof(out->error), "no CUDA device visible (CUDA_VISIBLE_DEVICES=%s)",
                  std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "<unset>");
    return 1;
  }
  cudaDeviceProp prop;
  err = cudaGetDeviceProperties(&prop, 0);
  if (err != cudaSuccess) {
    std::snprintf(out->error, sizeof(out->error), "cudaGetDeviceProperties failed: %s", cudaGetErrorString(err));
    return 1;
  }
  std::snprintf(out->name, sizeof(out->name), "%s", prop.name);
  out->cc_major = prop.major;
  out->cc_minor = prop.minor;
  out->sm_count = prop.multiProcessorCount;
  out->total_mem = prop.totalGlobalMem;
  // Launch the probe kernel: proves the compiled SASS/PTX runs on this GPU.
  int* d = nullptr;
  int h = 0;
  if ((err = cudaMalloc(&d, sizeof(int))) == cudaSuccess) {
    probe_kernel<<<1, 32>>>(d);
    err = cudaMemcpy(&h, d, sizeof(int), cudaMemcpyDeviceToHost);
    cudaFree(d);
  }
  if (err != cudaSuccess || h != 42) {
    std::snprintf(out->error, sizeof(out->error), "probe kernel failed on %s (sm_%d%d): %s", prop.name, prop.major,
                  prop.minor, cudaGetErrorString(err));
    cudaGetLastError();
    return 1;
  }
  return 0;
}
