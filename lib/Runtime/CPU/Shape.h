//===- Shape.h - Dimension merging for broadcast and reduction -----------===//
//
// blpa_add and blpa_reduce_sum_to take shapes of any rank. Both first merge
// the dimensions into the fewest runs that behave alike (all broadcast / all
// full for every operand), so that the kernels only ever loop over a few
// dimensions with a contiguous innermost run.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_CPU_SHAPE_H
#define BLPA_RUNTIME_CPU_SHAPE_H

#include <cstddef>
#include <cstdint>
#include <vector>

namespace blpa {
namespace cpu {

/// A run of merged dimensions: its total size and the flags (one bit per
/// operand, e.g. "broadcast" or "reduced") its dimensions share.
struct MergedDim {
  int64_t size;
  unsigned flags;
};

/// Drops size-1 dimensions of `sizes` and merges neighbours with equal
/// flags(i). Row-major contiguity is preserved for every operand because a
/// merged run is either entirely broadcast or entirely full for each of them.
/// Returns at least one run (size 1 for a scalar).
template <typename Flags>
std::vector<MergedDim> mergeDims(int64_t rank, const int64_t *sizes,
                                 Flags &&flags) {
  std::vector<MergedDim> dims;
  for (int64_t i = 0; i < rank; ++i) {
    if (sizes[i] == 1)
      continue;
    unsigned f = flags(i);
    if (!dims.empty() && dims.back().flags == f)
      dims.back().size *= sizes[i];
    else
      dims.push_back({sizes[i], f});
  }
  if (dims.empty())
    dims.push_back({1, 0});
  return dims;
}

/// Row-major strides of an operand over `dims` that has extent 1 along every
/// run whose flags contain `absentBit` (stride 0 there).
inline std::vector<int64_t> stridesOf(const std::vector<MergedDim> &dims,
                                      unsigned absentBit) {
  std::vector<int64_t> strides(dims.size());
  int64_t stride = 1;
  for (size_t i = dims.size(); i-- > 0;) {
    bool absent = dims[i].flags & absentBit;
    strides[i] = absent ? 0 : stride;
    if (!absent)
      stride *= dims[i].size;
  }
  return strides;
}

/// Offset of the `index`-th element (row-major over dims[0, count)) in an
/// operand with the given strides.
inline int64_t offsetOf(int64_t index, const std::vector<MergedDim> &dims,
                        const std::vector<int64_t> &strides, size_t count) {
  int64_t offset = 0;
  for (size_t i = count; i-- > 0;) {
    offset += index % dims[i].size * strides[i];
    index /= dims[i].size;
  }
  return offset;
}

} // namespace cpu
} // namespace blpa

#endif // BLPA_RUNTIME_CPU_SHAPE_H
