//===- Loss.cu - Softmax, log-softmax and the cross-entropy loss ---------===//
//
// One warp per row (sample) for the loss: the row maximum, then
// log(sum(exp(row - max))) accumulated in double, both reduced over the warp
// with a fixed butterfly, as the CPU runtime's numerically stable
// log-sum-exp. The loss writes each row's loss to scratch and a one-block
// kernel adds them in a fixed order, so the batch mean is deterministic.
// Labels live in device memory: one out of [0, classes) raises
// deviceLabelOutOfRange (reported after the step) and the row contributes
// 0, so the loss stays finite. Rows labelled ignoreIndex contribute nothing
// and are not counted in the mean; the gradient's divisor (the number of
// labelled rows) is counted on the device by one block, in a fixed order.
//
// Softmax and log-softmax (formulas in lib/Runtime/Common/SoftmaxMath.h,
// shared with the CPU) normalize the rows of an [outer, length, inner]
// view: contiguous rows (inner 1, a classifier's) one warp per row as the
// loss; strided rows one thread per row, so that neighbouring threads read
// neighbouring elements, each summing its row in axis order as the CPU does.
//
//===----------------------------------------------------------------------===//

#include "CudaRuntime.h"
#include "Warp.cuh"

#include "../Common/SoftmaxMath.h"

#include <cstdint>

using namespace blpa;
using namespace blpa::cuda;

namespace {

/// The scratchFor slots of the per-row losses and of the labelled rows'
/// count.
constexpr unsigned rowLossSlot = 11;
constexpr unsigned labelledSlot = 12;

constexpr int warpsPerBlock = blockThreads / warpLanes;

/// A row's maximum and log(sum(exp(row - max))).
struct LogSumExp {
  float max;
  double logSum;
};

/// The whole warp computes the log-sum-exp of one row; every lane gets it.
__device__ LogSumExp rowLogSumExp(const float *row, int64_t classes, int lane) {
  float max = -INFINITY;
  for (int64_t j = lane; j < classes; j += warpLanes)
    max = fmaxf(max, row[j]);
  max = warpMax(max);
  double sum = 0;
  for (int64_t j = lane; j < classes; j += warpLanes)
    sum += softmaxExpTerm(row[j], max);
  return {max, log(warpSum(sum))};
}

/// True when the label is a class; otherwise the first lane records the
/// device error (the first one raised is kept).
__device__ bool checkLabel(int64_t label, int64_t classes, int32_t *errorFlag,
                           int lane) {
  if (label >= 0 && label < classes)
    return true;
  if (lane == 0)
    atomicCAS(errorFlag, int32_t(deviceOk), int32_t(deviceLabelOutOfRange));
  return false;
}

/// rowLoss[i] = -log softmax(logits[i])[labels[i]], 0 for a bad or ignored
/// label.
__global__ void __launch_bounds__(blockThreads)
    rowLossKernel(const float *logits, const int64_t *labels, double *rowLoss,
                  int64_t n, int64_t classes, int64_t ignoreIndex,
                  int32_t *errorFlag) {
  forEachRowByWarp(n, [&](int64_t i, int lane) {
    int64_t label = labels[i];
    if (label == ignoreIndex) {
      if (lane == 0)
        rowLoss[i] = 0.0;
      return;
    }
    const float *row = logits + i * classes;
    LogSumExp lse = rowLogSumExp(row, classes, lane);
    bool valid = checkLabel(label, classes, errorFlag, lane);
    // -log softmax[label] = log(sum exp(row - max)) - (row[label] - max).
    if (lane == 0)
      rowLoss[i] = valid ? lse.logSum - (double(row[label]) - lse.max) : 0.0;
  });
}

/// The sum over the block of `value(i)` for i in [0, n): thread t adds
/// i = t, t + 256, ..., then the warps' butterflies and warp 0's sums in
/// warp order, a fixed tree for a given n. Thread 0 gets the result.
template <typename Value>
__device__ double blockSum(int64_t n, Value &&value) {
  __shared__ double warpSums[warpsPerBlock];
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockThreads)
    acc += value(i);
  acc = warpSum(acc);
  if (threadIdx.x % warpLanes == 0)
    warpSums[threadIdx.x / warpLanes] = acc;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < warpsPerBlock; ++w)
    total += warpSums[w];
  return total;
}

/// loss[0] = the sum of rowLoss[0, n) over the rows not labelled
/// ignoreIndex, divided by their number.
__global__ void __launch_bounds__(blockThreads)
    batchMeanKernel(const double *rowLoss, const int64_t *labels, float *loss,
                    int64_t n, int64_t ignoreIndex) {
  double total = blockSum(n, [&](int64_t i) { return rowLoss[i]; });
  __syncthreads();
  double labelled = blockSum(
      n, [&](int64_t i) { return labels[i] == ignoreIndex ? 0.0 : 1.0; });
  if (threadIdx.x == 0)
    loss[0] = float(labelled > 0 ? total / labelled : 0.0);
}

