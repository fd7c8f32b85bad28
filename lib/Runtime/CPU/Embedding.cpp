//===- Embedding.cpp - Embedding lookups and their scatter-add gradient ---===//
//
// The lookup copies rows, so it is exact. The gradient adds each position's
// row gradient into the row its token names in position order: a parallel
// index owns a block of columns of the whole table and walks every position
// for them, so no two threads write one element and the sums do not depend
// on the thread count (the CUDA runtime adds in the same order).
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"

#include "../Common/EmbeddingRow.h"

#include <algorithm>
#include <cstring>

using namespace blpa;
using namespace blpa::cpu;

namespace {

/// Columns per parallel index of the gradient.
constexpr int64_t embeddingColumns = 16;

void checkIndices(const char *kernel, const int64_t *indices, int64_t n,
                  int64_t vocab, int64_t dim) {
  if (n < 0 || vocab < 0 || dim < 0)
    failf("%s: negative shape (%lld positions, vocab %lld, dim %lld)", kernel,
          (long long)n, (long long)vocab, (long long)dim);
  for (int64_t i = 0; i < n; ++i)
    if (embeddingRow(indices[i], vocab) < 0)
      failf("%s: token id %lld at position %lld is outside [0, %lld), the "
            "rows of the embedding table",
            kernel, (long long)indices[i], (long long)i, (long long)vocab);
}

} // namespace

extern "C" {

void blpa_embedding(blpa_context *, const float *table, const int64_t *indices,
                    float *y, int64_t n, int64_t vocab, int64_t dim) {
  checkIndices("blpa_embedding", indices, n, vocab, dim);
  parallelFor(n, [&](int64_t i) {
    const float *row = table + embeddingRow(indices[i], vocab) * dim;
    std::copy(row, row + dim, y + i * dim);
  });
}

void blpa_embedding_grad(blpa_context *, const float *dy,
                         const int64_t *indices, float *dtable, int64_t n,
                         int64_t vocab, int64_t dim) {
  checkIndices("blpa_embedding_grad", indices, n, vocab, dim);
  int64_t blocks = (dim + embeddingColumns - 1) / embeddingColumns;
  parallelFor(blocks, [&](int64_t blk) {
    int64_t first = blk * embeddingColumns;
    int64_t cols = std::min(embeddingColumns, dim - first);
    for (int64_t v = 0; v < vocab; ++v)
      std::fill_n(dtable + v * dim + first, cols, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      float *out = dtable + embeddingRow(indices[i], vocab) * dim + first;
      const float *in = dy + i * dim + first;
      for (int64_t c = 0; c < cols; ++c)
        out[c] += in[c];
    }
  });
}

} // extern "C"
