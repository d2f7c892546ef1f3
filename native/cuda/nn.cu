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
#include <cmath>
#include <memory>
#include <string>

#include "common.cuh"

namespace crate::cuda {
namespace {

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

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

unsigned rows_grid(int64_t rows) {
  const int64_t g = (rows + kWarps - 1) / kWarps;
  return static_cast<unsigned>(g < 1 ? 1 : (g < (1LL << 20) ? g : (1LL << 20)));
}

#define ROW_LOOP(rows)                                                  \
  const int lane = threadIdx.x & 31;                                    \
  const int64_t warp_stride = static_cast<int64_t>(gridDim.x) * kWarps; \
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); r < (rows); r += warp_stride)

// ============================================================================ LayerNorm

__global__ void __launch_bounds__(kThreads)
    layernorm_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                         float* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd, int64_t rows,
                         int64_t cols, double eps, int vec) {
  ROW_LOOP(rows) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float m = 0.f;
    if (vec) {
      const float4* x4 = reinterpret_cast<const float4*>(xr);
      for (int64_t j = lane; j < cols / 4; j += 32) {
        const float4 v = x4[j];
        m += (v.x + v.y) + (v.z + v.w);
      }
    } else {
      for (int64_t j = lane; j < cols; j += 32) m += xr[j];
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
        const float d = xr[j] - m;
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
        float o = (xr[j] - m) * rs;
        if (w) o *= w[j];
        if (b) o += b[j];
        yr[j] = o;
      }
    }
  }
}

// dx = rstd (g w - mean(g w) - xhat mean(g w xhat)), w = 1 when NULL.
__global__ void __launch_bounds__(kThreads)
    layernorm_bwd_dx_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ mean,
                            const float* __restrict__ rstd, const float* __restrict__ g, float* __restrict__ dx,
                            int64_t rows, int64_t cols) {
  ROW_LOOP(rows) {
    const float* xr = x + r * cols;
    const float* gr = g + r * cols;
    float* dr = dx + r * cols;
    const float mt = mean[r], rt = rstd[r];
    float s1 = 0.f, s2 = 0.f;
    for (int64_t j = lane; j < cols; j += 32) {
      const float gw = w ? gr[j] * w[j] : gr[j];
      s1 += gw;
      s2 += gw * ((xr[j] - mt) * rt);
    }
    s1 = warp_sum_f(s1);
    s2 = warp_sum_f(s2);
    const float s1t = s1 / static_cast<float>(cols), s2t = s2 / static_cast<float>(cols);
    for (int64_t j = lane; j < cols; j += 32) {
      const float xh = (xr[j] - mt) * rt;
      const float gw = w ? gr[j] * w[j] : gr[j];
      dr[j] = rt * (gw - s1t - xh * s2t);
    }
  }
}

