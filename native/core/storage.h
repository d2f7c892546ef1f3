// storage.h: a flat, typed buffer on one device, the only thing the JS side holds natively.
// CPU buffers are 64-byte aligned; CUDA buffers come from the CUDA backend's caching allocator.
// Live-buffer and byte counters per device feed memory().
#pragma once
#include <atomic>
#include <cstdint>

#include "common.h"

namespace crate {

struct Storage {
  Device device = Device::cpu;
  DType dtype = DType::f32;
  int64_t numel = 0;
  size_t nbytes = 0;
  void* data = nullptr;
  bool freed = false;

  template <class T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

struct MemStats {
  int64_t live_buffers;
  int64_t live_bytes;
  int64_t peak_bytes;
};

// Allocates numel elements; zero-fills when `zero`. Throws crate::Error on bad sizes and
// std::bad_alloc when the host is out of memory.
Storage* storage_new(Device device, DType dtype, int64_t numel, bool zero);
// Releases the memory (idempotent); the Storage object itself stays valid and says "freed".
void storage_release(Storage* s);
MemStats mem_stats(Device device);
// Bytes held by the host caching allocator for reuse, and a call that returns them to the OS.
size_t host_cache_bytes();
size_t host_empty_cache();

// CUDA hooks, set by the binding once the CUDA backend library is loaded.
struct DeviceAllocator {
  void* (*alloc)(size_t bytes, bool zero) = nullptr;  // throws via returning nullptr + error
  void (*free)(void* ptr, size_t bytes) = nullptr;
};
void set_cuda_allocator(const DeviceAllocator& a);

}  // namespace crate
