//===- Session.h - The state a generated step runs on -----------*- C++ -*-===//
//
// Owns what the generated object operates on: the runtime context, the
// arena, and one buffer per parameter plus momentum and gradient buffers
// for the trainable ones, laid out in the arrays the C ABI expects. All of
// them are runtime memory (blpa_runtime_alloc): host memory for the CPU
// runtime, device memory for CUDA. With a device runtime the session also
// owns fixed device buffers for the step's inputs and outputs, so that every
// step binds the same pointers (a recorded step replays on them).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_RUNTIME_DRIVER_SESSION_H
#define BLPA_RUNTIME_DRIVER_SESSION_H

#include "Manifest.h"

#include "blpa/Runtime/Runtime.h"

#include <cstdlib>
#include <memory>
#include <vector>

namespace blpa::driver {

class OnnxModel;
struct Options;

struct SessionOptions {
  float lr = 0;
  float momentum = 0;
  float weightDecay = 0;
  bool skipUpdate = false;
  /// Replay recorded steps where the runtime can (CUDA graphs).
  bool replaySteps = true;
  int32_t threads = 0;
  /// Seed of the dropout masks.
  uint64_t seed = 0;
};

class Session {
public:
  Session(const Manifest &manifest, const SessionOptions &options);
  ~Session();
  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;

  /// Sets every parameter from `model`'s initializers.
  void loadParams(const OnnxModel &model);

  /// One blpa_train_step on `inputs` (one host buffer per data input:
  /// float32 values, or int64 token ids for index inputs) and `labels`;
  /// returns the loss.
  float trainStep(const std::vector<const void *> &inputs,
                  const int64_t *labels);
  /// blpa_forward into `outputs` (one host buffer per output record).
  void forward(const std::vector<const void *> &inputs,
               const std::vector<float *> &outputs);

  /// Bytes of runtime memory the session allocated (arena, parameters,
  /// optimizer state, staged inputs and outputs).
  uint64_t allocatedBytes() const { return allocated; }

  /// Bytes of scratch the kernels hold outside those (grown by the steps
  /// run so far): memory the plan does not count.
  int64_t outsideBytes() { return blpa_runtime_outside_bytes(&context); }

  /// The learning rate of the following steps.
  void setLearningRate(double lr) { context.lr = float(lr); }

  /// The runtime's own time of the last step (CUDA events on a GPU).
  double lastStepSeconds() const {
    return blpa_runtime_last_step_seconds(&context);
  }

  /// Host copies of every parameter, in manifest order.
  std::vector<std::vector<float>> readParams() const;
  /// Host copy of parameter `index`.
  std::vector<float> readParam(size_t index) const;
  /// Host copy of the gradient blpa_sgd_update recorded for trainable
  /// parameter `index`.
  std::vector<float> readGrad(size_t index) const;
  /// Host copy of parameter `index`'s momentum (empty for state).
  std::vector<float> readMomentum(size_t index) const;

  /// Restores parameter `index` and its momentum (a checkpoint), and the
  /// number of steps done (the dropout masks' step).
  void restore(size_t index, const std::vector<float> &values,
               const std::vector<float> &momentum);
  void setStep(uint64_t step) { context.step = step; }
  /// Where the step's profiling hooks record op times (null: nowhere).
  void setProfile(blpa_profile *profile) { context.profile = profile; }

private:
  /// Runtime memory, released with the session.
  void *allocate(uint64_t bytes);
  /// `host` itself when runtime memory is host memory, else `device`
  /// after uploading `bytes` of `host` into it.
  void *bind(const void *host, void *device, uint64_t bytes);
  /// The pointers the step reads the data inputs through (bind of each).
  std::vector<void *> bindInputs(const std::vector<const void *> &inputs);
  /// Runs `step` through blpa_runtime_run with every pointer it binds.
  void run(void (*step)(void *), void *closure,
           const std::vector<void *> &inputs,
           const std::vector<void *> &outputs);

  const Manifest &manifest;
  mutable blpa_context context;
  /// Whether runtime memory is host memory (the CPU runtime).
  bool hostMemory;
  std::vector<void *> allocations;
  uint64_t allocated = 0;
  uint8_t *arena = nullptr;
  std::vector<float *> paramPointers, momentumPointers, gradPointers;
  /// Device runtimes only: where inputs, labels and outputs are staged.
  std::vector<void *> inputBuffers, outputBuffers;
  void *labelBuffer = nullptr, *lossBuffer = nullptr;
};

/// Host buffers for every output of blpa_forward, in manifest order, and
/// the pointers Session::forward takes.
struct HostOutputs {
  explicit HostOutputs(const Manifest &manifest);
  std::vector<std::vector<float>> values;
  std::vector<float *> pointers;
};

/// A session configured from the command line, with its parameters loaded
/// from `initialWeights`.
std::unique_ptr<Session> openSession(const Manifest &manifest,
                                     const Options &options,
                                     OnnxModel &initialWeights,
                                     bool skipUpdate);

/// Whether the linked object defines blpa_train_step (a --train object).
bool hasTrainStep();

} // namespace blpa::driver

#endif // BLPA_RUNTIME_DRIVER_SESSION_H
