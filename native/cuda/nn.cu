// nn.cu: fused row kernels on the GPU: LayerNorm, softmax / log-softmax and cross-entropy (label
// smoothing, ignore_index), forward and backward, with the math of native/cpu/nn.cc:
//
// - One warp per row (8 rows per 256-thread CTA, grid-stride over rows); lanes stride the columns
//   (float4 when the row pointers are 16-byte aligned and cols % 4 == 0) and reduce with
//   butterfly shuffles, so every lane holds the bitwise same row statistic.
// - LayerNorm: two-pass mean / variance accumulated in f32 (as the CPU: per-lane partial sums in
//   T), rstd = 1/sqrt(double(var) + eps) rounded to f32. Backward: dx per row as the CPU; dw/db
//   by a deterministic two-stage reduction: stage 1 gives each CTA 32 columns x a fixed chunk of
//   rows (f32 partials, like the CPU's per-task partials) into scratch, stage 2 sums a column's
//   chunk partials in a fixed order in double and adds (+=) the result into dw / db. Same shape ->
//   same bits, independent of the scheduling.
// - Softmax / cross-entropy: row max in f32 (NaN never wins, as `x > mx ? x : mx`), sums of
//   exp(x - max) in double as the CPU; the exponentials themselves use expf on f32 arguments
//   (the CPU calls exp in double): results agree to a few f32 ulp.
// - Cross-entropy forward: `counted` (device int64) = number of rows whose target != ignore_index
//   (per-CTA counts, one atomicAdd each; integer, so deterministic). A target out of [0, classes)
//   that is not ignore_index is an error on the CPU; here it cannot be reported without a host
//   round trip, so that row's loss is NaN (and it is counted), which poisons the mean loss.
//   The backward, like the CPU, does not check targets (an out-of-range target has no one-hot).
// - Storage T = float or bf16 (the *_bf16 entries): bf16 tensors are loaded as f32 and every
//   stored result is rounded once (nearest even); all arithmetic is the f32 kernel's. The saved
//   statistics (mean, rstd, lse), loss_row and g_row are f32 for both. LayerNorm's float4 path
//   is f32 only; dw / db of bf16 are updated as round(dw + f32 sum).
#include <cmath>
#include <memory>
#include <string>

#include "prim_common.cuh"

