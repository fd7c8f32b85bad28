//===- SingleStep.h - --check-step and --forward ----------------*- C++ -*-===//
//
// One step on inputs given as .npy files with the results dumped as .npy:
// how tests compare a compiled executable with a reference implementation.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_SINGLESTEP_H
#define BLPA_RUNTIME_DRIVER_SINGLESTEP_H

namespace blpa::driver {

class OnnxModel;
struct Manifest;
struct Options;

/// One training step without updates; writes DIR/loss.npy and
/// DIR/grads/<param>.npy for every trainable param.
void runCheckStep(const Manifest &manifest, const Options &options,
                  OnnxModel &initialWeights);

/// blpa_forward; writes DIR/output_<i>.npy.
void runForward(const Manifest &manifest, const Options &options,
                OnnxModel &initialWeights);

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_SINGLESTEP_H
