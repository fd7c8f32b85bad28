//===- Importer.h - The ONNX graph walk and its per-node binder --*- C++
//-*-===//
//
// Private to BLPAImport. `Importer` walks one ONNX graph and owns the state
// of the walk (values by name, parameters, compile-time integer tensors);
// `NodeBinder` is what a per-op handler sees of it: one node's inputs,
// attributes and outputs, and errors that name the node (as torch-mlir's
// OpBinder does for its ONNX patterns).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_LIB_IMPORT_IMPORTER_H
#define BLPA_LIB_IMPORT_IMPORTER_H

#include "blpa/Import/OnnxImporter.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/OpDefinition.h"
#include "onnx/onnx_pb.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <deque>
#include <optional>
#include <string>

namespace mlir {
namespace func {
class FuncOp;
} // namespace func

namespace blpa {
namespace onnximport {

/// An integer tensor known at compile time: an int64 initializer, a Constant
/// node, or a shape computation (Shape, Gather, ...) on static shapes. These
/// never become IR; they feed Reshape's target shape and similar operands.
struct IntTensor {
  /// Empty for a scalar.
  SmallVector<int64_t> shape;
  SmallVector<int64_t> values;
};

/// The number of elements of a tensor of shape `dims`, or nullopt when a
/// dimension is negative or the count overflows (a corrupt model).
std::optional<int64_t> elementCount(ArrayRef<int64_t> dims);

/// Whether a float32 tensor of shape `dims` can be in the IR: no dimension
/// is negative and its size in bytes fits in int64 (the memory plan counts
/// bytes). Every tensor type the importer builds is checked so.
bool isAddressable(ArrayRef<int64_t> dims);

/// The most elements a compile-time integer tensor computed at import
/// (ConstantOfShape, broadcast arithmetic, Concat) may have. They are shapes
/// and pads, a few elements; the bound keeps a small model from making the
/// importer allocate without limit.
constexpr int64_t maxComputedIntElements = 1 << 20;

/// The elements of an integer (int64, int32, bool) tensor stored in the
/// model, or failure for other types. (readModel has read any external data
/// into the tensors.)
FailureOr<IntTensor> readIntTensor(const onnx::TensorProto &tensor);

/// The value of a one-element float tensor stored in the model.
/// The value of every element of a float32 tensor when they are all equal
/// (and there is at least one).
FailureOr<double> readFloatSplat(const onnx::TensorProto &tensor);
FailureOr<double> readFloatScalar(const onnx::TensorProto &tensor);

/// The name a node's errors use: its own, or "<OpType>_<index>".
std::string nodeName(const onnx::NodeProto &node, unsigned index);

/// `message` with control characters (newlines in names) as spaces.
std::string oneLine(llvm::StringRef message);

/// "[1, 2, 3]", for messages.
std::string formatInts(ArrayRef<int64_t> values);

/// "0.5", for messages.
std::string formatFloat(double value);

class Importer;

/// The number of results of `OpTy`, an op with a fixed number of them.
template <typename OpTy, unsigned N = 2> constexpr unsigned fixedResultCount() {
  if constexpr (OpTy::template hasTrait<OpTrait::OneResult>()) {
    return 1;
  } else if constexpr (OpTy::template hasTrait<
                           OpTrait::NResults<N>::template Impl>()) {
    return N;
  } else {
    static_assert(N < 8, "the op has no fixed number of results");
    return fixedResultCount<OpTy, N + 1>();
  }
}

/// One node being imported.
class NodeBinder {
public:
  NodeBinder(Importer &importer, const onnx::NodeProto &node, unsigned index);

  const onnx::NodeProto &node() const { return nodeProto; }
  /// The node's position in the graph (a stable id, e.g. of its random
  /// stream).
  unsigned index() const { return nodeIndex; }
  llvm::StringRef opType() const { return nodeProto.op_type(); }
  /// The model's default-domain opset, for version-dependent semantics.
  int64_t opset() const;
  OpBuilder &builder();
  Location loc() const { return location; }

  /// An error at the node, already prefixed "<file>: node '<name>'
  /// (<OpType>): "; stream "<what is wrong>; <what to do>" into it.
  InFlightDiagnostic error();

