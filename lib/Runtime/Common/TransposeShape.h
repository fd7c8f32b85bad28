//===- TransposeShape.h - Merged dimensions of a transpose ---*- C++ -*-===//
//
// blpa_transpose takes any rank and permutation. Both runtimes first reduce
// them to the fewest dimensions that move as one: size-1 dimensions go (they
// change no offset), and input dimensions that stay neighbours in the same
// order in the output merge into one. Channel shuffle's [N, g, C/g, H, W]
// with perm [0, 2, 1, 3, 4] becomes [N, g, C/g, H*W] with perm [0, 2, 1, 3]:
// rows of H*W elements moved whole.
//
// Host code only (plain C++17: the CUDA runtime calls it before launching).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_TRANSPOSESHAPE_H
#define BLPA_RUNTIME_COMMON_TRANSPOSESHAPE_H

#include <algorithm>
#include <cstdint>
#include <vector>

namespace blpa {

/// Whether `perm` names each of 0..rank-1 once.
inline bool isTransposePermutation(int64_t rank, const int64_t *perm) {
  std::vector<bool> seen(size_t(rank > 0 ? rank : 0), false);
  for (int64_t d = 0; d < rank; ++d) {
    if (perm[d] < 0 || perm[d] >= rank || seen[size_t(perm[d])])
      return false;
    seen[size_t(perm[d])] = true;
  }
  return true;
}

/// What is wrong with blpa_transpose's rank and perm, or null when nothing
/// is (each runtime reports it its own way).
inline const char *transposeArgumentError(int64_t rank, const int64_t *perm) {
  if (rank < 1)
    return "the rank is below 1";
  if (!isTransposePermutation(rank, perm))
    return "perm is not a permutation of 0..rank-1";
  return nullptr;
}

/// The element count of a tensor of `rank` dimensions `dims`.
inline int64_t transposeElementCount(int64_t rank, const int64_t *dims) {
  int64_t count = 1;
  for (int64_t d = 0; d < rank; ++d)
    count *= dims[d];
  return count;
}

/// A transposition over merged dimensions: output dimension d is input
/// dimension perm[d]; both tensors are row-major.
struct MergedTranspose {
  std::vector<int64_t> inDims;
  std::vector<int64_t> perm;

  int64_t rank() const { return int64_t(perm.size()); }
  int64_t outDim(int64_t d) const { return inDims[size_t(perm[size_t(d)])]; }
  /// Row-major strides of the input, by input dimension.
  std::vector<int64_t> inStrides() const {
    std::vector<int64_t> strides(inDims.size(), 1);
    for (size_t d = inDims.size(); d-- > 1;)
      strides[d - 1] = strides[d] * inDims[d];
    return strides;
  }
};

/// The merged form of the transposition of `inDims` by `perm` (a valid
/// permutation, see isTransposePermutation): at least one dimension (a
/// single one of size 1 when every dimension is 1).
inline MergedTranspose mergeTranspose(int64_t rank, const int64_t *inDims,
                                      const int64_t *perm) {
  // Input dimensions without the 1s, renumbered.
  std::vector<int64_t> index(size_t(rank), -1), dims;
  for (int64_t d = 0; d < rank; ++d)
    if (inDims[d] != 1) {
      index[size_t(d)] = int64_t(dims.size());
      dims.push_back(inDims[d]);
    }
  // Runs of consecutive input dimensions in output order: each run's first
  // input dimension and its merged size.
  struct Run {
    int64_t first, last, size;
  };
  std::vector<Run> runs;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t p = index[size_t(perm[d])];
    if (p < 0)
      continue;
    if (!runs.empty() && runs.back().last + 1 == p) {
      runs.back().last = p;
      runs.back().size *= dims[size_t(p)];
    } else {
      runs.push_back({p, p, dims[size_t(p)]});
    }
  }
  MergedTranspose t;
  if (runs.empty()) {
    t.inDims = {1};
    t.perm = {0};
    return t;
  }
  // The runs in input order are the merged input dimensions.
  std::vector<size_t> byInput(runs.size());
  for (size_t i = 0; i < runs.size(); ++i)
    byInput[i] = i;
  std::sort(byInput.begin(), byInput.end(),
            [&](size_t a, size_t b) { return runs[a].first < runs[b].first; });
  t.perm.resize(runs.size());
  for (size_t k = 0; k < byInput.size(); ++k) {
    t.inDims.push_back(runs[byInput[k]].size);
    t.perm[byInput[k]] = int64_t(k);
  }
  return t;
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_TRANSPOSESHAPE_H
