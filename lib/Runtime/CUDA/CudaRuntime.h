//===- CudaRuntime.h - Private state and helpers of the CUDA runtime -----===//
//
// What lives behind blpa_context::impl on the GPU (the stream every kernel
// runs on, the cuDNN and cuBLAS handles, the workspace the plan reserved,
// the hyper-parameters in device memory, the device error flag, recorded
// step graphs) and the helpers every kernel file shares. Compiled by nvcc
// (.cu files) and by the host compiler (.cpp files).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_CUDA_CUDARUNTIME_H
#define BLPA_RUNTIME_CUDA_CUDARUNTIME_H

#include "blpa/Runtime/Runtime.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

namespace blpa {
namespace cuda {

/// Prints like printf into the message of blpa_runtime_fail; never returns.
[[noreturn]] void failf(const char *format, ...)
    __attribute__((format(printf, 1, 2)));

/// Fails with `what` and CUDA's own message unless `status` is success.
void check(cudaError_t status, const char *what);
void check(cudnnStatus_t status, const char *what);
void check(cublasStatus_t status, const char *what);
/// check(cudaGetLastError(), kernel) after a launch.
void checkLaunch(const char *kernel);
/// Fails with one line when the process has no device it can use.
void requireDevice();

/// The hyper-parameters kernels read at run time. They live in device
/// memory, refreshed before every step, so that a recorded step replays
/// with the current learning rate.
struct DeviceHyper {
  float lr;
  float momentum;
  float weightDecay;
  int32_t skipUpdate;
  /// Dropout masks' seed and step (blpa_context::seed, step).
  uint64_t seed;
  uint64_t step;
};

/// Errors a kernel can only detect on the device; the first one is kept in
/// CudaRuntime::errorFlag and reported after the step.
enum DeviceError : int32_t {
  deviceOk = 0,
  deviceLabelOutOfRange = 1,
  deviceIndexOutOfRange = 2,
};

/// A recorded step: the executable graph and the bindings it was recorded
/// with.
struct RecordedStep {
  std::vector<const void *> bindings;
  cudaGraphExec_t exec = nullptr;
  int runs = 0;
};

/// The object blpa_context::impl points to.
struct CudaRuntime {
  CudaRuntime();
  ~CudaRuntime();

  cudaStream_t stream = nullptr;
  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  /// Scratch space in the arena (blpa_runtime_set_workspace).
  void *workspace = nullptr;
  size_t workspaceBytes = 0;
  /// Device copy of the hyper-parameters and its pinned host staging.
  DeviceHyper *hyper = nullptr;
  DeviceHyper *hyperStaging = nullptr;
  /// Device: the first DeviceError a kernel raised, 0 if none.
  int32_t *errorFlag = nullptr;
  /// Pinned host buffer that uploads and downloads go through.
  void *staging = nullptr;
  size_t stagingBytes = 0;
  /// Grow-only device scratch buffers by slot (scratchFor).
  std::vector<std::pair<void *, size_t>> scratch;
  /// Per-shape library state (cuDNN descriptors and chosen algorithms),
  /// keyed by the calling file's own key; owned here so it lives as long
  /// as the handles.
  std::map<std::vector<int64_t>, std::shared_ptr<void>> plans;
  /// Events around the last step (blpa_runtime_last_step_seconds).
  cudaEvent_t stepStart = nullptr, stepEnd = nullptr;
  /// Recorded steps by step function.
  std::map<void (*)(void *), RecordedStep> recorded;
};

/// The runtime state of `ctx`; fails cleanly when blpa_runtime_init was not
/// called.
CudaRuntime &runtimeOf(blpa_context *ctx);

/// A device buffer of at least `bytes` for slot `slot`, grow-only, for
/// kernels' small per-call temporaries (partial sums of reductions). The
/// first run of a step grows every slot to its size (steps are recorded
/// from their second run on), so nothing is allocated while recording or
/// replaying. Contents are undefined.
void *scratchFor(CudaRuntime &rt, unsigned slot, size_t bytes);

/// Threads per block of the element-wise kernels.
constexpr int blockThreads = 256;

/// Blocks for a grid-stride loop over `count` items: enough to fill the
/// device, never more than the items need.
inline unsigned gridFor(int64_t count, int threads = blockThreads) {
  int64_t blocks = (count + threads - 1) / threads;
  const int64_t cap = 65535; // grid-stride loops cover the rest
  return unsigned(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

} // namespace cuda
} // namespace blpa

#endif // BLPA_RUNTIME_CUDA_CUDARUNTIME_H
