//===- Model.cpp - Parameter values in ONNX models ------------------------===//

#include "Model.h"
#include "Error.h"
#include "FileUtil.h"

#include "blpa/Onnx/ExternalData.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <optional>
#include <set>

namespace blpa::driver {

namespace onnxdata = ::blpa::onnxdata;

namespace {

/// Initializers smaller than this stay inline when --save writes external
/// data, as with onnx.save_model's default size_threshold.
constexpr uint64_t kExternalThreshold = 1024;
/// Offsets in the data file are page-aligned, so that readers can map
/// tensors from it.
constexpr uint64_t kExternalAlignment = 4096;

std::set<std::string> paramNames(const std::vector<ParamRecord> &params) {
  std::set<std::string> names;
  for (const ParamRecord &param : params)
    names.insert(param.name);
  return names;
}

/// Whether `model` with the params' values inline stays under protobuf's
/// 2 GiB. Their values are released in `model`; 16 bytes cover each one's
/// field header.
bool fitsInline(const onnx::ModelProto &model,
                const std::vector<ParamRecord> &params) {
  uint64_t bytes = model.ByteSizeLong();
  for (const ParamRecord &param : params)
    bytes += numElements(param.shape) * sizeof(float) + 16;
  return bytes <= static_cast<uint64_t>(INT_MAX);
}

void setRawData(onnx::TensorProto &tensor, const float *values, size_t count) {
  tensor.clear_float_data();
  tensor.clear_external_data();
  tensor.clear_data_location();
  tensor.set_raw_data(values, count * sizeof(float));
}

/// Appends `tensor`'s raw_data to the data file at `location` (relative to
/// the model's directory) and makes the tensor refer to it.
void moveToDataFile(onnx::TensorProto &tensor, AtomicFile &file,
                    const std::string &location) {
  file.pad(kExternalAlignment);
  uint64_t offset = file.size();
  uint64_t length = tensor.raw_data().size();
  file.write(tensor.raw_data().data(), length);
  onnxdata::setExternalData(tensor, location, offset, length);
}

std::string baseName(const std::string &path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

} // namespace

OnnxModel::OnnxModel(const void *data, size_t size, std::string origin,
                     std::string directory)
    : origin(std::move(origin)), directory(std::move(directory)) {
  if (size > INT_MAX)
    throw DriverError(this->origin +
                      ": the model is over 2 GiB, more than protobuf can "
                      "read; save it with external data");
  if (!model.ParseFromArray(data, static_cast<int>(size)))
    throw DriverError(this->origin +
                      ": not a valid ONNX model (cannot parse the "
                      "ModelProto)");
}

OnnxModel readModelFile(const std::string &path, const std::string &flag) {
  std::string bytes = readWholeFile(path, flag);
  return OnnxModel(bytes.data(), bytes.size(), flag + " " + path,
                   onnxdata::modelDirectory(path));
}

std::string OnnxModel::error(const onnx::TensorProto &tensor,
                             const std::string &what) const {
  return origin + ": initializer '" + tensor.name() + "': " + what;
}

const onnx::TensorProto *OnnxModel::findTensor(const std::string &name) const {
  const onnx::TensorProto *found = nullptr;
  for (const onnx::TensorProto &tensor : model.graph().initializer())
    if (tensor.name() == name)
      found = &tensor;
  return found;
}

const onnx::TensorProto &
OnnxModel::findInitializer(const ParamRecord &param) const {
  const onnx::TensorProto *found = findTensor(param.name);
  std::string what = origin + ": initializer '" + param.name + "' ";
  if (!found)
    throw DriverError(what + "is missing; use weights of the model this "
                             "executable was compiled from");
  if (found->data_type() != onnx::TensorProto::FLOAT)
    throw DriverError(what + "is not float32");
  Shape dims(found->dims().begin(), found->dims().end());
  if (dims != param.shape)
    throw DriverError(what + "has shape " + formatShape(dims) +
                      " but the executable expects " +
                      formatShape(param.shape));
  return *found;
}

/// Whether this model was built without `tensor`'s values: blpa-opt's
/// --embed-weights=false drops float initializers' values, and external
/// weights too large to embed keep only their references, which the
/// embedded model (no directory) cannot follow.
bool OnnxModel::lacksValues(const onnx::TensorProto &tensor) const {
  if (onnxdata::isExternal(tensor))
    return directory.empty();
  return tensor.data_type() == onnx::TensorProto::FLOAT &&
         !tensor.has_raw_data() && tensor.float_data_size() == 0 &&
         onnxdata::tensorBytes(tensor).value_or(0) > 0;
}

/// Throws the reason `tensor`, which lacksValues, has none: what the user
/// has to give instead.
[[noreturn]] static void throwLacksValues(const std::string &origin,
                                          const onnx::TensorProto &tensor) {
  const std::string *location = onnxdata::findEntry(tensor, "location");
  std::string why =
      onnxdata::isExternal(tensor)
          ? "its external data '" + (location ? *location : std::string()) +
                "' was too large to embed in the executable, the model "
                "being over 2 GiB"
          : "the executable was compiled with --embed-weights=false";
  throw DriverError(origin + " has no values for initializer '" +
                    tensor.name() + "': " + why +
                    "; give --weights MODEL.onnx, the model this "
                    "executable was compiled from");
}

void OnnxModel::readExternal(const onnx::TensorProto &tensor,
                             void *dest) const {
  if (directory.empty())
    throwLacksValues(origin, tensor);
  onnxdata::ExternalData data;
  std::string reason = onnxdata::resolveExternalData(directory, tensor, data);
  if (reason.empty())
    reason = onnxdata::readExternalData(data, dest);
  if (!reason.empty())
    throw DriverError(error(tensor, reason));
}

onnx::TensorProto
OnnxModel::copyWithValues(const onnx::TensorProto &tensor) const {
  if (lacksValues(tensor))
    throwLacksValues(origin, tensor);
  onnx::TensorProto copy = tensor;
  if (!onnxdata::isExternal(copy))
    return copy;
  std::string reason = onnxdata::inlineExternalData(directory, copy);
  if (!reason.empty())
    throw DriverError(error(tensor, reason));
  return copy;
}

void OnnxModel::readParams(const std::vector<ParamRecord> &params,
                           const std::vector<float *> &buffers) const {
  for (size_t i = 0; i < params.size(); ++i) {
    const onnx::TensorProto &tensor = findInitializer(params[i]);
    size_t count = numElements(params[i].shape);
    if (onnxdata::isExternal(tensor)) {
      readExternal(tensor, buffers[i]);
    } else if (lacksValues(tensor)) {
      throwLacksValues(origin, tensor);
    } else if (tensor.has_raw_data() &&
               tensor.raw_data().size() == count * sizeof(float)) {
      // ONNX stores raw_data little-endian, like the hosts we run on.
      std::memcpy(buffers[i], tensor.raw_data().data(), count * sizeof(float));
    } else if (!tensor.has_raw_data() &&
               static_cast<size_t>(tensor.float_data_size()) == count) {
      std::copy(tensor.float_data().begin(), tensor.float_data().end(),
                buffers[i]);
    } else {
      throw DriverError(error(tensor, "holds the wrong number of values for "
                                      "its shape " +
                                          formatShape(params[i].shape)));
    }
  }
}

void OnnxModel::releaseParamData(const std::vector<ParamRecord> &params) {
  std::set<std::string> names = paramNames(params);
  for (onnx::TensorProto &tensor :
       *model.mutable_graph()->mutable_initializer()) {
    if (!names.count(tensor.name()))
      continue;
    // Swapping with empty containers frees the storage; clearing would
    // keep its capacity.
    std::string().swap(*tensor.mutable_raw_data());
    google::protobuf::RepeatedField<float>().Swap(tensor.mutable_float_data());
  }
}

void OnnxModel::useWeightsFrom(const OnnxModel &weights,
                               const std::vector<ParamRecord> &params) {
  releaseParamData(params);
  std::set<std::string> names = paramNames(params);
  for (onnx::TensorProto &tensor :
       *model.mutable_graph()->mutable_initializer()) {
    if (names.count(tensor.name()) || !lacksValues(tensor))
      continue;
    const onnx::TensorProto *source = weights.findTensor(tensor.name());
    if (!source)
      throw DriverError(weights.error(tensor, "is missing; use weights of "
                                              "the model this executable "
                                              "was compiled from"));
    tensor = weights.copyWithValues(*source);
  }
}

bool OnnxModel::usesExternalData() const {
  return std::any_of(model.graph().initializer().begin(),
                     model.graph().initializer().end(), onnxdata::isExternal);
}

/// Gives `copy`'s initializers their values for saving: the params theirs
/// from `buffers`, the others this model's (external ones read in); with a
/// `data` file, then moves those of kExternalThreshold bytes or more into
/// it, at `location`.
void OnnxModel::fillForSave(onnx::ModelProto &copy,
                            const std::vector<ParamRecord> &params,
                            const std::vector<float *> &buffers,
                            AtomicFile *data,
                            const std::string &location) const {
  std::map<std::string, size_t> indices;
  for (size_t i = 0; i < params.size(); ++i)
    indices[params[i].name] = i;
  for (onnx::TensorProto &tensor :
       *copy.mutable_graph()->mutable_initializer()) {
    auto it = indices.find(tensor.name());
    if (it != indices.end())
      setRawData(tensor, buffers[it->second],
                 numElements(params[it->second].shape));
    else if (onnxdata::isExternal(tensor) || lacksValues(tensor))
      tensor = copyWithValues(tensor);
    if (data && tensor.raw_data().size() >= kExternalThreshold)
      moveToDataFile(tensor, *data, location);
  }
}

namespace {

/// Sets integer attribute `name` of `node` to `value` where it is present.
void setIfPresent(onnx::NodeProto &node, const std::string &name,
                  int64_t value) {
  for (onnx::AttributeProto &attribute : *node.mutable_attribute())
    if (attribute.name() == name)
      attribute.set_i(value);
}

/// Puts the training-mode ops of `graph` in inference mode: a batch
/// normalization loses its statistics outputs (before opset 14 they are
/// what made it train) and training_mode (is_test before opset 7); a
/// dropout loses its training_mode input (opset 12 on; is_test before 7).
void switchToInference(onnx::GraphProto &graph) {
  for (onnx::NodeProto &node : *graph.mutable_node()) {
    if (node.op_type() == "BatchNormalization") {
      setIfPresent(node, "training_mode", 0);
      setIfPresent(node, "is_test", 1);
      while (node.output_size() > 1)
        node.mutable_output()->RemoveLast();
    } else if (node.op_type() == "Dropout") {
      setIfPresent(node, "is_test", 1);
      while (node.input_size() > 2)
        node.mutable_input()->RemoveLast();
    }
  }
}

} // namespace

std::string OnnxModel::saveWithParams(const std::vector<ParamRecord> &params,
                                      const std::vector<float *> &buffers,
                                      const std::string &path,
                                      bool externalData,
                                      bool forInference) const {
  onnx::ModelProto copy = model;
  if (forInference)
    switchToInference(*copy.mutable_graph());
  std::optional<AtomicFile> data;
  std::string dataPath;
  if (externalData || !fitsInline(copy, params)) {
    dataPath = path + ".data";
    data.emplace(dataPath);
  }
  fillForSave(copy, params, buffers, data ? &*data : nullptr,
              baseName(dataPath));
  std::string bytes;
  if (!copy.SerializeToString(&bytes))
    throw DriverError("cannot serialize the trained model (over 2 GiB even "
                      "with its weights in external data)");
  AtomicFile modelFile(path);
  modelFile.write(bytes.data(), bytes.size());
  if (data) {
    data->close();
    modelFile.close();
    data->commit();
  }
  modelFile.commit();
  return dataPath;
}

} // namespace blpa::driver
