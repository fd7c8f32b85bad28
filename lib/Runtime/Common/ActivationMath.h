//===- ActivationMath.h - Element-wise activations, both runtimes -*- C++
//-*-===//
//
// The value and derivative of every BLPA_ACT_* kind, written once for the
// CPU runtime (plain C++) and the CUDA runtime (__host__ __device__), so the
// two targets compute the same formulas. Kinds are template parameters:
// kernels instantiate one loop per kind, which the compiler vectorizes.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_ACTIVATIONMATH_H
#define BLPA_RUNTIME_COMMON_ACTIVATIONMATH_H

#include "blpa/Runtime/Runtime.h"

#include <math.h>
#include <stdint.h>

#include <type_traits>

#include "HostDevice.h"

namespace blpa {

/// The two static parameters of an activation, as floats.
struct ActivationParams {
  float alpha, beta;
};

/// The parameters given at run time where alphaAt or betaAt is non-null
/// (blpa_activation_dynamic), else the static ones.
BLPA_HOST_DEVICE inline ActivationParams
loadActivationParams(ActivationParams p, const float *alphaAt,
                     const float *betaAt) {
  return {alphaAt ? *alphaAt : p.alpha, betaAt ? *betaAt : p.beta};
}

/// Constants of erf's derivative and the GELUs: 2 / sqrt(pi), 1 / sqrt(2),
/// 1 / sqrt(2 pi), sqrt(2 / pi) and the tanh approximation's cubic
/// coefficient.
constexpr float kTwoOverSqrtPi = 1.12837916709551257f;
constexpr float kSqrtHalf = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kGeluCubic = 0.044715f;

/// The argument of tanh in GELU_TANH.
BLPA_HOST_DEVICE inline float geluTanhInner(float x) {
  return kSqrt2OverPi * (x + kGeluCubic * (x * x * x));
}

template <int Kind>
BLPA_HOST_DEVICE inline float activationValue(float x, ActivationParams p) {
  if (Kind == BLPA_ACT_SIGMOID)
    return 1.0f / (1.0f + expf(-x));
  if (Kind == BLPA_ACT_HARD_SIGMOID)
    return fminf(fmaxf(p.alpha * x + p.beta, 0.0f), 1.0f);
  if (Kind == BLPA_ACT_HARD_SWISH)
    return x * fminf(fmaxf(x * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f);
  if (Kind == BLPA_ACT_TANH)
    return tanhf(x);
  if (Kind == BLPA_ACT_ERF)
    return erff(x);
  if (Kind == BLPA_ACT_GELU)
    return 0.5f * x * (1.0f + erff(x * kSqrtHalf));
  if (Kind == BLPA_ACT_GELU_TANH)
    return 0.5f * x * (1.0f + tanhf(geluTanhInner(x)));
  if (Kind == BLPA_ACT_SQRT)
    return sqrtf(x);
  if (Kind == BLPA_ACT_POW)
    return powf(x, p.alpha);
  if (Kind == BLPA_ACT_EXP)
    return expf(x);
  if (Kind == BLPA_ACT_LOG)
    return logf(x);
  // CLIP: comparisons rather than fminf/fmaxf, which would drop a NaN.
  float low = x < p.alpha ? p.alpha : x;
  return low > p.beta ? p.beta : low;
}

/// Whether the gradient of `kind` reads the activation's output (blpa_
/// activation_grad's `saved`) rather than its input.
BLPA_HOST_DEVICE constexpr bool activationGradReadsOutput(int64_t kind) {
  return kind == BLPA_ACT_SIGMOID || kind == BLPA_ACT_TANH ||
         kind == BLPA_ACT_SQRT || kind == BLPA_ACT_EXP;
}

/// Bits of the region codes of a piecewise activation (blpa_activation_
/// region): 1 for CLIP and HARD_SIGMOID, 2 for HARD_SWISH, 0 for a smooth
/// kind (SIGMOID, TANH, ERF, the GELUs, SQRT, POW, EXP, LOG) or an unknown
/// one.
BLPA_HOST_DEVICE constexpr int activationRegionBits(int64_t kind) {
  return kind == BLPA_ACT_CLIP || kind == BLPA_ACT_HARD_SIGMOID ? 1
         : kind == BLPA_ACT_HARD_SWISH                          ? 2
                                                                : 0;
}

/// The piece of the piecewise activation Kind that input x is in, as its
/// gradient decides it: CLIP and HARD_SIGMOID 1 where the gradient passes,
/// else 0; HARD_SWISH 0 below -3, 1 in [-3, 3], else 2 (NaN included).
/// PyTorch's conventions at the thresholds (hardtanh, relu6, hardsigmoid
/// pass nothing on them; hardswish's middle piece is closed).
template <int Kind>
BLPA_HOST_DEVICE inline uint32_t activationRegion(float x, ActivationParams p) {
  if (Kind == BLPA_ACT_HARD_SIGMOID) {
    float t = p.alpha * x + p.beta;
    return t > 0.0f && t < 1.0f;
  }
  if (Kind == BLPA_ACT_HARD_SWISH)
    return x < -3.0f ? 0u : x <= 3.0f ? 1u : 2u;
  return x > p.alpha && x < p.beta;
}

/// dx for dy of an element in piece `region` of the piecewise activation
/// Kind; `v` is its input, or an approximation of it (only HARD_SWISH's
/// middle piece reads it, clamped to the piece, where it must be).
template <int Kind>
BLPA_HOST_DEVICE inline float
activationGradInRegion(float dy, uint32_t region, float v, ActivationParams p) {
  if (Kind == BLPA_ACT_HARD_SIGMOID)
    return region ? dy * p.alpha : 0.0f;
  if (Kind == BLPA_ACT_HARD_SWISH) {
    if (region != 1)
      return region ? dy : 0.0f;
    float inside = fminf(fmaxf(v, -3.0f), 3.0f);
    return dy * (inside / 3.0f + 0.5f);
  }
  return region ? dy : 0.0f;
}

/// dx for dy of a smooth kind (none of the piecewise ones), given `saved`
/// (activationGradReadsOutput), as PyTorch's backward formulas have it.
template <int Kind>
BLPA_HOST_DEVICE inline float smoothActivationGrad(float dy, float saved,
                                                   ActivationParams p) {
  if (Kind == BLPA_ACT_SIGMOID)
    return dy * (saved * (1.0f - saved));
  if (Kind == BLPA_ACT_TANH)
    return dy * (1.0f - saved * saved);
  if (Kind == BLPA_ACT_SQRT)
    return dy / (2.0f * saved);
  if (Kind == BLPA_ACT_EXP)
    return dy * saved;
  if (Kind == BLPA_ACT_LOG)
    return dy / saved;
  if (Kind == BLPA_ACT_ERF)
    return dy * (kTwoOverSqrtPi * expf(-(saved * saved)));
  if (Kind == BLPA_ACT_GELU) {
    float cdf = 0.5f * (1.0f + erff(saved * kSqrtHalf));
    float pdf = kInvSqrt2Pi * expf(-0.5f * (saved * saved));
    return dy * (cdf + saved * pdf);
  }
  if (Kind == BLPA_ACT_GELU_TANH) {
    float t = tanhf(geluTanhInner(saved));
    float inner = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * (saved * saved));
    return dy * (0.5f * (1.0f + t) + 0.5f * saved * (1.0f - t * t) * inner);
  }
  // POW: torch's pow_backward gives 0 for a zero exponent (where x^-1
  // would make 0 * inf at x = 0).
  if (p.alpha == 0.0f)
    return 0.0f;
  return dy * (p.alpha * powf(saved, p.alpha - 1.0f));
}

/// Whether `Kind` is one of the piecewise kinds (region codes).
template <int Kind> BLPA_HOST_DEVICE constexpr bool isPiecewise() {
  return activationRegionBits(Kind) != 0;
}

/// dx for dy, given `saved` (activationGradReadsOutput). The piecewise
/// kinds decide the piece as blpa_activation_region does, so a gradient
/// read from region codes masks exactly as this one.
template <int Kind>
BLPA_HOST_DEVICE inline float activationGrad(float dy, float saved,
                                             ActivationParams p) {
  if (!isPiecewise<Kind>())
    return smoothActivationGrad<Kind>(dy, saved, p);
  return activationGradInRegion<Kind>(dy, activationRegion<Kind>(saved, p),
                                      saved, p);
}

/// Calls f(std::integral_constant<int, kind>()) so that the kind is a
/// compile-time constant in the loops; false for an unknown kind.
template <typename F> bool withActivationKind(int64_t kind, F &&f) {
  switch (kind) {
  case BLPA_ACT_SIGMOID:
    f(std::integral_constant<int, BLPA_ACT_SIGMOID>());
    return true;
  case BLPA_ACT_HARD_SIGMOID:
    f(std::integral_constant<int, BLPA_ACT_HARD_SIGMOID>());
    return true;
  case BLPA_ACT_HARD_SWISH:
    f(std::integral_constant<int, BLPA_ACT_HARD_SWISH>());
    return true;
  case BLPA_ACT_CLIP:
    f(std::integral_constant<int, BLPA_ACT_CLIP>());
    return true;
  case BLPA_ACT_TANH:
    f(std::integral_constant<int, BLPA_ACT_TANH>());
    return true;
  case BLPA_ACT_ERF:
    f(std::integral_constant<int, BLPA_ACT_ERF>());
    return true;
  case BLPA_ACT_GELU:
    f(std::integral_constant<int, BLPA_ACT_GELU>());
    return true;
  case BLPA_ACT_GELU_TANH:
    f(std::integral_constant<int, BLPA_ACT_GELU_TANH>());
    return true;
  case BLPA_ACT_SQRT:
    f(std::integral_constant<int, BLPA_ACT_SQRT>());
    return true;
  case BLPA_ACT_POW:
    f(std::integral_constant<int, BLPA_ACT_POW>());
    return true;
  case BLPA_ACT_EXP:
    f(std::integral_constant<int, BLPA_ACT_EXP>());
    return true;
  case BLPA_ACT_LOG:
    f(std::integral_constant<int, BLPA_ACT_LOG>());
    return true;
  default:
    return false;
  }
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_ACTIVATIONMATH_H
