// elementwise.cu: CUDA twins of native/cpu/elementwise.cc: unary (+ backward; f32, bf16), binary
// (f32, bf16, i32), where (f32, bf16), fill (f32, bf16, i32), arange, cast, nonzero_u8 (key masks)
// and find_nonfinite.
//
// bf16 storage: the kernels are templated on the storage type; a bf16 element is loaded as f32,
// the op computed exactly as the f32 kernel computes it, and the result rounded once to bf16
// (nearest even) on store (as_f32 / round_to of prim_common.cuh). where moves bf16 bits as they are.
//
// The op is a template parameter of each kernel (one switch per call). Unary runs a grid-stride
// loop over float4 when the buffers are 16-byte aligned. Binary and where canonicalise their
// iteration space on the host (size-1 dims dropped, mergeable dims merged), then run either a
// flat kernel (every operand contiguous or a broadcast scalar; float4 when aligned) or a general
// kernel that derives operand offsets from the linear output index (shape and strides passed by
// value, 32-bit magic-number division when the tensor has < 2^31 elements).
//
// Arithmetic follows the CPU formulas operation by operation, with + and * rounded separately
// (no FMA contraction, as the CPU build); transcendental functions are CUDA's precise ones (no
// fast-math), which may differ from glibc's by an ulp or two.
#include <cmath>
#include <cstring>
#include <limits>

#include "prim_common.cuh"

namespace crate::cuda {
namespace {

using namespace prim;

// ------------------------------------------------------------------ unary
template <int Op, class T>
__global__ void unary_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, UnaryParams p, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if constexpr (std::is_same_v<T, float>) {  // bf16 has no vector path (its launch passes vec = false)
    if (vec) {
      const int64_t nv = n / 4;
      const float4* xv = reinterpret_cast<const float4*>(x);
      float4* yv = reinterpret_cast<float4*>(y);
      for (int64_t i = start; i < nv; i += stride) {
        const float4 a = xv[i];
        float4 r;
        r.x = unary_value<Op>(a.x, p);
        r.y = unary_value<Op>(a.y, p);
        r.z = unary_value<Op>(a.z, p);
        r.w = unary_value<Op>(a.w, p);
        yv[i] = r;
      }
      tail = nv * 4;
    }
  }
  for (int64_t i = tail + start; i < n; i += stride) y[i] = round_to<T>(unary_value<Op>(as_f32(x[i]), p));
}

template <int Op, class T>
__global__ void unary_backward_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ g,
                                      T* __restrict__ dx, int64_t n, UnaryParams p, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if constexpr (std::is_same_v<T, float>) {
    if (vec) {
      const int64_t nv = n / 4;
      const float4 zero = make_float4(0.f, 0.f, 0.f, 0.f);
      for (int64_t i = start; i < nv; i += stride) {
        const float4 xv = x ? reinterpret_cast<const float4*>(x)[i] : zero;
        const float4 yv = y ? reinterpret_cast<const float4*>(y)[i] : zero;
        const float4 gv = reinterpret_cast<const float4*>(g)[i];
        float4 r;
        r.x = unary_grad<Op>(xv.x, yv.x, gv.x, p);
        r.y = unary_grad<Op>(xv.y, yv.y, gv.y, p);
        r.z = unary_grad<Op>(xv.z, yv.z, gv.z, p);
        r.w = unary_grad<Op>(xv.w, yv.w, gv.w, p);
        reinterpret_cast<float4*>(dx)[i] = r;
      }
      tail = nv * 4;
    }
  }
  for (int64_t i = tail + start; i < n; i += stride)
    dx[i] = round_to<T>(unary_grad<Op>(x ? as_f32(x[i]) : 0.f, y ? as_f32(y[i]) : 0.f, as_f32(g[i]), p));
}

