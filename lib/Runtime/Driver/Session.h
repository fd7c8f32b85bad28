//===- Session.h - The state a generated step runs on -----------*- C++ -*-===//
//
// Owns what the generated object operates on: the runtime context, the
// arena, and one buffer per parameter plus momentum and gradient buffers
// for the trainable ones, laid out in the arrays the C ABI expects.
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

/// A zero-filled, 64-byte aligned allocation.
class AlignedBuffer {
public:
  explicit AlignedBuffer(size_t bytes);
  void *data() const { return storage.get(); }

private:
  struct Free {
    void operator()(void *pointer) const { std::free(pointer); }
  };
  std::unique_ptr<void, Free> storage;
};

struct SessionOptions {
  float lr = 0;
  float momentum = 0;
  float weightDecay = 0;
  bool skipUpdate = false;
  int32_t threads = 0;
};

class Session {
public:
  Session(const Manifest &manifest, const SessionOptions &options);
  ~Session();
  Session(const Session &) = delete;
  Session &operator=(const Session &) = delete;

  /// Sets every parameter from `model`'s initializers.
  void loadParams(const OnnxModel &model);

  /// One blpa_train_step on `inputs` (one buffer per data input) and
  /// `labels`; returns the loss.
  float trainStep(const std::vector<const float *> &inputs,
                  const int64_t *labels);
  /// blpa_forward into `outputs` (one buffer per output record).
  void forward(const std::vector<const float *> &inputs,
               const std::vector<float *> &outputs);

  const std::vector<float *> &params() const { return paramPointers; }
  /// The gradients blpa_sgd_update recorded (nullptr for state params).
  const std::vector<float *> &grads() const { return gradPointers; }

private:
  const Manifest &manifest;
  blpa_context context;
  AlignedBuffer arena;
  std::vector<AlignedBuffer> buffers;
  std::vector<float *> paramPointers, momentumPointers, gradPointers;
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
