// ops_binding.cc: N-API entry points for the primitive ops. Each function reads its arguments,
// checks that every buffer is live, on the CPU, of the right dtype and large enough for the
// sizes/strides it was given (so no call can read or write out of bounds), then calls the kernel.
//
// dtypes on cuda: f32 everywhere; bf16 (CUDA only) for unary (+ backward), binary (arithmetic and
// comparisons), where, fill, reduce, stridedCopy, gather, indexAdd, softmax, layerNorm and
// crossEntropy (+ backwards; their statistics, lossRow and gradRow f32), computed in f32 and
// stored as bf16; i32 where the kernel has it (binary, fill, arange, stridedCopy, gather). Any other op or dtype fails
// with
// "<op>: argument '<name>' has dtype <dt>, which is not supported on cuda by this op (...)".
#include <cstring>
#include <string>

#include "../cpu/kernels.h"
#include "binding.h"
#include "cuda_api.h"

namespace crate::binding {
namespace {

using cpu::BinaryOp;
using cpu::ReduceOp;
using cpu::UnaryOp;

#define DISPATCH_ALL(args, dt, T, ...)                                         \
  switch (dt) {                                                                \
    case DType::f32: {                                                         \
      using T = float;                                                         \
      __VA_ARGS__;                                                             \
      break;                                                                   \
    }                                                                          \
    case DType::f64: {                                                         \
      using T = double;                                                        \
      __VA_ARGS__;                                                             \
      break;                                                                   \
    }                                                                          \
    case DType::i32: {                                                         \
      using T = int32_t;                                                       \
      __VA_ARGS__;                                                             \
      break;                                                                   \
    }                                                                          \
    default:                                                                   \
      args.fail(std::string("dtype ") + dtype_name(dt) + " is not supported"); \
  }

DType dtype_arg(const Args& a, size_t i) {
  const int64_t v = a.i64(i, "dtype");
  if (v < 0 || v > 3) a.fail("unknown dtype code " + std::to_string(v));
  return static_cast<DType>(v);
}

int64_t checked_numel(const Args& a, const std::vector<int64_t>& shape, const char* name) {
  int64_t n = 1;
  for (int64_t s : shape) {
    if (s < 0) a.fail(std::string("'") + name + "' has a negative dimension");
    if (s != 0 && n > (int64_t(1) << 62) / s) a.fail(std::string("'") + name + "' is too large (overflows int64)");
    n *= s;
  }
  return n;
}

// Number of elements a strided view needs in its buffer (max offset + 1); 0 for empty views.
int64_t strided_extent(const Args& a, int64_t off, const std::vector<int64_t>& str, const std::vector<int64_t>& shape,
                       const char* name) {
  if (str.size() != shape.size()) a.fail(std::string("'") + name + "' strides and shape differ in rank");
  if (off < 0) a.fail(std::string("'") + name + "' has a negative offset");
  int64_t hi = off;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return 0;
    if (str[d] < 0) a.fail(std::string("'") + name + "' has a negative stride");
    hi += (shape[d] - 1) * str[d];
  }
  return hi + 1;
}

Device device_arg(const Args& a, size_t i) {
  const int64_t v = a.i64(i, "device");
  if (v != 0 && v != 1) a.fail("unknown device code " + std::to_string(v));
  if (v == 1) cuda_api(a);  // a clear error when CUDA is not available
  return static_cast<Device>(v);
}

Napi::Value Empty(const Napi::CallbackInfo& info) {
  Args a(info, "empty");
  DType dt = dtype_arg(a, 0);
  int64_t n = a.i64(1, "numel");
  if (n < 0) a.fail("numel must be >= 0, got " + std::to_string(n));
  bool zero = a.boolean(2, "zero");
  const Device dev = info.Length() > 3 ? device_arg(a, 3) : Device::cpu;  // f64 on cuda: kernel scratch only
  Storage* s;
  try {
    return new_storage(info.Env(), dev, dt, n, zero, &s);
  } catch (const Error& e) {
    Napi::Error err = Napi::Error::New(info.Env(), std::string("empty: ") + e.what());
    if (dev == Device::cuda) err.Set("code", Napi::String::New(info.Env(), "CRATE_OOM"));
    throw err;
  }
}

Napi::Value FromBuffer(const Napi::CallbackInfo& info) {
  Args a(info, "fromBuffer");
  DType dt = dtype_arg(a, 0);
  if (!info[1].IsTypedArray()) a.fail("argument 'data' must be a typed array");
  Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
  const size_t bytes = ta.ByteLength();
  if (bytes % dtype_size(dt) != 0) a.fail("byte length is not a multiple of the dtype size");
  const Device dev = info.Length() > 2 ? device_arg(a, 2) : Device::cpu;
  if (dev == Device::cuda && dt == DType::f64) a.fail("f64 tensors are not supported on cuda (use f32)");
  Storage* s;
  Napi::Object o = new_storage(info.Env(), dev, dt, static_cast<int64_t>(bytes / dtype_size(dt)), false, &s);
  Napi::ArrayBuffer buf = ta.ArrayBuffer();
  const uint8_t* src = static_cast<uint8_t*>(buf.Data()) + ta.ByteOffset();
  if (dev == Device::cuda) {
    if (bytes) cuda_check(a, cuda_api(a).crate_cuda_memcpy(s->data, src, bytes, 0, nullptr));
  } else if (bytes) {
    std::memcpy(s->data, src, bytes);
  }
  return o;
}

Napi::Value Read(const Napi::CallbackInfo& info) {
  Args a(info, "read");
  Storage* s = a.storage(0, "x");
  Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(info.Env(), s->nbytes);
  if (s->device == Device::cuda) {
    if (s->nbytes) cuda_check(a, cuda_api(a).crate_cuda_memcpy(buf.Data(), s->data, s->nbytes, 1, nullptr));
  } else if (s->nbytes) {
    std::memcpy(buf.Data(), s->data, s->nbytes);
  }
  return buf;
}

Napi::Value Fill(const Napi::CallbackInfo& info) {
  Args a(info, "fill");
  Storage* y = a.storage(0, "out");
  double v = a.f64(1, "value");
  a.expect(y, "out", y->dtype, y->numel);
  if (a.on_cuda()) {
    const CudaApi& api = cuda_api(a);
    if (y->dtype == DType::i32) {
      cuda_check(a, api.crate_cuda_fill_i32(y->as<int32_t>(), y->numel, v, nullptr));
    } else if (y->dtype == DType::bf16) {
      cuda_check(a, api.crate_cuda_fill_bf16(y->as<uint16_t>(), y->numel, v, nullptr));
    } else {
      if (y->dtype != DType::f32) cuda_unsupported_dtype(a, "out", y->dtype, "f32, bf16, i32");
      cuda_check(a, api.crate_cuda_fill_f32(y->as<float>(), y->numel, v, nullptr));
    }
    return info.Env().Undefined();
  }
  DISPATCH_ALL(a, y->dtype, T, cpu::fill<T>(y->as<T>(), y->numel, v));
  return info.Env().Undefined();
}

Napi::Value Arange(const Napi::CallbackInfo& info) {
  Args a(info, "arange");
  Storage* y = a.storage(0, "out");
  double start = a.f64(1, "start"), step = a.f64(2, "step");
  a.expect(y, "out", y->dtype, y->numel);
  if (a.on_cuda()) {
    const CudaApi& api = cuda_api(a);
    if (y->dtype == DType::i32) {
      cuda_check(a, api.crate_cuda_arange_i32(y->as<int32_t>(), y->numel, start, step, nullptr));
    } else {
      if (y->dtype != DType::f32) cuda_unsupported_dtype(a, "out", y->dtype, "f32, i32");
      cuda_check(a, api.crate_cuda_arange_f32(y->as<float>(), y->numel, start, step, nullptr));
    }
    return info.Env().Undefined();
  }
  DISPATCH_ALL(a, y->dtype, T, cpu::arange<T>(y->as<T>(), y->numel, start, step));
  return info.Env().Undefined();
}

Napi::Value Random(const Napi::CallbackInfo& info) {
  Args a(info, "random");
  Storage* y = a.storage(0, "out");
  int64_t kind = a.i64(1, "kind");
  int64_t seed = a.i64(2, "seed"), offset = a.i64(3, "offset");
  double p0 = a.f64(4, "a"), p1 = a.f64(5, "b");
  if (kind < 0 || kind > 2) a.fail("unknown random kind");
  a.expect(y, "out", y->dtype, y->numel);
  if (a.on_cuda()) {
    if (y->dtype == DType::bf16) {  // the f32 stream, each value rounded once
      cuda_check(a, cuda_api(a).crate_cuda_random_bf16(static_cast<int>(kind), y->as<uint16_t>(), y->numel,
                                                       static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), p0,
                                                       p1, nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "out", y->dtype);
    cuda_check(a, cuda_api(a).crate_cuda_random_f32(static_cast<int>(kind), y->as<float>(), y->numel,
                                                    static_cast<uint64_t>(seed), static_cast<uint64_t>(offset), p0, p1,
                                                    nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, y->dtype, T,
                 cpu::random<T>(static_cast<cpu::RandomKind>(kind), y->as<T>(), y->numel, static_cast<uint64_t>(seed),
                                static_cast<uint64_t>(offset), p0, p1));
  return info.Env().Undefined();
}

Napi::Value Unary(const Napi::CallbackInfo& info) {
  Args a(info, "unary");
  int64_t op = a.i64(0, "op");
  if (op < 0 || op >= static_cast<int64_t>(UnaryOp::count)) a.fail("unknown unary op");
  Storage* x = a.storage(1, "x");
  Storage* y = a.storage(2, "out");
  double p0 = a.f64(3, "alpha"), p1 = a.f64(4, "beta");
  a.expect(y, "out", x->dtype, x->numel);
  a.expect(x, "x", x->dtype, x->numel);
  if (a.on_cuda()) {
    if (x->dtype == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_unary_bf16(static_cast<int>(op), x->as<uint16_t>(), y->as<uint16_t>(),
                                                      x->numel, p0, p1, nullptr));
      return info.Env().Undefined();
    }
    if (x->dtype != DType::f32) cuda_unsupported_dtype(a, "x", x->dtype, "f32, bf16");
    cuda_check(a, cuda_api(a).crate_cuda_unary_f32(static_cast<int>(op), x->as<float>(), y->as<float>(), x->numel, p0,
                                                   p1, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, x->dtype, T, cpu::unary<T>(static_cast<UnaryOp>(op), x->as<T>(), y->as<T>(), x->numel, p0, p1));
  return info.Env().Undefined();
}

Napi::Value UnaryBackward(const Napi::CallbackInfo& info) {
  Args a(info, "unaryBackward");
  int64_t op = a.i64(0, "op");
  if (op < 0 || op >= static_cast<int64_t>(UnaryOp::count)) a.fail("unknown unary op");
  Storage* x = a.storage_or_null(1, "x");
  Storage* y = a.storage_or_null(2, "y");
  Storage* g = a.storage(3, "grad");
  Storage* dx = a.storage(4, "out");
  double p0 = a.f64(5, "alpha"), p1 = a.f64(6, "beta");
  const int64_t n = g->numel;
  a.expect(g, "grad", g->dtype, n);
  a.expect(dx, "out", g->dtype, n);
  if (x) a.expect(x, "x", g->dtype, n);
  if (y) a.expect(y, "y", g->dtype, n);
  if (a.on_cuda()) {
    if (g->dtype == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_unary_backward_bf16(static_cast<int>(op), x ? x->as<uint16_t>() : nullptr,
                                                               y ? y->as<uint16_t>() : nullptr, g->as<uint16_t>(),
                                                               dx->as<uint16_t>(), n, p0, p1, nullptr));
      return info.Env().Undefined();
    }
    if (g->dtype != DType::f32) cuda_unsupported_dtype(a, "grad", g->dtype, "f32, bf16");
    cuda_check(a, cuda_api(a).crate_cuda_unary_backward_f32(static_cast<int>(op), x ? x->as<float>() : nullptr,
                                                            y ? y->as<float>() : nullptr, g->as<float>(),
                                                            dx->as<float>(), n, p0, p1, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, g->dtype, T,
                 cpu::unary_backward<T>(static_cast<UnaryOp>(op), x ? x->as<T>() : nullptr, y ? y->as<T>() : nullptr,
                                        g->as<T>(), dx->as<T>(), n, p0, p1));
  return info.Env().Undefined();
}

Napi::Value Binary(const Napi::CallbackInfo& info) {
  Args a(info, "binary");
  int64_t op = a.i64(0, "op");
  if (op < 0 || op >= static_cast<int64_t>(BinaryOp::count)) a.fail("unknown binary op");
  Storage* x = a.storage(1, "a");
  auto xs = a.i64s(2, "aStrides");
  Storage* y = a.storage(3, "b");
  auto ys = a.i64s(4, "bStrides");
  Storage* o = a.storage(5, "out");
  auto shape = a.i64s(6, "shape");
  const int64_t n = checked_numel(a, shape, "shape");
  a.expect(x, "a", x->dtype, strided_extent(a, 0, xs, shape, "a"));
  a.expect(y, "b", x->dtype, strided_extent(a, 0, ys, shape, "b"));
  a.expect(o, "out", x->dtype, n);
  if (a.on_cuda()) {
    const CudaApi& api = cuda_api(a);
    const int nd = static_cast<int>(shape.size());
    if (x->dtype == DType::i32) {
      cuda_check(a, api.crate_cuda_binary_i32(static_cast<int>(op), x->as<int32_t>(), xs.data(), y->as<int32_t>(),
                                              ys.data(), o->as<int32_t>(), shape.data(), nd, nullptr));
    } else if (x->dtype == DType::bf16) {
      cuda_check(a, api.crate_cuda_binary_bf16(static_cast<int>(op), x->as<uint16_t>(), xs.data(), y->as<uint16_t>(),
                                               ys.data(), o->as<uint16_t>(), shape.data(), nd, nullptr));
    } else {
      if (x->dtype != DType::f32) cuda_unsupported_dtype(a, "a", x->dtype, "f32, bf16, i32");
      cuda_check(a, api.crate_cuda_binary_f32(static_cast<int>(op), x->as<float>(), xs.data(), y->as<float>(),
                                              ys.data(), o->as<float>(), shape.data(), nd, nullptr));
    }
    return info.Env().Undefined();
  }
  DISPATCH_ALL(a, x->dtype, T,
               cpu::binary<T>(static_cast<BinaryOp>(op), x->as<T>(), xs.data(), y->as<T>(), ys.data(), o->as<T>(),
                              shape.data(), static_cast<int>(shape.size())));
  return info.Env().Undefined();
}

Napi::Value Where(const Napi::CallbackInfo& info) {
  Args a(info, "where");
  Storage* c = a.storage(0, "cond");
  auto cs = a.i64s(1, "condStrides");
  Storage* x = a.storage(2, "a");
  auto xs = a.i64s(3, "aStrides");
  Storage* y = a.storage(4, "b");
  auto ys = a.i64s(5, "bStrides");
  Storage* o = a.storage(6, "out");
  auto shape = a.i64s(7, "shape");
  const int64_t n = checked_numel(a, shape, "shape");
  a.expect(c, "cond", x->dtype, strided_extent(a, 0, cs, shape, "cond"));
  a.expect(x, "a", x->dtype, strided_extent(a, 0, xs, shape, "a"));
  a.expect(y, "b", x->dtype, strided_extent(a, 0, ys, shape, "b"));
  a.expect(o, "out", x->dtype, n);
  if (a.on_cuda()) {
    if (x->dtype == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_where_bf16(c->as<uint16_t>(), cs.data(), x->as<uint16_t>(), xs.data(),
                                                      y->as<uint16_t>(), ys.data(), o->as<uint16_t>(), shape.data(),
                                                      static_cast<int>(shape.size()), nullptr));
      return info.Env().Undefined();
    }
    if (x->dtype != DType::f32) cuda_unsupported_dtype(a, "a", x->dtype, "f32, bf16");
    cuda_check(a, cuda_api(a).crate_cuda_where_f32(c->as<float>(), cs.data(), x->as<float>(), xs.data(), y->as<float>(),
                                                   ys.data(), o->as<float>(), shape.data(),
                                                   static_cast<int>(shape.size()), nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_ALL(a, x->dtype, T,
               cpu::where<T>(c->as<T>(), cs.data(), x->as<T>(), xs.data(), y->as<T>(), ys.data(), o->as<T>(),
                             shape.data(), static_cast<int>(shape.size())));
  return info.Env().Undefined();
}

Napi::Value Cast(const Napi::CallbackInfo& info) {
  Args a(info, "cast");
  Storage* x = a.storage(0, "x");
  Storage* y = a.storage(1, "out");
  a.expect(x, "x", x->dtype, x->numel);
  a.expect(y, "out", y->dtype, x->numel);
  if (a.on_cuda()) {
    cuda_check(a, cuda_api(a).crate_cuda_cast(x->data, static_cast<int>(x->dtype), y->data, static_cast<int>(y->dtype),
                                              x->numel, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_ALL(a, x->dtype, S, DISPATCH_ALL(a, y->dtype, D, cpu::cast<S, D>(x->as<S>(), y->as<D>(), x->numel)));
  return info.Env().Undefined();
}

Napi::Value FindNonFinite(const Napi::CallbackInfo& info) {
  Args a(info, "findNonFinite");
  Storage* x = a.storage(0, "x");
  a.expect(x, "x", x->dtype, x->numel);
  int64_t r = -1;
  if (a.on_cuda()) {
    const CudaApi& api = cuda_api(a);
    if (x->dtype == DType::f32) {
      cuda_check(a, api.crate_cuda_find_nonfinite_f32(x->as<float>(), x->numel, &r, nullptr));
    } else if (x->dtype == DType::bf16 && x->numel > 0) {
      // widen to f32 in scratch (exact: every bf16 is an f32), then the f32 scan
      void* tmp = nullptr;
      cuda_check(a, api.crate_cuda_malloc(&tmp, static_cast<size_t>(x->numel) * 4, nullptr));
      crate_status st = api.crate_cuda_cast(x->data, 3, tmp, 0, x->numel, nullptr);
      if (st == CRATE_OK) st = api.crate_cuda_find_nonfinite_f32(static_cast<float*>(tmp), x->numel, &r, nullptr);
      api.crate_cuda_free(tmp, nullptr);
      cuda_check(a, st);
    }
    return Napi::Number::New(info.Env(), static_cast<double>(r));
  }
  if (x->dtype == DType::f32) r = cpu::find_nonfinite<float>(x->as<float>(), x->numel);
  if (x->dtype == DType::f64) r = cpu::find_nonfinite<double>(x->as<double>(), x->numel);
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

Napi::Value Reduce(const Napi::CallbackInfo& info) {
  Args a(info, "reduce");
  int64_t op = a.i64(0, "op");
  if (op < 0 || op > 2) a.fail("unknown reduce op");
  Storage* x = a.storage(1, "x");
  auto shape = a.i64s(2, "shape");
  auto red = a.i64s(3, "reduced");
  Storage* o = a.storage(4, "out");
  if (red.size() != shape.size()) a.fail("'reduced' and 'shape' differ in rank");
  const int64_t n = checked_numel(a, shape, "shape");
  int64_t nout = 1;
  std::vector<uint8_t> mask(shape.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    mask[d] = red[d] != 0;
    if (!mask[d]) nout *= shape[d];
  }
  a.expect(x, "x", x->dtype, n);
  a.expect(o, "out", x->dtype, nout);
  if (a.on_cuda()) {
    if (x->dtype == DType::bf16) {
      cuda_check(a,
                 cuda_api(a).crate_cuda_reduce_bf16(static_cast<int>(op), x->as<uint16_t>(), shape.data(), mask.data(),
                                                    static_cast<int>(shape.size()), o->as<uint16_t>(), nullptr));
      return info.Env().Undefined();
    }
    if (x->dtype != DType::f32) cuda_unsupported_dtype(a, "x", x->dtype, "f32, bf16");
    cuda_check(a, cuda_api(a).crate_cuda_reduce_f32(static_cast<int>(op), x->as<float>(), shape.data(), mask.data(),
                                                    static_cast<int>(shape.size()), o->as<float>(), nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_ALL(a, x->dtype, T,
               cpu::reduce<T>(static_cast<ReduceOp>(op), x->as<T>(), shape.data(), mask.data(),
                              static_cast<int>(shape.size()), o->as<T>()));
  return info.Env().Undefined();
}

Napi::Value StridedCopy(const Napi::CallbackInfo& info) {
  Args a(info, "stridedCopy");
  Storage* s = a.storage(0, "src");
  int64_t soff = a.i64(1, "srcOffset");
  auto sstr = a.i64s(2, "srcStrides");
  Storage* d = a.storage(3, "dst");
  int64_t doff = a.i64(4, "dstOffset");
  auto dstr = a.i64s(5, "dstStrides");
  auto shape = a.i64s(6, "shape");
  bool acc = a.boolean(7, "accumulate");
  checked_numel(a, shape, "shape");
  a.expect(s, "src", s->dtype, strided_extent(a, soff, sstr, shape, "src"));
  a.expect(d, "dst", s->dtype, strided_extent(a, doff, dstr, shape, "dst"));
  if (a.on_cuda()) {
    const CudaApi& api = cuda_api(a);
    const int nd = static_cast<int>(shape.size());
    if (s->dtype == DType::i32) {
      if (acc) a.fail("accumulate is not supported for i32 on cuda");
      cuda_check(a, api.crate_cuda_strided_copy_i32(s->as<int32_t>(), soff, sstr.data(), d->as<int32_t>(), doff,
                                                    dstr.data(), shape.data(), nd, nullptr));
    } else if (s->dtype == DType::bf16) {
      cuda_check(a, api.crate_cuda_strided_copy_bf16(s->as<uint16_t>(), soff, sstr.data(), d->as<uint16_t>(), doff,
                                                     dstr.data(), shape.data(), nd, acc ? 1 : 0, nullptr));
    } else {
      if (s->dtype != DType::f32) cuda_unsupported_dtype(a, "src", s->dtype, "f32, bf16, i32");
      cuda_check(a, api.crate_cuda_strided_copy_f32(s->as<float>(), soff, sstr.data(), d->as<float>(), doff,
                                                    dstr.data(), shape.data(), nd, acc ? 1 : 0, nullptr));
    }
    return info.Env().Undefined();
  }
  DISPATCH_ALL(a, s->dtype, T,
               cpu::strided_copy<T>(s->as<T>(), soff, sstr.data(), d->as<T>(), doff, dstr.data(), shape.data(),
                                    static_cast<int>(shape.size()), acc));
  return info.Env().Undefined();
}

Napi::Value Gather(const Napi::CallbackInfo& info) {
  Args a(info, "gather");
  Storage* x = a.storage(0, "x");
  Storage* idx = a.storage(1, "index");
  Storage* o = a.storage(2, "out");
  int64_t outer = a.i64(3, "outer"), dim = a.i64(4, "dim"), inner = a.i64(5, "inner"), k = a.i64(6, "k");
  if (outer < 0 || dim < 0 || inner < 0 || k < 0) a.fail("negative size");
  a.expect(x, "x", x->dtype, outer * dim * inner);
  a.expect(idx, "index", DType::i32, k);
  a.expect(o, "out", x->dtype, outer * k * inner);
  // checked (default): an out-of-range index is an error (on CUDA: one host wait for the flag);
  // false: the caller validated the indices (CUDA skips the wait; the CPU always checks, for free)
  const bool checked = info.Length() > 7 ? a.boolean(7, "checked") : true;
  if (a.on_cuda()) {
    const CudaApi& api = cuda_api(a);
    if (x->dtype == DType::i32) {
      cuda_check(a, (checked ? api.crate_cuda_gather_i32 : api.crate_cuda_gather_unchecked_i32)(
                        x->as<int32_t>(), idx->as<int32_t>(), o->as<int32_t>(), outer, dim, inner, k, nullptr));
    } else if (x->dtype == DType::bf16) {
      cuda_check(a, (checked ? api.crate_cuda_gather_bf16 : api.crate_cuda_gather_unchecked_bf16)(
                        x->as<uint16_t>(), idx->as<int32_t>(), o->as<uint16_t>(), outer, dim, inner, k, nullptr));
    } else {
      if (x->dtype != DType::f32) cuda_unsupported_dtype(a, "x", x->dtype, "f32, bf16, i32");
      cuda_check(a, (checked ? api.crate_cuda_gather_f32 : api.crate_cuda_gather_unchecked_f32)(
                        x->as<float>(), idx->as<int32_t>(), o->as<float>(), outer, dim, inner, k, nullptr));
    }
    return info.Env().Undefined();
  }
  DISPATCH_ALL(a, x->dtype, T, cpu::gather<T>(x->as<T>(), idx->as<int32_t>(), o->as<T>(), outer, dim, inner, k));
  return info.Env().Undefined();
}

Napi::Value IndexAdd(const Napi::CallbackInfo& info) {
  Args a(info, "indexAdd");
  Storage* g = a.storage(0, "grad");
  Storage* idx = a.storage(1, "index");
  Storage* dx = a.storage(2, "out");
  int64_t outer = a.i64(3, "outer"), dim = a.i64(4, "dim"), inner = a.i64(5, "inner"), k = a.i64(6, "k");
  if (outer < 0 || dim < 0 || inner < 0 || k < 0) a.fail("negative size");
  a.expect(g, "grad", g->dtype, outer * k * inner);
  a.expect(idx, "index", DType::i32, k);
  a.expect(dx, "out", g->dtype, outer * dim * inner);
  if (a.on_cuda()) {
    if (g->dtype == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_index_add_bf16(g->as<uint16_t>(), idx->as<int32_t>(), dx->as<uint16_t>(),
                                                          outer, dim, inner, k, nullptr));
      return info.Env().Undefined();
    }
    if (g->dtype != DType::f32) cuda_unsupported_dtype(a, "grad", g->dtype, "f32, bf16");
    cuda_check(a, cuda_api(a).crate_cuda_index_add_f32(g->as<float>(), idx->as<int32_t>(), dx->as<float>(), outer, dim,
                                                       inner, k, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, g->dtype, T, cpu::index_add<T>(g->as<T>(), idx->as<int32_t>(), dx->as<T>(), outer, dim, inner, k));
  return info.Env().Undefined();
}

// The arguments of matmul and matmulBf16: a, b, out, batchShape, a/b batch strides, M, N, K,
// transA, transB; every buffer checked against the sizes (a, b of dtype `in`, out of `out_dt`).
struct MatmulArgs {
  Storage *x, *y, *o;
  std::vector<int64_t> bshape, astr, bstr;
  int64_t M, N, K, batch;
  bool tA, tB;
  MatmulArgs(const Args& a, DType in, DType out_dt)
      : x(a.storage(0, "a")),
        y(a.storage(1, "b")),
        o(a.storage(2, "out")),
        bshape(a.i64s(3, "batchShape")),
        astr(a.i64s(4, "aBatchStrides")),
        bstr(a.i64s(5, "bBatchStrides")),
        M(a.i64(6, "M")),
        N(a.i64(7, "N")),
        K(a.i64(8, "K")),
        batch(0),
        tA(a.boolean(9, "transA")),
        tB(a.boolean(10, "transB")) {
    if (M < 0 || N < 0 || K < 0) a.fail("negative matrix size");
    if (astr.size() != bshape.size() || bstr.size() != bshape.size()) a.fail("batch strides and shape differ in rank");
    batch = checked_numel(a, bshape, "batchShape");
    a.expect(x, "a", in, batch == 0 ? 0 : strided_extent(a, 0, astr, bshape, "a") - 1 + M * K);
    a.expect(y, "b", in, batch == 0 ? 0 : strided_extent(a, 0, bstr, bshape, "b") - 1 + K * N);
    a.expect(o, "out", out_dt, batch * M * N);
  }
};

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Args a(info, "matmul");
  const DType dt = a.storage(0, "a")->dtype;
  const MatmulArgs m(a, dt, dt);
  Storage *x = m.x, *y = m.y, *o = m.o;
  const auto &bshape = m.bshape, &astr = m.astr, &bstr = m.bstr;
  const int64_t M = m.M, N = m.N, K = m.K;
  const bool tA = m.tA, tB = m.tB;
  if (a.on_cuda()) {
    if (x->dtype == DType::bf16) {  // bf16 out: f32 accumulation, one rounding
      cuda_check(a, cuda_api(a).crate_cuda_matmul_bf16(
                        x->as<uint16_t>(), y->as<uint16_t>(), o->as<uint16_t>(), bshape.data(), astr.data(),
                        bstr.data(), static_cast<int>(bshape.size()), M, N, K, tA ? 1 : 0, tB ? 1 : 0, nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "a", x->dtype);
    cuda_check(a, cuda_api(a).crate_cuda_matmul_f32(x->as<float>(), y->as<float>(), o->as<float>(), bshape.data(),
                                                    astr.data(), bstr.data(), static_cast<int>(bshape.size()), M, N, K,
                                                    tA ? 1 : 0, tB ? 1 : 0, cuda_allow_tf32() ? 1 : 0, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, x->dtype, T,
                 cpu::matmul<T>(x->as<T>(), y->as<T>(), o->as<T>(), bshape.data(), astr.data(), bstr.data(),
                                static_cast<int>(bshape.size()), M, N, K, tA, tB));
  return info.Env().Undefined();
}

// bf16 autocast GEMM (CUDA only): a, b bf16, out f32, f32 accumulation. The innermost batch dim
// is the strided batch of one cuBLAS call; outer batch dims loop on the host.
Napi::Value MatmulBf16(const Napi::CallbackInfo& info) {
  Args a(info, "matmul (bf16 autocast)");
  const MatmulArgs mm(a, DType::bf16, DType::f32);
  Storage *x = mm.x, *y = mm.y, *o = mm.o;
  const auto &bshape = mm.bshape, &astr = mm.astr, &bstr = mm.bstr;
  const int64_t M = mm.M, N = mm.N, K = mm.K, batch = mm.batch;
  const bool tA = mm.tA, tB = mm.tB;
  if (!a.on_cuda()) a.fail("bf16 matmul runs on cuda only");
  const CudaApi& api = cuda_api(a);
  if (batch == 0 || M == 0 || N == 0) return info.Env().Undefined();
  const int nb = static_cast<int>(bshape.size());
  const int64_t inner = nb ? bshape[nb - 1] : 1;
  const int64_t sa = nb ? astr[nb - 1] : 0, sb = nb ? bstr[nb - 1] : 0;
  const int64_t outer = inner ? batch / inner : 0;
  const auto* A = static_cast<const uint16_t*>(x->data);
  const auto* B = static_cast<const uint16_t*>(y->data);
  float* C = o->as<float>();
  for (int64_t ob = 0; ob < outer; ++ob) {
    // offsets of outer batch index ob over dims [0, nb-1)
    int64_t rem = ob, offa = 0, offb = 0;
    for (int d = nb - 2; d >= 0; --d) {
      const int64_t i = rem % bshape[d];
      rem /= bshape[d];
      offa += i * astr[d];
      offb += i * bstr[d];
    }
    if (K == 0) {
      cuda_check(a, api.crate_cuda_fill_f32(C + ob * inner * M * N, inner * M * N, 0.0, nullptr));
      continue;
    }
    cuda_check(a, api.crate_cuda_gemm_bf16(tA ? 1 : 0, tB ? 1 : 0, M, N, K, 1.0f, A + offa, tA ? M : K, B + offb,
                                           tB ? K : N, 0.0f, C + ob * inner * M * N, N, inner, sa, sb, M * N, nullptr));
  }
  return info.Env().Undefined();
}

Napi::Value Softmax(const Napi::CallbackInfo& info) {
  Args a(info, "softmax");
  Storage* x = a.storage(0, "x");
  Storage* y = a.storage(1, "out");
  int64_t rows = a.i64(2, "rows"), cols = a.i64(3, "cols");
  bool log = a.boolean(4, "log");
  if (rows < 0 || cols < 0) a.fail("negative size");
  a.expect(x, "x", x->dtype, rows * cols);
  a.expect(y, "out", x->dtype, rows * cols);
  if (a.on_cuda()) {
    if (x->dtype == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_softmax_forward_bf16(x->as<uint16_t>(), y->as<uint16_t>(), rows, cols,
                                                                log ? 1 : 0, nullptr));
      return info.Env().Undefined();
    }
    if (x->dtype != DType::f32) cuda_unsupported_dtype(a, "x", x->dtype, "f32, bf16");
    cuda_check(a, cuda_api(a).crate_cuda_softmax_forward_f32(x->as<float>(), y->as<float>(), rows, cols, log ? 1 : 0,
                                                             nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, x->dtype, T, cpu::softmax<T>(x->as<T>(), y->as<T>(), rows, cols, log));
  return info.Env().Undefined();
}

Napi::Value SoftmaxBackward(const Napi::CallbackInfo& info) {
  Args a(info, "softmaxBackward");
  Storage* y = a.storage(0, "y");
  Storage* g = a.storage(1, "grad");
  Storage* dx = a.storage(2, "out");
  int64_t rows = a.i64(3, "rows"), cols = a.i64(4, "cols");
  bool log = a.boolean(5, "log");
  if (rows < 0 || cols < 0) a.fail("negative size");
  a.expect(y, "y", y->dtype, rows * cols);
  a.expect(g, "grad", y->dtype, rows * cols);
  a.expect(dx, "out", y->dtype, rows * cols);
  if (a.on_cuda()) {
    if (y->dtype == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_softmax_backward_bf16(y->as<uint16_t>(), g->as<uint16_t>(),
                                                                 dx->as<uint16_t>(), rows, cols, log ? 1 : 0, nullptr));
      return info.Env().Undefined();
    }
    if (y->dtype != DType::f32) cuda_unsupported_dtype(a, "y", y->dtype, "f32, bf16");
    cuda_check(a, cuda_api(a).crate_cuda_softmax_backward_f32(y->as<float>(), g->as<float>(), dx->as<float>(), rows,
                                                              cols, log ? 1 : 0, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, y->dtype, T, cpu::softmax_backward<T>(y->as<T>(), g->as<T>(), dx->as<T>(), rows, cols, log));
  return info.Env().Undefined();
}

Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  Args a(info, "layerNorm");
  Storage* x = a.storage(0, "x");
  Storage* w = a.storage_or_null(1, "weight");
  Storage* b = a.storage_or_null(2, "bias");
  Storage* y = a.storage(3, "out");
  Storage* mean = a.storage(4, "mean");
  Storage* rstd = a.storage(5, "rstd");
  int64_t rows = a.i64(6, "rows"), cols = a.i64(7, "cols");
  double eps = a.f64(8, "eps");
  if (rows < 0 || cols < 0) a.fail("negative size");
  const DType dt = x->dtype;
  a.expect(x, "x", dt, rows * cols);
  if (w) a.expect(w, "weight", dt, cols);
  if (b) a.expect(b, "bias", dt, cols);
  a.expect(y, "out", dt, rows * cols);
  const DType sdt = dt == DType::bf16 ? DType::f32 : dt;  // statistics of bf16 x are f32
  a.expect(mean, "mean", sdt, rows);
  a.expect(rstd, "rstd", sdt, rows);
  if (a.on_cuda()) {
    if (dt == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_layernorm_forward_bf16(
                        x->as<uint16_t>(), w ? w->as<uint16_t>() : nullptr, b ? b->as<uint16_t>() : nullptr,
                        y->as<uint16_t>(), mean->as<float>(), rstd->as<float>(), rows, cols, eps, nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "x", dt);
    cuda_check(a, cuda_api(a).crate_cuda_layernorm_forward_f32(
                      x->as<float>(), w ? w->as<float>() : nullptr, b ? b->as<float>() : nullptr, y->as<float>(),
                      mean->as<float>(), rstd->as<float>(), rows, cols, eps, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T,
                 cpu::layernorm<T>(x->as<T>(), w ? w->as<T>() : nullptr, b ? b->as<T>() : nullptr, y->as<T>(),
                                   mean->as<T>(), rstd->as<T>(), rows, cols, eps));
  return info.Env().Undefined();
}

Napi::Value LayerNormBackward(const Napi::CallbackInfo& info) {
  Args a(info, "layerNormBackward");
  Storage* x = a.storage(0, "x");
  Storage* w = a.storage_or_null(1, "weight");
  Storage* mean = a.storage(2, "mean");
  Storage* rstd = a.storage(3, "rstd");
  Storage* g = a.storage(4, "grad");
  Storage* dx = a.storage(5, "dx");
  Storage* dw = a.storage_or_null(6, "dweight");
  Storage* db = a.storage_or_null(7, "dbias");
  int64_t rows = a.i64(8, "rows"), cols = a.i64(9, "cols");
  if (rows < 0 || cols < 0) a.fail("negative size");
  const DType dt = x->dtype;
  a.expect(x, "x", dt, rows * cols);
  if (w) a.expect(w, "weight", dt, cols);
  const DType sdt = dt == DType::bf16 ? DType::f32 : dt;  // statistics of bf16 x are f32
  a.expect(mean, "mean", sdt, rows);
  a.expect(rstd, "rstd", sdt, rows);
  a.expect(g, "grad", dt, rows * cols);
  a.expect(dx, "dx", dt, rows * cols);
  if (dw) a.expect(dw, "dweight", dt, cols);
  if (db) a.expect(db, "dbias", dt, cols);
  if (a.on_cuda()) {
    if (dt == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_layernorm_backward_bf16(
                        x->as<uint16_t>(), w ? w->as<uint16_t>() : nullptr, mean->as<float>(), rstd->as<float>(),
                        g->as<uint16_t>(), dx->as<uint16_t>(), dw ? dw->as<uint16_t>() : nullptr,
                        db ? db->as<uint16_t>() : nullptr, rows, cols, nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "x", dt);
    cuda_check(a, cuda_api(a).crate_cuda_layernorm_backward_f32(x->as<float>(), w ? w->as<float>() : nullptr,
                                                                mean->as<float>(), rstd->as<float>(), g->as<float>(),
                                                                dx->as<float>(), dw ? dw->as<float>() : nullptr,
                                                                db ? db->as<float>() : nullptr, rows, cols, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(
      a, dt, T,
      cpu::layernorm_backward<T>(x->as<T>(), w ? w->as<T>() : nullptr, mean->as<T>(), rstd->as<T>(), g->as<T>(),
                                 dx->as<T>(), dw ? dw->as<T>() : nullptr, db ? db->as<T>() : nullptr, rows, cols));
  return info.Env().Undefined();
}

Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  Args a(info, "crossEntropy");
  Storage* x = a.storage(0, "logits");
  Storage* t = a.storage(1, "target");
  Storage* loss = a.storage(2, "lossRow");
  Storage* lse = a.storage(3, "lse");
  int64_t rows = a.i64(4, "rows"), classes = a.i64(5, "classes");
  double smoothing = a.f64(6, "labelSmoothing");
  int64_t ignore = a.i64(7, "ignoreIndex");
  // false: the caller counts on the device (cuda: no read back, no stream sync; returns -1)
  const bool count_to_host = a.boolean(8, "countToHost");
  if (rows < 0 || classes < 1) a.fail("bad sizes");
  a.expect(x, "logits", x->dtype, rows * classes);
  a.expect(t, "target", DType::i32, rows);
  const DType sdt = x->dtype == DType::bf16 ? DType::f32 : x->dtype;  // bf16 logits: f32 loss and lse
  a.expect(loss, "lossRow", sdt, rows);
  a.expect(lse, "lse", sdt, rows);
  int64_t counted = 0;
  if (a.on_cuda()) {
    const bool bf = x->dtype == DType::bf16;
    if (!bf) cuda_f32_only(a, "logits", x->dtype);
    const CudaApi& api = cuda_api(a);
    void* dcount = nullptr;
    cuda_check(a, api.crate_cuda_malloc(&dcount, sizeof(int64_t), nullptr));
    crate_status st = bf ? api.crate_cuda_cross_entropy_forward_bf16(
                               x->as<uint16_t>(), t->as<int32_t>(), loss->as<float>(), lse->as<float>(),
                               static_cast<int64_t*>(dcount), rows, classes, smoothing, ignore, nullptr)
                         : api.crate_cuda_cross_entropy_forward_f32(x->as<float>(), t->as<int32_t>(), loss->as<float>(),
                                                                    lse->as<float>(), static_cast<int64_t*>(dcount),
                                                                    rows, classes, smoothing, ignore, nullptr);
    if (!count_to_host)
      counted = -1;
    else if (st == CRATE_OK)
      st = api.crate_cuda_memcpy(&counted, dcount, sizeof(int64_t), 1, nullptr);
    if (st != CRATE_OK) {
      api.crate_cuda_free(dcount, nullptr);
      cuda_check(a, st);
    }
    cuda_check(a, api.crate_cuda_free(dcount, nullptr));
    return Napi::Number::New(info.Env(), static_cast<double>(counted));
  }
  DISPATCH_FLOAT(a, x->dtype, T,
                 counted = cpu::cross_entropy<T>(x->as<T>(), t->as<int32_t>(), loss->as<T>(), lse->as<T>(), rows,
                                                 classes, smoothing, ignore));
  return Napi::Number::New(info.Env(), static_cast<double>(counted));
}

Napi::Value CrossEntropyBackward(const Napi::CallbackInfo& info) {
  Args a(info, "crossEntropyBackward");
  Storage* x = a.storage(0, "logits");
  Storage* t = a.storage(1, "target");
  Storage* lse = a.storage(2, "lse");
  Storage* g = a.storage(3, "gradRow");
  Storage* dx = a.storage(4, "out");
  int64_t rows = a.i64(5, "rows"), classes = a.i64(6, "classes");
  double smoothing = a.f64(7, "labelSmoothing");
  int64_t ignore = a.i64(8, "ignoreIndex");
  if (rows < 0 || classes < 1) a.fail("bad sizes");
  a.expect(x, "logits", x->dtype, rows * classes);
  a.expect(t, "target", DType::i32, rows);
  const DType sdt = x->dtype == DType::bf16 ? DType::f32 : x->dtype;  // bf16 logits: f32 lse and gradRow
  a.expect(lse, "lse", sdt, rows);
  a.expect(g, "gradRow", sdt, rows);
  a.expect(dx, "out", x->dtype, rows * classes);
  if (a.on_cuda()) {
    if (x->dtype == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_cross_entropy_backward_bf16(
                        x->as<uint16_t>(), t->as<int32_t>(), lse->as<float>(), g->as<float>(), dx->as<uint16_t>(), rows,
                        classes, smoothing, ignore, nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "logits", x->dtype);
    cuda_check(a, cuda_api(a).crate_cuda_cross_entropy_backward_f32(x->as<float>(), t->as<int32_t>(), lse->as<float>(),
                                                                    g->as<float>(), dx->as<float>(), rows, classes,
                                                                    smoothing, ignore, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, x->dtype, T,
                 cpu::cross_entropy_backward<T>(x->as<T>(), t->as<int32_t>(), lse->as<T>(), g->as<T>(), dx->as<T>(),
                                                rows, classes, smoothing, ignore));
  return info.Env().Undefined();
}

Napi::Value AdamwStep(const Napi::CallbackInfo& info) {
  Args a(info, "AdamW.step");
  Storage* p = a.storage(0, "param");
  Storage* g = a.storage(1, "grad");
  Storage* m = a.storage(2, "exp_avg");
  Storage* v = a.storage(3, "exp_avg_sq");
  double lr = a.f64(4, "lr"), b1 = a.f64(5, "beta1"), b2 = a.f64(6, "beta2"), eps = a.f64(7, "eps"),
         wd = a.f64(8, "weightDecay"), bc1 = a.f64(9, "bc1"), bc2 = a.f64(10, "bc2");
  const DType dt = p->dtype;
  const int64_t n = p->numel;
  const DType state_dt = dt == DType::bf16 ? DType::f32 : dt;  // bf16 parameters keep f32 moments
  a.expect(p, "param", dt, n);
  a.expect(g, "grad", dt, n);
  a.expect(m, "exp_avg", state_dt, n);
  a.expect(v, "exp_avg_sq", state_dt, n);
  if (!(bc1 > 0) || !(bc2 > 0)) a.fail("bias corrections must be > 0");
  if (a.on_cuda()) {
    if (dt == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_adamw_step_bf16(p->as<uint16_t>(), g->as<uint16_t>(), m->as<float>(),
                                                           v->as<float>(), n, lr, b1, b2, eps, wd, bc1, bc2, nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "param", dt);
    cuda_check(a, cuda_api(a).crate_cuda_adamw_step_f32(p->as<float>(), g->as<float>(), m->as<float>(), v->as<float>(),
                                                        n, lr, b1, b2, eps, wd, bc1, bc2, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T,
                 cpu::adamw_step<T>(p->as<T>(), g->as<T>(), m->as<T>(), v->as<T>(), n, lr, b1, b2, eps, wd, bc1, bc2));
  return info.Env().Undefined();
}

}  // namespace

void register_ops(Napi::Env env, Napi::Object e) {
  e["empty"] = Napi::Function::New(env, Empty, "empty");
  e["fromBuffer"] = Napi::Function::New(env, FromBuffer, "fromBuffer");
  e["read"] = Napi::Function::New(env, Read, "read");
  e["fill"] = Napi::Function::New(env, Fill, "fill");
  e["arange"] = Napi::Function::New(env, Arange, "arange");
  e["random"] = Napi::Function::New(env, Random, "random");
  e["unary"] = Napi::Function::New(env, Unary, "unary");
  e["unaryBackward"] = Napi::Function::New(env, UnaryBackward, "unaryBackward");
  e["binary"] = Napi::Function::New(env, Binary, "binary");
  e["where"] = Napi::Function::New(env, Where, "where");
  e["cast"] = Napi::Function::New(env, Cast, "cast");
  e["findNonFinite"] = Napi::Function::New(env, FindNonFinite, "findNonFinite");
  e["reduce"] = Napi::Function::New(env, Reduce, "reduce");
  e["stridedCopy"] = Napi::Function::New(env, StridedCopy, "stridedCopy");
  e["gather"] = Napi::Function::New(env, Gather, "gather");
  e["indexAdd"] = Napi::Function::New(env, IndexAdd, "indexAdd");
  e["matmul"] = Napi::Function::New(env, Matmul, "matmul");
  e["matmulBf16"] = Napi::Function::New(env, MatmulBf16, "matmulBf16");
  e["softmax"] = Napi::Function::New(env, Softmax, "softmax");
  e["softmaxBackward"] = Napi::Function::New(env, SoftmaxBackward, "softmaxBackward");
  e["layerNorm"] = Napi::Function::New(env, LayerNorm, "layerNorm");
  e["layerNormBackward"] = Napi::Function::New(env, LayerNormBackward, "layerNormBackward");
  e["crossEntropy"] = Napi::Function::New(env, CrossEntropy, "crossEntropy");
  e["crossEntropyBackward"] = Napi::Function::New(env, CrossEntropyBackward, "crossEntropyBackward");
  e["adamwStep"] = Napi::Function::New(env, AdamwStep, "adamwStep");
}

}  // namespace crate::binding