/** Calls f(std::integral_constant<int, op>{}) with a valid unary op code as a constant. */
template <class F>
void with_unary_op(int op, F&& f) {
  // clang-format off
  switch (op) {
#define CRATE_CASE(k) case k: f(std::integral_constant<int, k>{}); return;
    CRATE_CASE(0) CRATE_CASE(1) CRATE_CASE(2) CRATE_CASE(3) CRATE_CASE(4) CRATE_CASE(5) CRATE_CASE(6)
    CRATE_CASE(7) CRATE_CASE(8) CRATE_CASE(9) CRATE_CASE(10) CRATE_CASE(11) CRATE_CASE(12) CRATE_CASE(13)
    CRATE_CASE(14) CRATE_CASE(15) CRATE_CASE(16) CRATE_CASE(17)
#undef CRATE_CASE
    default: CRATE_CUDA_REQUIRE(false, "unary", "unknown op " + std::to_string(op));
  }
  // clang-format on
}
static_assert(kUnaryCount == 18, "with_unary_op lists every unary op");

template <class F>
void with_binary_op(int op, F&& f) {
  // clang-format off
  switch (op) {
#define CRATE_CASE(k) case k: f(std::integral_constant<int, k>{}); return;
    CRATE_CASE(0) CRATE_CASE(1) CRATE_CASE(2) CRATE_CASE(3) CRATE_CASE(4) CRATE_CASE(5) CRATE_CASE(6)
    CRATE_CASE(7) CRATE_CASE(8) CRATE_CASE(9) CRATE_CASE(10) CRATE_CASE(11) CRATE_CASE(12)
#undef CRATE_CASE
    default: CRATE_CUDA_REQUIRE(false, "binary", "unknown op " + std::to_string(op));
  }
  // clang-format on
}
static_assert(kBinaryCount == 13, "with_binary_op lists every binary op");

// ------------------------------------------------------------------ binary
template <class T>
struct Vec4;
template <>
struct Vec4<float> {
  using type = float4;
};
template <>
struct Vec4<int32_t> {
  using type = int4;
};

/** One element of a binary op stored as T: f32 and i32 as binary_value, bf16 computed in f32. */
template <class T, int Op>
PRIM_HD T binary_element(T a, T b) {
  if constexpr (std::is_same_v<T, Bf16>)
    return f32_to_bf16(binary_value<float, Op>(as_f32(a), as_f32(b)));
  else
    return binary_value<T, Op>(a, b);
}

/** Flat binary: every operand contiguous (stride 1) or a broadcast scalar (stride 0). */
template <class T, int Op>
__global__ void binary_flat_kernel(const T* __restrict__ a, int64_t sa, const T* __restrict__ b, int64_t sb,
                                   T* __restrict__ out, int64_t n, bool vec) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t tail = 0;
  if constexpr (!std::is_same_v<T, Bf16>) {  // bf16 has no vector path (its launch passes vec = false)
    using V = typename Vec4<T>::type;
    if (vec) {
      const int64_t nv = n / 4;
      const T as = a[0], bs = b[0];
      for (int64_t i = start; i < nv; i += stride) {
        V va, vb;
        if (sa)
          va = reinterpret_cast<const V*>(a)[i];
        else
          va = V{as, as, as, as};
        if (sb)
          vb = reinterpret_cast<const V*>(b)[i];
        else
          vb = V{bs, bs, bs, bs};
        V r;
        r.x = binary_value<T, Op>(va.x, vb.x);
        r.y = binary_value<T, Op>(va.y, vb.y);
        r.z = binary_value<T, Op>(va.z, vb.z);
        r.w = binary_value<T, Op>(va.w, vb.w);
        reinterpret_cast<V*>(out)[i] = r;
      }
      tail = nv * 4;
    }
  }
  for (int64_t i = tail + start; i < n; i += stride) out[i] = binary_element<T, Op>(a[i * sa], b[i * sb]);
}

template <class T, int Op, class Idx>
__global__ void binary_general_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, Idx n,
                                      Indexer<2, Idx> ix) {
  const Idx stride = static_cast<Idx>(gridDim.x) * blockDim.x;
  for (Idx i = static_cast<Idx>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[2];
    ix.offsets(i, off);
    out[i] = binary_element<T, Op>(a[off[0]], b[off[1]]);
  }
}

/** Whether a canonical operand is contiguous (stride 1 over one dim) or a scalar (all strides 0). */
inline int flat_stride(const Canon& c, int o) {
  bool zero = true;
  for (int64_t s : c.str[o]) zero = zero && s == 0;
  if (zero) return 0;
  if (c.shape.size() == 1 && c.str[o][0] == 1) return 1;
  return -1;
}

