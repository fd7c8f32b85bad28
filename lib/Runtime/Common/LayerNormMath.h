//===- LayerNormMath.h - Layer normalization, both runtimes -----*- C++ -*-===//
//
// The per-row and per-element formulas of blpa_layer_norm and its gradient,
// written once for the CPU runtime (plain C++) and the CUDA runtime
// (__host__ __device__). A row's statistics come from two sums in double
// (the mean, then the squared deviations from it, as a two-pass variance);
// everything per element is float arithmetic, the same on both runtimes:
//   xhat = (x - mean) * invStd,  y = xhat * scale + bias
//   dx   = invStd * (dy * scale - meanG - xhat * meanGX)
// with meanG and meanGX the row means of g = dy * scale and g * xhat. The
// backward recomputes xhat with the forward's own formula, so a gradient
// from the saved input equals one from a saved xhat bit for bit.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_LAYERNORMMATH_H
#define BLPA_RUNTIME_COMMON_LAYERNORMMATH_H

#include <math.h>

#include "HostDevice.h"

namespace blpa {

/// A row's statistics, as the forward stores them.
struct RowStats {
  float mean, invStd;
};

/// The statistics from the row's sum and its sum of squared deviations
/// from double(sum / cols) (the caller's second pass).
BLPA_HOST_DEVICE inline double rowMean(double sum, int64_t cols) {
  return sum / double(cols);
}
BLPA_HOST_DEVICE inline RowStats rowStats(double mean, double squares,
                                          int64_t cols, double epsilon) {
  double variance = squares / double(cols);
  return {float(mean), float(1.0 / sqrt(variance + epsilon))};
}

/// A squared deviation term of the second pass.
BLPA_HOST_DEVICE inline double squaredDeviation(float x, double mean) {
  double d = double(x) - mean;
  return d * d;
}

BLPA_HOST_DEVICE inline float layerNormXhat(float x, RowStats s) {
  return (x - s.mean) * s.invStd;
}

/// y from xhat; bias may be null.
BLPA_HOST_DEVICE inline float layerNormValue(float xhat, float scale,
                                             const float *bias, int64_t j) {
  float scaled = xhat * scale;
  return bias ? scaled + bias[j] : scaled;
}

/// The row means the gradient subtracts, from the row sums of g and
/// g * xhat.
struct RowGradMeans {
  float g, gx;
};
BLPA_HOST_DEVICE inline RowGradMeans rowGradMeans(double sumG, double sumGX,
                                                  int64_t cols) {
  return {float(sumG / double(cols)), float(sumGX / double(cols))};
}

BLPA_HOST_DEVICE inline float layerNormGradValue(float g, float xhat,
                                                 RowGradMeans m, float invStd) {
  return invStd * ((g - m.g) - xhat * m.gx);
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_LAYERNORMMATH_H
