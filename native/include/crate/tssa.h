/* tssa.h: C ABI for the tssa kernels (see crate.h for conventions). */
#pragma once
#include "crate/crate.h"
