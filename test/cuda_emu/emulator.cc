// emulator.cc: the CUDA host emulator's runtime (see README.md). Runs every kernel launch on the
// calling thread: each block's threads are fibers (own stacks, guard pages) scheduled in a random
// (seeded) order between barriers; __syncthreads, warp shuffles/votes/__syncwarp and the wmma
// stand-in meet at barriers that check the rules of independent thread scheduling (every thread
// of the block at __syncthreads, none exited; every lane named in a mask at the same warp
// operation). Shared memory is NaN-poisoned at every block start and bounded by canaries and a
// guard page, and watched by a race detector (hooks of the -fsanitize=thread instrumentation);
// device memory is host memory behind guard pages, NaN-poisoned at cudaMalloc. A fault in a
// kernel (illegal address, misaligned vector access, out-of-bounds array index, barrier misuse,
// shared-memory race, __trap) stops the launch, prints where, and makes the context
// sticky-failed like a real device error. Also the runtime API subset native/cuda uses: memory, copies (range
// checked), streams and events (synchronous: everything completes at once), stream callbacks (on
// a callback thread, as CUDA does), device properties of an H100-like sm_90 device, errors.
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuda_emu.h"

uint3 threadIdx;
dim3 blockIdx, blockDim, gridDim;

namespace cuda_emu {
namespace {

// ============================================================================ configuration

constexpr size_t kMaxStaticSmem = 48 * 1024;     // per block, as on the device
constexpr size_t kDefaultDynSmem = 48 * 1024;    // without cudaFuncSetAttribute
constexpr size_t kMaxDynSmemOptin = 227 * 1024;  // sm_90 opt-in limit (232448 B)
constexpr size_t kSmemPerSM = 228 * 1024;
constexpr size_t kRedZone = 64;                     // canary bytes after each static array
constexpr size_t kDeviceMemory = size_t{80} << 30;  // what the emulated device reports
constexpr size_t kPoisonLimit = size_t{256} << 20;  // bytes of a cudaMalloc poisoned with NaN
constexpr unsigned char kPoison = 0xff;             // NaN in every float / double view

size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}
size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

size_t env_size(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? static_cast<size_t>(std::strtoull(v, nullptr, 10)) : fallback;
}

// ============================================================================ errors

thread_local cudaError_t t_last_error = cudaSuccess;
std::atomic<int> g_sticky{0};  // a device fault: every later call fails with it

cudaError_t sticky() { return static_cast<cudaError_t>(g_sticky.load(std::memory_order_acquire)); }

cudaError_t fail(cudaError_t e) {
  if (e != cudaSuccess) t_last_error = e;
  return e;
}

/** Every API call starts here: a faulted context fails every call. */
#define CUDA_EMU_ENTRY()                              \
  do {                                                \
    const cudaError_t s_ = cuda_emu::sticky();        \
    if (s_ != cudaSuccess) return cuda_emu::fail(s_); \
  } while (0)

void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char* fmt, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "[cuda-emu] %s\n", buf);
}

// ============================================================================ device memory

struct Allocation {
  size_t bytes;
  char* region;
  size_t region_bytes;
  bool device;  // false: pinned host memory (cudaHostAlloc), which the device may also address
};

std::mutex& mem_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::map<uintptr_t, Allocation>& allocations() {
  static auto* a = new std::map<uintptr_t, Allocation>;
  return *a;
}
size_t g_device_used = 0;

/** Memory ending at a PROT_NONE guard page (reads/writes past the end fault), 256-byte aligned. */
void* guarded_alloc(size_t bytes, bool device, cudaError_t* err) {
  const size_t pg = page_size();
  const size_t body = round_up(bytes, 256);
  const size_t region_bytes = round_up(body, pg) + 2 * pg;  // guard before and after
  void* r = mmap(nullptr, region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) {
    *err = cudaErrorMemoryAllocation;
    return nullptr;
  }
  char* region = static_cast<char*>(r);
  mprotect(region, pg, PROT_NONE);
  char* guard = region + region_bytes - pg;
  mprotect(guard, pg, PROT_NONE);
  char* p = guard - body;
  if (device) {
    if (bytes <= kPoisonLimit) {
      std::memset(p, kPoison, bytes);
    } else {  // the two ends only: poisoning tens of GiB of host memory helps nobody
      std::memset(p, kPoison, kPoisonLimit / 2);
      std::memset(p + bytes - kPoisonLimit / 2, kPoison, kPoisonLimit / 2);
    }
  }
  std::lock_guard<std::mutex> lock(mem_mutex());
  allocations()[reinterpret_cast<uintptr_t>(p)] = Allocation{bytes, region, region_bytes, device};
  *err = cudaSuccess;
  return p;
}

cudaError_t guarded_free(void* p, bool device) {
  Allocation a;
  {
    std::lock_guard<std::mutex> lock(mem_mutex());
    auto it = allocations().find(reinterpret_cast<uintptr_t>(p));
    if (it == allocations().end() || it->second.device != device) return cudaErrorInvalidValue;
    a = it->second;
    allocations().erase(it);
    if (device) g_device_used -= a.bytes;
  }
  munmap(a.region, a.region_bytes);
  return cudaSuccess;
}

/** Whether [p, p + n) lies inside one allocation (device, or pinned host when allow_pinned). */
bool in_allocation(const void* p, size_t n, bool allow_pinned) {
  const uintptr_t u = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(mem_mutex());
  auto it = allocations().upper_bound(u);
  if (it == allocations().begin()) return false;
  --it;
  if (!it->second.device && !allow_pinned) return false;
  return u >= it->first && u - it->first <= it->second.bytes && n <= it->second.bytes - (u - it->first);
}

// ============================================================================ streams, callbacks

struct StreamObj {
  unsigned flags;
};
struct EventObj {
  unsigned flags;
};

std::mutex& handle_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::set<const void*>& live_streams() {
  static auto* s = new std::set<const void*>;
  return *s;
}
std::set<const void*>& live_events() {
  static auto* s = new std::set<const void*>;
  return *s;
}

bool valid_stream(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread) return true;
  std::lock_guard<std::mutex> lock(handle_mutex());
  return live_streams().count(s) != 0;
}

/** Stream callbacks run on one callback thread in FIFO order (CUDA runs them on its own thread
 * too, so a callback that expects to run after the enqueuing call returned still works). */
class CallbackQueue {
 public:
  void push(cudaStream_t s, cudaStreamCallback_t cb, cudaHostFn_t fn, void* user) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!started_) {
      std::thread([this] { run(); }).detach();
      started_ = true;
    }
    jobs_.push_back(Job{s, cb, fn, user});
    ++pending_;
    cv_.notify_all();
  }
  /** Waits until every callback enqueued so far has returned. */
  void drain() {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return pending_ == 0; });
  }

 private:
  struct Job {
    cudaStream_t stream;
    cudaStreamCallback_t cb;
    cudaHostFn_t fn;
    void* user;
  };
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return !jobs_.empty(); });
      const Job j = jobs_.front();
      jobs_.pop_front();
      lock.unlock();
      if (j.cb != nullptr)
        j.cb(j.stream, sticky(), j.user);
      else if (sticky() == cudaSuccess)
        j.fn(j.user);  // host functions are skipped after a fault
      lock.lock();
      if (--pending_ == 0) done_cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<Job> jobs_;
  size_t pending_ = 0;
  bool started_ = false;
};

CallbackQueue& callbacks() {
  static auto* q = new CallbackQueue;  // never destroyed: its thread outlives static destructors
  return *q;
}

// ============================================================================ fibers

#if defined(__x86_64__)
// cuda_emu_switch(save, load): saves the callee-saved registers, MXCSR and the x87 control word on
// the current stack, stores the stack pointer in *save, switches to `load` and restores from it.
extern "C" void cuda_emu_switch(void** save, void* load);
asm(R"(
  .text
  .globl cuda_emu_switch
  .hidden cuda_emu_switch
  .type cuda_emu_switch, @function
cuda_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_emu_switch, .-cuda_emu_switch
)");

