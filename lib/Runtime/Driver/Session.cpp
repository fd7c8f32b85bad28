//===- Session.cpp - The state a generated step runs on -------------------===//

#include "Session.h"
#include "Error.h"
#include "Model.h"
#include "Options.h"
#include "Replicas.h"

// An --infer object defines only blpa_forward and a --train object defines
// both, so the driver references them weakly and checks before calling.
#pragma weak blpa_train_step
#pragma weak blpa_forward

namespace blpa::driver {

bool hasTrainStep() { return blpa_train_step != nullptr; }

namespace {

uint64_t floatBytes(const Shape &shape) {
  return numElements(shape) * sizeof(float);
}

/// The arguments of one blpa_train_step / blpa_forward call, passed through
/// blpa_runtime_run's closure.
struct StepCall {
  blpa_context *context;
  uint8_t *arena;
  float *const *params, *const *momenta, *const *grads;
  void *const *inputs, *const *outputs;
};

void callTrainStep(void *closure) {
  auto *call = static_cast<StepCall *>(closure);
  blpa_train_step(call->context, call->arena, call->params, call->momenta,
                  call->grads, call->inputs, call->outputs);
}

void callForward(void *closure) {
  auto *call = static_cast<StepCall *>(closure);
  blpa_forward(call->context, call->arena, call->params, call->inputs,
               call->outputs);
}

} // namespace

Session::Session(const Manifest &manifest, const SessionOptions &options)
    : manifest(manifest), context() {
  if (manifest.target != blpa_runtime_target())
    throw DriverError("the step was compiled for --target " + manifest.target +
                      " but linked with the " + blpa_runtime_target() +
                      " runtime; rebuild it with blpa-opt");
  context.lr = options.lr;
  context.momentum = options.momentum;
  context.weight_decay = options.weightDecay;
  context.skip_update = options.skipUpdate;
  context.num_threads = options.threads;
  context.replay_steps = options.replaySteps;
  context.seed = options.seed;
  context.comm = replicas().comm;
  if (manifest.syncBatchNorm && replicas().comm)
    context.sync_batch_norm = replicas().size;
  hostMemory = blpa_runtime_free_bytes() < 0;
  blpa_runtime_init(&context);

  arena = static_cast<uint8_t *>(allocate(manifest.arenaBytes));
  if (manifest.workspaceBytes)
    blpa_runtime_set_workspace(&context, arena + manifest.workspaceOffset,
                               manifest.workspaceBytes);
  for (const ParamRecord &param : manifest.params) {
    auto buffer = [&] {
      return static_cast<float *>(allocate(floatBytes(param.shape)));
    };
    // An inference executable never updates: no optimizer storage.
    bool updated = param.trainable && manifest.training;
    paramPointers.push_back(buffer());
    momentumPointers.push_back(updated ? buffer() : nullptr);
    gradPointers.push_back(updated ? buffer() : nullptr);
  }
  if (hostMemory)
    return;
  for (const TensorRecord &input : manifest.inputs)
    inputBuffers.push_back(allocate(input.bytes()));
  for (const TensorRecord &output : manifest.outputs)
    outputBuffers.push_back(allocate(floatBytes(output.shape)));
  labelBuffer = allocate(manifest.labelCount() * sizeof(int64_t));
  lossBuffer = allocate(sizeof(float));
}

Session::~Session() {
  for (void *pointer : allocations)
    blpa_runtime_release(&context, pointer);
  blpa_runtime_shutdown(&context);
}

void *Session::allocate(uint64_t bytes) {
  allocations.push_back(blpa_runtime_alloc(&context, int64_t(bytes)));
  allocated += bytes;
  return allocations.back();
}

void *Session::bind(const void *host, void *device, uint64_t bytes) {
  if (hostMemory)
    return const_cast<void *>(host);
  blpa_runtime_upload(&context, device, host, int64_t(bytes));
  return device;
}

std::vector<void *>
Session::bindInputs(const std::vector<const void *> &inputs) {
  std::vector<void *> pointers;
  for (size_t i = 0; i < inputs.size(); ++i)
    pointers.push_back(bind(inputs[i], hostMemory ? nullptr : inputBuffers[i],
                            manifest.inputs[i].bytes()));
  return pointers;
}

void Session::loadParams(const OnnxModel &model) {
  if (hostMemory)
    return model.readParams(manifest.params, paramPointers);
  std::vector<std::vector<float>> host;
  std::vector<float *> hostPointers;
  for (const ParamRecord &param : manifest.params) {
    host.emplace_back(numElements(param.shape));
    hostPointers.push_back(host.back().data());
  }
  model.readParams(manifest.params, hostPointers);
  for (size_t i = 0; i < host.size(); ++i)
    bind(host[i].data(), paramPointers[i], host[i].size() * sizeof(float));
}

void Session::run(void (*step)(void *), void *closure,
                  const std::vector<void *> &inputs,
                  const std::vector<void *> &outputs) {
  std::vector<const void *> bindings = {arena};
  for (const auto *table : {&paramPointers, &momentumPointers, &gradPointers})
    bindings.insert(bindings.end(), table->begin(), table->end());
  bindings.insert(bindings.end(), inputs.begin(), inputs.end());
  bindings.insert(bindings.end(), outputs.begin(), outputs.end());
  Replicas::Watch watch(replicas(), "a step (its gradient all-reduces)");
  blpa_runtime_run(&context, step, closure, bindings.data(),
                   int64_t(bindings.size()));
}

float Session::trainStep(const std::vector<const void *> &inputs,
                         const int64_t *labels) {
  if (!blpa_train_step)
    throw DriverError("this executable was compiled for inference only; "
                      "recompile with blpa-opt --train to train");
  std::vector<void *> inputPointers = bindInputs(inputs);
  inputPointers.push_back(
      bind(labels, labelBuffer, manifest.labelCount() * sizeof(int64_t)));
  float loss = 0;
  std::vector<void *> outputPointers = {hostMemory ? &loss : lossBuffer};
  StepCall call = {&context,
                   arena,
                   paramPointers.data(),
                   momentumPointers.data(),
                   gradPointers.data(),
                   inputPointers.data(),
                   outputPointers.data()};
  run(callTrainStep, &call, inputPointers, outputPointers);
  // The next step draws fresh dropout masks.
  ++context.step;
  if (!hostMemory)
    blpa_runtime_download(&context, &loss, lossBuffer, sizeof(float));
  return loss;
}

void Session::forward(const std::vector<const void *> &inputs,
                      const std::vector<float *> &outputs) {
  if (!blpa_forward)
    throw DriverError("the executable defines no blpa_forward; rebuild it "
                      "with blpa-opt");
  std::vector<void *> inputPointers = bindInputs(inputs), outputPointers;
  for (size_t i = 0; i < outputs.size(); ++i)
    outputPointers.push_back(hostMemory ? outputs[i] : outputBuffers[i]);
  StepCall call = {&context,
                   arena,
                   paramPointers.data(),
                   nullptr,
                   nullptr,
                   inputPointers.data(),
                   outputPointers.data()};
  run(callForward, &call, inputPointers, outputPointers);
  if (hostMemory)
    return;
  for (size_t i = 0; i < outputs.size(); ++i)
    blpa_runtime_download(&context, outputs[i], outputBuffers[i],
                          floatBytes(manifest.outputs[i].shape));
}

std::vector<std::vector<float>> Session::readParams() const {
  std::vector<std::vector<float>> host;
  for (size_t i = 0; i < manifest.params.size(); ++i)
    host.push_back(readParam(i));
  return host;
}

std::vector<float> Session::readParam(size_t index) const {
  std::vector<float> host(numElements(manifest.params.at(index).shape));
  blpa_runtime_download(&context, host.data(), paramPointers[index],
                        host.size() * sizeof(float));
  return host;
}

std::vector<float> Session::readGrad(size_t index) const {
  if (!gradPointers.at(index))
    throw DriverError("parameter '" + manifest.params[index].name +
                      "' has no gradient");
  std::vector<float> host(numElements(manifest.params[index].shape));
  blpa_runtime_download(&context, host.data(), gradPointers[index],
                        host.size() * sizeof(float));
  return host;
}

std::vector<float> Session::readMomentum(size_t index) const {
  if (!momentumPointers.at(index))
    return {};
  std::vector<float> host(numElements(manifest.params[index].shape));
  blpa_runtime_download(&context, host.data(), momentumPointers[index],
                        host.size() * sizeof(float));
  return host;
}

void Session::restore(size_t index, const std::vector<float> &values,
                      const std::vector<float> &momentum) {
  blpa_runtime_upload(&context, paramPointers.at(index), values.data(),
                      values.size() * sizeof(float));
  if (momentumPointers[index] && !momentum.empty())
    blpa_runtime_upload(&context, momentumPointers[index], momentum.data(),
                        momentum.size() * sizeof(float));
}

HostOutputs::HostOutputs(const Manifest &manifest) {
  for (const TensorRecord &output : manifest.outputs)
    values.emplace_back(numElements(output.shape));
  for (std::vector<float> &value : values)
    pointers.push_back(value.data());
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
  sessionOptions.replaySteps = options.replaySteps;
  sessionOptions.seed = options.seed;
  sessionOptions.threads = options.threads.value_or(manifest.defaultThreads);
  auto session = std::make_unique<Session>(manifest, sessionOptions);
  session->loadParams(initialWeights);
  initialWeights.releaseParamData(manifest.params);
  return session;
}

} // namespace blpa::driver