/// labelled[0] = the number of rows not labelled ignoreIndex.
__global__ void __launch_bounds__(blockThreads)
    labelledRowsKernel(const int64_t *labels, double *labelled, int64_t n,
                       int64_t ignoreIndex) {
  double count = blockSum(
      n, [&](int64_t i) { return labels[i] == ignoreIndex ? 0.0 : 1.0; });
  if (threadIdx.x == 0)
    labelled[0] = count;
}

/// dlogits[i] = dloss[0] / labelled * (softmax(logits[i]) -
/// onehot(labels[i])); a bad label gets no one-hot term, an ignored one
/// zeros.
__global__ void __launch_bounds__(blockThreads)
    lossGradKernel(const float *logits, const int64_t *labels,
                   const float *dloss, const double *labelled, float *dlogits,
                   int64_t n, int64_t classes, int64_t ignoreIndex,
                   int32_t *errorFlag) {
  double scale = labelled[0] > 0 ? double(dloss[0]) / labelled[0] : 0.0;
  forEachRowByWarp(n, [&](int64_t i, int lane) {
    float *out = dlogits + i * classes;
    int64_t label = labels[i];
    if (label == ignoreIndex) {
      for (int64_t j = lane; j < classes; j += warpLanes)
        out[j] = 0.0f;
      return;
    }
    const float *row = logits + i * classes;
    LogSumExp lse = rowLogSumExp(row, classes, lane);
    if (!checkLabel(label, classes, errorFlag, lane))
      label = -1;
    for (int64_t j = lane; j < classes; j += warpLanes) {
      double p = exp(logSoftmaxOf(row[j], lse.max, lse.logSum));
      out[j] = float(scale * (p - (j == label ? 1.0 : 0.0)));
    }
  });
}

/// Softmax (log-softmax when Log) of contiguous rows, one warp per row.
/// Every lane has read its elements before the warp's sums, so y may alias
/// x.
template <bool Log>
__global__ void __launch_bounds__(blockThreads)
    softmaxRowsKernel(const float *x, float *y, int64_t rows, int64_t length) {
  forEachRowByWarp(rows, [&](int64_t i, int lane) {
    const float *row = x + i * length;
    float *out = y + i * length;
    LogSumExp lse = rowLogSumExp(row, length, lane);
    for (int64_t j = lane; j < length; j += warpLanes)
      out[j] = softmaxValue<Log>(row[j], lse.max, lse.logSum);
  });
}

template <bool Log>
__global__ void __launch_bounds__(blockThreads)
    softmaxGradRowsKernel(const float *dy, const float *y, float *dx,
                          int64_t rows, int64_t length) {
  forEachRowByWarp(rows, [&](int64_t i, int lane) {
    const float *g = dy + i * length, *out = y + i * length;
    double sum = 0;
    for (int64_t j = lane; j < length; j += warpLanes)
      sum += softmaxGradTerm<Log>(g[j], out[j]);
    sum = warpSum(sum);
    float *in = dx + i * length;
    for (int64_t j = lane; j < length; j += warpLanes)
      in[j] = softmaxGradValue<Log>(g[j], out[j], sum);
  });
}

/// Calls body(base) for every row of the [outer, length, inner] view, one
/// thread per row: element j of the row is at base + j * inner.
template <typename Body>
__device__ void forEachStridedRow(int64_t outer, int64_t length, int64_t inner,
                                  Body &&body) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       t < outer * inner; t += int64_t(gridDim.x) * blockDim.x)
    body(t / inner * length * inner + t % inner);
}

template <bool Log>
__global__ void __launch_bounds__(blockThreads)
    softmaxStridedKernel(const float *x, float *y, int64_t outer,
                         int64_t length, int64_t inner) {
  forEachStridedRow(outer, length, inner, [&](int64_t base) {
    const float *in = x + base;
    float max = in[0];
    for (int64_t j = 1; j < length; ++j)
      max = fmaxf(max, in[j * inner]);
    double sum = 0;
    for (int64_t j = 0; j < length; ++j)
      sum += softmaxExpTerm(in[j * inner], max);
    double logSum = log(sum);
    float *out = y + base;
    for (int64_t j = 0; j < length; ++j)
      out[j * inner] = softmaxValue<Log>(in[j * inner], max, logSum);
  });
}

template <bool Log>
__global__ void __launch_bounds__(blockThreads)
    softmaxGradStridedKernel(const float *dy, const float *y, float *dx,
                             int64_t outer, int64_t length, int64_t inner) {
  forEachStridedRow(outer, length, inner, [&](int64_t base) {
    const float *g = dy + base, *out = y + base;
    double sum = 0;
    for (int64_t j = 0; j < length; ++j)
      sum += softmaxGradTerm<Log>(g[j * inner], out[j * inner]);
    float *in = dx + base;
    for (int64_t j = 0; j < length; ++j)
      in[j * inner] = softmaxGradValue<Log>(g[j * inner], out[j * inner], sum);
  });
}

