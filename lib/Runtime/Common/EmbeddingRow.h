//===- EmbeddingRow.h - The table row a token id names -----------*- C++ -*-===//
//
// The one index rule of blpa_embedding and its gradient (ONNX Gather's), for
// the CPU and CUDA runtimes.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_EMBEDDINGROW_H
#define BLPA_RUNTIME_COMMON_EMBEDDINGROW_H

#include <stdint.h>

#include "HostDevice.h"

namespace blpa {

/// The row of a [vocab, dim] table that `index` names: indices in
/// [-vocab, 0) count from the end; -1 for an index outside [-vocab, vocab).
BLPA_HOST_DEVICE inline int64_t embeddingRow(int64_t index, int64_t vocab) {
  if (index < -vocab || index >= vocab)
    return -1;
  return index < 0 ? index + vocab : index;
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_EMBEDDINGROW_H
