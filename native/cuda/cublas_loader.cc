// cublas_loader.cc: dlopen cuBLASLt (else cuBLAS) and resolve the entry points the GEMM uses.
// Search order and the constants used: cublas_loader.h. Every attempt is recorded so that
// crate_cuda_gemm_backend() can say why the own GEMM is in use.
#include "cublas_loader.h"

#include <dlfcn.h>
#include <glob.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

namespace crate::cuda::blas {
namespace {

bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_file(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
}

/** Paths matching a glob pattern, newest version first (strverscmp: cuda-12.10 > cuda-12.9). */
std::vector<std::string> glob_dirs(const std::string& pattern) {
  std::vector<std::string> out;
  glob_t g;
  if (glob(pattern.c_str(), GLOB_ONLYDIR, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) out.emplace_back(g.gl_pathv[i]);
  }
  globfree(&g);
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return strverscmp(a.c_str(), b.c_str()) > 0; });
  return out;
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

std::vector<std::string> split_path(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(':', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

/** Every folder to look in after the default dlopen search, in order, without duplicates. */
std::vector<std::string> search_dirs() {
  std::vector<std::string> dirs;
  auto add = [&](const std::string& d) {
    if (!d.empty() && std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
  };
  for (const char* var : {"CUDA_HOME", "CUDA_PATH"}) {
    const std::string root = env(var);
    if (!root.empty()) add(root + "/lib64");
  }
  add("/usr/local/cuda/lib64");
  add("/usr/local/cuda/targets/x86_64-linux/lib");
  for (const auto& d : glob_dirs("/usr/local/cuda-*/lib64")) add(d);
  add("/usr/lib/x86_64-linux-gnu");
  const std::string conda = env("CONDA_PREFIX");
  if (!conda.empty()) add(conda + "/lib");

  // Python package folders: pip's nvidia-cublas wheels.
  std::vector<std::string> sites;
  for (const auto& p : split_path(env("PYTHONPATH"))) sites.push_back(p);
  const std::string venv = env("VIRTUAL_ENV");
  if (!venv.empty())
    for (const auto& d : glob_dirs(venv + "/lib/python3*/site-packages")) sites.push_back(d);
  if (!conda.empty())
    for (const auto& d : glob_dirs(conda + "/lib/python3*/site-packages")) sites.push_back(d);
  const std::string home = env("HOME");
  if (!home.empty())
    for (const auto& d : glob_dirs(home + "/.local/lib/python3*/site-packages")) sites.push_back(d);
  for (const char* pattern : {"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
                              "/usr/lib/python3*/dist-packages", "/usr/lib/python3*/site-packages"})
    for (const auto& d : glob_dirs(pattern)) sites.push_back(d);
  for (const auto& s : sites) {
    add(s + "/nvidia/cu13/lib");
    add(s + "/nvidia/cublas/lib");
  }
  return dirs;
}

template <class F>
bool sym(void* h, const char* name, F*& out, std::string* missing) {
  out = reinterpret_cast<F*>(dlsym(h, name));
  if (out == nullptr && missing != nullptr) {
    if (!missing->empty()) *missing += ", ";
    *missing += name;
  }
  return out != nullptr;
}

/** Resolves the cuBLASLt entry points; "" on success, else the missing names. */
std::string bind_lt(void* h, Api& a) {
  std::string missing;
  sym(h, "cublasLtCreate", a.ltCreate, &missing);
  sym(h, "cublasLtDestroy", a.ltDestroy, &missing);
  sym(h, "cublasLtGetVersion", a.ltGetVersion, &missing);
  sym(h, "cublasLtMatmulDescCreate", a.ltMatmulDescCreate, &missing);
  sym(h, "cublasLtMatmulDescDestroy", a.ltMatmulDescDestroy, &missing);
  sym(h, "cublasLtMatmulDescSetAttribute", a.ltMatmulDescSetAttribute, &missing);
  sym(h, "cublasLtMatrixLayoutCreate", a.ltMatrixLayoutCreate, &missing);
  sym(h, "cublasLtMatrixLayoutDestroy", a.ltMatrixLayoutDestroy, &missing);
  sym(h, "cublasLtMatrixLayoutSetAttribute", a.ltMatrixLayoutSetAttribute, &missing);
  sym(h, "cublasLtMatmulPreferenceCreate", a.ltMatmulPreferenceCreate, &missing);
  sym(h, "cublasLtMatmulPreferenceDestroy", a.ltMatmulPreferenceDestroy, &missing);
  sym(h, "cublasLtMatmulPreferenceSetAttribute", a.ltMatmulPreferenceSetAttribute, &missing);
  sym(h, "cublasLtMatmulAlgoGetHeuristic", a.ltMatmulAlgoGetHeuristic, &missing);
  sym(h, "cublasLtMatmul", a.ltMatmul, &missing);
  sym(h, "cublasLtGetStatusString", a.ltGetStatusString, nullptr);
  return missing;
}

std::string bind_blas(void* h, Api& a) {
  std::string missing;
  sym(h, "cublasCreate_v2", a.create, &missing);
  sym(h, "cublasDestroy_v2", a.destroy, &missing);
  sym(h, "cublasSetStream_v2", a.setStream, &missing);
  sym(h, "cublasGemmStridedBatchedEx", a.gemmStridedBatchedEx, &missing);
  sym(h, "cublasGetProperty", a.getProperty, nullptr);
  return missing;
}

/** The file a library was loaded from (resolves sonames found through the default search). */
std::string loaded_path(void* fn, const std::string& fallback) {
  Dl_info info;
  if (fn != nullptr && dladdr(fn, &info) != 0 && info.dli_fname != nullptr && info.dli_fname[0] != '\0')
    return info.dli_fname;
  return fallback;
}

struct Loader {
  Api& a;
  std::string log;

  void note(const std::string& s) {
    if (!log.empty()) log += "; ";
    log += s;
  }

  // dlopen one candidate and bind; records why it failed.
  bool try_open(const std::string& name, bool lt) {
    dlerror();
    void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* e = dlerror();
      note(e != nullptr ? std::string(e) : name + ": cannot be loaded");
      return false;
    }
    Api fresh;
    const std::string missing = lt ? bind_lt(h, fresh) : bind_blas(h, fresh);
    if (!missing.empty()) {
      note(name + ": loads but lacks " + missing);
      dlclose(h);
      return false;
    }
    fresh.lt = lt;
    fresh.blas = !lt;
    if (lt) {
      const size_t v = fresh.ltGetVersion();
      fresh.version = std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
      fresh.path = loaded_path(reinterpret_cast<void*>(fresh.ltCreate), name);
    } else {
      int major = 0, minor = 0, patch = 0;
      if (fresh.getProperty != nullptr && fresh.getProperty(kPropMajor, &major) == kStatusSuccess &&
          fresh.getProperty(kPropMinor, &minor) == kStatusSuccess &&
          fresh.getProperty(kPropPatch, &patch) == kStatusSuccess)
        fresh.version = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
      else
        fresh.version = "(version unknown)";
      fresh.path = loaded_path(reinterpret_cast<void*>(fresh.create), name);
    }
    a = fresh;
    return true;
  }

  bool search(bool lt, const std::vector<std::string>& dirs) {
    const char* var = lt ? "CRATE_CUBLASLT_LIB" : "CRATE_CUBLAS_LIB";
    const std::string base = lt ? "libcublasLt.so" : "libcublas.so";
    const std::string over = env(var);
    if (!over.empty()) {
      if (try_open(over, lt)) return true;
      note(std::string("($") + var + " did not load; searching on)");
    }
    const std::vector<std::string> names = {base + ".13", base + ".12", base + ".11", base};
    for (const auto& n : names)
      if (try_open(n, lt)) return true;
    std::string absent;
    for (const auto& d : dirs) {
      if (!is_dir(d)) {
        absent += (absent.empty() ? "" : ", ") + d;
        continue;
      }
      bool any = false;
      for (const auto& n : names) {
        const std::string p = d + "/" + n;
        if (!is_file(p)) continue;
        any = true;
        if (try_open(p, lt)) return true;
      }
      if (!any) note(d + ": no " + base + ".{13,12,11,} there");
    }
    if (!absent.empty()) note("folders not present: " + absent);
    return false;
  }
};

Api load() {
  Api a;
  Loader l{a, {}};
  const std::vector<std::string> dirs = search_dirs();
  if (l.search(true, dirs)) {
    a.attempts = l.log;
    return a;
  }
  const std::string lt_log = l.log;
  l.log.clear();
  if (l.search(false, dirs)) {
    a.attempts = "cuBLASLt: " + lt_log;
    return a;
  }
  a.attempts = "cuBLASLt: " + lt_log + " | cuBLAS: " + l.log +
               " | install the CUDA toolkit's cuBLAS (or `pip install nvidia-cublas`) or set CRATE_CUBLASLT_LIB";
  return a;
}

}  // namespace

const Api& api() {
  static const Api a = load();
  return a;
}

std::string describe(const Api& a) {
  if (a.lt) return "cublasLt " + a.version + " (" + a.path + ")";
  if (a.blas) return "cublas " + a.version + " (" + a.path + ")";
  return "";
}

std::string status_name(Status s) {
  static const struct {
    Status code;
    const char* name;
  } kNames[] = {{0, "CUBLAS_STATUS_SUCCESS"},           {1, "CUBLAS_STATUS_NOT_INITIALIZED"},
                {3, "CUBLAS_STATUS_ALLOC_FAILED"},      {7, "CUBLAS_STATUS_INVALID_VALUE"},
                {8, "CUBLAS_STATUS_ARCH_MISMATCH"},     {11, "CUBLAS_STATUS_MAPPING_ERROR"},
                {13, "CUBLAS_STATUS_EXECUTION_FAILED"}, {14, "CUBLAS_STATUS_INTERNAL_ERROR"},
                {15, "CUBLAS_STATUS_NOT_SUPPORTED"},    {16, "CUBLAS_STATUS_LICENSE_ERROR"}};
  std::string name = "cublasStatus";
  for (const auto& n : kNames)
    if (n.code == s) name = n.name;
  return name + " (" + std::to_string(s) + ")";
}

}  // namespace crate::cuda::blas
