//===- PadIndex.h - Padding's index math, both runtimes ---------*- C++ -*-===//
//
// Which element of x each element of a padding's y copies (blpa_pad), and
// which elements of y copy each element of x (blpa_pad_grad), written once
// for the CPU runtime (plain C++) and the CUDA runtime (__host__
// __device__), so that both targets copy and sum the same elements in the
// same order.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_PADINDEX_H
#define BLPA_RUNTIME_COMMON_PADINDEX_H

#include "blpa/Runtime/Runtime.h"

#include <stdint.h>

#include "HostDevice.h"

namespace blpa {

/// The most dimensions blpa_pad_grad (and the CUDA blpa_pad) takes.
constexpr int maxPadRank = 8;

/// The position along an axis of size n that y's position `at` + begin
/// copies (`at` = y's position - begin), or -1 where constant padding
/// writes the value. Reflect padding needs -n < at < 2n - 1 (pads under n).
BLPA_HOST_DEVICE inline int64_t padSource(int64_t at, int64_t n, int64_t mode) {
  if (at >= 0 && at < n)
    return at;
  if (mode == BLPA_PAD_REFLECT)
    return at < 0 ? -at : 2 * (n - 1) - at;
  if (mode == BLPA_PAD_EDGE)
    return at < 0 ? 0 : n - 1;
  return -1;
}

/// The positions along one axis whose padSource is i: at most three runs
/// [first, first + count), in increasing order.
struct PadRuns {
  int64_t first[3], count[3];
  int size;
};

/// padSource's preimage of position i of an axis of size n, padded by
/// `begin` in front to `m` positions.
BLPA_HOST_DEVICE inline PadRuns padRunsOf(int64_t i, int64_t n, int64_t begin,
                                          int64_t m, int64_t mode) {
  PadRuns runs{{0, 0, 0}, {0, 0, 0}, 0};
  auto add = [&runs](int64_t first, int64_t last) {
    if (first >= last)
      return;
    runs.first[runs.size] = first;
    runs.count[runs.size] = last - first;
    ++runs.size;
  };
  int64_t direct = begin + i, lastX = begin + n - 1;
  if (mode == BLPA_PAD_REFLECT) {
    if (i > 0 && begin - i >= 0)
      add(begin - i, begin - i + 1); // mirrored before x
    add(direct, direct + 1);         // reflect pads are >= 0: always inside y
    if (i < n - 1 && lastX + (n - 1 - i) < m)
      add(lastX + (n - 1 - i), lastX + (n - 1 - i) + 1); // mirrored after
    return runs;
  }
  if (mode == BLPA_PAD_EDGE) {
    // The first and last elements also fill the padding on their side.
    int64_t first = i == 0 ? 0 : direct;
    int64_t last = i == n - 1 ? m : direct + 1;
    add(first, last);
    return runs;
  }
  if (direct >= 0 && direct < m)
    add(direct, direct + 1);
  return runs;
}

/// The gradient of blpa_pad at x's element `index` (row-major over inDims):
/// the sum of dy over the elements of y that copy it, in y's row-major
/// order. rank <= maxPadRank.
BLPA_HOST_DEVICE inline float padGradAt(const float *dy, int64_t index,
                                        int rank, const int64_t *inDims,
                                        const int64_t *outDims,
                                        const int64_t *begin, int64_t mode) {
  PadRuns runs[maxPadRank];
  int run[maxPadRank];
  int64_t at[maxPadRank], stride[maxPadRank];
  int64_t outStride = 1;
  for (int d = rank - 1; d >= 0; --d) {
    runs[d] =
        padRunsOf(index % inDims[d], inDims[d], begin[d], outDims[d], mode);
    index /= inDims[d];
    if (runs[d].size == 0)
      return 0.0f;
    run[d] = 0;
    at[d] = runs[d].first[0];
    stride[d] = outStride;
    outStride *= outDims[d];
  }
  float sum = 0.0f;
  for (;;) {
    int64_t offset = 0;
    for (int d = 0; d < rank; ++d)
      offset += at[d] * stride[d];
    sum += dy[offset];
    // The next position, the last dimension fastest.
    int d = rank - 1;
    for (; d >= 0; --d) {
      const PadRuns &r = runs[d];
      if (++at[d] < r.first[run[d]] + r.count[run[d]])
        break;
      if (++run[d] < r.size) {
        at[d] = r.first[run[d]];
        break;
      }
      run[d] = 0;
      at[d] = r.first[0];
    }
    if (d < 0)
      return sum;
  }
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_PADINDEX_H
