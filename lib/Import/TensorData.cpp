//===- TensorData.cpp - Data stored in ONNX tensors -----------------------===//
//
// The few tensors the importer reads itself: integer shapes and flags, and
// float scalars. Parameters' data stays in the model for the executable.
//
//===----------------------------------------------------------------------===//

#include "Importer.h"

#include <cstring>
#include <limits>

using namespace mlir;
using namespace mlir::blpa;
using namespace mlir::blpa::onnximport;

/// Copies the little-endian elements of `Elem` out of raw_data, if it
/// holds exactly `count` of them.
template <typename Elem>
static void copyRaw(const std::string &raw, size_t count,
                    SmallVectorImpl<int64_t> &out) {
  if (raw.size() % sizeof(Elem) != 0 || raw.size() / sizeof(Elem) != count)
    return;
  for (size_t i = 0; i < count; ++i) {
    Elem element;
    std::memcpy(&element, raw.data() + i * sizeof(Elem), sizeof(Elem));
    out.push_back(static_cast<int64_t>(element));
  }
}

std::optional<int64_t> onnximport::elementCount(ArrayRef<int64_t> dims) {
  int64_t count = 1;
  for (int64_t d : dims) {
    if (d < 0 || (d > 0 && count > std::numeric_limits<int64_t>::max() / d))
      return std::nullopt;
    count *= d;
  }
  return count;
}

bool onnximport::isAddressable(ArrayRef<int64_t> dims) {
  std::optional<int64_t> count = elementCount(dims);
  return count && *count <= std::numeric_limits<int64_t>::max() /
                                static_cast<int64_t>(sizeof(float));
}

FailureOr<IntTensor>
onnximport::readIntTensor(const onnx::TensorProto &tensor) {
  IntTensor result;
  result.shape.assign(tensor.dims().begin(), tensor.dims().end());
  std::optional<int64_t> maybeCount = elementCount(result.shape);
  if (!maybeCount)
    return failure();
  size_t count = *maybeCount;
  const std::string &raw = tensor.raw_data();
  switch (tensor.data_type()) {
  case onnx::TensorProto::INT64:
    if (!tensor.has_raw_data())
      result.values.assign(tensor.int64_data().begin(),
                           tensor.int64_data().end());
    else
      copyRaw<int64_t>(raw, count, result.values);
    break;
  case onnx::TensorProto::INT32:
    if (!tensor.has_raw_data())
      result.values.assign(tensor.int32_data().begin(),
                           tensor.int32_data().end());
    else
      copyRaw<int32_t>(raw, count, result.values);
    break;
  case onnx::TensorProto::BOOL:
    if (!tensor.has_raw_data())
      result.values.assign(tensor.int32_data().begin(),
                           tensor.int32_data().end());
    else
      copyRaw<uint8_t>(raw, count, result.values);
    break;
  default:
    return failure();
  }
  if (result.values.size() != count)
    return failure();
  return result;
}

FailureOr<double> onnximport::readFloatSplat(const onnx::TensorProto &tensor) {
  if (tensor.data_type() != onnx::TensorProto::FLOAT)
    return failure();
  SmallVector<float> values(tensor.float_data().begin(),
                            tensor.float_data().end());
  if (tensor.has_raw_data()) {
    const std::string &raw = tensor.raw_data();
    values.resize(raw.size() / sizeof(float));
    std::memcpy(values.data(), raw.data(), values.size() * sizeof(float));
  }
  if (values.empty() || !llvm::all_equal(values))
    return failure();
  return static_cast<double>(values.front());
}

FailureOr<double> onnximport::readFloatScalar(const onnx::TensorProto &tensor) {
  if (tensor.data_type() != onnx::TensorProto::FLOAT)
    return failure();
  if (!tensor.has_raw_data())
    return tensor.float_data_size() == 1
               ? FailureOr<double>(tensor.float_data(0))
               : FailureOr<double>(failure());
  if (tensor.raw_data().size() != sizeof(float))
    return failure();
  float value;
  std::memcpy(&value, tensor.raw_data().data(), sizeof(float));
  return static_cast<double>(value);
}