struct Context {
  void* sp = nullptr;
};
void switch_context(Context* from, Context* to) { cuda_emu_switch(&from->sp, to->sp); }
void init_context(Context* c, char* stack_lo, size_t bytes, void (*entry)()) {
  uintptr_t sp = (reinterpret_cast<uintptr_t>(stack_lo) + bytes) & ~uintptr_t{15};
  auto push = [&](uint64_t v) {
    sp -= 8;
    *reinterpret_cast<uint64_t*>(sp) = v;
  };
  push(0);                                  // entry's return address: it never returns
  push(reinterpret_cast<uint64_t>(entry));  // where the switch's `ret` goes
  for (int i = 0; i < 6; ++i) push(0);      // rbp rbx r12 r13 r14 r15
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  sp -= 8;
  std::memcpy(reinterpret_cast<void*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<void*>(sp + 4), &fpucw, 2);
  c->sp = reinterpret_cast<void*>(sp);
}
#else
struct Context {
  ucontext_t uc;
};
void switch_context(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
void init_context(Context* c, char* stack_lo, size_t bytes, void (*entry)()) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack_lo;
  c->uc.uc_stack.ss_size = bytes;
  c->uc.uc_link = nullptr;
  makecontext(&c->uc, entry, 0);
}
#endif

enum class State : uint8_t { kReady, kAtBarrier, kAtWarp, kExited };

struct Fiber {
  Context ctx;
  char* stack = nullptr;  // lowest usable byte (a guard page lies below)
  uint3 tid{};
  int lane = 0, warp = 0;
  State state = State::kReady;
  uint64_t exchanges = 0;  // shuffles done: selects the slot buffer (two, used alternately)
  bool pred = false;       // this lane's vote
  unsigned vote = 0;       // the ballot of the last vote, handed out when the vote completes
  uint16_t race_id = 0;    // who the race detector says accesses: the thread, or its warp (wmma)
  bool atomic = false;     // inside an atomic operation (never a race)
};

struct Warp {
  unsigned exist = 0;  // lanes that exist (a block's last warp may be partial)
  unsigned exited = 0;
  unsigned arrived = 0;  // lanes waiting at the current warp operation
  unsigned mask = 0;     // its mask and kind (set by the first lane to arrive)
  WarpOp op = kWarpSync;
  unsigned ballot = 0;
  uint32_t sync_gen = 0;  // __syncwarp barriers completed (orders the lanes' memory accesses)
  uint64_t slot[2][32];
};

struct StaticVar {
  const void* tag;
  size_t offset, bytes;
  const char* name;
};

/** Everything about the launch being run. One launch at a time (g_launch_mutex). */
struct Run {
  const LaunchSpec* spec = nullptr;
  KernelBody body{};
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  std::vector<int> ready;
  Fiber* cur = nullptr;
  Context sched;
  int nthreads = 0, exited = 0, at_barrier = 0;
  // shared memory
  char* static_base = nullptr;
  size_t static_used = 0, static_poisoned = 0;
  std::vector<StaticVar> statics;
  char* dyn_base = nullptr;  // the block's dynamic shared memory; a guard page follows its slack
  size_t dyn_bytes = 0, dyn_slack = 0;
  // a fault stops the launch
  bool faulted = false;
  cudaError_t fault_code = cudaSuccess;
  std::string fault_msg;
  std::string fault_file;  // where the faulting instruction is (a signal), for addr2line
  uintptr_t fault_offset = 0;
  uint64_t rng = 0;
};

Run g_run;
std::recursive_mutex g_launch_mutex;
std::atomic<pthread_t> g_fiber_thread{};
std::atomic<bool> g_in_fiber{false};
uint64_t g_seed = 0;
size_t g_stack_bytes = 0;
bool g_racecheck_on = true;
bool g_race_warn_only = false;
std::vector<char*> g_stacks;  // reused across launches
char* g_smem_region = nullptr;

uint64_t next_random() {  // splitmix64
  uint64_t z = (g_run.rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

char* new_stack(size_t bytes) {
  const size_t pg = page_size();
  void* r = mmap(nullptr, bytes + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) {
    warn("cannot map a %zu-byte fiber stack", bytes);
    std::abort();
  }
  mprotect(r, pg, PROT_NONE);  // overflow faults instead of corrupting the next stack
  return static_cast<char*>(r) + pg;
}

/** [static arena 64 KiB | dynamic arena | guard page]: dynamic shared memory ends at the guard. */
constexpr size_t kStaticArena = 64 * 1024;
size_t dyn_arena_bytes() { return round_up(kMaxDynSmemOptin + 1024, page_size()); }
void map_smem() {
  if (g_smem_region != nullptr) return;
  const size_t bytes = kStaticArena + dyn_arena_bytes() + page_size();
  void* r = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (r == MAP_FAILED) {
    warn("cannot map shared memory");
    std::abort();
  }
  g_smem_region = static_cast<char*>(r);
  mprotect(g_smem_region + kStaticArena + dyn_arena_bytes(), page_size(), PROT_NONE);
}

std::string where() {
  const Run& r = g_run;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%s (launched at %s:%d) grid (%u,%u,%u) block (%u,%u,%u) dynamic smem %zu",
                r.spec->name, r.spec->file, r.spec->line, r.spec->grid.x, r.spec->grid.y, r.spec->grid.z,
                r.spec->block.x, r.spec->block.y, r.spec->block.z, r.spec->smem);
  return buf;
}

std::string who() {
  char buf[160];
  if (g_run.cur != nullptr)
    std::snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z,
                  g_run.cur->tid.x, g_run.cur->tid.y, g_run.cur->tid.z);
  else
    std::snprintf(buf, sizeof buf, "block (%u,%u,%u)", blockIdx.x, blockIdx.y, blockIdx.z);
  return buf;
}

/** Records the first fault of the launch; from a fiber, abandons it (back to the scheduler). */
[[noreturn]] void raise_fault(cudaError_t code, const std::string& msg);

void record_fault(cudaError_t code, const std::string& msg) {
  Run& r = g_run;
  if (r.faulted) return;
  r.faulted = true;
  r.fault_code = code;
  r.fault_msg = who() + ": " + msg;
}

void raise_fault(cudaError_t code, const std::string& msg) {
  record_fault(code, msg);
  Run& r = g_run;
  Fiber* f = r.cur;
  g_in_fiber.store(false, std::memory_order_relaxed);
  switch_context(&f->ctx, &r.sched);
  __builtin_unreachable();
}

/** Back to the scheduler; returns when the scheduler resumes this fiber. */
void yield() {
  Run& r = g_run;
  Fiber* f = r.cur;
  g_in_fiber.store(false, std::memory_order_relaxed);
  switch_context(&f->ctx, &r.sched);
  g_in_fiber.store(true, std::memory_order_relaxed);
}

void fiber_main() {
  Run& r = g_run;
  r.body.invoke(r.body.args, r.spec->kernel);
  r.cur->state = State::kExited;
  g_in_fiber.store(false, std::memory_order_relaxed);
  Context dead;
  switch_context(&dead, &r.sched);
  __builtin_unreachable();
}

const char* op_name(WarpOp op) {
  switch (op) {
    case kWarpSync:
      return "__syncwarp";
    case kWarpShfl:
      return "a shuffle";
    case kWarpVote:
      return "a vote (__ballot/__any/__all)";
    case kWarpMmaLoad:
      return "wmma::load_matrix_sync";
    case kWarpMmaStore:
      return "wmma::store_matrix_sync";
    case kWarpMma:
      return "wmma::mma_sync";
  }
  return "?";
}

