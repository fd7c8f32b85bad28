//===- Session.cpp - The state a generated step runs on -------------------===//

#include "Session.h"
#include "Error.h"
#include "Model.h"
#include "Options.h"

#include <cstring>

// An --infer object defines only blpa_forward and a --train object defines
// both, so the driver references them weakly and checks before calling.
#pragma weak blpa_train_step
#pragma weak blpa_forward

namespace blpa::driver {

AlignedBuffer::AlignedBuffer(size_t bytes) {
  const size_t alignment = 64;
  size_t rounded = (bytes + alignment - 1) / alignment * alignment;
  storage.reset(std::aligned_alloc(alignment, rounded ? rounded : alignment));
  if (!storage)
    throw DriverError("out of memory allocating " + std::to_string(bytes) +
                      " bytes");
  // Zeroed so that runs are reproducible even if something reads a buffer
  // before writing it.
  std::memset(storage.get(), 0, rounded);
}

bool hasTrainStep() { return blpa_train_step != nullptr; }

Session::Session(const Manifest &manifest, const SessionOptions &options)
    : manifest(manifest), context(), arena(manifest.arenaBytes) {
  for (const ParamRecord &param : manifest.params) {
    size_t bytes = numElements(param.shape) * sizeof(float);
    auto allocate = [&]() {
      buffers.emplace_back(bytes);
      return static_cast<float *>(buffers.back().data());
    };
    // An inference executable never updates: no optimizer storage.
    bool updated = param.trainable && manifest.training;
    paramPointers.push_back(allocate());
    momentumPointers.push_back(updated ? allocate() : nullptr);
    gradPointers.push_back(updated ? allocate() : nullptr);
  }
  context.lr = options.lr;
  context.momentum = options.momentum;
  context.weight_decay = options.weightDecay;
  context.skip_update = options.skipUpdate;
  context.num_threads = options.threads;
  blpa_runtime_init(&context);
}

Session::~Session() { blpa_runtime_shutdown(&context); }

void Session::loadParams(const OnnxModel &model) {
  model.readParams(manifest.params, paramPointers);
}

float Session::trainStep(const std::vector<const float *> &inputs,
                         const int64_t *labels) {
  if (!blpa_train_step)
    throw DriverError("this executable was compiled for inference only; "
                      "recompile with blpa-opt --train to train");
  std::vector<void *> inputPointers;
  for (const float *input : inputs)
    inputPointers.push_back(const_cast<float *>(input));
  inputPointers.push_back(const_cast<int64_t *>(labels));
  float loss = 0;
  void *outputPointers[] = {&loss};
  blpa_train_step(&context, static_cast<uint8_t *>(arena.data()),
                  paramPointers.data(), momentumPointers.data(),
                  gradPointers.data(), inputPointers.data(), outputPointers);
  return loss;
}

void Session::forward(const std::vector<const float *> &inputs,
                      const std::vector<float *> &outputs) {
  if (!blpa_forward)
    throw DriverError("the executable defines no blpa_forward; rebuild it "
                      "with blpa-opt");
  std::vector<void *> inputPointers, outputPointers;
  for (const float *input : inputs)
    inputPointers.push_back(const_cast<float *>(input));
  for (float *output : outputs)
    outputPointers.push_back(output);
  blpa_forward(&context, static_cast<uint8_t *>(arena.data()),
               paramPointers.data(), inputPointers.data(),
               outputPointers.data());
}

std::unique_ptr<Session> openSession(const Manifest &manifest,
                                     const Options &options,
                                     OnnxModel &initialWeights,
                                     bool skipUpdate) {
  SessionOptions sessionOptions;
  sessionOptions.lr = options.lr.value_or(0);
  sessionOptions.momentum = options.momentum;
  sessionOptions.weightDecay = options.weightDecay;
  sessionOptions.skipUpdate = skipUpdate;
  sessionOptions.threads = options.threads.value_or(manifest.defaultThreads);
  auto session = std::make_unique<Session>(manifest, sessionOptions);
  session->loadParams(initialWeights);
  initialWeights.releaseParamData(manifest.params);
  return session;
}

} // namespace blpa::driver
