// common.h: dtypes, the error type every native failure becomes, and check macros.
// Native code never aborts: a failed check throws crate::Error, which the N-API
// binding turns into a JS Error and the C ABI turns into a status code + message.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace crate {

enum class DType : int { f32 = 0, f64 = 1, i32 = 2, bf16 = 3 };
enum class Device : int { cpu = 0, cuda = 1 };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::i32:
      return 4;
    case DType::bf16:
      return 2;
  }
  return 0;
}

inline const char* device_name(Device d) { return d == Device::cuda ? "cuda" : "cpu"; }

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::i32:
      return "i32";
    case DType::bf16:
      return "bf16";
  }
  return "?";
}

// Invalid argument or state (bad shape, disposed buffer, unsupported option).
struct Error : std::runtime_error {
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};
// A numerical failure the caller must hear about: NaN/Inf input, a matrix that is not
// positive definite. The binding reports it as a JS Error with code "CRATE_NUMERICAL".
struct NumericalError : Error {
  explicit NumericalError(const std::string& msg) : Error(msg) {}
};

}  // namespace crate

#define CRATE_CHECK(cond, msg)                           \
  do {                                                   \
    if (!(cond)) throw ::crate::Error(std::string(msg)); \
  } while (0)
