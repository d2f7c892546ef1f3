// cuda_api.cc: loads libcrate_cuda.so with dlopen, queries the device, resolves the C ABI into a
// table and installs the CUDA caching allocator as the storage allocator for Device::cuda.
#include "cuda_api.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "../core/storage.h"
#include "binding.h"

namespace crate::binding {
namespace {

CudaState g_state;
std::once_flag g_once;
std::atomic<bool> g_tf32{false};

std::string addon_dir() {
  Dl_info di;
  if (dladdr(reinterpret_cast<void*>(&addon_dir), &di) && di.dli_fname) {
    std::string p = di.dli_fname;
    auto slash = p.rfind('/');
    return slash == std::string::npos ? "." : p.substr(0, slash);
  }
  return ".";
}

void* cuda_alloc(size_t bytes, bool zero) {
  const CudaApi& api = g_state.api;
  void* p = nullptr;
  if (api.crate_cuda_malloc(&p, bytes, nullptr) != CRATE_OK) throw Error(api.crate_cuda_last_error());
  if (zero && bytes) {
    // storage sizes are multiples of 64 bytes, so an i32 fill of bytes/4 zeros covers them
    if (api.crate_cuda_fill_i32(static_cast<int32_t*>(p), static_cast<int64_t>(bytes / 4), 0.0, nullptr) != CRATE_OK) {
      std::string msg = api.crate_cuda_last_error();
      api.crate_cuda_free(p, nullptr);
      throw Error(msg);
    }
  }
  return p;
}

void cuda_free(void* p, size_t) {
  if (p) g_state.api.crate_cuda_free(p, nullptr);  // an error here is sticky and reported by the next op
}

void load() {
  CudaState& s = g_state;
  s.tried = true;
  if (const char* t = std::getenv("CRATE_ALLOW_TF32")) g_tf32 = std::string(t) == "1";
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
    s.handle = h;
    s.path = c;
    break;
  }
  if (!s.handle) {
    s.load_error = "the CUDA backend library was not found or failed to load:\n" + tried +
                   "(it is built only when nvcc is present at install time; rebuild with `npm run build:native`)";
    return;
  }
  auto query = reinterpret_cast<crate_cuda_query_fn>(dlsym(s.handle, "crate_cuda_query"));
  if (!query) {
    s.load_error = s.path + " has no crate_cuda_query symbol (a stale or foreign library?)";
    return;
  }
  if (query(&s.info) != 0) {
    s.load_error = s.info.error;
    return;
  }
  std::string missing;
#define CRATE_CUDA_RESOLVE(name)                                               \
  s.api.name = reinterpret_cast<decltype(s.api.name)>(dlsym(s.handle, #name)); \
  if (!s.api.name) missing += std::string(missing.empty() ? "" : ", ") + #name;
  CRATE_CUDA_FUNCS(CRATE_CUDA_RESOLVE)
#undef CRATE_CUDA_RESOLVE
  if (!missing.empty()) {
    s.load_error = s.path + " lacks entry points: " + missing + " (rebuild the native addon)";
    return;
  }
  if (s.api.crate_cuda_init(0) != CRATE_OK) {
    s.load_error = std::string("crate_cuda_init failed: ") + s.api.crate_cuda_last_error();
    return;
  }
  set_cuda_allocator(DeviceAllocator{&cuda_alloc, &cuda_free});
  s.usable = true;
}

}  // namespace

const CudaState& cuda_state() {
  std::call_once(g_once, load);
  return g_state;
}

const CudaApi& cuda_api(const Args& a) {
  const CudaState& s = cuda_state();
  if (!s.usable) a.fail("CUDA is not available: " + s.load_error);
  return s.api;
}

void cuda_unsupported_dtype(const Args& a, const char* name, DType dt, const char* supported) {
  a.fail(std::string("argument '") + name + "' has dtype " + dtype_name(dt) +
         ", which is not supported on cuda by this op (" + supported + ")");
}

void cuda_check(const Args& a, crate_status st) {
  if (st == CRATE_OK) return;
  const char* msg = g_state.api.crate_cuda_last_error ? g_state.api.crate_cuda_last_error() : "unknown CUDA error";
  Napi::Error err = Napi::Error::New(a.env(), std::string(a.op()) + " (cuda): " + (msg ? msg : ""));
  const char* code = st == CRATE_ERR_NUMERICAL          ? "CRATE_NUMERICAL"
                     : st == CRATE_ERR_OUT_OF_MEMORY    ? "CRATE_OOM"
                     : st == CRATE_ERR_INVALID_ARGUMENT ? "CRATE_INVALID_ARGUMENT"
                                                        : "CRATE_CUDA";
  err.Set("code", Napi::String::New(a.env(), code));
  throw err;
}

bool cuda_allow_tf32() { return g_tf32.load(); }
void set_cuda_allow_tf32(bool on) { g_tf32 = on; }

}  // namespace crate::binding
