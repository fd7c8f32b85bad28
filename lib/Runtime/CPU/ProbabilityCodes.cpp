//===- ProbabilityCodes.cpp - Log-domain codes of probabilities -----------===//
//
// blpa_probability_encode / blpa_probability_decode: the codes a softmax
// output along its last axis (attention probabilities) keeps for the
// backward pass, row by row in parallel, with the row math of
// lib/Runtime/Common/ProbabilityCodes.h. Every row starts on a byte
// boundary, so no two rows write the same byte.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "Packing.h"

#include "../Common/ProbabilityCodes.h"

#include <algorithm>
#include <limits>

using namespace blpa;
using namespace blpa::cpu;

namespace {

/// A row's maximum, smallest positive element (0 when none) and sum of its
/// positive elements (in element order, in double).
struct RowStats {
  float max = 0.0f, minPositive = 0.0f;
  double sum = 0.0;
};

RowStats rowStats(const float *x, int64_t length) {
  float max = 0.0f, minPositive = std::numeric_limits<float>::infinity();
  double sum = 0.0;
  for (int64_t j = 0; j < length; ++j) {
    float v = x[j];
    if (v > 0) {
      max = std::max(max, v);
      minPositive = std::min(minPositive, v);
      sum += v;
    }
  }
  return {max, max > 0 ? minPositive : 0.0f, sum};
}

template <int Bits>
void encodeRow(const float *x, int64_t length, uint8_t *packed,
               float *params) {
  constexpr int levels = (1 << Bits) - 1;
  RowStats stats = rowStats(x, length);
  float step = probabilityStep(stats.max, stats.minPositive, Bits);
  float level[levels + 1], bound[levels + 1];
  probabilityLevelTable(step, Bits, level);
  probabilityBoundTable(stats.max, step, Bits, level, bound);
  double levelSum = 0.0;
  uint8_t q[codeChunk];
  for (int64_t at = 0; at < length; at += codeChunk) {
    int64_t count = std::min(codeChunk, length - at);
    for (int64_t j = 0; j < count; ++j)
      q[j] = uint8_t(probabilityCode<Bits>(x[at + j], bound));
    for (int64_t j = 0; j < count; ++j)
      levelSum += level[q[j]];
    packCodes<Bits>(q, count, packed + at / 8 * Bits);
  }
  params[0] = probabilityScale(stats.sum, levelSum);
  params[1] = step;
}

template <int Bits>
void decodeRow(const uint8_t *packed, const float *params, int64_t length,
               float *y) {
  float value[(1 << Bits)];
  probabilityValueTable(params, Bits, value);
  uint8_t q[codeChunk];
  for (int64_t at = 0; at < length; at += codeChunk) {
    int64_t count = std::min(codeChunk, length - at);
    unpackCodes<Bits>(packed, at, count, q);
    for (int64_t j = 0; j < count; ++j)
      y[at + j] = value[q[j]];
  }
}

} // namespace

extern "C" {

void blpa_probability_encode(blpa_context *, const float *x, uint8_t *codes,
                             float *params, int64_t rows, int64_t length,
                             int64_t bits) {
  withCodeBits("blpa_probability_encode", bits, valueCodeBits, [&](auto w) {
    constexpr int Bits = decltype(w)::value;
    int64_t rowBytes = probabilityRowBytes(length, Bits);
    parallelFor(rows, [&](int64_t r) {
      encodeRow<Bits>(x + r * length, length, codes + r * rowBytes,
                      params + 2 * r);
    });
  });
}

void blpa_probability_decode(blpa_context *, const uint8_t *codes,
                             const float *params, float *y, int64_t rows,
                             int64_t length, int64_t bits) {
  withCodeBits("blpa_probability_decode", bits, valueCodeBits, [&](auto w) {
    constexpr int Bits = decltype(w)::value;
    int64_t rowBytes = probabilityRowBytes(length, Bits);
    parallelFor(rows, [&](int64_t r) {
      decodeRow<Bits>(codes + r * rowBytes, params + 2 * r, length,
                      y + r * length);
    });
  });
}

} // extern "C"
