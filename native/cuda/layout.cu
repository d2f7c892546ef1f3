// layout.cu: CUDA twins of native/cpu/layout.cc (strided_copy, gather, index_add) and of
// native/cpu/matmul.cc (batched matmul with broadcast batch dims, on the library GEMM; bf16 A, B
// and C through the bf16 -> bf16 GEMM: f32 accumulation, one rounding per output).
//
// strided_copy canonicalises the iteration space on the host (size-1 dims dropped, dims merged
// where both the source and the destination strides allow) and then runs a stream-ordered
// memcpy (both sides contiguous, plain copy), a 1-D strided kernel, or a general kernel that
// derives both offsets from the linear index (32-bit magic division below 2^31 elements).
// gather validates every index on the device (an out-of-range index is skipped, its lowest
// position recorded with atomicMin) and reads that flag back synchronously to report the error
// exactly as the CPU does; gather_unchecked, for callers that validated the indices already (a
// language model's token ids, checked on the host), skips the flag and the wait: an out-of-range
// index still reads nothing out of bounds, its output row is zero-filled and not reported. index_add scatters with
// atomicAdd (bf16: into an f32 copy of dx, rounded back once per element, since there is no bf16 float atomic that
// rounds once).
//
// dtypes: strided_copy f32 (copy and accumulate), bf16 (copy: the bits unchanged; accumulate:
// added in f32, rounded once per element; not into overlapping destinations) and i32 (copy);
// gather f32, bf16 (the bits unchanged) and i32; index_add f32 and bf16; matmul f32.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "prim_common.cuh"

