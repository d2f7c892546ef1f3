// reduce.cu: CUDA twin of native/cpu/reduce.cc (sum/max/min over any set of axes).
//
// Host-side canonicalisation: size-1 dims are dropped and neighbouring dims of the same kind
// (kept/reduced) merged, leaving alternating runs. Each pass then reduces the LAST reduced run,
// which is a contiguous (outer, red, inner) problem: outer = everything before it, inner = the
// kept run after it (or 1). The pass output is a contiguous tensor of the remaining runs; the
// runs either side of the removed one merge and the next pass takes the new last reduced run. So
// reductions over e.g. (R, K, R) axes take two passes and no transposing copy; the usual cases
// ((K, R) rows, (R, K) bias gradients, (K, R, K)) take one.
//
// A pass runs 256-thread blocks split into groups of bx x by threads: bx (a power of two <= 32)
// threads along `inner` (coalesced columns), by along the reduced axis (coalesced rows when
// inner == 1). Each thread folds its strided slice sequentially, then the group combines its by
// partials in a fixed shared-memory tree. When there are too few outputs to fill the GPU and the
// reduced axis is long, the pass is split: S contiguous chunks per output are reduced into a
// scratch (outer, S, inner) that a second pass reduces. The launch shape depends only on the
// tensor shape, so results are deterministic (sums in f32; the order differs from the CPU's
// sequential double accumulation, so sums agree to f32 rounding). max/min propagate NaN as the
// CPU does.
//
// dtypes: f32 and bf16. A bf16 reduction reads bf16 (as f32), accumulates and combines in f32
// exactly as the f32 one (the scratch between split passes is f32) and rounds each output once.
#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "prim_common.cuh"

namespace crate::cuda {
namespace {

using namespace prim;

constexpr int kSum = 0, kMax = 1, kMin = 2;

template <int Op>
PRIM_HD float reduce_init() {
  if constexpr (Op == kSum)
    return 0.f;
  else if constexpr (Op == kMax)
    return -INFINITY;
  else
    return INFINITY;
}

/** The CPU's combine (reduce.cc): NaN propagates; ties keep the accumulator. */
template <int Op>
PRIM_HD float reduce_combine(float acc, float v) {
  if constexpr (Op == kSum)
    return add_f32(acc, v);
  else {
    if (v != v) return v;
    if constexpr (Op == kMax)
      return (acc != acc || acc >= v) ? acc : v;
    else
      return (acc != acc || acc <= v) ? acc : v;
  }
}

/** One pass: x (outer, red, inner) -> out (outer, S, inner), chunk s of length L of the reduced
 * axis per output. Work items are (o, s, tile of bx columns), one per thread group. */
struct PassCfg {
  int64_t outer, red, inner, S, L;
  int64_t tiles_x, items;
  int bx, by, groups;
  unsigned grid;
};

inline int64_t pow2_ceil(int64_t v) {
  int64_t p = 1;
  while (p < v) p <<= 1;
  return p;
}

constexpr int64_t kPerThread = 8;        // aim for >= this many elements per thread
constexpr int64_t kMinPerThread = 16;    // a split chunk gives each of its by threads >= this many
constexpr int64_t kFewBlocks = 264;      // below this many blocks, a long reduction is split
constexpr int64_t kTargetBlocks = 1024;  // ... into about this many blocks
constexpr int64_t kGridCap = 65535LL * 32;

inline PassCfg make_pass(int64_t outer, int64_t red, int64_t inner, int64_t S) {
  PassCfg c{};
  c.outer = outer;
  c.red = red;
  c.inner = inner;
  c.L = (red + S - 1) / S;
  c.S = (red + c.L - 1) / c.L;  // no empty chunk
  c.bx = static_cast<int>(std::min<int64_t>(32, pow2_ceil(inner)));
  const int64_t by_max = kBlock / c.bx;
  c.by = static_cast<int>(std::min<int64_t>(by_max, pow2_ceil((c.L + kPerThread - 1) / kPerThread)));
  c.groups = kBlock / (c.bx * c.by);
  c.tiles_x = (inner + c.bx - 1) / c.bx;
  c.items = outer * c.S * c.tiles_x;
  const int64_t blocks = (c.items + c.groups - 1) / c.groups;
  c.grid = static_cast<unsigned>(std::max<int64_t>(1, std::min(blocks, kGridCap)));
  return c;
}

/** The passes for one (outer, red, inner) problem: one, or a split pass and its finishing pass. */
inline void plan_problem(int64_t outer, int64_t red, int64_t inner, std::vector<PassCfg>& passes) {
  PassCfg c = make_pass(outer, red, inner, 1);
  const int64_t blocks = (c.items + c.groups - 1) / c.groups;
  const int64_t min_chunk = (kBlock / c.bx) * kMinPerThread;  // by is at most kBlock / bx
  if (blocks < kFewBlocks && red >= 2 * min_chunk) {
    const int64_t S = std::min((kTargetBlocks + blocks - 1) / blocks, red / min_chunk);
    if (S >= 2) {
      PassCfg a = make_pass(outer, red, inner, S);
      passes.push_back(a);
      passes.push_back(make_pass(outer, a.S, inner, 1));
      return;
    }
  }
  passes.push_back(c);
}

/** Canonicalises (shape, reduced) and plans every pass; returns false when there is nothing to
 * read (some dim is 0). Pass k reads x (k == 0) or pass k-1's output; the last writes out. */
inline bool plan_reduce(const int64_t* shape, const uint8_t* reduced, int ndim, std::vector<PassCfg>& passes) {
  struct Run {
    int64_t size;
    bool red;
  };
  std::vector<Run> runs;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 0) return false;
    if (shape[d] == 1) continue;
    const bool r = reduced[d] != 0;
    if (!runs.empty() && runs.back().red == r)
      runs.back().size *= shape[d];
    else
      runs.push_back(Run{shape[d], r});
  }
  bool any = false;
  for (;;) {
    int p = -1;
    for (int i = static_cast<int>(runs.size()) - 1; i >= 0; --i)
      if (runs[i].red) {
        p = i;
        break;
      }
    if (p < 0) break;
    any = true;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < p; ++i) outer *= runs[i].size;
    for (size_t i = p + 1; i < runs.size(); ++i) inner *= runs[i].size;
    plan_problem(outer, runs[p].size, inner, passes);
    runs.erase(runs.begin() + p);
    if (p > 0 && p < static_cast<int>(runs.size()) && !runs[p - 1].red && !runs[p].red) {
      runs[p - 1].size *= runs[p].size;
      runs.erase(runs.begin() + p);
    }
  }
  if (!any) {  // nothing reduced (or only size-1 dims): out = combine(init, x) elementwise
    int64_t n = 1;
    for (const Run& r : runs) n *= r.size;
    passes.push_back(make_pass(1, 1, n, 1));
  }
  return true;
}

