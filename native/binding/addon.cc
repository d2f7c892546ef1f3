// addon.cc: module entry: registers the op functions and the library-level calls
// (info, memory stats, thread count, GEMM backend, async reads) and reports on the CUDA backend
// (loaded by cuda_api.cc).
#include <cstring>
#include <string>
#include <vector>

#include "../core/parallel.h"
#include "../cpu/gemm.h"
#include "../cpu/kernels.h"
#include "binding.h"
#include "cuda_api.h"

namespace crate::binding {
namespace {

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CudaState& g_cuda = cuda_state();
  Napi::Object o = Napi::Object::New(env);
  o["version"] = "0.1.0";
#ifdef CRATE_CUDA_BUILT
  o["cudaCompiled"] = true;
#else
  o["cudaCompiled"] = false;
#endif
  o["cudaLibrary"] = g_cuda.handle ? Napi::Value(Napi::String::New(env, g_cuda.path)) : env.Null();
  o["cudaAvailable"] = g_cuda.usable;
  o["cudaReason"] = g_cuda.usable ? env.Null() : Napi::Value(Napi::String::New(env, g_cuda.load_error));
  if (g_cuda.handle) {
    Napi::Object c = Napi::Object::New(env);
    c["deviceCount"] = g_cuda.info.device_count;
    c["driverVersion"] = g_cuda.info.driver_version;
    c["runtimeVersion"] = g_cuda.info.runtime_version;
    c["compiledArchs"] = std::string(g_cuda.info.compiled_archs);
    if (g_cuda.info.device_count > 0) {
      c["name"] = std::string(g_cuda.info.name);
      c["computeCapability"] = std::to_string(g_cuda.info.cc_major) + "." + std::to_string(g_cuda.info.cc_minor);
      c["smCount"] = g_cuda.info.sm_count;
      c["totalMemory"] = static_cast<double>(g_cuda.info.total_mem);
    }
    if (g_cuda.usable) {
      c["gemm"] = std::string(g_cuda.api.crate_cuda_gemm_backend());
      c["allowTF32"] = cuda_allow_tf32();
    }
    o["cuda"] = c;
  }
  const auto& bi = cpu::blas_info();
  o["blasLibrary"] = bi.found ? Napi::Value(Napi::String::New(env, bi.path)) : env.Null();
  o["blasReason"] = bi.found ? env.Null() : Napi::Value(Napi::String::New(env, bi.reason));
  o["gemmBackend"] = cpu::gemm_backend() == cpu::GemmBackend::blas ? "blas" : "own";
  o["cpuVector"] = cpu::cpu_vector_isa();
  o["threads"] = num_threads();
  return o;
}

Napi::Value Memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  const char* names[2] = {"cpu", "cuda"};
  for (int d = 0; d < 2; ++d) {
    MemStats s = mem_stats(static_cast<Device>(d));
    Napi::Object m = Napi::Object::New(env);
    m["buffers"] = static_cast<double>(s.live_buffers);
    m["bytes"] = static_cast<double>(s.live_bytes);
    m["peakBytes"] = static_cast<double>(s.peak_bytes);
    if (d == 0) m["cachedBytes"] = static_cast<double>(host_cache_bytes());
    if (d == 1 && cuda_state().usable) {
      crate_cuda_memory_stats st{};
      if (cuda_state().api.crate_cuda_memory_stats_get(&st) == CRATE_OK) {
        m["cachedBytes"] = static_cast<double>(st.cached_bytes);
        m["deviceFreeBytes"] = static_cast<double>(st.device_free_bytes);
        m["deviceTotalBytes"] = static_cast<double>(st.device_total_bytes);
        m["oomRetries"] = static_cast<double>(st.num_oom_retries);
        m["hostSyncs"] = static_cast<double>(st.num_host_syncs);
      }
    }
    o[names[d]] = m;
  }
  return o;
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  size_t n = host_empty_cache();
  if (cuda_state().usable) n += cuda_state().api.crate_cuda_empty_cache();
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

Napi::Value SetAllowTF32(const Napi::CallbackInfo& info) {
  Args a(info, "setAllowTF32");
  set_cuda_allow_tf32(a.boolean(0, "on"));
  return info.Env().Undefined();
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Args a(info, "synchronize");
  if (cuda_state().usable) cuda_check(a, cuda_state().api.crate_cuda_synchronize(nullptr));
  return info.Env().Undefined();
}

// readAsync(storage): a Promise of an ArrayBuffer with the bytes. CPU: resolved at once. CUDA:
// copied on the stream into pinned memory; the backend's host callback hands the result to the
// event loop through a thread-safe function, so the event loop is never blocked.
struct AsyncRead {
  Napi::Promise::Deferred deferred;
  Napi::ThreadSafeFunction tsfn;
  std::vector<uint8_t> bytes;
  crate_status status = CRATE_OK;
  std::string error;
  Napi::ObjectReference keep;  // keeps the source storage alive until the copy is done
};

void async_read_done(void* user, crate_status st) {
  auto* r = static_cast<AsyncRead*>(user);
  r->status = st;
  if (st != CRATE_OK) r->error = cuda_state().api.crate_cuda_last_error();
  r->tsfn.BlockingCall(r, [](Napi::Env env, Napi::Function, AsyncRead* rr) {
    if (rr->status == CRATE_OK) {
      Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, rr->bytes.size());
      if (!rr->bytes.empty()) std::memcpy(buf.Data(), rr->bytes.data(), rr->bytes.size());
      rr->deferred.Resolve(buf);
    } else {
      rr->deferred.Reject(Napi::Error::New(env, "data (cuda): " + rr->error).Value());
    }
    rr->keep.Reset();
    rr->tsfn.Release();
    delete rr;
  });
}

