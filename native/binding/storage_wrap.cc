// storage_wrap.cc: the JS handle around a Storage (dispose, byteLength) and the argument readers.
#include <cmath>

#include "binding.h"

namespace crate::binding {

static const napi_type_tag kStorageTag = {0x5c1a7e0dc0de4a11ULL, 0x9b7c6d5e4f3a2b10ULL};

// Per-environment data: the main thread and every worker_thread that loads the addon get their
// own constructor reference (a FunctionReference must not cross environments).
struct EnvData {
  Napi::FunctionReference storage_ctor;
};

Napi::Function StorageWrap::Init(Napi::Env env) {
  Napi::Function fn = DefineClass(env, "NativeStorage",
                                  {InstanceMethod("dispose", &StorageWrap::Dispose),
                                   InstanceAccessor("disposed", &StorageWrap::IsDisposed, nullptr),
                                   InstanceAccessor("byteLength", &StorageWrap::ByteLength, nullptr)});
  auto* data = new EnvData();
  data->storage_ctor = Napi::Persistent(fn);
  env.SetInstanceData<EnvData>(data);  // deleted by node when the environment is torn down
  return fn;
}

StorageWrap::StorageWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<StorageWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "NativeStorage cannot be constructed from JS; use the tensor API");
  }
  storage_ = info[0].As<Napi::External<Storage>>().Data();
  info.This().As<Napi::Object>().TypeTag(&kStorageTag);
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), static_cast<int64_t>(storage_->nbytes));
}

StorageWrap::~StorageWrap() {
  // GC backstop: memory is normally released by an explicit dispose().
  if (storage_) {
    storage_release(storage_);
    delete storage_;
  }
}

Napi::Object StorageWrap::Wrap(Napi::Env env, Storage* s) {
  EnvData* data = env.GetInstanceData<EnvData>();
  if (!data) {
    storage_release(s);
    delete s;
    throw Napi::Error::New(env, "crate: the addon is not initialised in this environment");
  }
  try {
    return data->storage_ctor.New({Napi::External<Storage>::New(env, s)});
  } catch (...) {
    storage_release(s);
    delete s;
    throw;
  }
}

Napi::Value StorageWrap::Dispose(const Napi::CallbackInfo& info) {
  if (storage_ && !storage_->freed) {
    Napi::MemoryManagement::AdjustExternalMemory(info.Env(), -static_cast<int64_t>(storage_->nbytes));
    storage_release(storage_);
  }
  return info.Env().Undefined();
}
Napi::Value StorageWrap::IsDisposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !storage_ || storage_->freed);
}
Napi::Value StorageWrap::ByteLength(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), storage_ ? static_cast<double>(storage_->nbytes) : 0.0);
}

void Args::fail(const std::string& msg) const { throw Napi::Error::New(info_.Env(), std::string(op_) + ": " + msg); }

Storage* Args::storage_or_null(size_t i, const char* name) const {
  if (i >= info_.Length() || info_[i].IsNull() || info_[i].IsUndefined()) return nullptr;
  return storage(i, name);
}

Storage* Args::storage(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsObject())
    fail(std::string("argument '") + name + "' must be a tensor storage");
  Napi::Object o = info_[i].As<Napi::Object>();
  if (!o.CheckTypeTag(&kStorageTag)) fail(std::string("argument '") + name + "' is not a crate tensor storage");
  StorageWrap* w = StorageWrap::Unwrap(o);
  Storage* s = w ? w->get() : nullptr;
  if (!s || s->freed) fail(std::string("argument '") + name + "' was used after dispose()");
  return s;
}

int64_t Args::i64(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsNumber()) fail(std::string("argument '") + name + "' must be a number");
  const double v = info_[i].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || v != std::floor(v) || std::fabs(v) > 9007199254740991.0)
    fail(std::string("argument '") + name + "' must be a safe integer, got " + std::to_string(v));
  return static_cast<int64_t>(v);
}

double Args::f64(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsNumber()) fail(std::string("argument '") + name + "' must be a number");
  return info_[i].As<Napi::Number>().DoubleValue();
}

bool Args::boolean(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsBoolean()) fail(std::string("argument '") + name + "' must be a boolean");
  return info_[i].As<Napi::Boolean>().Value();
}

std::string Args::str(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsString()) fail(std::string("argument '") + name + "' must be a string");
  return info_[i].As<Napi::String>().Utf8Value();
}

std::vector<int64_t> Args::i64s(size_t i, const char* name) const {
  if (i >= info_.Length() || !info_[i].IsArray()) fail(std::string("argument '") + name + "' must be an array");
  Napi::Array a = info_[i].As<Napi::Array>();
  if (a.Length() > 64) fail(std::string("argument '") + name + "' has more than 64 entries");
  std::vector<int64_t> out(a.Length());
  for (uint32_t k = 0; k < a.Length(); ++k) {
    Napi::Value v = a.Get(k);
    if (!v.IsNumber()) fail(std::string("argument '") + name + "' must hold numbers");
    const double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9007199254740991.0)
      fail(std::string("argument '") + name + "' must hold safe integers");
    out[k] = static_cast<int64_t>(d);
  }
  return out;
}

void Args::expect(const Storage* s, const char* name, DType dt, int64_t numel) const {
  if (s->dtype != dt)
    fail(std::string("argument '") + name + "' has dtype " + dtype_name(s->dtype) + ", expected " + dtype_name(dt));
  if (device_ < 0) {
    device_ = static_cast<int>(s->device);
    device_arg_ = name;
  } else if (device_ != static_cast<int>(s->device)) {
    fail(std::string("argument '") + name + "' is on " + device_name(s->device) + " but '" + device_arg_ + "' is on " +
         device_name(static_cast<Device>(device_)) + "; move them to one device with .to()");
  }

  if (numel < 0 || s->numel < numel)
    fail(std::string("argument '") + name + "' holds " + std::to_string(s->numel) + " elements, the op needs " +
         std::to_string(numel));
}

Napi::Object new_storage(Napi::Env env, Device dev, DType dt, int64_t numel, bool zero, Storage** out) {
  Storage* s = storage_new(dev, dt, numel, zero);
  *out = s;
  return StorageWrap::Wrap(env, s);
}

}  // namespace crate::binding
