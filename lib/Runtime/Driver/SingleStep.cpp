//===- SingleStep.cpp - --check-step and --forward ------------------------===//

#include "SingleStep.h"
#include "Error.h"
#include "FileUtil.h"
#include "Manifest.h"
#include "Npy.h"
#include "Options.h"
#include "Session.h"

#include <cstdio>

namespace blpa::driver {

namespace {

/// One data input's host copy: float32 values, or token ids.
struct InputData {
  std::vector<float> values;
  std::vector<int64_t> ids;
  const void *data() const {
    return ids.empty() ? static_cast<const void *>(values.data()) : ids.data();
  }
};

/// Throws unless every token id of input `record` names a table row.
void checkTokenIds(const std::vector<int64_t> &ids, const TensorRecord &record,
                   const std::string &path) {
  if (record.indexBound == 0)
    return;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < -record.indexBound || ids[i] >= record.indexBound)
      throw DriverError("--inputs " + path + ": token id " +
                        std::to_string(ids[i]) + " at index " +
                        std::to_string(i) + " is outside [0, " +
                        std::to_string(record.indexBound) +
                        "), the rows of the embedding table that input '" +
                        record.name + "' indexes");
}

/// The --inputs files, checked against the manifest's data inputs.
std::vector<InputData> readInputs(const Manifest &manifest,
                                  const Options &options) {
  if (options.inputPaths.size() != manifest.inputs.size()) {
    std::string expected;
    for (const TensorRecord &input : manifest.inputs)
      expected += (expected.empty() ? "" : ", ") + ("'" + input.name + "' ") +
                  formatShape(input.shape);
    throw DriverError(
        "--inputs: got " + std::to_string(options.inputPaths.size()) +
        " file(s) but the model has " + std::to_string(manifest.inputs.size()) +
        " data input(s): " + expected);
  }
  std::vector<InputData> inputs;
  for (size_t i = 0; i < manifest.inputs.size(); ++i) {
    const TensorRecord &record = manifest.inputs[i];
    NpyArray array = readNpy(options.inputPaths[i], "--inputs");
    checkNpyShape(array, record.shape, "--inputs",
                  "data input '" + record.name + "'");
    InputData input;
    if (record.indices) {
      input.ids = npyToInt64(array, "--inputs");
      checkTokenIds(input.ids, record, options.inputPaths[i]);
    } else {
      input.values = npyToFloat32(array);
    }
    inputs.push_back(std::move(input));
  }
  return inputs;
}

std::vector<int64_t> readLabels(const Manifest &manifest,
                                const Options &options) {
  NpyArray array = readNpy(options.labelsPath, "--labels");
  checkNpyShape(array, manifest.labelShape, "--labels", "the labels");
  std::vector<int64_t> labels = npyToInt64(array, "--labels");
  int64_t classes = manifest.classCount();
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] != manifest.ignoreIndex &&
        (labels[i] < 0 || (classes > 0 && labels[i] >= classes)))
      throw DriverError("--labels " + options.labelsPath + ": label " +
                        std::to_string(labels[i]) + " at index " +
                        std::to_string(i) + " is outside [0, " +
                        std::to_string(classes) + ") and is not the ignored " +
                        std::to_string(manifest.ignoreIndex));
  return labels;
}

std::vector<const void *> pointersTo(const std::vector<InputData> &inputs) {
  std::vector<const void *> pointers;
  for (const InputData &input : inputs)
    pointers.push_back(input.data());
  return pointers;
}

/// Writes one .npy into the --dump directory, naming the flag on failure.
void dumpNpy(const std::string &path, const Shape &shape, const float *values) {
  try {
    writeNpy(path, shape, values);
  } catch (const DriverError &error) {
    throw DriverError(std::string("--dump: ") + error.what());
  }
}

} // namespace

void runCheckStep(const Manifest &manifest, const Options &options,
                  OnnxModel &initialWeights) {
  std::vector<InputData> inputs = readInputs(manifest, options);
  std::vector<int64_t> labels = readLabels(manifest, options);
  makeDirectories(options.dumpDir, "--dump");
  makeDirectories(options.dumpDir + "/grads", "--dump");
  std::unique_ptr<Session> session =
      openSession(manifest, options, initialWeights, /*skipUpdate=*/true);
  float loss = session->trainStep(pointersTo(inputs), labels.data());
  dumpNpy(options.dumpDir + "/loss.npy", {}, &loss);
  int written = 0;
  for (size_t i = 0; i < manifest.params.size(); ++i) {
    const ParamRecord &param = manifest.params[i];
    if (!param.trainable)
      continue;
    dumpNpy(options.dumpDir + "/grads/" + sanitizeFileName(param.name) + ".npy",
            param.shape, session->readGrad(i).data());
    ++written;
  }
  std::printf("loss %.6f; wrote %s/loss.npy and %d gradient(s) to %s/grads\n",
              loss, options.dumpDir.c_str(), written, options.dumpDir.c_str());
}

void runForward(const Manifest &manifest, const Options &options,
                OnnxModel &initialWeights) {
  std::vector<InputData> inputs = readInputs(manifest, options);
  makeDirectories(options.dumpDir, "--dump");
  std::unique_ptr<Session> session =
      openSession(manifest, options, initialWeights, /*skipUpdate=*/true);
  HostOutputs outputs(manifest);
  session->forward(pointersTo(inputs), outputs.pointers);
  for (size_t i = 0; i < outputs.values.size(); ++i)
    dumpNpy(options.dumpDir + "/output_" + std::to_string(i) + ".npy",
            manifest.outputs[i].shape, outputs.values[i].data());
  std::printf("wrote %zu output(s) to %s\n", outputs.values.size(),
              options.dumpDir.c_str());
}

} // namespace blpa::driver