template <class T>
void binary_launch(const char* op_name, int op, const T* a, const int64_t* a_str, const T* b, const int64_t* b_str,
                   T* out, const int64_t* shape, int ndim, void* stream_) {
  with_binary_op(op, [](auto) {});  // validates the op code first
  const int64_t n = checked_numel(op_name, shape, ndim);
  if (n == 0) return;
  require_strides(op_name, a_str, ndim, "a_str");
  require_strides(op_name, b_str, ndim, "b_str");
  require_ptr(op_name, a, "a");
  require_ptr(op_name, b, "b");
  require_ptr(op_name, out, "out");
  const int64_t* strs[2] = {a_str, b_str};
  const Canon c = canonicalize(shape, ndim, strs, 2);
  cudaStream_t stream = resolve_stream(stream_);
  const int sa = flat_stride(c, 0), sb = flat_stride(c, 1);
  with_binary_op(op, [&](auto tag) {
    constexpr int kOp = decltype(tag)::value;
    if (sa >= 0 && sb >= 0) {
      const bool vec =
          !std::is_same_v<T, Bf16> && (!sa || aligned16(a)) && (!sb || aligned16(b)) && aligned16(out) && n >= 4;
      binary_flat_kernel<T, kOp><<<grid_for(vec ? n / 4 : n, kBlock), kBlock, 0, stream>>>(a, sa, b, sb, out, n, vec);
    } else if (fits_u32(n)) {
      binary_general_kernel<T, kOp, uint32_t><<<grid_for(n, kBlock), kBlock, 0, stream>>>(
          a, b, out, static_cast<uint32_t>(n), Indexer<2, uint32_t>::make(c));
    } else {
      binary_general_kernel<T, kOp, uint64_t><<<grid_for(n, kBlock), kBlock, 0, stream>>>(
          a, b, out, static_cast<uint64_t>(n), Indexer<2, uint64_t>::make(c));
    }
  });
  check_launch(op_name, stream);
}

// ------------------------------------------------------------------ where
// cond has the dtype of a and b; nonzero as f32 (NaN counts as nonzero, -0 as zero).
template <class T>
__global__ void where_flat_kernel(const T* __restrict__ c, int64_t sc, const T* __restrict__ a, int64_t sa,
                                  const T* __restrict__ b, int64_t sb, T* __restrict__ out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    out[i] = as_f32(c[i * sc]) != 0.f ? a[i * sa] : b[i * sb];
}

template <class T, class Idx>
__global__ void where_general_kernel(const T* __restrict__ c, const T* __restrict__ a, const T* __restrict__ b,
                                     T* __restrict__ out, Idx n, Indexer<3, Idx> ix) {
  const Idx stride = static_cast<Idx>(gridDim.x) * blockDim.x;
  for (Idx i = static_cast<Idx>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[3];
    ix.offsets(i, off);
    out[i] = as_f32(c[off[0]]) != 0.f ? a[off[1]] : b[off[2]];
  }
}

template <class T>
void where_launch(const T* c, const int64_t* c_str, const T* a, const int64_t* a_str, const T* b, const int64_t* b_str,
                  T* out, const int64_t* shape, int ndim, void* stream_) {
  const int64_t n = checked_numel("where", shape, ndim);
  if (n == 0) return;
  require_strides("where", c_str, ndim, "c_str");
  require_strides("where", a_str, ndim, "a_str");
  require_strides("where", b_str, ndim, "b_str");
  require_ptr("where", c, "c");
  require_ptr("where", a, "a");
  require_ptr("where", b, "b");
  require_ptr("where", out, "out");
  const int64_t* strs[3] = {c_str, a_str, b_str};
  const Canon cn = canonicalize(shape, ndim, strs, 3);
  cudaStream_t stream = resolve_stream(stream_);
  const int sc = flat_stride(cn, 0), sa = flat_stride(cn, 1), sb = flat_stride(cn, 2);
  if (sc >= 0 && sa >= 0 && sb >= 0) {
    where_flat_kernel<T><<<grid_for(n, kBlock), kBlock, 0, stream>>>(c, sc, a, sa, b, sb, out, n);
  } else if (fits_u32(n)) {
    where_general_kernel<T, uint32_t><<<grid_for(n, kBlock), kBlock, 0, stream>>>(
        c, a, b, out, static_cast<uint32_t>(n), Indexer<3, uint32_t>::make(cn));
  } else {
    where_general_kernel<T, uint64_t><<<grid_for(n, kBlock), kBlock, 0, stream>>>(
        c, a, b, out, static_cast<uint64_t>(n), Indexer<3, uint64_t>::make(cn));
  }
  check_launch("where", stream);
}

