//===- Loss.cpp - Softmax, log-softmax and the cross-entropy loss --------===//
//
// The loss kernels work one row (sample) per parallel index with a
// numerically stable log-sum-exp (shifted by the row maximum, summed in
// double). The batch mean adds the per-row losses in row order, independent
// of threads. Softmax and log-softmax (lib/Runtime/Common/SoftmaxMath.h, the
// formulas shared with CUDA) normalize the rows of an [outer, length, inner]
// view: a parallel index takes a block of up to softmaxColumns adjacent
// rows (inner positions), whose elements at one position along the axis are
// contiguous, so every loop runs along memory; each row is reduced by one
// thread in axis order, so results do not depend on the thread count.
//
//===----------------------------------------------------------------------===//

#include "CpuRuntime.h"
#include "LaneSum.h"

#include "../Common/SoftmaxMath.h"

#include <algorithm>
#include <cmath>

using namespace blpa;
using namespace blpa::cpu;

namespace {

/// Checks the labels and returns the number of rows the mean is over (those
/// not labelled `ignoreIndex`).
int64_t countLabelledRows(const char *kernel, const int64_t *labels, int64_t n,
                          int64_t classes, int64_t ignoreIndex) {
  int64_t labelled = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (labels[i] == ignoreIndex)
      continue;
    if (labels[i] < 0 || labels[i] >= classes)
      failf("%s: label %lld of row %lld is out of range for %lld classes "
            "(expected 0 to %lld, or %lld to leave the row out)",
            kernel, (long long)labels[i], (long long)i, (long long)classes,
            (long long)classes - 1, (long long)ignoreIndex);
    ++labelled;
  }
  return labelled;
}

/// The row's maximum and log(sum(exp(row - max))).
struct LogSumExp {
  float max;
  double logSum;
};

LogSumExp logSumExp(const float *row, int64_t classes) {
  float max = *std::max_element(row, row + classes);
  double sum =
      laneSum(classes, [&](int64_t j) { return softmaxExpTerm(row[j], max); });
  return {max, std::log(sum)};
}

/// Rows normalized together by one parallel index.
constexpr int64_t softmaxColumns = 64;

void checkSoftmaxShape(const char *kernel, int64_t outer, int64_t length,
                       int64_t inner) {
  if (outer < 0 || length < 0 || inner < 0)
    failf("%s: negative shape [%lld, %lld, %lld]", kernel, (long long)outer,
          (long long)length, (long long)inner);
}

/// Calls body(base, columns) for every block of up to softmaxColumns rows
/// of the [outer, length, inner] view: element j of row c of the block is
/// at base + j * inner + c.
template <typename Body>
void forEachSoftmaxBlock(int64_t outer, int64_t length, int64_t inner,
                         Body &&body) {
  if (outer == 0 || length == 0 || inner == 0)
    return;
  int64_t blocks = (inner + softmaxColumns - 1) / softmaxColumns;
  parallelFor(outer * blocks, [&](int64_t item) {
    int64_t first = item % blocks * softmaxColumns;
    body(item / blocks * length * inner + first,
         std::min(softmaxColumns, inner - first));
  });
}

template <bool Log>
void softmaxForward(const char *kernel, const float *x, float *y, int64_t outer,
                    int64_t length, int64_t inner) {
  checkSoftmaxShape(kernel, outer, length, inner);
  forEachSoftmaxBlock(outer, length, inner, [&](int64_t base, int64_t cols) {
    const float *in = x + base;
    float max[softmaxColumns];
    double logSum[softmaxColumns] = {};
    std::copy(in, in + cols, max);
    for (int64_t j = 1; j < length; ++j)
      for (int64_t c = 0; c < cols; ++c)
        max[c] = std::max(max[c], in[j * inner + c]);
    for (int64_t j = 0; j < length; ++j)
      for (int64_t c = 0; c < cols; ++c)
        logSum[c] += softmaxExpTerm(in[j * inner + c], max[c]);
    for (int64_t c = 0; c < cols; ++c)
      logSum[c] = std::log(logSum[c]);
    float *out = y + base;
    for (int64_t j = 0; j < length; ++j)
      for (int64_t c = 0; c < cols; ++c)
        out[j * inner + c] =
            softmaxValue<Log>(in[j * inner + c], max[c], logSum[c]);
  });
}

