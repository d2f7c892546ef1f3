/* ista.h: C ABI for the ista kernels (see crate.h for conventions). */
#pragma once
#include "crate/crate.h"
