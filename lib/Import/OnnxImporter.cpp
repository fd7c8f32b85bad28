//===- OnnxImporter.cpp - ONNX graphs into the blpa dialect ---------------===//
//
// One walk over the graph's nodes (ONNX requires topological order), one
// handler per ONNX op type in a table, as torch-mlir's ONNX frontend does.
// Shapes come from the ops' own type inference; the importer only fixes the
// graph inputs' shapes (with --batch-size) and computes reshape targets.
//
//===----------------------------------------------------------------------===//

#include "blpa/Import/OnnxImporter.h"
#include "ModelReader.h"

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <cstring>

using namespace mlir;
using namespace mlir::blpa;

namespace {

constexpr const char *kSupportedOps =
    "Add, AveragePool, BatchNormalization, Constant, Conv, Dropout "
    "(inference), Flatten, Gemm, GlobalAveragePool, Identity, MatMul, "
    "MaxPool, Relu, Reshape";

/// Typed access to a node's attributes with ONNX's defaults.
class NodeAttrs {
public:
  explicit NodeAttrs(const onnx::NodeProto &node) {
    for (const onnx::AttributeProto &attr : node.attribute())
      attrs[attr.name()] = &attr;
  }
  bool has(llvm::StringRef name) const { return attrs.count(name); }
  int64_t getInt(llvm::StringRef name, int64_t otherwise) const {
    const onnx::AttributeProto *attr = attrs.lookup(name);
    return attr ? attr->i() : otherwise;
  }
  double getFloat(llvm::StringRef name, double otherwise) const {
    const onnx::AttributeProto *attr = attrs.lookup(name);
    return attr ? attr->f() : otherwise;
  }
  std::string getString(llvm::StringRef name, llvm::StringRef otherwise) const {
    const onnx::AttributeProto *attr = attrs.lookup(name);
    return attr ? attr->s() : otherwise.str();
  }
  SmallVector<int64_t> getInts(llvm::StringRef name,
                               ArrayRef<int64_t> otherwise) const {
    const onnx::AttributeProto *attr = attrs.lookup(name);
    if (!attr)
      return SmallVector<int64_t>(otherwise);
    return SmallVector<int64_t>(attr->ints().begin(), attr->ints().end());
  }
  const onnx::TensorProto *getTensor(llvm::StringRef name) const {
    const onnx::AttributeProto *attr = attrs.lookup(name);
    return attr && attr->has_t() ? &attr->t() : nullptr;
  }

private:
  llvm::StringMap<const onnx::AttributeProto *> attrs;
};

class Importer;
using Handler = LogicalResult (Importer::*)(const onnx::NodeProto &,
                                            const NodeAttrs &);

class Importer {
public:
  Importer(MLIRContext *context, llvm::StringRef path,
           const ImportOptions &options)
      : context(context), path(path.str()), options(options), builder(context) {
  }

  FailureOr<OwningOpRef<ModuleOp>> run(const onnx::ModelProto &model);

