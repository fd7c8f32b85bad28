//===- BatchMatMulShape.h - Operand layout of blpa_batch_matmul -*- C++ -*-===//
//
// blpa_batch_matmul's operands each hold `batch` matrices or one matrix that
// serves every product (a broadcast batch). Both runtimes check the counts
// and step through the operands with the same strides: a broadcast operand
// has stride 0, which is also how cublasSgemmStridedBatched reads it.
//
// Host code only (plain C++17: the CUDA runtime calls it before launching).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_COMMON_BATCHMATMULSHAPE_H
#define BLPA_RUNTIME_COMMON_BATCHMATMULSHAPE_H

#include <cstdint>

namespace blpa {

/// What is wrong with blpa_batch_matmul's sizes, or null when nothing is
/// (each runtime reports it its own way).
inline const char *batchMatMulArgumentError(int64_t batch, int64_t m, int64_t n,
                                            int64_t k, int64_t aBatch,
                                            int64_t bBatch) {
  if (batch < 0 || m < 0 || n < 0 || k < 0)
    return "a size is negative";
  if ((aBatch != 1 && aBatch != batch) || (bBatch != 1 && bBatch != batch))
    return "an operand's batch is neither 1 nor the output's";
  return nullptr;
}

/// The distance in elements between consecutive matrices of an operand of
/// `count` matrices of `elements` each: 0 when one matrix is broadcast.
inline int64_t batchMatrixStride(int64_t count, int64_t elements) {
  return count == 1 ? 0 : elements;
}

} // namespace blpa

#endif // BLPA_RUNTIME_COMMON_BATCHMATMULSHAPE_H
