//===- NodeBinder.cpp - One ONNX node's inputs, attributes, outputs -------===//

#include "Importer.h"

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include <cstdio>
#include <cstdlib>

using namespace mlir;
using namespace mlir::blpa;
using namespace mlir::blpa::onnximport;

std::string onnximport::nodeName(const onnx::NodeProto &node, unsigned index) {
  if (!node.name().empty())
    return node.name();
  return node.op_type() + "_" + std::to_string(index);
}

NodeBinder::NodeBinder(Importer &importer, const onnx::NodeProto &node,
                       unsigned index)
    : importer(importer), nodeProto(node), nodeIndex(index),
      name(nodeName(node, index)),
      location(NameLoc::get(StringAttr::get(importer.context, name),
                            importer.fileLoc())) {
  for (const onnx::AttributeProto &attribute : node.attribute())
    attrs[attribute.name()] = &attribute;
}

int64_t NodeBinder::opset() const { return importer.opset; }
OpBuilder &NodeBinder::builder() { return importer.builder; }
MLIRContext *NodeBinder::context() { return importer.context; }

InFlightDiagnostic NodeBinder::error() {
  InFlightDiagnostic diag = emitError(location);
  diag << importer.path << ": node '" << name << "' (" << opType() << "): ";
  return diag;
}

LogicalResult NodeBinder::keepFirst(Diagnostic &diag, std::string &reason) {
  if (reason.empty())
    reason = oneLine(diag.str());
  return success();
}

//===----------------------------------------------------------------------===//
// Inputs
//===----------------------------------------------------------------------===//

bool NodeBinder::hasInput(int index) const {
  return index < nodeProto.input_size() && !nodeProto.input(index).empty();
}

FailureOr<Value> NodeBinder::optionalInput(int index) {
  if (!hasInput(index))
    return Value();
  const std::string &input = nodeProto.input(index);
  if (isIndexInput(index))
    return error() << "input '" << input
                   << "' holds token ids (an integer graph input); only "
                      "Gather from an embedding table, Shape and Cast to an "
                      "integer type can read them";
  if (Value value = importer.values.lookup(input))
    return value;
  if (importer.intTensors.count(input) || importer.floatConstants.count(input))
    return constantOperand(input);
  const onnx::TensorProto *tensor = importer.initializers.lookup(input);
  if (!tensor)
    return error() << "input '" << input
                   << "' is not defined by the graph's inputs, initializers "
                      "or earlier nodes";
  if (failed(checkParamData(input, *tensor)))
    return failure();
  return importer.param(location, input);
}

/// A constant tensor (a Constant node's, or an integer one) used as a float
/// operand: a uniform one, such as the scalars exporters write for `3 * x`
/// or `x + 0.5`, becomes a blpa.fill of its shape; others are refused.
FailureOr<Value> NodeBinder::constantOperand(const std::string &input) {
  SmallVector<int64_t> shape;
  std::optional<double> value;
  if (auto it = importer.intTensors.find(input);
      it != importer.intTensors.end()) {
    shape = it->second.shape;
    ArrayRef<int64_t> values = it->second.values;
    if (values.empty() || !llvm::all_equal(values))
      return error() << "input '" << input
                     << "' is an integer constant; integer tensors are only "
                        "supported as shapes (e.g. Reshape's shape) and as "
                        "uniform scalars";
    value = double(values.front());
  } else {
    const onnx::TensorProto &tensor = *importer.floatConstants.lookup(input);
    shape.assign(tensor.dims().begin(), tensor.dims().end());
    FailureOr<double> splat = readFloatSplat(tensor);
    if (failed(splat))
      return error() << "input '" << input
                     << "' is a Constant node's tensor with different "
                        "values; only uniform ones (scalars) may be float "
                        "operands (re-export with the constant as an "
                        "initializer)";
    value = *splat;
  }
  // A Constant's dims are the model's word, unchecked against its values.
  if (!isAddressable(shape))
    return error() << "input '" << input << "' is a constant of shape "
                   << formatInts(shape)
                   << ", invalid or too large to address; the model is "
                      "corrupt";
  auto type = RankedTensorType::get(shape, builder().getF32Type());
  return FillOp::create(builder(), location, type,
                        builder().getF64FloatAttr(*value))
      .getResult();
}