/** Thread (tx, ty)'s sequential partial for work item `item`; also returns the output index
 * (or -1 when this thread's column is past `inner`). */
template <int Op, class In>
PRIM_HD float pass_partial(const In* __restrict__ x, const PassCfg& c, int64_t item, int tx, int ty,
                           int64_t* out_index) {
  const int64_t tile = item % c.tiles_x;
  const int64_t r = item / c.tiles_x;
  const int64_t s = r % c.S, o = r / c.S;
  const int64_t i = tile * c.bx + tx;
  float acc = reduce_init<Op>();
  if (i >= c.inner) {
    *out_index = -1;
    return acc;
  }
  *out_index = (o * c.S + s) * c.inner + i;
  const int64_t j0 = s * c.L, j1 = j0 + c.L < c.red ? j0 + c.L : c.red;
  const In* p = x + (o * c.red + j0 + ty) * c.inner + i;
  const int64_t step = static_cast<int64_t>(c.by) * c.inner;
#if defined(__CUDA_ARCH__)
#pragma unroll 4
#endif
  for (int64_t j = j0 + ty; j < j1; j += c.by, p += step) acc = reduce_combine<Op>(acc, as_f32(*p));
  return acc;
}

/** One pass from In to Out (f32 or bf16 each: bf16 only at the ends, the input and the output). */
template <int Op, class In, class Out>
__global__ void __launch_bounds__(kBlock)
    reduce_pass_kernel(const In* __restrict__ x, Out* __restrict__ out, PassCfg c) {
  __shared__ float sm[kBlock];
  const int t = threadIdx.x;
  const int tx = t % c.bx, ty = (t / c.bx) % c.by, grp = t / (c.bx * c.by);
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * c.groups; base < c.items;
       base += static_cast<int64_t>(gridDim.x) * c.groups) {
    const int64_t item = base + grp;
    int64_t oi = -1;
    float acc = item < c.items ? pass_partial<Op, In>(x, c, item, tx, ty, &oi) : reduce_init<Op>();
    sm[t] = acc;
    __syncthreads();
    for (int s = c.by >> 1; s > 0; s >>= 1) {  // fixed tree over ty, within the group
      if (ty < s) sm[t] = reduce_combine<Op>(sm[t], sm[t + s * c.bx]);
      __syncthreads();
    }
    if (ty == 0 && oi >= 0) out[oi] = round_to<Out>(sm[t]);
    __syncthreads();  // sm is rewritten by the next item
  }
}

