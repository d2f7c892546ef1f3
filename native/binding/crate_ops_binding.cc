// crate_ops_binding.cc: N-API entry points for the CRATE kernels (MSSA, the ISTA family, the
// batched log-det coding rate, TSSA). Each checks every buffer against the sizes it is given,
// then calls the CPU kernel; numerical failures become JS errors with code CRATE_NUMERICAL.
#include <string>
#include <vector>

#include "../cpu/coding_rate.h"
#include "../cpu/ista.h"
#include "../cpu/mssa.h"
#include "../cpu/tssa.h"
#include "binding.h"
#include "cuda_api.h"

namespace crate::binding {
namespace {

// Runs a kernel; crate errors become JS errors prefixed with the op name.
template <class F>
void run_kernel(const Args& a, F&& fn) {
  if (a.on_cuda()) a.fail("this op has no CUDA kernel yet; move its inputs to the cpu with .to('cpu')");
  try {
    fn();
  } catch (const NumericalError& e) {
    Napi::Error err = Napi::Error::New(a.env(), std::string(a.op()) + ": " + e.what());
    err.Set("code", Napi::String::New(a.env(), "CRATE_NUMERICAL"));
    throw err;
  } catch (const Error& e) {
    throw Napi::Error::New(a.env(), std::string(a.op()) + ": " + e.what());
  }
}

// A host-side size query (no device data touched): errors become JS errors for the op.
template <class F>
void run_cpu_query(const Args& a, F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    throw Napi::Error::New(a.env(), std::string(a.op()) + ": " + e.what());
  }
}

// f64 elements of the Cholesky scratch of `items` Gram matrices of Z (m, n).
size_t chol_numel(const Args& a, int64_t items, int64_t m, int64_t n) {
  size_t need = 0;
  run_cpu_query(a, [&] { need = cpu::logdet_gram_chol_numel(items, m, n); });
  return need;
}

template <class T>
T* ptr(Storage* s) {
  return s ? s->as<T>() : nullptr;
}

void expect_opt(const Args& a, Storage* s, const char* name, DType dt, int64_t n) {
  if (s) a.expect(s, name, dt, n);
}

// The nonzero entries of a key mask of any float/int dtype, as uint8, from host memory.
std::vector<uint8_t> mask_to_u8(const Args& a, DType dt, const void* data, int64_t n) {
  std::vector<uint8_t> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    switch (dt) {
      case DType::f32:
        out[i] = static_cast<const float*>(data)[i] != 0.f;
        break;
      case DType::f64:
        out[i] = static_cast<const double*>(data)[i] != 0.0;
        break;
      case DType::i32:
        out[i] = static_cast<const int32_t*>(data)[i] != 0;
        break;
      default:
        a.fail("keyMask dtype not supported");
    }
  }
  return out;
}

std::vector<uint8_t> key_mask(const Args& a, Storage* m, int64_t n) {
  if (!m) return {};
  a.expect(m, "keyMask", m->dtype, n);
  return mask_to_u8(a, m->dtype, m->data, n);
}

// Device scratch from the CUDA caching allocator, freed on scope exit.
struct DeviceBuf {
  const CudaApi& api;
  void* p = nullptr;
  DeviceBuf(const Args& a, const CudaApi& api_, size_t bytes) : api(api_) {
    if (bytes) cuda_check(a, api.crate_cuda_malloc(&p, bytes, nullptr));
  }
  ~DeviceBuf() {
    if (p) api.crate_cuda_free(p, nullptr);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// A key mask on cuda as the uint8 device array the CUDA kernels take, written to `dst` (n bytes),
// converted on the device in stream order (no host round trip, no synchronisation).
void key_mask_to_device(const Args& a, const CudaApi& api, Storage* m, int64_t n, void* dst) {
  a.expect(m, "keyMask", m->dtype, n);
  int code = 0;
  switch (m->dtype) {
    case DType::f32:
      code = 0;
      break;
    case DType::i32:
      code = 2;
      break;
    case DType::bf16:
      code = 3;
      break;
    default:
      a.fail("keyMask dtype not supported on cuda (f32, i32 or bf16)");
  }
  cuda_check(a, api.crate_cuda_nonzero_u8(m->data, code, static_cast<uint8_t*>(dst), n, nullptr));
}

void sizes_nonneg(const Args& a, std::initializer_list<int64_t> v) {
  for (int64_t x : v)
    if (x < 0) a.fail("negative size");
}

// ------------------------------------------------------------------------------------- MSSA
Napi::Value MssaForward(const Napi::CallbackInfo& info) {
  Args a(info, "mssa");
  Storage* P = a.storage(0, "P");
  Storage* O = a.storage(1, "O");
  Storage* L = a.storage_or_null(2, "L");
  int64_t B = a.i64(3, "B"), N = a.i64(4, "N"), H = a.i64(5, "H"), p = a.i64(6, "p");
  double scale = a.f64(7, "scale");
  bool causal = a.boolean(8, "causal");
  Storage* km = a.storage_or_null(9, "keyMask");
  sizes_nonneg(a, {B, N, H, p});
  const DType dt = P->dtype;
  const DType sdt = dt == DType::bf16 ? DType::f32 : dt;  // the saved L of bf16 P is f32
  a.expect(P, "P", dt, B * N * H * p);
  a.expect(O, "O", dt, B * N * H * p);
  expect_opt(a, L, "L", sdt, B * H * N);
  if (a.on_cuda()) {
    if (dt != DType::f32 && dt != DType::bf16) cuda_unsupported_dtype(a, "P", dt, "f32, bf16");
    const CudaApi& api = cuda_api(a);
    DeviceBuf dmask(a, api, km ? static_cast<size_t>(B * N) : 0);
    if (km) key_mask_to_device(a, api, km, B * N, dmask.p);
    if (dt == DType::bf16) {
      cuda_check(
          a, api.crate_cuda_mssa_forward_bf16(P->as<uint16_t>(), O->as<uint16_t>(), ptr<float>(L), B, N, H, p,
                                              static_cast<float>(scale), causal ? 1 : 0, dmask.as<uint8_t>(), nullptr));
      return info.Env().Undefined();
    }
    cuda_check(
        a, api.crate_cuda_mssa_forward_f32(P->as<float>(), O->as<float>(), ptr<float>(L), B, N, H, p,
                                           static_cast<float>(scale), causal ? 1 : 0, dmask.as<uint8_t>(), nullptr));
    return info.Env().Undefined();
  }
  auto mask = key_mask(a, km, B * N);
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   cpu::mssa_forward<T>(P->as<T>(), O->as<T>(), ptr<T>(L), B, N, H, p, static_cast<T>(scale), causal,
                                        km ? mask.data() : nullptr);
                 }));
  return info.Env().Undefined();
}

