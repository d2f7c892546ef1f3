// cuda_backend_api.h: the C interface between the addon and the CUDA backend library
// (libcrate_cuda.so), which the addon dlopens at run time when present. Keeping CUDA in its own
// library lets one addon binary run on machines with no GPU, no driver or no CUDA at all.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct crate_cuda_info {
  int device_count;     // -1 when the runtime could not be initialised
  int driver_version;   // e.g. 13000; 0 when no driver
  int runtime_version;  // the (static) cudart this library was built with
  int cc_major, cc_minor;
  int sm_count;
  size_t total_mem;
  char name[256];
  char compiled_archs[128];  // e.g. "sm_80 sm_90a compute_90"
  char error[512];           // why CUDA is unusable, when it is
} crate_cuda_info;

// Fills `out`; returns 0 when a usable GPU was found, non-zero otherwise (out->error says why).
typedef int (*crate_cuda_query_fn)(crate_cuda_info* out);

#ifdef __cplusplus
}
#endif
