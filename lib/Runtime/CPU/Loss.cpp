//===- Loss.cpp - Softmax cross-entropy and its gradient -----------------===//
//
// Both kernels work one row (sample) per parallel index with a numerically
// stable log-sum-exp (shifted by the row maximum, summed in double). The
// batch mean adds the per-row losses in row order, independent of threads.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "LaneSum.h"

#include <algorithm>
#include <cmath>

using namespace blpa::cpu;

namespace {

void checkLabels(const char *kernel, const int64_t *labels, int64_t n,
                 int64_t classes) {
  for (int64_t i = 0; i < n; ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      failf("%s: label %lld of sample %lld is out of range for %lld classes "
            "(expected 0 to %lld)",
            kernel, (long long)labels[i], (long long)i, (long long)classes,
            (long long)classes - 1);
}

/// The row's maximum and log(sum(exp(row - max))).
struct LogSumExp {
  float max;
  double logSum;
};

LogSumExp logSumExp(const float *row, int64_t classes) {
  float max = *std::max_element(row, row + classes);
  double sum = laneSum(
      classes, [&](int64_t j) { return double(std::exp(row[j] - max)); });
  return {max, std::log(sum)};
}

} // namespace

extern "C" {

void blpa_softmax_cross_entropy(blpa_context *, const float *logits,
                                const int64_t *labels, float *loss, int64_t n,
                                int64_t classes) {
  checkLabels("blpa_softmax_cross_entropy", labels, n, classes);
  std::vector<double> rowLoss(n);
  parallelFor(n, [&](int64_t i) {
    const float *row = logits + i * classes;
    LogSumExp lse = logSumExp(row, classes);
    // -log softmax[label] = log(sum exp(row - max)) - (row[label] - max).
    rowLoss[i] = lse.logSum - (double(row[labels[i]]) - lse.max);
  });
  double total = 0;
  for (double l : rowLoss)
    total += l;
  loss[0] = float(n ? total / n : 0.0);
}

void blpa_softmax_cross_entropy_grad(blpa_context *, const float *logits,
                                     const int64_t *labels, const float *dloss,
                                     float *dlogits, int64_t n,
                                     int64_t classes) {
  checkLabels("blpa_softmax_cross_entropy_grad", labels, n, classes);
  double scale = double(dloss[0]) / double(n);
  parallelFor(n, [&](int64_t i) {
    const float *row = logits + i * classes;
    float *out = dlogits + i * classes;
    LogSumExp lse = logSumExp(row, classes);
    for (int64_t j = 0; j < classes; ++j) {
      double p = std::exp(double(row[j] - lse.max) - lse.logSum);
      out[j] = float(scale * (p - (j == labels[i] ? 1.0 : 0.0)));
    }
  });
}

} // extern "C"
