// runtime.cu: the runtime half of libcrate_cuda.so: the error model (thread-local messages,
// sticky-error poisoning, CRATE_SYNC), devices and the library's streams, the caching device
// allocator behind crate_cuda_malloc / Scratch, pinned staging for host<->device copies, and the
// C entry points of the "runtime" section of crate_cuda.h.
//
// Caching allocator
//   - Requests are rounded to a size class: a multiple of 512 B below 1 MiB, of 2 MiB above.
//   - Every block the allocator owns is in `blocks_` (pointer -> Block); a block is either live
//     (handed out) or cached in the free list of the (device, stream) it was freed on.
//   - A request on stream s takes a cached block of s at once (stream order makes that safe),
//     else a cached block of another stream of the same device whose event -- recorded on the
//     freeing stream at free time -- has completed (cudaEventQuery), else calls cudaMalloc.
//   - A cached block is reused for a request when it is at most 2x the class (small classes) or
//     1/8 over the class (large classes); blocks are never split.
//   - cudaErrorMemoryAllocation: the device's cached blocks are released (cudaDeviceSynchronize,
//     then cudaFree) and cudaMalloc is retried once; then CRATE_ERR_OUT_OF_MEMORY.
//   - Freeing an unknown pointer or a cached one (double free) is CRATE_ERR_INVALID_ARGUMENT.
//   - Caveat: a user stream destroyed while blocks are cached for it may see its handle value
//     reused by a new stream, which would then reuse those blocks without waiting (the same
//     assumption PyTorch's allocator makes); crate_cuda_empty_cache() before destroying avoids it.
//
// Pinned staging
//   - Host->device copies up to 32 MiB are copied into a pinned buffer and queued with
//     cudaMemcpyAsync, so the call returns at once and the caller may reuse its memory; the
//     buffer goes back to the pool when an event recorded after the copy completes. Larger
//     host->device copies are cudaMemcpyAsync + cudaStreamSynchronize (still "the caller may
//     reuse its memory on return", without pinning gigabytes).
//   - crate_cuda_memcpy_d2h_async copies into a pinned buffer and adds a stream callback
//     (cudaStreamAddCallback, not cudaLaunchHostFunc: a host function is never called after a
//     device error, which would leave the caller waiting forever; a stream callback runs exactly
//     once and receives the error). The callback copies into dst, hands the buffer back to a
//     lock-protected list (no CUDA calls inside a callback) and calls done(user, status).
//   - Singletons are heap-allocated and never destroyed: nothing touches CUDA from static
//     destructors at process exit, when the driver may already be gone.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common.cuh"

namespace crate::cuda {
namespace {

// ------------------------------------------------------------------ errors

thread_local std::string t_last_error;

std::atomic<bool> g_poisoned{false};

std::mutex& poison_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::string& poison_message() {
  static auto* s = new std::string;
  return *s;
}

// Errors after which the CUDA context cannot be used again (driver_types.h: "This leaves the
// process in an inconsistent state and any further CUDA work will return the same error").
// Numeric codes so the list compiles with older toolkits that lack some of the names.
bool is_sticky(cudaError_t e) {
  switch (static_cast<int>(e)) {
    case 214:  // cudaErrorECCUncorrectable
    case 220:  // cudaErrorNvlinkUncorrectable
    case 226:  // cudaErrorContained
    case 700:  // cudaErrorIllegalAddress
    case 702:  // cudaErrorLaunchTimeout
    case 710:  // cudaErrorAssert
    case 714:  // cudaErrorHardwareStackError
    case 715:  // cudaErrorIllegalInstruction
    case 716:  // cudaErrorMisalignedAddress
    case 717:  // cudaErrorInvalidAddressSpace
    case 718:  // cudaErrorInvalidPc
    case 719:  // cudaErrorLaunchFailure
    case 721:  // cudaErrorTensorMemoryLeak
    case 810:  // cudaErrorMpsClientTerminated
    case 911:  // cudaErrorExternalDevice
      return true;
    default:
      return false;
  }
}

std::string err_str(cudaError_t e) {
  const char* name = cudaGetErrorName(e);
  const char* text = cudaGetErrorString(e);
  std::string s = name ? name : ("cudaError " + std::to_string(static_cast<int>(e)));
  if (text) s += std::string(" (") + text + ")";
  return s;
}

void poison(cudaError_t e, const char* what) {
  std::lock_guard<std::mutex> lock(poison_mutex());
  if (g_poisoned.load(std::memory_order_relaxed)) return;  // keep the first error
  poison_message() = "the CUDA context is unusable after " + err_str(e) + " in " + what + "; restart the process";
  g_poisoned.store(true, std::memory_order_release);
}

std::string fmt_bytes(size_t n) {
  char buf[64];
  if (n >= (size_t{1} << 30))
    std::snprintf(buf, sizeof(buf), "%zu bytes (%.2f GiB)", n, static_cast<double>(n) / (1 << 30));
  else if (n >= (size_t{1} << 20))
    std::snprintf(buf, sizeof(buf), "%zu bytes (%.2f MiB)", n, static_cast<double>(n) / (1 << 20));
  else
    std::snprintf(buf, sizeof(buf), "%zu bytes", n);
  return buf;
}

std::string ptr_str(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%p", p);
  return buf;
}

bool sync_mode() {
  static const bool on = [] {
    const char* e = std::getenv("CRATE_SYNC");
    return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
  }();
  return on;
}

/** Makes `device` current for the scope when it is not (cheap when it already is). */
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != device) {
      check(cudaSetDevice(device), "cudaSetDevice");
      switched_ = true;
    }
  }
  ~DeviceGuard() {
    if (switched_ && cudaSetDevice(prev_) != cudaSuccess) cudaGetLastError();
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
};

