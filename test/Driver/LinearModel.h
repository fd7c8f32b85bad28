//===- LinearModel.h - The model behind the driver's test fixtures -*- C++ -*-//
//
// logits[64,10] = x[64,784] * W[10,784]^T + b, softmax cross-entropy. The
// fake generated object runs it as its step and the self-test uses it as the
// reference the dumps are compared with (the driver's plumbing is what is
// under test; check_driver.py checks the math itself with numpy).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_TEST_DRIVER_LINEARMODEL_H
#define BLPA_TEST_DRIVER_LINEARMODEL_H

#include <cmath>
#include <cstdint>

namespace blpa::test {

constexpr int64_t batchSize = 64;
constexpr int64_t features = 784;
constexpr int64_t classes = 10;

/// Manifest indices and ONNX names of the parameters. The bias's '/' tests
/// the file-name sanitizing of --check-step, the state's space the
/// manifest's names-are-the-rest-of-the-line rule.
enum ParamIndex { weightIndex, biasIndex, inputMeanIndex, paramCount };
constexpr const char *weightName = "fc.weight";
constexpr const char *biasName = "fc/bias";
constexpr const char *inputMeanName = "input mean";

inline void linearForward(const float *x, const float *weight,
                          const float *bias, float *logits) {
  for (int64_t n = 0; n < batchSize; ++n)
    for (int64_t k = 0; k < classes; ++k) {
      float sum = bias[k];
      for (int64_t f = 0; f < features; ++f)
        sum += x[n * features + f] * weight[k * features + f];
      logits[n * classes + k] = sum;
    }
}

/// Returns the mean loss; dlogits = (softmax - onehot) / N.
inline float softmaxCrossEntropy(const float *logits, const int64_t *labels,
                                 float *dlogits) {
  double total = 0;
  for (int64_t n = 0; n < batchSize; ++n) {
    const float *row = logits + n * classes;
    float maxLogit = row[0];
    for (int64_t k = 1; k < classes; ++k)
      maxLogit = std::fmax(maxLogit, row[k]);
    double sum = 0;
    for (int64_t k = 0; k < classes; ++k)
      sum += std::exp(row[k] - maxLogit);
    total += std::log(sum) + maxLogit - row[labels[n]];
    for (int64_t k = 0; k < classes; ++k) {
      double softmax = std::exp(row[k] - maxLogit) / sum;
      dlogits[n * classes + k] =
          static_cast<float>((softmax - (k == labels[n])) / batchSize);
    }
  }
  return static_cast<float>(total / batchSize);
}

inline void linearBackward(const float *x, const float *dlogits, float *dweight,
                           float *dbias) {
  for (int64_t k = 0; k < classes; ++k) {
    dbias[k] = 0;
    for (int64_t f = 0; f < features; ++f)
      dweight[k * features + f] = 0;
  }
  for (int64_t n = 0; n < batchSize; ++n)
    for (int64_t k = 0; k < classes; ++k) {
      float d = dlogits[n * classes + k];
      dbias[k] += d;
      for (int64_t f = 0; f < features; ++f)
        dweight[k * features + f] += d * x[n * features + f];
    }
}

inline float batchMean(const float *x) {
  double sum = 0;
  for (int64_t i = 0; i < batchSize * features; ++i)
    sum += x[i];
  return static_cast<float>(sum / (batchSize * features));
}

} // namespace blpa::test

#endif // BLPA_TEST_DRIVER_LINEARMODEL_H
