//===- Model.cpp - Parameter values in ONNX models ------------------------===//

#include "Model.h"
#include "Error.h"

#include <climits>
#include <cstring>
#include <set>

namespace blpa::driver {

OnnxModel::OnnxModel(const void *data, size_t size, std::string origin)
    : origin(std::move(origin)) {
  if (size > INT_MAX || !model.ParseFromArray(data, static_cast<int>(size)))
    throw DriverError(this->origin +
                      ": not a valid ONNX model (cannot parse the "
                      "ModelProto)");
}

const onnx::TensorProto &
OnnxModel::findInitializer(const ParamRecord &param) const {
  const onnx::TensorProto *found = nullptr;
  for (const onnx::TensorProto &tensor : model.graph().initializer())
    if (tensor.name() == param.name)
      found = &tensor;
  std::string what = origin + ": initializer '" + param.name + "' ";
  if (!found)
    throw DriverError(what + "is missing; use weights of the model this "
                             "executable was compiled from");
  if (found->data_type() != onnx::TensorProto::FLOAT)
    throw DriverError(what + "is not float32");
  if (found->data_location() == onnx::TensorProto::EXTERNAL)
    throw DriverError(what + "uses external data; store it inside the "
                             "model (onnx.save with "
                             "save_as_external_data=False)");
  Shape dims(found->dims().begin(), found->dims().end());
  if (dims != param.shape)
    throw DriverError(what + "has shape " + formatShape(dims) +
                      " but the executable expects " +
                      formatShape(param.shape));
  return *found;
}

void OnnxModel::readParams(const std::vector<ParamRecord> &params,
                           const std::vector<float *> &buffers) const {
  for (size_t i = 0; i < params.size(); ++i) {
    const onnx::TensorProto &tensor = findInitializer(params[i]);
    size_t count = numElements(params[i].shape);
    if (!tensor.has_raw_data() && tensor.float_data_size() == 0 && count)
      throw DriverError(origin + " has no values for initializer '" +
                        params[i].name +
                        "' (the executable was compiled with "
                        "--embed-weights=false); give --weights MODEL.onnx");
    if (tensor.has_raw_data() &&
        tensor.raw_data().size() == count * sizeof(float)) {
      // ONNX stores raw_data little-endian, like the hosts we run on.
      std::memcpy(buffers[i], tensor.raw_data().data(), count * sizeof(float));
    } else if (!tensor.has_raw_data() &&
               static_cast<size_t>(tensor.float_data_size()) == count) {
      std::copy(tensor.float_data().begin(), tensor.float_data().end(),
                buffers[i]);
    } else {
      throw DriverError(origin + ": initializer '" + params[i].name +
                        "' holds the wrong number of values for its shape " +
                        formatShape(params[i].shape));
    }
  }
}

void OnnxModel::releaseParamData(const std::vector<ParamRecord> &params) {
  std::set<std::string> names;
  for (const ParamRecord &param : params)
    names.insert(param.name);
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

std::string
OnnxModel::serializeWithParams(const std::vector<ParamRecord> &params,
                               const std::vector<float *> &buffers) const {
  onnx::ModelProto copy = model;
  for (onnx::TensorProto &tensor : *copy.mutable_graph()->mutable_initializer())
    for (size_t i = 0; i < params.size(); ++i) {
      if (tensor.name() != params[i].name)
        continue;
      tensor.clear_float_data();
      tensor.set_raw_data(buffers[i],
                          numElements(params[i].shape) * sizeof(float));
    }
  std::string bytes;
  if (!copy.SerializeToString(&bytes))
    throw DriverError("cannot serialize the trained model (ONNX models are "
                      "limited to 2 GiB)");
  return bytes;
}

} // namespace blpa::driver