int current_device() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  return dev;
}

// ------------------------------------------------------------------ devices and streams

constexpr int kMaxDevices = 64;

struct DeviceSlot {
  std::mutex mu;
  std::atomic<cudaStream_t> stream{nullptr};
};

DeviceSlot* device_slots() {
  static auto* slots = new DeviceSlot[kMaxDevices];
  return slots;
}

/** The library's non-blocking stream of `device`, created on first use (thread-safe). */
cudaStream_t device_stream(int device) {
  if (device < 0 || device >= kMaxDevices)
    throw Error(CRATE_ERR_CUDA, "device " + std::to_string(device) + " is beyond the " + std::to_string(kMaxDevices) +
                                    " devices this library supports");
  DeviceSlot& slot = device_slots()[device];
  cudaStream_t s = slot.stream.load(std::memory_order_acquire);
  if (s != nullptr) return s;
  std::lock_guard<std::mutex> lock(slot.mu);
  s = slot.stream.load(std::memory_order_relaxed);
  if (s != nullptr) return s;
  DeviceGuard g(device);
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  slot.stream.store(s, std::memory_order_release);
  return s;
}

std::string no_device_message(cudaError_t e) {
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  cudaGetLastError();
  std::string msg = "no usable CUDA device: cudaGetDeviceCount failed with " + err_str(e) + "; ";
  if (driver == 0)
    msg += "no NVIDIA driver was found (libcuda.so.1 could not be loaded)";
  else if (e == cudaErrorInsufficientDriver)
    msg += "the NVIDIA driver (CUDA " + std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10) +
           ") is older than this library's CUDA runtime (" + std::to_string(runtime / 1000) + "." +
           std::to_string(runtime % 1000 / 10) + "): update the driver";
  else
    msg += "driver supports CUDA " + std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10) +
           ", runtime is CUDA " + std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10);
  const char* vis = std::getenv("CUDA_VISIBLE_DEVICES");
  if (vis != nullptr) msg += std::string("; CUDA_VISIBLE_DEVICES=") + vis;
  return msg;
}

// ------------------------------------------------------------------ caching allocator

constexpr size_t kSmallLimit = size_t{1} << 20;  // 1 MiB
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{2} << 20;  // 2 MiB

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

size_t size_class(size_t n) { return n < kSmallLimit ? round_up(n, kSmallRound) : round_up(n, kLargeRound); }

/** Whether a cached block of `block` bytes may serve a request of class `cls`. */
bool fits(size_t block, size_t cls) {
  if (block < cls) return false;
  if (cls <= kSmallLimit) return block <= kSmallLimit && block <= 2 * cls;
  return block > kSmallLimit && block - cls <= cls / 8;
}

struct Block {
  void* ptr = nullptr;
  size_t size = 0;  // the size class: what cudaMalloc was asked for
  int device = 0;
  cudaStream_t stream = nullptr;  // the stream of the last alloc/free
  cudaEvent_t event = nullptr;    // recorded on `stream` at free (created on first free)
  bool event_valid = false;       // the record succeeded (else: reuse on `stream` only)
  bool live = false;
};

