//===- Embedding.cu - Embedding lookups and their scatter-add gradient ----===//
//
// The lookup copies rows, one thread per element. The gradient clears the
// table and then adds each position's row gradient into its token's row in
// position order, one thread per column: no two threads write an element,
// no atomics, and the sums are the CPU runtime's, bit for bit. A token id
// outside the table raises deviceIndexOutOfRange (reported after the step);
// its position is skipped (the lookup writes zeros).
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"

#include "../Common/EmbeddingRow.h"

#include <cstdint>

using namespace blpa;
using namespace blpa::cuda;

namespace {

__device__ void raiseIndexError(int32_t *errorFlag) {
  atomicCAS(errorFlag, int32_t(deviceOk), int32_t(deviceIndexOutOfRange));
}

__global__ void __launch_bounds__(blockThreads)
    embeddingKernel(const float *table, const int64_t *indices, float *y,
                    int64_t numel, int64_t vocab, int64_t dim,
                    int32_t *errorFlag) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < numel;
       e += int64_t(gridDim.x) * blockDim.x) {
    int64_t row = embeddingRow(indices[e / dim], vocab);
    if (row < 0)
      raiseIndexError(errorFlag);
    y[e] = row < 0 ? 0.0f : table[row * dim + e % dim];
  }
}

__global__ void __launch_bounds__(blockThreads)
    embeddingGradKernel(const float *dy, const int64_t *indices, float *dtable,
                        int64_t n, int64_t vocab, int64_t dim,
                        int32_t *errorFlag) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < dim;
       c += int64_t(gridDim.x) * blockDim.x) {
    for (int64_t i = 0; i < n; ++i) {
      int64_t row = embeddingRow(indices[i], vocab);
      if (row < 0) {
        raiseIndexError(errorFlag);
        continue;
      }
      dtable[row * dim + c] += dy[i * dim + c];
    }
  }
}

void checkShape(const char *kernel, int64_t n, int64_t vocab, int64_t dim) {
  if (n < 0 || vocab < 0 || dim < 0)
    failf("%s: negative shape (%lld positions, vocab %lld, dim %lld)", kernel,
          (long long)n, (long long)vocab, (long long)dim);
}

} // namespace

extern "C" {

void blpa_embedding(blpa_context *ctx, const float *table,
                    const int64_t *indices, float *y, int64_t n, int64_t vocab,
                    int64_t dim) {
  checkShape("blpa_embedding", n, vocab, dim);
  CudaRuntime &rt = runtimeOf(ctx);
  if (n * dim == 0)
    return;
  embeddingKernel<<<gridFor(n * dim), blockThreads, 0, rt.stream>>>(
      table, indices, y, n * dim, vocab, dim, rt.errorFlag);
  checkLaunch("blpa_embedding");
}

void blpa_embedding_grad(blpa_context *ctx, const float *dy,
                         const int64_t *indices, float *dtable, int64_t n,
                         int64_t vocab, int64_t dim) {
  checkShape("blpa_embedding_grad", n, vocab, dim);
  CudaRuntime &rt = runtimeOf(ctx);
  if (vocab * dim == 0)
    return;
  check(cudaMemsetAsync(dtable, 0, size_t(vocab * dim) * sizeof(float),
                        rt.stream),
        "blpa_embedding_grad");
  if (n == 0)
    return;
  embeddingGradKernel<<<gridFor(dim), blockThreads, 0, rt.stream>>>(
      dy, indices, dtable, n, vocab, dim, rt.errorFlag);
  checkLaunch("blpa_embedding_grad");
}

} // extern "C"
