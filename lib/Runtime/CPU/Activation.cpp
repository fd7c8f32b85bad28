//===- Activation.cpp - Sigmoid, hard sigmoid/swish, clip and gradients --===//
//
// The activations, their exact gradients, and the region codes that let a
// compressed step keep the piecewise kinds' gradient masks exact.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "Packing.h"

#include "../Common/ActivationMath.h"

#include <algorithm>

using namespace blpa;
using namespace blpa::cpu;

namespace {

/// Calls f(kind constant, width constant) for a piecewise activation kind
/// and the width of its region codes; fails for any other kind or width.
template <typename F>
void withRegionKind(const char *kernel, int64_t kind, int64_t bits, F &&f) {
  int regionBits = activationRegionBits(kind);
  if (!regionBits)
    failf("%s: activation kind %lld has no region codes", kernel,
          (long long)kind);
  withActivationKind(kind, [&](auto k) {
    withCodeBits(kernel, bits, 1u << regionBits,
                 [&](auto width) { f(k, width); });
  });
}

} // namespace

extern "C" {

void blpa_activation(blpa_context *, const float *x, float *y, int64_t numel,
                     int64_t kind, double alpha, double beta) {
  ActivationParams p{float(alpha), float(beta)};
  bool known = withActivationKind(kind, [&](auto k) {
    constexpr int Kind = decltype(k)::value;
    parallelBlocks(numel, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        y[i] = activationValue<Kind>(x[i], p);
    });
  });
  if (!known)
    failf("blpa_activation: unknown kind %lld", (long long)kind);
}

void blpa_activation_grad(blpa_context *, const float *dy, const float *saved,
                          float *dx, int64_t numel, int64_t kind, double alpha,
                          double beta) {
  ActivationParams p{float(alpha), float(beta)};
  bool known = withActivationKind(kind, [&](auto k) {
    constexpr int Kind = decltype(k)::value;
    parallelBlocks(numel, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        dx[i] = activationGrad<Kind>(dy[i], saved[i], p);
    });
  });
  if (!known)
    failf("blpa_activation_grad: unknown kind %lld", (long long)kind);
}

// The parameters are read once, before the loop.
void blpa_activation_dynamic(blpa_context *ctx, const float *x, float *y,
                             int64_t numel, int64_t kind, double alpha,
                             double beta, const float *alphaAt,
                             const float *betaAt) {
  ActivationParams p =
      loadActivationParams({float(alpha), float(beta)}, alphaAt, betaAt);
  blpa_activation(ctx, x, y, numel, kind, p.alpha, p.beta);
}

void blpa_activation_grad_dynamic(blpa_context *ctx, const float *dy,
                                  const float *saved, float *dx, int64_t numel,
                                  int64_t kind, double alpha, double beta,
                                  const float *alphaAt, const float *betaAt) {
  ActivationParams p =
      loadActivationParams({float(alpha), float(beta)}, alphaAt, betaAt);
  blpa_activation_grad(ctx, dy, saved, dx, numel, kind, p.alpha, p.beta);
}

// One slice: the codes are element-wise.
void blpa_activation_region(blpa_context *, const float *x, uint8_t *codes,
                            int64_t numel, int64_t kind, double alpha,
                            double beta, const float *alphaAt,
                            const float *betaAt, int64_t bits) {
  ActivationParams p =
      loadActivationParams({float(alpha), float(beta)}, alphaAt, betaAt);
  withRegionKind("blpa_activation_region", kind, bits, [&](auto k, auto width) {
    constexpr int Kind = decltype(k)::value;
    encodeSlices<decltype(width)::value>(
        numel, std::max<int64_t>(numel, 1), codes,
        [&](int64_t, int64_t b, int64_t e, uint8_t *q) {
          for (int64_t j = b; j < e; ++j)
            q[j - b] = uint8_t(activationRegion<Kind>(x[j], p));
        });
  });
}

void blpa_activation_grad_region(blpa_context *, const float *dy,
                                 const uint8_t *codes, const float *values,
                                 float *dx, int64_t numel, int64_t kind,
                                 double alpha, double beta, int64_t bits) {
  const char *kernel = "blpa_activation_grad_region";
  if (kind == BLPA_ACT_HARD_SWISH && !values)
    failf("%s: hard swish reads the values of its middle piece", kernel);
  ActivationParams p{float(alpha), float(beta)};
  withRegionKind(kernel, kind, bits, [&](auto k, auto width) {
    constexpr int Kind = decltype(k)::value;
    decodeSlices<decltype(width)::value>(
        numel, std::max<int64_t>(numel, 1), codes,
        [&](int64_t, int64_t b, int64_t e, const uint8_t *q) {
          for (int64_t j = b; j < e; ++j) {
            float v = Kind == BLPA_ACT_HARD_SWISH ? values[j] : 0.0f;
            dx[j] = activationGradInRegion<Kind>(dy[j], q[j - b], v, p);
          }
        });
  });
}

} // extern "C"