  // Inputs. `input` fails (with an error) when the input is absent;
  // `optionalInput` yields a null Value instead.
  bool hasInput(int index) const;
  FailureOr<Value> input(int index);
  FailureOr<Value> optionalInput(int index);
  /// Whether input `index` is a run-time integer tensor (token ids: an int64
  /// or int32 graph input), which `input` refuses.
  bool isIndexInput(int index) const;
  /// Input `index` as token ids, or an error when it is something else.
  FailureOr<Value> indexInput(int index);
  /// A compile-time integer tensor input (e.g. Reshape's shape).
  FailureOr<IntTensor> intInput(int index);
  /// Whether input `index` is a compile-time integer tensor.
  bool isIntInput(int index) const;
  /// A float scalar known at compile time (an initializer or a Constant),
  /// e.g. Dropout's ratio.
  FailureOr<double> floatScalarInput(int index);
  /// A float32 scalar operand that may be given at run time (Clip's bounds,
  /// Pad's value): its number when known at compile time (an initializer
  /// or a Constant), else the 1-element tensor (a graph input or a
  /// computed value) the op reads when the step runs.
  struct FloatScalar {
    std::optional<double> constant;
    Value runtime;
  };
  FailureOr<FloatScalar> floatScalarOperand(int index);
  /// Whether input `index` is a float Constant's tensor, and that tensor.
  bool isFloatConstantInput(int index) const;
  const onnx::TensorProto *floatConstantInput(int index) const;
  /// A float copy of an integer tensor, owned by the importer (Cast).
  const onnx::TensorProto &castToFloat(const IntTensor &tensor);

  // Attributes, with ONNX's defaults. Their types are checked against the
  // known attribute names before the handler runs (checkAttributes).
  bool hasAttr(llvm::StringRef name) const { return attrs.count(name); }
  int64_t getInt(llvm::StringRef name, int64_t otherwise) const;
  double getFloat(llvm::StringRef name, double otherwise) const;
  std::string getString(llvm::StringRef name, llvm::StringRef otherwise) const;
  SmallVector<int64_t> getInts(llvm::StringRef name,
                               ArrayRef<int64_t> otherwise) const;
  const onnx::TensorProto *getTensor(llvm::StringRef name) const;
  LogicalResult checkAttributes();
  /// Checks that attribute `name` (its value `values`) has `size` entries,
  /// each at least `min`.
  LogicalResult checkInts(llvm::StringRef name, ArrayRef<int64_t> values,
                          size_t size, int64_t min);

  // Outputs. Every handler computes output 0; the node's other (optional)
  // outputs must then be unused by other nodes and not graph outputs.
  LogicalResult setOutput(FailureOr<Value> value);
  /// Output i is values[i] (a node with several float outputs: Split).
  LogicalResult setOutputs(ArrayRef<Value> values);
  LogicalResult setIntOutput(IntTensor value);
  /// A float Constant node's tensor: not IR, only readable by
  /// floatScalarInput.
  LogicalResult setFloatConstantOutput(const onnx::TensorProto &tensor);

  /// Builds an op whose result types its shape rule infers and returns its
  /// first result. Operands that break the rule (a model with inconsistent
  /// shapes) are reported at the node instead of aborting, which the
  /// generated inferring builders would do.
  template <typename OpTy, typename... Args>
  FailureOr<Value> create(Args &&...args) {
    OperationState state(location, OpTy::getOperationName());
    // The generated builders taking result types check their number (with
    // assertions on): placeholders stand for the types inferred below.
    SmallVector<Type> types(fixedResultCount<OpTy>(), builder().getNoneType());
    OpTy::build(builder(), state, types, std::forward<Args>(args)...);
    state.types.clear();
    types.clear();
    std::string reason;
    LogicalResult inferred = failure();
    {
      ScopedDiagnosticHandler capture(
          context(), [&](Diagnostic &diag) { return keepFirst(diag, reason); });
      inferred = OpTy::inferReturnTypes(
          context(), state.location, state.operands,
          state.attributes.getDictionary(context()), state.getRawProperties(),
          state.regions, types);
    }
    if (failed(inferred))
      return error() << "invalid operand shapes: " << reason;
    for (Type type : types)
      if (auto shaped = dyn_cast<ShapedType>(type);
          shaped && !isAddressable(shaped.getShape()))
        return error() << "the result shape " << formatInts(shaped.getShape())
                       << " is too large to address";
    state.addTypes(types);
    return builder().create(state)->getResult(0);
  }