// ------------------------------------------------------------------ fill / arange
template <class T>
__global__ void fill_kernel(T* __restrict__ y, int64_t n, T v) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = v;
}

template <class T>
void fill_launch(const char* op_name, T* y, int64_t n, T v, void* stream_) {
  CRATE_CUDA_REQUIRE(n >= 0, op_name, "negative size " + std::to_string(n));
  if (n == 0) return;
  require_ptr(op_name, y, "y");
  cudaStream_t stream = resolve_stream(stream_);
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  bool zero_bits = true;
  for (unsigned char byte : bytes) zero_bits = zero_bits && byte == 0;
  if (zero_bits) {
    check(cudaMemsetAsync(y, 0, static_cast<size_t>(n) * sizeof(T), stream), op_name);
    return;
  }
  fill_kernel<T><<<grid_for(n, kBlock), kBlock, 0, stream>>>(y, n, v);
  check_launch(op_name, stream);
}

template <class T>
__global__ void arange_kernel(T* __restrict__ y, int64_t n, double start, double step) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = arange_value<T>(i, start, step);
}

template <class T>
void arange_launch(const char* op_name, T* y, int64_t n, double start, double step, void* stream_) {
  CRATE_CUDA_REQUIRE(n >= 0, op_name, "negative size " + std::to_string(n));
  if (n == 0) return;
  require_ptr(op_name, y, "y");
  cudaStream_t stream = resolve_stream(stream_);
  arange_kernel<T><<<grid_for(n, kBlock), kBlock, 0, stream>>>(y, n, start, step);
  check_launch(op_name, stream);
}

// ------------------------------------------------------------------ cast
template <class S, class D>
__global__ void cast_kernel(const S* __restrict__ x, D* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = cast_value<S, D>(x[i]);
}

template <class S, class D>
void cast_launch(const void* x, void* y, int64_t n, cudaStream_t stream) {
  cast_kernel<S, D><<<grid_for(n, kBlock), kBlock, 0, stream>>>(static_cast<const S*>(x), static_cast<D*>(y), n);
}

template <class S>
void cast_from(const void* x, void* y, int dst, int64_t n, cudaStream_t stream) {
  switch (dst) {
    case kDtypeF32:
      return cast_launch<S, float>(x, y, n, stream);
    case kDtypeI32:
      return cast_launch<S, int32_t>(x, y, n, stream);
    default:
      return cast_launch<S, Bf16>(x, y, n, stream);
  }
}

inline size_t dtype_bytes(int dt) { return dt == kDtypeBf16 ? 2 : 4; }

// ------------------------------------------------------------------ nonzero (masks)
/** x != 0 as a byte, like the CPU's `v != 0` (NaN counts as nonzero; -0 as zero). */
PRIM_HD uint8_t is_nonzero(float v) { return v != 0.f; }
PRIM_HD uint8_t is_nonzero(int32_t v) { return v != 0; }
PRIM_HD uint8_t is_nonzero(Bf16 v) { return (v.bits & 0x7fffu) != 0; }

template <class S>
__global__ void nonzero_u8_kernel(const S* __restrict__ x, uint8_t* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = is_nonzero(x[i]);
}

