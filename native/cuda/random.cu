// random.cu: placeholder (being written).
#include "common.cuh"
