//===- FakeRuntime.cpp - What the fake object needs of a runtime ----------===//
//
// Linked into the driver tests only while the real runtime library
// (blpa_runtime_cpu) does not exist yet; follows Runtime.h's contracts.
//
//===----------------------------------------------------------------------===//

#include "blpa/Runtime/Runtime.h"

#include <cstdio>
#include <cstdlib>

extern "C" {

void blpa_runtime_init(blpa_context *ctx) { ctx->impl = nullptr; }

void blpa_runtime_shutdown(blpa_context *ctx) { ctx->impl = nullptr; }

void blpa_sgd_update(blpa_context *ctx, float *param, const float *grad,
                     float *momentumBuf, float *gradOut, int64_t numel) {
  for (int64_t i = 0; i < numel; ++i) {
    gradOut[i] = grad[i];
    if (ctx->skip_update)
      continue;
    float g = grad[i] + ctx->weight_decay * param[i];
    momentumBuf[i] = ctx->momentum * momentumBuf[i] + g;
    param[i] -= ctx->lr * momentumBuf[i];
  }
}

void blpa_runtime_fail(const char *message) {
  std::fprintf(stderr, "blpa runtime error: %s\n", message);
  std::exit(1);
}

} // extern "C"
