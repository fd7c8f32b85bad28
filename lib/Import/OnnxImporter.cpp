//===- OnnxImporter.cpp - ONNX graphs into the blpa dialect ---------------===//
//
// One walk over the graph's nodes (ONNX requires topological order), one
// handler per ONNX op type (NodeImporters.cpp), as torch-mlir's ONNX
// frontend does. Shapes come from the ops' own type inference; the importer
// only fixes the graph inputs' shapes (with --batch-size) and folds the
// integer shape computations exporters emit.
//
//===----------------------------------------------------------------------===//

#include "Importer.h"
#include "ModelReader.h"

#include "blpa/Dialect/Blpa/IR/BlpaDialect.h"
#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"

#include <cstdio>

using namespace mlir;
using namespace mlir::blpa;
using namespace mlir::blpa::onnximport;

//===----------------------------------------------------------------------===//
// Messages
//===----------------------------------------------------------------------===//

std::string onnximport::formatInts(ArrayRef<int64_t> values) {
  std::string result = "[";
  for (auto [i, v] : llvm::enumerate(values))
    result += (i ? ", " : "") + std::to_string(v);
  return result + "]";
}

std::string onnximport::oneLine(llvm::StringRef message) {
  std::string line = message.str();
  for (char &c : line)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      c = ' ';
  return line;
}

std::string onnximport::formatFloat(double value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", value);
  return text;
}

//===----------------------------------------------------------------------===//
// Graph-level import
//===----------------------------------------------------------------------===//

Importer::Importer(MLIRContext *context, llvm::StringRef path,
                   const ImportOptions &options)
    : context(context), path(path.str()), options(options), builder(context) {}

Location Importer::fileLoc() {
  return FileLineColLoc::get(context, path, 0, 0);
}

InFlightDiagnostic Importer::fileError() {
  InFlightDiagnostic diag = emitError(fileLoc());
  diag << path << ": ";
  return diag;
}

static bool isDefaultDomain(llvm::StringRef domain) {
  return domain.empty() || domain == "ai.onnx";
}

LogicalResult Importer::checkOpset(const onnx::ModelProto &model) {
  for (const onnx::OperatorSetIdProto &import : model.opset_import()) {
    if (!isDefaultDomain(import.domain()))
      continue;
    if (import.version() < minSupportedOpset ||
        import.version() > maxSupportedOpset)
      return fileError() << "ONNX opset " << import.version()
                         << " is not supported; export with an opset "
                            "between "
                         << minSupportedOpset << " and " << maxSupportedOpset;
    opset = import.version();
  }
  if (opset == 0)
    return fileError() << "the model imports no default-domain (ai.onnx) "
                          "opset; export it with an opset between "
                       << minSupportedOpset << " and " << maxSupportedOpset;
  return success();
}

/// The name behind a chain of Identity and Transpose nodes (exporters write
/// shared weights as Identity of one initializer, and Linear without bias
/// as MatMul by the Transpose of its weight).
llvm::StringRef Importer::resolveAlias(llvm::StringRef name) {
  // Graphs are acyclic, so the chain ends; the bound guards malformed ones.
  for (size_t i = 0; i <= aliases.size(); ++i) {
    auto it = aliases.find(name);
    if (it == aliases.end())
      break;
    name = it->second;
  }
  return name;
}

/// Records initializers, which of them train and which names are consumed,
/// before any op is built (a parameter's kind depends on all its uses).
void Importer::scanGraph(const onnx::GraphProto &graph) {
  for (const onnx::TensorProto &tensor : graph.initializer()) {
    initializers[tensor.name()] = &tensor;
    if (FailureOr<IntTensor> ints = readIntTensor(tensor); succeeded(ints))
      intTensors[tensor.name()] = std::move(*ints);
  }
  // Weights, biases and batch- and layer-norm affine parameters train; a float
  // initializer in arithmetic with an activation is a parameter too
  // (MatMul + Add is how exporters write Linear on 3-D inputs, and an
  // nn.Parameter scaling or shifting an activation becomes Mul/Sub/Div).
  // So is one broadcast (a ViT's class token) or gathered from (an
  // embedding table). Running statistics are state.
  static const llvm::StringMap<SmallVector<int>> trainableInputs = {
      {"Conv", {1, 2}},
      {"Gemm", {0, 1, 2}},
      {"MatMul", {0, 1}},
      {"Add", {0, 1}},
      {"Sub", {0, 1}},
      {"Mul", {0, 1}},
      {"Div", {0, 1}},
      {"Pow", {0, 1}},
      {"BatchNormalization", {1, 2}},
      {"LayerNormalization", {1, 2}},
      {"Expand", {0}},
      {"Gather", {0}}};
  for (const onnx::NodeProto &node : graph.node()) {
    for (const std::string &name : node.input())
      consumed.insert(name);
    if ((node.op_type() == "Identity" || node.op_type() == "Transpose") &&
        node.input_size() == 1 && node.output_size() == 1)
      aliases[node.output(0)] = node.input(0);
    auto it = trainableInputs.find(node.op_type());
    if (it == trainableInputs.end())
      continue;
    for (int index : it->second)
      if (index < node.input_size())
        trainable.insert(resolveAlias(node.input(index)));
  }
  for (const onnx::ValueInfoProto &output : graph.output())
    consumed.insert(output.name());
}

