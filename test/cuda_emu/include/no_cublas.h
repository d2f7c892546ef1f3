// no_cublas.h (CUDA host emulator): force-included into native/cuda/cublas_loader.cc so that its
// search finds no cuBLAS (a real one cannot run without a GPU) and the GEMMs run the own kernels
// of gemm.cu; the loader's log then says why.
#pragma once
#include <dlfcn.h>

static inline void* cuda_emu_no_dlopen(const char*, int) { return nullptr; }
static inline const char* cuda_emu_no_dlerror() { return "not loaded by the CUDA host emulator"; }
#define dlopen(file, mode) cuda_emu_no_dlopen(file, mode)
#define dlerror() cuda_emu_no_dlerror()