class Allocator {
 public:
  void* alloc(size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return nullptr;
    if (bytes > SIZE_MAX - kLargeRound)
      throw Error(CRATE_ERR_OUT_OF_MEMORY, "out of device memory: asked " + fmt_bytes(bytes));
    const size_t cls = size_class(bytes);
    const int dev = current_device();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (Block* b = take_cached(dev, stream, cls)) {
        ++num_allocs_;
        b->live = true;
        b->stream = stream;
        cached_ -= b->size;
        allocated_ += b->size;
        peak_ = std::max(peak_, allocated_);
        return b->ptr;
      }
    }
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, cls);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear: not sticky
      const size_t released = empty_device(dev);
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++num_oom_retries_;
      }
      e = cudaMalloc(&p, cls);
      if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
        size_t live_b;
        {
          std::lock_guard<std::mutex> lock(mu_);
          live_b = allocated_;
        }
        throw Error(CRATE_ERR_OUT_OF_MEMORY,
                    "out of device memory: asked " + fmt_bytes(bytes) +
                        (cls != bytes ? " (size class " + fmt_bytes(cls) + ")" : std::string()) + ", " +
                        fmt_bytes(free_b) + " free of " + fmt_bytes(total_b) + " on device " + std::to_string(dev) +
                        ", " + fmt_bytes(released) + " cached (released before retrying), " + fmt_bytes(live_b) +
                        " allocated by crate; free tensors or use smaller batches");
      }
    }
    check(e, "cudaMalloc");
    auto* b = new Block;
    b->ptr = p;
    b->size = cls;
    b->device = dev;
    b->stream = stream;
    b->live = true;
    std::lock_guard<std::mutex> lock(mu_);
    blocks_[p] = b;
    ++num_allocs_;
    allocated_ += cls;
    peak_ = std::max(peak_, allocated_);
    ++num_device_allocs_;
    return p;
  }

  /** Frees ptr, stream-ordered on `stream` (NULL: the library's stream of the block's device). */
  void free(void* ptr, void* stream) {
    if (ptr == nullptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(ptr);
    if (it == blocks_.end())
      throw Error(CRATE_ERR_INVALID_ARGUMENT, "pointer " + ptr_str(ptr) +
                                                  " was not allocated by crate_cuda_malloc (or was freed and its "
                                                  "block already released)");
    Block* b = it->second;
    if (!b->live)
      throw Error(CRATE_ERR_INVALID_ARGUMENT,
                  "double free of " + ptr_str(ptr) + " (a " + fmt_bytes(b->size) + " block already freed)");
    cudaStream_t s = stream != nullptr ? static_cast<cudaStream_t>(stream) : device_stream(b->device);
    b->live = false;
    b->stream = s;
    b->event_valid = false;
    allocated_ -= b->size;
    cached_ += b->size;
    pools_[{b->device, s}].emplace(b->size, b);
    // The event marks the point on s after which other streams may reuse the block.
    DeviceGuard g(b->device);
    if (b->event == nullptr)
      check(cudaEventCreateWithFlags(&b->event, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    check(cudaEventRecord(b->event, s), "cudaEventRecord");
    b->event_valid = true;
  }

  /** Releases the cached blocks of one device (-1: all devices); returns the bytes released. */
  size_t empty(int only_device) {
    std::vector<Block*> victims;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = pools_.begin(); it != pools_.end();) {
        if (only_device >= 0 && it->first.first != only_device) {
          ++it;
          continue;
        }
        for (auto& kv : it->second) {
          victims.push_back(kv.second);
          blocks_.erase(kv.second->ptr);
          cached_ -= kv.second->size;
        }
        it = pools_.erase(it);
      }
    }
    if (victims.empty()) return 0;
    std::sort(victims.begin(), victims.end(), [](const Block* a, const Block* b) { return a->device < b->device; });
    size_t released = 0;
    size_t i = 0;
    while (i < victims.size()) {
      const int dev = victims[i]->device;
      DeviceGuard g(dev);
      // Cached blocks may still be read by work queued before their free: wait for it.
      check(cudaDeviceSynchronize(), "cudaDeviceSynchronize (emptying the cache)");
      for (; i < victims.size() && victims[i]->device == dev; ++i) {
        Block* b = victims[i];
        check(cudaFree(b->ptr), "cudaFree (emptying the cache)");
        if (b->event != nullptr) cudaEventDestroy(b->event);
        released += b->size;
        delete b;
      }
    }
    return released;
  }

  size_t empty_device(int dev) { return empty(dev); }

  void stats(crate_cuda_memory_stats* out) {
    std::lock_guard<std::mutex> lock(mu_);
    out->allocated_bytes = allocated_;
    out->cached_bytes = cached_;
    out->peak_allocated_bytes = peak_;
    out->num_allocs = num_allocs_;
    out->num_device_allocs = num_device_allocs_;
    out->num_oom_retries = num_oom_retries_;
  }

 private:
  using Pool = std::multimap<size_t, Block*>;

  // Called with mu_ held.
  Block* take_cached(int dev, cudaStream_t stream, size_t cls) {
    auto own = pools_.find({dev, stream});
    if (own != pools_.end()) {
      auto it = own->second.lower_bound(cls);
      if (it != own->second.end() && fits(it->first, cls)) {
        Block* b = it->second;
        own->second.erase(it);
        return b;
      }
    }
    for (auto& kv : pools_) {
      if (kv.first.first != dev || kv.first.second == stream) continue;
      Pool& pool = kv.second;
      for (auto it = pool.lower_bound(cls); it != pool.end() && fits(it->first, cls); ++it) {
        Block* b = it->second;
        if (!b->event_valid) continue;
        const cudaError_t e = cudaEventQuery(b->event);
        if (e == cudaErrorNotReady) {
          cudaGetLastError();
          continue;
        }
        check(e, "cudaEventQuery (caching allocator)");
        pool.erase(it);
        return b;
      }
    }
    return nullptr;
  }

  std::mutex mu_;
  std::unordered_map<void*, Block*> blocks_;
  std::map<std::pair<int, cudaStream_t>, Pool> pools_;
  size_t allocated_ = 0, cached_ = 0, peak_ = 0;
  int64_t num_allocs_ = 0, num_device_allocs_ = 0, num_oom_retries_ = 0;
};