/** The calling lane arrives at a warp operation; returns when every lane in mask has. */
void arrive_warp(unsigned mask, WarpOp op) {
  Run& r = g_run;
  Fiber& f = *r.cur;
  Warp& w = r.warps[f.warp];
  const unsigned bit = 1u << f.lane;
  char buf[320];
  if (!(mask & bit)) {
    std::snprintf(buf, sizeof buf, "%s with mask 0x%08x, which does not name the calling lane %d", op_name(op), mask,
                  f.lane);
    raise_fault(cudaErrorIllegalInstruction, buf);
  }
  if (mask & ~w.exist) {
    std::snprintf(buf, sizeof buf, "%s with mask 0x%08x names lanes 0x%08x that do not exist (partial warp)",
                  op_name(op), mask, mask & ~w.exist);
    raise_fault(cudaErrorIllegalInstruction, buf);
  }
  if (mask & w.exited) {
    std::snprintf(buf, sizeof buf, "%s with mask 0x%08x names lanes 0x%08x that have already exited", op_name(op), mask,
                  mask & w.exited);
    raise_fault(cudaErrorIllegalInstruction, buf);
  }
  if (w.arrived == 0) {
    w.mask = mask;
    w.op = op;
    w.ballot = 0;
  } else if (w.mask != mask || w.op != op) {
    std::snprintf(buf, sizeof buf,
                  "divergent warp-synchronous code: lane %d is at %s (mask 0x%08x) while lanes 0x%08x wait at %s "
                  "(mask 0x%08x)",
                  f.lane, op_name(op), mask, w.arrived, op_name(w.op), w.mask);
    raise_fault(cudaErrorIllegalInstruction, buf);
  }
  if (f.pred) w.ballot |= bit;
  w.arrived |= bit;
  f.state = State::kAtWarp;
  if (w.arrived == mask) {  // everyone is here: all of them run on, in a random order
    for (unsigned m = mask; m != 0; m &= m - 1) {
      const int lane = __builtin_ctz(m);
      Fiber& g = r.fibers[f.warp * 32 + lane];
      g.state = State::kReady;
      g.vote = w.ballot;
      r.ready.push_back(static_cast<int>(&g - r.fibers.data()));
    }
    w.arrived = 0;
    if (op == kWarpSync) ++w.sync_gen;
  }
  yield();
}

void describe_deadlock() {
  Run& r = g_run;
  std::string s = "deadlock: no thread can run; ";
  char buf[256];
  std::snprintf(buf, sizeof buf, "%d of %d threads wait at __syncthreads, %d exited", r.at_barrier, r.nthreads,
                r.exited);
  s += buf;
  for (size_t wi = 0; wi < r.warps.size(); ++wi) {
    const Warp& w = r.warps[wi];
    if (w.arrived == 0) continue;
    std::snprintf(buf, sizeof buf, "; warp %zu: lanes 0x%08x wait at %s with mask 0x%08x", wi, w.arrived, op_name(w.op),
                  w.mask);
    s += buf;
  }
  s += " (a barrier inside divergent code?)";
  record_fault(cudaErrorLaunchFailure, s);
}

void check_smem_canaries() {
  Run& r = g_run;
  auto damaged = [](const char* p, size_t n) {
    for (size_t i = 0; i < n; ++i)
      if (static_cast<unsigned char>(p[i]) != kPoison) return true;
    return false;
  };
  char buf[256];
  for (const StaticVar& v : r.statics) {
    if (damaged(r.static_base + v.offset + v.bytes, kRedZone)) {
      std::snprintf(buf, sizeof buf, "written past the end of __shared__ %s (%zu bytes)", v.name, v.bytes);
      record_fault(cudaErrorIllegalAddress, buf);
      return;
    }
  }
  if (r.dyn_slack && damaged(r.dyn_base + r.dyn_bytes, r.dyn_slack)) {
    std::snprintf(buf, sizeof buf, "written past the end of the dynamic shared memory (%zu bytes)", r.dyn_bytes);
    record_fault(cudaErrorIllegalAddress, buf);
  }
}