namespace crate::cuda {
namespace {

using namespace prim;

// ------------------------------------------------------------------ strided_copy
enum CopyMode : int { kCopyAssign = 0, kCopyAdd = 1, kCopyAtomicAdd = 2 };

template <int Mode, class T>
__device__ __forceinline__ void store(T* d, T v) {
  if constexpr (Mode == kCopyAssign)
    *d = v;
  else if constexpr (Mode == kCopyAdd && std::is_same_v<T, Bf16>)
    *d = f32_to_bf16(add_f32(as_f32(*d), as_f32(v)));
  else if constexpr (Mode == kCopyAdd)
    *d += v;
  else
    atomicAdd(d, v);
}

template <class T, int Mode>
__global__ void copy_1d_kernel(const T* __restrict__ src, int64_t ss, T* __restrict__ dst, int64_t ds, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    store<Mode>(dst + i * ds, src[i * ss]);
}

template <class T, int Mode, class Idx>
__global__ void copy_general_kernel(const T* __restrict__ src, T* __restrict__ dst, Idx n, Indexer<2, Idx> ix) {
  const Idx stride = static_cast<Idx>(gridDim.x) * blockDim.x;
  for (Idx i = static_cast<Idx>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t off[2];
    ix.offsets(i, off);
    store<Mode>(dst + off[1], src[off[0]]);
  }
}

template <class T, int Mode>
void copy_launch(const T* src, T* dst, const Canon& c, cudaStream_t stream) {
  const int64_t n = c.numel;
  if (c.shape.size() <= 1) {
    const int64_t ss = c.shape.empty() ? 0 : c.str[0][0], ds = c.shape.empty() ? 0 : c.str[1][0];
    copy_1d_kernel<T, Mode><<<grid_for(n, kBlock), kBlock, 0, stream>>>(src, ss, dst, ds, n);
  } else if (fits_u32(n)) {
    copy_general_kernel<T, Mode, uint32_t>
        <<<grid_for(n, kBlock), kBlock, 0, stream>>>(src, dst, static_cast<uint32_t>(n), Indexer<2, uint32_t>::make(c));
  } else {
    copy_general_kernel<T, Mode, uint64_t>
        <<<grid_for(n, kBlock), kBlock, 0, stream>>>(src, dst, static_cast<uint64_t>(n), Indexer<2, uint64_t>::make(c));
  }
}

template <class T>
void strided_copy(const char* op, const T* src, int64_t src_off, const int64_t* src_str, T* dst, int64_t dst_off,
                  const int64_t* dst_str, const int64_t* shape, int ndim, bool accumulate, void* stream_) {
  const int64_t n = checked_numel(op, shape, ndim);
  if (n == 0) return;
  require_strides(op, src_str, ndim, "src_str");
  require_strides(op, dst_str, ndim, "dst_str");
  require_ptr(op, src, "src");
  require_ptr(op, dst, "dst");
  const int64_t* strs[2] = {src_str, dst_str};
  const Canon c = canonicalize(shape, ndim, strs, 2);
  cudaStream_t stream = resolve_stream(stream_);
  const T* s = src + src_off;
  T* d = dst + dst_off;
  if (!accumulate) {
    const bool contiguous = c.shape.empty() || (c.shape.size() == 1 && c.str[0][0] == 1 && c.str[1][0] == 1);
    if (contiguous) {
      check(cudaMemcpyAsync(d, s, static_cast<size_t>(n) * sizeof(T), cudaMemcpyDeviceToDevice, stream), op);
      return;
    }
    copy_launch<T, kCopyAssign>(s, d, c, stream);
  } else {
    // Two indices writing one destination element (a 0 stride over a dim of size > 1; the CPU
    // runs that case serially) need atomics; otherwise every element has its own destination.
    bool overlap = false;
    for (int64_t st : c.str[1]) overlap = overlap || st == 0;
    if constexpr (std::is_same_v<T, float>) {
      if (overlap)
        copy_launch<T, kCopyAtomicAdd>(s, d, c, stream);
      else
        copy_launch<T, kCopyAdd>(s, d, c, stream);
    } else if constexpr (std::is_same_v<T, Bf16>) {
      CRATE_CUDA_REQUIRE(!overlap, op,
                         "accumulate into overlapping destination elements (a 0 dst stride) is only supported for f32");
      copy_launch<T, kCopyAdd>(s, d, c, stream);
    } else {
      CRATE_CUDA_REQUIRE(false, op, "accumulate is only supported for f32 and bf16");
    }
  }
  check_launch(op, stream);
}

// ------------------------------------------------------------------ gather / index_add
/** Element e of out (outer, k, inner_v): its row j (position in idx) and source offset. */
template <class Idx>
struct GatherIndex {
  typename DivFor<Idx>::type inner_v, k;
  PRIM_HD void split(Idx e, Idx& o, Idx& j, Idx& i) const {
    const Idx r = inner_v.div(e);
    i = e - r * static_cast<Idx>(inner_v.d);
    o = k.div(r);
    j = r - o * static_cast<Idx>(k.d);
  }
};

template <class V, class Idx>
__global__ void gather_kernel(const V* __restrict__ x, const int32_t* __restrict__ idx, V* __restrict__ out, Idx n,
                              int64_t dim, GatherIndex<Idx> gi, unsigned long long* __restrict__ bad) {
  const Idx stride = static_cast<Idx>(gridDim.x) * blockDim.x;
  for (Idx e = static_cast<Idx>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    Idx o, j, i;
    gi.split(e, o, j, i);
    const int64_t id = idx[j];
    if (id < 0 || id >= dim) {
      if (bad != nullptr) atomicMin(bad, static_cast<unsigned long long>(j));
      out[e] = V{};
      continue;
    }
    out[e] = x[(static_cast<int64_t>(o) * dim + id) * static_cast<int64_t>(gi.inner_v.d) + static_cast<int64_t>(i)];
  }
}

/** Only the index check (the output is empty but the CPU still validates idx). */
__global__ void check_index_kernel(const int32_t* __restrict__ idx, int64_t k, int64_t dim,
                                   unsigned long long* __restrict__ bad) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < k; j += stride) {
    const int64_t id = idx[j];
    if (id < 0 || id >= dim) atomicMin(bad, static_cast<unsigned long long>(j));
  }
}

template <class Idx>
GatherIndex<Idx> make_gather_index(int64_t inner_v, int64_t k) {
  using Div = typename DivFor<Idx>::type;
  return GatherIndex<Idx>{Div::make(static_cast<Idx>(inner_v)), Div::make(static_cast<Idx>(k))};
}