// ------------------------------------------------------------------ find_nonfinite
__global__ void find_nonfinite_kernel(const float* __restrict__ x, int64_t n, bool vec,
                                      unsigned long long* __restrict__ first) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned long long best = ~0ull;
  int64_t tail = 0;
  if (vec) {
    const int64_t nv = n / 4;
    const float4* xv = reinterpret_cast<const float4*>(x);
    // Indices visited by one thread increase, so its first hit is its minimum.
    for (int64_t i = start; i < nv; i += stride) {
      const float4 v = xv[i];
      const int hit = !is_finite_f32(v.x)   ? 0
                      : !is_finite_f32(v.y) ? 1
                      : !is_finite_f32(v.z) ? 2
                      : !is_finite_f32(v.w) ? 3
                                            : -1;
      if (hit >= 0) {
        best = static_cast<unsigned long long>(i * 4 + hit);
        break;
      }
    }
    tail = nv * 4;
  }
  if (best == ~0ull) {
    for (int64_t i = tail + start; i < n; i += stride)
      if (!is_finite_f32(x[i])) {
        best = static_cast<unsigned long long>(i);
        break;
      }
  }
  // Warp minimum, then one atomic per warp.
  for (int off = 16; off > 0; off >>= 1) {
    const unsigned long long o = __shfl_xor_sync(0xffffffffu, best, off);
    best = o < best ? o : best;
  }
  if ((threadIdx.x & 31) == 0 && best != ~0ull) atomicMin(first, best);
}

// ------------------------------------------------------------------ unary launchers
template <class T>
void unary_launch(int op, const T* x, T* y, int64_t n, double alpha, double beta, void* stream_) {
  with_unary_op(op, [](auto) {});
  CRATE_CUDA_REQUIRE(n >= 0, "unary", "negative size " + std::to_string(n));
  if (n == 0) return;
  require_ptr("unary", x, "x");
  require_ptr("unary", y, "y");
  cudaStream_t stream = resolve_stream(stream_);
  const UnaryParams p = UnaryParams::make(alpha, beta);
  const bool vec = std::is_same_v<T, float> && aligned16(x) && aligned16(y) && n >= 4;
  with_unary_op(op, [&](auto tag) {
    constexpr int kOp = decltype(tag)::value;
    unary_kernel<kOp, T><<<grid_for(vec ? n / 4 : n, kBlock), kBlock, 0, stream>>>(x, y, n, p, vec);
  });
  check_launch("unary", stream);
}

template <class T>
void unary_backward_launch(int op, const T* x, const T* y, const T* g, T* dx, int64_t n, double alpha, double beta,
                           void* stream_) {
  with_unary_op(op, [](auto) {});
  CRATE_CUDA_REQUIRE(n >= 0, "unary_backward", "negative size " + std::to_string(n));
  if (n == 0) return;
  // x and y may be NULL (as on the CPU: read as 0) when the op's gradient does not use them.
  require_ptr("unary_backward", g, "g");
  require_ptr("unary_backward", dx, "dx");
  cudaStream_t stream = resolve_stream(stream_);
  const UnaryParams p = UnaryParams::make(alpha, beta);
  const bool vec = std::is_same_v<T, float> && aligned16(x) && aligned16(y) && aligned16(g) && aligned16(dx) && n >= 4;
  with_unary_op(op, [&](auto tag) {
    constexpr int kOp = decltype(tag)::value;
    unary_backward_kernel<kOp, T><<<grid_for(vec ? n / 4 : n, kBlock), kBlock, 0, stream>>>(x, y, g, dx, n, p, vec);
  });
  check_launch("unary_backward", stream);
}

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;
using namespace crate::cuda::prim;

CRATE_API crate_status crate_cuda_unary_f32(int op, const float* x, float* y, int64_t n, double alpha, double beta,
                                            void* stream) {
  return guard("crate_cuda_unary_f32", [&] { unary_launch<float>(op, x, y, n, alpha, beta, stream); });
}

CRATE_API crate_status crate_cuda_unary_bf16(int op, const uint16_t* x, uint16_t* y, int64_t n, double alpha,
                                             double beta, void* stream) {
  return guard("crate_cuda_unary_bf16", [&] {
    unary_launch<Bf16>(op, reinterpret_cast<const Bf16*>(x), reinterpret_cast<Bf16*>(y), n, alpha, beta, stream);
  });
}

CRATE_API crate_status crate_cuda_unary_backward_f32(int op, const float* x, const float* y, const float* g, float* dx,
                                                     int64_t n, double alpha, double beta, void* stream) {
  return guard("crate_cuda_unary_backward_f32",
               [&] { unary_backward_launch<float>(op, x, y, g, dx, n, alpha, beta, stream); });
}

