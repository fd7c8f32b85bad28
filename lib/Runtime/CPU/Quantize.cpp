//===- Quantize.cpp - Generic per-channel activation codes ----------------===//
//
// blpa_quantize / blpa_dequantize keep a K-bit approximation of any saved
// tensor that is not a batch-norm output (those have their own codes in
// BatchNorm.cpp). Each channel (dim 1) gets one (lo, step) pair:
//  * AFFINE spans the channel's [min, max] and rounds to the nearest level;
//  * NONNEG (a ReLU output) gives code 0 to zero alone and bins positives
//    upwards, so the decoded tensor is positive exactly where x was;
//  * MASK keeps only x > 0, one bit per element.
// Channel ranges are reduced per (n, c) slice by one thread and combined in
// n order; min and max are exact, so the result does not depend on threads.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "Packing.h"

#include <algorithm>
#include <cmath>
#include <limits>

using namespace blpa::cpu;

namespace {

/// lo, hi = min and max of in[0, len), in independent lanes (GCC does not
/// vectorize a float min/max reduction without -ffinite-math-only, but
/// interleaves the lanes' scalar instructions).
void sliceRange(const float *in, int64_t len, float &lo, float &hi) {
  constexpr int lanes = 8;
  constexpr float inf = std::numeric_limits<float>::infinity();
  float mn[lanes], mx[lanes];
  std::fill(mn, mn + lanes, inf);
  std::fill(mx, mx + lanes, -inf);
  int64_t j = 0;
  for (; j + lanes <= len; j += lanes)
    for (int l = 0; l < lanes; ++l) {
      mn[l] = std::min(mn[l], in[j + l]);
      mx[l] = std::max(mx[l], in[j + l]);
    }
  for (; j < len; ++j) {
    mn[0] = std::min(mn[0], in[j]);
    mx[0] = std::max(mx[0], in[j]);
  }
  lo = *std::min_element(mn, mn + lanes);
  hi = *std::max_element(mx, mx + lanes);
}

/// A channel's levels: lo + q * step (AFFINE) or (q - 0.5) * step for q > 0
/// (NONNEG); inv = 1 / step, or 0 when step is 0 (every code is then 0).
struct ChannelStep {
  float lo, step, inv;
};

/// The ranges of the channels of a [rows, c] matrix (spatial 1: channels
/// are columns): blocks of rows in parallel, each keeping every column's
/// range, combined in block order. Row by row, so that memory is read
/// along its rows rather than one element per parallel index.
void columnRanges(const float *x, int64_t rows, int64_t c, float *lo,
                  float *hi) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  int64_t blocks = std::min<int64_t>(rows, 64);
  int64_t perBlock = blocks ? (rows + blocks - 1) / blocks : 0;
  std::vector<float> mn(blocks * c, inf), mx(blocks * c, -inf);
  parallelFor(blocks, [&](int64_t blk) {
    float *bmn = &mn[blk * c], *bmx = &mx[blk * c];
    for (int64_t r = blk * perBlock; r < std::min(rows, (blk + 1) * perBlock);
         ++r)
      for (int64_t ch = 0; ch < c; ++ch) {
        bmn[ch] = std::min(bmn[ch], x[r * c + ch]);
        bmx[ch] = std::max(bmx[ch], x[r * c + ch]);
      }
  });
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t ch = 0; ch < c; ++ch) {
      lo[ch] = std::min(lo[ch], mn[blk * c + ch]);
      hi[ch] = std::max(hi[ch], mx[blk * c + ch]);
    }
}