Allocator& allocator() {
  static auto* a = new Allocator;
  return *a;
}

// ------------------------------------------------------------------ pinned staging pool

constexpr size_t kPinnedMinClass = size_t{64} << 10;  // 64 KiB
constexpr size_t kPinnedIdleCap = size_t{256} << 20;  // idle pinned memory kept for reuse
constexpr size_t kStageMaxH2D = size_t{32} << 20;     // larger uploads: async copy + stream sync

size_t pinned_class(size_t n) {
  size_t c = kPinnedMinClass;
  while (c < n) c <<= 1;
  return c;
}

class PinnedPool {
 public:
  /** A pinned buffer of at least `bytes` bytes; *cls receives its size (needed to hand it back). */
  void* acquire(size_t bytes, size_t* cls) {
    *cls = pinned_class(bytes);
    void* p = nullptr;
    std::vector<void*> to_free;
    {
      std::lock_guard<std::mutex> lock(mu_);
      collect_locked();
      auto it = idle_.find(*cls);
      if (it != idle_.end()) {
        p = it->second;
        idle_bytes_ -= it->first;
        idle_.erase(it);
      }
      trim_locked(kPinnedIdleCap, &to_free);
    }
    for (void* q : to_free) check(cudaFreeHost(q), "cudaFreeHost");
    if (p != nullptr) return p;
    cudaError_t e = cudaHostAlloc(&p, *cls, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_idle();
      e = cudaHostAlloc(&p, *cls, cudaHostAllocPortable);
      if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        throw Error(CRATE_ERR_OUT_OF_MEMORY,
                    "out of pinned host memory: asked " + fmt_bytes(*cls) + " of page-locked staging memory");
      }
    }
    check(e, "cudaHostAlloc");
    return p;
  }

  /** Back to the pool at once (nothing was queued that uses it). */
  void give_back(void* p, size_t cls) {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.emplace(cls, p);
    idle_bytes_ += cls;
  }

  /** Back to the pool once the work queued on `stream` so far has completed. */
  void give_back_after(void* p, size_t cls, cudaStream_t stream) {
    const int dev = current_device();
    std::lock_guard<std::mutex> lock(mu_);
    cudaEvent_t ev = nullptr;
    auto& spare = spare_events_[dev];
    if (!spare.empty()) {
      ev = spare.back();
      spare.pop_back();
    } else {
      check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    }
    const cudaError_t e = cudaEventRecord(ev, stream);
    if (e != cudaSuccess) {
      spare.push_back(ev);
      // The buffer may still be in use and nothing tells when it is done: leak it.
      check(e, "cudaEventRecord (pinned staging)");
    }
    pending_.push_back({p, cls, ev, dev});
  }

  /** From a stream callback: no CUDA calls, only the lock. */
  void give_back_from_callback(void* p, size_t cls) noexcept {
    try {
      std::lock_guard<std::mutex> lock(mu_);
      returned_.emplace_back(p, cls);
    } catch (...) {
      // Out of host memory while growing the vector: the buffer leaks, nothing worse.
    }
  }

  /** Frees every idle pinned buffer; returns the bytes freed. */
  size_t release_idle() {
    std::vector<void*> to_free;
    size_t n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      collect_locked();
      n = idle_bytes_;
      trim_locked(0, &to_free);
    }
    for (void* q : to_free) check(cudaFreeHost(q), "cudaFreeHost");
    return n;
  }

 private:
  struct Pending {
    void* ptr;
    size_t cls;
    cudaEvent_t event;
    int device;
  };

  // Moves finished buffers to the idle list. Called with mu_ held.
  void collect_locked() {
    for (auto& r : returned_) {
      idle_.emplace(r.second, r.first);
      idle_bytes_ += r.second;
    }
    returned_.clear();
    for (size_t i = 0; i < pending_.size();) {
      const cudaError_t e = cudaEventQuery(pending_[i].event);
      if (e == cudaErrorNotReady) {
        cudaGetLastError();
        ++i;
        continue;
      }
      check(e, "cudaEventQuery (pinned staging)");
      idle_.emplace(pending_[i].cls, pending_[i].ptr);
      idle_bytes_ += pending_[i].cls;
      spare_events_[pending_[i].device].push_back(pending_[i].event);
      pending_[i] = pending_.back();
      pending_.pop_back();
    }
  }

  // Drops idle buffers (largest first) until at most `keep` bytes stay idle. Called with mu_ held.
  void trim_locked(size_t keep, std::vector<void*>* to_free) {
    while (idle_bytes_ > keep && !idle_.empty()) {
      auto it = std::prev(idle_.end());
      to_free->push_back(it->second);
      idle_bytes_ -= it->first;
      idle_.erase(it);
    }
  }

  std::mutex mu_;
  std::multimap<size_t, void*> idle_;
  size_t idle_bytes_ = 0;
  std::vector<Pending> pending_;
  std::vector<std::pair<void*, size_t>> returned_;
  std::map<int, std::vector<cudaEvent_t>> spare_events_;
};

