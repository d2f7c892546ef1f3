// crate_ops_binding.cc: N-API entry points for the CRATE kernels (MSSA, ISTA family, coding
// rate, TSSA). Filled in as the kernels land.
#include "binding.h"

namespace crate::binding {
void register_crate_ops(Napi::Env env, Napi::Object exports) {}
}  // namespace crate::binding