/// The levels of every channel of x for `scheme` with codes up to maxCode.
std::vector<ChannelStep> channelSteps(const float *x, int64_t n, int64_t c,
                                      int64_t spatial, int64_t scheme,
                                      int32_t maxCode) {
  constexpr float inf = std::numeric_limits<float>::infinity();
  std::vector<float> lo(c, inf), hi(c, -inf);
  if (spatial == 1) {
    columnRanges(x, n, c, lo.data(), hi.data());
  } else {
    std::vector<float> partial(2 * n * c);
    parallelFor(n * c, [&](int64_t i) {
      sliceRange(x + i * spatial, spatial, partial[2 * i], partial[2 * i + 1]);
    });
    for (int64_t b = 0; b < n; ++b)
      for (int64_t ch = 0; ch < c; ++ch) {
        lo[ch] = std::min(lo[ch], partial[2 * (b * c + ch)]);
        hi[ch] = std::max(hi[ch], partial[2 * (b * c + ch) + 1]);
      }
  }
  std::vector<ChannelStep> steps(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    float l = scheme == BLPA_SCHEME_NONNEG ? 0.0f : lo[ch], h = hi[ch];
    if (!(l < h)) // constant or empty channel
      h = l = std::isfinite(l) ? l : 0.0f;
    // In double: h - l may not be representable as a float.
    float step = float((double(h) - double(l)) / maxCode);
    steps[ch] = {l, step, step > 0 ? float(1.0 / step) : 0.0f};
  }
  return steps;
}

/// v rounded to the nearest integer (ties to even), exactly for |v| < 2^22:
/// adding 2^23 leaves no fraction bits. Plain float arithmetic, so the loops
/// below vectorize (SSE2 has no rounding instruction, and converting back
/// from int would keep GCC from if-converting the clamps).
float nearestInteger(float v) { return (v + 0x1p23f) - 0x1p23f; }

// The code and value loops take the step of element j of their run from
// stepAt(j): one channel's for a run within a channel's slice, the run's
// consecutive channels when channels are the last dimension (spatial 1).

/// q = round((x - lo) / step), clamped to [0, maxCode].
template <typename StepAt>
void affineCodes(const float *in, int64_t len, StepAt stepAt, float maxCode,
                 uint8_t *q) {
  for (int64_t j = 0; j < len; ++j) {
    ChannelStep s = stepAt(j);
    // Clamped as floats, NaN to 0, so that the conversion is defined.
    float r = nearestInteger((in[j] - s.lo) * s.inv);
    r = r > 0 ? r : 0.0f;
    q[j] = uint8_t(int32_t(r < maxCode ? r : maxCode));
  }
}

/// q = x > 0 ? clamp(ceil(x / step), 1, maxCode) : 0.
template <typename StepAt>
void nonnegCodes(const float *in, int64_t len, StepAt stepAt, float maxCode,
                 uint8_t *q) {
  for (int64_t j = 0; j < len; ++j) {
    float v = in[j] * stepAt(j).inv;
    float r = nearestInteger(v);
    float up = r + (r < v ? 1.0f : 0.0f); // ceil(v)
    up = up > 1 ? up : 1.0f;
    up = up < maxCode ? up : maxCode;
    q[j] = uint8_t(int32_t(in[j] > 0 ? up : 0.0f));
  }
}

void maskCodes(const float *in, int64_t len, uint8_t *q) {
  for (int64_t j = 0; j < len; ++j)
    q[j] = in[j] > 0;
}

template <typename StepAt>
void affineValues(const uint8_t *q, int64_t len, StepAt stepAt, float *out) {
  for (int64_t j = 0; j < len; ++j)
    out[j] = stepAt(j).lo + float(q[j]) * stepAt(j).step;
}

/// The centre of a positive bin; code 0 is exactly 0.
template <typename StepAt>
void nonnegValues(const uint8_t *q, int64_t len, StepAt stepAt, float *out) {
  for (int64_t j = 0; j < len; ++j) {
    // Code 0 alone has a negative "centre"; selecting on the value rather
    // than on q keeps the loop free of a conditional conversion, so it
    // vectorizes.
    float centre = (float(q[j]) - 0.5f) * stepAt(j).step;
    out[j] = centre > 0 ? centre : 0.0f;
  }
}

void maskValues(const uint8_t *q, int64_t len, float *out) {
  for (int64_t j = 0; j < len; ++j)
    out[j] = float(q[j]);
}

