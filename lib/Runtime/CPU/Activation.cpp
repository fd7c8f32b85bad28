//===- Activation.cpp - Sigmoid, hard sigmoid/swish, clip and gradients --===//

#include "CpuRuntime.h"

#include "../Common/ActivationMath.h"

using namespace blpa;
using namespace blpa::cpu;

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

} // extern "C"
