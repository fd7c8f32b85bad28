//===- Dropout.cu - Training-mode dropout with recomputed masks ----------===//
//
// The mask's seed and step come from the device copy of the hyper-parameters
// (DeviceHyper), so a replayed CUDA graph draws a fresh mask every step.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"

#include "../Common/DropoutMask.h"

using namespace blpa;
using namespace blpa::cuda;

namespace {

__global__ void __launch_bounds__(blockThreads)
    dropoutKernel(const float *in, float *out, int64_t numel,
                  uint32_t threshold, float scale, int64_t stream,
                  const DeviceHyper *hyper) {
  uint64_t key = dropoutKey(hyper->seed, hyper->step, stream);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = dropoutKeeps(key, i, threshold) ? in[i] * scale : 0.0f;
}

void applyMask(blpa_context *ctx, const char *kernel, const float *in,
               float *out, int64_t numel, double ratio, int64_t stream) {
  if (!(ratio >= 0 && ratio < 1))
    failf("%s: ratio %g is outside [0, 1)", kernel, ratio);
  if (numel <= 0)
    return;
  CudaRuntime &rt = runtimeOf(ctx);
  dropoutKernel<<<gridFor(numel), blockThreads, 0, rt.stream>>>(
      in, out, numel, dropoutThreshold(ratio), float(1.0 / (1.0 - ratio)),
      stream, rt.hyper);
  checkLaunch(kernel);
}

} // namespace

extern "C" {

void blpa_dropout(blpa_context *ctx, const float *x, float *y, int64_t numel,
                  double ratio, int64_t stream) {
  applyMask(ctx, "blpa_dropout", x, y, numel, ratio, stream);
}

void blpa_dropout_grad(blpa_context *ctx, const float *dy, float *dx,
                       int64_t numel, double ratio, int64_t stream) {
  applyMask(ctx, "blpa_dropout_grad", dy, dx, numel, ratio, stream);
}

} // extern "C"
