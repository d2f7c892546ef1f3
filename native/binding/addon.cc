// addon.cc: module entry: registers the op functions and the library-level calls
// (info, memory stats, thread count, GEMM backend) and loads the CUDA backend library
// (libcrate_cuda.so beside the addon, or CRATE_CUDA_LIB) with dlopen when present.
#include <dlfcn.h>

#include <string>

#include "../core/parallel.h"
#include "../cpu/gemm.h"
#include "../cuda/cuda_backend_api.h"
#include "binding.h"

namespace crate::binding {
namespace {

struct CudaState {
  bool tried = false;
  void* handle = nullptr;
  std::string path, load_error;
  crate_cuda_info info{};
  bool usable = false;
};
CudaState g_cuda;

std::string addon_dir() {
  Dl_info di;
  if (dladdr(reinterpret_cast<void*>(&addon_dir), &di) && di.dli_fname) {
    std::string p = di.dli_fname;
    auto slash = p.rfind('/');
    return slash == std::string::npos ? "." : p.substr(0, slash);
  }
  return ".";
}

void load_cuda() {
  if (g_cuda.tried) return;
  g_cuda.tried = true;
  std::string tried;
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("CRATE_CUDA_LIB")) candidates.push_back(env);
  candidates.push_back(addon_dir() + "/libcrate_cuda.so");
  for (const auto& c : candidates) {
    void* h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      tried += "  " + c + ": " + (e ? e : "unknown error") + "\n";
      continue;
    }
    g_cuda.handle = h;
    g_cuda.path = c;
    break;
  }
  if (!g_cuda.handle) {
    g_cuda.load_error = "the CUDA backend library was not found or failed to load:\n" + tried +
                        "(built only when nvcc is present at install time; rebuild with `npm run build:native`)";
    return;
  }
  auto query = reinterpret_cast<crate_cuda_query_fn>(dlsym(g_cuda.handle, "crate_cuda_query"));
  if (!query) {
    g_cuda.load_error = g_cuda.path + " has no crate_cuda_query symbol";
    return;
  }
  g_cuda.usable = query(&g_cuda.info) == 0;
  if (!g_cuda.usable) g_cuda.load_error = g_cuda.info.error;
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  load_cuda();
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
    o["cuda"] = c;
  }
  const auto& bi = cpu::blas_info();
  o["blasLibrary"] = bi.found ? Napi::Value(Napi::String::New(env, bi.path)) : env.Null();
  o["blasReason"] = bi.found ? env.Null() : Napi::Value(Napi::String::New(env, bi.reason));
  o["gemmBackend"] = cpu::gemm_backend() == cpu::GemmBackend::blas ? "blas" : "own";
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
    o[names[d]] = m;
  }
  return o;
}

Napi::Value EmptyCache(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(host_empty_cache()));
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
  register_ops(env, exports);
  register_crate_ops(env, exports);
  return exports;
}

}  // namespace crate::binding

static Napi::Object InitCrateAddon(Napi::Env env, Napi::Object exports) { return crate::binding::Init(env, exports); }
NODE_API_MODULE(crate_addon, InitCrateAddon)
