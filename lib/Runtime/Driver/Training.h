//===- Training.h - Training loops of a blpa executable ---------*- C++ -*-===//

#ifndef BLPA_RUNTIME_DRIVER_TRAINING_H
#define BLPA_RUNTIME_DRIVER_TRAINING_H

namespace blpa::driver {

class OnnxModel;
struct Manifest;
struct Options;

/// --data or --synthetic: options.steps steps from `initialWeights` with
/// progress on stdout and an optional JSONL log; with --data, then the test
/// accuracy; with --save, then `embeddedModel` with the trained weights
/// (in an external data file beside it when `initialWeights` kept its
/// weights in one, or when they exceed 2 GiB).
void runTraining(const Manifest &manifest, const Options &options,
                 const OnnxModel &embeddedModel, OnnxModel &initialWeights);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_TRAINING_H
