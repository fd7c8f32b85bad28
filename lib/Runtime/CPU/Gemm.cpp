//===- Gemm.cpp - General matrix multiply on oneDNN's sgemm --------------===//
//
// The broadcast bias c is first expanded into y, then dnnl_sgemm computes
// y = alpha*op(a)*op(b) + beta*y in place (row-major). dnnl_sgemm's blocking
// depends only on the shape and thread count, so it is deterministic for a
// fixed thread count.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"

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
  // Leading dimensions must be at least 1 even when k == 0.
  int64_t lda = std::max<int64_t>(1, transA ? m : k);
  int64_t ldb = std::max<int64_t>(1, transB ? k : n);
  dnnl_status_t status =
      dnnl_sgemm(transA ? 'T' : 'N', transB ? 'T' : 'N', m, n, k, float(alpha),
                 a, lda, b, ldb, float(beta), y, n);
  if (status != dnnl_success)
    failf("blpa_gemm: dnnl_sgemm failed with status %d (m=%lld n=%lld "
          "k=%lld)",
          int(status), (long long)m, (long long)n, (long long)k);
}
