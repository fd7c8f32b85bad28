//===- Emulator.cpp - Block scheduler and runtime state of the emulation -===//
//
// Each emulated thread is a fiber with its own stack (switched by a few
// instructions on x86-64, by swapcontext elsewhere). Blocks run one after
// the other; a block runs in passes: every ready thread runs until it exits
// or waits (at __syncthreads, or at a warp operation: shuffle, vote,
// __syncwarp), then the barriers whose threads have all arrived release
// them. A pass in which nothing ran and nothing was released is a
// deadlock.
//
// Warp operations exchange one 64-bit value per lane through two sets of
// slots used in alternate rounds: a lane writes a set only after every lane
// has passed the previous round, so after everyone read the set's last
// values.
//
// Also the CUDA runtime state the kernels reach through CudaRuntime.h
// (runtimeOf, scratchFor, failf, check) on host memory, in place of
// CudaRuntime.cpp, which needs a device.
//
//===----------------------------------------------------------------------===//

#include "Emulator.h"

#include "CudaRuntime.h"

#include "../Format.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

#if defined(__x86_64__) && !defined(BLPA_EMULATION_UCONTEXT)
#define BLPA_EMULATION_SWITCH
// Pushes the callee-saved registers, stores the stack pointer to *save,
// switches to `target` and pops its registers: returns where `target` last
// called this, or for a fresh stack into the entry Context::start put
// there. A tenth of swapcontext's cost, which saves the signal mask with a
// system call; the emulation switches a few times per emulated thread.
extern "C" void blpaEmulationSwitch(void **save, void *target);
asm(".pushsection .text\n"
    ".p2align 4\n"
    ".type blpaEmulationSwitch, @function\n"
    "blpaEmulationSwitch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size blpaEmulationSwitch, .-blpaEmulationSwitch\n"
    ".popsection\n");
#else
#include <ucontext.h>
#endif

namespace emu {
namespace {

using blpa_test::format;

/// A fiber's stack with an inaccessible guard page below it, so that an
/// overflow faults rather than corrupting another thread's frames.
class Stack {
public:
  static constexpr size_t usable = size_t(256) << 10;

  Stack() : guard(size_t(sysconf(_SC_PAGESIZE))) {
    base = mmap(nullptr, guard + usable, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED || mprotect(base, guard, PROT_NONE) != 0) {
      std::perror("blpa-cuda-emulation-test: thread stack");
      std::abort();
    }
  }
  ~Stack() { munmap(base, guard + usable); }
  Stack(const Stack &) = delete;
  Stack &operator=(const Stack &) = delete;

  void *bottom() const { return static_cast<char *>(base) + guard; }
  void *top() const { return static_cast<char *>(bottom()) + usable; }

private:
  size_t guard;
  void *base;
};

#ifdef BLPA_EMULATION_SWITCH
/// Where a fiber (or the scheduler) continues.
class Context {
public:
  /// The next switch to this context calls entry(), which must never
  /// return, on `stack`.
  void start(const Stack &stack, void (*entry)()) {
    auto **top = static_cast<void **>(stack.top());
    top[-1] = nullptr; // entry's return address, as after a call
    top[-2] = reinterpret_cast<void *>(entry);
    sp = top - 8; // six registers for blpaEmulationSwitch to pop
  }

  static void swap(Context &from, Context &to) {
    blpaEmulationSwitch(&from.sp, to.sp);
  }

private:
  void *sp = nullptr;
};

#else
/// Where a fiber (or the scheduler) continues.
class Context {
public:
  // getcontext is a system call: once per fiber, not once per block.
  Context() {
    if (getcontext(&context) != 0) {
      std::perror("blpa-cuda-emulation-test: getcontext");
      std::abort();
    }
  }

  /// The next switch to this context calls entry(), which must never
  /// return, on `stack`.
  void start(const Stack &stack, void (*entry)()) {
    context.uc_stack.ss_sp = stack.bottom();
    context.uc_stack.ss_size = Stack::usable;
    context.uc_link = nullptr;
    makecontext(&context, entry, 0);
  }