namespace crate::cuda {
namespace {

using prim::as_f32;
using prim::Bf16;
using prim::round_to;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float warp_sum_f(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// max that ignores NaN in the second operand, as the CPU's `x > mx ? x : mx`.
__device__ __forceinline__ float max_keep(float mx, float x) { return x > mx ? x : mx; }
__device__ __forceinline__ float warp_max_f(float v) {
  for (int o = 16; o > 0; o >>= 1) v = max_keep(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

using prim::aligned16;

unsigned rows_grid(int64_t rows) {
  const int64_t g = (rows + kWarps - 1) / kWarps;
  return static_cast<unsigned>(g < 1 ? 1 : (g < (1LL << 20) ? g : (1LL << 20)));
}

#define ROW_LOOP(rows)                                                  \
  const int lane = threadIdx.x & 31;                                    \
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * kWarps; \
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < (rows); r += warp_stride)

// ============================================================================ LayerNorm

template <class T>
__global__ void __launch_bounds__(kThreads)
    layernorm_fwd_kernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b, T* __restrict__ y,
                         float* __restrict__ mean, float* __restrict__ rstd, int64_t rows, int64_t cols, double eps,
                         int vec) {
  ROW_LOOP(rows) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    float m = 0.f;
    if (vec) {
      const float4* x4 = reinterpret_cast<const float4*>(xr);
      for (int64_t j = lane; j < cols / 4; j += 32) {
        const float4 v = x4[j];
        m += (v.x + v.y) + (v.z + v.w);
      }
    } else {
      for (int64_t j = lane; j < cols; j += 32) m += as_f32(xr[j]);
    }
    m = warp_sum_f(m) / static_cast<float>(cols);
    float v = 0.f;
    if (vec) {
      const float4* x4 = reinterpret_cast<const float4*>(xr);
      for (int64_t j = lane; j < cols / 4; j += 32) {
        const float4 t = x4[j];
        const float a = t.x - m, bb = t.y - m, c = t.z - m, d = t.w - m;
        v += (a * a + bb * bb) + (c * c + d * d);
      }
    } else {
      for (int64_t j = lane; j < cols; j += 32) {
        const float d = as_f32(xr[j]) - m;
        v += d * d;
      }
    }
    v = warp_sum_f(v) / static_cast<float>(cols);
    const float rs = static_cast<float>(1.0 / sqrt(static_cast<double>(v) + eps));
    if (lane == 0) {
      mean[r] = m;
      rstd[r] = rs;
    }
    if (vec) {
      const float4* x4 = reinterpret_cast<const float4*>(xr);
      float4* y4 = reinterpret_cast<float4*>(yr);
      const float4* w4 = reinterpret_cast<const float4*>(w);
      const float4* b4 = reinterpret_cast<const float4*>(b);
      for (int64_t j = lane; j < cols / 4; j += 32) {
        const float4 t = x4[j];
        float4 o;
        o.x = (t.x - m) * rs;
        o.y = (t.y - m) * rs;
        o.z = (t.z - m) * rs;
        o.w = (t.w - m) * rs;
        if (w) {
          const float4 ww = w4[j];
          o.x *= ww.x;
          o.y *= ww.y;
          o.z *= ww.z;
          o.w *= ww.w;
        }
        if (b) {
          const float4 bv = b4[j];
          o.x += bv.x;
          o.y += bv.y;
          o.z += bv.z;
          o.w += bv.w;
        }
        y4[j] = o;
      }
    } else {
      for (int64_t j = lane; j < cols; j += 32) {
        float o = (as_f32(xr[j]) - m) * rs;
        if (w) o *= as_f32(w[j]);
        if (b) o += as_f32(b[j]);
        yr[j] = round_to<T>(o);
      }
    }
  }
}

// dx = rstd (g w - mean(g w) - xhat mean(g w xhat)), w = 1 when NULL.
template <class T>
__global__ void __launch_bounds__(kThreads)
    layernorm_bwd_dx_kernel(const T* __restrict__ x, const T* __restrict__ w, const float* __restrict__ mean,
                            const float* __restrict__ rstd, const T* __restrict__ g, T* __restrict__ dx, int64_t rows,
                            int64_t cols) {
  ROW_LOOP(rows) {
    const T* xr = x + r * cols;
    const T* gr = g + r * cols;
    T* dr = dx + r * cols;
    const float mt = mean[r], rt = rstd[r];
    float s1 = 0.f, s2 = 0.f;
    for (int64_t j = lane; j < cols; j += 32) {
      const float gw = w ? as_f32(gr[j]) * as_f32(w[j]) : as_f32(gr[j]);
      s1 += gw;
      s2 += gw * ((as_f32(xr[j]) - mt) * rt);
    }
    s1 = warp_sum_f(s1);
    s2 = warp_sum_f(s2);
    const float s1t = s1 / static_cast<float>(cols), s2t = s2 / static_cast<float>(cols);
    for (int64_t j = lane; j < cols; j += 32) {
      const float xh = (as_f32(xr[j]) - mt) * rt;
      const float gw = w ? as_f32(gr[j]) * as_f32(w[j]) : as_f32(gr[j]);
      dr[j] = round_to<T>(rt * (gw - s1t - xh * s2t));
    }
  }
}

// Stage 1: part_w[chunk][j] = sum_{rows in chunk} g xhat, part_b[chunk][j] = sum g (f32).
// Block (32, 8): 32 columns x 8 row slices, combined in a fixed order.
template <class T>
__global__ void __launch_bounds__(kThreads)
    layernorm_bwd_wb_partial_kernel(const T* __restrict__ x, const float* __restrict__ mean,
                                    const float* __restrict__ rstd, const T* __restrict__ g, float* __restrict__ part_w,
                                    float* __restrict__ part_b, int64_t rows, int64_t cols, int64_t chunk_rows,
                                    int64_t nchunk) {
  __shared__ float rw[8][32];
  __shared__ float rb[8][32];
  for (int64_t cb = blockIdx.x; cb * 32 < cols; cb += gridDim.x) {
    for (int64_t ch = blockIdx.y; ch < nchunk; ch += gridDim.y) {
      const int64_t j = cb * 32 + threadIdx.x;
      const int64_t r0 = ch * chunk_rows, r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
      float sw = 0.f, sb = 0.f;
      if (j < cols) {
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
          const float gv = as_f32(g[r * cols + j]);
          const float xh = (as_f32(x[r * cols + j]) - mean[r]) * rstd[r];
          sw += gv * xh;
          sb += gv;
        }
      }
      rw[threadIdx.y][threadIdx.x] = sw;
      rb[threadIdx.y][threadIdx.x] = sb;
      __syncthreads();
      if (threadIdx.y == 0 && j < cols) {
        float tw = 0.f, tb = 0.f;
        for (int yy = 0; yy < 8; ++yy) {
          tw += rw[yy][threadIdx.x];
          tb += rb[yy][threadIdx.x];
        }
        part_w[ch * cols + j] = tw;
        part_b[ch * cols + j] = tb;
      }
      __syncthreads();
    }
  }
}

// Stage 2: dw[j] += sum_chunk part_w (double, in chunk order); same for db.
template <class T>
__global__ void __launch_bounds__(kThreads)
    layernorm_bwd_wb_final_kernel(const float* __restrict__ part_w, const float* __restrict__ part_b,
                                  T* __restrict__ dw, T* __restrict__ db, int64_t cols, int64_t nchunk) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double sw = 0.0, sb = 0.0;
    for (int64_t c = 0; c < nchunk; ++c) {
      sw += static_cast<double>(part_w[c * cols + j]);
      sb += static_cast<double>(part_b[c * cols + j]);
    }
    // bf16: the accumulated value and the sum added in f32, rounded once
    if (dw) dw[j] = round_to<T>(as_f32(dw[j]) + static_cast<float>(sw));
    if (db) db[j] = round_to<T>(as_f32(db[j]) + static_cast<float>(sb));
  }
}