/// A dimension the model leaves open: a dim_param, no value, or 0/-1.
static bool isSymbolic(const onnx::TensorShapeProto::Dimension &dim) {
  return !dim.has_dim_value() || dim.dim_value() <= 0;
}

static std::string dimLabel(const onnx::TensorShapeProto::Dimension &dim) {
  if (dim.has_dim_param() && !dim.dim_param().empty())
    return dim.dim_param();
  return dim.has_dim_value() ? std::to_string(dim.dim_value()) : "?";
}

FailureOr<RankedTensorType>
Importer::inputType(const onnx::ValueInfoProto &input) {
  const onnx::TypeProto &type = input.type();
  int32_t onnxType =
      type.has_tensor_type() ? type.tensor_type().elem_type() : 0;
  // Integer inputs are token ids (an embedding's), int64 in the step.
  bool tokenIds = onnxType == onnx::TensorProto::INT64 ||
                  onnxType == onnx::TensorProto::INT32;
  if (onnxType != onnx::TensorProto::FLOAT && !tokenIds)
    return fileError() << "input '" << input.name()
                       << "' is neither a float32 tensor nor token ids "
                          "(int64 or int32); only those inputs are supported";
  if (!type.tensor_type().has_shape())
    return fileError() << "input '" << input.name()
                       << "' has no shape; give the graph inputs static "
                          "shapes (only the batch dimension may be symbolic)";
  SmallVector<int64_t> shape;
  const auto &dims = type.tensor_type().shape().dim();
  for (int i = 0; i < dims.size(); ++i) {
    const onnx::TensorShapeProto::Dimension &dim = dims[i];
    bool symbolic = isSymbolic(dim);
    if (symbolic && i != 0)
      return fileError() << "input '" << input.name() << "' dimension " << i
                         << " ('" << dimLabel(dim)
                         << "') is symbolic; only the batch dimension may be";
    if (symbolic && !options.batchSize)
      return fileError() << "input '" << input.name()
                         << "' has a symbolic batch dimension '"
                         << dimLabel(dim) << "'; pass --batch-size N";
    if (!symbolic && i == 0 && options.batchSize &&
        dim.dim_value() != *options.batchSize)
      return fileError() << "input '" << input.name()
                         << "' has a fixed batch size of " << dim.dim_value()
                         << ", but --batch-size is " << *options.batchSize
                         << "; pass --batch-size " << dim.dim_value()
                         << " or omit it";
    shape.push_back(symbolic ? *options.batchSize : dim.dim_value());
  }
  if (!isAddressable(shape))
    return fileError() << "input '" << input.name() << "' has the shape "
                       << formatInts(shape) << ", too large to address";
  Type elementType = tokenIds ? Type(builder.getI64Type())
                              : Type(builder.getF32Type());
  return RankedTensorType::get(shape, elementType);
}

static DictionaryAttr nameAttr(OpBuilder &builder, llvm::StringRef name) {
  return builder.getDictionaryAttr(
      builder.getNamedAttr("blpa.name", builder.getStringAttr(name)));
}

FailureOr<func::FuncOp>
Importer::createFunction(const onnx::GraphProto &graph) {
  SmallVector<Type> argTypes;
  SmallVector<Attribute> argAttrs;
  SmallVector<llvm::StringRef> argNames;
  for (const onnx::ValueInfoProto &input : graph.input()) {
    // Old exporters list the initializers among the inputs too.
    if (initializers.count(input.name()))
      continue;
    FailureOr<RankedTensorType> type = inputType(input);
    if (failed(type))
      return failure();
    argTypes.push_back(*type);
    argAttrs.push_back(nameAttr(builder, input.name()));
    argNames.push_back(input.name());
  }
  if (argTypes.empty())
    return fileError() << "the graph has no data input; the model needs at "
                          "least one float32 input";
  auto func = func::FuncOp::create(builder, fileLoc(), "forward",
                                   builder.getFunctionType(argTypes, {}));
  func.setAllArgAttrs(argAttrs);
  Block *body = func.addEntryBlock();
  for (auto [name, arg] : llvm::zip(argNames, body->getArguments()))
    values[name] = arg;
  builder.setInsertionPointToStart(body);
  return func;
}