template <class V>
void gather_launch(const void* x, const int32_t* idx, void* out, int64_t outer, int64_t dim, int64_t inner_v, int64_t k,
                   unsigned long long* bad, cudaStream_t stream) {
  const int64_t n = outer * k * inner_v;
  if (fits_u32(n)) {
    gather_kernel<V, uint32_t><<<grid_for(n, kBlock), kBlock, 0, stream>>>(
        static_cast<const V*>(x), idx, static_cast<V*>(out), static_cast<uint32_t>(n), dim,
        make_gather_index<uint32_t>(inner_v, k), bad);
  } else {
    gather_kernel<V, uint64_t><<<grid_for(n, kBlock), kBlock, 0, stream>>>(
        static_cast<const V*>(x), idx, static_cast<V*>(out), static_cast<uint64_t>(n), dim,
        make_gather_index<uint64_t>(inner_v, k), bad);
  }
}

inline void check_sizes(const char* op, int64_t outer, int64_t dim, int64_t inner, int64_t k) {
  CRATE_CUDA_REQUIRE(outer >= 0 && dim >= 0 && inner >= 0 && k >= 0, op,
                     "negative size (outer " + std::to_string(outer) + ", dim " + std::to_string(dim) + ", inner " +
                         std::to_string(inner) + ", k " + std::to_string(k) + ")");
}

/** T is float or int32_t (4 bytes); rows of 4-multiple length move as 16-byte vectors. `checked`:
 * report an out-of-range index (one host wait); else zero-fill its row and go on without waiting. */
template <class T, class V4>
void gather(const char* op, const T* x, const int32_t* idx, T* out, int64_t outer, int64_t dim, int64_t inner,
            int64_t k, bool checked, void* stream_) {
  check_sizes(op, outer, dim, inner, k);
  if (k == 0) return;  // nothing to check, nothing to write
  require_ptr(op, idx, "idx");
  const int64_t n = outer * k * inner;
  if (n > 0) {
    require_ptr(op, x, "x");
    require_ptr(op, out, "out");
  }
  if (!checked && n == 0) return;  // nothing to write, nothing to report
  cudaStream_t stream = resolve_stream(stream_);
  std::unique_ptr<Scratch> flag;  // checked: the lowest bad position (atomicMin), ~0 when none
  unsigned long long* bad = nullptr;
  if (checked) {
    flag.reset(new Scratch(sizeof(unsigned long long), stream));
    bad = flag->as<unsigned long long>();
    check(cudaMemsetAsync(bad, 0xff, sizeof(unsigned long long), stream), op);
  }
  if (n == 0) {
    check_index_kernel<<<grid_for(k, kBlock), kBlock, 0, stream>>>(idx, k, dim, bad);
  } else if (inner % 4 == 0 && aligned16(x) && aligned16(out)) {
    gather_launch<V4>(x, idx, out, outer, dim, inner / 4, k, bad, stream);
  } else {
    gather_launch<T>(x, idx, out, outer, dim, inner, k, bad, stream);
  }
  check_launch(op, stream);
  if (!checked) return;
  unsigned long long pos = ~0ull;
  read_back(&pos, bad, sizeof(pos), stream, op);
  if (pos != ~0ull) {
    int32_t v = 0;
    read_back(&v, idx + pos, sizeof(v), stream, op);
    CRATE_CUDA_REQUIRE(false, op,
                       "index " + std::to_string(v) + " at position " + std::to_string(pos) + " is out of range [0, " +
                           std::to_string(dim) + ")");
  }
}