// ============================================================================ softmax

template <class T>
__global__ void __launch_bounds__(kThreads)
    softmax_fwd_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t cols, int log_) {
  ROW_LOOP(rows) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    float mx = -INFINITY;
    for (int64_t j = lane; j < cols; j += 32) mx = max_keep(mx, as_f32(xr[j]));
    mx = warp_max_f(mx);
    if (mx == -INFINITY) mx = 0.f;  // all -inf row: avoid inf - inf
    double sum = 0.0;
    for (int64_t j = lane; j < cols; j += 32) sum += static_cast<double>(expf(as_f32(xr[j]) - mx));
    sum = warp_sum_d(sum);
    if (log_) {
      const float lse = mx + static_cast<float>(log(sum));
      for (int64_t j = lane; j < cols; j += 32) yr[j] = round_to<T>(as_f32(xr[j]) - lse);
    } else {
      const double inv = 1.0 / sum;
      for (int64_t j = lane; j < cols; j += 32)
        yr[j] = round_to<T>(static_cast<float>(static_cast<double>(expf(as_f32(xr[j]) - mx)) * inv));
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    softmax_bwd_kernel(const T* __restrict__ y, const T* __restrict__ g, T* __restrict__ dx, int64_t rows, int64_t cols,
                       int log_) {
  ROW_LOOP(rows) {
    const T* yr = y + r * cols;
    const T* gr = g + r * cols;
    T* dr = dx + r * cols;
    double s = 0.0;
    if (log_) {
      for (int64_t j = lane; j < cols; j += 32) s += static_cast<double>(as_f32(gr[j]));
      s = warp_sum_d(s);
      const float sf = static_cast<float>(s);
      for (int64_t j = lane; j < cols; j += 32) dr[j] = round_to<T>(as_f32(gr[j]) - expf(as_f32(yr[j])) * sf);
    } else {
      for (int64_t j = lane; j < cols; j += 32)
        s += static_cast<double>(as_f32(gr[j])) * static_cast<double>(as_f32(yr[j]));
      s = warp_sum_d(s);
      const float sf = static_cast<float>(s);
      for (int64_t j = lane; j < cols; j += 32) dr[j] = round_to<T>(as_f32(yr[j]) * (as_f32(gr[j]) - sf));
    }
  }
}

// ============================================================================ cross-entropy

template <class T>
__global__ void __launch_bounds__(kThreads)
    ce_fwd_kernel(const T* __restrict__ logits, const int32_t* __restrict__ target, float* __restrict__ loss_row,
                  float* __restrict__ lse, unsigned long long* __restrict__ counted, int64_t rows, int64_t classes,
                  double smoothing, int64_t ignore_index) {
  __shared__ unsigned long long cnt[kWarps];
  unsigned long long mine = 0;  // rows counted by this warp (lane 0)
  {
    ROW_LOOP(rows) {
      const T* xr = logits + r * classes;
      float mx = -INFINITY;
      for (int64_t j = lane; j < classes; j += 32) mx = max_keep(mx, as_f32(xr[j]));
      mx = warp_max_f(mx);
      double s = 0.0, sum_x = 0.0;
      for (int64_t j = lane; j < classes; j += 32) {
        s += static_cast<double>(expf(as_f32(xr[j]) - mx));
        sum_x += static_cast<double>(as_f32(xr[j]));
      }
      s = warp_sum_d(s);
      sum_x = warp_sum_d(sum_x);
      if (lane == 0) {
        const double l = static_cast<double>(mx) + log(s);
        lse[r] = static_cast<float>(l);
        const int64_t t = target[r];
        if (t == ignore_index) {
          loss_row[r] = 0.f;
        } else {
          ++mine;
          if (t < 0 || t >= classes) {
            loss_row[r] = NAN;  // the CPU raises "target out of range" here
          } else {
            const double nll = l - static_cast<double>(as_f32(xr[t]));
            const double smooth = l - sum_x / static_cast<double>(classes);
            loss_row[r] = static_cast<float>((1.0 - smoothing) * nll + smoothing * smooth);
          }
        }
      }
    }
  }
  if ((threadIdx.x & 31) == 0) cnt[threadIdx.x >> 5] = mine;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long tot = 0;
    for (int w = 0; w < kWarps; ++w) tot += cnt[w];
    if (tot) atomicAdd(counted, tot);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    ce_bwd_kernel(const T* __restrict__ logits, const int32_t* __restrict__ target, const float* __restrict__ lse,
                  const float* __restrict__ g_row, T* __restrict__ dlogits, int64_t rows, int64_t classes,
                  double smoothing, int64_t ignore_index) {
  ROW_LOOP(rows) {
    const T* xr = logits + r * classes;
    T* dr = dlogits + r * classes;
    const int64_t t = target[r];
    if (t == ignore_index) {
      for (int64_t j = lane; j < classes; j += 32) dr[j] = round_to<T>(0.f);
      continue;
    }
    const double gr = static_cast<double>(g_row[r]), l = static_cast<double>(lse[r]);
    const double off = smoothing / static_cast<double>(classes);
    for (int64_t j = lane; j < classes; j += 32) {
      const double p = static_cast<double>(expf(static_cast<float>(static_cast<double>(as_f32(xr[j])) - l)));
      dr[j] = round_to<T>(static_cast<float>(gr * (p - off - (j == t ? 1.0 - smoothing : 0.0))));
    }
  }
}

void check_rc(const char* fn, int64_t rows, int64_t cols, const char* cname) {
  CRATE_CUDA_REQUIRE(rows >= 0 && cols >= 0, fn,
                     "bad sizes (rows=" + std::to_string(rows) + ", " + cname + "=" + std::to_string(cols) + ")");
  CRATE_CUDA_REQUIRE((double)rows * (double)cols < 9.0e18, fn, "size overflow");
}

// Host launchers, T = float or Bf16 (x, weight, bias, y, grad, dx, dweight, dbias, logits,
// dlogits); statistics (mean, rstd, lse), loss_row and g_row are f32 for both.
template <class T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, float* mean, float* rstd, int64_t rows, int64_t cols,
                       double eps, void* stream) {
  const char* fn = "layernorm_forward";
  check_rc(fn, rows, cols, "cols");
  if (rows == 0 || cols == 0) return;
  CRATE_CUDA_REQUIRE(x && y && mean && rstd, fn, "x, y, mean and rstd must not be NULL");
  cudaStream_t st = resolve_stream(stream);
  const int vec = std::is_same_v<T, float> && cols % 4 == 0 && aligned16(x) && aligned16(y) && (!w || aligned16(w)) &&
                  (!b || aligned16(b));
  layernorm_fwd_kernel<T><<<rows_grid(rows), kThreads, 0, st>>>(x, w, b, y, mean, rstd, rows, cols, eps, vec);
  check_launch("layernorm_fwd_kernel", st);
}

template <class T>
void layernorm_backward(const T* x, const T* w, const float* mean, const float* rstd, const T* g, T* dx, T* dw, T* db,
                        int64_t rows, int64_t cols, void* stream) {
  const char* fn = "layernorm_backward";
  check_rc(fn, rows, cols, "cols");
  if (rows == 0 || cols == 0) return;
  CRATE_CUDA_REQUIRE(x && mean && rstd && g && dx, fn, "x, mean, rstd, grad and dx must not be NULL");
  cudaStream_t st = resolve_stream(stream);
  layernorm_bwd_dx_kernel<T><<<rows_grid(rows), kThreads, 0, st>>>(x, w, mean, rstd, g, dx, rows, cols);
  check_launch("layernorm_bwd_dx_kernel", st);
  if (!dw && !db) return;
  // Fixed chunking (a function of rows only): at most 1024 chunks of >= 64 rows.
  int64_t chunk_rows = (rows + 1023) / 1024;
  if (chunk_rows < 64) chunk_rows = 64;
  const int64_t nchunk = (rows + chunk_rows - 1) / chunk_rows;
  Scratch part(static_cast<size_t>(2 * nchunk * cols) * sizeof(float), st);
  float* pw = part.as<float>();
  float* pb = pw + nchunk * cols;
  const int64_t cb = (cols + 31) / 32;
  const dim3 grid(static_cast<unsigned>(cb < (1LL << 30) ? cb : (1LL << 30)),
                  static_cast<unsigned>(nchunk < 65535 ? nchunk : 65535));
  layernorm_bwd_wb_partial_kernel<T>
      <<<grid, dim3(32, 8), 0, st>>>(x, mean, rstd, g, pw, pb, rows, cols, chunk_rows, nchunk);
  check_launch("layernorm_bwd_wb_partial_kernel", st);
  layernorm_bwd_wb_final_kernel<T><<<grid_for(cols, kThreads), kThreads, 0, st>>>(pw, pb, dw, db, cols, nchunk);
  check_launch("layernorm_bwd_wb_final_kernel", st);
}

template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols, int log, void* stream) {
  const char* fn = "softmax_forward";
  check_rc(fn, rows, cols, "cols");
  if (rows == 0 || cols == 0) return;
  CRATE_CUDA_REQUIRE(x && y, fn, "x and y must not be NULL");
  cudaStream_t st = resolve_stream(stream);
  softmax_fwd_kernel<T><<<rows_grid(rows), kThreads, 0, st>>>(x, y, rows, cols, log);
  check_launch("softmax_fwd_kernel", st);
}

template <class T>
void softmax_backward(const T* y, const T* g, T* dx, int64_t rows, int64_t cols, int log, void* stream) {
  const char* fn = "softmax_backward";
  check_rc(fn, rows, cols, "cols");
  if (rows == 0 || cols == 0) return;
  CRATE_CUDA_REQUIRE(y && g && dx, fn, "y, grad and dx must not be NULL");
  cudaStream_t st = resolve_stream(stream);
  softmax_bwd_kernel<T><<<rows_grid(rows), kThreads, 0, st>>>(y, g, dx, rows, cols, log);
  check_launch("softmax_bwd_kernel", st);
}

template <class T>
void cross_entropy_forward(const T* logits, const int32_t* target, float* loss_row, float* lse, int64_t* counted,
                           int64_t rows, int64_t classes, double smoothing, int64_t ignore_index, void* stream) {
  const char* fn = "cross_entropy_forward";
  check_rc(fn, rows, classes, "classes");
  CRATE_CUDA_REQUIRE(classes >= 1, fn, "classes must be >= 1, got " + std::to_string(classes));
  CRATE_CUDA_REQUIRE(counted, fn, "counted must not be NULL");
  cudaStream_t st = resolve_stream(stream);
  check(cudaMemsetAsync(counted, 0, sizeof(int64_t), st), "cross_entropy_forward: zero counted");
  if (rows == 0) return;
  CRATE_CUDA_REQUIRE(logits && target && loss_row && lse, fn, "logits, target, loss_row and lse must not be NULL");
  ce_fwd_kernel<T><<<rows_grid(rows), kThreads, 0, st>>>(logits, target, loss_row, lse,
                                                         reinterpret_cast<unsigned long long*>(counted), rows, classes,
                                                         smoothing, ignore_index);
  check_launch("ce_fwd_kernel", st);
}

template <class T>
void cross_entropy_backward(const T* logits, const int32_t* target, const float* lse, const float* g_row, T* dlogits,
                            int64_t rows, int64_t classes, double smoothing, int64_t ignore_index, void* stream) {
  const char* fn = "cross_entropy_backward";
  check_rc(fn, rows, classes, "classes");
  CRATE_CUDA_REQUIRE(classes >= 1, fn, "classes must be >= 1, got " + std::to_string(classes));
  if (rows == 0) return;
  CRATE_CUDA_REQUIRE(logits && target && lse && g_row && dlogits, fn,
                     "logits, target, lse, g_row and dlogits must not be NULL");
  cudaStream_t st = resolve_stream(stream);
  ce_bwd_kernel<T><<<rows_grid(rows), kThreads, 0, st>>>(logits, target, lse, g_row, dlogits, rows, classes, smoothing,
                                                         ignore_index);
  check_launch("ce_bwd_kernel", st);
}

inline const Bf16* bf(const uint16_t* p) { return reinterpret_cast<const Bf16*>(p); }
inline Bf16* bf(uint16_t* p) { return reinterpret_cast<Bf16*>(p); }

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;

extern "C" {

CRATE_API crate_status crate_cuda_layernorm_forward_f32(const float* x, const float* w, const float* b, float* y,
                                                        float* mean, float* rstd, int64_t rows, int64_t cols,
                                                        double eps, void* stream) {
  return guard("crate_cuda_layernorm_forward_f32",
               [&] { layernorm_forward<float>(x, w, b, y, mean, rstd, rows, cols, eps, stream); });
}

CRATE_API crate_status crate_cuda_layernorm_forward_bf16(const uint16_t* x, const uint16_t* w, const uint16_t* b,
                                                         uint16_t* y, float* mean, float* rstd, int64_t rows,
                                                         int64_t cols, double eps, void* stream) {
  return guard("crate_cuda_layernorm_forward_bf16",
               [&] { layernorm_forward<Bf16>(bf(x), bf(w), bf(b), bf(y), mean, rstd, rows, cols, eps, stream); });
}

CRATE_API crate_status crate_cuda_layernorm_backward_f32(const float* x, const float* w, const float* mean,
                                                         const float* rstd, const float* g, float* dx, float* dw,
                                                         float* db, int64_t rows, int64_t cols, void* stream) {
  return guard("crate_cuda_layernorm_backward_f32",
               [&] { layernorm_backward<float>(x, w, mean, rstd, g, dx, dw, db, rows, cols, stream); });
}

CRATE_API crate_status crate_cuda_layernorm_backward_bf16(const uint16_t* x, const uint16_t* w, const float* mean,
                                                          const float* rstd, const uint16_t* g, uint16_t* dx,
                                                          uint16_t* dw, uint16_t* db, int64_t rows, int64_t cols,
                                                          void* stream) {
  return guard("crate_cuda_layernorm_backward_bf16", [&] {
    layernorm_backward<Bf16>(bf(x), bf(w), mean, rstd, bf(g), bf(dx), bf(dw), bf(db), rows, cols, stream);
  });
}

CRATE_API crate_status crate_cuda_softmax_forward_f32(const float* x, float* y, int64_t rows, int64_t cols, int log,
                                                      void* stream) {
  return guard("crate_cuda_softmax_forward_f32", [&] { softmax_forward<float>(x, y, rows, cols, log, stream); });
}

CRATE_API crate_status crate_cuda_softmax_forward_bf16(const uint16_t* x, uint16_t* y, int64_t rows, int64_t cols,
                                                       int log, void* stream) {
  return guard("crate_cuda_softmax_forward_bf16",
               [&] { softmax_forward<Bf16>(bf(x), bf(y), rows, cols, log, stream); });
}

CRATE_API crate_status crate_cuda_softmax_backward_f32(const float* y, const float* g, float* dx, int64_t rows,
                                                       int64_t cols, int log, void* stream) {
  return guard("crate_cuda_softmax_backward_f32", [&] { softmax_backward<float>(y, g, dx, rows, cols, log, stream); });
}

CRATE_API crate_status crate_cuda_softmax_backward_bf16(const uint16_t* y, const uint16_t* g, uint16_t* dx,
                                                        int64_t rows, int64_t cols, int log, void* stream) {
  return guard("crate_cuda_softmax_backward_bf16",
               [&] { softmax_backward<Bf16>(bf(y), bf(g), bf(dx), rows, cols, log, stream); });
}

CRATE_API crate_status crate_cuda_cross_entropy_forward_f32(const float* logits, const int32_t* target, float* loss_row,
                                                            float* lse, int64_t* counted, int64_t rows, int64_t classes,
                                                            double smoothing, int64_t ignore_index, void* stream) {
  return guard("crate_cuda_cross_entropy_forward_f32", [&] {
    cross_entropy_forward<float>(logits, target, loss_row, lse, counted, rows, classes, smoothing, ignore_index,
                                 stream);
  });
}

CRATE_API crate_status crate_cuda_cross_entropy_forward_bf16(const uint16_t* logits, const int32_t* target,
                                                             float* loss_row, float* lse, int64_t* counted,
                                                             int64_t rows, int64_t classes, double smoothing,
                                                             int64_t ignore_index, void* stream) {
  return guard("crate_cuda_cross_entropy_forward_bf16", [&] {
    cross_entropy_forward<Bf16>(bf(logits), target, loss_row, lse, counted, rows, classes, smoothing, ignore_index,
                                stream);
  });
}

CRATE_API crate_status crate_cuda_cross_entropy_backward_f32(const float* logits, const int32_t* target,
                                                             const float* lse, const float* g_row, float* dlogits,
                                                             int64_t rows, int64_t classes, double smoothing,
                                                             int64_t ignore_index, void* stream) {
  return guard("crate_cuda_cross_entropy_backward_f32", [&] {
    cross_entropy_backward<float>(logits, target, lse, g_row, dlogits, rows, classes, smoothing, ignore_index, stream);
  });
}

CRATE_API crate_status crate_cuda_cross_entropy_backward_bf16(const uint16_t* logits, const int32_t* target,
                                                              const float* lse, const float* g_row, uint16_t* dlogits,
                                                              int64_t rows, int64_t classes, double smoothing,
                                                              int64_t ignore_index, void* stream) {
  return guard("crate_cuda_cross_entropy_backward_bf16", [&] {
    cross_entropy_backward<Bf16>(bf(logits), target, lse, g_row, bf(dlogits), rows, classes, smoothing, ignore_index,
                                 stream);
  });
}

}  // extern "C"