  static void swap(Context &from, Context &to) {
    swapcontext(&from.context, &to.context);
  }

private:
  ucontext_t context;
};

#endif

//===----------------------------------------------------------------------===//
// The block scheduler
//===----------------------------------------------------------------------===//

enum class State { ready, atBarrier, atWarp, exited };

struct Thread {
  Context context;
  Stack stack;
  uint3 index;
  unsigned linear;
  State state;
  unsigned rounds; // warp operations passed
};

struct Warp {
  unsigned lanes;   // threads of the block in the warp
  unsigned live;    // lanes that have not exited
  unsigned waiting; // lanes at a warp operation
  uint64_t values[2][32];
};

struct Launch {
  const char *kernel, *site;
  dim3 grid, block;
  void (*body)(const void *);
  const void *closure;
};

constexpr unsigned fullMask = 0xffffffffu;

/// Runs the blocks of launches, one at a time, on the calling OS thread.
class Scheduler {
public:
  void run(const Launch &launch, Order order);

  // Called by the running emulated thread.
  void syncThreads() {
    ++waitingAtBarrier;
    suspend(State::atBarrier);
  }
  const uint64_t *warpExchange(unsigned mask, uint64_t value);
  unsigned laneId() const { return current->linear % 32; }

private:
  static void entry();
  void startBlock(uint3 block);
  void runBlock(Order order);
  void resume(Thread &thread);
  void suspend(State state);
  bool releaseBarriers();
  [[noreturn]] void fail(const std::string &message);
  std::string where() const;

