//===- Dropout.cpp - Training-mode dropout with recomputed masks ---------===//

#include "CpuRuntime.h"

#include "../Common/DropoutMask.h"

using namespace blpa;
using namespace blpa::cpu;

namespace {

/// out[i] = in[i] * scale where the mask keeps element i, else 0.
void applyMask(blpa_context *ctx, const char *kernel, const float *in,
               float *out, int64_t numel, double ratio, int64_t stream) {
  if (!(ratio >= 0 && ratio < 1))
    failf("%s: ratio %g is outside [0, 1)", kernel, ratio);
  uint64_t key = dropoutKey(ctx->seed, ctx->step, stream);
  uint32_t threshold = dropoutThreshold(ratio);
  float scale = float(1.0 / (1.0 - ratio));
  parallelBlocks(numel, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      out[i] = dropoutKeeps(key, i, threshold) ? in[i] * scale : 0.0f;
  });
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
