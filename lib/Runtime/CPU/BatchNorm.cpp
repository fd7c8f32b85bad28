//===- BatchNorm.cpp - Batch normalization kernels -----------------------===//
//
// Per-channel statistics are reduced deterministically: each (n, c) slice is
// summed in double by one thread (LaneSum.h), then a channel's N slice sums
// are added in n order. Neither step depends on the thread count. The
// variance is computed from sums shifted by one sample of the channel, which
// avoids the cancellation of the naive E[x^2] - E[x]^2.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "LaneSum.h"

#include <cmath>

using namespace blpa::cpu;

namespace {

/// sum0[ch], sum1[ch] = sums over the channel's slices of the two terms
/// sliceSums(ch, sliceOffset, s0, s1) computes for one slice.
template <typename SliceSums>
void channelSums(int64_t n, int64_t c, int64_t spatial,
                 std::vector<double> &sum0, std::vector<double> &sum1,
                 SliceSums &&sliceSums) {
  std::vector<double> partial(2 * n * c);
  parallelFor(n * c, [&](int64_t i) {
    sliceSums(i % c, i * spatial, partial[2 * i], partial[2 * i + 1]);
  });
  sum0.assign(c, 0.0);
  sum1.assign(c, 0.0);
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch) {
      sum0[ch] += partial[2 * (b * c + ch)];
      sum1[ch] += partial[2 * (b * c + ch) + 1];
    }
}

/// y = (x - center[ch]) * factor[ch] + offset[ch] over every (n, c) slice.
void normalize(const float *x, float *y, int64_t n, int64_t c, int64_t spatial,
               const float *center, const std::vector<float> &factor,
               const float *offset) {
  parallelFor(n * c, [&](int64_t i) {
    int64_t ch = i % c;
    float mu = center[ch], a = factor[ch], b = offset[ch];
    const float *in = x + i * spatial;
    float *out = y + i * spatial;
    for (int64_t j = 0; j < spatial; ++j)
      out[j] = (in[j] - mu) * a + b;
  });
}

} // namespace

extern "C" {

void blpa_batch_norm_train(blpa_context *, const float *x, const float *scale,
                           const float *bias, float *y, float *mean,
                           float *invStd, int64_t n, int64_t c, int64_t spatial,
                           double epsilon) {
  int64_t count = n * spatial;
  if (count == 0)
    failf("blpa_batch_norm_train: empty batch");
  std::vector<double> sum, sumSq;
  // Sums of x - shift[ch], shift = the channel's first value.
  channelSums(n, c, spatial, sum, sumSq,
              [&](int64_t ch, int64_t offset, double &s0, double &s1) {
                const float *in = x + offset;
                double shift = x[ch * spatial];
                laneSum2(spatial, s0, s1,
                         [&](int64_t j, double &t0, double &t1) {
                           t0 = double(in[j]) - shift;
                           t1 = t0 * t0;
                         });
              });
  std::vector<float> factor(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    double shiftedMean = sum[ch] / count;
    double var = std::max(0.0, sumSq[ch] / count - shiftedMean * shiftedMean);
    mean[ch] = float(x[ch * spatial] + shiftedMean);
    invStd[ch] = float(1.0 / std::sqrt(var + epsilon));
    factor[ch] = scale[ch] * invStd[ch];
  }
  normalize(x, y, n, c, spatial, mean, factor, bias);
}

void blpa_batch_norm_infer(blpa_context *, const float *x, const float *scale,
                           const float *bias, const float *mean,
                           const float *var, float *y, int64_t n, int64_t c,
                           int64_t spatial, double epsilon) {
  std::vector<float> factor(c);
  for (int64_t ch = 0; ch < c; ++ch)
    factor[ch] = float(scale[ch] / std::sqrt(double(var[ch]) + epsilon));
  normalize(x, y, n, c, spatial, mean, factor, bias);
}

void blpa_update_running_stats(blpa_context *ctx, float *runningMean,
                               float *runningVar, const float *mean,
                               const float *invStd, int64_t c, int64_t count,
                               double momentum, double epsilon) {
  if (ctx && ctx->skip_update)
    return;
  // Unbiased correction; a batch of one has no unbiased variance, keep the
  // biased one rather than divide by zero.
  double correction = count > 1 ? double(count) / double(count - 1) : 1.0;
  for (int64_t ch = 0; ch < c; ++ch) {
    double is = invStd[ch];
    double var = (1.0 / (is * is) - epsilon) * correction;
    runningMean[ch] =
        float(runningMean[ch] * momentum + mean[ch] * (1.0 - momentum));
    runningVar[ch] = float(runningVar[ch] * momentum + var * (1.0 - momentum));
  }
}

void blpa_batch_norm_grad(blpa_context *, const float *dy, const float *x,
                          const float *scale, const float *mean,
                          const float *invStd, float *dx, float *dscale,
                          float *dbias, int64_t n, int64_t c, int64_t spatial) {
  int64_t count = n * spatial;
  std::vector<double> sumDy, sumDyXc; // sum(dy), sum(dy * (x - mean))
  channelSums(n, c, spatial, sumDy, sumDyXc,
              [&](int64_t ch, int64_t offset, double &s0, double &s1) {
                const float *g = dy + offset, *in = x + offset;
                double mu = mean[ch];
                laneSum2(spatial, s0, s1,
                         [&](int64_t j, double &t0, double &t1) {
                           t0 = g[j];
                           t1 = t0 * (double(in[j]) - mu);
                         });
              });
  // dx = k1 * (dy - k2 - (x - mean) * k3) per channel.
  std::vector<float> k1(c), k2(c), k3(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    double is = invStd[ch];
    dbias[ch] = float(sumDy[ch]);
    dscale[ch] = float(sumDyXc[ch] * is);
    k1[ch] = float(scale[ch] * is);
    k2[ch] = float(sumDy[ch] / count);
    k3[ch] = float(sumDyXc[ch] * is * is / count);
  }
  parallelFor(n * c, [&](int64_t i) {
    int64_t ch = i % c;
    float a = k1[ch], b = k2[ch], d = k3[ch], mu = mean[ch];
    const float *g = dy + i * spatial, *in = x + i * spatial;
    float *out = dx + i * spatial;
    for (int64_t j = 0; j < spatial; ++j)
      out[j] = a * (g[j] - b - (in[j] - mu) * d);
  });
}

} // extern "C"