// Stage 1: part_w[chunk][j] = sum_{rows in chunk} g xhat, part_b[chunk][j] = sum g (f32).
// Block (32, 8): 32 columns x 8 row slices, combined in a fixed order.
__global__ void __launch_bounds__(kThreads)
    layernorm_bwd_wb_partial_kernel(const float* __restrict__ x, const float* __restrict__ mean,
                                    const float* __restrict__ rstd, const float* __restrict__ g,
                                    float* __restrict__ part_w, float* __restrict__ part_b, int64_t rows, int64_t cols,
                                    int64_t chunk_rows, int64_t nchunk) {
  __shared__ float rw[8][32];
  __shared__ float rb[8][32];
  for (int64_t cb = blockIdx.x; cb * 32 < cols; cb += gridDim.x) {
    for (int64_t ch = blockIdx.y; ch < nchunk; ch += gridDim.y) {
      const int64_t j = cb * 32 + threadIdx.x;
      const int64_t r0 = ch * chunk_rows, r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
      float sw = 0.f, sb = 0.f;
      if (j < cols) {
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
          const float gv = g[r * cols + j];
          const float xh = (x[r * cols + j] - mean[r]) * rstd[r];
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
__global__ void __launch_bounds__(kThreads)
    layernorm_bwd_wb_final_kernel(const float* __restrict__ part_w, const float* __restrict__ part_b,
                                  float* __restrict__ dw, float* __restrict__ db, int64_t cols, int64_t nchunk) {
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double sw = 0.0, sb = 0.0;
    for (int64_t c = 0; c < nchunk; ++c) {
      sw += static_cast<double>(part_w[c * cols + j]);
      sb += static_cast<double>(part_b[c * cols + j]);
    }
    if (dw) dw[j] += static_cast<float>(sw);
    if (db) db[j] += static_cast<float>(sb);
  }
}

// ============================================================================ softmax

__global__ void __launch_bounds__(kThreads)
    softmax_fwd_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t cols, int log_) {
  ROW_LOOP(rows) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    float mx = -INFINITY;
    for (int64_t j = lane; j < cols; j += 32) mx = max_keep(mx, xr[j]);
    mx = warp_max_f(mx);
    if (mx == -INFINITY) mx = 0.f;  // all -inf row: avoid inf - inf
    double sum = 0.0;
    for (int64_t j = lane; j < cols; j += 32) sum += static_cast<double>(expf(xr[j] - mx));
    sum = warp_sum_d(sum);
    if (log_) {
      const float lse = mx + static_cast<float>(log(sum));
      for (int64_t j = lane; j < cols; j += 32) yr[j] = xr[j] - lse;
    } else {
      const double inv = 1.0 / sum;
      for (int64_t j = lane; j < cols; j += 32) yr[j] = static_cast<float>(static_cast<double>(expf(xr[j] - mx)) * inv);
    }
  }
}

__global__ void __launch_bounds__(kThreads)
    softmax_bwd_kernel(const float* __restrict__ y, const float* __restrict__ g, float* __restrict__ dx, int64_t rows,
                       int64_t cols, int log_) {
  ROW_LOOP(rows) {
    const float* yr = y + r * cols;
    const float* gr = g + r * cols;
    float* dr = dx + r * cols;
    double s = 0.0;
    if (log_) {
      for (int64_t j = lane; j < cols; j += 32) s += static_cast<double>(gr[j]);
      s = warp_sum_d(s);
      const float sf = static_cast<float>(s);
      for (int64_t j = lane; j < cols; j += 32) dr[j] = gr[j] - expf(yr[j]) * sf;
    } else {
      for (int64_t j = lane; j < cols; j += 32) s += static_cast<double>(gr[j]) * static_cast<double>(yr[j]);
      s = warp_sum_d(s);
      const float sf = static_cast<float>(s);
      for (int64_t j = lane; j < cols; j += 32) dr[j] = yr[j] * (gr[j] - sf);
    }
  }
}

// ============================================================================ cross-entropy

__global__ void __launch_bounds__(kThreads)
    ce_fwd_kernel(const float* __restrict__ logits, const int32_t* __restrict__ target, float* __restrict__ loss_row,
                  float* __restrict__ lse, unsigned long long* __restrict__ counted, int64_t rows, int64_t classes,
                  double smoothing, int64_t ignore_index) {
  __shared__ unsigned long long cnt[kWarps];
  unsigned long long mine = 0;  // rows counted by this warp (lane 0)
  {
    ROW_LOOP(rows) {
      const float* xr = logits + r * classes;
      float mx = -INFINITY;
      for (int64_t j = lane; j < classes; j += 32) mx = max_keep(mx, xr[j]);
      mx = warp_max_f(mx);
      double s = 0.0, sum_x = 0.0;
      for (int64_t j = lane; j < classes; j += 32) {
        s += static_cast<double>(expf(xr[j] - mx));
        sum_x += static_cast<double>(xr[j]);
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
            const double nll = l - static_cast<double>(xr[t]);
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

__global__ void __launch_bounds__(kThreads)
    ce_bwd_kernel(const float* __restrict__ logits, const int32_t* __restrict__ target, const float* __restrict__ lse,
                  const float* __restrict__ g_row, float* __restrict__ dlogits, int64_t rows, int64_t classes,
                  double smoothing, int64_t ignore_index) {
  ROW_LOOP(rows) {
    const float* xr = logits + r * classes;
    float* dr = dlogits + r * classes;
    const int64_t t = target[r];
    if (t == ignore_index) {
      for (int64_t j = lane; j < classes; j += 32) dr[j] = 0.f;
      continue;
    }
    const double gr = static_cast<double>(g_row[r]), l = static_cast<double>(lse[r]);
    const double off = smoothing / static_cast<double>(classes);
    for (int64_t j = lane; j < classes; j += 32) {
      const double p = static_cast<double>(expf(static_cast<float>(static_cast<double>(xr[j]) - l)));
      dr[j] = static_cast<float>(gr * (p - off - (j == t ? 1.0 - smoothing : 0.0)));
    }
  }
}

void check_rc(const char* fn, int64_t rows, int64_t cols, const char* cname) {
  CRATE_CUDA_REQUIRE(rows >= 0 && cols >= 0, fn,
                     "bad sizes (rows=" + std::to_string(rows) + ", " + cname + "=" + std::to_string(cols) + ")");
  CRATE_CUDA_REQUIRE((double)rows * (double)cols < 9.0e18, fn, "size overflow");
}

}  // namespace
}  // namespace crate::cuda

using namespace crate::cuda;

extern "C" {

CRATE_API crate_status crate_cuda_layernorm_forward_f32(const float* x, const float* w, const float* b, float* y,
                                                        float* mean, float* rstd, int64_t rows, int64_t cols,
                                                        double eps, void* stream) {
  return guard("crate_cuda_layernorm_forward_f32", [&] {
    const char* fn = "layernorm_forward";
    check_rc(fn, rows, cols, "cols");
    if (rows == 0 || cols == 0) return;
    CRATE_CUDA_REQUIRE(x && y && mean && rstd, fn, "x, y, mean and rstd must not be NULL");
    cudaStream_t st = resolve_stream(stream);
    const int vec = cols % 4 == 0 && aligned16(x) && aligned16(y) && (!w || aligned16(w)) && (!b || aligned16(b));
    layernorm_fwd_kernel<<<rows_grid(rows), kThreads, 0, st>>>(x, w, b, y, mean, rstd, rows, cols, eps, vec);
    check_launch("layernorm_fwd_kernel", st);
  });
}

CRATE_API crate_status crate_cuda_layernorm_backward_f32(const float* x, const float* w, const float* mean,
                                                         const float* rstd, const float* g, float* dx, float* dw,
                                                         float* db, int64_t rows, int64_t cols, void* stream) {
  return guard("crate_cuda_layernorm_backward_f32", [&] {
    const char* fn = "layernorm_backward";
    check_rc(fn, rows, cols, "cols");
    if (rows == 0 || cols == 0) return;
    CRATE_CUDA_REQUIRE(x && mean && rstd && g && dx, fn, "x, mean, rstd, grad and dx must not be NULL");
    cudaStream_t st = resolve_stream(stream);
    layernorm_bwd_dx_kernel<<<rows_grid(rows), kThreads, 0, st>>>(x, w, mean, rstd, g, dx, rows, cols);
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
    layernorm_bwd_wb_partial_kernel<<<grid, dim3(32, 8), 0, st>>>(x, mean, rstd, g, pw, pb, rows, cols, chunk_rows,
                                                                  nchunk);
    check_launch("layernorm_bwd_wb_partial_kernel", st);
    layernorm_bwd_wb_final_kernel<<<grid_for(cols, kThreads), kThreads, 0, st>>>(pw, pb, dw, db, cols, nchunk);
    check_launch("layernorm_bwd_wb_final_kernel", st);
  });
}

CRATE_API crate_status crate_cuda_softmax_forward_f32(const float* x, float* y, int64_t rows, int64_t cols, int log,
                                                      void* stream) {
  return guard("crate_cuda_softmax_forward_f32", [&] {
    const char* fn = "softmax_forward";
    check_rc(fn, rows, cols, "cols");
    if (rows == 0 || cols == 0) return;
    CRATE_CUDA_REQUIRE(x && y, fn, "x and y must not be NULL");
    cudaStream_t st = resolve_stream(stream);
    softmax_fwd_kernel<<<rows_grid(rows), kThreads, 0, st>>>(x, y, rows, cols, log);
    check_launch("softmax_fwd_kernel", st);
  });
}

CRATE_API crate_status crate_cuda_softmax_backward_f32(const float* y, const float* g, float* dx, int64_t rows,
                                                       int64_t cols, int log, void* stream) {
  return guard("crate_cuda_softmax_backward_f32", [&] {
    const char* fn = "softmax_backward";
    check_rc(fn, rows, cols, "cols");
    if (rows == 0 || cols == 0) return;
    CRATE_CUDA_REQUIRE(y && g && dx, fn, "y, grad and dx must not be NULL");
    cudaStream_t st = resolve_stream(stream);
    softmax_bwd_kernel<<<rows_grid(rows), kThreads, 0, st>>>(y, g, dx, rows, cols, log);
    check_launch("softmax_bwd_kernel", st);
  });
}

CRATE_API crate_status crate_cuda_cross_entropy_forward_f32(const float* logits, const int32_t* target, float* loss_row,
                                                            float* lse, int64_t* counted, int64_t rows, int64_t classes,
                                                            double smoothing, int64_t ignore_index, void* stream) {
  return guard("crate_cuda_cross_entropy_forward_f32", [&] {
    const char* fn = "cross_entropy_forward";
    check_rc(fn, rows, classes, "classes");
    CRATE_CUDA_REQUIRE(classes >= 1, fn, "classes must be >= 1, got " + std::to_string(classes));
    CRATE_CUDA_REQUIRE(counted, fn, "counted must not be NULL");
    cudaStream_t st = resolve_stream(stream);
    check(cudaMemsetAsync(counted, 0, sizeof(int64_t), st), "cross_entropy_forward: zero counted");
    if (rows == 0) return;
    CRATE_CUDA_REQUIRE(logits && target && loss_row && lse, fn, "logits, target, loss_row and lse must not be NULL");
    ce_fwd_kernel<<<rows_grid(rows), kThreads, 0, st>>>(logits, target, loss_row, lse,
                                                        reinterpret_cast<unsigned long long*>(counted), rows, classes,
                                                        smoothing, ignore_index);
    check_launch("ce_fwd_kernel", st);
  });
}

CRATE_API crate_status crate_cuda_cross_entropy_backward_f32(const float* logits, const int32_t* target,
                                                             const float* lse, const float* g_row, float* dlogits,
                                                             int64_t rows, int64_t classes, double smoothing,
                                                             int64_t ignore_index, void* stream) {
  return guard("crate_cuda_cross_entropy_backward_f32", [&] {
    const char* fn = "cross_entropy_backward";
    check_rc(fn, rows, classes, "classes");
    CRATE_CUDA_REQUIRE(classes >= 1, fn, "classes must be >= 1, got " + std::to_string(classes));
    if (rows == 0) return;
    CRATE_CUDA_REQUIRE(logits && target && lse && g_row && dlogits, fn,
                       "logits, target, lse, g_row and dlogits must not be NULL");
    cudaStream_t st = resolve_stream(stream);
    ce_bwd_kernel<<<rows_grid(rows), kThreads, 0, st>>>(logits, target, lse, g_row, dlogits, rows, classes, smoothing,
                                                        ignore_index);
    check_launch("ce_bwd_kernel", st);
  });
}

}  // extern "C"