CRATE_API crate_status crate_cuda_unary_backward_bf16(int op, const uint16_t* x, const uint16_t* y, const uint16_t* g,
                                                      uint16_t* dx, int64_t n, double alpha, double beta,
                                                      void* stream) {
  return guard("crate_cuda_unary_backward_bf16", [&] {
    unary_backward_launch<Bf16>(op, reinterpret_cast<const Bf16*>(x), reinterpret_cast<const Bf16*>(y),
                                reinterpret_cast<const Bf16*>(g), reinterpret_cast<Bf16*>(dx), n, alpha, beta, stream);
  });
}

CRATE_API crate_status crate_cuda_binary_f32(int op, const float* a, const int64_t* a_str, const float* b,
                                             const int64_t* b_str, float* out, const int64_t* shape, int ndim,
                                             void* stream) {
  return guard("crate_cuda_binary_f32",
               [&] { binary_launch<float>("binary", op, a, a_str, b, b_str, out, shape, ndim, stream); });
}

CRATE_API crate_status crate_cuda_binary_bf16(int op, const uint16_t* a, const int64_t* a_str, const uint16_t* b,
                                              const int64_t* b_str, uint16_t* out, const int64_t* shape, int ndim,
                                              void* stream) {
  return guard("crate_cuda_binary_bf16", [&] {
    binary_launch<Bf16>("binary", op, reinterpret_cast<const Bf16*>(a), a_str, reinterpret_cast<const Bf16*>(b), b_str,
                        reinterpret_cast<Bf16*>(out), shape, ndim, stream);
  });
}

CRATE_API crate_status crate_cuda_binary_i32(int op, const int32_t* a, const int64_t* a_str, const int32_t* b,
                                             const int64_t* b_str, int32_t* out, const int64_t* shape, int ndim,
                                             void* stream) {
  return guard("crate_cuda_binary_i32",
               [&] { binary_launch<int32_t>("binary", op, a, a_str, b, b_str, out, shape, ndim, stream); });
}

CRATE_API crate_status crate_cuda_where_f32(const float* c, const int64_t* c_str, const float* a, const int64_t* a_str,
                                            const float* b, const int64_t* b_str, float* out, const int64_t* shape,
                                            int ndim, void* stream) {
  return guard("crate_cuda_where_f32",
               [&] { where_launch<float>(c, c_str, a, a_str, b, b_str, out, shape, ndim, stream); });
}

CRATE_API crate_status crate_cuda_where_bf16(const uint16_t* c, const int64_t* c_str, const uint16_t* a,
                                             const int64_t* a_str, const uint16_t* b, const int64_t* b_str,
                                             uint16_t* out, const int64_t* shape, int ndim, void* stream) {
  return guard("crate_cuda_where_bf16", [&] {
    where_launch<Bf16>(reinterpret_cast<const Bf16*>(c), c_str, reinterpret_cast<const Bf16*>(a), a_str,
                       reinterpret_cast<const Bf16*>(b), b_str, reinterpret_cast<Bf16*>(out), shape, ndim, stream);
  });
}

CRATE_API crate_status crate_cuda_fill_f32(float* y, int64_t n, double value, void* stream) {
  return guard("crate_cuda_fill_f32", [&] { fill_launch<float>("fill", y, n, static_cast<float>(value), stream); });
}

CRATE_API crate_status crate_cuda_fill_bf16(uint16_t* y, int64_t n, double value, void* stream) {
  return guard("crate_cuda_fill_bf16",
               [&] { fill_launch<Bf16>("fill", reinterpret_cast<Bf16*>(y), n, f64_to_bf16(value), stream); });
}

CRATE_API crate_status crate_cuda_fill_i32(int32_t* y, int64_t n, double value, void* stream) {
  return guard("crate_cuda_fill_i32", [&] { fill_launch<int32_t>("fill", y, n, trunc_i32_x86(value), stream); });
}

CRATE_API crate_status crate_cuda_arange_f32(float* y, int64_t n, double start, double step, void* stream) {
  return guard("crate_cuda_arange_f32", [&] { arange_launch<float>("arange", y, n, start, step, stream); });
}

CRATE_API crate_status crate_cuda_arange_i32(int32_t* y, int64_t n, double start, double step, void* stream) {
  return guard("crate_cuda_arange_i32", [&] { arange_launch<int32_t>("arange", y, n, start, step, stream); });
}

