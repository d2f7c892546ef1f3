// storage.cc: aligned host allocation and per-device accounting for Storage.
#include "storage.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

namespace crate {
namespace {

struct Counters {
  std::atomic<int64_t> buffers{0}, bytes{0}, peak{0};
};
Counters g_counters[2];
DeviceAllocator g_cuda;

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
  CRATE_CHECK(static_cast<uint64_t>(numel) <= (uint64_t(1) << 46) / esize,
              "storage: " + std::to_string(numel) + " elements of " + dtype_name(dtype) +
                  " exceed the 64 TiB addressing limit");
  auto* s = new Storage();
  s->device = device;
  s->dtype = dtype;
  s->numel = numel;
  s->nbytes = static_cast<size_t>(numel) * esize;
  const size_t alloc_bytes = s->nbytes == 0 ? 64 : (s->nbytes + 63) / 64 * 64;
  if (device == Device::cpu) {
    s->data = std::aligned_alloc(64, alloc_bytes);
    if (!s->data) {
      delete s;
      throw std::bad_alloc();
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
    std::free(s->data);
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

}  // namespace crate
