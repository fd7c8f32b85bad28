//===- Gemm.cpp - General matrix multiply on oneDNN's sgemm --------------===//
//
// The broadcast bias c is first expanded into y, then dnnl_sgemm computes
// y = alpha*op(a)*op(b) + beta*y in place (row-major). dnnl_sgemm's blocking
// depends only on the shape and thread count, so it is deterministic for a
// fixed thread count.
//
// blpa_batch_matmul runs one dnnl_sgemm per matrix: over the batch on the
// OpenMP threads when it has a matrix for each (each sgemm then runs on its
// thread alone), else one after the other, each sgemm on every thread.
// Either way the split depends only on the shape and thread count.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"

#include "../Common/BatchMatMulShape.h"

#include <omp.h>

#include <algorithm>

using namespace blpa::cpu;

namespace {

/// y[M,N] = c[cRows,cCols] broadcast.
void broadcastInto(float *y, const float *c, int64_t m, int64_t n,
                   int64_t cRows, int64_t cCols) {
  parallelFor(m, [&](int64_t i) {
    const float *row = c + (cRows == 1 ? 0 : i * cCols);
    float *out = y + i * n;
    if (cCols == 1)
      std::fill(out, out + n, row[0]);
    else
      std::copy(row, row + n, out);
  });
}

/// y[M,N] = alpha*op(a)*op(b) + beta*y, row-major; `kernel` names the
/// caller in the error.
void sgemm(const char *kernel, const float *a, const float *b, float *y,
           int64_t m, int64_t n, int64_t k, bool transA, bool transB,
           float alpha, float beta) {
  if (k == 0) {
    // An empty sum: y is beta * y alone (the operands, empty, may be null
    // pointers, which dnnl_sgemm refuses).
    parallelBlocks(m * n, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        y[i] = beta == 0.0f ? 0.0f : beta * y[i];
    });
    return;
  }
  // Leading dimensions must be at least 1.
  int64_t lda = std::max<int64_t>(1, transA ? m : k);
  int64_t ldb = std::max<int64_t>(1, transB ? k : n);
  dnnl_status_t status = dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', m,
                                    n, k, alpha, a, lda, b, ldb, beta, y, n);
  if (status != dnnl_success)
    failf("%s: dnnl_sgemm failed with status %d (m=%lld n=%lld k=%lld)", kernel,
          int(status), (long long)m, (long long)n, (long long)k);
}

} // namespace

extern "C" void blpa_gemm(blpa_context *ctx, const float *a, const float *b,
                          const float *c, float *y, int64_t m, int64_t n,
                          int64_t k, int64_t transA, int64_t transB,
                          double alpha, double beta, int64_t cRows,
                          int64_t cCols) {
  (void)ctx;
  if (m == 0 || n == 0)
    return;
  if (!c || beta == 0.0) {
    beta = 0.0; // BLAS semantics: y is not read, so stale NaNs cannot leak.
  } else {
    if ((cRows != 1 && cRows != m) || (cCols != 1 && cCols != n))
      failf("blpa_gemm: bias of shape [%lld, %lld] does not broadcast to "
            "[%lld, %lld]",
            (long long)cRows, (long long)cCols, (long long)m, (long long)n);
    broadcastInto(y, c, m, n, cRows, cCols);
  }
  sgemm("blpa_gemm", a, b, y, m, n, k, transA, transB, float(alpha),
        float(beta));
}

extern "C" void blpa_batch_matmul(blpa_context *ctx, const float *a,
                                  const float *b, float *y, int64_t batch,
                                  int64_t m, int64_t n, int64_t k,
                                  int64_t transA, int64_t transB,
                                  int64_t aBatch, int64_t bBatch) {
  (void)ctx;
  if (const char *error =
          blpa::batchMatMulArgumentError(batch, m, n, k, aBatch, bBatch))
    failf("blpa_batch_matmul: %s (batch=%lld aBatch=%lld bBatch=%lld "
          "m=%lld n=%lld k=%lld)",
          error, (long long)batch, (long long)aBatch, (long long)bBatch,
          (long long)m, (long long)n, (long long)k);
  if (m == 0 || n == 0)
    return;
  int64_t aStride = blpa::batchMatrixStride(aBatch, m * k);
  int64_t bStride = blpa::batchMatrixStride(bBatch, k * n);
  auto product = [&](int64_t i) {
    sgemm("blpa_batch_matmul", a + i * aStride, b + i * bStride, y + i * m * n,
          m, n, k, transA, transB, 1.0f, 0.0f);
  };
  if (batch >= omp_get_max_threads()) {
    parallelFor(batch, product);
    return;
  }
  for (int64_t i = 0; i < batch; ++i)
    product(i);
}
