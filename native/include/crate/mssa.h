/* mssa.h: C ABI for the mssa kernels (see crate.h for conventions). */
#pragma once
#include "crate/crate.h"