  const Launch *launch = nullptr;
  std::vector<std::unique_ptr<Thread>> threads; // grown, never shrunk
  std::vector<Warp> warps;
  unsigned count = 0, live = 0, waitingAtBarrier = 0;
  Context schedulerContext;
  Thread *current = nullptr;
  std::string failure; // set by a thread that broke the model
};

Scheduler scheduler;
Order currentOrder = Order::forward;
Stats totals;

void Scheduler::entry() {
  Scheduler &s = scheduler;
  try {
    s.launch->body(s.launch->closure);
  } catch (const std::exception &e) {
    s.failure = std::string("exception in a kernel: ") + e.what();
  }
  Thread &self = *s.current;
  --s.live;
  --s.warps[self.linear / 32].live;
  self.state = State::exited;
  Context::swap(self.context, s.schedulerContext); // never resumed
}

void Scheduler::startBlock(uint3 block) {
  const dim3 &shape = launch->block;
  count = shape.x * shape.y * shape.z;
  while (threads.size() < count)
    threads.push_back(std::make_unique<Thread>());
  for (unsigned i = 0; i < count; ++i) {
    Thread &t = *threads[i];
    t.context.start(t.stack, &Scheduler::entry);
    t.index = {i % shape.x, i / shape.x % shape.y, i / (shape.x * shape.y)};
    t.linear = i;
    t.state = State::ready;
    t.rounds = 0;
  }
  warps.assign((count + 31) / 32, Warp{});
  for (unsigned w = 0; w < warps.size(); ++w)
    warps[w].lanes = warps[w].live = std::min(32u, count - 32 * w);
  live = count;
  waitingAtBarrier = 0;
  blockIdx = block;
}

void Scheduler::resume(Thread &thread) {
  current = &thread;
  threadIdx = thread.index;
  Context::swap(schedulerContext, thread.context);
  if (!failure.empty()) {
    std::string message = where() + ": " + failure;
    failure.clear();
    throw Failure(message);
  }
}

void Scheduler::suspend(State state) {
  Thread &self = *current;
  self.state = state;
  Context::swap(self.context, schedulerContext);
}

/// Records `message` for the scheduler and leaves the thread for good.
void Scheduler::fail(const std::string &message) {
  failure = message;
  Thread &self = *current;
  self.state = State::exited;
  Context::swap(self.context, schedulerContext);
  std::abort(); // never resumed
}

std::string Scheduler::where() const {
  return format("%s (%s), block (%u, %u, %u), thread (%u, %u, %u)",
                launch->kernel, launch->site, blockIdx.x, blockIdx.y,
                blockIdx.z, current->index.x, current->index.y,
                current->index.z);
}

const uint64_t *Scheduler::warpExchange(unsigned mask, uint64_t value) {
  Thread &self = *current;
  Warp &warp = warps[self.linear / 32];
  if (mask != fullMask)
    fail(format("warp operation with mask 0x%08x: only full masks are "
                "emulated",
                mask));
  if (warp.lanes != 32)
    fail(
        format("full-mask warp operation in a warp of %u threads", warp.lanes));
  unsigned set = self.rounds++ & 1;
  warp.values[set][self.linear % 32] = value;
  ++warp.waiting;
  suspend(State::atWarp);
  return warp.values[set];
}

/// Releases the barriers every live thread concerned has reached; returns
/// whether it released any.
bool Scheduler::releaseBarriers() {
  bool released = false;
  auto wake = [&](unsigned first, unsigned end, State from) {
    for (unsigned i = first; i < end; ++i)
      if (threads[i]->state == from)
        threads[i]->state = State::ready;
    released = true;
  };
  if (waitingAtBarrier > 0 && waitingAtBarrier == live) {
    waitingAtBarrier = 0;
    wake(0, count, State::atBarrier);
  }
  for (unsigned w = 0; w < warps.size(); ++w) {
    Warp &warp = warps[w];
    if (warp.waiting == 0 || warp.waiting != warp.live)
      continue;
    if (warp.live != warp.lanes)
      throw Failure(format("%s (%s), block (%u, %u, %u), warp %u: a warp "
                           "operation after %u of its lanes exited",
                           launch->kernel, launch->site, blockIdx.x, blockIdx.y,
                           blockIdx.z, w, warp.lanes - warp.live));
    warp.waiting = 0;
    wake(32 * w, 32 * w + warp.lanes, State::atWarp);
  }
  return released;
}

void Scheduler::runBlock(Order order) {
  while (live > 0) {
    bool progressed = false;
    for (unsigned k = 0; k < count; ++k) {
      Thread &t = *threads[order == Order::forward ? k : count - 1 - k];
      if (t.state == State::ready) {
        resume(t);
        progressed = true;
      }
    }
    if (!releaseBarriers() && !progressed)
      throw Failure(format("%s (%s), block (%u, %u, %u): deadlock: %u of "
                           "%u live threads wait at __syncthreads, the "
                           "others at warp operations (divergent barriers)",
                           launch->kernel, launch->site, blockIdx.x, blockIdx.y,
                           blockIdx.z, waitingAtBarrier, live));
  }
}

void Scheduler::run(const Launch &l, Order order) {
  launch = &l;
  blockDim = l.block;
  gridDim = l.grid;
  uint64_t blocks = uint64_t(l.grid.x) * l.grid.y * l.grid.z;
  for (uint64_t k = 0; k < blocks; ++k) {
    uint64_t b = order == Order::forward ? k : blocks - 1 - k;
    startBlock({unsigned(b % l.grid.x), unsigned(b / l.grid.x % l.grid.y),
                unsigned(b / (uint64_t(l.grid.x) * l.grid.y))});
    runBlock(order);
  }
  totals.blocks += int64_t(blocks);
  totals.threads += int64_t(blocks) * count;
}

/// The device's limits on a launch's shape (compute capability 9.0).
void checkShape(const Launch &l, size_t dynamicShared) {
  uint64_t threads = uint64_t(l.block.x) * l.block.y * l.block.z;
  bool ok = threads >= 1 && threads <= 1024 && l.block.z <= 64 &&
            l.grid.x >= 1 && l.grid.x <= 0x7fffffffu && l.grid.y >= 1 &&
            l.grid.y <= 65535 && l.grid.z >= 1 && l.grid.z <= 65535;
  if (!ok)
    throw Failure(format("%s (%s): invalid launch: grid (%u, %u, %u), block "
                         "(%u, %u, %u)",
                         l.kernel, l.site, l.grid.x, l.grid.y, l.grid.z,
                         l.block.x, l.block.y, l.block.z));
  if (dynamicShared != 0)
    throw Failure(format("%s (%s): dynamic shared memory is not emulated",
                         l.kernel, l.site));
}

} // namespace

void syncThreads() { scheduler.syncThreads(); }

const uint64_t *warpExchange(unsigned mask, uint64_t value) {
  return scheduler.warpExchange(mask, value);
}

unsigned laneId() { return scheduler.laneId(); }

void launch(const char *kernel, const char *site, dim3 grid, dim3 block,
            size_t dynamicShared, void (*body)(const void *),
            const void *closure) {
  Launch l{kernel, site, grid, block, body, closure};
  checkShape(l, dynamicShared);
  ++totals.launches;
  scheduler.run(l, currentOrder);
}

void setOrder(Order order) { currentOrder = order; }

Stats stats() { return totals; }

void initContext(blpa_context *ctx) {
  ctx->impl = new blpa::cuda::CudaRuntime();
}

void shutdownContext(blpa_context *ctx) {
  delete static_cast<blpa::cuda::CudaRuntime *>(ctx->impl);
  ctx->impl = nullptr;
}

int32_t runStep(blpa_context *ctx, const std::function<void()> &step) {
  blpa::cuda::CudaRuntime &rt = blpa::cuda::runtimeOf(ctx);
  *rt.hyper = {ctx->lr,          ctx->momentum, ctx->weight_decay,
               ctx->skip_update, ctx->seed,     ctx->step};
  step();
  int32_t error = *rt.errorFlag;
  *rt.errorFlag = blpa::cuda::deviceOk;
  return error;
}

} // namespace emu

