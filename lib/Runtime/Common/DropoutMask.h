//===- DropoutMask.h - Which elements a dropout keeps, both runtimes -*- C++
//-*-===//
//
// Dropout masks are a pure function of (seed, step, stream, element): a
// counter-based hash rather than a sequential generator, so that any thread
// of either runtime computes any element's bit, the CPU and CUDA targets
// drop the same elements, and the backward pass recomputes the mask at no
// memory cost instead of keeping it (not even as 1 bit per element).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_DROPOUTMASK_H
#define BLPA_RUNTIME_COMMON_DROPOUTMASK_H

#include <stdint.h>

#ifdef __CUDACC__
#define BLPA_DROPOUT_HOST_DEVICE __host__ __device__
#else
#define BLPA_DROPOUT_HOST_DEVICE
#endif

namespace blpa {

/// SplitMix64's finalizer: a bijection whose output bits each depend on
/// every input bit.
BLPA_DROPOUT_HOST_DEVICE inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/// The threshold a 32-bit draw must reach for an element to be kept.
BLPA_DROPOUT_HOST_DEVICE inline uint32_t dropoutThreshold(double ratio) {
  double scaled = ratio * 4294967296.0;
  return scaled >= 4294967295.0 ? 0xffffffffu : uint32_t(scaled);
}

/// The key of dropout `stream`'s mask at `step`.
BLPA_DROPOUT_HOST_DEVICE inline uint64_t
dropoutKey(uint64_t seed, uint64_t step, int64_t stream) {
  return mix64(mix64(mix64(seed) ^ step) ^ uint64_t(stream));
}

/// Whether element `index` of the mask with `key` is kept: its 32-bit draw
/// is at least `threshold` (ratio * 2^32).
BLPA_DROPOUT_HOST_DEVICE inline bool dropoutKeeps(uint64_t key, int64_t index,
                                                  uint32_t threshold) {
  return uint32_t(mix64(key ^ uint64_t(index)) >> 32) >= threshold;
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_DROPOUTMASK_H