  // Handlers, one per ONNX op type.
  LogicalResult importConv(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importBatchNorm(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importRelu(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importAdd(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importMaxPool(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importAvgPool(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importGlobalAvgPool(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importFlatten(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importReshape(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importGemm(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importMatMul(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importIdentity(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importConstant(const onnx::NodeProto &, const NodeAttrs &);
  LogicalResult importDropout(const onnx::NodeProto &, const NodeAttrs &);

private:
  LogicalResult checkOpset(const onnx::ModelProto &model);
  void scanGraph(const onnx::GraphProto &graph);
  FailureOr<func::FuncOp> createFunction(const onnx::GraphProto &graph);
  FailureOr<RankedTensorType> inputType(const onnx::ValueInfoProto &input);
  LogicalResult importNode(const onnx::NodeProto &node);
  LogicalResult finishFunction(func::FuncOp func,
                               const onnx::GraphProto &graph);

  Location nodeLoc(const onnx::NodeProto &node);
  InFlightDiagnostic nodeError(const onnx::NodeProto &node);
  InFlightDiagnostic fileError();
  FailureOr<Value> input(const onnx::NodeProto &node, int index);
  FailureOr<Value> optionalInput(const onnx::NodeProto &node, int index);
  FailureOr<Value> param(const onnx::NodeProto &node, llvm::StringRef name);
  FailureOr<SmallVector<int64_t>> intConstant(const onnx::NodeProto &node,
                                              int index);
  LogicalResult setOutput(const onnx::NodeProto &node,
                          FailureOr<Value> value);
  template <typename OpTy, typename... Args>
  FailureOr<Value> create(const onnx::NodeProto &node, Args &&...args);
  LogicalResult checkUnusedOutputs(const onnx::NodeProto &node,
                                   unsigned numUsed);
  FailureOr<SmallVector<int64_t>>
  explicitPads(const onnx::NodeProto &node, const NodeAttrs &attrs,
               ArrayRef<int64_t> inputShape, ArrayRef<int64_t> kernel,
               ArrayRef<int64_t> strides, ArrayRef<int64_t> dilations);
  LogicalResult checkPoolAttrs(const onnx::NodeProto &node,
                               const NodeAttrs &attrs);
  struct PoolWindow {
    SmallVector<int64_t> kernel, strides, pads;
  };
  FailureOr<PoolWindow> poolWindow(const onnx::NodeProto &node,
                                   const NodeAttrs &attrs, Value input);
  Value reshape(Location loc, Value value, ArrayRef<int64_t> shape);

  MLIRContext *context;
  std::string path;
  ImportOptions options;
  OpBuilder builder;
  /// ONNX value names to the values computed so far.
  llvm::StringMap<Value> values;
  llvm::StringMap<const onnx::TensorProto *> initializers;
  /// Initializers that feed weights, biases and scales: they get gradients.
  llvm::StringSet<> trainable;
  /// Names read by some node or listed as graph outputs.
  llvm::StringSet<> consumed;
  /// Int64 tensors known at compile time (Constant nodes, int64
  /// initializers), used as Reshape shapes.
  llvm::StringMap<SmallVector<int64_t>> intConstants;
  unsigned nodeIndex = 0;
};

} // namespace

static const llvm::StringMap<Handler> &handlers() {
  static const llvm::StringMap<Handler> table = {
      {"Conv", &Importer::importConv},
      {"BatchNormalization", &Importer::importBatchNorm},
      {"Relu", &Importer::importRelu},
      {"Add", &Importer::importAdd},
      {"MaxPool", &Importer::importMaxPool},
      {"AveragePool", &Importer::importAvgPool},
      {"GlobalAveragePool", &Importer::importGlobalAvgPool},
      {"Flatten", &Importer::importFlatten},
      {"Reshape", &Importer::importReshape},
      {"Gemm", &Importer::importGemm},
      {"MatMul", &Importer::importMatMul},
      {"Identity", &Importer::importIdentity},
      {"Constant", &Importer::importConstant},
      {"Dropout", &Importer::importDropout},
  };
  return table;
}

//===----------------------------------------------------------------------===//
// Diagnostics and value lookup
//===----------------------------------------------------------------------===//

static std::string nodeName(const onnx::NodeProto &node, unsigned index) {
  if (!node.name().empty())
    return node.name();
  return node.op_type() + "_" + std::to_string(index);
}

Location Importer::nodeLoc(const onnx::NodeProto &node) {
  return NameLoc::get(StringAttr::get(context, nodeName(node, nodeIndex)),
                      FileLineColLoc::get(context, path, 0, 0));
}

InFlightDiagnostic Importer::nodeError(const onnx::NodeProto &node) {
  InFlightDiagnostic diag = emitError(nodeLoc(node));
  diag << path << ": node '" << nodeName(node, nodeIndex) << "' ("
       << node.op_type() << "): ";
  return diag;
}

InFlightDiagnostic Importer::fileError() {
  InFlightDiagnostic diag = emitError(FileLineColLoc::get(context, path, 0, 0));
  diag << path << ": ";
  return diag;
}

static int64_t product(ArrayRef<int64_t> dims) {
  int64_t result = 1;
  for (int64_t d : dims)
    result *= d;
  return result;
}

static ArrayRef<int64_t> shapeOf(Value v) {
  return cast<ShapedType>(v.getType()).getShape();
}

FailureOr<Value> Importer::param(const onnx::NodeProto &node,
                                 llvm::StringRef name) {
  const onnx::TensorProto *tensor = initializers.lookup(name);
  if (tensor->data_type() != onnx::TensorProto::FLOAT)
    return nodeError(node) << "initializer '" << name
                           << "' is not float32; only float32 parameters "
                              "are supported";
  if (tensor->data_location() == onnx::TensorProto::EXTERNAL)
    return nodeError(node) << "initializer '" << name
                           << "' uses external data; save the model with "
                              "its weights inside the .onnx file";
  SmallVector<int64_t> shape(tensor->dims().begin(), tensor->dims().end());
  auto type = RankedTensorType::get(shape, builder.getF32Type());
  Value value =
      ParamOp::create(builder, nodeLoc(node), type, builder.getStringAttr(name),
                      trainable.contains(name));
  values[name] = value;
  return value;
}

FailureOr<Value> Importer::optionalInput(const onnx::NodeProto &node,
                                         int index) {
  if (index >= node.input_size() || node.input(index).empty())
    return Value();
  const std::string &name = node.input(index);
  if (Value value = values.lookup(name))
    return value;
  if (initializers.count(name))
    return param(node, name);
  if (intConstants.count(name))
    return nodeError(node) << "input '" << name
                           << "' is an integer constant; only Reshape "
                              "shapes may be integer constants";
  return nodeError(node) << "input '" << name << "' is not defined";
}

FailureOr<Value> Importer::input(const onnx::NodeProto &node, int index) {
  FailureOr<Value> value = optionalInput(node, index);
  if (succeeded(value) && !*value)
    return nodeError(node) << "missing input " << index;
  return value;
}

LogicalResult Importer::setOutput(const onnx::NodeProto &node,
                                  FailureOr<Value> value) {
  if (failed(value))
    return failure();
  if (node.output_size() < 1 || node.output(0).empty())
    return nodeError(node) << "has no output";
  values[node.output(0)] = *value;
  return success();
}

/// Builds an op whose result types its shape rule infers, returning its
/// first result. Operands that break the rule (a model with inconsistent
/// shapes) are reported at the node instead of aborting, which the
/// generated inferring builders would do.
template <typename OpTy, typename... Args>
FailureOr<Value> Importer::create(const onnx::NodeProto &node,
                                  Args &&...args) {
  OperationState state(nodeLoc(node), OpTy::getOperationName());
  OpTy::build(builder, state, TypeRange(), std::forward<Args>(args)...);
  SmallVector<Type> types;
  std::string reason;
  LogicalResult inferred = failure();
  {
    // The shape rule's own message becomes part of the node's one line.
    ScopedDiagnosticHandler capture(context, [&](Diagnostic &diag) {
      if (reason.empty())
        reason = diag.str();
      return success();
    });
    inferred = OpTy::inferReturnTypes(
        context, state.location, state.operands,
        state.attributes.getDictionary(context), state.getRawProperties(),
        state.regions, types);
  }
  if (failed(inferred))
    return nodeError(node) << "invalid operand shapes: " << reason;
  state.addTypes(types);
  return builder.create(state)->getResult(0);
}

/// Optional outputs past `numUsed` that we do not compute must be unused.
LogicalResult Importer::checkUnusedOutputs(const onnx::NodeProto &node,
                                           unsigned numUsed) {
  for (int i = numUsed; i < node.output_size(); ++i)
    if (!node.output(i).empty() && consumed.contains(node.output(i)))
      return nodeError(node) << "output " << i << " ('" << node.output(i)
                             << "') is used, but only the first " << numUsed
                             << " output(s) are supported";
  return success();
}

FailureOr<SmallVector<int64_t>>
Importer::intConstant(const onnx::NodeProto &node, int index) {
  if (index >= node.input_size())
    return nodeError(node) << "missing input " << index;
  auto it = intConstants.find(node.input(index));
  if (it == intConstants.end())
    return nodeError(node) << "input '" << node.input(index)
                           << "' must be a constant int64 tensor (an "
                              "initializer or a Constant node); dynamic "
                              "shapes are not supported";
  return it->second;
}

//===----------------------------------------------------------------------===//
// Graph-level import
//===----------------------------------------------------------------------===//

static FailureOr<SmallVector<int64_t>>
readInt64Tensor(const onnx::TensorProto &tensor) {
  if (tensor.data_type() != onnx::TensorProto::INT64)
    return failure();
  if (tensor.has_raw_data()) {
    const std::string &raw = tensor.raw_data();
    SmallVector<int64_t> data(raw.size() / sizeof(int64_t));
    std::memcpy(data.data(), raw.data(), data.size() * sizeof(int64_t));
    return data;
  }
  return SmallVector<int64_t>(tensor.int64_data().begin(),
                              tensor.int64_data().end());
}

LogicalResult Importer::checkOpset(const onnx::ModelProto &model) {
  for (const onnx::OperatorSetIdProto &opset : model.opset_import()) {
    if (!opset.domain().empty() && opset.domain() != "ai.onnx")
      continue;
    if (opset.version() < 1 || opset.version() > 21)
      return fileError() << "ONNX opset " << opset.version()
                         << " is not supported; export with an opset "
                            "between 1 and 21";
  }
  return success();
}

/// Records which initializers are trainable and which names are consumed,
/// before any op is built (a parameter's kind depends on all its uses).
void Importer::scanGraph(const onnx::GraphProto &graph) {
  for (const onnx::TensorProto &tensor : graph.initializer()) {
    initializers[tensor.name()] = &tensor;
    if (FailureOr<SmallVector<int64_t>> ints = readInt64Tensor(tensor);
        succeeded(ints))
      intConstants[tensor.name()] = *ints;
  }
  // Weights, biases and batch-norm affine parameters train; a float
  // initializer added to an activation is a bias too (MatMul + Add is how
  // exporters write Linear on 3-D inputs). Running statistics are state.
  static const llvm::StringMap<SmallVector<int>> trainableInputs = {
      {"Conv", {1, 2}},
      {"Gemm", {0, 1, 2}},
      {"MatMul", {0, 1}},
      {"Add", {0, 1}},
      {"BatchNormalization", {1, 2}}};
  for (const onnx::NodeProto &node : graph.node()) {
    for (const std::string &name : node.input())
      consumed.insert(name);
    auto it = trainableInputs.find(node.op_type());
    if (it == trainableInputs.end())
      continue;
    for (int index : it->second)
      if (index < node.input_size())
        trainable.insert(node.input(index));
  }
  for (const onnx::ValueInfoProto &output : graph.output())
    consumed.insert(output.name());
}

FailureOr<RankedTensorType>
Importer::inputType(const onnx::ValueInfoProto &input) {
  const onnx::TypeProto &type = input.type();
  if (!type.has_tensor_type() ||
      type.tensor_type().elem_type() != onnx::TensorProto::FLOAT)
    return fileError() << "input '" << input.name()
                       << "' is not a float32 tensor; only float32 inputs "
                          "are supported";
  SmallVector<int64_t> shape;
  const auto &dims = type.tensor_type().shape().dim();
  for (int i = 0; i < dims.size(); ++i) {
    const onnx::TensorShapeProto::Dimension &dim = dims[i];
    bool symbolic = !dim.has_dim_value() || dim.dim_value() <= 0;
    std::string label = dim.has_dim_param() ? dim.dim_param() : "?";
    if (symbolic && i != 0)
      return fileError() << "input '" << input.name() << "' dimension " << i
                         << " ('" << label
                         << "') is symbolic; only the batch dimension may be";
    if (symbolic && !options.batchSize)
      return fileError() << "input '" << input.name()
                         << "' has a symbolic batch dimension '" << label
                         << "'; pass --batch-size N";
    if (!symbolic && i == 0 && options.batchSize &&
        dim.dim_value() != *options.batchSize)
      return fileError() << "input '" << input.name()
                         << "' has a fixed batch size of " << dim.dim_value()
                         << ", but --batch-size is " << *options.batchSize;
    shape.push_back(symbolic ? *options.batchSize : dim.dim_value());
  }
  return RankedTensorType::get(shape, builder.getF32Type());
}

FailureOr<func::FuncOp>
Importer::createFunction(const onnx::GraphProto &graph) {
  SmallVector<Type> argTypes;
  SmallVector<Attribute> argAttrs;
  for (const onnx::ValueInfoProto &input : graph.input()) {
    if (initializers.count(input.name()))
      continue;
    FailureOr<RankedTensorType> type = inputType(input);
    if (failed(type))
      return failure();
    argTypes.push_back(*type);
    argAttrs.push_back(builder.getDictionaryAttr(builder.getNamedAttr(
        "blpa.name", builder.getStringAttr(input.name()))));
  }
  if (argTypes.empty())
    return fileError() << "the graph has no data input";
  auto func =
      func::FuncOp::create(builder, FileLineColLoc::get(context, path, 0, 0),
                           "forward", builder.getFunctionType(argTypes, {}));
  func.setAllArgAttrs(argAttrs);
  Block *body = func.addEntryBlock();
  unsigned argIndex = 0;
  for (const onnx::ValueInfoProto &input : graph.input())
    if (!initializers.count(input.name()))
      values[input.name()] = body->getArgument(argIndex++);
  builder.setInsertionPointToStart(body);
  return func;
}

LogicalResult Importer::importNode(const onnx::NodeProto &node) {
  bool defaultDomain = node.domain().empty() || node.domain() == "ai.onnx";
  auto it = handlers().find(node.op_type());
  if (!defaultDomain || it == handlers().end())
    return nodeError(node) << "unsupported op; supported ops: "
                           << kSupportedOps;
  return (this->*(it->second))(node, NodeAttrs(node));
}

LogicalResult Importer::finishFunction(func::FuncOp func,
                                       const onnx::GraphProto &graph) {
  SmallVector<Value> results;
  SmallVector<Attribute> resultAttrs;
  for (const onnx::ValueInfoProto &output : graph.output()) {
    Value value = values.lookup(output.name());
    if (!value)
      return fileError() << "graph output '" << output.name()
                         << "' is not computed by the supported nodes";
    results.push_back(value);
    resultAttrs.push_back(builder.getDictionaryAttr(builder.getNamedAttr(
        "blpa.name", builder.getStringAttr(output.name()))));
  }
  func::ReturnOp::create(builder, func.getLoc(), results);
  func.setType(builder.getFunctionType(func.getArgumentTypes(),
                                       ValueRange(results).getTypes()));
  func.setAllResultAttrs(resultAttrs);
  return success();
}

FailureOr<OwningOpRef<ModuleOp>> Importer::run(const onnx::ModelProto &model) {
  if (failed(checkOpset(model)))
    return failure();
  const onnx::GraphProto &graph = model.graph();
  scanGraph(graph);
  OwningOpRef<ModuleOp> module =
      ModuleOp::create(FileLineColLoc::get(context, path, 0, 0));
  SmallString<256> absolute(path);
  (void)llvm::sys::fs::make_absolute(absolute);
  (*module)->setAttr("blpa.source", builder.getStringAttr(absolute));
  builder.setInsertionPointToStart(module->getBody());
  FailureOr<func::FuncOp> func = createFunction(graph);
  if (failed(func))
    return failure();
  for (const onnx::NodeProto &node : graph.node()) {
    if (failed(importNode(node)))
      return failure();
    ++nodeIndex;
  }
  if (failed(finishFunction(*func, graph)))
    return failure();
  if (failed(verify(*module)))
    return fileError() << "the imported model is not valid blpa IR (an "
                          "importer bug; please report it)";
  return module;
}

FailureOr<OwningOpRef<ModuleOp>>
mlir::blpa::importOnnxFile(MLIRContext *context, llvm::StringRef path,
                           const ImportOptions &options) {
  context->loadDialect<BlpaDialect, func::FuncDialect>();
  onnx::ModelProto model;
  std::string error = readModel(path, model);
  if (!error.empty())
    return emitError(FileLineColLoc::get(context, path, 0, 0), error);
  if (options.batchSize && *options.batchSize <= 0)
    return emitError(UnknownLoc::get(context), "--batch-size must be positive");
  try {
    return Importer(context, path, options).run(model);
  } catch (const std::exception &e) {
    return emitError(FileLineColLoc::get(context, path, 0, 0))
           << path << ": cannot import the model: " << e.what();
  }
}

//===----------------------------------------------------------------------===//
// Op handlers
//===----------------------------------------------------------------------===//

/// ONNX's auto_pad: explicit pads, or SAME_UPPER/SAME_LOWER computed so the
/// output is ceil(input / stride), or VALID (no padding).
FailureOr<SmallVector<int64_t>>
Importer::explicitPads(const onnx::NodeProto &node, const NodeAttrs &attrs,
                       ArrayRef<int64_t> inputShape, ArrayRef<int64_t> kernel,
                       ArrayRef<int64_t> strides, ArrayRef<int64_t> dilations) {
  std::string autoPad = attrs.getString("auto_pad", "NOTSET");
  if (autoPad == "NOTSET")
    return attrs.getInts("pads", {0, 0, 0, 0});
  if (autoPad == "VALID")
    return SmallVector<int64_t>{0, 0, 0, 0};
  if (autoPad != "SAME_UPPER" && autoPad != "SAME_LOWER")
    return nodeError(node) << "auto_pad '" << autoPad
                           << "' is not supported; use NOTSET, VALID, "
                              "SAME_UPPER or SAME_LOWER";
  SmallVector<int64_t> pads(4);
  for (int i = 0; i < 2; ++i) {
    int64_t in = inputShape[2 + i];
    int64_t out = (in + strides[i] - 1) / strides[i];
    int64_t span = dilations[i] * (kernel[i] - 1) + 1;
    int64_t total = std::max<int64_t>(0, (out - 1) * strides[i] + span - in);
    int64_t small = total / 2, large = total - small;
    pads[i] = autoPad == "SAME_UPPER" ? small : large;
    pads[i + 2] = autoPad == "SAME_UPPER" ? large : small;
  }
  return pads;
}

LogicalResult Importer::importConv(const onnx::NodeProto &node,
                                   const NodeAttrs &attrs) {
  FailureOr<Value> x = input(node, 0), w = input(node, 1),
                   b = optionalInput(node, 2);
  if (failed(x) || failed(w) || failed(b))
    return failure();
  ArrayRef<int64_t> wShape = shapeOf(*w);
  if (wShape.size() != 4 || shapeOf(*x).size() != 4)
    return nodeError(node) << "only 2-D convolutions (rank-4 input and "
                              "weight) are supported";
  SmallVector<int64_t> kernel =
      attrs.getInts("kernel_shape", wShape.take_back(2));
  if (ArrayRef<int64_t>(kernel) != wShape.take_back(2))
    return nodeError(node) << "kernel_shape does not match the weight's shape";
  SmallVector<int64_t> strides = attrs.getInts("strides", {1, 1});
  SmallVector<int64_t> dilations = attrs.getInts("dilations", {1, 1});
  FailureOr<SmallVector<int64_t>> pads =
      explicitPads(node, attrs, shapeOf(*x), kernel, strides, dilations);
  if (failed(pads))
    return failure();
  return setOutput(node, create<Conv2DOp>(node, *x, *w, *b, strides, *pads,
                                          dilations, attrs.getInt("group", 1)));
}

LogicalResult Importer::importBatchNorm(const onnx::NodeProto &node,
                                        const NodeAttrs &attrs) {
  SmallVector<Value> operands;
  for (int i = 0; i < 5; ++i) {
    FailureOr<Value> v = input(node, i);
    if (failed(v))
      return failure();
    operands.push_back(*v);
  }
  bool training = attrs.getInt("training_mode", 0) != 0;
  if (failed(checkUnusedOutputs(node, 1)))
    return failure();
  auto epsilon = builder.getF64FloatAttr(attrs.getFloat("epsilon", 1e-5));
  auto momentum = builder.getF64FloatAttr(attrs.getFloat("momentum", 0.9));
  if (training)
    return setOutput(node, create<BatchNormOp>(
                               node, operands[0], operands[1], operands[2],
                               operands[3], operands[4], epsilon, momentum));
  return setOutput(node, create<BatchNormInferenceOp>(
                             node, operands[0], operands[1], operands[2],
                             operands[3], operands[4], epsilon, momentum));
}

LogicalResult Importer::importRelu(const onnx::NodeProto &node,
                                   const NodeAttrs &) {
  FailureOr<Value> x = input(node, 0);
  if (failed(x))
    return failure();
  return setOutput(node, create<ReluOp>(node, *x));
}

LogicalResult Importer::importAdd(const onnx::NodeProto &node,
                                  const NodeAttrs &) {
  FailureOr<Value> a = input(node, 0), b = input(node, 1);
  if (failed(a) || failed(b))
    return failure();
  return setOutput(node, create<AddOp>(node, *a, *b));
}

LogicalResult Importer::checkPoolAttrs(const onnx::NodeProto &node,
                                       const NodeAttrs &attrs) {
  SmallVector<int64_t> dilations = attrs.getInts("dilations", {1, 1});
  if (llvm::any_of(dilations, [](int64_t d) { return d != 1; }))
    return nodeError(node) << "dilations other than 1 are not supported";
  if (attrs.getInt("storage_order", 0) != 0)
    return nodeError(node) << "storage_order 1 is not supported";
  if (attrs.getInts("kernel_shape", {}).size() != 2)
    return nodeError(node) << "only 2-D pooling (kernel_shape of 2 entries) "
                              "is supported";
  return checkUnusedOutputs(node, 1);
}

FailureOr<Importer::PoolWindow>
Importer::poolWindow(const onnx::NodeProto &node, const NodeAttrs &attrs,
                     Value input) {
  if (failed(checkPoolAttrs(node, attrs)))
    return failure();
  PoolWindow window;
  window.kernel = attrs.getInts("kernel_shape", {});
  window.strides = attrs.getInts("strides", {1, 1});
  FailureOr<SmallVector<int64_t>> pads = explicitPads(
      node, attrs, shapeOf(input), window.kernel, window.strides, {1, 1});
  if (failed(pads))
    return failure();
  window.pads = *pads;
  return window;
}

LogicalResult Importer::importMaxPool(const onnx::NodeProto &node,
                                      const NodeAttrs &attrs) {
  FailureOr<Value> x = input(node, 0);
  if (failed(x))
    return failure();
  FailureOr<PoolWindow> window = poolWindow(node, attrs, *x);
  if (failed(window))
    return failure();
  return setOutput(node, create<MaxPoolOp>(node, *x, window->kernel,
                                           window->strides, window->pads,
                                           attrs.getInt("ceil_mode", 0) != 0));
}

LogicalResult Importer::importAvgPool(const onnx::NodeProto &node,
                                      const NodeAttrs &attrs) {
  FailureOr<Value> x = input(node, 0);
  if (failed(x))
    return failure();
  if (attrs.getInt("ceil_mode", 0) != 0)
    return nodeError(node) << "ceil_mode 1 is not supported for "
                              "AveragePool; use ceil_mode 0";
  FailureOr<PoolWindow> window = poolWindow(node, attrs, *x);
  if (failed(window))
    return failure();
  return setOutput(
      node, create<AvgPoolOp>(node, *x, window->kernel, window->strides,
                              window->pads, false,
                              attrs.getInt("count_include_pad", 0) != 0));
}

LogicalResult Importer::importGlobalAvgPool(const onnx::NodeProto &node,
                                            const NodeAttrs &) {
  FailureOr<Value> x = input(node, 0);
  if (failed(x))
    return failure();
  return setOutput(node, create<GlobalAvgPoolOp>(node, *x));
}

Value Importer::reshape(Location loc, Value value, ArrayRef<int64_t> shape) {
  if (shapeOf(value) == shape)
    return value;
  auto type = RankedTensorType::get(shape, builder.getF32Type());
  return ReshapeOp::create(builder, loc, type, value);
}

LogicalResult Importer::importFlatten(const onnx::NodeProto &node,
                                      const NodeAttrs &attrs) {
  FailureOr<Value> x = input(node, 0);
  if (failed(x))
    return failure();
  ArrayRef<int64_t> shape = shapeOf(*x);
  int64_t rank = shape.size();
  int64_t axis = attrs.getInt("axis", 1);
  if (axis < 0)
    axis += rank;
  if (axis < 0 || axis > rank)
    return nodeError(node) << "axis " << attrs.getInt("axis", 1)
                           << " is out of range for rank " << rank;
  int64_t outer = product(shape.take_front(axis));
  return setOutput(node,
                   reshape(nodeLoc(node), *x, {outer, product(shape) / outer}));
}

LogicalResult Importer::importReshape(const onnx::NodeProto &node,
                                      const NodeAttrs &attrs) {
  FailureOr<Value> x = input(node, 0);
  FailureOr<SmallVector<int64_t>> target = intConstant(node, 1);
  if (failed(x) || failed(target))
    return failure();
  ArrayRef<int64_t> in = shapeOf(*x);
  bool allowZero = attrs.getInt("allowzero", 0) != 0;
  SmallVector<int64_t> shape;
  int inferred = -1;
  for (auto [i, d] : llvm::enumerate(*target)) {
    if (d == 0 && !allowZero && i < in.size())
      d = in[i];
    if (d == -1 && inferred < 0)
      inferred = i;
    else if (d < 0)
      return nodeError(node) << "invalid target shape entry " << d;
    shape.push_back(d);
  }
  if (inferred >= 0) {
    int64_t known = 1;
    for (auto [i, d] : llvm::enumerate(shape))
      if (static_cast<int>(i) != inferred)
        known *= d;
    if (known == 0 || product(in) % known != 0)
      return nodeError(node) << "cannot infer the -1 dimension";
    shape[inferred] = product(in) / known;
  }
  if (product(shape) != product(in))
    return nodeError(node) << "the target shape has " << product(shape)
                           << " elements, the input " << product(in);
  return setOutput(node, reshape(nodeLoc(node), *x, shape));
}

LogicalResult Importer::importGemm(const onnx::NodeProto &node,
                                   const NodeAttrs &attrs) {
  FailureOr<Value> a = input(node, 0), b = input(node, 1),
                   c = optionalInput(node, 2);
  if (failed(a) || failed(b) || failed(c))
    return failure();
  if (shapeOf(*a).size() != 2 || shapeOf(*b).size() != 2)
    return nodeError(node) << "Gemm operands must be 2-D";
  return setOutput(node, create<GemmOp>(
                             node, *a, *b, *c, attrs.getInt("transA", 0) != 0,
                             attrs.getInt("transB", 0) != 0,
                             llvm::APFloat(attrs.getFloat("alpha", 1.0)),
                             llvm::APFloat(attrs.getFloat("beta", 1.0))));
}

LogicalResult Importer::importMatMul(const onnx::NodeProto &node,
                                     const NodeAttrs &) {
  FailureOr<Value> a = input(node, 0), b = input(node, 1);
  if (failed(a) || failed(b))
    return failure();
  ArrayRef<int64_t> aShape = shapeOf(*a), bShape = shapeOf(*b);
  if (aShape.size() < 2 || bShape.size() != 2)
    return nodeError(node) << "only [..., M, K] x [K, N] products are "
                              "supported";
  // Leading dimensions of `a` fold into M: one gemm, then the shape back.
  Location loc = nodeLoc(node);
  int64_t k = aShape.back();
  Value a2 = reshape(loc, *a, {product(aShape) / k, k});
  FailureOr<Value> y = create<GemmOp>(node, a2, *b, Value(), false, false,
                                      llvm::APFloat(1.0), llvm::APFloat(1.0));
  if (failed(y))
    return failure();
  SmallVector<int64_t> outShape(aShape.drop_back());
  outShape.push_back(bShape[1]);
  return setOutput(node, reshape(loc, *y, outShape));
}

LogicalResult Importer::importIdentity(const onnx::NodeProto &node,
                                       const NodeAttrs &) {
  FailureOr<Value> x = input(node, 0);
  if (failed(x))
    return failure();
  return setOutput(node, *x);
}

LogicalResult Importer::importConstant(const onnx::NodeProto &node,
                                       const NodeAttrs &attrs) {
  const onnx::TensorProto *tensor = attrs.getTensor("value");
  FailureOr<SmallVector<int64_t>> ints =
      tensor ? readInt64Tensor(*tensor) : FailureOr<SmallVector<int64_t>>();
  if (!tensor || failed(ints))
    return nodeError(node) << "only int64 tensor constants (Reshape shapes) "
                              "are supported";
  intConstants[node.output(0)] = *ints;
  return success();
}

LogicalResult Importer::importDropout(const onnx::NodeProto &node,
                                      const NodeAttrs &) {
  // Without a training_mode input Dropout is the identity (inference). In
  // training mode it would drop activations at random, which the compiled
  // step does not do.
  FailureOr<Value> x = input(node, 0);
  if (failed(x) || failed(checkUnusedOutputs(node, 1)))
    return failure();
  if (node.input_size() > 2 && !node.input(2).empty())
    return nodeError(node) << "Dropout with a training_mode input is not "
                              "supported; export the model without dropout";
  return setOutput(node, *x);
}
