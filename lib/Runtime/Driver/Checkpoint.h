//===- Checkpoint.h - Training state that resumes bitwise -------*- C++ -*-===//
//
// A checkpoint holds what a run cannot recompute: the step count, the seed,
// and every parameter (running statistics included) with its momentum. The
// rest follows from them: the schedule's rate is a function of the step,
// the data order is replayed from the seed (DatasetBatches::skip), and the
// dropout masks are a hash of (seed, step). So a resumed run continues
// with bitwise the losses and state of one that was never interrupted.
//
// Layout: "BLPACKPT", u32 version 1, u64 step, u64 seed, u32 tensor count,
// then per tensor: u32 name length, name, u64 element count, u8 has
// momentum (1 exactly for trainable parameters), the float32 values, the
// float32 momentum (little-endian). test_checkpoints.py reads it too.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_CHECKPOINT_H
#define BLPA_RUNTIME_DRIVER_CHECKPOINT_H

#include "Manifest.h"

#include <cstdint>
#include <string>
#include <vector>

namespace blpa::driver {

class Session;

struct Checkpoint {
  uint64_t step = 0;
  uint64_t seed = 0;
  /// Per manifest parameter: its values and (trainable ones) momentum.
  std::vector<std::vector<float>> params, momenta;
};

/// Writes the session's state after `step` steps to `path` atomically.
void saveCheckpoint(const std::string &path, const Session &session,
                    const Manifest &manifest, uint64_t step, uint64_t seed);

/// Reads `path`, checking it against the manifest's parameters.
Checkpoint loadCheckpoint(const std::string &path, const Manifest &manifest);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_CHECKPOINT_H