//===----------------------------------------------------------------------===//
// The runtime state CudaRuntime.h declares, on host memory
//===----------------------------------------------------------------------===//

using namespace blpa::cuda;

/// Throws rather than exit through blpa_runtime_fail, so that the test can
/// check that a kernel rejects bad arguments and carry on.
void blpa::cuda::failf(const char *format, ...) {
  char message[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  throw emu::Failure(message);
}

// emu::launch checks the shape of every launch and throws.
void blpa::cuda::checkLaunch(const char *) {}

void blpa::cuda::check(cudaError_t status, const char *what) {
  if (status != cudaSuccess)
    failf("%s: CUDA error %d", what, int(status));
}

CudaRuntime::CudaRuntime() {
  hyper = new DeviceHyper{};
  errorFlag = new int32_t(deviceOk);
}

CudaRuntime::~CudaRuntime() {
  for (auto &buffer : scratch)
    std::free(buffer.first);
  delete hyper;
  delete errorFlag;
}

CudaRuntime &blpa::cuda::runtimeOf(blpa_context *ctx) {
  if (!ctx || !ctx->impl)
    failf("kernel called without blpa_runtime_init");
  return *static_cast<CudaRuntime *>(ctx->impl);
}

/// Exactly `bytes` (grown when asked for more), filled with 0xFF bytes on
/// every call: the contents are undefined, and a kernel that reads partials
/// it did not write then reads NaN.
void *blpa::cuda::scratchFor(CudaRuntime &rt, unsigned slot, size_t bytes) {
  if (slot >= rt.scratch.size())
    rt.scratch.resize(slot + 1, {nullptr, 0});
  auto &[pointer, size] = rt.scratch[slot];
  if (size < bytes) {
    std::free(pointer);
    pointer = std::malloc(bytes);
    if (!pointer)
      failf("out of memory allocating %zu bytes of scratch", bytes);
    size = bytes;
  }
  std::memset(pointer, 0xFF, size);
  return pointer;
}
