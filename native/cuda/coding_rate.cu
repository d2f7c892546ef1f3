// coding_rate.cu: placeholder (being written).
#include "common.cuh"