/** "; at <file:line> (inlined into ...)" for a fault with a program counter, from addr2line. */
std::string source_position() {
  const Run& r = g_run;
  if (r.fault_file.empty()) return "";
  char cmd[1200];
  std::snprintf(cmd, sizeof cmd, "addr2line -Cipfe '%s' 0x%lx 2>/dev/null", r.fault_file.c_str(),
                static_cast<unsigned long>(r.fault_offset));
  std::string text;
  if (FILE* p = popen(cmd, "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, p) != nullptr) text += line;
    pclose(p);
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  for (char& c : text)
    if (c == '\n') c = ' ';
  if (text.empty() || text.find("??") == 0) return "; no source position (addr2line missing?)";
  return "; at " + text;
}

// ============================================================================ shared-memory races
// The .cu sources are compiled with -fsanitize=thread, without the ThreadSanitizer runtime: every
// load and store calls one of the __tsan_* hooks at the end of this file, which return at once
// unless the address is in the shared-memory arena. There, a shadow cell per byte remembers the
// last writer and the readers of the current barrier interval (a new interval at every block start
// and __syncthreads); __syncwarp orders the lanes of one warp (a per-warp generation). An access
// that conflicts with another thread's in the same interval (write/write, read/write, write/read)
// and is not ordered by a __syncwarp of their common warp is a race, reported like a fault (what
// compute-sanitizer's racecheck reports on a GPU, but for every schedule). A wmma load/store is
// the warp's (one pseudo-thread), atomics are never races. With CRATE_EMU_INITCHECK=1 a read of
// shared memory that no thread of the block has written is reported too.

struct RaceCell {
  // the last write, the last read, and a summary of the other reads (barrier interval, warp
  // generation: __syncwarp barriers its warp had completed then, thread or warp-collective id,
  // warp; kMany: reads from several warps)
  uint32_t w_gen, w_wgen, r_gen, r_wgen, o_gen, o_wgen;
  uint16_t w_id, w_warp, r_id, r_warp, o_warp;
};
constexpr uint16_t kMany = 0xffff;
constexpr uint16_t kWarpId = 0x8000;  // race_id of a warp-collective (wmma) access: kWarpId | warp

RaceCell* g_shadow = nullptr;
uintptr_t g_race_base = 0;
size_t g_race_bytes = 0;   // 0: the detector is off (every hook returns at the first compare)
uint32_t g_gen = 1;        // the current barrier interval
uint32_t g_block_gen = 1;  // the interval the current block started with
bool g_initcheck = false;

void new_interval() {
  if (++g_gen == 0) {  // wrapped: forget everything
    if (g_shadow != nullptr) std::memset(static_cast<void*>(g_shadow), 0, g_race_bytes * sizeof(RaceCell));
    g_gen = 1;
    g_block_gen = 1;
  }
}

void enable_racecheck(char* base, size_t bytes) {
  if (g_shadow == nullptr) {
    void* m = mmap(nullptr, bytes * sizeof(RaceCell), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return;
    g_shadow = static_cast<RaceCell*>(m);
  }
  g_race_base = reinterpret_cast<uintptr_t>(base);
  g_race_bytes = bytes;
}

std::string describe_id(uint16_t id) {
  char buf[96];
  if (id == kMany) return "several threads";
  if (id & kWarpId) {
    std::snprintf(buf, sizeof buf, "warp %d (a wmma load/store)", id & ~kWarpId);
    return buf;
  }
  const unsigned t = id;
  std::snprintf(buf, sizeof buf, "thread (%u,%u,%u)", t % blockDim.x, (t / blockDim.x) % blockDim.y,
                t / (blockDim.x * blockDim.y));
  return buf;
}

std::string describe_smem(uintptr_t off) {
  const Run& r = g_run;
  char buf[160];
  const uintptr_t dyn = static_cast<uintptr_t>(r.dyn_base - r.static_base);
  if (off >= dyn) {
    std::snprintf(buf, sizeof buf, "dynamic shared memory + %lu bytes", static_cast<unsigned long>(off - dyn));
    return buf;
  }
  for (const StaticVar& v : r.statics)
    if (off >= v.offset && off < v.offset + v.bytes) {
      std::snprintf(buf, sizeof buf, "__shared__ %s + %lu bytes", v.name, static_cast<unsigned long>(off - v.offset));
      return buf;
    }
  std::snprintf(buf, sizeof buf, "static shared memory + %lu bytes", static_cast<unsigned long>(off));
  return buf;
}

void report_race(uintptr_t off, bool write, const char* kind, uint16_t other, bool other_wrote, void* pc) {
  Dl_info dl{};
  if (pc != nullptr && dladdr(pc, &dl) != 0 && dl.dli_fname != nullptr) {
    g_run.fault_file = dl.dli_fname;
    // the return address is the instruction after the hook's call: step back into the call
    g_run.fault_offset = reinterpret_cast<uintptr_t>(pc) - 1 - reinterpret_cast<uintptr_t>(dl.dli_fbase);
  }
  char buf[700];
  std::snprintf(buf, sizeof buf,
                "shared-memory race (%s) on %s: this thread %s it, %s %s it in the same barrier interval (no "
                "__syncthreads in between, nor a __syncwarp of a common warp)",
                kind, describe_smem(off).c_str(), write ? "writes" : "reads", describe_id(other).c_str(),
                other_wrote ? "wrote" : "read");
  if (g_race_warn_only) {  // CRATE_EMU_RACECHECK=warn: each racing instruction once, then go on
    static std::set<uintptr_t> seen;
    if (seen.insert(g_run.fault_offset).second)
      warn("%s: %s: %s%s", where().c_str(), who().c_str(), buf, source_position().c_str());
    g_run.fault_file.clear();
    return;
  }
  raise_fault(cudaErrorLaunchFailure, buf);
}

void report_uninit(uintptr_t off, void* pc) {
  Dl_info dl{};
  if (pc != nullptr && dladdr(pc, &dl) != 0 && dl.dli_fname != nullptr) {
    g_run.fault_file = dl.dli_fname;
    g_run.fault_offset = reinterpret_cast<uintptr_t>(pc) - 1 - reinterpret_cast<uintptr_t>(dl.dli_fbase);
  }
  const std::string msg = "reads " + describe_smem(off) + ", which no thread of the block has written (uninitialised)";
  if (g_race_warn_only) {
    static std::set<uintptr_t> seen;
    if (seen.insert(g_run.fault_offset).second)
      warn("%s: %s: %s%s", where().c_str(), who().c_str(), msg.c_str(), source_position().c_str());
    g_run.fault_file.clear();
    return;
  }
  raise_fault(cudaErrorLaunchFailure, msg);
}

void race_access(uintptr_t addr, size_t n, bool write, void* pc) {
  Run& r = g_run;
  Fiber* f = r.cur;
  if (f == nullptr || f->atomic || !g_in_fiber.load(std::memory_order_relaxed)) return;
  const uintptr_t off = addr - g_race_base;
  if (n > g_race_bytes - off) n = g_race_bytes - off;
  const uint16_t id = f->race_id, warp = static_cast<uint16_t>(f->warp);
  const uint32_t wgen = r.warps[f->warp].sync_gen;
  // Two accesses conflict unless they are the same thread's, or one warp's with a __syncwarp of
  // that warp in between (its generation moved on since the earlier access).
  auto conflict = [&](uint16_t other_id, uint16_t other_warp, uint32_t other_wgen) {
    return other_id != id && (other_warp != warp || other_wgen == wgen);
  };
  for (size_t i = 0; i < n; ++i) {
    RaceCell& c = g_shadow[off + i];
    if (c.w_gen == g_gen && conflict(c.w_id, c.w_warp, c.w_wgen))
      report_race(off + i, write, write ? "write after write" : "read after write", c.w_id, true, pc);
    if (write) {
      if (c.r_gen == g_gen && conflict(c.r_id, c.r_warp, c.r_wgen))
        report_race(off + i, true, "write after read", c.r_id, false, pc);
      else if (c.o_gen == g_gen && conflict(kMany, c.o_warp, c.o_wgen))
        report_race(off + i, true, "write after read", kMany, false, pc);
      c.w_gen = g_gen;
      c.w_wgen = wgen;
      c.w_id = id;
      c.w_warp = warp;
    } else {
      if (g_initcheck && (c.w_gen < g_block_gen || c.w_gen == 0)) report_uninit(off + i, pc);
      if (c.r_gen == g_gen && c.r_id != id) {  // the previous reader joins the others
        if (c.o_gen != g_gen) {
          c.o_gen = g_gen;
          c.o_warp = c.r_warp;
          c.o_wgen = c.r_wgen;
        } else {
          if (c.o_warp != c.r_warp) c.o_warp = kMany;
          if (c.r_wgen > c.o_wgen) c.o_wgen = c.r_wgen;
        }
      }
      c.r_gen = g_gen;
      c.r_wgen = wgen;
      c.r_id = id;
      c.r_warp = warp;
    }
  }
}

inline void hook(const void* addr, size_t n, bool write, void* pc) {
  if (reinterpret_cast<uintptr_t>(addr) - g_race_base < g_race_bytes)
    race_access(reinterpret_cast<uintptr_t>(addr), n, write, pc);
}

/** Runs one block to completion (or to a fault). */
void run_block() {
  Run& r = g_run;
  // Poison the shared memory this kernel uses (the first block: all of the static arena).
  const size_t static_span = r.static_poisoned ? r.static_poisoned : kStaticArena;
  std::memset(r.static_base, kPoison, static_span);
  r.static_used = 0;
  r.statics.clear();
  std::memset(r.dyn_base, kPoison, r.dyn_bytes + r.dyn_slack);

  const int n = r.nthreads;
  new_interval();
  g_block_gen = g_gen;
  r.exited = r.at_barrier = 0;
  r.ready.clear();
  for (int t = 0; t < n; ++t) {
    Fiber& f = r.fibers[t];
    f.tid = uint3{t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
    f.lane = t % 32;
    f.warp = t / 32;
    f.state = State::kReady;
    f.exchanges = 0;
    f.pred = false;
    f.race_id = static_cast<uint16_t>(t);
    f.atomic = false;
    init_context(&f.ctx, f.stack, g_stack_bytes, fiber_main);
    r.ready.push_back(t);
  }
  for (size_t wi = 0; wi < r.warps.size(); ++wi) {
    Warp& w = r.warps[wi];
    const int lanes = std::min(32, n - static_cast<int>(wi) * 32);
    w.exist = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
    w.exited = w.arrived = 0;
    w.sync_gen = 0;
  }

  for (;;) {
    while (!r.ready.empty() && !r.faulted) {
      const size_t k = static_cast<size_t>(next_random() % r.ready.size());
      const int t = r.ready[k];
      r.ready[k] = r.ready.back();
      r.ready.pop_back();
      Fiber& f = r.fibers[t];
      r.cur = &f;
      threadIdx = f.tid;
      g_in_fiber.store(true, std::memory_order_relaxed);
      switch_context(&r.sched, &f.ctx);
      g_in_fiber.store(false, std::memory_order_relaxed);
      if (r.faulted) break;
      if (f.state == State::kExited) {
        ++r.exited;
        Warp& w = r.warps[f.warp];
        w.exited |= 1u << f.lane;
        if (w.arrived != 0 && (w.mask & (1u << f.lane))) {
          char buf[256];
          std::snprintf(buf, sizeof buf, "exited while lanes 0x%08x of its warp wait for it at %s (mask 0x%08x)",
                        w.arrived, op_name(w.op), w.mask);
          record_fault(cudaErrorIllegalInstruction, buf);
        }
      } else if (f.state == State::kAtBarrier) {
        ++r.at_barrier;
      }
    }
    r.cur = nullptr;
    if (r.faulted) return;
    if (r.exited == n) break;
    bool warp_waiting = false;
    for (const Warp& w : r.warps) warp_waiting |= w.arrived != 0;
    if (!warp_waiting && r.at_barrier == n - r.exited) {
      if (r.exited > 0) {
        char buf[200];
        std::snprintf(buf, sizeof buf,
                      "__syncthreads reached by %d threads while %d threads of the block have exited (undefined "
                      "behaviour: every thread must reach every __syncthreads)",
                      r.at_barrier, r.exited);
        record_fault(cudaErrorIllegalInstruction, buf);
        return;
      }
      for (int t = 0; t < n; ++t) {
        r.fibers[t].state = State::kReady;
        r.ready.push_back(t);
      }
      r.at_barrier = 0;
      new_interval();
      continue;
    }
    describe_deadlock();
    return;
  }
  r.static_poisoned = std::max(r.static_poisoned, std::min(kStaticArena, r.static_used + kRedZone));
  check_smem_canaries();
}

// ============================================================================ faults in kernels

struct sigaction g_old_actions[32];

void on_signal(int sig, siginfo_t* info, void* uc) {
  if (g_in_fiber.load(std::memory_order_relaxed) && pthread_equal(pthread_self(), g_fiber_thread.load())) {
    // A fault in kernel code: record it and leave the fiber (and this signal frame) for good.
    void* pc = nullptr;
#if defined(__x86_64__)
    pc = reinterpret_cast<void*>(static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RIP]);
#endif
    Dl_info dl{};
    char sym[160] = "";
    if (pc != nullptr && dladdr(pc, &dl) != 0 && dl.dli_fname != nullptr) {
      g_run.fault_file = dl.dli_fname;
      g_run.fault_offset = reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(dl.dli_fbase);
      std::snprintf(sym, sizeof sym, " at pc %p (+0x%lx)", pc, static_cast<unsigned long>(g_run.fault_offset));
    }
    char buf[1024];
    const void* addr = info->si_addr;
    const char* stack_hint = "";
    Fiber* f = g_run.cur;
    if (f != nullptr) {
      const char* lo = f->stack - page_size();
      if (static_cast<const char*>(addr) >= lo && static_cast<const char*>(addr) < f->stack)
        stack_hint = " (fiber stack overflow: raise CRATE_EMU_STACK_KB)";
    }
    cudaError_t code = cudaErrorIllegalAddress;
    if (sig == SIGSEGV || sig == SIGBUS) {
      std::snprintf(buf, sizeof buf, "illegal memory access at address %p%s%s", addr, stack_hint, sym);
    } else if (sig == SIGFPE) {
      code = cudaErrorIllegalInstruction;
      std::snprintf(buf, sizeof buf, "arithmetic fault (integer division by zero?)%s", sym);
    } else {
      code = cudaErrorIllegalInstruction;
      std::snprintf(buf, sizeof buf, "illegal instruction%s", sym);
    }
    raise_fault(code, buf);
  }
  // Not ours: hand it to whoever had it before (V8, the default action, ...).
  const struct sigaction& old = g_old_actions[sig];
  if (old.sa_flags & SA_SIGINFO) {
    old.sa_sigaction(sig, info, uc);
  } else if (old.sa_handler == SIG_IGN) {
    return;
  } else if (old.sa_handler == SIG_DFL) {
    signal(sig, SIG_DFL);  // returning re-executes the faulting instruction: default action
  } else {
    old.sa_handler(sig);
  }
}

void install_signal_handlers() {
  // An alternate stack for this thread, so that a fiber stack overflow can be reported.
  stack_t cur{};
  if (sigaltstack(nullptr, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
    stack_t ss{};
    ss.ss_size = 256 * 1024;
    ss.ss_sp = std::malloc(ss.ss_size);  // never freed: the thread may fault until it ends
    ss.ss_flags = 0;
    sigaltstack(&ss, nullptr);
  }
  static bool installed = false;
  if (installed) return;
  installed = true;
  for (int sig : {SIGSEGV, SIGBUS, SIGILL, SIGFPE}) {
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, &g_old_actions[sig]);
  }
}

// ============================================================================ launch

std::mutex& attr_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::map<const void*, size_t>& max_dyn_smem() {
  static auto* m = new std::map<const void*, size_t>;
  return *m;
}

void init_once() {
  static bool done = false;
  if (done) return;
  done = true;
  const char* s = std::getenv("CRATE_EMU_SEED");
  if (s != nullptr && *s != '\0' && std::strcmp(s, "random") != 0) {
    g_seed = std::strtoull(s, nullptr, 10);
  } else {
    g_seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
             (static_cast<uint64_t>(getpid()) << 32);
    g_seed %= 1000000000ull;
  }
  g_run.rng = g_seed;
  g_stack_bytes = round_up(env_size("CRATE_EMU_STACK_KB", 256) * 1024, page_size());
  const char* rc = std::getenv("CRATE_EMU_RACECHECK");
  g_racecheck_on = rc == nullptr || std::strcmp(rc, "0") != 0;
  g_race_warn_only = rc != nullptr && std::strcmp(rc, "warn") == 0;
  const char* ic = std::getenv("CRATE_EMU_INITCHECK");
  g_initcheck = ic != nullptr && std::strcmp(ic, "0") != 0 && *ic != '\0';
  if (std::getenv("CRATE_EMU_QUIET") == nullptr)
    warn("CUDA host emulator: schedule seed %llu (CRATE_EMU_SEED=%llu reproduces it)",
         static_cast<unsigned long long>(g_seed), static_cast<unsigned long long>(g_seed));
}

}  // namespace

void launch(const LaunchSpec& spec, const KernelBody& body) {
  std::lock_guard<std::recursive_mutex> lock(g_launch_mutex);
  if (g_in_fiber.load() && pthread_equal(pthread_self(), g_fiber_thread.load()))
    raise_fault(cudaErrorNotSupported, "a kernel launched a kernel (dynamic parallelism is not emulated)");
  init_once();
  if (sticky() != cudaSuccess) {
    fail(sticky());
    return;
  }
  const dim3 g = spec.grid, b = spec.block;
  const uint64_t threads = static_cast<uint64_t>(b.x) * b.y * b.z;
  if (threads == 0 || threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 || g.x == 0 || g.y == 0 || g.z == 0 ||
      g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    warn("%s:%d: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u)", spec.file, spec.line, g.x, g.y, g.z,
         b.x, b.y, b.z);
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  size_t dyn_limit = kDefaultDynSmem;
  {
    std::lock_guard<std::mutex> alock(attr_mutex());
    auto it = max_dyn_smem().find(spec.kernel);
    if (it != max_dyn_smem().end()) dyn_limit = it->second;
  }
  if (spec.smem > dyn_limit) {
    warn("%s:%d: %s asks %zu bytes of dynamic shared memory, more than its limit %zu (cudaFuncSetAttribute)", spec.file,
         spec.line, spec.name, spec.smem, dyn_limit);
    fail(cudaErrorInvalidValue);
    return;
  }
  if (!valid_stream(spec.stream)) {
    fail(cudaErrorInvalidResourceHandle);
    return;
  }

  Run& r = g_run;
  r.spec = &spec;
  r.body = body;
  r.faulted = false;
  r.fault_file.clear();
  r.nthreads = static_cast<int>(threads);
  if (r.fibers.size() < threads) r.fibers.resize(threads);
  while (g_stacks.size() < threads) g_stacks.push_back(new_stack(g_stack_bytes));
  for (size_t t = 0; t < threads; ++t) r.fibers[t].stack = g_stacks[t];
  r.warps.assign((threads + 31) / 32, Warp{});
  map_smem();
  r.static_base = g_smem_region;
  r.static_poisoned = 0;
  const size_t dyn_end = kStaticArena + dyn_arena_bytes();
  r.dyn_bytes = spec.smem;
  r.dyn_base = g_smem_region + ((dyn_end - spec.smem) & ~size_t{127});
  r.dyn_slack = g_smem_region + dyn_end - (r.dyn_base + spec.smem);
  g_fiber_thread.store(pthread_self());
  install_signal_handlers();
  if (g_racecheck_on) enable_racecheck(g_smem_region, kStaticArena + dyn_arena_bytes());

  gridDim = g;
  blockDim = b;
  // Blocks in a random order: x' = (a x + c) mod n with a coprime to n visits each block once.
  const uint64_t nblocks = static_cast<uint64_t>(g.x) * g.y * g.z;
  uint64_t a = 1, c = 0;
  if (nblocks > 1) {
    c = next_random() % nblocks;
    do a = next_random() % nblocks;
    while (a == 0 || std::gcd(a, nblocks) != 1);
  }
  for (uint64_t i = 0; i < nblocks && !r.faulted; ++i) {
    const uint64_t k = static_cast<uint64_t>((static_cast<unsigned __int128>(a) * i + c) % nblocks);
    blockIdx = dim3(static_cast<unsigned>(k % g.x), static_cast<unsigned>((k / g.x) % g.y),
                    static_cast<unsigned>(k / (static_cast<uint64_t>(g.x) * g.y)));
    run_block();
  }
  if (r.faulted) {
    warn("kernel fault in %s: %s [%s]; schedule seed %llu (CRATE_EMU_SEED=%llu reproduces it)%s", where().c_str(),
         r.fault_msg.c_str(), cudaGetErrorName(r.fault_code), static_cast<unsigned long long>(g_seed),
         static_cast<unsigned long long>(g_seed), source_position().c_str());
    if (std::getenv("CRATE_EMU_ABORT") != nullptr) std::abort();
    int expected = 0;
    g_sticky.compare_exchange_strong(expected, static_cast<int>(r.fault_code));
    fail(r.fault_code);
  }
  r.spec = nullptr;
}

void syncthreads() {
  g_run.cur->state = State::kAtBarrier;
  yield();
}

void warp_sync(unsigned mask, WarpOp op) { arrive_warp(mask, op); }

uint64_t warp_exchange(unsigned mask, uint64_t value, int src) {
  Run& r = g_run;
  Fiber& f = *r.cur;
  const int buf = static_cast<int>(f.exchanges++ & 1);
  r.warps[f.warp].slot[buf][f.lane] = value;
  arrive_warp(mask, kWarpShfl);
  if (src < 0 || src == f.lane) return value;
  if (src > 31 || !(mask & (1u << src))) {
    char msg[160];
    std::snprintf(msg, sizeof msg, "shuffle reads lane %d, which is not in the mask 0x%08x (undefined value)", src,
                  mask);
    raise_fault(cudaErrorIllegalInstruction, msg);
  }
  return r.warps[f.warp].slot[buf][src];
}

unsigned warp_ballot(unsigned mask, bool pred) {
  Run& r = g_run;
  Fiber& f = *r.cur;
  f.pred = pred;
  arrive_warp(mask, kWarpVote);
  f.pred = false;
  return f.vote & mask;  // copied to every lane when the vote completed
}

int lane_id() { return g_run.cur->lane; }

int warp_id() { return g_run.cur->warp; }

CollectiveAccess::CollectiveAccess() {
  Fiber* f = g_run.cur;
  saved_ = f->race_id;
  f->race_id = static_cast<uint16_t>(kWarpId | f->warp);
}
CollectiveAccess::~CollectiveAccess() { g_run.cur->race_id = static_cast<uint16_t>(saved_); }
AtomicAccess::AtomicAccess() { g_run.cur->atomic = true; }
AtomicAccess::~AtomicAccess() { g_run.cur->atomic = false; }

unsigned active_mask() {
  const Warp& w = g_run.warps[g_run.cur->warp];
  return w.exist & ~w.exited;
}

void* dynamic_shared() { return g_run.dyn_base; }

void* static_shared(const void* tag, size_t bytes, size_t align, const char* name) {
  Run& r = g_run;
  for (const StaticVar& v : r.statics)
    if (v.tag == tag) return r.static_base + v.offset;
  align = std::max<size_t>(align, 16);
  const size_t off = round_up(r.static_used, align);
  size_t static_bytes = 0;
  for (const StaticVar& v : r.statics) static_bytes += v.bytes;
  static_bytes += bytes;
  if (static_bytes > kMaxStaticSmem || static_bytes + r.dyn_bytes > kMaxDynSmemOptin || off + bytes > kStaticArena) {
    char msg[240];
    std::snprintf(msg, sizeof msg,
                  "__shared__ %s: %zu bytes of static shared memory (limit %zu) and %zu dynamic exceed the %zu bytes "
                  "a block may have",
                  name, static_bytes, kMaxStaticSmem, r.dyn_bytes, kMaxDynSmemOptin);
    raise_fault(cudaErrorLaunchOutOfResources, msg);
  }
  r.statics.push_back(StaticVar{tag, off, bytes, name});
  r.static_used = off + bytes + kRedZone;
  return r.static_base + off;
}

void kernel_fault(cudaError_t err, const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (g_run.cur == nullptr) {
    warn("fault outside a kernel: %s", buf);
    std::abort();
  }
  raise_fault(err, buf);
}

void check_wmma(const void* ptr, unsigned ldm, size_t elem_bytes, const char* what) {
  if ((reinterpret_cast<uintptr_t>(ptr) & 31u) != 0)
    kernel_fault(cudaErrorMisalignedAddress, "wmma::%s: pointer %p is not 256-bit aligned", what, ptr);
  if ((static_cast<size_t>(ldm) * elem_bytes) % 16 != 0)
    kernel_fault(cudaErrorMisalignedAddress, "wmma::%s: ldm %u is not a multiple of 16 bytes", what, ldm);
}

}  // namespace cuda_emu

// ============================================================================ UBSan hooks
// The emulator is compiled with -fsanitize=alignment,bounds and no sanitizer runtime: these
// handlers turn a misaligned access (a float4 load from a 4-byte aligned address) or an
// out-of-bounds array index into a kernel fault with the source position.
namespace {
struct UbsanLocation {
  const char* file;
  uint32_t line, column;
};
struct UbsanType {
  uint16_t kind, info;
  char name[1];
};
struct UbsanTypeMismatch {
  UbsanLocation loc;
  const UbsanType* type;
  unsigned char log_alignment, check_kind;
};
struct UbsanOutOfBounds {
  UbsanLocation loc;
  const UbsanType* array_type;
  const UbsanType* index_type;
};

[[noreturn]] void ubsan_fault(cudaError_t code, const char* what) {
  if (cuda_emu::g_in_fiber.load() && pthread_equal(pthread_self(), cuda_emu::g_fiber_thread.load()))
    cuda_emu::kernel_fault(code, "%s", what);
  std::fprintf(stderr, "[cuda-emu] host code: %s\n", what);
  std::abort();
}
}  // namespace

extern "C" __attribute__((visibility("hidden"))) void __ubsan_handle_type_mismatch_v1(UbsanTypeMismatch* d,
                                                                                      uintptr_t ptr) {
  char buf[600];
  std::snprintf(buf, sizeof buf, "%s:%u:%u: misaligned address %p for type %s (needs %u-byte alignment)", d->loc.file,
                d->loc.line, d->loc.column, reinterpret_cast<void*>(ptr), d->type->name, 1u << d->log_alignment);
  ubsan_fault(cudaErrorMisalignedAddress, buf);
}
extern "C" __attribute__((visibility("hidden"))) void __ubsan_handle_type_mismatch_v1_abort(UbsanTypeMismatch* d,
                                                                                            uintptr_t ptr) {
  __ubsan_handle_type_mismatch_v1(d, ptr);
}
extern "C" __attribute__((visibility("hidden"))) void __ubsan_handle_out_of_bounds(UbsanOutOfBounds* d,
                                                                                   uintptr_t index) {
  char buf[600];
  std::snprintf(buf, sizeof buf, "%s:%u:%u: index %lld out of bounds for type %s", d->loc.file, d->loc.line,
                d->loc.column, static_cast<long long>(index), d->array_type->name);
  ubsan_fault(cudaErrorIllegalAddress, buf);
}
extern "C" __attribute__((visibility("hidden"))) void __ubsan_handle_out_of_bounds_abort(UbsanOutOfBounds* d,
                                                                                         uintptr_t index) {
  __ubsan_handle_out_of_bounds(d, index);
}

// ============================================================================ runtime API

using cuda_emu::fail;

namespace {
struct ErrorText {
  cudaError_t code;
  const char* name;
  const char* text;
};
constexpr ErrorText kErrors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorInvalidDeviceFunction, "cudaErrorInvalidDeviceFunction", "invalid device function"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress", "an illegal memory access was encountered"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources", "too many resources requested for launch"},
    {cudaErrorLaunchTimeout, "cudaErrorLaunchTimeout", "the launch timed out and was terminated"},
    {cudaErrorAssert, "cudaErrorAssert", "device-side assert triggered"},
    {cudaErrorHardwareStackError, "cudaErrorHardwareStackError", "an illegal memory access was encountered"},
    {cudaErrorIllegalInstruction, "cudaErrorIllegalInstruction", "an illegal instruction was encountered"},
    {cudaErrorMisalignedAddress, "cudaErrorMisalignedAddress", "misaligned address"},
    {cudaErrorInvalidAddressSpace, "cudaErrorInvalidAddressSpace",
     "operation not supported on global/shared address space"},
    {cudaErrorInvalidPc, "cudaErrorInvalidPc", "invalid program counter"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
    {cudaErrorUnknown, "cudaErrorUnknown", "unknown error"},
};
const ErrorText* find_error(cudaError_t e) {
  for (const auto& t : kErrors)
    if (t.code == e) return &t;
  return nullptr;
}

int g_device = 0;

bool range_ok(const void* p, size_t n, const char* what, const char* side) {
  if (n == 0 || cuda_emu::in_allocation(p, n, true)) return true;
  cuda_emu::warn("%s: the %s range [%p, +%zu) is not inside one device allocation", what, side, p, n);
  return false;
}
}  // namespace

extern "C" {

cudaError_t cudaGetLastError(void) {
  const cudaError_t s = cuda_emu::sticky();
  if (s != cudaSuccess) return s;
  const cudaError_t e = cuda_emu::t_last_error;
  cuda_emu::t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) {
  const cudaError_t s = cuda_emu::sticky();
  return s != cudaSuccess ? s : cuda_emu::t_last_error;
}

const char* cudaGetErrorString(cudaError_t e) {
  const ErrorText* t = find_error(e);
  return t != nullptr ? t->text : "unrecognized error code";
}

const char* cudaGetErrorName(cudaError_t e) {
  const ErrorText* t = find_error(e);
  return t != nullptr ? t->name : "cudaErrorUnknown";
}

cudaError_t cudaGetDeviceCount(int* count) {
  CUDA_EMU_ENTRY();
  if (count == nullptr) return fail(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* dev) {
  CUDA_EMU_ENTRY();
  if (dev == nullptr) return fail(cudaErrorInvalidValue);
  *dev = g_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int dev) {
  CUDA_EMU_ENTRY();
  if (dev != 0) return fail(cudaErrorInvalidDevice);
  g_device = dev;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int dev) {
  CUDA_EMU_ENTRY();
  if (p == nullptr) return fail(cudaErrorInvalidValue);
  if (dev != 0) return fail(cudaErrorInvalidDevice);
  std::memset(p, 0, sizeof(*p));
  std::snprintf(p->name, sizeof p->name, "CUDA host emulator (H100-like sm_90)");
  p->totalGlobalMem = cuda_emu::kDeviceMemory;
  p->sharedMemPerBlock = cuda_emu::kMaxStaticSmem;
  p->sharedMemPerBlockOptin = cuda_emu::kMaxDynSmemOptin;
  p->sharedMemPerMultiprocessor = cuda_emu::kSmemPerSM;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 0x7fffffff, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->clockRate = 1980000;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;
  p->maxThreadsPerMultiProcessor = 2048;
  p->l2CacheSize = 50 * 1024 * 1024;
  p->memoryBusWidth = 5120;
  p->memoryClockRate = 2619000;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int dev) {
  CUDA_EMU_ENTRY();
  if (v == nullptr) return fail(cudaErrorInvalidValue);
  if (dev != 0) return fail(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *v = 1024;
      break;
    case cudaDevAttrMaxGridDimX:
      *v = 0x7fffffff;
      break;
    case cudaDevAttrMaxGridDimY:
    case cudaDevAttrMaxGridDimZ:
      *v = 65535;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *v = static_cast<int>(cuda_emu::kMaxStaticSmem);
      break;
    case cudaDevAttrWarpSize:
      *v = 32;
      break;
    case cudaDevAttrMultiProcessorCount:
      *v = 132;
      break;
    case cudaDevAttrL2CacheSize:
      *v = 50 * 1024 * 1024;
      break;
    case cudaDevAttrMaxThreadsPerMultiProcessor:
      *v = 2048;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *v = 9;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *v = 0;
      break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor:
      *v = static_cast<int>(cuda_emu::kSmemPerSM);
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *v = static_cast<int>(cuda_emu::kMaxDynSmemOptin);
      break;
    default:
      return fail(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
  CUDA_EMU_ENTRY();
  cuda_emu::callbacks().drain();
  return cuda_emu::sticky() != cudaSuccess ? fail(cuda_emu::sticky()) : cudaSuccess;
}

cudaError_t cudaDeviceReset(void) { return fail(cudaErrorNotSupported); }

cudaError_t cudaRuntimeGetVersion(int* v) {
  if (v == nullptr) return fail(cudaErrorInvalidValue);
  *v = 13000;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* v) {
  if (v == nullptr) return fail(cudaErrorInvalidValue);
  *v = 13000;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  CUDA_EMU_ENTRY();
  if (ptr == nullptr) return fail(cudaErrorInvalidValue);
  *ptr = nullptr;
  if (bytes == 0) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lock(cuda_emu::mem_mutex());
    if (bytes > cuda_emu::kDeviceMemory - cuda_emu::g_device_used) return fail(cudaErrorMemoryAllocation);
    cuda_emu::g_device_used += bytes;
  }
  cudaError_t e;
  *ptr = cuda_emu::guarded_alloc(bytes, true, &e);
  if (e != cudaSuccess) {
    std::lock_guard<std::mutex> lock(cuda_emu::mem_mutex());
    cuda_emu::g_device_used -= bytes;
    return fail(e);
  }
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  CUDA_EMU_ENTRY();
  if (ptr == nullptr) return cudaSuccess;  // also "create the context"
  return fail(cuda_emu::guarded_free(ptr, true));
}

cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned flags) {
  CUDA_EMU_ENTRY();
  (void)flags;
  if (ptr == nullptr) return fail(cudaErrorInvalidValue);
  cudaError_t e;
  *ptr = cuda_emu::guarded_alloc(bytes == 0 ? 1 : bytes, false, &e);
  return fail(e);
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return cudaHostAlloc(ptr, bytes, 0); }

cudaError_t cudaFreeHost(void* ptr) {
  CUDA_EMU_ENTRY();
  if (ptr == nullptr) return cudaSuccess;
  return fail(cuda_emu::guarded_free(ptr, false));
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  CUDA_EMU_ENTRY();
  if (free_bytes == nullptr || total_bytes == nullptr) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(cuda_emu::mem_mutex());
  *total_bytes = cuda_emu::kDeviceMemory;
  *free_bytes = cuda_emu::kDeviceMemory - cuda_emu::g_device_used;
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  CUDA_EMU_ENTRY();
  if (!cuda_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr) return fail(cudaErrorInvalidValue);
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind > cudaMemcpyDefault) return fail(cudaErrorInvalidValue);
  if ((dst_dev && !range_ok(dst, bytes, "cudaMemcpy", "destination")) ||
      (src_dev && !range_ok(src, bytes, "cudaMemcpy", "source")))
    return fail(cudaErrorInvalidValue);
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
  if (e != cudaSuccess) return e;
  return cudaDeviceSynchronize();
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  CUDA_EMU_ENTRY();
  if (!cuda_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  if (bytes == 0) return cudaSuccess;
  if (!range_ok(ptr, bytes, "cudaMemset", "destination")) return fail(cudaErrorInvalidValue);
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) { return cudaMemsetAsync(ptr, value, bytes, nullptr); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  CUDA_EMU_ENTRY();
  if (stream == nullptr) return fail(cudaErrorInvalidValue);
  auto* s = new cuda_emu::StreamObj{flags};
  std::lock_guard<std::mutex> lock(cuda_emu::handle_mutex());
  cuda_emu::live_streams().insert(s);
  *stream = reinterpret_cast<cudaStream_t>(s);
  return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, 0); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  CUDA_EMU_ENTRY();
  std::lock_guard<std::mutex> lock(cuda_emu::handle_mutex());
  if (cuda_emu::live_streams().erase(stream) == 0) return fail(cudaErrorInvalidResourceHandle);
  delete reinterpret_cast<cuda_emu::StreamObj*>(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  CUDA_EMU_ENTRY();
  if (!cuda_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  cuda_emu::callbacks().drain();
  return cuda_emu::sticky() != cudaSuccess ? fail(cuda_emu::sticky()) : cudaSuccess;
}

cudaError_t cudaStreamQuery(cudaStream_t stream) { return cudaStreamSynchronize(stream); }

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags) {
  CUDA_EMU_ENTRY();
  (void)event;
  (void)flags;
  if (!cuda_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaStreamAddCallback(cudaStream_t stream, cudaStreamCallback_t cb, void* user, unsigned flags) {
  CUDA_EMU_ENTRY();
  if (cb == nullptr || flags != 0) return fail(cudaErrorInvalidValue);
  if (!cuda_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  cuda_emu::callbacks().push(stream, cb, nullptr, user);
  return cudaSuccess;
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user) {
  CUDA_EMU_ENTRY();
  if (fn == nullptr) return fail(cudaErrorInvalidValue);
  if (!cuda_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  cuda_emu::callbacks().push(stream, nullptr, fn, user);
  return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  CUDA_EMU_ENTRY();
  if (event == nullptr) return fail(cudaErrorInvalidValue);
  auto* e = new cuda_emu::EventObj{flags};
  std::lock_guard<std::mutex> lock(cuda_emu::handle_mutex());
  cuda_emu::live_events().insert(e);
  *event = reinterpret_cast<cudaEvent_t>(e);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, 0); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  CUDA_EMU_ENTRY();
  std::lock_guard<std::mutex> lock(cuda_emu::handle_mutex());
  if (cuda_emu::live_events().erase(event) == 0) return fail(cudaErrorInvalidResourceHandle);
  delete reinterpret_cast<cuda_emu::EventObj*>(event);
  return cudaSuccess;
}

namespace {
bool valid_event(cudaEvent_t e) {
  std::lock_guard<std::mutex> lock(cuda_emu::handle_mutex());
  return cuda_emu::live_events().count(e) != 0;
}
}  // namespace

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  CUDA_EMU_ENTRY();
  if (!valid_event(event) || !cuda_emu::valid_stream(stream)) return fail(cudaErrorInvalidResourceHandle);
  return cudaSuccess;  // everything before it has completed already
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  CUDA_EMU_ENTRY();
  if (!valid_event(event)) return fail(cudaErrorInvalidResourceHandle);
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) { return cudaEventQuery(event); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  CUDA_EMU_ENTRY();
  if (ms == nullptr || !valid_event(start) || !valid_event(end)) return fail(cudaErrorInvalidValue);
  *ms = 0.f;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  CUDA_EMU_ENTRY();
  if (func == nullptr) return fail(cudaErrorInvalidDeviceFunction);
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > cuda_emu::kMaxDynSmemOptin) return fail(cudaErrorInvalidValue);
    std::lock_guard<std::mutex> lock(cuda_emu::attr_mutex());
    cuda_emu::max_dyn_smem()[func] = static_cast<size_t>(value);
  }
  return cudaSuccess;
}

}  // extern "C"

// ============================================================================ ThreadSanitizer hooks
// The instrumentation calls of the .cu objects (-fsanitize=thread, no runtime): memory accesses go
// to the shared-memory race detector; atomics of host code are real atomics (seq_cst).
#define CUDA_EMU_TSAN extern "C" __attribute__((visibility("hidden")))
#define CUDA_EMU_TSAN_RW(n)                                                                                          \
  CUDA_EMU_TSAN void __tsan_read##n(void* p) { cuda_emu::hook(p, n, false, __builtin_return_address(0)); }           \
  CUDA_EMU_TSAN void __tsan_write##n(void* p) { cuda_emu::hook(p, n, true, __builtin_return_address(0)); }           \
  CUDA_EMU_TSAN void __tsan_unaligned_read##n(void* p) { cuda_emu::hook(p, n, false, __builtin_return_address(0)); } \
  CUDA_EMU_TSAN void __tsan_unaligned_write##n(void* p) { cuda_emu::hook(p, n, true, __builtin_return_address(0)); }
CUDA_EMU_TSAN_RW(1)
CUDA_EMU_TSAN_RW(2)
CUDA_EMU_TSAN_RW(4)
CUDA_EMU_TSAN_RW(8)
CUDA_EMU_TSAN_RW(16)
CUDA_EMU_TSAN void __tsan_read_range(void* p, size_t n) { cuda_emu::hook(p, n, false, __builtin_return_address(0)); }
CUDA_EMU_TSAN void __tsan_write_range(void* p, size_t n) { cuda_emu::hook(p, n, true, __builtin_return_address(0)); }
CUDA_EMU_TSAN void __tsan_init() {}
CUDA_EMU_TSAN void __tsan_func_entry(void*) {}
CUDA_EMU_TSAN void __tsan_func_exit() {}
CUDA_EMU_TSAN void __tsan_vptr_update(void**, void*) {}
CUDA_EMU_TSAN void __tsan_vptr_read(void**) {}
CUDA_EMU_TSAN void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
CUDA_EMU_TSAN void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
#define CUDA_EMU_TSAN_ATOMIC(bits, T)                                                                   \
  CUDA_EMU_TSAN T __tsan_atomic##bits##_load(const volatile T* a, int) {                                \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                        \
  }                                                                                                     \
  CUDA_EMU_TSAN void __tsan_atomic##bits##_store(volatile T* a, T v, int) {                             \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                           \
  }                                                                                                     \
  CUDA_EMU_TSAN T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) {                             \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                 \
  }                                                                                                     \
  CUDA_EMU_TSAN T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) {                            \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                  \
  }                                                                                                     \
  CUDA_EMU_TSAN T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) {                            \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                                  \
  }                                                                                                     \
  CUDA_EMU_TSAN T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) {                            \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                                  \
  }                                                                                                     \
  CUDA_EMU_TSAN T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) {                             \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                   \
  }                                                                                                     \
  CUDA_EMU_TSAN T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) {                            \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                                  \
  }                                                                                                     \
  CUDA_EMU_TSAN T __tsan_atomic##bits##_fetch_nand(volatile T* a, T v, int) {                           \
    return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                                 \
  }                                                                                                     \
  CUDA_EMU_TSAN int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) { \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);             \
  }                                                                                                     \
  CUDA_EMU_TSAN int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {   \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);             \
  }                                                                                                     \
  CUDA_EMU_TSAN T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) {       \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                   \
    return c;                                                                                           \
  }
CUDA_EMU_TSAN_ATOMIC(8, char)
CUDA_EMU_TSAN_ATOMIC(16, short)
CUDA_EMU_TSAN_ATOMIC(32, int)
CUDA_EMU_TSAN_ATOMIC(64, long)
