// optim.cu: CUDA twin of native/cpu/optim.cc: one fused AdamW update in place (torch.optim.AdamW,
// amsgrad off). The f32 constants are derived from the double arguments on the host exactly as
// the CPU does, and each element follows the CPU's operation order with + and * rounded
// separately (adamw_update in prim_common.cuh), so the update matches the CPU bit for bit.
// Grid-stride loop, float4 loads/stores when all four buffers are 16-byte aligned.
// bf16 parameters (crate_cuda_adamw_step_bf16): p and g bf16, the moments m and v f32; p and g
// are widened, the update runs exactly as the f32 one, and p is rounded once (nearest even) per
// step. Plain rounding: an update smaller than half a bf16 ulp of p (|dp| < 2^-9 |p|) is lost.
#include "prim_common.cuh"

namespace crate::cuda {
namespace {

using namespace prim;

__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, AdamWParams q, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if (vec) {
    const int64_t nv = n / 4;
    for (int64_t i = start; i < nv; i += stride) {
      float4 pv = reinterpret_cast<float4*>(p)[i];
      const float4 gv = reinterpret_cast<const float4*>(g)[i];
      float4 mv = reinterpret_cast<float4*>(m)[i];
      float4 vv = reinterpret_cast<float4*>(v)[i];
      adamw_update(pv.x, gv.x, mv.x, vv.x, q);
      adamw_update(pv.y, gv.y, mv.y, vv.y, q);
      adamw_update(pv.z, gv.z, mv.z, vv.z, q);
      adamw_update(pv.w, gv.w, mv.w, vv.w, q);
      reinterpret_cast<float4*>(p)[i] = pv;
      reinterpret_cast<float4*>(m)[i] = mv;
      reinterpret_cast<float4*>(v)[i] = vv;
    }
    tail = nv * 4;
  }
  for (int64_t i = tail + start; i < n; i += stride) {
    float pi = p[i], mi = m[i], vi = v[i];
    adamw_update(pi, g[i], mi, vi, q);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

// bf16 p and g, f32 m and v: one rounding of p per element.
__global__ void adamw_bf16_kernel(Bf16* __restrict__ p, const Bf16* __restrict__ g, float* __restrict__ m,
                                  float* __restrict__ v, int64_t n, AdamWParams q) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    float pi = bf16_to_f32(p[i]), mi = m[i], vi = v[i];
    adamw_update(pi, bf16_to_f32(g[i]), mi, vi, q);
    p[i] = f32_to_bf16(pi);
    m[i] = mi;
    v[i] = vi;
  }
}

// The entry points' argument checks (both storage types); false when there is nothing to do.
bool adamw_args(const char* op, int64_t n, const void* p, const void* g, const void* m, const void* v) {
  CRATE_CUDA_REQUIRE(n >= 0, op, "negative size " + std::to_string(n));
  if (n == 0) return false;
  prim::require_ptr(op, p, "p");
  prim::require_ptr(op, g, "g");
  prim::require_ptr(op, m, "m");
  prim::require_ptr(op, v, "v");
  return true;
}

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;
using namespace crate::cuda::prim;

CRATE_API crate_status crate_cuda_adamw_step_f32(float* p, const float* g, float* m, float* v, int64_t n, double lr,
                                                 double b1, double b2, double eps, double wd, double bc1, double bc2,
                                                 void* stream_) {
  return guard("crate_cuda_adamw_step_f32", [&] {
    const char* op = "adamw_step";
    if (!adamw_args(op, n, p, g, m, v)) return;
    cudaStream_t stream = resolve_stream(stream_);
    const AdamWParams q = AdamWParams::make(lr, b1, b2, eps, wd, bc1, bc2);
    const bool vec = aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v) && n >= 4;
    adamw_kernel<<<grid_for(vec ? n / 4 : n, kBlock), kBlock, 0, stream>>>(p, g, m, v, n, q, vec);
    check_launch(op, stream);
  });
}

CRATE_API crate_status crate_cuda_adamw_step_bf16(uint16_t* p, const uint16_t* g, float* m, float* v, int64_t n,
                                                  double lr, double b1, double b2, double eps, double wd, double bc1,
                                                  double bc2, void* stream_) {
  return guard("crate_cuda_adamw_step_bf16", [&] {
    const char* op = "adamw_step";
    if (!adamw_args(op, n, p, g, m, v)) return;
    cudaStream_t stream = resolve_stream(stream_);
    const AdamWParams q = AdamWParams::make(lr, b1, b2, eps, wd, bc1, bc2);
    adamw_bf16_kernel<<<grid_for(n, kBlock), kBlock, 0, stream>>>(reinterpret_cast<Bf16*>(p),
                                                                  reinterpret_cast<const Bf16*>(g), m, v, n, q);
    check_launch(op, stream);
  });
}
