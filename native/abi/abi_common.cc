// abi_common.cc: the status/message plumbing and library-wide C ABI functions.
#include "abi_common.h"

#include "../core/parallel.h"

namespace crate::abi {
namespace {
thread_local std::string t_last_error;
}
void set_last_error(const std::string& msg) { t_last_error = msg; }
const char* last_error() { return t_last_error.c_str(); }
}  // namespace crate::abi

extern "C" {
const char* crate_last_error(void) { return crate::abi::last_error(); }
const char* crate_version(void) { return "0.1.0"; }
int crate_num_threads(void) { return crate::num_threads(); }
void crate_set_num_threads(int n) { crate::set_num_threads(n); }
}
