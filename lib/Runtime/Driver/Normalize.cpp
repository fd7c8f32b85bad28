//===- Normalize.cpp - Per-channel normalization of training data ---------===//

#include "Normalize.h"
#include "Error.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace blpa::driver {

namespace {

const char *const usage =
    "; use auto, none or MEAN[,MEAN...]:STD[,STD...] (e.g. "
    "0.4914,0.4822,0.4465:0.2470,0.2435,0.2616)";

std::vector<float> parseNumbers(const std::string &list,
                                const std::string &text) {
  std::vector<float> numbers;
  size_t start = 0;
  while (true) {
    size_t comma = list.find(',', start);
    std::string item = list.substr(start, comma - start);
    char *end = nullptr;
    double value = std::strtod(item.c_str(), &end);
    if (item.empty() || *end != '\0' || !std::isfinite(value))
      throw DriverError("--normalize " + text + ": '" + item +
                        "' is not a number" + usage);
    numbers.push_back(float(value));
    if (comma == std::string::npos)
      return numbers;
    start = comma + 1;
  }
}

/// Per-channel mean and standard deviation of the raw values of `set`.
void measureChannels(const ImageSet &set, std::vector<float> &mean,
                     std::vector<float> &stddev) {
  int64_t plane = set.pixelsPerImage / set.channels;
  mean.assign(set.channels, 0);
  stddev.assign(set.channels, 1);
  for (int64_t c = 0; c < set.channels; ++c) {
    double sum = 0, squares = 0;
    for (int64_t i = 0; i < set.count; ++i)
      for (int64_t p = c * plane; p < (c + 1) * plane; ++p) {
        double v = set.rawValue(i, p);
        sum += v;
        squares += v * v;
      }
    double n = double(set.count * plane), m = sum / n;
    mean[c] = float(m);
    stddev[c] = float(std::sqrt(std::max(squares / n - m * m, 1e-12)));
  }
}

/// `values` as one entry per channel.
std::vector<float> perChannel(std::vector<float> values, int64_t channels,
                              const char *what) {
  if (values.size() == 1)
    values.assign(channels, values[0]);
  if (int64_t(values.size()) != channels)
    throw DriverError("--normalize: " + std::to_string(values.size()) + " " +
                      what + " values for data with " +
                      std::to_string(channels) +
                      " channels; give one, or one per channel");
  return values;
}

std::string formatList(const std::vector<float> &values) {
  std::string text;
  for (float value : values) {
    char number[32];
    std::snprintf(number, sizeof(number), "%.4f", value);
    text += (text.empty() ? "" : ",") + std::string(number);
  }
  return text;
}

} // namespace

Normalization parseNormalization(const std::string &text) {
  Normalization normalization;
  if (text.empty())
    return normalization;
  if (text == "none" || text == "auto") {
    normalization.kind = text == "none" ? Normalization::Kind::None
                                        : Normalization::Kind::Measured;
    return normalization;
  }
  size_t colon = text.find(':');
  if (colon == std::string::npos)
    throw DriverError("--normalize " + text +
                      ": no ':' between the means "
                      "and the standard deviations" +
                      usage);
  normalization.kind = Normalization::Kind::Given;
  normalization.mean = parseNumbers(text.substr(0, colon), text);
  normalization.stddev = parseNumbers(text.substr(colon + 1), text);
  for (float value : normalization.stddev)
    if (!(value > 0))
      throw DriverError("--normalize " + text +
                        ": standard deviations must be positive");
  return normalization;
}

std::string applyNormalization(const Normalization &normalization,
                               ImageSet &train, ImageSet &test) {
  using Kind = Normalization::Kind;
  bool measure = normalization.kind == Kind::Measured ||
                 (normalization.kind == Kind::Default && !train.values);
  if (normalization.kind == Kind::None ||
      (normalization.kind == Kind::Default && !measure))
    return "";
  if (measure) {
    measureChannels(train, train.mean, train.stddev);
  } else {
    train.mean = perChannel(normalization.mean, train.channels, "mean");
    train.stddev =
        perChannel(normalization.stddev, train.channels, "standard deviation");
  }
  test.mean = train.mean;
  test.stddev = train.stddev;
  return std::string("normalizing ") + std::to_string(train.channels) +
         " channel(s) with mean " + formatList(train.mean) + " and std " +
         formatList(train.stddev) +
         (measure ? " (measured on the training split)" : " (--normalize)");
}

} // namespace blpa::driver
