// parallel.cc: the thread pool behind parallel_for. Workers sleep on a condition variable;
// a job is a range split into equal chunks; the calling thread works on chunk 0 itself.
#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace crate {
namespace {

thread_local bool t_in_worker = false;

class Pool {
 public:
  ~Pool() { stop(); }

  int size() {
    std::lock_guard<std::mutex> g(config_mu_);
    if (target_ <= 0) target_ = default_threads();
    return target_;
  }

  void resize(int n) {
    std::lock_guard<std::mutex> g(config_mu_);
    stop_locked();
    target_ = n > 0 ? n : default_threads();
  }

  void run(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    const int64_t n = end - begin;
    if (n <= 0) return;
    const int threads = size();
    int64_t chunks = std::min<int64_t>(threads, (n + std::max<int64_t>(grain, 1) - 1) / std::max<int64_t>(grain, 1));
    if (chunks <= 1 || t_in_worker) {
      fn(begin, end);
      return;
    }
    std::lock_guard<std::mutex> job_guard(job_mu_);  // one parallel job at a time
    ensure_started(threads - 1);
    const int64_t step = (n + chunks - 1) / chunks;
    chunks = (n + step - 1) / step;
    std::exception_ptr first_error;
    std::mutex err_mu;
    std::function<void(int64_t)> body = [&](int64_t c) {
      const int64_t lo = begin + c * step, hi = std::min(end, lo + step);
      try {
        fn(lo, hi);
      } catch (...) {
        std::lock_guard<std::mutex> g(err_mu);
        if (!first_error) first_error = std::current_exception();
      }
    };
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = &body;
      next_chunk_ = 1;
      total_chunks_ = chunks;
      pending_ = chunks - 1;
      ++generation_;
    }
    cv_.notify_all();
    t_in_worker = true;
    body(0);
    // The caller also steals remaining chunks.
    for (;;) {
      int64_t c;
      {
        std::lock_guard<std::mutex> g(mu_);
        if (next_chunk_ >= total_chunks_) break;
        c = next_chunk_++;
      }
      body(c);
      std::lock_guard<std::mutex> g(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
    t_in_worker = false;
    {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return pending_ == 0; });
      job_ = nullptr;
    }
    if (first_error) std::rethrow_exception(first_error);
  }

 private:
  static int default_threads() {
    if (const char* env = std::getenv("CRATE_NUM_THREADS")) {
      int v = std::atoi(env);
      if (v > 0) return v;
    }
    unsigned hc = std::thread::hardware_concurrency();
    return hc ? static_cast<int>(hc) : 1;
  }

  void ensure_started(int workers) {
    if (static_cast<int>(workers_.size()) == workers) return;
    for (int i = static_cast<int>(workers_.size()); i < workers; ++i) {
      workers_.emplace_back([this] { worker_loop(); });
    }
  }

  void worker_loop() {
    t_in_worker = true;
    uint64_t seen = 0;
    for (;;) {
      std::function<void(int64_t)>* job;
      int64_t c;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return quit_ || (generation_ != seen && job_ && next_chunk_ < total_chunks_); });
        if (quit_) return;
        c = next_chunk_++;
        if (next_chunk_ >= total_chunks_) seen = generation_;
        job = job_;
      }
      (*job)(c);
      std::lock_guard<std::mutex> g(mu_);
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }

  void stop() {
    std::lock_guard<std::mutex> g(config_mu_);
    stop_locked();
  }

  void stop_locked() {
    std::lock_guard<std::mutex> job_guard(job_mu_);
    {
      std::lock_guard<std::mutex> g(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    quit_ = false;
  }

  std::mutex config_mu_, job_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  std::function<void(int64_t)>* job_ = nullptr;
  int64_t next_chunk_ = 0, total_chunks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
  int target_ = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // leaked on purpose: no join at static destruction time
  return *p;
}

}  // namespace

int num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(n); }

void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  pool().run(begin, end, grain, fn);
}

}  // namespace crate
