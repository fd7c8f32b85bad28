//===- Profile.h - Per-op times of the training step (--profile) -*- C++ -*-==//
//
// With --profile FILE the driver hands the runtime a blpa_profile, which the
// generated step's hooks fill with each op's time; after every step the
// profiler folds those times into per-op statistics, and after the run it
// writes them, with the machine and the model's identity, as JSON that
// blpa-opt --profile reads back (docs/design.md, "Cost model").
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_PROFILE_H
#define BLPA_RUNTIME_DRIVER_PROFILE_H

#include "Manifest.h"
#include "blpa/Runtime/Runtime.h"

#include <string>
#include <vector>

namespace blpa::driver {

class StepProfiler {
public:
  /// Throws unless the executable names its ops (a training executable of
  /// a compiler that writes `op` records) and `path`'s folder is writable.
  StepProfiler(const Manifest &manifest, std::string path);

  /// What the runtime's hooks fill (blpa_context::profile).
  blpa_profile *hookTarget() { return &profile; }

  /// Folds the last step's op times (its whole time: `stepSeconds`) into
  /// the statistics and clears them for the next step. The first step is
  /// warm-up (allocation, page faults, library JIT) and left out.
  void endStep(double stepSeconds);

  /// Writes the JSON to the path, atomically; `threads` is the kernels'
  /// thread count (0: the library's default).
  void write(int32_t threads) const;

private:
  struct OpStats {
    double sum = 0;
    double min = 0;
  };
  /// A data-parallel step's communication, summed over the measured steps:
  /// the all-reduces' time, the part of it during which the step's other
  /// ops ran, and the time the step stood in blpa.allreduce_wait.
  struct Communication {
    double allreduce = 0, overlapped = 0, waiting = 0;
  };
  /// Folds the step's op intervals and the buckets' all-reduces into
  /// `communication`.
  void recordCommunication();
  /// The last step's op intervals and bucket all-reduces as JSON (the hooks
  /// and the comm keep the last step's).
  std::string lastStepTimeline() const;
  const Manifest &manifest;
  std::string path;
  blpa_profile profile{};
  std::vector<double> seconds;
  std::vector<OpStats> stats;
  int64_t stepsSeen = 0;
  double stepSum = 0, stepMin = 0;
  /// Data-parallel executables only (manifest.gradientBuckets).
  std::vector<double> opBegin, opEnd;
  /// Which ops are blpa.allreduce_wait (time the step waited, not work).
  std::vector<bool> waits;
  Communication communication;
};

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_PROFILE_H
