// blas_loader.cc: dlopen a CBLAS and resolve the few entry points the GEMM uses. No headers or
// link-time dependency; CBLAS enum values are the standard ones (RowMajor 101, NoTrans 111).
#include "blas_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace crate::cpu::blas {
namespace {

Api load() {
  Api a;
  std::vector<std::string> names;
  if (const char* env = std::getenv("CRATE_BLAS_LIB")) names.push_back(env);
  for (const char* n :
       {"libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0", "libblis.so.4", "libmkl_rt.so", "libblas.so.3"})
    names.push_back(n);
  std::string tried;
  for (const auto& n : names) {
    void* h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      tried += n + ": " + (e ? e : "not found") + "; ";
      continue;
    }
    auto sgemm = reinterpret_cast<decltype(a.sgemm)>(dlsym(h, "cblas_sgemm"));
    auto dgemm = reinterpret_cast<decltype(a.dgemm)>(dlsym(h, "cblas_dgemm"));
    if (!sgemm || !dgemm) {
      tried += n + ": no cblas_sgemm/cblas_dgemm; ";
      dlclose(h);
      continue;
    }
    const bool is_openblas = dlsym(h, "openblas_get_config") != nullptr;
    if (n == "libblas.so.3" && !is_openblas && !std::getenv("CRATE_BLAS_LIB")) {
      tried += n + ": the reference BLAS (not OpenBLAS), slower than the own kernel, not used; ";
      dlclose(h);
      continue;
    }
    a.sgemm = sgemm;
    a.dgemm = dgemm;
    a.set_num_threads = reinterpret_cast<void (*)(int)>(dlsym(h, "openblas_set_num_threads"));
    a.path = n;
    return a;
  }
  a.reason = "no CBLAS library found (" + tried + "); install libopenblas0 or set CRATE_BLAS_LIB";
  return a;
}

}  // namespace

const Api& api() {
  static Api a = load();
  return a;
}

}  // namespace crate::cpu::blas