template <bool Log>
void softmaxBackward(const char *kernel, const float *dy, const float *y,
                     float *dx, int64_t outer, int64_t length, int64_t inner) {
  checkSoftmaxShape(kernel, outer, length, inner);
  forEachSoftmaxBlock(outer, length, inner, [&](int64_t base, int64_t cols) {
    const float *g = dy + base, *out = y + base;
    double rowSum[softmaxColumns] = {};
    for (int64_t j = 0; j < length; ++j)
      for (int64_t c = 0; c < cols; ++c)
        rowSum[c] += softmaxGradTerm<Log>(g[j * inner + c], out[j * inner + c]);
    float *in = dx + base;
    for (int64_t j = 0; j < length; ++j)
      for (int64_t c = 0; c < cols; ++c)
        in[j * inner + c] = softmaxGradValue<Log>(
            g[j * inner + c], out[j * inner + c], rowSum[c]);
  });
}

} // namespace

extern "C" {

void blpa_softmax(blpa_context *, const float *x, float *y, int64_t outer,
                  int64_t length, int64_t inner) {
  softmaxForward<false>("blpa_softmax", x, y, outer, length, inner);
}

void blpa_log_softmax(blpa_context *, const float *x, float *y, int64_t outer,
                      int64_t length, int64_t inner) {
  softmaxForward<true>("blpa_log_softmax", x, y, outer, length, inner);
}

void blpa_softmax_grad(blpa_context *, const float *dy, const float *y,
                       float *dx, int64_t outer, int64_t length,
                       int64_t inner) {
  softmaxBackward<false>("blpa_softmax_grad", dy, y, dx, outer, length, inner);
}

void blpa_log_softmax_grad(blpa_context *, const float *dy, const float *y,
                           float *dx, int64_t outer, int64_t length,
                           int64_t inner) {
  softmaxBackward<true>("blpa_log_softmax_grad", dy, y, dx, outer, length,
                        inner);
}

void blpa_softmax_cross_entropy(blpa_context *, const float *logits,
                                const int64_t *labels, float *loss, int64_t n,
                                int64_t classes, int64_t ignoreIndex) {
  int64_t labelled = countLabelledRows("blpa_softmax_cross_entropy", labels, n,
                                       classes, ignoreIndex);
  std::vector<double> rowLoss(n);
  parallelFor(n, [&](int64_t i) {
    if (labels[i] == ignoreIndex)
      return;
    const float *row = logits + i * classes;
    LogSumExp lse = logSumExp(row, classes);
    // -log softmax[label] = log(sum exp(row - max)) - (row[label] - max).
    rowLoss[i] = lse.logSum - (double(row[labels[i]]) - lse.max);
  });
  double total = 0;
  for (double l : rowLoss)
    total += l;
  loss[0] = float(labelled ? total / double(labelled) : 0.0);
}

void blpa_softmax_cross_entropy_grad(blpa_context *, const float *logits,
                                     const int64_t *labels, const float *dloss,
                                     float *dlogits, int64_t n, int64_t classes,
                                     int64_t ignoreIndex) {
  int64_t labelled = countLabelledRows("blpa_softmax_cross_entropy_grad",
                                       labels, n, classes, ignoreIndex);
  double scale = labelled ? double(dloss[0]) / double(labelled) : 0.0;
  parallelFor(n, [&](int64_t i) {
    float *out = dlogits + i * classes;
    if (labels[i] == ignoreIndex) {
      std::fill(out, out + classes, 0.0f);
      return;
    }
    const float *row = logits + i * classes;
    LogSumExp lse = logSumExp(row, classes);
    for (int64_t j = 0; j < classes; ++j) {
      double p = std::exp(logSoftmaxOf(row[j], lse.max, lse.logSum));
      out[j] = float(scale * (p - (j == labels[i] ? 1.0 : 0.0)));
    }
  });
}

} // extern "C"