/// The elements of one slice of the code loops: a channel's `spatial`
/// values, or with spatial 1 a row of all c channels (so that a run reads
/// along memory, not one element per slice).
int64_t sliceLength(int64_t c, int64_t spatial) {
  return spatial == 1 ? c : spatial;
}

/// Calls f(stepAt) for the run of slice `slice` starting at element
/// `begin`: with spatial 1 (a slice is a row of the c channels) the run's
/// channels one after another, else the slice's channel throughout.
template <typename F>
void withStepAt(const ChannelStep *steps, int64_t slice, int64_t begin,
                int64_t c, int64_t spatial, F &&f) {
  if (spatial == 1) {
    const ChannelStep *first = steps + begin % c;
    return f([first](int64_t j) { return first[j]; });
  }
  ChannelStep s = steps[slice % c];
  f([s](int64_t) { return s; });
}

/// The code widths `scheme` allows (for withCodeBits).
unsigned schemeCodeBits(const char *kernel, int64_t scheme) {
  switch (scheme) {
  case BLPA_SCHEME_AFFINE:
  case BLPA_SCHEME_NONNEG:
    return valueCodeBits;
  case BLPA_SCHEME_MASK:
    return 1u << 1;
  }
  failf("%s: unknown quantization scheme %lld", kernel, (long long)scheme);
}

} // namespace

extern "C" {

void blpa_quantize(blpa_context *, const float *x, uint8_t *codes,
                   float *params, int64_t n, int64_t c, int64_t spatial,
                   int64_t bits, int64_t scheme) {
  const char *kernel = "blpa_quantize";
  withCodeBits(kernel, bits, schemeCodeBits(kernel, scheme), [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    constexpr int32_t maxCode = (1 << Bits) - 1;
    std::vector<ChannelStep> steps;
    if (scheme != BLPA_SCHEME_MASK) {
      steps = channelSteps(x, n, c, spatial, scheme, maxCode);
      for (int64_t ch = 0; ch < c; ++ch) {
        params[ch] = steps[ch].lo;
        params[c + ch] = steps[ch].step;
      }
    }
    encodeSlices<Bits>(n * c * spatial, sliceLength(c, spatial), codes,
                       [&](int64_t slice, int64_t b, int64_t e, uint8_t *q) {
                         if (scheme == BLPA_SCHEME_MASK)
                           return maskCodes(x + b, e - b, q);
                         withStepAt(steps.data(), slice, b, c, spatial,
                                    [&](auto stepAt) {
                                      if (scheme == BLPA_SCHEME_AFFINE)
                                        affineCodes(x + b, e - b, stepAt,
                                                    maxCode, q);
                                      else
                                        nonnegCodes(x + b, e - b, stepAt,
                                                    maxCode, q);
                                    });
                       });
  });
}

void blpa_dequantize(blpa_context *, const uint8_t *codes, const float *params,
                     float *y, int64_t n, int64_t c, int64_t spatial,
                     int64_t bits, int64_t scheme) {
  const char *kernel = "blpa_dequantize";
  withCodeBits(kernel, bits, schemeCodeBits(kernel, scheme), [&](auto width) {
    constexpr int Bits = decltype(width)::value;
    std::vector<ChannelStep> steps(c);
    for (int64_t ch = 0; ch < c && scheme != BLPA_SCHEME_MASK; ++ch)
      steps[ch] = {params[ch], params[c + ch], 0.0f};
    decodeSlices<Bits>(
        n * c * spatial, sliceLength(c, spatial), codes,
        [&](int64_t slice, int64_t b, int64_t e, const uint8_t *q) {
          if (scheme == BLPA_SCHEME_MASK)
            return maskValues(q, e - b, y + b);
          withStepAt(steps.data(), slice, b, c, spatial, [&](auto stepAt) {
            if (scheme == BLPA_SCHEME_AFFINE)
              affineValues(q, e - b, stepAt, y + b);
            else
              nonnegValues(q, e - b, stepAt, y + b);
          });
        });
  });
}

} // extern "C"
