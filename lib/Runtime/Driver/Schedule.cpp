//===- Schedule.cpp - The learning rate of each training step -------------===//

#include "Schedule.h"
#include "Error.h"

#include <cmath>
#include <cstdlib>

namespace blpa::driver {

namespace {

[[noreturn]] void failSpec(const std::string &spec) {
  throw DriverError("--lr-schedule '" + spec +
                    "' is not constant, step:E1,E2,...:GAMMA (epochs at "
                    "which the rate is multiplied by GAMMA) or cosine");
}

/// Parses a whole number or fails with the spec.
int64_t parseEpoch(const std::string &text, const std::string &spec) {
  char *end = nullptr;
  long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end || value < 0)
    failSpec(spec);
  return value;
}

} // namespace

LearningRateSchedule::LearningRateSchedule(const std::string &spec, double lr,
                                           int64_t warmup, int64_t totalSteps,
                                           int64_t stepsPerEpoch)
    : lr(lr), warmup(warmup), totalSteps(totalSteps),
      stepsPerEpoch(stepsPerEpoch > 0 ? stepsPerEpoch : 1) {
  if (spec == "constant")
    return;
  if (spec == "cosine") {
    kind = Kind::Cosine;
    return;
  }
  size_t first = spec.find(':'), last = spec.rfind(':');
  if (spec.compare(0, first, "step") != 0 || first == last)
    failSpec(spec);
  kind = Kind::Step;
  std::string epochs = spec.substr(first + 1, last - first - 1);
  for (size_t at = 0; at <= epochs.size();) {
    size_t comma = epochs.find(',', at);
    if (comma == std::string::npos)
      comma = epochs.size();
    milestones.push_back(parseEpoch(epochs.substr(at, comma - at), spec));
    at = comma + 1;
  }
  char *end = nullptr;
  std::string gammaText = spec.substr(last + 1);
  gamma = std::strtod(gammaText.c_str(), &end);
  if (gammaText.empty() || *end || !(gamma > 0))
    failSpec(spec);
}

double LearningRateSchedule::at(int64_t step) const {
  double rate = lr;
  if (kind == Kind::Step) {
    int64_t epoch = step / stepsPerEpoch;
    for (int64_t milestone : milestones)
      if (epoch >= milestone)
        rate *= gamma;
  } else if (kind == Kind::Cosine && totalSteps > 0) {
    const double pi = 3.14159265358979323846;
    rate = lr * 0.5 * (1 + std::cos(pi * double(step) / double(totalSteps)));
  }
  if (step < warmup)
    rate *= double(step + 1) / double(warmup);
  return rate;
}

} // namespace blpa::driver
