/* coding_rate.h: C ABI for the coding_rate kernels (see crate.h for conventions). */
#pragma once
#include "crate/crate.h"
