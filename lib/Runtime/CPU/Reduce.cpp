//===- Reduce.cpp - Summing a tensor down to a broadcast shape -----------===//
//
// Every output element is accumulated in double by exactly one thread, in
// row-major order of the reduced indices, so the result is independent of
// the thread count. Two shapes of loop, after merging dimensions:
//  * innermost run reduced (e.g. [N,C,H,W] -> [1,C,1,1]): one work item per
//    output element, summing contiguous slices;
//  * innermost run kept (e.g. [N,K] -> [1,K]): one work item per block of a
//    contiguous output row, adding whole input rows into it.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "LaneSum.h"
#include "Shape.h"

#include <algorithm>

using namespace blpa::cpu;

namespace {

const unsigned reducedFlag = 1;

/// The merged runs of one kind (kept or reduced), with their input strides.
struct Runs {
  std::vector<MergedDim> dims;
  std::vector<int64_t> strides;
  int64_t count = 1; // number of index tuples

  void add(const MergedDim &d, int64_t stride) {
    dims.push_back(d);
    strides.push_back(stride);
    count *= d.size;
  }
  int64_t offset(int64_t index) const {
    return offsetOf(index, dims, strides, dims.size());
  }
};

/// Input offsets of every reduced index tuple, in row-major order.
std::vector<int64_t> reducedOffsets(const Runs &reduced) {
  std::vector<int64_t> offsets(reduced.count);
  for (int64_t i = 0; i < reduced.count; ++i)
    offsets[i] = reduced.offset(i);
  return offsets;
}

/// Innermost run reduced, `slice` elements long and contiguous.
void sumSlices(const float *x, float *y, const Runs &kept, const Runs &reduced,
               int64_t slice, double scale) {
  std::vector<int64_t> offsets = reducedOffsets(reduced);
  parallelFor(kept.count, [&](int64_t o) {
    const float *base = x + kept.offset(o);
    double sum = 0;
    for (int64_t off : offsets)
      sum += sliceSum(base + off, slice);
    y[o] = float(sum * scale);
  });
}

/// Innermost run kept, `row` elements long and contiguous in x and y.
void sumRows(const float *x, float *y, const Runs &kept, const Runs &reduced,
             int64_t row, double scale) {
  constexpr int64_t block = 512;
  std::vector<int64_t> offsets = reducedOffsets(reduced);
  int64_t blocks = (row + block - 1) / block;
  parallelFor(kept.count * blocks, [&](int64_t item) {
    int64_t o = item / blocks, begin = item % blocks * block;
    int64_t len = std::min(block, row - begin);
    const float *base = x + kept.offset(o) + begin;
    double acc[block] = {};
    for (int64_t off : offsets)
      for (int64_t j = 0; j < len; ++j)
        acc[j] += base[off + j];
    float *out = y + o * row + begin;
    for (int64_t j = 0; j < len; ++j)
      out[j] = float(acc[j] * scale);
  });
}

} // namespace

extern "C" void blpa_reduce_sum_to(blpa_context *, const float *x, float *y,
                                   int64_t rank, const int64_t *inDims,
                                   const int64_t *outDims, double scale) {
  for (int64_t i = 0; i < rank; ++i)
    if (outDims[i] != inDims[i] && outDims[i] != 1)
      failf("blpa_reduce_sum_to: output dimension %lld is %lld, expected 1 "
            "or %lld",
            (long long)i, (long long)outDims[i], (long long)inDims[i]);
  std::vector<MergedDim> dims = mergeDims(rank, inDims, [&](int64_t i) {
    return outDims[i] != inDims[i] ? reducedFlag : 0u;
  });
  std::vector<int64_t> strides = stridesOf(dims, 0);
  MergedDim innermost = dims.back();
  bool innerReduced = innermost.flags & reducedFlag;
  // The innermost run is handled by the loops themselves.
  Runs kept, reduced;
  for (size_t i = 0; i + 1 < dims.size(); ++i)
    (dims[i].flags & reducedFlag ? reduced : kept).add(dims[i], strides[i]);
  if (innerReduced)
    sumSlices(x, y, kept, reduced, innermost.size, scale);
  else
    sumRows(x, y, kept, reduced, innermost.size, scale);
}
