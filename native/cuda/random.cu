// random.cu: CUDA twin of native/cpu/random.cc. Element i of a draw is a pure function of
// (seed, offset + i): one Philox4x32-10 block (native/core/philox.h, shared with the CPU) per
// element, mapped to a value with the CPU's double-precision formulas (random_value in
// prim_common.cuh, + and * rounded separately as on the CPU). uniform and bernoulli are therefore
// bit-identical to the CPU; normal uses CUDA's double log/cos/sqrt (not fast-math), within an ulp
// of glibc's in double, so the f32 results agree to rounding. bf16 (crate_cuda_random_bf16): the
// same f32 value of each element rounded once to nearest even, i.e. exactly the f32 stream rounded
// (a uniform draw within half a bf16 ulp of b rounds to b: [a, b] rather than [a, b)).
#include "prim_common.cuh"

namespace crate::cuda {
namespace {

using namespace prim;

template <int Kind, class T>
__global__ void random_kernel(T* __restrict__ y, int64_t n, uint64_t seed, uint64_t offset, double a, double b,
                              double b_minus_a) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = round_to<T>(random_value<Kind>(seed, offset + static_cast<uint64_t>(i), a, b, b_minus_a));
}

template <class T>
void random_fill(int kind, T* y, int64_t n, uint64_t seed, uint64_t offset, double a, double b, void* stream_) {
  CRATE_CUDA_REQUIRE(kind >= kRandomUniform && kind <= kRandomBernoulli, "random",
                     "unknown kind " + std::to_string(kind) + " (0 uniform, 1 normal, 2 bernoulli)");
  CRATE_CUDA_REQUIRE(n >= 0, "random", "negative size " + std::to_string(n));
  if (n == 0) return;
  require_ptr("random", y, "y");
  cudaStream_t stream = resolve_stream(stream_);
  const unsigned grid = grid_for(n, kBlock);
  const double bma = b - a;  // the CPU evaluates (b - a) the same way for every element
  switch (kind) {
    case kRandomUniform:
      random_kernel<kRandomUniform, T><<<grid, kBlock, 0, stream>>>(y, n, seed, offset, a, b, bma);
      break;
    case kRandomNormal:
      random_kernel<kRandomNormal, T><<<grid, kBlock, 0, stream>>>(y, n, seed, offset, a, b, bma);
      break;
    default:
      random_kernel<kRandomBernoulli, T><<<grid, kBlock, 0, stream>>>(y, n, seed, offset, a, b, bma);
      break;
  }
  check_launch("random", stream);
}

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;
using namespace crate::cuda::prim;

CRATE_API crate_status crate_cuda_random_f32(int kind, float* y, int64_t n, uint64_t seed, uint64_t offset, double a,
                                             double b, void* stream_) {
  return guard("crate_cuda_random_f32", [&] { random_fill(kind, y, n, seed, offset, a, b, stream_); });
}

CRATE_API crate_status crate_cuda_random_bf16(int kind, uint16_t* y, int64_t n, uint64_t seed, uint64_t offset,
                                              double a, double b, void* stream_) {
  return guard("crate_cuda_random_bf16",
               [&] { random_fill(kind, reinterpret_cast<Bf16*>(y), n, seed, offset, a, b, stream_); });
}