CRATE_API crate_status crate_cuda_cast(const void* x, int src_dtype, void* y, int dst_dtype, int64_t n, void* stream_) {
  return guard("crate_cuda_cast", [&] {
    auto known = [](int dt) { return dt == kDtypeF32 || dt == kDtypeI32 || dt == kDtypeBf16; };
    CRATE_CUDA_REQUIRE(known(src_dtype), "cast",
                       "unsupported source dtype " + std::to_string(src_dtype) + " (0 f32, 2 i32, 3 bf16)");
    CRATE_CUDA_REQUIRE(known(dst_dtype), "cast",
                       "unsupported destination dtype " + std::to_string(dst_dtype) + " (0 f32, 2 i32, 3 bf16)");
    CRATE_CUDA_REQUIRE(n >= 0, "cast", "negative size " + std::to_string(n));
    if (n == 0) return;
    require_ptr("cast", x, "x");
    require_ptr("cast", y, "y");
    cudaStream_t stream = resolve_stream(stream_);
    if (src_dtype == dst_dtype) {
      if (x != y)
        check(cudaMemcpyAsync(y, x, static_cast<size_t>(n) * dtype_bytes(src_dtype), cudaMemcpyDeviceToDevice, stream),
              "cast");
      return;
    }
    switch (src_dtype) {
      case kDtypeF32:
        cast_from<float>(x, y, dst_dtype, n, stream);
        break;
      case kDtypeI32:
        cast_from<int32_t>(x, y, dst_dtype, n, stream);
        break;
      default:
        cast_from<Bf16>(x, y, dst_dtype, n, stream);
        break;
    }
    check_launch("cast", stream);
  });
}

CRATE_API crate_status crate_cuda_nonzero_u8(const void* x, int dtype, uint8_t* y, int64_t n, void* stream_) {
  return guard("crate_cuda_nonzero_u8", [&] {
    CRATE_CUDA_REQUIRE(dtype == kDtypeF32 || dtype == kDtypeI32 || dtype == kDtypeBf16, "nonzero_u8",
                       "unsupported dtype " + std::to_string(dtype) + " (0 f32, 2 i32, 3 bf16)");
    CRATE_CUDA_REQUIRE(n >= 0, "nonzero_u8", "negative size " + std::to_string(n));
    if (n == 0) return;
    require_ptr("nonzero_u8", x, "x");
    require_ptr("nonzero_u8", y, "y");
    cudaStream_t stream = resolve_stream(stream_);
    const int grid = grid_for(n, kBlock);
    switch (dtype) {
      case kDtypeF32:
        nonzero_u8_kernel<float><<<grid, kBlock, 0, stream>>>(static_cast<const float*>(x), y, n);
        break;
      case kDtypeI32:
        nonzero_u8_kernel<int32_t><<<grid, kBlock, 0, stream>>>(static_cast<const int32_t*>(x), y, n);
        break;
      default:
        nonzero_u8_kernel<Bf16><<<grid, kBlock, 0, stream>>>(static_cast<const Bf16*>(x), y, n);
        break;
    }
    check_launch("nonzero_u8", stream);
  });
}

CRATE_API crate_status crate_cuda_find_nonfinite_f32(const float* x, int64_t n, int64_t* host_result, void* stream_) {
  return guard("crate_cuda_find_nonfinite_f32", [&] {
    require_ptr("find_nonfinite", host_result, "host_result");
    CRATE_CUDA_REQUIRE(n >= 0, "find_nonfinite", "negative size " + std::to_string(n));
    *host_result = -1;
    if (n == 0) return;
    require_ptr("find_nonfinite", x, "x");
    cudaStream_t stream = resolve_stream(stream_);
    Scratch first(sizeof(unsigned long long), stream);
    unsigned long long* d_first = first.as<unsigned long long>();
    check(cudaMemsetAsync(d_first, 0xff, sizeof(unsigned long long), stream), "find_nonfinite");
    const bool vec = aligned16(x) && n >= 4;
    find_nonfinite_kernel<<<grid_for(vec ? n / 4 : n, kBlock), kBlock, 0, stream>>>(x, n, vec, d_first);
    check_launch("find_nonfinite", stream);
    unsigned long long h = ~0ull;
    read_back(&h, d_first, sizeof(h), stream, "find_nonfinite");
    *host_result = h == ~0ull ? -1 : static_cast<int64_t>(h);
  });
}