template <class T>
__global__ void reduce_fill_kernel(T* __restrict__ y, int64_t n, T v) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) y[i] = v;
}

/** Runs the passes: the first reads x (T), the last writes out (T), the ones between are f32. */
template <int Op, class T>
void run_passes(const T* x, T* out, const std::vector<PassCfg>& passes, cudaStream_t stream) {
  std::vector<std::unique_ptr<Scratch>> bufs;
  const float* src = nullptr;  // the previous pass's f32 output
  for (size_t k = 0; k < passes.size(); ++k) {
    const PassCfg& c = passes[k];
    const bool first = k == 0, last = k + 1 == passes.size();
    float* scratch = nullptr;
    if (!last) {
      bufs.push_back(std::make_unique<Scratch>(static_cast<size_t>(c.outer * c.S * c.inner) * sizeof(float), stream));
      scratch = bufs.back()->as<float>();
    }
    if (first && last)
      reduce_pass_kernel<Op, T, T><<<c.grid, kBlock, 0, stream>>>(x, out, c);
    else if (first)
      reduce_pass_kernel<Op, T, float><<<c.grid, kBlock, 0, stream>>>(x, scratch, c);
    else if (last)
      reduce_pass_kernel<Op, float, T><<<c.grid, kBlock, 0, stream>>>(src, out, c);
    else
      reduce_pass_kernel<Op, float, float><<<c.grid, kBlock, 0, stream>>>(src, scratch, c);
    check_launch("reduce", stream);
    src = scratch;
  }
}

template <class T>
void reduce_launch(int op, const T* x, const int64_t* shape, const uint8_t* reduced, int ndim, T* out, void* stream_) {
  CRATE_CUDA_REQUIRE(op >= kSum && op <= kMin, "reduce", "unknown op " + std::to_string(op) + " (0 sum, 1 max, 2 min)");
  const int64_t total = checked_numel("reduce", shape, ndim);
  CRATE_CUDA_REQUIRE(ndim == 0 || reduced != nullptr, "reduce", "reduced is NULL");
  int64_t n_out = 1;
  for (int d = 0; d < ndim; ++d)
    if (!reduced[d]) n_out *= shape[d];
  if (n_out == 0) return;
  require_ptr("reduce", out, "out");
  cudaStream_t stream = resolve_stream(stream_);
  std::vector<PassCfg> passes;
  if (total == 0 || !plan_reduce(shape, reduced, ndim, passes)) {  // empty reduction: the identity
    const float init = op == kSum ? 0.f : op == kMax ? -INFINITY : INFINITY;
    reduce_fill_kernel<T><<<grid_for(n_out, kBlock), kBlock, 0, stream>>>(out, n_out, round_to<T>(init));
    check_launch("reduce", stream);
    return;
  }
  require_ptr("reduce", x, "x");
  switch (op) {
    case kSum:
      run_passes<kSum, T>(x, out, passes, stream);
      break;
    case kMax:
      run_passes<kMax, T>(x, out, passes, stream);
      break;
    default:
      run_passes<kMin, T>(x, out, passes, stream);
      break;
  }
}

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;
using namespace crate::cuda::prim;

CRATE_API crate_status crate_cuda_reduce_f32(int op, const float* x, const int64_t* shape, const uint8_t* reduced,
                                             int ndim, float* out, void* stream) {
  return guard("crate_cuda_reduce_f32", [&] { reduce_launch<float>(op, x, shape, reduced, ndim, out, stream); });
}

CRATE_API crate_status crate_cuda_reduce_bf16(int op, const uint16_t* x, const int64_t* shape, const uint8_t* reduced,
                                              int ndim, uint16_t* out, void* stream) {
  return guard("crate_cuda_reduce_bf16", [&] {
    reduce_launch<Bf16>(op, reinterpret_cast<const Bf16*>(x), shape, reduced, ndim, reinterpret_cast<Bf16*>(out),
                        stream);
  });
}
