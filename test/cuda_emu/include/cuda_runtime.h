// cuda_runtime.h (CUDA host emulator): stands in for the CUDA runtime header when native/cuda is
// compiled as host C++; everything is in cuda_emu.h.
#pragma once
#include "cuda_emu.h"