  /// `value` reshaped (a blpa.reshape unless the shape is already `shape`).
  Value reshape(Value value, ArrayRef<int64_t> shape);

  /// Records the first diagnostic's message, as one line, into `reason`.
  static LogicalResult keepFirst(Diagnostic &diag, std::string &reason);

private:
  MLIRContext *context();
  LogicalResult checkParamData(llvm::StringRef input,
                               const onnx::TensorProto &tensor);
  FailureOr<Value> constantOperand(const std::string &input);
  const onnx::AttributeProto *attr(llvm::StringRef name) const {
    return attrs.lookup(name);
  }

  Importer &importer;
  const onnx::NodeProto &nodeProto;
  unsigned nodeIndex;
  std::string name;
  Location location;
  llvm::StringMap<const onnx::AttributeProto *> attrs;
};

/// The default-domain opsets the importer accepts for a model as a whole.
constexpr int64_t minSupportedOpset = 1;
constexpr int64_t maxSupportedOpset = 21;

/// A per-op handler: builds the node's ops and records its output.
using NodeHandler = LogicalResult (*)(NodeBinder &);

/// What the importer knows of one ONNX op type: its handler and the model
/// opsets whose version of the op the handler implements (a node of a model
/// outside them is refused rather than imported with other semantics).
struct NodeImporter {
  NodeHandler handler;
  int64_t minOpset = minSupportedOpset;
  int64_t maxOpset = maxSupportedOpset;
};

/// The supported ops by ONNX op type (default domain).
const llvm::StringMap<NodeImporter> &nodeHandlers();

/// Walks one model's graph into a module.
class Importer {
public:
  Importer(MLIRContext *context, llvm::StringRef path,
           const ImportOptions &options);

  FailureOr<OwningOpRef<ModuleOp>> run(const onnx::ModelProto &model);

private:
  friend class NodeBinder;

  InFlightDiagnostic fileError();
  Location fileLoc();
  LogicalResult checkOpset(const onnx::ModelProto &model);
  void scanGraph(const onnx::GraphProto &graph);
  FailureOr<RankedTensorType> inputType(const onnx::ValueInfoProto &input);
  FailureOr<func::FuncOp> createFunction(const onnx::GraphProto &graph);
  LogicalResult importNode(const onnx::NodeProto &node, unsigned index);
  LogicalResult checkOutput(const onnx::ValueInfoProto &output, Value value);
  LogicalResult finishFunction(func::FuncOp func,
                               const onnx::GraphProto &graph);
  LogicalResult verifyModule(ModuleOp module);
  Value param(Location loc, llvm::StringRef name);
  llvm::StringRef resolveAlias(llvm::StringRef name);

  MLIRContext *context;
  std::string path;
  ImportOptions options;
  OpBuilder builder;
  int64_t opset = 0;
  /// ONNX value names to the tensors computed so far.
  llvm::StringMap<Value> values;
  /// Float initializers; each becomes a blpa.param at its first use.
  llvm::StringMap<const onnx::TensorProto *> initializers;
  /// Float Constant nodes: readable as compile-time scalars only.
  llvm::StringMap<const onnx::TensorProto *> floatConstants;
  /// Float constants the importer computed (integer constants cast to
  /// float), owned here; a deque keeps their addresses stable.
  std::deque<onnx::TensorProto> computedConstants;
  /// Compile-time integer tensors by name.
  llvm::StringMap<IntTensor> intTensors;
  /// Initializers that feed weights, biases and scales: they get gradients.
  llvm::StringSet<> trainable;
  /// Names read by some node or listed as graph outputs.
  llvm::StringSet<> consumed;
  /// Identity and Transpose outputs to their inputs, to find the
  /// initializer behind a weight.
  llvm::StringMap<std::string> aliases;
};

} // namespace onnximport
} // namespace blpa
} // namespace mlir

#endif // BLPA_LIB_IMPORT_IMPORTER_H
