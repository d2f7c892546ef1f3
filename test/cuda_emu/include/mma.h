// mma.h (CUDA host emulator): a matrix-level nvcuda::wmma. Every lane holds the WHOLE tile of a
// fragment (num_elements = rows * cols, row-major, whatever the layout it was loaded with), so
// load/store/mma are computed redundantly per lane and element-wise code over x[0, num_elements)
// works; code that relies on the real per-lane fragment layout cannot be emulated. load, store
// and mma_sync are warp-collective (all 32 lanes must meet, as the _sync names promise) and check
// the device's alignment rules (256-bit pointers, ldm a multiple of 16 bytes). TF32 operands are
// truncated to 19 bits in mma_sync (what the tensor cores read); __float_to_tf32 rounds as the
// device's cvt.rna.tf32.f32 (nearest, ties away from zero). Products of TF32 / bf16 values are
// exact in f32; the emulator accumulates them in f32 in k order.
#pragma once
#include "cuda_bf16.h"
#include "cuda_emu.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

namespace detail {
template <class T>
struct Storage {
  using type = T;
};
template <>
struct Storage<precision::tf32> {
  using type = float;
};
template <class Use, int M, int N, int K>
struct Shape;
template <int M, int N, int K>
struct Shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct Shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct Shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};
inline float tf32_truncate(float x) { return __uint_as_float(__float_as_uint(x) & 0xffffe000u); }
inline void collective(cuda_emu::WarpOp op) { cuda_emu::warp_sync(0xffffffffu, op); }
}  // namespace detail

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  using element_type = T;
  using storage_element_type = typename detail::Storage<T>::type;
  static constexpr int rows = detail::Shape<Use, M, N, K>::rows;
  static constexpr int cols = detail::Shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  storage_element_type x[num_elements];  // row-major (rows x cols)
};

inline float __float_to_tf32(float x) {
  const unsigned u = __float_as_uint(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return (u & 0x007fffffu) ? __uint_as_float(0x7fffffffu) : x;
  return __uint_as_float((u + 0x1000u) & 0xffffe000u);
}

template <class Use, int M, int N, int K, class T, class L, class V>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, const V& v) {
  for (int e = 0; e < f.num_elements; ++e)
    f.x[e] = static_cast<typename fragment<Use, M, N, K, T, L>::storage_element_type>(v);
}

/** matrix_a / matrix_b: the layout is the fragment's. */
template <class Use, int M, int N, int K, class T, class L, class P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p, unsigned ldm) {
  static_assert(!std::is_same_v<Use, accumulator>, "an accumulator load needs a layout_t");
  using F = fragment<Use, M, N, K, T, L>;
  detail::collective(cuda_emu::kWarpMmaLoad);
  cuda_emu::check_wmma(p, ldm, sizeof(P), "load_matrix_sync");
  const cuda_emu::CollectiveAccess warp_access;
  constexpr bool row = std::is_same_v<L, row_major>;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = row ? p[r * ldm + c] : p[c * ldm + r];
}

template <int M, int N, int K, class T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T>& f, const T* p, unsigned ldm, layout_t layout) {
  detail::collective(cuda_emu::kWarpMmaLoad);
  cuda_emu::check_wmma(p, ldm, sizeof(T), "load_matrix_sync");
  const cuda_emu::CollectiveAccess warp_access;
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) f.x[r * N + c] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}

template <int M, int N, int K, class T>
inline void store_matrix_sync(T* p, const fragment<accumulator, M, N, K, T>& f, unsigned ldm, layout_t layout) {
  detail::collective(cuda_emu::kWarpMmaStore);
  cuda_emu::check_wmma(p, ldm, sizeof(T), "store_matrix_sync");
  const cuda_emu::CollectiveAccess warp_access;
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * N + c];
}

template <int M, int N, int K, class TA, class LA, class TB, class LB, class TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC>& c) {
  static_assert(std::is_same_v<TA, TB>, "wmma::mma_sync: A and B precisions differ");
  detail::collective(cuda_emu::kWarpMma);
  // Every lane of a warp computes the same product: the first one stores it in the warp's cache
  // entry, the others find their (bitwise equal) operands there and copy the result.
  using FA = fragment<matrix_a, M, N, K, TA, LA>;
  using FB = fragment<matrix_b, M, N, K, TB, LB>;
  using FC = fragment<accumulator, M, N, K, TC>;
  struct Entry {
    bool valid;
    FA a;
    FB b;
    FC c, d;
  };
  static Entry cache[32];  // per warp of the block (the emulator runs one thread at a time)
  Entry& e = cache[cuda_emu::warp_id() & 31];
  if (e.valid && memcmp(&e.a, &a, sizeof(FA)) == 0 && memcmp(&e.b, &b, sizeof(FB)) == 0 &&
      memcmp(&e.c, &c, sizeof(FC)) == 0) {
    d = e.d;
    return;
  }
  constexpr bool tf32 = std::is_same_v<TA, precision::tf32>;
  FC out;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float acc = static_cast<float>(c.x[i * N + j]);
      for (int k = 0; k < K; ++k) {
        float av = static_cast<float>(a.x[i * K + k]), bv = static_cast<float>(b.x[k * N + j]);
        if constexpr (tf32) {
          av = detail::tf32_truncate(av);
          bv = detail::tf32_truncate(bv);
        }
        acc += av * bv;
      }
      out.x[i * N + j] = static_cast<TC>(acc);
    }
  e.valid = true;
  e.a = a;
  e.b = b;
  e.c = c;
  e.d = out;
  d = out;
}

}  // namespace wmma
}  // namespace nvcuda