Napi::Value ReadAsync(const Napi::CallbackInfo& info) {
  Args a(info, "data");
  Storage* s = a.storage(0, "x");
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  if (s->device == Device::cpu) {
    Napi::ArrayBuffer buf = Napi::ArrayBuffer::New(env, s->nbytes);
    if (s->nbytes) std::memcpy(buf.Data(), s->data, s->nbytes);
    deferred.Resolve(buf);
    return deferred.Promise();
  }
  const CudaApi& api = cuda_api(a);
  auto* r = new AsyncRead{deferred,
                          Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                                        "crate.readAsync", 0, 1),
                          std::vector<uint8_t>(s->nbytes),
                          CRATE_OK,
                          "",
                          Napi::Persistent(info[0].As<Napi::Object>())};
  crate_status st = api.crate_cuda_memcpy_d2h_async(r->bytes.data(), s->data, s->nbytes, nullptr, &async_read_done, r);
  if (st != CRATE_OK) {
    std::string msg = api.crate_cuda_last_error();
    r->keep.Reset();
    r->tsfn.Release();
    delete r;
    throw Napi::Error::New(env, "data (cuda): " + msg);
  }
  return deferred.Promise();
}

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Args a(info, "setNumThreads");
  set_num_threads(static_cast<int>(a.i64(0, "n")));
  return Napi::Number::New(info.Env(), num_threads());
}

Napi::Value SetGemmBackend(const Napi::CallbackInfo& info) {
  Args a(info, "setGemmBackend");
  std::string b = a.str(0, "backend");
  if (b == "own") {
    cpu::set_gemm_backend(cpu::GemmBackend::own);
  } else if (b == "blas") {
    cpu::set_gemm_backend(cpu::GemmBackend::blas);
  } else {
    a.fail("backend must be 'own' or 'blas', got '" + b + "'");
  }
  return info.Env().Undefined();
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports["NativeStorage"] = StorageWrap::Init(env);
  exports["info"] = Napi::Function::New(env, Info, "info");
  exports["memory"] = Napi::Function::New(env, Memory, "memory");
  exports["setNumThreads"] = Napi::Function::New(env, SetNumThreads, "setNumThreads");
  exports["emptyCache"] = Napi::Function::New(env, EmptyCache, "emptyCache");
  exports["setGemmBackend"] = Napi::Function::New(env, SetGemmBackend, "setGemmBackend");
  exports["setAllowTF32"] = Napi::Function::New(env, SetAllowTF32, "setAllowTF32");
  exports["synchronize"] = Napi::Function::New(env, Synchronize, "synchronize");
  exports["readAsync"] = Napi::Function::New(env, ReadAsync, "readAsync");
  register_ops(env, exports);
  register_crate_ops(env, exports);
  return exports;
}

}  // namespace crate::binding

static Napi::Object InitCrateAddon(Napi::Env env, Napi::Object exports) { return crate::binding::Init(env, exports); }
NODE_API_MODULE(crate_addon, InitCrateAddon)
