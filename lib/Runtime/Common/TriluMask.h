//===- TriluMask.h - Which elements ONNX Trilu keeps -------------*- C++
//-*-===//
//
// The one predicate of blpa_trilu, for the CPU and CUDA runtimes.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_TRILUMASK_H
#define BLPA_RUNTIME_COMMON_TRILUMASK_H

#include <stdint.h>

#include "HostDevice.h"

namespace blpa {

/// Whether Trilu keeps the element at (row, col): on or above diagonal k
/// for the upper triangle, on or below it for the lower one.
BLPA_HOST_DEVICE inline bool triluKeeps(int64_t row, int64_t col, int64_t k,
                                        bool upper) {
  return upper ? col - row >= k : col - row <= k;
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_TRILUMASK_H