/// A float initializer must hold as many values as its shape says (external
/// data has been read in by readModel): the executable loads it by name,
/// and a mismatch is better reported here than at run time.
LogicalResult NodeBinder::checkParamData(llvm::StringRef input,
                                         const onnx::TensorProto &tensor) {
  if (tensor.data_type() != onnx::TensorProto::FLOAT)
    return error() << "initializer '" << input
                   << "' is not float32; only float32 parameters are "
                      "supported";
  SmallVector<int64_t> dims(tensor.dims().begin(), tensor.dims().end());
  std::optional<int64_t> count = elementCount(dims);
  if (!count)
    return error() << "initializer '" << input << "' has the invalid shape "
                   << formatInts(dims) << "; the model is corrupt";
  const std::string &raw = tensor.raw_data();
  bool rawFits = raw.size() % sizeof(float) == 0 &&
                 raw.size() / sizeof(float) == static_cast<size_t>(*count);
  bool listFits = tensor.float_data_size() == *count;
  if (tensor.has_raw_data() ? rawFits : listFits)
    return success();
  size_t stored = tensor.has_raw_data() ? raw.size() / sizeof(float)
                                        : tensor.float_data_size();
  return error() << "initializer '" << input << "' holds " << stored
                 << " values, but its shape " << formatInts(dims) << " needs "
                 << *count << "; the model is corrupt";
}

FailureOr<Value> NodeBinder::input(int index) {
  FailureOr<Value> value = optionalInput(index);
  if (succeeded(value) && !*value)
    return error() << "input " << index << " is missing; it is required";
  return value;
}

bool NodeBinder::isIndexInput(int index) const {
  if (!hasInput(index))
    return false;
  Value value = importer.values.lookup(nodeProto.input(index));
  return value &&
         cast<ShapedType>(value.getType()).getElementType().isInteger(64);
}

FailureOr<Value> NodeBinder::indexInput(int index) {
  if (!isIndexInput(index))
    return error() << "input " << index
                   << " must be token ids (an int64 or int32 graph input)";
  return importer.values.lookup(nodeProto.input(index));
}

bool NodeBinder::isIntInput(int index) const {
  return hasInput(index) && importer.intTensors.count(nodeProto.input(index));
}

FailureOr<IntTensor> NodeBinder::intInput(int index) {
  if (!hasInput(index))
    return error() << "input " << index << " is missing; it is required";
  auto it = importer.intTensors.find(nodeProto.input(index));
  if (it != importer.intTensors.end())
    return it->second;
  return error() << "input '" << nodeProto.input(index)
                 << "' must be an integer tensor known at compile time (an "
                    "initializer, a Constant, or Shape/Gather/Unsqueeze/"
                    "Concat of static shapes); dynamic shapes are not "
                    "supported";
}

bool NodeBinder::isFloatConstantInput(int index) const {
  return hasInput(index) &&
         importer.floatConstants.count(nodeProto.input(index));
}

const onnx::TensorProto *NodeBinder::floatConstantInput(int index) const {
  return importer.floatConstants.lookup(nodeProto.input(index));
}

const onnx::TensorProto &NodeBinder::castToFloat(const IntTensor &tensor) {
  onnx::TensorProto &result = importer.computedConstants.emplace_back();
  result.set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : tensor.shape)
    result.add_dims(d);
  for (int64_t v : tensor.values)
    result.add_float_data(float(v));
  return result;
}

FailureOr<double> NodeBinder::floatScalarInput(int index) {
  const std::string &input = nodeProto.input(index);
  const onnx::TensorProto *tensor = importer.floatConstants.lookup(input);
  if (!tensor)
    tensor = importer.initializers.lookup(input);
  FailureOr<double> value =
      tensor ? readFloatScalar(*tensor) : FailureOr<double>(failure());
  if (failed(value))
    return error() << "input '" << input
                   << "' must be a float32 scalar known at compile time (an "
                      "initializer or a Constant)";
  return value;
}

