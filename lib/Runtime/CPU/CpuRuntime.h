//===- CpuRuntime.h - Private state and helpers of the CPU runtime -------===//
//
// What lives behind blpa_context::impl (the oneDNN engine and stream, the
// convolution plan cache, scratch buffers) and the small helpers every kernel
// file shares: error reporting at the C boundary and the static-schedule
// parallel loop.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_CPU_CPURUNTIME_H
#define BLPA_RUNTIME_CPU_CPURUNTIME_H

#include "blpa/Runtime/Runtime.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <vector>

namespace blpa {
namespace cpu {

/// Prints like printf into the message of blpa_runtime_fail; never returns.
[[noreturn]] void failf(const char *format, ...)
    __attribute__((format(printf, 1, 2)));

/// Grow-only, 64-byte aligned buffers indexed by a small slot number. Kernels
/// run one at a time, so every convolution shares the same few buffers for
/// its reordered operands instead of each shape owning its own.
class ScratchPool {
public:
  void *get(unsigned slot, size_t bytes);
  /// Bytes held by all slots: memory outside the planned arena.
  int64_t heldBytes() const;

private:
  struct FreeDeleter {
    void operator()(void *p) const;
  };
  struct Buffer {
    std::unique_ptr<void, FreeDeleter> data;
    size_t bytes = 0;
  };
  std::vector<Buffer> buffers;
};

struct ConvPlan;

/// The object blpa_context::impl points to.
struct CpuRuntime {
  CpuRuntime();
  ~CpuRuntime();

  dnnl::engine engine;
  dnnl::stream stream;
  /// Scratch outside the arena: used only by a convolution that does not
  /// fit the workspace even one sample at a time, or when the plan has no
  /// workspace (kernel tests, plans compiled with --cpu-workspace 0).
  ScratchPool scratch;
  /// The plan's workspace (blpa_runtime_set_workspace): convolutions put
  /// their blocked copies, scratchpad and partial weight gradients there,
  /// running over the batch in chunks small enough to fit it.
  uint8_t *workspace = nullptr;
  int64_t workspaceBytes = 0;
  /// Convolutions run over the batch in chunks whose larger operand holds
  /// at most this many bytes (at least one sample), so that without a
  /// workspace the blocked copies outside the arena stay a fixed size.
  /// $BLPA_CPU_CONV_CHUNK_BYTES overrides it (tests chunk small shapes with
  /// it).
  int64_t convChunkBytes = int64_t(32) << 20;
  /// Convolution plans keyed by (direction, shape, attributes).
  std::map<std::vector<int64_t>, std::unique_ptr<ConvPlan>> convPlans;
  /// Samples per chunk of each convolution (keyed as convPlans, at the full
  /// batch); 0: it runs one sample at a time with scratch outside the arena.
  std::map<std::vector<int64_t>, int64_t> convChunks;
  /// Whether the note about scratch outside the workspace was printed.
  bool warnedOutsideWorkspace = false;
  /// What blpa_runtime_last_step_seconds reports.
  double lastStepSeconds = 0;
};

/// The runtime state of `ctx`; fails cleanly when blpa_runtime_init was not
/// called.
CpuRuntime &runtimeOf(blpa_context *ctx);

/// Runs `body`, turning any C++ exception (oneDNN reports errors by throwing
/// dnnl::error) into blpa_runtime_fail: nothing may unwind through the C ABI.
template <typename Body> void guarded(const char *kernel, Body &&body) {
  try {
    body();
  } catch (const std::exception &e) {
    failf("%s: %s", kernel, e.what());
  } catch (...) {
    failf("%s: unknown exception", kernel);
  }
}

/// for (i = 0; i < count; ++i) body(i), split statically over the OpenMP
/// threads. Each index runs on exactly one thread, so any per-index
/// reduction is deterministic whatever the thread count. Callers make one
/// index a sizeable piece of work (a plane, a block of elements).
template <typename Body> void parallelFor(int64_t count, Body &&body) {
#pragma omp parallel for schedule(static) if (count > 1)
  for (int64_t i = 0; i < count; ++i)
    body(i);
}

/// Elements per parallelFor index in the element-wise kernels: large enough
/// to amortize the fork, small enough to balance two or more threads.
constexpr int64_t elementBlock = 1 << 14;

/// parallelFor over [0, numel) in blocks of elementBlock; body(begin, end).
template <typename Body> void parallelBlocks(int64_t numel, Body &&body) {
  int64_t blocks = (numel + elementBlock - 1) / elementBlock;
  parallelFor(blocks, [&](int64_t blk) {
    int64_t begin = blk * elementBlock;
    body(begin, std::min(numel, begin + elementBlock));
  });
}

} // namespace cpu
} // namespace blpa

#endif // BLPA_RUNTIME_CPU_CPURUNTIME_H