PinnedPool& pinned() {
  static auto* p = new PinnedPool;
  return *p;
}

struct D2HJob {
  void* dst;
  void* pin;
  size_t bytes;
  size_t cls;
  void (*done)(void*, crate_status);
  void* user;
};

void CUDART_CB d2h_callback(cudaStream_t, cudaError_t status, void* data) {
  std::unique_ptr<D2HJob> job(static_cast<D2HJob*>(data));
  crate_status st = CRATE_OK;
  if (status == cudaSuccess) {
    if (job->bytes > 0) std::memcpy(job->dst, job->pin, job->bytes);
  } else {
    // No CUDA calls here (not even cudaGetErrorName): the code is enough; the next API call on
    // any thread sees the error too and poisons the context when it is sticky.
    st = CRATE_ERR_CUDA;
    set_last_error("crate_cuda_memcpy_d2h_async: the copy failed with CUDA error " +
                   std::to_string(static_cast<int>(status)) + "; see crate_cuda_status()");
  }
  if (job->pin != nullptr) pinned().give_back_from_callback(job->pin, job->cls);
  if (job->done != nullptr) job->done(job->user, st);
}

}  // namespace

// ------------------------------------------------------------------ common.cuh

void set_last_error(const std::string& msg) { t_last_error = msg; }

void check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return;
  if (is_sticky(err)) {
    poison(err, what);
    throw Error(CRATE_ERR_CUDA, std::string(what) + " failed: " + err_str(err) +
                                    "; the CUDA context is now unusable, restart the process");
  }
  cudaGetLastError();  // clear the (non-sticky) error so that a later check does not report it again
  if (err == cudaErrorMemoryAllocation)
    throw Error(CRATE_ERR_OUT_OF_MEMORY, std::string(what) + " failed: " + err_str(err));
  throw Error(CRATE_ERR_CUDA, std::string(what) + " failed: " + err_str(err));
}