FailureOr<NodeBinder::FloatScalar> NodeBinder::floatScalarOperand(int index) {
  const std::string &input = nodeProto.input(index);
  const onnx::TensorProto *tensor = importer.floatConstants.lookup(input);
  if (!tensor)
    tensor = importer.initializers.lookup(input);
  if (tensor || importer.intTensors.count(input)) {
    FailureOr<double> value =
        tensor ? readFloatScalar(*tensor) : FailureOr<double>(failure());
    if (failed(value))
      return error() << "input '" << input
                     << "' must be a float32 scalar or 1-element tensor";
    return FloatScalar{*value, nullptr};
  }
  FailureOr<Value> value = this->input(index);
  if (failed(value))
    return failure();
  ArrayRef<int64_t> shape = getShape(*value);
  if (ShapedType::getNumElements(shape) != 1)
    return error() << "input '" << input << "' has the shape "
                   << formatInts(shape)
                   << "; a value given at run time must be a float32 scalar "
                      "or 1-element tensor";
  return FloatScalar{std::nullopt, *value};
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

int64_t NodeBinder::getInt(llvm::StringRef name, int64_t otherwise) const {
  const onnx::AttributeProto *a = attr(name);
  return a ? a->i() : otherwise;
}

/// The shortest decimal that reads back as `value`, as a double: the number
/// the model's author wrote (0.9, not 0.89999997615814208), so that explicit
/// float32 attributes and ONNX's defaults agree.
static double widen(float value) {
  char text[32];
  for (int digits = 1; digits < 9; ++digits) {
    std::snprintf(text, sizeof(text), "%.*g", digits, value);
    if (std::strtof(text, nullptr) == value)
      return std::strtod(text, nullptr);
  }
  return value;
}

double NodeBinder::getFloat(llvm::StringRef name, double otherwise) const {
  const onnx::AttributeProto *a = attr(name);
  return a ? widen(a->f()) : otherwise;
}

std::string NodeBinder::getString(llvm::StringRef name,
                                  llvm::StringRef otherwise) const {
  const onnx::AttributeProto *a = attr(name);
  return a ? a->s() : otherwise.str();
}

SmallVector<int64_t> NodeBinder::getInts(llvm::StringRef name,
                                         ArrayRef<int64_t> otherwise) const {
  const onnx::AttributeProto *a = attr(name);
  if (!a)
    return SmallVector<int64_t>(otherwise);
  return SmallVector<int64_t>(a->ints().begin(), a->ints().end());
}

const onnx::TensorProto *NodeBinder::getTensor(llvm::StringRef name) const {
  const onnx::AttributeProto *a = attr(name);
  return a && a->has_t() ? &a->t() : nullptr;
}

/// Every attribute the supported ops define (in any opset 1-21), with its
/// type. The getters read one field of the proto, so a value of another
/// type would silently read as the default.
static const llvm::StringMap<onnx::AttributeProto::AttributeType> &
knownAttributes() {
  using A = onnx::AttributeProto;
  static const llvm::StringMap<A::AttributeType> table = {
      {"kernel_shape", A::INTS},
      {"strides", A::INTS},
      {"pads", A::INTS},
      {"dilations", A::INTS},
      {"auto_pad", A::STRING},
      {"group", A::INT},
      {"ceil_mode", A::INT},
      {"storage_order", A::INT},
      {"count_include_pad", A::INT},
      {"epsilon", A::FLOAT},
      {"momentum", A::FLOAT},
      {"training_mode", A::INT},
      {"spatial", A::INT},
      {"is_test", A::INT},
      {"axis", A::INT},
      {"axes", A::INTS},
      {"allowzero", A::INT},
      {"transA", A::INT},
      {"transB", A::INT},
      {"alpha", A::FLOAT},
      {"beta", A::FLOAT},
      {"broadcast", A::INT},
      {"consumed_inputs", A::INTS},
      {"value", A::TENSOR},
      {"value_int", A::INT},
      {"value_ints", A::INTS},
      {"value_float", A::FLOAT},
      {"value_floats", A::FLOATS},
      {"ratio", A::FLOAT},
      {"seed", A::INT},
      {"start", A::INT},
      {"end", A::INT},
      {"shape", A::INTS},
      {"min", A::FLOAT},
      {"max", A::FLOAT},
      {"mode", A::STRING},
      {"to", A::INT},
      {"perm", A::INTS},
      {"keepdims", A::INT},
      {"noop_with_empty_axes", A::INT},
      {"split", A::INTS},
      {"num_outputs", A::INT},
      {"starts", A::INTS},
      {"ends", A::INTS},
      {"blocksize", A::INT},
      {"approximate", A::STRING},
      {"stash_type", A::INT},
      {"upper", A::INT},
  };
  return table;
}

/// The type of attribute `name` of op `opType`: knownAttributes' unless
/// the op says otherwise (Pad's `value`, opsets 2-10, is a float where
/// Constant's is a tensor); none for an unknown attribute.
static std::optional<onnx::AttributeProto::AttributeType>
attributeType(llvm::StringRef opType, llvm::StringRef name) {
  if (opType == "Pad" && name == "value")
    return onnx::AttributeProto::FLOAT;
  auto it = knownAttributes().find(name);
  if (it == knownAttributes().end())
    return std::nullopt;
  return it->second;
}

LogicalResult NodeBinder::checkAttributes() {
  for (const onnx::AttributeProto &attribute : nodeProto.attribute()) {
    std::optional<onnx::AttributeProto::AttributeType> type =
        attributeType(opType(), attribute.name());
    if (!type)
      return error() << "attribute '" << attribute.name()
                     << "' is not supported";
    // UNDEFINED: producers older than IR version 2 did not set the type.
    if (attribute.type() != onnx::AttributeProto::UNDEFINED &&
        attribute.type() != *type)
      return error() << "attribute '" << attribute.name() << "' has type "
                     << onnx::AttributeProto::AttributeType_Name(
                            attribute.type())
                     << "; expected "
                     << onnx::AttributeProto::AttributeType_Name(*type);
  }
  return success();
}

LogicalResult NodeBinder::checkInts(llvm::StringRef attrName,
                                    ArrayRef<int64_t> values, size_t size,
                                    int64_t min) {
  if (values.size() != size)
    return error() << "attribute '" << attrName << "' = " << formatInts(values)
                   << " has " << values.size() << " entries; expected " << size
                   << " here";
  if (llvm::any_of(values, [&](int64_t v) { return v < min; }))
    return error() << "attribute '" << attrName << "' = " << formatInts(values)
                   << " is invalid; entries must be >= " << min;
  return success();
}

//===----------------------------------------------------------------------===//
// Outputs
//===----------------------------------------------------------------------===//

/// Handlers compute output 0 only: the optional outputs after it (pooling
/// indices, batch-norm statistics, dropout masks) must not be read.
static LogicalResult checkOtherOutputsUnused(NodeBinder &binder,
                                             const llvm::StringSet<> &used) {
  const onnx::NodeProto &node = binder.node();
  for (int i = 1; i < node.output_size(); ++i)
    if (!node.output(i).empty() && used.contains(node.output(i)))
      return binder.error()
             << "output " << i << " ('" << node.output(i)
             << "') is read by another node or is a graph output; only "
                "output 0 is supported";
  return success();
}

LogicalResult NodeBinder::setOutput(FailureOr<Value> value) {
  if (failed(value) ||
      failed(checkOtherOutputsUnused(*this, importer.consumed)))
    return failure();
  if (nodeProto.output_size() < 1 || nodeProto.output(0).empty())
    return error() << "the node has no output";
  importer.values[nodeProto.output(0)] = *value;
  return success();
}

LogicalResult NodeBinder::setOutputs(ArrayRef<Value> values) {
  if (int64_t(values.size()) != nodeProto.output_size())
    return error() << "the node has " << nodeProto.output_size()
                   << " outputs; expected " << values.size();
  for (auto [name, value] : llvm::zip(nodeProto.output(), values))
    if (!name.empty())
      importer.values[name] = value;
  return success();
}

LogicalResult NodeBinder::setIntOutput(IntTensor value) {
  if (failed(checkOtherOutputsUnused(*this, importer.consumed)))
    return failure();
  if (nodeProto.output_size() < 1 || nodeProto.output(0).empty())
    return error() << "the node has no output";
  importer.intTensors[nodeProto.output(0)] = std::move(value);
  return success();
}

LogicalResult
NodeBinder::setFloatConstantOutput(const onnx::TensorProto &tensor) {
  if (failed(checkOtherOutputsUnused(*this, importer.consumed)))
    return failure();
  if (nodeProto.output_size() < 1 || nodeProto.output(0).empty())
    return error() << "the node has no output";
  importer.floatConstants[nodeProto.output(0)] = &tensor;
  return success();
}

Value NodeBinder::reshape(Value value, ArrayRef<int64_t> shape) {
  if (cast<ShapedType>(value.getType()).getShape() == shape)
    return value;
  auto type = RankedTensorType::get(shape, builder().getF32Type());
  return ReshapeOp::create(builder(), location, type, value);
}
