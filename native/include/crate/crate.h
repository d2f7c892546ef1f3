/* crate.h: the plain C ABI of the CRATE kernels (the "drop-in kernel backend").
 *
 * Every function returns a crate_status; on failure crate_last_error() returns a message
 * (thread-local, valid until the next call on the same thread). Arrays are raw pointers with
 * explicit sizes; all tensors are dense row-major unless a function takes strides. Functions
 * that need scratch memory have a *_workspace_size query; pass a buffer of at least that many
 * bytes (or NULL to let the library allocate internally).
 *
 * Link with -lcrate (build/Release/libcrate.so). Include this header only.
 */
#ifndef CRATE_CRATE_H
#define CRATE_CRATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define CRATE_API __declspec(dllexport)
#else
#define CRATE_API __attribute__((visibility("default")))
#endif

typedef enum crate_status {
  CRATE_OK = 0,
  CRATE_ERR_INVALID_ARGUMENT = 1, /* bad size, null pointer, unsupported option */
  CRATE_ERR_NUMERICAL = 2,        /* NaN/Inf input, matrix not positive definite */
  CRATE_ERR_OUT_OF_MEMORY = 3,
  CRATE_ERR_CUDA = 4,
  CRATE_ERR_INTERNAL = 5
} crate_status;

typedef enum crate_dtype { CRATE_F32 = 0, CRATE_F64 = 1 } crate_dtype;

CRATE_API const char* crate_last_error(void);
CRATE_API const char* crate_version(void);
CRATE_API int crate_num_threads(void);
CRATE_API void crate_set_num_threads(int n);

#ifdef __cplusplus
}
#endif

#include "crate/coding_rate.h"
#include "crate/ista.h"
#include "crate/mssa.h"
#include "crate/tssa.h"

#endif /* CRATE_CRATE_H */