void check_launch(const char* what, cudaStream_t stream) {
  check(cudaGetLastError(), what);
  if (sync_mode()) check(cudaStreamSynchronize(stream), (std::string(what) + " (CRATE_SYNC=1)").c_str());
}

std::atomic<uint64_t> host_syncs{0};

void host_sync(cudaStream_t stream, const char* what) {
  host_syncs.fetch_add(1, std::memory_order_relaxed);
  check(cudaStreamSynchronize(stream), what);
}

void read_back(void* host, const void* dev, size_t bytes, cudaStream_t stream, const char* what) {
  check(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, stream), what);
  host_sync(stream, what);
}

cudaStream_t resolve_stream(void* stream) {
  if (stream != nullptr) return static_cast<cudaStream_t>(stream);
  return device_stream(current_device());
}

Scratch::Scratch(size_t bytes, cudaStream_t stream) : bytes_(bytes), stream_(stream) {
  ptr_ = allocator().alloc(bytes, stream);
}

Scratch::~Scratch() {
  if (ptr_ == nullptr) return;
  try {
    allocator().free(ptr_, stream_);
  } catch (...) {
    // Only a poisoned context gets here; the block is already back in the cache.
  }
}

}  // namespace crate::cuda

// ------------------------------------------------------------------ C ABI

using crate::cuda::check;
using crate::cuda::Error;
using crate::cuda::guard;

extern "C" {

CRATE_API const char* crate_cuda_last_error(void) { return crate::cuda::t_last_error.c_str(); }

CRATE_API crate_status crate_cuda_status(void) {
  if (!crate::cuda::g_poisoned.load(std::memory_order_acquire)) return CRATE_OK;
  std::string msg;
  {
    std::lock_guard<std::mutex> lock(crate::cuda::poison_mutex());
    msg = crate::cuda::poison_message();
  }
  crate::cuda::set_last_error(msg);
  return CRATE_ERR_CUDA;
}

CRATE_API crate_status crate_cuda_init(int device) {
  return guard("crate_cuda_init", [&] {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      if (crate::cuda::is_sticky(e)) check(e, "cudaGetDeviceCount");
      throw Error(CRATE_ERR_CUDA, crate::cuda::no_device_message(e));
    }
    if (count == 0) {
      const char* vis = std::getenv("CUDA_VISIBLE_DEVICES");
      throw Error(CRATE_ERR_CUDA,
                  std::string("no CUDA device visible (CUDA_VISIBLE_DEVICES=") + (vis ? vis : "<unset>") + ")");
    }
    CRATE_CUDA_REQUIRE(device >= 0 && device < count, "device",
                       std::to_string(device) + " is out of range: " + std::to_string(count) + " device(s) visible");
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaFree(nullptr), "creating the CUDA context");
    crate::cuda::device_stream(device);
  });
}

CRATE_API void* crate_cuda_default_stream(void) {
  cudaStream_t s = nullptr;
  const crate_status st = guard("crate_cuda_default_stream", [&] { s = crate::cuda::resolve_stream(nullptr); });
  return st == CRATE_OK ? static_cast<void*>(s) : nullptr;
}

CRATE_API crate_status crate_cuda_malloc(void** ptr, size_t bytes, void* stream) {
  return guard("crate_cuda_malloc", [&] {
    CRATE_CUDA_REQUIRE(ptr != nullptr, "ptr", "must not be NULL");
    *ptr = nullptr;
    if (bytes == 0) return;
    *ptr = crate::cuda::allocator().alloc(bytes, crate::cuda::resolve_stream(stream));
  });
}

CRATE_API crate_status crate_cuda_free(void* ptr, void* stream) {
  return guard("crate_cuda_free", [&] { crate::cuda::allocator().free(ptr, stream); });
}

CRATE_API size_t crate_cuda_empty_cache(void) {
  if (crate_cuda_status() != CRATE_OK) return 0;
  try {
    const size_t n = crate::cuda::allocator().empty(-1);
    crate::cuda::pinned().release_idle();  // idle pinned staging buffers too (host memory, not counted)
    return n;
  } catch (const std::exception& e) {
    crate::cuda::set_last_error(std::string("crate_cuda_empty_cache: ") + e.what());
    return 0;
  }
}