/// False when there is nothing to normalize; fails on a negative shape.
bool checkSoftmaxShape(const char *kernel, int64_t outer, int64_t length,
                       int64_t inner) {
  if (outer < 0 || length < 0 || inner < 0)
    failf("%s: negative shape [%lld, %lld, %lld]", kernel, (long long)outer,
          (long long)length, (long long)inner);
  return outer > 0 && length > 0 && inner > 0;
}

template <bool Log>
void softmaxForward(blpa_context *ctx, const char *kernel, const float *x,
                    float *y, int64_t outer, int64_t length, int64_t inner) {
  if (!checkSoftmaxShape(kernel, outer, length, inner))
    return;
  cudaStream_t stream = runtimeOf(ctx).stream;
  if (inner == 1)
    softmaxRowsKernel<Log>
        <<<gridFor(outer * warpLanes), blockThreads, 0, stream>>>(x, y, outer,
                                                                  length);
  else
    softmaxStridedKernel<Log>
        <<<gridFor(outer * inner), blockThreads, 0, stream>>>(x, y, outer,
                                                              length, inner);
  checkLaunch(kernel);
}

template <bool Log>
void softmaxBackward(blpa_context *ctx, const char *kernel, const float *dy,
                     const float *y, float *dx, int64_t outer, int64_t length,
                     int64_t inner) {
  if (!checkSoftmaxShape(kernel, outer, length, inner))
    return;
  cudaStream_t stream = runtimeOf(ctx).stream;
  if (inner == 1)
    softmaxGradRowsKernel<Log>
        <<<gridFor(outer * warpLanes), blockThreads, 0, stream>>>(
            dy, y, dx, outer, length);
  else
    softmaxGradStridedKernel<Log>
        <<<gridFor(outer * inner), blockThreads, 0, stream>>>(dy, y, dx, outer,
                                                              length, inner);
  checkLaunch(kernel);
}

void checkClasses(const char *kernel, int64_t n, int64_t classes) {
  if (n > 0 && classes <= 0)
    failf("%s: %lld classes, expected at least one", kernel,
          (long long)classes);
}

} // namespace

extern "C" {

void blpa_softmax_cross_entropy(blpa_context *ctx, const float *logits,
                                const int64_t *labels, float *loss, int64_t n,
                                int64_t classes, int64_t ignoreIndex) {
  CudaRuntime &rt = runtimeOf(ctx);
  checkClasses("blpa_softmax_cross_entropy", n, classes);
  double *rowLoss = static_cast<double *>(
      scratchFor(rt, rowLossSlot, size_t(n > 0 ? n : 1) * sizeof(double)));
  if (n > 0) {
    rowLossKernel<<<gridFor(n * warpLanes), blockThreads, 0, rt.stream>>>(
        logits, labels, rowLoss, n, classes, ignoreIndex, rt.errorFlag);
    checkLaunch("blpa_softmax_cross_entropy");
  }
  batchMeanKernel<<<1, blockThreads, 0, rt.stream>>>(rowLoss, labels, loss, n,
                                                     ignoreIndex);
  checkLaunch("blpa_softmax_cross_entropy (mean)");
}

void blpa_softmax_cross_entropy_grad(blpa_context *ctx, const float *logits,
                                     const int64_t *labels, const float *dloss,
                                     float *dlogits, int64_t n, int64_t classes,
                                     int64_t ignoreIndex) {
  CudaRuntime &rt = runtimeOf(ctx);
  checkClasses("blpa_softmax_cross_entropy_grad", n, classes);
  if (n <= 0)
    return;
  double *labelled =
      static_cast<double *>(scratchFor(rt, labelledSlot, sizeof(double)));
  labelledRowsKernel<<<1, blockThreads, 0, rt.stream>>>(labels, labelled, n,
                                                        ignoreIndex);
  checkLaunch("blpa_softmax_cross_entropy_grad (count)");
  lossGradKernel<<<gridFor(n * warpLanes), blockThreads, 0, rt.stream>>>(
      logits, labels, dloss, labelled, dlogits, n, classes, ignoreIndex,
      rt.errorFlag);
  checkLaunch("blpa_softmax_cross_entropy_grad");
}

void blpa_softmax(blpa_context *ctx, const float *x, float *y, int64_t outer,
                  int64_t length, int64_t inner) {
  softmaxForward<false>(ctx, "blpa_softmax", x, y, outer, length, inner);
}

void blpa_log_softmax(blpa_context *ctx, const float *x, float *y,
                      int64_t outer, int64_t length, int64_t inner) {
  softmaxForward<true>(ctx, "blpa_log_softmax", x, y, outer, length, inner);
}

void blpa_softmax_grad(blpa_context *ctx, const float *dy, const float *y,
                       float *dx, int64_t outer, int64_t length,
                       int64_t inner) {
  softmaxBackward<false>(ctx, "blpa_softmax_grad", dy, y, dx, outer, length,
                         inner);
}

void blpa_log_softmax_grad(blpa_context *ctx, const float *dy, const float *y,
                           float *dx, int64_t outer, int64_t length,
                           int64_t inner) {
  softmaxBackward<true>(ctx, "blpa_log_softmax_grad", dy, y, dx, outer, length,
                        inner);
}

} // extern "C"
