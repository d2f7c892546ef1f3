// binding.h: N-API glue shared by the binding files: the Storage handle class (type-tagged, so
// no foreign object is ever treated as a buffer) and argument readers that throw JS errors
// naming the op and the argument. No math lives here.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "../core/storage.h"

namespace crate::binding {

class StorageWrap : public Napi::ObjectWrap<StorageWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit StorageWrap(const Napi::CallbackInfo& info);
  ~StorageWrap() override;
  Storage* get() const { return storage_; }
  // Wraps a freshly allocated Storage in a new JS handle (takes ownership).
  static Napi::Object Wrap(Napi::Env env, Storage* s);

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);
  Napi::Value ByteLength(const Napi::CallbackInfo& info);
  Storage* storage_ = nullptr;
};

// Reads call arguments for op `op`, throwing Napi::Error with the op and argument named.
class Args {
 public:
  Args(const Napi::CallbackInfo& info, const char* op) : info_(info), op_(op) {}
  Storage* storage(size_t i, const char* name) const;          // live storage (not disposed)
  Storage* storage_or_null(size_t i, const char* name) const;  // null/undefined -> nullptr
  int64_t i64(size_t i, const char* name) const;
  double f64(size_t i, const char* name) const;
  bool boolean(size_t i, const char* name) const;
  std::string str(size_t i, const char* name) const;
  std::vector<int64_t> i64s(size_t i, const char* name) const;  // JS array of integers
  [[noreturn]] void fail(const std::string& msg) const;
  // Checks that `s` holds at least `numel` elements of dtype `dt`, on the same device as every
  // argument checked before it (the first one fixes the op's device).
  void expect(const Storage* s, const char* name, DType dt, int64_t numel) const;
  // The device of the checked arguments (cpu when none was checked yet).
  Device device() const { return device_ < 0 ? Device::cpu : static_cast<Device>(device_); }
  bool on_cuda() const { return device_ == static_cast<int>(Device::cuda); }
  Napi::Env env() const { return info_.Env(); }
  const char* op() const { return op_; }

 private:
  const Napi::CallbackInfo& info_;
  const char* op_;
  mutable int device_ = -1;
  mutable const char* device_arg_ = nullptr;
};

// Runs __VA_ARGS__ with T = float or double for dt = f32 / f64; any other dtype fails naming it.
#define DISPATCH_FLOAT(args, dt, T, ...)                                                  \
  switch (dt) {                                                                           \
    case DType::f32: {                                                                    \
      using T = float;                                                                    \
      __VA_ARGS__;                                                                        \
      break;                                                                              \
    }                                                                                     \
    case DType::f64: {                                                                    \
      using T = double;                                                                   \
      __VA_ARGS__;                                                                        \
      break;                                                                              \
    }                                                                                     \
    default:                                                                              \
      args.fail(std::string("dtype ") + dtype_name(dt) + " is not supported (f32, f64)"); \
  }

// Allocates an output storage (CPU unless device says otherwise).
Napi::Object new_storage(Napi::Env env, Device dev, DType dt, int64_t numel, bool zero, Storage** out);

void register_ops(Napi::Env env, Napi::Object exports);
void register_crate_ops(Napi::Env env, Napi::Object exports);

}  // namespace crate::binding