CRATE_API crate_status crate_cuda_memory_stats_get(crate_cuda_memory_stats* out) {
  return guard("crate_cuda_memory_stats_get", [&] {
    CRATE_CUDA_REQUIRE(out != nullptr, "out", "must not be NULL");
    std::memset(out, 0, sizeof(*out));
    crate::cuda::allocator().stats(out);
    out->num_host_syncs = static_cast<int64_t>(crate::cuda::host_syncs.load(std::memory_order_relaxed));
    size_t free_b = 0, total_b = 0;
    const cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    if (e == cudaSuccess) {
      out->device_free_bytes = free_b;
      out->device_total_bytes = total_b;
    } else if (crate::cuda::is_sticky(e)) {
      check(e, "cudaMemGetInfo");
    } else {
      cudaGetLastError();  // no device: the allocator's numbers are still meaningful
    }
  });
}

CRATE_API crate_status crate_cuda_memcpy(void* dst, const void* src, size_t bytes, int kind, void* stream) {
  return guard("crate_cuda_memcpy", [&] {
    CRATE_CUDA_REQUIRE(kind >= 0 && kind <= 2, "kind",
                       "must be 0 (host->device), 1 (device->host) or 2 (device->device), got " + std::to_string(kind));
    if (bytes == 0) return;
    CRATE_CUDA_REQUIRE(dst != nullptr, "dst", "must not be NULL when bytes > 0");
    CRATE_CUDA_REQUIRE(src != nullptr, "src", "must not be NULL when bytes > 0");
    cudaStream_t s = crate::cuda::resolve_stream(stream);
    if (kind == 0) {
      if (bytes <= crate::cuda::kStageMaxH2D) {
        size_t cls = 0;
        void* pin = crate::cuda::pinned().acquire(bytes, &cls);
        std::memcpy(pin, src, bytes);
        const cudaError_t e = cudaMemcpyAsync(dst, pin, bytes, cudaMemcpyHostToDevice, s);
        if (e != cudaSuccess) {
          crate::cuda::pinned().give_back(pin, cls);
          check(e, "cudaMemcpyAsync (host->device)");
        }
        crate::cuda::pinned().give_back_after(pin, cls, s);
      } else {
        check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync (host->device)");
        crate::cuda::host_sync(s, "cudaStreamSynchronize (host->device)");
      }
    } else if (kind == 1) {
      crate::cuda::read_back(dst, src, bytes, s, "cudaMemcpyAsync (device->host)");
    } else {
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync (device->device)");
    }
  });
}

// done(user, status) is called (from a CUDA callback thread) exactly when this returns CRATE_OK.
CRATE_API crate_status crate_cuda_memcpy_d2h_async(void* dst, const void* src, size_t bytes, void* stream,
                                                   void (*done)(void* user, crate_status status), void* user) {
  return guard("crate_cuda_memcpy_d2h_async", [&] {
    if (bytes > 0) {
      CRATE_CUDA_REQUIRE(dst != nullptr, "dst", "must not be NULL when bytes > 0");
      CRATE_CUDA_REQUIRE(src != nullptr, "src", "must not be NULL when bytes > 0");
    }
    cudaStream_t s = crate::cuda::resolve_stream(stream);
    size_t cls = 0;
    void* pin = nullptr;
    if (bytes > 0) {
      pin = crate::cuda::pinned().acquire(bytes, &cls);
      const cudaError_t e = cudaMemcpyAsync(pin, src, bytes, cudaMemcpyDeviceToHost, s);
      if (e != cudaSuccess) {
        crate::cuda::pinned().give_back(pin, cls);
        check(e, "cudaMemcpyAsync (device->host)");
      }
    }
    auto job = std::make_unique<crate::cuda::D2HJob>(crate::cuda::D2HJob{dst, pin, bytes, cls, done, user});
    const cudaError_t e = cudaStreamAddCallback(s, crate::cuda::d2h_callback, job.get(), 0);
    if (e != cudaSuccess) {
      if (pin != nullptr) {
        try {
          crate::cuda::pinned().give_back_after(pin, cls, s);  // the copy is queued: wait for it
        } catch (...) {
        }
      }
      check(e, "cudaStreamAddCallback");
    }
    job.release();  // owned by the callback now
  });
}

CRATE_API crate_status crate_cuda_synchronize(void* stream) {
  return guard("crate_cuda_synchronize",
               [&] { crate::cuda::host_sync(crate::cuda::resolve_stream(stream), "cudaStreamSynchronize"); });
}

}  // extern "C"