template <class G, class Idx>
__global__ void index_add_kernel(const G* __restrict__ g, const int32_t* __restrict__ idx, float* __restrict__ dx,
                                 Idx n, int64_t dim, GatherIndex<Idx> gi) {
  const Idx stride = static_cast<Idx>(gridDim.x) * blockDim.x;
  for (Idx e = static_cast<Idx>(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += stride) {
    Idx o, j, i;
    gi.split(e, o, j, i);
    const int64_t id = idx[j];
    if (id < 0 || id >= dim) continue;  // never write out of bounds (gather reported it)
    atomicAdd(dx + (static_cast<int64_t>(o) * dim + id) * static_cast<int64_t>(gi.inner_v.d) + static_cast<int64_t>(i),
              as_f32(g[e]));
  }
}

/** bf16 index_add: dx widened to f32 scratch, f32 atomicAdd there, rounded back once. */
__global__ void bf16_widen_kernel(const Bf16* __restrict__ x, float* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = bf16_to_f32(x[i]);
}
__global__ void bf16_narrow_kernel(const float* __restrict__ x, Bf16* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = f32_to_bf16(x[i]);
}

/** G = float (dx f32, added in place) or Bf16 (dx bf16 via an f32 scratch copy). */
template <class G>
void index_add(const G* g, const int32_t* idx, G* dx, int64_t outer, int64_t dim, int64_t inner, int64_t k,
               void* stream_) {
  const char* op = "index_add";
  check_sizes(op, outer, dim, inner, k);
  const int64_t n = outer * k * inner;
  if (n == 0) return;
  require_ptr(op, g, "g");
  require_ptr(op, idx, "idx");
  require_ptr(op, dx, "dx");
  cudaStream_t stream = resolve_stream(stream_);
  float* acc = nullptr;
  std::unique_ptr<Scratch> wide;
  const int64_t nd = outer * dim * inner;
  if constexpr (std::is_same_v<G, Bf16>) {
    wide = std::make_unique<Scratch>(static_cast<size_t>(nd) * sizeof(float), stream);
    acc = wide->as<float>();
    bf16_widen_kernel<<<grid_for(nd, kBlock), kBlock, 0, stream>>>(dx, acc, nd);
    check_launch(op, stream);
  } else {
    acc = dx;
  }
  if (fits_u32(n)) {
    index_add_kernel<G, uint32_t><<<grid_for(n, kBlock), kBlock, 0, stream>>>(
        g, idx, acc, static_cast<uint32_t>(n), dim, make_gather_index<uint32_t>(inner, k));
  } else {
    index_add_kernel<G, uint64_t><<<grid_for(n, kBlock), kBlock, 0, stream>>>(
        g, idx, acc, static_cast<uint64_t>(n), dim, make_gather_index<uint64_t>(inner, k));
  }
  check_launch(op, stream);
  if constexpr (std::is_same_v<G, Bf16>) {
    bf16_narrow_kernel<<<grid_for(nd, kBlock), kBlock, 0, stream>>>(acc, dx, nd);
    check_launch(op, stream);
  }
}

// ------------------------------------------------------------------ matmul
/** Batch dims with size 1 dropped and neighbours merged where both operands' strides allow
 * (the output is contiguous, so it always allows). */
struct BatchCanon {
  std::vector<int64_t> shape, as, bs;  // outer ... inner
};

inline BatchCanon canonical_batch(const int64_t* shape, const int64_t* as, const int64_t* bs, int nbatch) {
  const int64_t* strs[2] = {as, bs};
  const Canon c = canonicalize(shape, nbatch, strs, 2);
  return BatchCanon{c.shape, c.str[0], c.str[1]};
}

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;
using namespace crate::cuda::prim;

CRATE_API crate_status crate_cuda_strided_copy_f32(const float* src, int64_t src_off, const int64_t* src_str,
                                                   float* dst, int64_t dst_off, const int64_t* dst_str,
                                                   const int64_t* shape, int ndim, int accumulate, void* stream) {
  return guard("crate_cuda_strided_copy_f32", [&] {
    strided_copy<float>("strided_copy", src, src_off, src_str, dst, dst_off, dst_str, shape, ndim, accumulate != 0,
                        stream);
  });
}

CRATE_API crate_status crate_cuda_strided_copy_bf16(const uint16_t* src, int64_t src_off, const int64_t* src_str,
                                                    uint16_t* dst, int64_t dst_off, const int64_t* dst_str,
                                                    const int64_t* shape, int ndim, int accumulate, void* stream) {
  return guard("crate_cuda_strided_copy_bf16", [&] {
    strided_copy<Bf16>("strided_copy", reinterpret_cast<const Bf16*>(src), src_off, src_str,
                       reinterpret_cast<Bf16*>(dst), dst_off, dst_str, shape, ndim, accumulate != 0, stream);
  });
}

CRATE_API crate_status crate_cuda_strided_copy_i32(const int32_t* src, int64_t src_off, const int64_t* src_str,
                                                   int32_t* dst, int64_t dst_off, const int64_t* dst_str,
                                                   const int64_t* shape, int ndim, void* stream) {
  return guard("crate_cuda_strided_copy_i32", [&] {
    strided_copy<int32_t>("strided_copy", src, src_off, src_str, dst, dst_off, dst_str, shape, ndim, false, stream);
  });
}

CRATE_API crate_status crate_cuda_gather_f32(const float* x, const int32_t* idx, float* out, int64_t outer, int64_t dim,
                                             int64_t inner, int64_t k, void* stream) {
  return guard("crate_cuda_gather_f32",
               [&] { gather<float, float4>("gather", x, idx, out, outer, dim, inner, k, true, stream); });
}

CRATE_API crate_status crate_cuda_gather_i32(const int32_t* x, const int32_t* idx, int32_t* out, int64_t outer,
                                             int64_t dim, int64_t inner, int64_t k, void* stream) {
  return guard("crate_cuda_gather_i32",
               [&] { gather<int32_t, int4>("gather", x, idx, out, outer, dim, inner, k, true, stream); });
}

CRATE_API crate_status crate_cuda_gather_bf16(const uint16_t* x, const int32_t* idx, uint16_t* out, int64_t outer,
                                              int64_t dim, int64_t inner, int64_t k, void* stream) {
  // bits moved unchanged; rows of 4-multiple length as 8-byte vectors
  return guard("crate_cuda_gather_bf16",
               [&] { gather<uint16_t, uint2>("gather", x, idx, out, outer, dim, inner, k, true, stream); });
}

CRATE_API crate_status crate_cuda_gather_unchecked_f32(const float* x, const int32_t* idx, float* out, int64_t outer,
                                                       int64_t dim, int64_t inner, int64_t k, void* stream) {
  return guard("crate_cuda_gather_unchecked_f32",
               [&] { gather<float, float4>("gather", x, idx, out, outer, dim, inner, k, false, stream); });
}

CRATE_API crate_status crate_cuda_gather_unchecked_i32(const int32_t* x, const int32_t* idx, int32_t* out,
                                                       int64_t outer, int64_t dim, int64_t inner, int64_t k,
                                                       void* stream) {
  return guard("crate_cuda_gather_unchecked_i32",
               [&] { gather<int32_t, int4>("gather", x, idx, out, outer, dim, inner, k, false, stream); });
}

CRATE_API crate_status crate_cuda_gather_unchecked_bf16(const uint16_t* x, const int32_t* idx, uint16_t* out,
                                                        int64_t outer, int64_t dim, int64_t inner, int64_t k,
                                                        void* stream) {
  return guard("crate_cuda_gather_unchecked_bf16",
               [&] { gather<uint16_t, uint2>("gather", x, idx, out, outer, dim, inner, k, false, stream); });
}

CRATE_API crate_status crate_cuda_index_add_f32(const float* g, const int32_t* idx, float* dx, int64_t outer,
                                                int64_t dim, int64_t inner, int64_t k, void* stream) {
  return guard("crate_cuda_index_add_f32", [&] { index_add<float>(g, idx, dx, outer, dim, inner, k, stream); });
}

CRATE_API crate_status crate_cuda_index_add_bf16(const uint16_t* g, const int32_t* idx, uint16_t* dx, int64_t outer,
                                                 int64_t dim, int64_t inner, int64_t k, void* stream) {
  return guard("crate_cuda_index_add_bf16", [&] {
    index_add<Bf16>(reinterpret_cast<const Bf16*>(g), idx, reinterpret_cast<Bf16*>(dx), outer, dim, inner, k, stream);
  });
}

namespace crate::cuda {
namespace {
// The batched matmul of crate_cuda_matmul_f32 / _bf16 over a GEMM
// gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, batch, sa, sb, sc, stream) with alpha 1, beta 0.
template <class T, class Gemm>
void matmul_any(const char* op, const T* A, const T* B, T* C, const int64_t* batch_shape, const int64_t* a_bstr,
                const int64_t* b_bstr, int nbatch, int64_t M, int64_t N, int64_t K, int trans_a, int trans_b,
                void* stream_, Gemm gemm) {
  CRATE_CUDA_REQUIRE(
      M >= 0 && N >= 0 && K >= 0, op,
      "negative matrix size (M " + std::to_string(M) + ", N " + std::to_string(N) + ", K " + std::to_string(K) + ")");
  const int64_t batch = checked_numel(op, batch_shape, nbatch);
  if (batch == 0 || M == 0 || N == 0) return;
  require_strides(op, a_bstr, nbatch, "a_bstr");
  require_strides(op, b_bstr, nbatch, "b_bstr");
  require_ptr(op, C, "C");
  cudaStream_t stream = resolve_stream(stream_);
  if (K == 0) {  // empty inner product: C = 0
    check(cudaMemsetAsync(C, 0, static_cast<size_t>(batch * M * N) * sizeof(T), stream), op);
    return;
  }
  require_ptr(op, A, "A");
  require_ptr(op, B, "B");
  const bool ta = trans_a != 0, tb = trans_b != 0;
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  const BatchCanon c = canonical_batch(batch_shape, a_bstr, b_bstr, nbatch);
  const int nb = static_cast<int>(c.shape.size());
  if (nb == 0) {
    gemm(ta, tb, M, N, K, A, lda, B, ldb, C, N, 1, 0, 0, 0, stream);
    return;
  }
  // One strided-batched GEMM over the innermost canonical batch dim, a host loop over the rest.
  const int64_t inner = c.shape[nb - 1], sa = c.as[nb - 1], sb = c.bs[nb - 1];
  if (nb == 1 && sb == 0 && sa == M * K && !ta) {
    // B shared by every batch and A's batches contiguous: fold the batch into M (one GEMM).
    gemm(false, tb, inner * M, N, K, A, lda, B, ldb, C, N, 1, 0, 0, 0, stream);
    return;
  }
  int64_t outer = 1;
  for (int d = 0; d < nb - 1; ++d) outer *= c.shape[d];
  std::vector<int64_t> idx(std::max(nb - 1, 1), 0);
  for (int64_t ob = 0; ob < outer; ++ob) {
    int64_t ao = 0, bo = 0;
    for (int d = 0; d < nb - 1; ++d) {
      ao += idx[d] * c.as[d];
      bo += idx[d] * c.bs[d];
    }
    gemm(ta, tb, M, N, K, A + ao, lda, B + bo, ldb, C + ob * inner * M * N, N, inner, sa, sb, M * N, stream);
    for (int d = nb - 2; d >= 0; --d) {
      if (++idx[d] < c.shape[d]) break;
      idx[d] = 0;
    }
  }
}
}  // namespace
}  // namespace crate::cuda

CRATE_API crate_status crate_cuda_matmul_f32(const float* A, const float* B, float* C, const int64_t* batch_shape,
                                             const int64_t* a_bstr, const int64_t* b_bstr, int nbatch, int64_t M,
                                             int64_t N, int64_t K, int trans_a, int trans_b, int allow_tf32,
                                             void* stream_) {
  return guard("crate_cuda_matmul_f32", [&] {
    const bool tf32 = allow_tf32 != 0;
    matmul_any(
        "matmul", A, B, C, batch_shape, a_bstr, b_bstr, nbatch, M, N, K, trans_a, trans_b, stream_,
        [tf32](bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
               int64_t ldb, float* c, int64_t ldc, int64_t batch, int64_t sa, int64_t sb, int64_t sc, cudaStream_t st) {
          gemm_f32(ta, tb, m, n, k, 1.f, a, lda, b, ldb, 0.f, c, ldc, batch, sa, sb, sc, tf32, st);
        });
  });
}

// bf16 in and out: the bf16 -> bf16 GEMM (f32 accumulation, one rounding per output element).
CRATE_API crate_status crate_cuda_matmul_bf16(const uint16_t* A, const uint16_t* B, uint16_t* C,
                                              const int64_t* batch_shape, const int64_t* a_bstr, const int64_t* b_bstr,
                                              int nbatch, int64_t M, int64_t N, int64_t K, int trans_a, int trans_b,
                                              void* stream_) {
  return guard("crate_cuda_matmul_bf16", [&] {
    matmul_any(
        "matmul", A, B, C, batch_shape, a_bstr, b_bstr, nbatch, M, N, K, trans_a, trans_b, stream_,
        [](bool ta, bool tb, int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda, const uint16_t* b,
           int64_t ldb, uint16_t* c, int64_t ldc, int64_t batch, int64_t sa, int64_t sb, int64_t sc, cudaStream_t st) {
          gemm_bf16_bf16(ta, tb, m, n, k, 1.f, a, lda, b, ldb, 0.f, c, ldc, batch, sa, sb, sc, st);
        });
  });
}
