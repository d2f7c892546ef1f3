// parallel.h: a small fixed thread pool for CPU kernels (llm.c-style "OpenMP without OpenMP").
// parallel_for splits [begin, end) into chunks of at least `grain` items and runs them on the
// pool; calls from inside a pool worker run serially, so kernels may nest freely.
#pragma once
#include <cstdint>
#include <functional>

namespace crate {

int num_threads();
// n <= 0 resets to the default (CRATE_NUM_THREADS env, else hardware concurrency).
void set_num_threads(int n);
void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace crate
