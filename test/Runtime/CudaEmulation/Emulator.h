//===- Emulator.h - The interface of the CUDA kernel emulation --*- C++ -*-===//
//
// What blpa-cuda-emulation-test sees of the emulation: the CUDA runtime's
// kernel files, compiled for the host (see cuda_runtime.h in this folder),
// define the blpa_* kernels of Runtime.h on host memory; this sets up
// their context and runs steps as blpa_runtime_run does.
//
// Every emulated CUDA thread runs on a stack of its own and is switched
// only at barriers, shuffles and votes, so __syncthreads and warp
// operations behave as on the device; a block whose threads can no longer
// all meet at a barrier (divergent barriers) and a warp operation some lanes
// of the warp have left are reported as errors, as are invalid launch
// shapes. Blocks run one after the other, threads of a block in index order
// or, for repeat checks, in reverse, which shows up any result that depends
// on the order threads run in.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_TEST_RUNTIME_CUDAEMULATION_EMULATOR_H
#define BLPA_TEST_RUNTIME_CUDAEMULATION_EMULATOR_H

#include "blpa/Runtime/Runtime.h"

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace emu {

/// An error of an emulated kernel: what blpa_runtime_fail reports on the
/// device (a host-side check of a kernel's arguments), an invalid launch,
/// or a kernel that breaks the CUDA execution model.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The order blocks, and threads within a block, are started and resumed.
enum class Order { forward, reverse };
void setOrder(Order order);

/// Totals over every launch so far.
struct Stats {
  int64_t launches = 0, blocks = 0, threads = 0;
};
Stats stats();

/// Creates and destroys the CUDA runtime state of `ctx` (ctx->impl).
void initContext(blpa_context *ctx);
void shutdownContext(blpa_context *ctx);

/// Runs `step` as blpa_runtime_run does: with ctx's hyper-parameters staged
/// into the runtime's device copy first. Returns the device error flag the
/// step left (0 when none, see CudaRuntime.h's DeviceError) and clears it.
int32_t runStep(blpa_context *ctx, const std::function<void()> &step);

/// Runs kernels with known results and kernels the emulation must refuse
/// (EmulatorCheck.cu): each check's name and what went wrong, "" if
/// nothing.
std::vector<std::pair<std::string, std::string>> selfCheck();

} // namespace emu

#endif // BLPA_TEST_RUNTIME_CUDAEMULATION_EMULATOR_H