std::vector<OnnxOpSupport> mlir::blpa::supportedOnnxOps() {
  std::vector<OnnxOpSupport> ops;
  for (const auto &entry : nodeHandlers())
    ops.push_back({entry.getKey().str(), entry.getValue().minOpset,
                   entry.getValue().maxOpset});
  llvm::sort(ops, [](const OnnxOpSupport &a, const OnnxOpSupport &b) {
    return a.opType < b.opType;
  });
  return ops;
}

/// The supported op types, sorted, for the unsupported-op message.
static std::string supportedOps() {
  SmallVector<std::string> names;
  for (const OnnxOpSupport &op : supportedOnnxOps())
    names.push_back(op.opType);
  return llvm::join(names, ", ");
}

LogicalResult Importer::importNode(const onnx::NodeProto &node,
                                   unsigned index) {
  NodeBinder binder(*this, node, index);
  if (!isDefaultDomain(node.domain()))
    return binder.error() << "unsupported op of domain '" << node.domain()
                          << "'; supported ops (default domain): "
                          << supportedOps();
  auto it = nodeHandlers().find(node.op_type());
  if (it == nodeHandlers().end())
    return binder.error() << "unsupported op; supported ops: "
                          << supportedOps();
  // A handler implements its op's versions in its range only; the op of
  // another opset may mean something else, so it is refused, not guessed.
  const NodeImporter &op = it->second;
  if (opset < op.minOpset || opset > op.maxOpset)
    return binder.error() << "the model's opset " << opset
                          << " is not supported for " << node.op_type()
                          << " (supported: opsets " << op.minOpset << " to "
                          << op.maxOpset
                          << "); re-export the model with an opset in that "
                             "range";
  if (failed(binder.checkAttributes()))
    return failure();
  return op.handler(binder);
}

/// The value computed for a graph output must match what the model
/// declares (dimensions it leaves symbolic aside).
LogicalResult Importer::checkOutput(const onnx::ValueInfoProto &output,
                                    Value value) {
  if (!output.has_type() || !output.type().has_tensor_type())
    return success();
  const onnx::TypeProto::Tensor &declared = output.type().tensor_type();
  if (declared.elem_type() != onnx::TensorProto::UNDEFINED &&
      declared.elem_type() != onnx::TensorProto::FLOAT)
    return fileError() << "graph output '" << output.name()
                       << "' is not a float32 tensor; only float32 outputs "
                          "are supported";
  if (!declared.has_shape())
    return success();
  ArrayRef<int64_t> shape = cast<ShapedType>(value.getType()).getShape();
  const auto &dims = declared.shape().dim();
  bool matches = dims.size() == static_cast<int>(shape.size());
  for (int i = 0; matches && i < dims.size(); ++i)
    matches = isSymbolic(dims[i]) || dims[i].dim_value() == shape[i];
  if (matches)
    return success();
  SmallVector<std::string> labels;
  for (const onnx::TensorShapeProto::Dimension &dim : dims)
    labels.push_back(dimLabel(dim));
  return fileError() << "graph output '" << output.name()
                     << "' is declared as [" << llvm::join(labels, ", ")
                     << "] but the graph computes " << formatInts(shape)
                     << "; the model's shapes are inconsistent";
}

LogicalResult Importer::finishFunction(func::FuncOp func,
                                       const onnx::GraphProto &graph) {
  SmallVector<Value> results;
  SmallVector<Attribute> resultAttrs;
  for (const onnx::ValueInfoProto &output : graph.output()) {
    Value value = values.lookup(output.name());
    if (!value)
      return fileError() << "graph output '" << output.name()
                         << "' is not a float32 tensor computed by the "
                            "graph; only float32 outputs are supported";
    if (failed(checkOutput(output, value)))
      return failure();
    results.push_back(value);
    resultAttrs.push_back(nameAttr(builder, output.name()));
  }
  if (results.empty())
    return fileError() << "the graph has no outputs";
  func::ReturnOp::create(builder, func.getLoc(), results);
  // Ops nothing reads (a Transpose of a weight that a gemm reads directly)
  // would still run in the step. Erased by hand, last first, rather than by
  // runRegionDCE, which takes a rewriter: this library is built with RTTI
  // against Debian's RTTI-less MLIR and so keeps to plain MLIR classes,
  // none of its polymorphic ones (CMakeLists.txt).
  SmallVector<Operation *> ops;
  for (Operation &op : func.getBody().front().without_terminator())
    ops.push_back(&op);
  for (Operation *op : llvm::reverse(ops))
    if (isOpTriviallyDead(op))
      op->erase();
  func.setType(builder.getFunctionType(func.getArgumentTypes(),
                                       ValueRange(results).getTypes()));
  func.setAllResultAttrs(resultAttrs);
  return success();
}

