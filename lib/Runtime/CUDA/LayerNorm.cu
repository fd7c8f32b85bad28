//===- LayerNorm.cu - Layer normalization and its gradient ----------------===//
//
// One warp per row for the forward and dx (the row sums in double, reduced
// with Warp.cuh's butterfly), the formulas of lib/Runtime/Common/
// LayerNormMath.h as on the CPU. The gradient's column sums (dscale,
// dbias) take one thread per column, summing its rows in row order in
// double, the CPU runtime's order, so they equal its sums bit for bit;
// they run before dx, which may overwrite dy.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"
#include "Warp.cuh"

#include "../Common/LayerNormMath.h"

#include <cstdint>

using namespace blpa;
using namespace blpa::cuda;

namespace {

/// Every lane has read its elements before the warp's sums, so y may alias
/// x.
__global__ void __launch_bounds__(blockThreads)
    layerNormRowsKernel(const float *x, const float *scale, const float *bias,
                        float *y, float *mean, float *invStd, int64_t rows,
                        int64_t cols, double epsilon) {
  forEachRowByWarp(rows, [&](int64_t r, int lane) {
    const float *in = x + r * cols;
    double sum = 0;
    for (int64_t j = lane; j < cols; j += warpLanes)
      sum += double(in[j]);
    double m = rowMean(warpSum(sum), cols);
    double squares = 0;
    for (int64_t j = lane; j < cols; j += warpLanes)
      squares += squaredDeviation(in[j], m);
    RowStats s = rowStats(m, warpSum(squares), cols, epsilon);
    if (lane == 0) {
      mean[r] = s.mean;
      invStd[r] = s.invStd;
    }
    float *out = y + r * cols;
    for (int64_t j = lane; j < cols; j += warpLanes)
      out[j] = layerNormValue(layerNormXhat(in[j], s), scale[j], bias, j);
  });
}

__global__ void __launch_bounds__(blockThreads)
    layerNormColumnSumsKernel(const float *dy, const float *x,
                              const float *mean, const float *invStd,
                              float *dscale, float *dbias, int64_t rows,
                              int64_t cols) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < cols;
       j += int64_t(gridDim.x) * blockDim.x) {
    double scaleAcc = 0, biasAcc = 0;
    for (int64_t r = 0; r < rows; ++r) {
      float g = dy[r * cols + j];
      RowStats s{mean[r], invStd[r]};
      scaleAcc += double(g) * double(layerNormXhat(x[r * cols + j], s));
      biasAcc += double(g);
    }
    dscale[j] = float(scaleAcc);
    if (dbias)
      dbias[j] = float(biasAcc);
  }
}

__global__ void __launch_bounds__(blockThreads)
    layerNormGradRowsKernel(const float *dy, const float *x, const float *scale,
                            const float *mean, const float *invStd, float *dx,
                            int64_t rows, int64_t cols) {
  forEachRowByWarp(rows, [&](int64_t r, int lane) {
    RowStats s{mean[r], invStd[r]};
    const float *g = dy + r * cols, *in = x + r * cols;
    double sumG = 0, sumGX = 0;
    for (int64_t j = lane; j < cols; j += warpLanes) {
      float gj = g[j] * scale[j];
      sumG += double(gj);
      sumGX += double(gj) * double(layerNormXhat(in[j], s));
    }
    RowGradMeans m = rowGradMeans(warpSum(sumG), warpSum(sumGX), cols);
    float *out = dx + r * cols;
    for (int64_t j = lane; j < cols; j += warpLanes)
      out[j] = layerNormGradValue(g[j] * scale[j], layerNormXhat(in[j], s), m,
                                  s.invStd);
  });
}

/// False when there is nothing to do; fails on a negative shape.
bool checkLayerNormShape(const char *kernel, int64_t rows, int64_t cols) {
  if (rows < 0 || cols < 0)
    failf("%s: negative shape [%lld, %lld]", kernel, (long long)rows,
          (long long)cols);
  return rows > 0 && cols > 0;
}

} // namespace

extern "C" {

void blpa_layer_norm(blpa_context *ctx, const float *x, const float *scale,
                     const float *bias, float *y, float *mean, float *invStd,
                     int64_t rows, int64_t cols, double epsilon) {
  if (!checkLayerNormShape("blpa_layer_norm", rows, cols))
    return;
  layerNormRowsKernel<<<gridFor(rows * warpLanes), blockThreads, 0,
                        runtimeOf(ctx).stream>>>(x, scale, bias, y, mean,
                                                 invStd, rows, cols, epsilon);
  checkLaunch("blpa_layer_norm");
}

void blpa_layer_norm_grad(blpa_context *ctx, const float *dy, const float *x,
                          const float *scale, const float *mean,
                          const float *invStd, float *dx, float *dscale,
                          float *dbias, int64_t rows, int64_t cols) {
  if (!checkLayerNormShape("blpa_layer_norm_grad", rows, cols))
    return;
  cudaStream_t stream = runtimeOf(ctx).stream;
  layerNormColumnSumsKernel<<<gridFor(cols), blockThreads, 0, stream>>>(
      dy, x, mean, invStd, dscale, dbias, rows, cols);
  checkLaunch("blpa_layer_norm_grad");
  layerNormGradRowsKernel<<<gridFor(rows * warpLanes), blockThreads, 0,
                            stream>>>(dy, x, scale, mean, invStd, dx, rows,
                                      cols);
  checkLaunch("blpa_layer_norm_grad");
}

} // extern "C"
