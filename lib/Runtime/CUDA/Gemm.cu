//===- Gemm.cu - General matrix multiply on cuBLAS -----------------------===//
//
// The broadcast bias, scaled by beta, is first written into y by a small
// kernel; cublasSgemm then adds alpha*op(a)*op(b) to it (beta = 1). cuBLAS
// is column-major: a row-major [M, N] matrix is the column-major [N, M]
// matrix of its transpose, so y^T = op(b)^T * op(a)^T is one Sgemm with the
// operands swapped and no data moved. The runtime sets CUBLAS_PEDANTIC_MATH
// (no TF32) and cuBLAS's Sgemm is bitwise repeatable for a fixed shape,
// device and workspace.
//
// blpa_batch_matmul is one cublasSgemmStridedBatched_64 the same way; an
// operand broadcast over the batch (one matrix) has stride 0.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"

#include "../Common/BatchMatMulShape.h"

using namespace blpa::cuda;

namespace {

/// y[i, j] = beta * c[cRows == 1 ? 0 : i, cCols == 1 ? 0 : j] for the
/// [m, n] matrix y, one flat grid-stride loop so that every shape (a
/// column vector included) fills the device.
__global__ void fillScaledBias(float *y, const float *c, int64_t m, int64_t n,
                               int64_t cRows, int64_t cCols, float beta) {
  int64_t total = m * n;
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       index < total; index += int64_t(gridDim.x) * blockDim.x) {
    int64_t i = index / n, j = index - i * n;
    y[index] = beta * c[(cRows == 1 ? 0 : i * cCols) + (cCols == 1 ? 0 : j)];
  }
}

} // namespace

extern "C" void blpa_gemm(blpa_context *ctx, const float *a, const float *b,
                          const float *c, float *y, int64_t m, int64_t n,
                          int64_t k, int64_t transA, int64_t transB,
                          double alpha, double beta, int64_t cRows,
                          int64_t cCols) {
  CudaRuntime &rt = runtimeOf(ctx);
  if (m == 0 || n == 0)
    return;
  // BLAS semantics: without a bias term y is not read, so stale NaNs in it
  // cannot leak into the result.
  bool withBias = c && beta != 0.0;
  if (withBias) {
    if ((cRows != 1 && cRows != m) || (cCols != 1 && cCols != n))
      failf("blpa_gemm: bias of shape [%lld, %lld] does not broadcast to "
            "[%lld, %lld]",
            (long long)cRows, (long long)cCols, (long long)m, (long long)n);
    fillScaledBias<<<gridFor(m * n), blockThreads, 0, rt.stream>>>(
        y, c, m, n, cRows, cCols, float(beta));
    checkLaunch("blpa_gemm (bias)");
  }
  if (k == 0) {
    // op(a) * op(b) is an empty sum: y is the bias term alone.
    if (!withBias)
      check(cudaMemsetAsync(y, 0, size_t(m * n) * sizeof(float), rt.stream),
            "blpa_gemm");
    return;
  }
  float alphaF = float(alpha), betaF = withBias ? 1.0f : 0.0f;
  // Leading dimensions of the row-major buffers read column-major: the
  // length of a stored row.
  int64_t lda = transA ? m : k;
  int64_t ldb = transB ? k : n;
  check(cublasSgemm_64(rt.cublas, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
                       transA ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alphaF, b,
                       ldb, a, lda, &betaF, y, n),
        "blpa_gemm");
}

extern "C" void blpa_batch_matmul(blpa_context *ctx, const float *a,
                                  const float *b, float *y, int64_t batch,
                                  int64_t m, int64_t n, int64_t k,
                                  int64_t transA, int64_t transB,
                                  int64_t aBatch, int64_t bBatch) {
  CudaRuntime &rt = runtimeOf(ctx);
  if (const char *error =
          blpa::batchMatMulArgumentError(batch, m, n, k, aBatch, bBatch))
    failf("blpa_batch_matmul: %s (batch=%lld aBatch=%lld bBatch=%lld "
          "m=%lld n=%lld k=%lld)",
          error, (long long)batch, (long long)aBatch, (long long)bBatch,
          (long long)m, (long long)n, (long long)k);
  if (batch == 0 || m == 0 || n == 0)
    return;
  if (k == 0) {
    // Empty sums: every product is zero.
    check(
        cudaMemsetAsync(y, 0, size_t(batch * m * n) * sizeof(float), rt.stream),
        "blpa_batch_matmul");
    return;
  }
  float alpha = 1.0f, beta = 0.0f;
  int64_t lda = transA ? m : k;
  int64_t ldb = transB ? k : n;
  // As blpa_gemm: y[i]^T = op(b[i])^T * op(a[i])^T, column-major.
  check(cublasSgemmStridedBatched_64(
            rt.cublas, transB ? CUBLAS_OP_T : CUBLAS_OP_N,
            transA ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb,
            blpa::batchMatrixStride(bBatch, k * n), a, lda,
            blpa::batchMatrixStride(aBatch, m * k), &beta, y, n, m * n, batch),
        "blpa_batch_matmul");
}