/// A verifier failure is an importer bug; it is still one line.
LogicalResult Importer::verifyModule(ModuleOp module) {
  std::string reason;
  LogicalResult verified = failure();
  {
    ScopedDiagnosticHandler capture(context, [&](Diagnostic &diag) {
      return NodeBinder::keepFirst(diag, reason);
    });
    verified = verify(module);
  }
  if (succeeded(verified))
    return success();
  return fileError() << "the imported module is not valid blpa IR (an "
                        "importer bug; please report it): "
                     << reason;
}

/// The parameter `name` (a float initializer), created where first used.
Value Importer::param(Location loc, llvm::StringRef name) {
  const onnx::TensorProto *tensor = initializers.lookup(name);
  SmallVector<int64_t> shape(tensor->dims().begin(), tensor->dims().end());
  auto type = RankedTensorType::get(shape, builder.getF32Type());
  Value value = ParamOp::create(builder, loc, type, name,
                                /*trainable=*/trainable.contains(name));
  values[name] = value;
  return value;
}

FailureOr<OwningOpRef<ModuleOp>> Importer::run(const onnx::ModelProto &model) {
  if (failed(checkOpset(model)))
    return failure();
  const onnx::GraphProto &graph = model.graph();
  scanGraph(graph);
  OwningOpRef<ModuleOp> module = ModuleOp::create(fileLoc());
  SmallString<256> absolute(path);
  (void)llvm::sys::fs::make_absolute(absolute);
  (*module)->setAttr("blpa.source", builder.getStringAttr(absolute));
  builder.setInsertionPointToStart(module->getBody());
  FailureOr<func::FuncOp> func = createFunction(graph);
  if (failed(func))
    return failure();
  for (auto [index, node] : llvm::enumerate(graph.node()))
    if (failed(importNode(node, index)))
      return failure();
  if (failed(finishFunction(*func, graph)) || failed(verifyModule(*module)))
    return failure();
  return module;
}

static FailureOr<OwningOpRef<ModuleOp>>
importGuarded(MLIRContext *context, llvm::StringRef bytes, llvm::StringRef path,
              const ImportOptions &options) {
  Location loc = FileLineColLoc::get(context, path, 0, 0);
  if (options.batchSize && *options.batchSize <= 0)
    return emitError(loc) << path << ": --batch-size must be positive, got "
                          << *options.batchSize;
  // Nothing thrown by protobuf, ONNX or the standard library may escape
  // into the compiler.
  try {
    onnx::ModelProto model;
    std::string error = readModel(path, bytes, model);
    if (!error.empty())
      return emitError(loc, error);
    return Importer(context, path, options).run(model);
  } catch (const std::exception &e) {
    return emitError(loc) << path << ": cannot import the model: " << e.what();
  } catch (...) {
    return emitError(loc) << path
                          << ": cannot import the model: unknown "
                             "exception";
  }
}

/// The import's errors reach the caller as exactly one diagnostic on one
/// line, whatever the model's names contain (they are quoted in messages).
FailureOr<OwningOpRef<ModuleOp>>
mlir::blpa::importOnnxBuffer(MLIRContext *context, llvm::StringRef bytes,
                             llvm::StringRef path,
                             const ImportOptions &options) {
  context->loadDialect<BlpaDialect, func::FuncDialect>();
  std::optional<Location> errorLoc;
  std::string message;
  FailureOr<OwningOpRef<ModuleOp>> module = failure();
  {
    ScopedDiagnosticHandler capture(context, [&](Diagnostic &diag) {
      if (diag.getSeverity() != DiagnosticSeverity::Error)
        return failure();
      if (!errorLoc) {
        errorLoc = diag.getLocation();
        message = oneLine(diag.str());
      }
      return success();
    });
    module = importGuarded(context, bytes, path, options);
  }
  if (!errorLoc && succeeded(module))
    return module;
  if (!errorLoc)
    return emitError(FileLineColLoc::get(context, path, 0, 0))
           << oneLine(path)
           << ": the import failed without a reason (an "
              "importer bug; please report it)";
  return emitError(*errorLoc, message);
}

FailureOr<OwningOpRef<ModuleOp>>
mlir::blpa::importOnnxFile(MLIRContext *context, llvm::StringRef path,
                           const ImportOptions &options) {
  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> file = readModelFile(path, error);
  if (!file)
    return emitError(FileLineColLoc::get(context, path, 0, 0), oneLine(error));
  return importOnnxBuffer(context, file->getBuffer(), path, options);
}
