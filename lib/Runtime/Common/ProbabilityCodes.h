//===- ProbabilityCodes.h - Log-domain codes of probabilities ---*- C++ -*-===//
//
// The row math of blpa_probability_encode / blpa_probability_decode, written
// once for the CPU runtime (plain C++) and the CUDA runtime (__host__
// __device__). A row is `length` probabilities p >= 0 (a softmax output
// along its last axis: one query's attention over the keys).
//
// The softmax gradient y * (g - sum(g * y)) is relative to y, so a code
// must keep small probabilities small rather than within half a step of an
// absolute range (docs/design.md, "Attention probabilities"). Codes are
// therefore uniform in log2(p) below the row's maximum m, with L = 2^bits - 1
// nonzero codes:
//   level[L] = 1, level[c - 1] = level[c] * f, f = 2^-step, level[0] = 0;
//   code c > 0 holds p in [m * level[c] * g, m * level[c] / g), g = 2^-step/2,
//   so a decoded value is within a factor 2^(step / 2) of p;
//   code 0 holds exact zeros (masked keys) and p below m * level[1] * g.
// step = log2(m / smallest positive p) / (L - 1), clamped to [2^-12, maxStep]:
// a flat row gets fine steps, a peaked one spans maxStep * (L - 0.5) octaves
// (2 bits: 5, 4 bits: 7.25, 8 bits: 15.9) and flushes what lies below.
// The decoded row is scale * level[code] with scale = sum(p) / sum(level):
// it sums to what the row summed to, so the softmax gradient of a decoded
// row still sums to zero along the row (the logits' shift invariance).
//
// Every level and bound comes from the row's step by float multiplications
// in a fixed order, and log2/exp2 are taken once per row in double, so the
// CPU and GPU runtimes compute the same codes; only the sums (scale) may
// differ in their last bit.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_PROBABILITYCODES_H
#define BLPA_RUNTIME_COMMON_PROBABILITYCODES_H

#include <math.h>
#include <stdint.h>

#include "HostDevice.h"

namespace blpa {

/// Nonzero codes of a `bits`-bit probability code.
BLPA_HOST_DEVICE inline int probabilityLevels(int bits) {
  return (1 << bits) - 1;
}

/// The widest step (in octaves) at `bits`: what a peaked row's codes span.
BLPA_HOST_DEVICE inline double probabilityMaxStep(int bits) {
  return bits == 2 ? 2.0 : bits == 4 ? 0.5 : 1.0 / 16;
}

/// The step of a row whose maximum is `max` and smallest positive element
/// `minPositive` (0 for a row without a positive element).
BLPA_HOST_DEVICE inline float probabilityStep(float max, float minPositive,
                                              int bits) {
  if (!(max > 0) || !(minPositive > 0))
    return 0.0f;
  double step = log2(double(max) / double(minPositive)) /
                double(probabilityLevels(bits) - 1);
  double lo = 1.0 / 4096, hi = probabilityMaxStep(bits);
  return float(step < lo ? lo : step > hi ? hi : step);
}

/// level[0, L]: the decoded value of each code relative to the row's
/// maximum (level[0] = 0, level[L] = 1).
BLPA_HOST_DEVICE inline void probabilityLevelTable(float step, int bits,
                                                   float *level) {
  int levels = probabilityLevels(bits);
  float f = float(exp2(-double(step)));
  level[levels] = 1.0f;
  for (int c = levels; c > 1; --c)
    level[c - 1] = level[c] * f;
  level[0] = 0.0f;
}

/// bound[c] for c in [1, L]: the smallest value with a code of at least c
/// in a row of maximum `max` (ascending in c); bound[0] is unused.
BLPA_HOST_DEVICE inline void probabilityBoundTable(float max, float step,
                                                   int bits, const float *level,
                                                   float *bound) {
  float g = float(exp2(-0.5 * double(step)));
  bound[0] = 0.0f;
  for (int c = 1; c <= probabilityLevels(bits); ++c)
    bound[c] = max * level[c] * g;
}

/// A row's scale: what its level table is multiplied by so that the decoded
/// row sums to `sum`, the row's own sum, given `levelSum`, the sum of its
/// codes' levels (0 when the row has no positive element).
BLPA_HOST_DEVICE inline float probabilityScale(double sum, double levelSum) {
  return levelSum > 0 ? float(sum / levelSum) : 0.0f;
}

/// value[0, L]: what each code decodes to in a row whose params are
/// (scale, step): the level table times the scale.
BLPA_HOST_DEVICE inline void probabilityValueTable(const float *params,
                                                   int bits, float *value) {
  probabilityLevelTable(params[1], bits, value);
  for (int c = 0; c <= probabilityLevels(bits); ++c)
    value[c] *= params[0];
}

/// The code of `p` given the row's bound table: the largest c with
/// bound[c] <= p, 0 for zero, NaN or anything below bound[1]. Up to 15
/// codes it counts the bounds at or below p (a loop that vectorizes over
/// elements); 8-bit codes take a branchless binary search over the
/// ascending bounds. Both give the same code.
template <int Bits>
BLPA_HOST_DEVICE inline uint32_t probabilityCode(float p, const float *bound) {
  uint32_t c = 0;
  if (Bits <= 4) {
    for (int k = 1; k < (1 << Bits); ++k)
      c += p >= bound[k] ? 1u : 0u;
  } else {
    for (uint32_t half = 1u << (Bits - 1); half; half >>= 1)
      c += p >= bound[c + half] ? half : 0u;
  }
  return p > 0 ? c : 0u;
}

/// Bytes of one row's codes: every row starts on a byte boundary.
BLPA_HOST_DEVICE inline int64_t probabilityRowBytes(int64_t length, int bits) {
  return (length * bits + 7) / 8;
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_PROBABILITYCODES_H