Napi::Value MssaBackward(const Napi::CallbackInfo& info) {
  Args a(info, "mssa backward");
  Storage* P = a.storage(0, "P");
  Storage* O = a.storage(1, "O");
  Storage* L = a.storage(2, "L");
  Storage* dO = a.storage(3, "dO");
  Storage* dP = a.storage(4, "dP");
  int64_t B = a.i64(5, "B"), N = a.i64(6, "N"), H = a.i64(7, "H"), p = a.i64(8, "p");
  double scale = a.f64(9, "scale");
  bool causal = a.boolean(10, "causal");
  Storage* km = a.storage_or_null(11, "keyMask");
  sizes_nonneg(a, {B, N, H, p});
  const DType dt = P->dtype;
  const DType sdt = dt == DType::bf16 ? DType::f32 : dt;  // the saved L of bf16 P is f32
  const int64_t n = B * N * H * p;
  a.expect(P, "P", dt, n);
  a.expect(O, "O", dt, n);
  a.expect(L, "L", sdt, B * H * N);
  a.expect(dO, "dO", dt, n);
  a.expect(dP, "dP", dt, n);
  if (a.on_cuda()) {
    if (dt != DType::f32 && dt != DType::bf16) cuda_unsupported_dtype(a, "P", dt, "f32, bf16");
    const CudaApi& api = cuda_api(a);
    DeviceBuf dmask(a, api, km ? static_cast<size_t>(B * N) : 0);
    if (km) key_mask_to_device(a, api, km, B * N, dmask.p);
    if (dt == DType::bf16) {
      cuda_check(a, api.crate_cuda_mssa_backward_bf16(
                        P->as<uint16_t>(), O->as<uint16_t>(), L->as<float>(), dO->as<uint16_t>(), dP->as<uint16_t>(), B,
                        N, H, p, static_cast<float>(scale), causal ? 1 : 0, dmask.as<uint8_t>(), nullptr));
      return info.Env().Undefined();
    }
    cuda_check(a, api.crate_cuda_mssa_backward_f32(P->as<float>(), O->as<float>(), L->as<float>(), dO->as<float>(),
                                                   dP->as<float>(), B, N, H, p, static_cast<float>(scale),
                                                   causal ? 1 : 0, dmask.as<uint8_t>(), nullptr));
    return info.Env().Undefined();
  }
  auto mask = key_mask(a, km, B * N);
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   cpu::mssa_backward<T>(P->as<T>(), O->as<T>(), L->as<T>(), dO->as<T>(), dP->as<T>(), B, N, H, p,
                                         static_cast<T>(scale), causal, km ? mask.data() : nullptr);
                 }));
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------- ISTA
Napi::Value IstaForward(const Napi::CallbackInfo& info) {
  Args a(info, "ista");
  Storage* Y = a.storage(0, "Y");
  Storage* W = a.storage(1, "W");
  Storage* Z = a.storage(2, "Z");
  int64_t T_ = a.i64(3, "T"), d = a.i64(4, "d");
  double eta = a.f64(5, "eta"), lambda = a.f64(6, "lambda");
  sizes_nonneg(a, {T_, d});
  const DType dt = Y->dtype;
  a.expect(Y, "Y", dt, T_ * d);
  a.expect(W, "W", dt, d * d);
  a.expect(Z, "Z", dt, T_ * d);
  if (a.on_cuda()) {
    if (dt == DType::bf16) {
      cuda_check(
          a, cuda_api(a).crate_cuda_ista_forward_bf16(Y->as<uint16_t>(), W->as<uint16_t>(), Z->as<uint16_t>(), T_, d,
                                                      static_cast<float>(eta), static_cast<float>(lambda), nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "Y", dt);
    cuda_check(a,
               cuda_api(a).crate_cuda_ista_forward_f32(Y->as<float>(), W->as<float>(), Z->as<float>(), T_, d,
                                                       static_cast<float>(eta), static_cast<float>(lambda), nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   cpu::ista_forward<T>(Y->as<T>(), W->as<T>(), Z->as<T>(), T_, d, static_cast<T>(eta),
                                        static_cast<T>(lambda), nullptr);
                 }));
  return info.Env().Undefined();
}

Napi::Value IstaBackward(const Napi::CallbackInfo& info) {
  Args a(info, "ista backward");
  Storage* Y = a.storage(0, "Y");
  Storage* W = a.storage(1, "W");
  Storage* Z = a.storage(2, "Z");
  Storage* dZ = a.storage(3, "dZ");
  Storage* dY = a.storage(4, "dY");
  Storage* dW = a.storage(5, "dW");
  int64_t T_ = a.i64(6, "T"), d = a.i64(7, "d");
  double eta = a.f64(8, "eta");
  sizes_nonneg(a, {T_, d});
  const DType dt = Y->dtype;
  a.expect(Y, "Y", dt, T_ * d);
  a.expect(W, "W", dt, d * d);
  a.expect(Z, "Z", dt, T_ * d);
  a.expect(dZ, "dZ", dt, T_ * d);
  a.expect(dY, "dY", dt, T_ * d);
  a.expect(dW, "dW", dt, d * d);
  if (a.on_cuda()) {
    if (dt == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_ista_backward_bf16(
                        Y->as<uint16_t>(), W->as<uint16_t>(), Z->as<uint16_t>(), dZ->as<uint16_t>(), dY->as<uint16_t>(),
                        dW->as<uint16_t>(), T_, d, static_cast<float>(eta), nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "Y", dt);
    cuda_check(a, cuda_api(a).crate_cuda_ista_backward_f32(Y->as<float>(), W->as<float>(), Z->as<float>(),
                                                           dZ->as<float>(), dY->as<float>(), dW->as<float>(), T_, d,
                                                           static_cast<float>(eta), nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   cpu::ista_backward<T>(Y->as<T>(), W->as<T>(), Z->as<T>(), dZ->as<T>(), dY->as<T>(), dW->as<T>(), T_,
                                         d, static_cast<T>(eta), nullptr);
                 }));
  return info.Env().Undefined();
}

// mode 0 = overcomplete (CRATE-α: dictionaries D, D1 (d, m)), 1 = tied (CRATE-GPT: W (m, d)).
const char* overcomplete_name(const Napi::CallbackInfo& info, bool backward) {
  const bool tied = info.Length() > 0 && info[0].IsNumber() && info[0].As<Napi::Number>().Int32Value() == 1;
  if (backward) return tied ? "istaTied backward" : "istaOvercomplete backward";
  return tied ? "istaTied" : "istaOvercomplete";
}

Napi::Value IstaOvercompleteForward(const Napi::CallbackInfo& info) {
  Args a(info, overcomplete_name(info, false));
  int64_t mode = a.i64(0, "mode");
  Storage* Y = a.storage(1, "Y");
  Storage* D = a.storage(2, "D");
  Storage* D1 = a.storage_or_null(3, "D1");
  Storage* out = a.storage(4, "out");
  Storage* S1 = a.storage_or_null(5, "A1");
  Storage* S2 = a.storage_or_null(6, "A2");
  Storage* R = a.storage_or_null(7, "R");
  int64_t T_ = a.i64(8, "T"), d = a.i64(9, "d"), m = a.i64(10, "m");
  double eta = a.f64(11, "eta"), lambda = a.f64(12, "lambda");
  sizes_nonneg(a, {T_, d, m});
  const DType dt = Y->dtype;
  a.expect(Y, "Y", dt, T_ * d);
  a.expect(D, "D", dt, d * m);
  if (mode == 0) {
    if (!D1) a.fail("D1 is required");
    a.expect(D1, "D1", dt, d * m);
  }
  a.expect(out, "out", dt, T_ * d);
  expect_opt(a, S1, "A1", dt, T_ * m);
  expect_opt(a, S2, "A2", dt, T_ * m);
  expect_opt(a, R, "R", dt, T_ * d);
  if (a.on_cuda()) {
    const CudaApi& api = cuda_api(a);
    const float e = static_cast<float>(eta), l = static_cast<float>(lambda);
    if (dt == DType::bf16) {
      using u16 = uint16_t;
      if (mode == 0)
        cuda_check(a, api.crate_cuda_ista_overcomplete_forward_bf16(Y->as<u16>(), D->as<u16>(), D1->as<u16>(),
                                                                    out->as<u16>(), ptr<u16>(S1), ptr<u16>(S2),
                                                                    ptr<u16>(R), T_, d, m, e, l, nullptr));
      else
        cuda_check(a, api.crate_cuda_ista_tied_forward_bf16(Y->as<u16>(), D->as<u16>(), out->as<u16>(), ptr<u16>(S1),
                                                            ptr<u16>(S2), ptr<u16>(R), T_, d, m, e, l, nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "Y", dt);
    if (mode == 0)
      cuda_check(a, api.crate_cuda_ista_overcomplete_forward_f32(Y->as<float>(), D->as<float>(), D1->as<float>(),
                                                                 out->as<float>(), ptr<float>(S1), ptr<float>(S2),
                                                                 ptr<float>(R), T_, d, m, e, l, nullptr));
    else
      cuda_check(a,
                 api.crate_cuda_ista_tied_forward_f32(Y->as<float>(), D->as<float>(), out->as<float>(), ptr<float>(S1),
                                                      ptr<float>(S2), ptr<float>(R), T_, d, m, e, l, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   if (mode == 0)
                     cpu::ista_overcomplete_forward<T>(Y->as<T>(), D->as<T>(), D1->as<T>(), out->as<T>(), ptr<T>(S1),
                                                       ptr<T>(S2), ptr<T>(R), T_, d, m, static_cast<T>(eta),
                                                       static_cast<T>(lambda), nullptr);
                   else
                     cpu::ista_tied_forward<T>(Y->as<T>(), D->as<T>(), out->as<T>(), ptr<T>(S1), ptr<T>(S2), ptr<T>(R),
                                               T_, d, m, static_cast<T>(eta), static_cast<T>(lambda), nullptr);
                 }));
  return info.Env().Undefined();
}

Napi::Value IstaOvercompleteBackward(const Napi::CallbackInfo& info) {
  Args a(info, overcomplete_name(info, true));
  int64_t mode = a.i64(0, "mode");
  Storage* Y = a.storage(1, "Y");
  Storage* D = a.storage(2, "D");
  Storage* D1 = a.storage_or_null(3, "D1");
  Storage* S1 = a.storage(4, "A1");
  Storage* S2 = a.storage(5, "A2");
  Storage* R = a.storage(6, "R");
  Storage* dOut = a.storage(7, "dOut");
  Storage* dY = a.storage(8, "dY");
  Storage* dD = a.storage(9, "dD");
  Storage* dD1 = a.storage_or_null(10, "dD1");
  int64_t T_ = a.i64(11, "T"), d = a.i64(12, "d"), m = a.i64(13, "m");
  double eta = a.f64(14, "eta");
  sizes_nonneg(a, {T_, d, m});
  const DType dt = Y->dtype;
  a.expect(Y, "Y", dt, T_ * d);
  a.expect(D, "D", dt, d * m);
  a.expect(S1, "A1", dt, T_ * m);
  a.expect(S2, "A2", dt, T_ * m);
  a.expect(R, "R", dt, T_ * d);
  a.expect(dOut, "dOut", dt, T_ * d);
  a.expect(dY, "dY", dt, T_ * d);
  a.expect(dD, "dD", dt, d * m);
  if (mode == 0) {
    if (!D1 || !dD1) a.fail("D1 and dD1 are required");
    a.expect(D1, "D1", dt, d * m);
    a.expect(dD1, "dD1", dt, d * m);
  }
  if (a.on_cuda()) {
    const CudaApi& api = cuda_api(a);
    if (dt == DType::bf16) {
      using u16 = uint16_t;
      const float e = static_cast<float>(eta);
      if (mode == 0)
        cuda_check(a, api.crate_cuda_ista_overcomplete_backward_bf16(
                          Y->as<u16>(), D->as<u16>(), D1->as<u16>(), S1->as<u16>(), S2->as<u16>(), R->as<u16>(),
                          dOut->as<u16>(), dY->as<u16>(), dD->as<u16>(), dD1->as<u16>(), T_, d, m, e, nullptr));
      else
        cuda_check(a, api.crate_cuda_ista_tied_backward_bf16(Y->as<u16>(), D->as<u16>(), S1->as<u16>(), S2->as<u16>(),
                                                             R->as<u16>(), dOut->as<u16>(), dY->as<u16>(),
                                                             dD->as<u16>(), T_, d, m, e, nullptr));
      return info.Env().Undefined();
    }
    cuda_f32_only(a, "Y", dt);
    if (mode == 0)
      cuda_check(a, api.crate_cuda_ista_overcomplete_backward_f32(
                        Y->as<float>(), D->as<float>(), D1->as<float>(), S1->as<float>(), S2->as<float>(),
                        R->as<float>(), dOut->as<float>(), dY->as<float>(), dD->as<float>(), dD1->as<float>(), T_, d, m,
                        static_cast<float>(eta), nullptr));
    else
      cuda_check(
          a, api.crate_cuda_ista_tied_backward_f32(Y->as<float>(), D->as<float>(), S1->as<float>(), S2->as<float>(),
                                                   R->as<float>(), dOut->as<float>(), dY->as<float>(), dD->as<float>(),
                                                   T_, d, m, static_cast<float>(eta), nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   if (mode == 0)
                     cpu::ista_overcomplete_backward<T>(Y->as<T>(), D->as<T>(), D1->as<T>(), S1->as<T>(), S2->as<T>(),
                                                        R->as<T>(), dOut->as<T>(), dY->as<T>(), dD->as<T>(),
                                                        dD1->as<T>(), T_, d, m, static_cast<T>(eta), nullptr);
                   else
                     cpu::ista_tied_backward<T>(Y->as<T>(), D->as<T>(), S1->as<T>(), S2->as<T>(), R->as<T>(),
                                                dOut->as<T>(), dY->as<T>(), dD->as<T>(), T_, d, m, static_cast<T>(eta),
                                                nullptr);
                 }));
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------ coding rate
Napi::Value LogdetCholNumel(const Napi::CallbackInfo& info) {
  Args a(info, "codingRate");
  int64_t batch = a.i64(0, "batch"), m = a.i64(1, "m"), n = a.i64(2, "n");
  size_t r = 0;
  run_kernel(a, [&] { r = cpu::logdet_gram_chol_numel(batch, m, n); });
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

// dtype of alpha, R and dR: Z's, except f32 for bf16 Z (CUDA only).
DType rate_scalar_dtype(DType z) { return z == DType::bf16 ? DType::f32 : z; }

// heads = 0: Z (batch, m, n), alpha (batch), R (batch).
// heads > 0: X (B=batch, N=m, H=heads, p=n) in (B, N, H*p) layout; alpha and R (B, H).
// cuda: Z f32 or bf16 (alpha, R, dR f32 then); both layouts have fused kernels.
Napi::Value LogdetForward(const Napi::CallbackInfo& info) {
  Args a(info, "codingRate");
  Storage* Z = a.storage(0, "Z");
  Storage* alpha = a.storage(1, "alpha");
  Storage* R = a.storage(2, "R");
  Storage* chol = a.storage_or_null(3, "chol");
  int64_t batch = a.i64(4, "batch"), m = a.i64(5, "m"), n = a.i64(6, "n"), heads = a.i64(7, "heads");
  sizes_nonneg(a, {batch, m, n, heads});
  const DType dt = Z->dtype;
  const DType sdt = rate_scalar_dtype(dt);
  const int64_t items = heads > 0 ? batch * heads : batch;
  a.expect(Z, "Z", dt, batch * m * n * (heads > 0 ? heads : 1));
  a.expect(alpha, "alpha", sdt, items);
  a.expect(R, "R", sdt, items);
  const size_t need = chol_numel(a, items, m, n);
  if (chol) a.expect(chol, "chol", DType::f64, static_cast<int64_t>(need));
  if (a.on_cuda()) {
    if (dt != DType::bf16) cuda_f32_only(a, "Z", dt);
    const CudaApi& api = cuda_api(a);
    DeviceBuf tmp(a, api, chol ? 0 : need * sizeof(double));
    double* C = chol ? chol->as<double>() : tmp.as<double>();
    const float* al = alpha->as<float>();
    float* r = R->as<float>();
    if (dt == DType::bf16) {
      const uint16_t* z = Z->as<uint16_t>();
      cuda_check(a, heads > 0 ? api.crate_cuda_logdet_gram_heads_forward_bf16(z, al, r, batch, m, heads, n, C, nullptr)
                              : api.crate_cuda_logdet_gram_forward_bf16(z, al, r, batch, m, n, C, nullptr));
    } else {
      const float* z = Z->as<float>();
      cuda_check(a, heads > 0 ? api.crate_cuda_logdet_gram_heads_forward_f32(z, al, r, batch, m, heads, n, C, nullptr)
                              : api.crate_cuda_logdet_gram_forward_f32(z, al, r, batch, m, n, C, nullptr));
    }
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   if (heads > 0)
                     cpu::logdet_gram_heads_forward<T>(Z->as<T>(), alpha->as<T>(), R->as<T>(), batch, m, heads, n,
                                                       ptr<double>(chol));
                   else
                     cpu::logdet_gram_forward<T>(Z->as<T>(), alpha->as<T>(), R->as<T>(), batch, m, n,
                                                 ptr<double>(chol));
                 }));
  return info.Env().Undefined();
}

Napi::Value LogdetBackward(const Napi::CallbackInfo& info) {
  Args a(info, "codingRate backward");
  Storage* Z = a.storage(0, "Z");
  Storage* alpha = a.storage(1, "alpha");
  Storage* dR = a.storage(2, "dR");
  Storage* dZ = a.storage(3, "dZ");
  Storage* chol = a.storage_or_null(4, "chol");
  int64_t batch = a.i64(5, "batch"), m = a.i64(6, "m"), n = a.i64(7, "n"), heads = a.i64(8, "heads");
  sizes_nonneg(a, {batch, m, n, heads});
  const DType dt = Z->dtype;
  const DType sdt = rate_scalar_dtype(dt);
  const int64_t items = heads > 0 ? batch * heads : batch;
  const int64_t numel = batch * m * n * (heads > 0 ? heads : 1);
  a.expect(Z, "Z", dt, numel);
  a.expect(alpha, "alpha", sdt, items);
  a.expect(dR, "dR", sdt, items);
  a.expect(dZ, "dZ", dt, numel);
  const size_t need = chol_numel(a, items, m, n);
  if (chol) a.expect(chol, "chol", DType::f64, static_cast<int64_t>(need));
  if (a.on_cuda()) {
    if (dt != DType::bf16) cuda_f32_only(a, "Z", dt);
    const CudaApi& api = cuda_api(a);
    // chol NULL (no saved factor): the backward refactors in its own scratch, one call, one sync
    const double* C = chol ? chol->as<double>() : nullptr;
    const float *al = alpha->as<float>(), *g = dR->as<float>();
    if (dt == DType::bf16) {
      const uint16_t* z = Z->as<uint16_t>();
      uint16_t* dz = dZ->as<uint16_t>();
      cuda_check(a, heads > 0
                        ? api.crate_cuda_logdet_gram_heads_backward_bf16(z, al, g, dz, batch, m, heads, n, C, nullptr)
                        : api.crate_cuda_logdet_gram_backward_bf16(z, al, g, dz, batch, m, n, C, nullptr));
    } else {
      const float* z = Z->as<float>();
      float* dz = dZ->as<float>();
      cuda_check(a, heads > 0
                        ? api.crate_cuda_logdet_gram_heads_backward_f32(z, al, g, dz, batch, m, heads, n, C, nullptr)
                        : api.crate_cuda_logdet_gram_backward_f32(z, al, g, dz, batch, m, n, C, nullptr));
    }
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   if (heads > 0)
                     cpu::logdet_gram_heads_backward<T>(Z->as<T>(), alpha->as<T>(), dR->as<T>(), dZ->as<T>(), batch, m,
                                                        heads, n, ptr<double>(chol));
                   else
                     cpu::logdet_gram_backward<T>(Z->as<T>(), alpha->as<T>(), dR->as<T>(), dZ->as<T>(), batch, m, n,
                                                  ptr<double>(chol));
                 }));
  return info.Env().Undefined();
}

// ------------------------------------------------------------------------------------- TSSA
// dtypes: W, Y, dY, dW f32 / f64 (CPU) or f32 / bf16 (cuda). temp, denomBias, their gradients and
// the saved statistics (Pi, colnorm, mstat) have W's dtype, except for bf16 W: then they are f32
// (the f32 master parameters of mixed precision; statistics not rounded to bf16).
DType tssa_param_dtype(DType w) { return w == DType::bf16 ? DType::f32 : w; }
void tssa_cuda_dtype(const Args& a, DType w) {
  if (w != DType::f32 && w != DType::bf16) cuda_unsupported_dtype(a, "W", w, "f32, bf16");
}

Napi::Value TssaForward(const Napi::CallbackInfo& info) {
  Args a(info, "tssa");
  Storage* W = a.storage(0, "W");
  Storage* temp = a.storage(1, "temp");
  Storage* Y = a.storage(2, "Y");
  Storage* Pi = a.storage_or_null(3, "Pi");
  Storage* cn = a.storage_or_null(4, "colnorm");
  Storage* ms = a.storage_or_null(5, "mstat");
  int64_t B = a.i64(6, "B"), N = a.i64(7, "N"), H = a.i64(8, "H"), p = a.i64(9, "p");
  sizes_nonneg(a, {B, N, H, p});
  const DType dt = W->dtype;
  const DType pdt = tssa_param_dtype(dt);
  a.expect(W, "W", dt, B * N * H * p);
  a.expect(temp, "temp", pdt, H);
  a.expect(Y, "Y", dt, B * N * H * p);
  expect_opt(a, Pi, "Pi", pdt, B * H * N);
  expect_opt(a, cn, "colnorm", pdt, B * H * p);
  expect_opt(a, ms, "mstat", pdt, B * H * p);
  if (a.on_cuda()) {
    tssa_cuda_dtype(a, dt);
    const CudaApi& api = cuda_api(a);
    DeviceBuf tPi(a, api, Pi ? 0 : static_cast<size_t>(B * H * N) * sizeof(float));
    DeviceBuf tcn(a, api, cn ? 0 : static_cast<size_t>(B * H * p) * sizeof(float));
    DeviceBuf tms(a, api, ms ? 0 : static_cast<size_t>(B * H * p) * sizeof(float));
    if (dt == DType::bf16) {
      cuda_check(a, api.crate_cuda_tssa_forward_bf16(W->as<uint16_t>(), temp->as<float>(), Y->as<uint16_t>(),
                                                     Pi ? Pi->as<float>() : tPi.as<float>(),
                                                     cn ? cn->as<float>() : tcn.as<float>(),
                                                     ms ? ms->as<float>() : tms.as<float>(), B, N, H, p, nullptr));
      return info.Env().Undefined();
    }
    cuda_check(a, api.crate_cuda_tssa_forward_f32(W->as<float>(), temp->as<float>(), Y->as<float>(),
                                                  Pi ? Pi->as<float>() : tPi.as<float>(),
                                                  cn ? cn->as<float>() : tcn.as<float>(),
                                                  ms ? ms->as<float>() : tms.as<float>(), B, N, H, p, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   cpu::tssa_forward<T>(W->as<T>(), temp->as<T>(), Y->as<T>(), ptr<T>(Pi), ptr<T>(cn), ptr<T>(ms), B, N,
                                        H, p);
                 }));
  return info.Env().Undefined();
}

Napi::Value TssaBackward(const Napi::CallbackInfo& info) {
  Args a(info, "tssa backward");
  Storage* W = a.storage(0, "W");
  Storage* temp = a.storage(1, "temp");
  Storage* dY = a.storage(2, "dY");
  Storage* Pi = a.storage_or_null(3, "Pi");
  Storage* cn = a.storage_or_null(4, "colnorm");
  Storage* ms = a.storage_or_null(5, "mstat");
  Storage* dW = a.storage(6, "dW");
  Storage* dtemp = a.storage_or_null(7, "dtemp");
  int64_t B = a.i64(8, "B"), N = a.i64(9, "N"), H = a.i64(10, "H"), p = a.i64(11, "p");
  sizes_nonneg(a, {B, N, H, p});
  const DType dt = W->dtype;
  const DType pdt = tssa_param_dtype(dt);
  const int64_t n = B * N * H * p;
  a.expect(W, "W", dt, n);
  a.expect(temp, "temp", pdt, H);
  a.expect(dY, "dY", dt, n);
  expect_opt(a, Pi, "Pi", pdt, B * H * N);
  expect_opt(a, cn, "colnorm", pdt, B * H * p);
  expect_opt(a, ms, "mstat", pdt, B * H * p);
  a.expect(dW, "dW", dt, n);
  expect_opt(a, dtemp, "dtemp", pdt, H);
  if (a.on_cuda()) {
    tssa_cuda_dtype(a, dt);
    const CudaApi& api = cuda_api(a);
    const bool saved = Pi && cn && ms;
    // without the saved statistics, recompute them with a forward pass into scratch (Y: bf16 or f32)
    DeviceBuf tY(a, api, saved ? 0 : static_cast<size_t>(n) * (dt == DType::bf16 ? 2 : sizeof(float)));
    DeviceBuf tPi(a, api, saved ? 0 : static_cast<size_t>(B * H * N) * sizeof(float));
    DeviceBuf tcn(a, api, saved ? 0 : static_cast<size_t>(B * H * p) * sizeof(float));
    DeviceBuf tms(a, api, saved ? 0 : static_cast<size_t>(B * H * p) * sizeof(float));
    if (dt == DType::bf16) {
      if (!saved) {
        cuda_check(a, api.crate_cuda_tssa_forward_bf16(W->as<uint16_t>(), temp->as<float>(), tY.as<uint16_t>(),
                                                       tPi.as<float>(), tcn.as<float>(), tms.as<float>(), B, N, H, p,
                                                       nullptr));
      }
      cuda_check(a, api.crate_cuda_tssa_backward_bf16(W->as<uint16_t>(), temp->as<float>(), dY->as<uint16_t>(),
                                                      saved ? Pi->as<float>() : tPi.as<float>(),
                                                      saved ? cn->as<float>() : tcn.as<float>(),
                                                      saved ? ms->as<float>() : tms.as<float>(), dW->as<uint16_t>(),
                                                      ptr<float>(dtemp), B, N, H, p, nullptr));
      return info.Env().Undefined();
    }
    if (!saved) {
      cuda_check(a, api.crate_cuda_tssa_forward_f32(W->as<float>(), temp->as<float>(), tY.as<float>(), tPi.as<float>(),
                                                    tcn.as<float>(), tms.as<float>(), B, N, H, p, nullptr));
    }
    DeviceBuf tdt(a, api, dtemp ? 0 : static_cast<size_t>(H) * sizeof(float));
    cuda_check(a, api.crate_cuda_tssa_backward_f32(
                      W->as<float>(), temp->as<float>(), dY->as<float>(), saved ? Pi->as<float>() : tPi.as<float>(),
                      saved ? cn->as<float>() : tcn.as<float>(), saved ? ms->as<float>() : tms.as<float>(),
                      dW->as<float>(), dtemp ? dtemp->as<float>() : tdt.as<float>(), B, N, H, p, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   cpu::tssa_backward<T>(W->as<T>(), temp->as<T>(), dY->as<T>(), ptr<T>(Pi), ptr<T>(cn), ptr<T>(ms),
                                         dW->as<T>(), ptr<T>(dtemp), B, N, H, p, nullptr);
                 }));
  return info.Env().Undefined();
}

Napi::Value TssaCausalForward(const Napi::CallbackInfo& info) {
  Args a(info, "tssaCausal");
  Storage* W = a.storage(0, "W");
  Storage* temp = a.storage(1, "temp");
  Storage* den = a.storage(2, "denomBias");
  Storage* Y = a.storage(3, "Y");
  int64_t B = a.i64(4, "B"), Tn = a.i64(5, "T"), H = a.i64(6, "H"), p = a.i64(7, "p"), Tmax = a.i64(8, "Tmax");
  sizes_nonneg(a, {B, Tn, H, p, Tmax});
  if (Tn > Tmax) a.fail("sequence length " + std::to_string(Tn) + " exceeds denomBias length " + std::to_string(Tmax));
  const DType dt = W->dtype;
  const DType pdt = tssa_param_dtype(dt);
  a.expect(W, "W", dt, B * Tn * H * p);
  a.expect(temp, "temp", pdt, H);
  a.expect(den, "denomBias", pdt, H * Tmax);
  a.expect(Y, "Y", dt, B * Tn * H * p);
  if (a.on_cuda()) {
    tssa_cuda_dtype(a, dt);
    if (dt == DType::bf16) {
      cuda_check(
          a, cuda_api(a).crate_cuda_tssa_causal_forward_bf16(W->as<uint16_t>(), temp->as<float>(), den->as<float>(),
                                                             Y->as<uint16_t>(), nullptr, B, Tn, H, p, Tmax, nullptr));
      return info.Env().Undefined();
    }
    cuda_check(a, cuda_api(a).crate_cuda_tssa_causal_forward_f32(W->as<float>(), temp->as<float>(), den->as<float>(),
                                                                 Y->as<float>(), nullptr, B, Tn, H, p, Tmax, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   cpu::tssa_causal_forward<T>(W->as<T>(), temp->as<T>(), den->as<T>(), Y->as<T>(), nullptr, B, Tn, H,
                                               p, Tmax);
                 }));
  return info.Env().Undefined();
}

Napi::Value TssaCausalBackward(const Napi::CallbackInfo& info) {
  Args a(info, "tssaCausal backward");
  Storage* W = a.storage(0, "W");
  Storage* temp = a.storage(1, "temp");
  Storage* den = a.storage(2, "denomBias");
  Storage* dY = a.storage(3, "dY");
  Storage* dW = a.storage(4, "dW");
  Storage* dtemp = a.storage_or_null(5, "dtemp");
  Storage* dden = a.storage_or_null(6, "ddenomBias");
  int64_t B = a.i64(7, "B"), Tn = a.i64(8, "T"), H = a.i64(9, "H"), p = a.i64(10, "p"), Tmax = a.i64(11, "Tmax");
  sizes_nonneg(a, {B, Tn, H, p, Tmax});
  if (Tn > Tmax) a.fail("sequence length exceeds denomBias length");
  const DType dt = W->dtype;
  const DType pdt = tssa_param_dtype(dt);
  const int64_t n = B * Tn * H * p;
  a.expect(W, "W", dt, n);
  a.expect(temp, "temp", pdt, H);
  a.expect(den, "denomBias", pdt, H * Tmax);
  a.expect(dY, "dY", dt, n);
  a.expect(dW, "dW", dt, n);
  expect_opt(a, dtemp, "dtemp", pdt, H);
  expect_opt(a, dden, "ddenomBias", pdt, H * Tmax);
  if (a.on_cuda()) {
    tssa_cuda_dtype(a, dt);
    if (dt == DType::bf16) {
      cuda_check(a, cuda_api(a).crate_cuda_tssa_causal_backward_bf16(
                        W->as<uint16_t>(), temp->as<float>(), den->as<float>(), dY->as<uint16_t>(), dW->as<uint16_t>(),
                        ptr<float>(dtemp), ptr<float>(dden), B, Tn, H, p, Tmax, nullptr));
      return info.Env().Undefined();
    }
    cuda_check(a, cuda_api(a).crate_cuda_tssa_causal_backward_f32(W->as<float>(), temp->as<float>(), den->as<float>(),
                                                                  dY->as<float>(), dW->as<float>(), ptr<float>(dtemp),
                                                                  ptr<float>(dden), B, Tn, H, p, Tmax, nullptr));
    return info.Env().Undefined();
  }
  DISPATCH_FLOAT(a, dt, T, run_kernel(a, [&] {
                   cpu::tssa_causal_backward<T>(W->as<T>(), temp->as<T>(), den->as<T>(), dY->as<T>(), dW->as<T>(),
                                                ptr<T>(dtemp), ptr<T>(dden), B, Tn, H, p, Tmax, nullptr);
                 }));
  return info.Env().Undefined();
}

}  // namespace

void register_crate_ops(Napi::Env env, Napi::Object e) {
  e["mssaForward"] = Napi::Function::New(env, MssaForward, "mssaForward");
  e["mssaBackward"] = Napi::Function::New(env, MssaBackward, "mssaBackward");
  e["istaForward"] = Napi::Function::New(env, IstaForward, "istaForward");
  e["istaBackward"] = Napi::Function::New(env, IstaBackward, "istaBackward");
  e["istaOvercompleteForward"] = Napi::Function::New(env, IstaOvercompleteForward, "istaOvercompleteForward");
  e["istaOvercompleteBackward"] = Napi::Function::New(env, IstaOvercompleteBackward, "istaOvercompleteBackward");
  e["logdetCholNumel"] = Napi::Function::New(env, LogdetCholNumel, "logdetCholNumel");
  e["logdetForward"] = Napi::Function::New(env, LogdetForward, "logdetForward");
  e["logdetBackward"] = Napi::Function::New(env, LogdetBackward, "logdetBackward");
  e["tssaForward"] = Napi::Function::New(env, TssaForward, "tssaForward");
  e["tssaBackward"] = Napi::Function::New(env, TssaBackward, "tssaBackward");
  e["tssaCausalForward"] = Napi::Function::New(env, TssaCausalForward, "tssaCausalForward");
  e["tssaCausalBackward"] = Napi::Function::New(env, TssaCausalBackward, "tssaCausalBackward");
}

}  // namespace crate::binding
