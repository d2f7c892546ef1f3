// storage.cc: host allocation and per-device accounting for Storage.
// Every buffer comes from a caching allocator: sizes are rounded to classes (4 per power of two,
// <= 25% slack); blocks of 64 KiB and more are mmap'd (page aligned, returned to the OS on
// release), smaller ones come from aligned malloc; freed blocks are kept per class for reuse, up
// to a cap (CRATE_CPU_CACHE_MB, default 2048). Why: a training step allocates the same sizes every
// step, and glibc's heap fragments badly under aligned large allocations interleaved with the
// small long-lived N-API wrappers (measured: RSS grew by GBs over 20k steps with flat live bytes).
// At the cap, a freed block makes room by returning blocks of the least recently used classes to
// the OS: the sizes of work that has finished (another model, an evaluation pass) must not keep
// the current work's sizes out of the cache, or every allocation of those would fault its pages in
// afresh (measured: a 37 MB buffer cost ~30 ms per allocation instead of ~0 once the cache was full
// of other sizes).
#include "storage.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace crate {
namespace {

struct Counters {
  std::atomic<int64_t> buffers{0}, bytes{0}, peak{0};
};
Counters g_counters[2];
DeviceAllocator g_cuda;

constexpr size_t kLargeBytes = 64 * 1024;

size_t size_class(size_t bytes) {
  // 4 classes per power of two (multiples of 64 B; of the 4 KiB page from 64 KiB up).
  size_t p = 64;
  while (p * 2 <= bytes) p *= 2;
  const size_t step = p >= 256 ? p / 4 : 64;
  size_t c = (bytes + step - 1) / step * step;
  return c >= kLargeBytes ? (c + 4095) / 4096 * 4096 : c;
}
void* os_alloc(size_t cls) {
  if (cls >= kLargeBytes) {
    void* p = mmap(nullptr, cls, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  return std::aligned_alloc(64, cls);
}
void os_free(void* p, size_t cls) {
  if (cls >= kLargeBytes)
    munmap(p, cls);
  else
    std::free(p);
}

class HostCache {
 public:
  void* take(size_t cls) {
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = free_.find(cls);
      last_use_[cls] = ++tick_;
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= cls;
        return p;
      }
    }
    void* p = os_alloc(cls);
    if (!p) {
      release_all();  // out of memory: give the cache back and retry once
      p = os_alloc(cls);
      if (!p) throw std::bad_alloc();
    }
    return p;
  }
  void give(void* p, size_t cls) {
    std::vector<std::pair<void*, size_t>> evicted;
    bool kept = false;
    {
      std::lock_guard<std::mutex> g(mu_);
      const size_t cap = limit();
      while (cls <= cap && cached_ + cls > cap) {
        auto victim = free_.end();  // the least recently used other class that has blocks
        for (auto it = free_.begin(); it != free_.end(); ++it)
          if (it->first != cls && !it->second.empty() &&
              (victim == free_.end() || last_use_[it->first] < last_use_[victim->first]))
            victim = it;
        if (victim == free_.end()) break;
        evicted.emplace_back(victim->second.back(), victim->first);
        victim->second.pop_back();
        cached_ -= victim->first;
      }
      if (cached_ + cls <= cap) {
        free_[cls].push_back(p);
        cached_ += cls;
        last_use_[cls] = ++tick_;
        kept = true;
      }
    }
    for (const auto& [q, c] : evicted) os_free(q, c);
    if (!kept) os_free(p, cls);
  }
  size_t release_all() {
    std::unordered_map<size_t, std::vector<void*>> drop;
    size_t n = 0;
    {
      std::lock_guard<std::mutex> g(mu_);
      drop.swap(free_);
      n = cached_;
      cached_ = 0;
    }
    for (auto& [cls, v] : drop)
      for (void* p : v) os_free(p, cls);
    return n;
  }
  size_t cached() {
    std::lock_guard<std::mutex> g(mu_);
    return cached_;
  }

 private:
  static size_t limit() {
    static const size_t l = [] {
      const char* e = std::getenv("CRATE_CPU_CACHE_MB");
      return (e ? static_cast<size_t>(std::atoll(e)) : size_t(2048)) << 20;
    }();
    return l;
  }
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  std::unordered_map<size_t, uint64_t> last_use_;  // class -> tick of its last take or give
  uint64_t tick_ = 0;
  size_t cached_ = 0;
};

HostCache& host_cache() {
  static HostCache* c = new HostCache();  // never destroyed: buffers may be freed at exit by GC
  return *c;
}

void account(Device d, int64_t dbuf, int64_t dbytes) {
  Counters& c = g_counters[static_cast<int>(d)];
  c.buffers += dbuf;
  int64_t now = (c.bytes += dbytes);
  int64_t prev = c.peak.load();
  while (now > prev && !c.peak.compare_exchange_weak(prev, now)) {
  }
}

}  // namespace

Storage* storage_new(Device device, DType dtype, int64_t numel, bool zero) {
  CRATE_CHECK(numel >= 0, "storage: negative element count " + std::to_string(numel));
  const size_t esize = dtype_size(dtype);
  CRATE_CHECK(static_cast<uint64_t>(numel) <= (uint64_t(1) << 46) / esize, "storage: " + std::to_string(numel) +
                                                                               " elements of " + dtype_name(dtype) +
                                                                               " exceed the 64 TiB addressing limit");
  auto* s = new Storage();
  s->device = device;
  s->dtype = dtype;
  s->numel = numel;
  s->nbytes = static_cast<size_t>(numel) * esize;
  const size_t alloc_bytes = s->nbytes == 0 ? 64 : (s->nbytes + 63) / 64 * 64;
  if (device == Device::cpu) {
    try {
      s->data = host_cache().take(size_class(alloc_bytes));
    } catch (...) {
      delete s;
      throw;
    }
    if (zero) std::memset(s->data, 0, alloc_bytes);
  } else {
    if (!g_cuda.alloc) {
      delete s;
      throw Error("storage: the CUDA backend is not loaded");
    }
    s->data = g_cuda.alloc(alloc_bytes, zero);  // throws crate::Error on failure
  }
  account(device, 1, static_cast<int64_t>(s->nbytes));
  return s;
}

void storage_release(Storage* s) {
  if (!s || s->freed) return;
  if (s->device == Device::cpu) {
    const size_t alloc_bytes = s->nbytes == 0 ? 64 : (s->nbytes + 63) / 64 * 64;
    host_cache().give(s->data, size_class(alloc_bytes));
  } else if (g_cuda.free) {
    g_cuda.free(s->data, s->nbytes);
  }
  account(s->device, -1, -static_cast<int64_t>(s->nbytes));
  s->data = nullptr;
  s->freed = true;
}

MemStats mem_stats(Device device) {
  const Counters& c = g_counters[static_cast<int>(device)];
  return MemStats{c.buffers.load(), c.bytes.load(), c.peak.load()};
}

void set_cuda_allocator(const DeviceAllocator& a) { g_cuda = a; }

size_t host_cache_bytes() { return host_cache().cached(); }
size_t host_empty_cache() { return host_cache().release_all(); }

}  // namespace crate
