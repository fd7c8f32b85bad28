//===- Layout.cpp - Strided copies (concatenation) and padding ------------===//

#include "CpuRuntime.h"

#include <algorithm>
#include <cstring>

using namespace blpa::cpu;

extern "C" {

void blpa_copy_strided(blpa_context *, const float *src, float *dst,
                       int64_t rows, int64_t rowElems, int64_t srcStride,
                       int64_t dstStride, int64_t srcOffset,
                       int64_t dstOffset) {
  if (rows <= 0 || rowElems <= 0)
    return;
  // Long rows are split into blocks too, so one row still uses every thread.
  int64_t blocks = (rowElems + elementBlock - 1) / elementBlock;
  parallelFor(rows * blocks, [&](int64_t item) {
    int64_t row = item / blocks, begin = item % blocks * elementBlock;
    int64_t len = std::min(elementBlock, rowElems - begin);
    std::memcpy(dst + dstOffset + row * dstStride + begin,
                src + srcOffset + row * srcStride + begin,
                size_t(len) * sizeof(float));
  });
}

void blpa_pad(blpa_context *, const float *x, float *y, int64_t rank,
              const int64_t *inDims, const int64_t *outDims,
              const int64_t *begin, double value) {
  if (rank < 1)
    failf("blpa_pad: rank %lld", (long long)rank);
  float fill = float(value);
  int64_t inner = outDims[rank - 1], rows = 1;
  for (int64_t d = 0; d + 1 < rank; ++d)
    rows *= outDims[d];
  // Each output row is the fill value around one clipped input row (or
  // the fill alone when the row lies outside x).
  int64_t lastBegin = begin[rank - 1];
  int64_t from = std::max<int64_t>(0, lastBegin);
  int64_t to = std::min(inner, inDims[rank - 1] + lastBegin);
  parallelFor(rows, [&](int64_t row) {
    float *out = y + row * inner;
    int64_t inRow = 0, rest = row;
    bool inside = true;
    for (int64_t d = rank - 2, stride = 1; d >= 0; --d) {
      int64_t i = rest % outDims[d] - begin[d];
      rest /= outDims[d];
      inside = inside && i >= 0 && i < inDims[d];
      inRow += i * stride;
      stride *= inDims[d];
    }
    if (!inside || from >= to) {
      std::fill(out, out + inner, fill);
      return;
    }
    std::fill(out, out + from, fill);
    std::copy(x + inRow * inDims[rank - 1] + from - lastBegin,
              x + inRow * inDims[rank - 1] + to - lastBegin, out + from);
    std::fill(out + to, out + inner, fill);
  });
}

} // extern "C"
