//===- SoftmaxMath.h - Softmax and log-softmax, both runtimes ---*- C++ -*-===//
//
// The per-element formulas of blpa_softmax, blpa_log_softmax, their
// gradients and the softmax cross-entropy, written once for the CPU runtime
// (plain C++) and the CUDA runtime (__host__ __device__). A row is the
// `length` elements along the normalized axis. The kernels reduce each row
// to its maximum m and logSum = log(sum_k exp(x_k - m)) (terms rounded to
// float by expf, as the loss always did, summed in double); subtracting the
// maximum keeps every exp in (0, 1], so no logit overflows. Then
//   log_softmax(x) = (x - m) - logSum     (in double, rounded once)
//   softmax(x)     = exp(log_softmax(x))
// and, from the saved output y and the incoming gradient g, with the row
// sum s of gradTerm:
//   softmax:      s = sum_k g_k y_k,  dx = y * (g - s)
//   log-softmax:  s = sum_k g_k,      dx = g - exp(y) * s
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_SOFTMAXMATH_H
#define BLPA_RUNTIME_COMMON_SOFTMAXMATH_H

#include <math.h>

#include "HostDevice.h"

namespace blpa {

/// A row's term of sum_k exp(x_k - max).
BLPA_HOST_DEVICE inline double softmaxExpTerm(float x, float max) {
  return double(expf(x - max));
}

/// log softmax(x) in a row of maximum `max` and log-sum `logSum`.
BLPA_HOST_DEVICE inline double logSoftmaxOf(float x, float max, double logSum) {
  return double(x - max) - logSum;
}

/// The forward output: log-softmax when Log, else softmax.
template <bool Log>
BLPA_HOST_DEVICE inline float softmaxValue(float x, float max, double logSum) {
  double l = logSoftmaxOf(x, max, logSum);
  return float(Log ? l : exp(l));
}

/// A row's term of the gradient's sum, from the incoming gradient g and the
/// saved output y.
template <bool Log>
BLPA_HOST_DEVICE inline double softmaxGradTerm(float g, float y) {
  return Log ? double(g) : double(g) * double(y);
}

/// dx from g, y and the row's sum of softmaxGradTerm.
template <bool Log>
BLPA_HOST_DEVICE inline float softmaxGradValue(float g, float y,
                                               double rowSum) {
  if (Log)
    return float(double(g) - exp(double(y)) * rowSum);
  return float(double(y) * (double(g) - rowSum));
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_SOFTMAXMATH_H
