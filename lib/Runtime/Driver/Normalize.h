//===- Normalize.h - Per-channel normalization of training data -*- C++ -*-===//
//
// `--normalize auto|none|MEAN[,MEAN...]:STD[,STD...]`: what the model sees
// is (value - mean[c]) / std[c] per channel c, value being pixel / 255 for
// byte images (IDX, CIFAR) and the stored number for NumPy arrays, as
// torchvision's ToTensor and Normalize would make it. `auto` measures the
// mean and standard deviation of every channel on the training split;
// `none` leaves the values as they are. Without the flag byte images are
// measured and NumPy arrays left alone (they are often saved normalized).
// The test split always uses the training split's figures.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_NORMALIZE_H
#define BLPA_RUNTIME_DRIVER_NORMALIZE_H

#include "Idx.h"

#include <string>
#include <vector>

namespace blpa::driver {

struct Normalization {
  enum class Kind { Default, None, Measured, Given };
  Kind kind = Kind::Default;
  /// For Given: one value each, or one per channel.
  std::vector<float> mean, stddev;
};

/// Parses --normalize's value (empty: the default); throws DriverError.
Normalization parseNormalization(const std::string &text);

/// Sets the mean and standard deviation of `train` and `test` as
/// `normalization` asks; returns a line saying what they are, or an empty
/// string when the data is used as it is.
std::string applyNormalization(const Normalization &normalization,
                               ImageSet &train, ImageSet &test);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_NORMALIZE_H
