//===- Schedule.h - The learning rate of each training step -----*- C++ -*-===//
//
// `--lr-schedule constant | step:E1,E2,...:GAMMA | cosine` with `--warmup K`:
// the rate of step t (0-based) of a run of T steps, E epochs of P steps:
//   constant   lr
//   step       lr * GAMMA^(number of milestones E_i <= t / P)
//   cosine     lr * (1 + cos(pi * t / T)) / 2
// and, for t < K, the schedule's rate scaled by (t + 1) / K (linear
// warm-up).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_SCHEDULE_H
#define BLPA_RUNTIME_DRIVER_SCHEDULE_H

#include <cstdint>
#include <string>
#include <vector>

namespace blpa::driver {

class LearningRateSchedule {
public:
  /// Throws DriverError naming `--lr-schedule` when `spec` is malformed.
  LearningRateSchedule(const std::string &spec, double lr, int64_t warmup,
                       int64_t totalSteps, int64_t stepsPerEpoch);

  /// The rate of step `step` (0-based).
  double at(int64_t step) const;

private:
  enum class Kind { Constant, Step, Cosine };
  Kind kind = Kind::Constant;
  double lr, gamma = 1;
  std::vector<int64_t> milestones; // epochs
  int64_t warmup, totalSteps, stepsPerEpoch;
};

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_SCHEDULE_H
