//===- NodeImporters.cpp - One handler per ONNX op type -------------------===//
//
// Each handler reads its node through a NodeBinder, builds blpa ops (whose
// result types their shape rules infer) and records output 0. Integer shape
// computations (Shape, Gather, Unsqueeze, Concat, Constant) are folded at
// compile time; they only feed Reshape's target shape.
//
//===----------------------------------------------------------------------===//

#include "Importer.h"

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/CheckedArithmetic.h"
#include "llvm/Support/MathExtras.h"

#include "../Runtime/Common/TriluMask.h"

#include <limits>

using namespace mlir;
using namespace mlir::blpa;
using namespace mlir::blpa::onnximport;

//===----------------------------------------------------------------------===//
// Convolution and pooling windows
//===----------------------------------------------------------------------===//

namespace {
struct Window {
  SmallVector<int64_t> kernel, strides, dilations, pads;
};
} // namespace

/// The extent of a kernel of `kernel` taps `dilation` apart (both >= 1), or
/// nullopt when it overflows int64 (attributes are the model's word).
static std::optional<int64_t> kernelExtent(int64_t kernel, int64_t dilation) {
  return llvm::checkedMulAdd(dilation, kernel - 1, int64_t(1));
}

/// ONNX's auto_pad (other than NOTSET, the explicit `pads`) as explicit
/// pads (all begins, then all ends) of `inputShape` ([N, C, spatial...]).
/// SAME_UPPER and SAME_LOWER pad so that the output size is
/// ceil(input / stride), the odd element at the end (UPPER) or the start
/// (LOWER).
static FailureOr<SmallVector<int64_t>>
resolvePads(NodeBinder &b, ArrayRef<int64_t> inputShape, const Window &w) {
  size_t spatial = w.kernel.size();
  std::string autoPad = b.getString("auto_pad", "NOTSET");
  if (autoPad == "VALID")
    return SmallVector<int64_t>(2 * spatial, 0);
  if (autoPad != "SAME_UPPER" && autoPad != "SAME_LOWER")
    return b.error() << "attribute 'auto_pad' = '" << autoPad
                     << "' is not supported; use NOTSET, VALID, SAME_UPPER "
                        "or SAME_LOWER";
  SmallVector<int64_t> pads(2 * spatial);
  for (size_t i = 0; i < spatial; ++i) {
    // Written so that no step overflows, whatever the attributes: the last
    // window starts at (out - 1) * stride, before `in`.
    int64_t in = inputShape[2 + i], stride = w.strides[i];
    int64_t out = in / stride + (in % stride != 0);
    int64_t span = *kernelExtent(w.kernel[i], w.dilations[i]);
    int64_t total = std::max<int64_t>(0, span - (in - (out - 1) * stride));
    int64_t small = total / 2, large = total - small;
    pads[i] = autoPad == "SAME_UPPER" ? small : large;
    pads[i + spatial] = autoPad == "SAME_UPPER" ? large : small;
  }
  return pads;
}

/// The spatial rank (1, 2 or 3) of an [N, C, L], [N, C, H, W] or
/// [N, C, D, H, W] input.
static FailureOr<int64_t> spatialRank(NodeBinder &b, Value input) {
  int64_t rank = getShape(input).size();
  if (rank < 3 || rank > 5)
    return b.error() << "the input has rank " << rank
                     << "; only 1-D, 2-D and 3-D (rank-3 NCL, rank-4 NCHW or "
                        "rank-5 NCDHW) inputs are supported";
  return rank - 2;
}

/// A 1-D window's attribute `values` (one entry, or begin and end pads)
/// as the 2-D window over [N, C, 1, L] that computes the same: the extra
/// height has kernel, stride and dilation 1 and no padding.
static SmallVector<int64_t> liftTo2D(ArrayRef<int64_t> values, int64_t fill) {
  if (values.size() == 2)
    return {fill, values[0], fill, values[1]};
  return {fill, values[0]};
}

/// `shape` with a height of 1 inserted when it is 1-D ([N, C, L] to
/// [N, C, 1, L]).
static SmallVector<int64_t> liftShape(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> lifted(shape);
  if (shape.size() == 3)
    lifted.insert(lifted.begin() + 2, 1);
  return lifted;
}

/// `x` as liftShape makes it: 1-D convolution and pooling run as 2-D ones.
static Value liftInput(NodeBinder &b, Value x) {
  return b.reshape(x, liftShape(getShape(x)));
}

/// A 2-D result back as the 1-D one when `original` was 1-D.
static Value lowerResult(NodeBinder &b, Value result, Value original) {
  ArrayRef<int64_t> shape = getShape(result);
  if (getShape(original).size() != 3)
    return result;
  return b.reshape(result, {shape[0], shape[1], shape[3]});
}

/// The window attributes of a 1-D, 2-D or 3-D convolution or pooling over
/// `input`; a 1-D window as the 2-D one liftTo2D makes.
static FailureOr<Window> readWindow(NodeBinder &b, Value input,
                                    ArrayRef<int64_t> kernel) {
  FailureOr<int64_t> spatial = spatialRank(b, input);
  if (failed(spatial))
    return failure();
  Window w;
  SmallVector<int64_t> ones(*spatial, 1), zeros(2 * *spatial, 0);
  w.kernel.assign(kernel.begin(), kernel.end());
  w.strides = b.getInts("strides", ones);
  w.dilations = b.getInts("dilations", ones);
  if (failed(b.checkInts("kernel_shape", w.kernel, *spatial, 1)) ||
      failed(b.checkInts("strides", w.strides, *spatial, 1)) ||
      failed(b.checkInts("dilations", w.dilations, *spatial, 1)))
    return failure();
  if (*spatial == 1) {
    w.kernel = liftTo2D(w.kernel, 1);
    w.strides = liftTo2D(w.strides, 1);
    w.dilations = liftTo2D(w.dilations, 1);
  }
  for (auto [k, d] : llvm::zip(w.kernel, w.dilations))
    if (!kernelExtent(k, d))
      return b.error() << "kernel " << formatInts(w.kernel)
                       << " with dilations " << formatInts(w.dilations)
                       << " is too large";
  FailureOr<SmallVector<int64_t>> pads;
  if (b.getString("auto_pad", "NOTSET") == "NOTSET") {
    pads = b.getInts("pads", zeros);
    if (failed(b.checkInts("pads", *pads, 2 * *spatial, 0)))
      return failure();
    if (*spatial == 1)
      pads = liftTo2D(*pads, 0);
  } else {
    pads = resolvePads(b, liftShape(getShape(input)), w);
  }
  if (failed(pads))
    return failure();
  w.pads = std::move(*pads);
  return w;
}

/// A pooling window: kernel_shape is required.
static FailureOr<Window> readPoolWindow(NodeBinder &b, Value input) {
  if (!b.hasAttr("kernel_shape"))
    return b.error() << "attribute 'kernel_shape' is missing; it is required";
  return readWindow(b, input, b.getInts("kernel_shape", {}));
}

static LogicalResult importConv(NodeBinder &b) {
  FailureOr<Value> x = b.input(0), w = b.input(1), bias = b.optionalInput(2);
  if (failed(x) || failed(w) || failed(bias))
    return failure();
  ArrayRef<int64_t> wShape = getShape(*w);
  if (wShape.size() < 3 || wShape.size() > 5)
    return b.error() << "the weight has rank " << wShape.size()
                     << "; only 1-D, 2-D and 3-D convolutions (rank-3, rank-4 "
                        "and rank-5 weights) are supported";
  if (getShape(*x).size() != wShape.size())
    return b.error() << "the input has rank " << getShape(*x).size()
                     << " but the weight has rank " << wShape.size()
                     << "; they must match";
  SmallVector<int64_t> kernel = b.getInts("kernel_shape", wShape.drop_front(2));
  if (ArrayRef<int64_t>(kernel) != wShape.drop_front(2))
    return b.error() << "attribute 'kernel_shape' = " << formatInts(kernel)
                     << " does not match the weight's shape "
                     << formatInts(wShape);
  FailureOr<Window> window = readWindow(b, *x, kernel);
  if (failed(window))
    return failure();
  int64_t group = b.getInt("group", 1);
  if (group < 1)
    return b.error() << "attribute 'group' = " << group
                     << " is invalid; it must be >= 1";
  FailureOr<Value> y =
      b.create<ConvOp>(liftInput(b, *x), liftInput(b, *w), *bias,
                       window->strides, window->pads, window->dilations, group);
  if (failed(y))
    return failure();
  return b.setOutput(lowerResult(b, *y, *x));
}

static LogicalResult importMaxPool(NodeBinder &b) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  if (int64_t order = b.getInt("storage_order", 0))
    return b.error() << "attribute 'storage_order' = " << order
                     << " is not supported; use 0 (row major)";
  FailureOr<Window> w = readPoolWindow(b, *x);
  if (failed(w))
    return failure();
  FailureOr<Value> y =
      b.create<MaxPoolOp>(liftInput(b, *x), w->kernel, w->strides, w->pads,
                          b.getInt("ceil_mode", 0) != 0, w->dilations);
  if (failed(y))
    return failure();
  return b.setOutput(lowerResult(b, *y, *x));
}

/// With ceil_mode, a window running past the end padding is clipped: the
/// divisor is its taps inside the input (count_include_pad 0) or inside the
/// padded extent (1), as ONNX's reference and PyTorch compute.
static LogicalResult importAveragePool(NodeBinder &b) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  FailureOr<Window> w = readPoolWindow(b, *x);
  if (failed(w))
    return failure();
  if (llvm::any_of(w->dilations, [](int64_t d) { return d != 1; }))
    return b.error() << "attribute 'dilations' = "
                     << formatInts(b.getInts("dilations", {}))
                     << " is not supported; AveragePool supports dilations "
                        "1 only";
  FailureOr<Value> y =
      b.create<AvgPoolOp>(liftInput(b, *x), w->kernel, w->strides, w->pads,
                          b.getInt("ceil_mode", 0) != 0, w->dilations,
                          b.getInt("count_include_pad", 0) != 0);
  if (failed(y))
    return failure();
  return b.setOutput(lowerResult(b, *y, *x));
}

static LogicalResult importGlobalAveragePool(NodeBinder &b) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  return b.setOutput(b.create<GlobalAvgPoolOp>(*x));
}

/// The maximum of each row of `x` viewed as [outer, channels, size]: a max
/// pooling of the [outer, channels, 1, size] view with one window per row,
/// giving [outer, channels, 1, 1]; its gradient goes to each row's first
/// maximum.
static FailureOr<Value> rowMaxima(NodeBinder &b, Value x, int64_t outer,
                                  int64_t channels, int64_t size) {
  return b.create<MaxPoolOp>(
      b.reshape(x, {outer, channels, 1, size}), ArrayRef<int64_t>{1, size},
      ArrayRef<int64_t>{1, 1}, ArrayRef<int64_t>{0, 0, 0, 0}, false,
      ArrayRef<int64_t>{1, 1});
}

/// GlobalMaxPool of [N, C, D1, ...] as a max pooling of [N, C, 1, D1 * ...]
/// over its whole width, reshaped to [N, C, 1, ...].
static LogicalResult importGlobalMaxPool(NodeBinder &b) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  ArrayRef<int64_t> shape = getShape(*x);
  if (shape.size() < 3)
    return b.error() << "the input has rank " << shape.size()
                     << "; it must be [N, C, D1, ...]";
  int64_t size = ShapedType::getNumElements(shape.drop_front(2));
  FailureOr<Value> y = rowMaxima(b, *x, shape[0], shape[1], size);
  if (failed(y))
    return failure();
  SmallVector<int64_t> outShape(shape.size(), 1);
  outShape[0] = shape[0];
  outShape[1] = shape[1];
  return b.setOutput(b.reshape(*y, outShape));
}

//===----------------------------------------------------------------------===//
// Normalization and elementwise ops
//===----------------------------------------------------------------------===//

/// Whether a BatchNormalization normalizes with the batch's statistics.
/// Opset 14 added training_mode; before it a node in training mode was one
/// that asks for the statistics outputs (and, before opset 7, has is_test 0).
static bool isTrainingBatchNorm(NodeBinder &b) {
  if (b.opset() >= 14)
    return b.getInt("training_mode", 0) != 0;
  if (b.getInt("is_test", 0) != 0)
    return false;
  const onnx::NodeProto &node = b.node();
  for (int i = 1; i < node.output_size(); ++i)
    if (!node.output(i).empty())
      return true;
  return false;
}

static LogicalResult importBatchNormalization(NodeBinder &b) {
  if (int64_t spatial = b.getInt("spatial", 1); spatial != 1)
    return b.error() << "attribute 'spatial' = " << spatial
                     << " is not supported; only per-channel statistics "
                        "(spatial = 1)";
  SmallVector<Value, 5> operands;
  for (int i = 0; i < 5; ++i) {
    FailureOr<Value> operand = b.input(i);
    if (failed(operand))
      return failure();
    operands.push_back(*operand);
  }
  llvm::APFloat epsilon(b.getFloat("epsilon", 1e-5));
  llvm::APFloat momentum(b.getFloat("momentum", 0.9));
  // ONNX's training-mode outputs 1.. are the updated running statistics;
  // blpa.batch_norm's extra results are the batch statistics its gradient
  // needs, so setOutput's check that those outputs are unused is what
  // makes this mapping right.
  if (isTrainingBatchNorm(b))
    return b.setOutput(b.create<BatchNormOp>(operands[0], operands[1],
                                             operands[2], operands[3],
                                             operands[4], epsilon, momentum));
  return b.setOutput(b.create<BatchNormInferenceOp>(
      operands[0], operands[1], operands[2], operands[3], operands[4], epsilon,
      momentum));
}

/// The node's `axis` attribute (`otherwise` when absent) counted from 0
/// for an input of rank `rank`, or an error when it is not one of its
/// dimensions.
static FailureOr<int64_t> axisAttribute(NodeBinder &b, int64_t otherwise,
                                        int64_t rank) {
  int64_t axis = b.getInt("axis", otherwise);
  if (axis < -rank || axis >= rank)
    return b.error() << "attribute 'axis' = " << axis
                     << " is out of range for an input of rank " << rank
                     << "; expected " << -rank << " to " << rank - 1;
  return axis < 0 ? axis + rank : axis;
}

/// An element-wise op of input 0 with the given attributes.
template <typename OpTy, typename... Attrs>
static LogicalResult importElementwise(NodeBinder &b, Attrs... attrs) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  return b.setOutput(b.create<OpTy>(*x, attrs...));
}

//===----------------------------------------------------------------------===//
// Compile-time integer tensors beyond shapes: the chains exporters write for
// F.pad's pads (ConstantOfShape, Cast, Slice, Transpose, Reshape, integer
// arithmetic) are evaluated at import; Slice and Transpose of float tensors
// become blpa ops.
//===----------------------------------------------------------------------===//

static FailureOr<IntTensor> shapeOperand(NodeBinder &b, int index);

/// Row-major strides of `shape`.
static SmallVector<int64_t> stridesOf(ArrayRef<int64_t> shape) {
  SmallVector<int64_t> strides(shape.size(), 1);
  for (int64_t d = int64_t(shape.size()) - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * shape[d + 1];
  return strides;
}

/// The element of `t` at the multi-index `index` broadcast to its shape
/// (right-aligned; size-1 dimensions repeat).
static int64_t broadcastAt(const IntTensor &t, ArrayRef<int64_t> index) {
  SmallVector<int64_t> strides = stridesOf(t.shape);
  size_t skip = index.size() - t.shape.size();
  int64_t offset = 0;
  for (size_t d = 0; d < t.shape.size(); ++d)
    offset += (t.shape[d] == 1 ? 0 : index[skip + d]) * strides[d];
  return t.values.empty() ? 0 : t.values[offset];
}

/// A computed integer tensor of shape `shape` must stay small (it is held
/// in memory while the importer runs).
static LogicalResult checkComputedCount(NodeBinder &b,
                                        ArrayRef<int64_t> shape) {
  std::optional<int64_t> count = elementCount(shape);
  if (count && *count <= maxComputedIntElements)
    return success();
  return b.error() << "the integer result of shape " << formatInts(shape)
                   << " is too large; compile-time integer tensors (shapes) "
                      "are limited to "
                   << maxComputedIntElements << " elements";
}

/// `x op y` for the node's op (Add, Sub, Mul or Div), as ONNX's int64
/// arithmetic, except that what would overflow is an error, not a wrap.
static FailureOr<int64_t> foldIntOp(NodeBinder &b, int64_t x, int64_t y) {
  StringRef op = b.opType();
  int64_t result = 0;
  bool overflow = false;
  if (op == "Add") {
    overflow = llvm::AddOverflow(x, y, result);
  } else if (op == "Sub") {
    overflow = llvm::SubOverflow(x, y, result);
  } else if (op == "Mul") {
    overflow = llvm::MulOverflow(x, y, result);
  } else {
    if (y == 0)
      return b.error() << "integer division by zero";
    overflow = x == std::numeric_limits<int64_t>::min() && y == -1;
    result = overflow ? 0 : x / y;
  }
  if (overflow)
    return b.error() << "integer " << op << " of " << x << " and " << y
                     << " overflows int64";
  return result;
}

/// Folds an element-wise op of compile-time integer tensors `operands`
/// (numpy broadcasting): `op` maps each element's operand values to the
/// result's.
static LogicalResult
foldIntElementwise(NodeBinder &b, ArrayRef<IntTensor> operands,
                   function_ref<FailureOr<int64_t>(ArrayRef<int64_t>)> op) {
  SmallVector<int64_t> shape;
  for (const IntTensor &operand : operands) {
    FailureOr<SmallVector<int64_t>> joint =
        broadcastShapes(shape, operand.shape);
    if (failed(joint))
      return b.error() << "integer operands of shapes " << formatInts(shape)
                       << " and " << formatInts(operand.shape)
                       << " do not broadcast";
    shape = std::move(*joint);
  }
  IntTensor result;
  result.shape = shape;
  if (failed(checkComputedCount(b, result.shape)))
    return failure();
  SmallVector<int64_t> strides = stridesOf(result.shape);
  int64_t count = ShapedType::getNumElements(result.shape);
  SmallVector<int64_t> index(shape.size()), values(operands.size());
  for (int64_t i = 0; i < count; ++i) {
    for (size_t d = 0; d < shape.size(); ++d)
      index[d] = i / strides[d] % result.shape[d];
    for (auto [value, operand] : llvm::zip_equal(values, operands))
      value = broadcastAt(operand, index);
    FailureOr<int64_t> value = op(values);
    if (failed(value))
      return failure();
    result.values.push_back(*value);
  }
  return b.setIntOutput(std::move(result));
}

/// The node's inputs, all compile-time integer tensors (shapeOperand).
static FailureOr<SmallVector<IntTensor>> intOperands(NodeBinder &b) {
  SmallVector<IntTensor> operands;
  for (int i = 0; i < b.node().input_size(); ++i) {
    FailureOr<IntTensor> operand = shapeOperand(b, i);
    if (failed(operand))
      return failure();
    operands.push_back(std::move(*operand));
  }
  return operands;
}

/// Add, Sub, Mul or Div of two integer tensors, with broadcasting.
static LogicalResult foldIntArithmetic(NodeBinder &b) {
  return foldIntElementwise(
      b, {*b.intInput(0), *b.intInput(1)},
      [&](ArrayRef<int64_t> v) { return foldIntOp(b, v[0], v[1]); });
}

/// Equal, Less, Greater, Not and Where on compile-time integer tensors
/// (booleans as 0 and 1), as exporters write them to compute shapes
/// (torch's expand(-1) becomes Equal(shape, -1) and Where).
static LogicalResult importIntLogic(NodeBinder &b) {
  FailureOr<SmallVector<IntTensor>> operands = intOperands(b);
  if (failed(operands))
    return failure();
  using Fold = int64_t (*)(ArrayRef<int64_t>);
  Fold fold =
      llvm::StringSwitch<Fold>(b.opType())
          .Case("Equal",
                [](ArrayRef<int64_t> v) { return int64_t(v[0] == v[1]); })
          .Case("Less",
                [](ArrayRef<int64_t> v) { return int64_t(v[0] < v[1]); })
          .Case("Greater",
                [](ArrayRef<int64_t> v) { return int64_t(v[0] > v[1]); })
          .Case("Not", [](ArrayRef<int64_t> v) { return int64_t(v[0] == 0); })
          .Default([](ArrayRef<int64_t> v) { // Where
            return v[0] ? v[1] : v[2];
          });
  return foldIntElementwise(
      b, *operands,
      [fold](ArrayRef<int64_t> v) -> FailureOr<int64_t> { return fold(v); });
}

/// Cast: between integer types of compile-time tensors, or float32 to
/// float32; nothing else (blpa computes in float32).
static LogicalResult importCast(NodeBinder &b) {
  int64_t to = b.getInt("to", 0);
  bool toInteger =
      to == onnx::TensorProto::INT64 || to == onnx::TensorProto::INT32 ||
      to == onnx::TensorProto::INT16 || to == onnx::TensorProto::INT8;
  if (b.isIntInput(0) && toInteger)
    return b.setIntOutput(*b.intInput(0));
  // Token ids are int64 in the step whatever the graph input's type.
  if (b.isIndexInput(0) && toInteger)
    return b.setOutput(b.indexInput(0));
  if (b.isIntInput(0) && to == onnx::TensorProto::FLOAT)
    return b.setFloatConstantOutput(b.castToFloat(*b.intInput(0)));
  if (to == onnx::TensorProto::FLOAT && b.isFloatConstantInput(0))
    return b.setFloatConstantOutput(*b.floatConstantInput(0));
  if (!b.isIntInput(0) && to == onnx::TensorProto::FLOAT)
    return b.setOutput(b.input(0));
  return b.error() << "a cast to "
                   << onnx::TensorProto::DataType_Name(
                          onnx::TensorProto::DataType(to))
                   << " of this input is not supported; only float32 "
                      "tensors and compile-time integer tensors are";
}

/// ConstantOfShape: an integer tensor of the value, or a float tensor
/// (blpa.fill) of it.
static LogicalResult importConstantOfShape(NodeBinder &b) {
  FailureOr<IntTensor> shape = b.intInput(0);
  if (failed(shape))
    return failure();
  if (shape->shape.size() != 1)
    return b.error() << "the shape input must be 1-D";
  if (!isAddressable(shape->values))
    return b.error() << "shape " << formatInts(shape->values)
                     << " is invalid or too large to address";
  const onnx::TensorProto *value = b.getTensor("value");
  int64_t count = ShapedType::getNumElements(shape->values);
  if (value && value->data_type() == onnx::TensorProto::INT64) {
    if (failed(checkComputedCount(b, shape->values)))
      return failure();
    FailureOr<IntTensor> scalar = readIntTensor(*value);
    if (failed(scalar) || scalar->values.size() != 1)
      return b.error() << "attribute 'value' must hold one integer";
    return b.setIntOutput(IntTensor{
        shape->values, SmallVector<int64_t>(count, scalar->values[0])});
  }
  double fill = 0;
  if (value) {
    FailureOr<double> scalar = readFloatScalar(*value);
    if (failed(scalar))
      return b.error() << "attribute 'value' must be one float32 or int64";
    fill = *scalar;
  }
  auto type = RankedTensorType::get(shape->values, b.builder().getF32Type());
  return b.setOutput(FillOp::create(b.builder(), b.loc(), type,
                                    b.builder().getF64FloatAttr(fill))
                         .getResult());
}

/// Whether `perm` names each of `rank` axes once.
static bool isPermutation(ArrayRef<int64_t> perm, int64_t rank) {
  if (int64_t(perm.size()) != rank)
    return false;
  SmallVector<bool> seen(rank, false);
  for (int64_t p : perm) {
    if (p < 0 || p >= rank || seen[p])
      return false;
    seen[p] = true;
  }
  return true;
}

/// Transpose: of a compile-time integer tensor, evaluated; of a float tensor
/// (an activation, or a parameter such as Linear's weight without bias), a
/// blpa.transpose, or a reshape (a view) when only size-1 dimensions move.
static LogicalResult importTranspose(NodeBinder &b) {
  bool folded = b.isIntInput(0);
  IntTensor data;
  SmallVector<int64_t> shape;
  Value x;
  if (folded) {
    data = *b.intInput(0);
    shape = data.shape;
  } else {
    FailureOr<Value> input = b.input(0);
    if (failed(input))
      return failure();
    x = *input;
    llvm::append_range(shape, getShape(x));
  }
  int64_t rank = shape.size();
  SmallVector<int64_t> reversed(llvm::reverse(llvm::seq<int64_t>(0, rank)));
  SmallVector<int64_t> perm = b.getInts("perm", reversed);
  if (!isPermutation(perm, rank))
    return b.error() << "attribute 'perm' = " << formatInts(perm)
                     << " is not a permutation of " << rank << " axes";
  SmallVector<int64_t> outShape;
  for (int64_t p : perm)
    outShape.push_back(shape[p]);
  if (!folded) {
    // The dimensions other than 1s keep their order: the data does not
    // move.
    SmallVector<int64_t> moved;
    for (int64_t p : perm)
      if (shape[p] != 1)
        moved.push_back(p);
    if (llvm::is_sorted(moved))
      return b.setOutput(b.reshape(x, outShape));
    return b.setOutput(b.create<TransposeOp>(x, perm));
  }
  IntTensor result{outShape, {}};
  SmallVector<int64_t> inStrides = stridesOf(data.shape),
                       outStrides = stridesOf(result.shape);
  int64_t count = ShapedType::getNumElements(result.shape);
  for (int64_t i = 0; i < count; ++i) {
    int64_t offset = 0;
    for (int64_t d = 0; d < rank; ++d)
      offset += i / outStrides[d] % result.shape[d] * inStrides[perm[d]];
    result.values.push_back(data.values[offset]);
  }
  return b.setIntOutput(std::move(result));
}

/// One axis of a Slice: the first index and the count, with ONNX's
/// clamping (negative indices count from the end; a negative step walks
/// backwards).
struct SliceAxis {
  int64_t first, count, step;
};

static SliceAxis sliceAxis(int64_t dim, int64_t start, int64_t end,
                           int64_t step) {
  auto clamp = [&](int64_t i, int64_t lo, int64_t hi) {
    i = i < 0 ? i + dim : i;
    return std::clamp(i, lo, hi);
  };
  int64_t first = step > 0 ? clamp(start, 0, dim) : clamp(start, -1, dim - 1);
  int64_t last = step > 0 ? clamp(end, 0, dim) : clamp(end, -1, dim - 1);
  int64_t span = step > 0 ? last - first : first - last;
  // |step|; INT64_MIN's does not fit, but INT64_MAX is as good: no span
  // reaches it.
  int64_t magnitude =
      step > 0 ? step : -std::max(step, -std::numeric_limits<int64_t>::max());
  // ceil(span / magnitude), without overflowing for huge steps.
  return {first, span > 0 ? (span - 1) / magnitude + 1 : 0, step};
}

/// Slice's starts, ends, axes and steps: attributes before opset 10,
/// inputs after. Fills one SliceAxis per dimension of `shape`.
static FailureOr<SmallVector<SliceAxis>> sliceAxes(NodeBinder &b,
                                                   ArrayRef<int64_t> shape) {
  SmallVector<int64_t> starts, ends, axes, steps;
  if (b.opset() < 10) {
    starts = b.getInts("starts", {});
    ends = b.getInts("ends", {});
    axes = b.getInts("axes", {});
  } else {
    for (auto [index, list] :
         {std::pair<int, SmallVector<int64_t> *>{1, &starts},
          {2, &ends},
          {3, &axes},
          {4, &steps}}) {
      if (!b.hasInput(index))
        continue;
      FailureOr<IntTensor> given = b.intInput(index);
      if (failed(given))
        return failure();
      *list = given->values;
    }
  }
  int64_t rank = shape.size();
  if (axes.empty())
    axes = llvm::to_vector(llvm::seq<int64_t>(0, starts.size()));
  if (steps.empty())
    steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size())
    return b.error() << "starts, ends, axes and steps differ in length";
  SmallVector<SliceAxis> result;
  for (int64_t dim : shape)
    result.push_back({0, dim, 1});
  for (size_t i = 0; i < starts.size(); ++i) {
    int64_t axis = axes[i] < 0 ? axes[i] + rank : axes[i];
    if (axis < 0 || axis >= rank || steps[i] == 0)
      return b.error() << "axis " << axes[i] << " (step " << steps[i]
                       << ") is invalid for rank " << rank;
    result[axis] = sliceAxis(shape[axis], starts[i], ends[i], steps[i]);
  }
  return result;
}

/// Moves data between channels and space blocks as ONNX's reference does:
/// reshape `x` to `blocked`, transpose by `perm`, reshape to `outShape`
/// (views around one blpa.transpose, whose gradient is the inverse
/// transpose).
static LogicalResult importBlockShuffle(NodeBinder &b, Value x,
                                        ArrayRef<int64_t> blocked,
                                        ArrayRef<int64_t> perm,
                                        ArrayRef<int64_t> outShape) {
  FailureOr<Value> moved =
      b.create<TransposeOp>(b.reshape(x, blocked), SmallVector<int64_t>(perm));
  if (failed(moved))
    return failure();
  return b.setOutput(b.reshape(*moved, outShape));
}

/// The NCHW input of DepthToSpace or SpaceToDepth and its `blocksize`,
/// checked against the dimensions it must divide (`divided`: C for
/// DepthToSpace, H and W for SpaceToDepth).
static FailureOr<std::pair<Value, int64_t>>
getBlockShuffleInput(NodeBinder &b, bool depthToSpace) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  ArrayRef<int64_t> shape = getShape(*x);
  if (shape.size() != 4)
    return b.error() << "the input has rank " << shape.size()
                     << "; only NCHW (rank-4) inputs are supported";
  int64_t block = b.getInt("blocksize", 0);
  if (block < 1)
    return b.error() << "attribute 'blocksize' = " << block
                     << " must be positive";
  bool divides = depthToSpace ? shape[1] % (block * block) == 0
                              : shape[2] % block == 0 && shape[3] % block == 0;
  if (!divides)
    return b.error() << "blocksize " << block << " does not divide "
                     << (depthToSpace ? "the channels" : "the height and width")
                     << " of " << formatInts(shape);
  return std::make_pair(*x, block);
}

/// DepthToSpace (nn.PixelShuffle exports it in CRD mode).
static LogicalResult importDepthToSpace(NodeBinder &b) {
  auto input = getBlockShuffleInput(b, /*depthToSpace=*/true);
  if (failed(input))
    return failure();
  auto [x, k] = *input;
  ArrayRef<int64_t> s = getShape(x);
  int64_t n = s[0], c = s[1] / (k * k), h = s[2], w = s[3];
  std::string mode = b.getString("mode", "DCR");
  SmallVector<int64_t> out = {n, c, h * k, w * k};
  if (mode == "DCR")
    return importBlockShuffle(b, x, {n, k, k, c, h, w}, {0, 3, 4, 1, 5, 2},
                              out);
  if (mode == "CRD")
    return importBlockShuffle(b, x, {n, c, k, k, h, w}, {0, 1, 4, 2, 5, 3},
                              out);
  return b.error() << "attribute 'mode' = '" << mode
                   << "' is not supported; use DCR or CRD";
}

static LogicalResult importSpaceToDepth(NodeBinder &b) {
  auto input = getBlockShuffleInput(b, /*depthToSpace=*/false);
  if (failed(input))
    return failure();
  auto [x, k] = *input;
  ArrayRef<int64_t> s = getShape(x);
  int64_t n = s[0], c = s[1], h = s[2] / k, w = s[3] / k;
  return importBlockShuffle(b, x, {n, c, h, k, w, k}, {0, 3, 5, 1, 2, 4},
                            {n, c * k * k, h, w});
}

/// Slice: of a compile-time integer tensor, evaluated; of a float tensor,
/// a blpa.slice when it takes a contiguous range (step 1) of one axis.
static LogicalResult importSlice(NodeBinder &b) {
  if (b.isIntInput(0)) {
    IntTensor data = *b.intInput(0);
    FailureOr<SmallVector<SliceAxis>> axes = sliceAxes(b, data.shape);
    if (failed(axes))
      return failure();
    IntTensor result;
    for (const SliceAxis &axis : *axes)
      result.shape.push_back(axis.count);
    SmallVector<int64_t> inStrides = stridesOf(data.shape),
                         outStrides = stridesOf(result.shape);
    int64_t count = ShapedType::getNumElements(result.shape);
    for (int64_t i = 0; i < count; ++i) {
      int64_t offset = 0;
      for (size_t d = 0; d < axes->size(); ++d) {
        int64_t at = i / outStrides[d] % result.shape[d];
        offset += ((*axes)[d].first + at * (*axes)[d].step) * inStrides[d];
      }
      result.values.push_back(data.values[offset]);
    }
    return b.setIntOutput(std::move(result));
  }
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  ArrayRef<int64_t> shape = getShape(*x);
  FailureOr<SmallVector<SliceAxis>> axes = sliceAxes(b, shape);
  if (failed(axes))
    return failure();
  std::optional<int64_t> sliced;
  for (auto [d, axis] : llvm::enumerate(*axes)) {
    if (axis.first == 0 && axis.count == shape[d] && axis.step == 1)
      continue;
    if (axis.count == 0)
      return b.error() << "the slice of axis " << d
                       << " is empty; tensors with no elements are not "
                          "supported";
    if (sliced || axis.step != 1)
      return b.error() << "only a contiguous range (step 1) of one axis of a "
                          "float tensor can be sliced";
    sliced = d;
  }
  if (!sliced)
    return b.setOutput(*x);
  const SliceAxis &axis = (*axes)[*sliced];
  return b.setOutput(b.create<SliceOp>(*x, *sliced, axis.first, axis.count));
}

/// Add, Mul, Sub and Div: numpy broadcasting of two float inputs.
template <typename OpTy> static LogicalResult importBroadcast(NodeBinder &b) {
  // Before opset 7, `axis` aligned the second operand at that dimension
  // instead of at the end (numpy); no exporter of interest emits it.
  if (b.hasAttr("axis"))
    return b.error() << "attribute 'axis' (legacy broadcasting) is not "
                        "supported; export with opset 7 or later";
  if (b.isIntInput(0) && b.isIntInput(1))
    return foldIntArithmetic(b);
  FailureOr<Value> lhs = b.input(0), rhs = b.input(1);
  if (failed(lhs) || failed(rhs))
    return failure();
  return b.setOutput(b.create<OpTy>(*lhs, *rhs));
}

static LogicalResult importHardSigmoid(NodeBinder &b) {
  Builder &builder = b.builder();
  return importElementwise<HardSigmoidOp>(
      b, builder.getF32FloatAttr(b.getFloat("alpha", 0.2)),
      builder.getF32FloatAttr(b.getFloat("beta", 0.5)));
}

/// Gelu (opset 20): `approximate` is "none" (erf) or "tanh".
static LogicalResult importGelu(NodeBinder &b) {
  std::string approximate = b.getString("approximate", "none");
  if (approximate != "none" && approximate != "tanh")
    return b.error() << "attribute 'approximate' is '" << approximate
                     << "'; expected 'none' or 'tanh'";
  return importElementwise<GeluOp>(
      b, b.builder().getBoolAttr(approximate == "tanh"));
}

/// A float32 scalar `value` at the node, an operand that broadcasts.
static Value scalarConstant(NodeBinder &b, double value) {
  auto scalar = RankedTensorType::get({}, b.builder().getF32Type());
  return FillOp::create(b.builder(), b.loc(), scalar,
                        b.builder().getF64FloatAttr(value));
}

/// Neg: 0 - x, a broadcast subtraction from a scalar zero, whose gradient
/// keeps nothing of the forward pass.
static LogicalResult importNeg(NodeBinder &b) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  return b.setOutput(b.create<SubOp>(scalarConstant(b, 0.0), *x));
}

/// The exponent of Pow when it is a constant of one element (an integer or
/// float constant, or an initializer that does not train); nullopt for a
/// tensor to raise element by element.
static FailureOr<std::optional<double>> constantExponent(NodeBinder &b) {
  if (b.isIntInput(1)) {
    FailureOr<IntTensor> exponent = b.intInput(1);
    if (failed(exponent))
      return failure();
    if (exponent->values.size() != 1)
      return b.error() << "an integer exponent must have one element; "
                          "give a float32 tensor to raise element by element";
    return std::optional<double>(double(exponent->values[0]));
  }
  if (const onnx::TensorProto *constant = b.floatConstantInput(1)) {
    SmallVector<int64_t> dims(constant->dims().begin(), constant->dims().end());
    if (elementCount(dims) != 1)
      return std::optional<double>();
  } else {
    FailureOr<Value> exponent = b.input(1);
    if (failed(exponent))
      return failure();
    auto param = exponent->getDefiningOp<ParamOp>();
    if (ShapedType::getNumElements(getShape(*exponent)) != 1 ||
        (param && param.getTrainable()))
      return std::optional<double>();
  }
  FailureOr<NodeBinder::FloatScalar> scalar = b.floatScalarOperand(1);
  if (failed(scalar))
    return failure();
  return scalar->constant; // none when computed at run time
}

/// Pow: by a constant of one element, an activation (blpa.pow, whose
/// gradient reaches the base only); by a tensor (a parameter or computed),
/// blpa.power, broadcast, with gradients to both.
static LogicalResult importPow(NodeBinder &b) {
  FailureOr<std::optional<double>> exponent = constantExponent(b);
  if (failed(exponent))
    return failure();
  if (*exponent)
    return importElementwise<PowOp>(b, b.builder().getF32FloatAttr(**exponent));
  return importBroadcast<PowerOp>(b);
}

/// LayerNormalization (opset 17): normalizes over the dimensions from
/// `axis` (default -1). The optional Mean and InvStdDev outputs keep the
/// input's rank (1s from `axis` on), reshaped from blpa.layer_norm's [rows]
/// statistics. stash_type 1 (float32) is ONNX's default; blpa accumulates
/// the statistics in double whatever it says.
static LogicalResult importLayerNormalization(NodeBinder &b) {
  FailureOr<Value> x = b.input(0), scale = b.input(1);
  if (failed(x) || failed(scale))
    return failure();
  FailureOr<Value> bias = b.optionalInput(2);
  if (failed(bias))
    return failure();
  SmallVector<int64_t> shape(getShape(*x));
  int64_t rank = shape.size();
  FailureOr<int64_t> axis = axisAttribute(b, -1, rank);
  if (failed(axis))
    return failure();
  Builder &builder = b.builder();
  FailureOr<Value> y = b.create<LayerNormOp>(
      *x, *scale, *bias, builder.getI64IntegerAttr(*axis),
      builder.getF64FloatAttr(b.getFloat("epsilon", 1e-5)));
  if (failed(y))
    return failure();
  Operation *norm = y->getDefiningOp();
  SmallVector<int64_t> statsShape(shape.begin(), shape.begin() + *axis);
  statsShape.resize(rank, 1);
  SmallVector<Value> outputs = {*y};
  for (int i = 1; i < std::min(b.node().output_size(), 3); ++i)
    outputs.push_back(b.reshape(norm->getResult(i), statsShape));
  return b.setOutputs(outputs);
}

/// Softmax and LogSoftmax. From opset 13 they normalize along `axis`
/// (default -1). Before, the input is coerced to 2-D at `axis` (default 1)
/// and normalized over the flattened trailing block: the same op along
/// axis 1 of that [outer, inner] view, reshaped back.
template <typename OpTy> static LogicalResult importSoftmax(NodeBinder &b) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  ArrayRef<int64_t> shape = getShape(*x);
  int64_t rank = shape.size();
  if (rank == 0)
    return b.error() << "the input is a scalar; only inputs of rank >= 1 "
                        "have an axis to normalize over";
  bool coerced = b.opset() < 13;
  FailureOr<int64_t> axis = axisAttribute(b, coerced ? 1 : -1, rank);
  if (failed(axis))
    return failure();
  if (!coerced)
    return b.setOutput(b.create<OpTy>(*x, *axis));
  int64_t outer = ShapedType::getNumElements(shape.take_front(*axis));
  int64_t inner = ShapedType::getNumElements(shape.drop_front(*axis));
  FailureOr<Value> y = b.create<OpTy>(b.reshape(*x, {outer, inner}), 1);
  if (failed(y))
    return failure();
  return b.setOutput(b.reshape(*y, shape));
}

/// Clip's bounds: attributes before opset 11, optional scalar inputs
/// after, known at compile time (attributes of blpa.clip) or given at run
/// time (its operands); an absent bound is unbounded.
static LogicalResult importClip(NodeBinder &b) {
  double lo = -std::numeric_limits<float>::infinity();
  double hi = std::numeric_limits<float>::infinity();
  Value runtime[2];
  if (b.opset() < 11) {
    lo = b.getFloat("min", lo);
    hi = b.getFloat("max", hi);
  } else {
    for (auto [index, bound] : {std::pair<int, double *>{1, &lo}, {2, &hi}}) {
      if (!b.hasInput(index))
        continue;
      FailureOr<NodeBinder::FloatScalar> value = b.floatScalarOperand(index);
      if (failed(value))
        return failure();
      if (value->constant)
        *bound = *value->constant;
      runtime[index - 1] = value->runtime;
    }
  }
  if (lo > hi)
    return b.error() << "min " << formatFloat(lo) << " is greater than max "
                     << formatFloat(hi);
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  Builder &builder = b.builder();
  return b.setOutput(b.create<ClipOp>(*x, runtime[0], runtime[1],
                                      builder.getF32FloatAttr(lo),
                                      builder.getF32FloatAttr(hi)));
}

/// Pad's pads, per dimension of a rank-`rank` input (begins, then ends):
/// the `pads` attribute before opset 11, then the pads input, over the
/// axes input's dimensions from opset 18.
static FailureOr<SmallVector<int64_t>> padsOf(NodeBinder &b, int64_t rank) {
  SmallVector<int64_t> pads;
  SmallVector<int64_t> axes = llvm::to_vector(llvm::seq<int64_t>(0, rank));
  if (b.opset() < 11) {
    pads = b.getInts("pads", {});
  } else {
    FailureOr<IntTensor> given = b.intInput(1);
    if (failed(given))
      return failure();
    pads = given->values;
  }
  if (b.opset() >= 11 && b.hasInput(3)) {
    FailureOr<IntTensor> given = b.intInput(3);
    if (failed(given))
      return failure();
    axes = given->values;
  }
  if (pads.size() != 2 * axes.size())
    return b.error() << "'pads' has " << pads.size() << " entries; expected "
                     << 2 * axes.size();
  SmallVector<int64_t> full(2 * rank, 0);
  for (auto [i, axis] : llvm::enumerate(axes)) {
    int64_t d = axis < 0 ? axis + rank : axis;
    if (d < 0 || d >= rank)
      return b.error() << "axis " << axis << " is out of range for rank "
                       << rank;
    full[d] = pads[i];
    full[rank + d] = pads[axes.size() + i];
  }
  return full;
}

/// Pad in constant mode (the value known at compile time or given at run
/// time), reflect mode (pads under each dimension's size, as ONNX requires)
/// or edge mode; from opset 2 (attributes) and 11 (inputs).
static LogicalResult importPad(NodeBinder &b) {
  std::string mode = b.getString("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge")
    return b.error() << "mode '" << mode
                     << "' is not supported; supported: constant, reflect, "
                        "edge";
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  ArrayRef<int64_t> shape = getShape(*x);
  int64_t rank = shape.size();
  FailureOr<SmallVector<int64_t>> pads = padsOf(b, rank);
  if (failed(pads))
    return failure();
  for (int64_t d = 0; d < rank && mode != "constant"; ++d) {
    int64_t front = (*pads)[d], back = (*pads)[rank + d];
    if (front < 0 || back < 0)
      return b.error() << "negative pads (cropping) of axis " << d
                       << " are supported in constant mode only";
    if (mode == "reflect" && (front >= shape[d] || back >= shape[d]))
      return b.error() << "reflect pads " << front << " and " << back
                       << " of axis " << d << " must each be under its size "
                       << shape[d]
                       << " (ONNX's rule); use smaller pads or mode 'edge'";
  }
  double value = b.opset() < 11 ? b.getFloat("value", 0) : 0;
  Value runtime;
  // The value is ignored outside constant mode, as ONNX says.
  if (b.opset() >= 11 && b.hasInput(2) && mode == "constant") {
    FailureOr<NodeBinder::FloatScalar> given = b.floatScalarOperand(2);
    if (failed(given))
      return failure();
    value = given->constant.value_or(0.0);
    runtime = given->runtime;
  }
  Builder &builder = b.builder();
  return b.setOutput(b.create<PadOp>(
      *x, runtime, builder.getDenseI64ArrayAttr(*pads),
      builder.getStringAttr(mode), builder.getF32FloatAttr(value)));
}

static LogicalResult importIdentity(NodeBinder &b) {
  if (b.isIntInput(0))
    return b.setIntOutput(*b.intInput(0));
  return b.setOutput(b.input(0));
}

/// Dropout: the identity outside training; in training (is_test 0 before
/// opset 7, the training_mode input from 12) a blpa.dropout with its own
/// random stream, the node's index in the graph.
static LogicalResult importDropout(NodeBinder &b) {
  bool training = b.opset() < 7 && b.getInt("is_test", 0) == 0;
  if (b.opset() >= 12 && b.hasInput(2)) {
    FailureOr<IntTensor> mode = b.intInput(2);
    if (failed(mode))
      return failure();
    training = llvm::any_of(mode->values, [](int64_t v) { return v != 0; });
  }
  FailureOr<Value> x = b.input(0);
  if (failed(x) || !training)
    return b.setOutput(x);
  FailureOr<double> ratio = b.getFloat("ratio", 0.5);
  if (b.opset() >= 12)
    ratio = b.hasInput(1) ? b.floatScalarInput(1) : FailureOr<double>(0.5);
  if (failed(ratio))
    return failure();
  if (!(*ratio >= 0 && *ratio < 1))
    return b.error() << "ratio " << formatFloat(*ratio) << " is outside [0, 1)";
  if (*ratio == 0)
    return b.setOutput(x);
  return b.setOutput(
      b.create<DropoutOp>(*x, b.builder().getF32FloatAttr(*ratio),
                          b.builder().getI64IntegerAttr(b.index())));
}

//===----------------------------------------------------------------------===//
// Matrix products
//===----------------------------------------------------------------------===//

static LogicalResult importGemm(NodeBinder &b) {
  FailureOr<Value> a = b.input(0), m = b.input(1), c = b.optionalInput(2);
  if (failed(a) || failed(m) || failed(c))
    return failure();
  if (getShape(*a).size() != 2 || getShape(*m).size() != 2)
    return b.error() << "operands of shapes " << formatInts(getShape(*a))
                     << " and " << formatInts(getShape(*m))
                     << "; Gemm takes 2-D operands";
  return b.setOutput(b.create<GemmOp>(*a, *m, *c, b.getInt("transA", 0) != 0,
                                      b.getInt("transB", 0) != 0,
                                      llvm::APFloat(b.getFloat("alpha", 1.0)),
                                      llvm::APFloat(b.getFloat("beta", 1.0))));
}

/// `x` broadcast (numpy's rule) to `shape`, of the same rank: x plus zeros
/// whose shape has only the dimensions broadcasting adds, so that only the
/// sum is full-sized. Its gradient is the sum back over those dimensions.
static FailureOr<Value> broadcastTo(NodeBinder &b, Value x,
                                    ArrayRef<int64_t> shape) {
  ArrayRef<int64_t> own = getShape(x);
  if (own == shape)
    return x;
  SmallVector<int64_t> added;
  for (auto [have, want] : llvm::zip_equal(own, shape))
    added.push_back(have == want ? 1 : want);
  auto type = RankedTensorType::get(added, b.builder().getF32Type());
  Value zeros = FillOp::create(b.builder(), b.loc(), type,
                               b.builder().getF64FloatAttr(0.0));
  return b.create<AddOp>(x, zeros);
}

/// Expand: numpy broadcasting of input 0 with the shape input (either may
/// have the larger rank). A compile-time integer tensor is folded; a float
/// one becomes broadcastTo of it, reshaped to the result's rank.
static LogicalResult importExpand(NodeBinder &b) {
  FailureOr<IntTensor> shape = shapeOperand(b, 1);
  if (failed(shape))
    return failure();
  if (b.isIntInput(0))
    return foldIntElementwise(
        b, {*b.intInput(0), IntTensor{/*shape=*/shape->values, /*values=*/{}}},
        [](ArrayRef<int64_t> v) { return v[0]; });
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  FailureOr<SmallVector<int64_t>> result =
      broadcastShapes(getShape(*x), shape->values);
  if (failed(result))
    return b.error() << "the input of shape " << formatInts(getShape(*x))
                     << " does not broadcast to " << formatInts(shape->values);
  if (!isAddressable(*result))
    return b.error() << "the result shape " << formatInts(*result)
                     << " is too large to address";
  SmallVector<int64_t> sameRank(result->size() - getShape(*x).size(), 1);
  llvm::append_range(sameRank, getShape(*x));
  return b.setOutput(broadcastTo(b, b.reshape(*x, sameRank), *result));
}

/// Trilu (opset 14): the upper (default) or lower triangle from diagonal k
/// (input 1, default 0) of the last two dimensions; a compile-time integer
/// tensor is folded, a float one becomes blpa.trilu (a causal attention
/// mask: the upper triangle of a -inf fill from k = 1).
static LogicalResult importTrilu(NodeBinder &b) {
  int64_t k = 0;
  if (b.hasInput(1)) {
    FailureOr<IntTensor> given = shapeOperand(b, 1);
    if (failed(given))
      return failure();
    if (given->values.size() != 1)
      return b.error() << "k must be one integer";
    k = given->values[0];
  }
  bool upper = b.getInt("upper", 1) != 0;
  if (b.isIntInput(0)) {
    IntTensor data = *b.intInput(0);
    size_t rank = data.shape.size();
    if (rank < 2)
      return b.error() << "the input has rank " << rank
                       << "; Trilu takes a triangle of the last two "
                          "dimensions";
    int64_t rows = data.shape[rank - 2], cols = data.shape[rank - 1];
    for (size_t i = 0; i < data.values.size(); ++i)
      if (!::blpa::triluKeeps(int64_t(i) / cols % rows, int64_t(i) % cols, k,
                              upper))
        data.values[i] = 0;
    return b.setIntOutput(std::move(data));
  }
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  return b.setOutput(b.create<TriluOp>(*x, b.builder().getI64IntegerAttr(k),
                                       b.builder().getBoolAttr(upper)));
}

/// Operand `x`, of shape `shape` ([..., R, C]; a vector already given its
/// matrix shape), as batch_matmul's [B, R, C] for the product's batch
/// dimensions `batch`: [1, R, C] when its own batch dimensions are all 1
/// (one matrix serves every product, without copies), else its matrices
/// broadcast to `batch` explicitly.
static FailureOr<Value> batchOperand(NodeBinder &b, Value x,
                                     ArrayRef<int64_t> shape,
                                     ArrayRef<int64_t> batch) {
  int64_t rows = shape[shape.size() - 2], cols = shape.back();
  if (ShapedType::getNumElements(shape.drop_back(2)) == 1)
    return b.reshape(x, {1, rows, cols});
  SmallVector<int64_t> aligned(batch.size() + 2 - shape.size(), 1);
  aligned.append(shape.begin(), shape.end());
  SmallVector<int64_t> full(batch);
  full.append({rows, cols});
  FailureOr<Value> broadcast = broadcastTo(b, b.reshape(x, aligned), full);
  if (failed(broadcast))
    return failure();
  return b.reshape(*broadcast, {ShapedType::getNumElements(batch), rows, cols});
}

/// The product of `a` and `m`, of shapes `aShape` and `mShape` ([..., M, K]
/// and [..., K, N], vectors already given their matrix shapes) whose batch
/// dimensions broadcast to `batch`: one gemm of a's rows when m is one
/// matrix, else one batch_matmul. The result has the gemm's or the batch
/// product's shape; the caller reshapes it.
static FailureOr<Value> buildMatMul(NodeBinder &b, Value a,
                                    ArrayRef<int64_t> aShape, Value m,
                                    ArrayRef<int64_t> mShape,
                                    ArrayRef<int64_t> batch) {
  int64_t k = aShape.back(), cols = mShape.back();
  if (ShapedType::getNumElements(mShape.drop_back(2)) == 1) {
    // Named in order: argument evaluation order is unspecified.
    int64_t rows = ShapedType::getNumElements(aShape.drop_back());
    Value a2 = b.reshape(a, {rows, k});
    // x @ W^T, as exporters write Linear on 3-D inputs: the gemm reads W
    // itself (trans_b), so no transposed copy is made, nor saved for the
    // backward pass, and W's gradient comes out in W's layout.
    if (auto transpose = m.getDefiningOp<TransposeOp>();
        transpose && getShape(transpose.getInput()).size() == 2)
      return b.create<GemmOp>(a2, transpose.getInput(), Value(), false, true,
                              llvm::APFloat(1.0), llvm::APFloat(1.0));
    Value m2 = b.reshape(m, {k, cols});
    return b.create<GemmOp>(a2, m2, Value(), false, false, llvm::APFloat(1.0),
                            llvm::APFloat(1.0));
  }
  FailureOr<Value> a3 = batchOperand(b, a, aShape, batch);
  FailureOr<Value> m3 = batchOperand(b, m, mShape, batch);
  if (failed(a3) || failed(m3))
    return failure();
  return b.create<BatchMatMulOp>(*a3, *m3, false, false);
}

/// MatMul as numpy's matmul: [..., M, K] x [..., K, N] with the batch
/// dimensions broadcast; a 1-D first operand is a row [1, K], a 1-D second
/// one a column [K, 1], and that added dimension is left out of the result.
/// When the second operand is one matrix, the first one's batch folds into
/// M: one gemm between reshapes. Otherwise one batch_matmul.
static LogicalResult importMatMul(NodeBinder &b) {
  FailureOr<Value> a = b.input(0), m = b.input(1);
  if (failed(a) || failed(m))
    return failure();
  SmallVector<int64_t> aShape(getShape(*a)), mShape(getShape(*m));
  if (aShape.empty() || mShape.empty())
    return b.error() << "operands of shapes " << formatInts(aShape) << " and "
                     << formatInts(mShape)
                     << "; MatMul multiplies tensors of rank 1 or more";
  bool aIsVector = aShape.size() == 1, mIsVector = mShape.size() == 1;
  if (aIsVector)
    aShape.insert(aShape.begin(), 1);
  if (mIsVector)
    mShape.push_back(1);
  int64_t rows = aShape[aShape.size() - 2], k = aShape.back();
  int64_t cols = mShape.back();
  if (mShape[mShape.size() - 2] != k)
    return b.error() << "operands of shapes " << formatInts(getShape(*a))
                     << " and " << formatInts(getShape(*m))
                     << ": the inner dimensions differ (" << k << " vs "
                     << mShape[mShape.size() - 2]
                     << "); MatMul takes [..., M, K] x [..., K, N]";
  ArrayRef<int64_t> aBatch = ArrayRef(aShape).drop_back(2);
  ArrayRef<int64_t> mBatch = ArrayRef(mShape).drop_back(2);
  FailureOr<SmallVector<int64_t>> batch = broadcastShapes(aBatch, mBatch);
  if (failed(batch))
    return b.error() << "operands of shapes " << formatInts(getShape(*a))
                     << " and " << formatInts(getShape(*m))
                     << ": the batch dimensions " << formatInts(aBatch)
                     << " and " << formatInts(mBatch)
                     << " do not broadcast; each pair must be equal or "
                        "include a 1 (numpy's matmul)";
  SmallVector<int64_t> outShape(*batch);
  if (!aIsVector)
    outShape.push_back(rows);
  if (!mIsVector)
    outShape.push_back(cols);
  if (!isAddressable(outShape))
    return b.error() << "the result shape " << formatInts(outShape)
                     << " is too large to address";
  FailureOr<Value> product = buildMatMul(b, *a, aShape, *m, mShape, *batch);
  if (failed(product))
    return failure();
  return b.setOutput(b.reshape(*product, outShape));
}

//===----------------------------------------------------------------------===//
// Reshaping
//===----------------------------------------------------------------------===//

static LogicalResult importFlatten(NodeBinder &b) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  ArrayRef<int64_t> shape = getShape(*x);
  int64_t rank = shape.size();
  int64_t axis = b.getInt("axis", 1);
  int64_t normalized = axis < 0 ? axis + rank : axis;
  if (normalized < 0 || normalized > rank)
    return b.error() << "attribute 'axis' = " << axis
                     << " is out of range for an input of rank " << rank;
  // Products, not a quotient: a dimension may be 0.
  int64_t outer = ShapedType::getNumElements(shape.take_front(normalized));
  int64_t inner = ShapedType::getNumElements(shape.drop_front(normalized));
  return b.setOutput(b.reshape(*x, {outer, inner}));
}

/// ONNX Reshape's target: 0 copies the input's dimension (unless
/// allowzero), one -1 is inferred from the element count.
static FailureOr<SmallVector<int64_t>>
reshapeTarget(NodeBinder &b, ArrayRef<int64_t> in, ArrayRef<int64_t> target) {
  bool allowZero = b.getInt("allowzero", 0) != 0;
  SmallVector<int64_t> shape;
  std::optional<size_t> inferred;
  for (auto [i, entry] : llvm::enumerate(target)) {
    int64_t d = entry;
    if (d == 0 && !allowZero && i >= in.size())
      return b.error() << "shape " << formatInts(target) << " copies dimension "
                       << i << " (0) of an input of rank " << in.size();
    if (d == 0 && !allowZero)
      d = in[i];
    if (d == -1 && inferred)
      return b.error() << "shape " << formatInts(target)
                       << " has more than one -1";
    if (d == -1)
      inferred = i;
    else if (d < 0)
      return b.error() << "shape " << formatInts(target)
                       << " has the invalid entry " << d;
    shape.push_back(d == -1 ? 1 : d);
  }
  std::optional<int64_t> maybeKnown = elementCount(shape);
  if (!maybeKnown)
    return b.error() << "shape " << formatInts(target) << " is too large";
  int64_t known = *maybeKnown, count = ShapedType::getNumElements(in);
  if (inferred && (known == 0 || count % known != 0))
    return b.error() << "shape " << formatInts(target)
                     << ": cannot infer the -1 for an input of shape "
                     << formatInts(in);
  if (inferred)
    shape[*inferred] = count / known;
  if (!inferred && known != count)
    return b.error() << "shape " << formatInts(target) << " has " << known
                     << " elements, the input " << formatInts(in) << " has "
                     << count;
  return shape;
}

static LogicalResult importReshape(NodeBinder &b) {
  // Before opset 5 the target shape was an attribute.
  SmallVector<int64_t> target;
  if (b.opset() < 5) {
    target = b.getInts("shape", {});
  } else {
    FailureOr<IntTensor> shape = b.intInput(1);
    if (failed(shape))
      return failure();
    if (shape->shape.size() != 1)
      return b.error() << "the shape input has rank " << shape->shape.size()
                       << "; it must be 1-D";
    target = shape->values;
  }
  if (b.isIntInput(0)) {
    IntTensor data = *b.intInput(0);
    FailureOr<SmallVector<int64_t>> shape =
        reshapeTarget(b, data.shape, target);
    if (failed(shape))
      return failure();
    data.shape = *shape;
    return b.setIntOutput(std::move(data));
  }
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  FailureOr<SmallVector<int64_t>> shape =
      reshapeTarget(b, getShape(*x), target);
  if (failed(shape))
    return failure();
  return b.setOutput(b.reshape(*x, *shape));
}

//===----------------------------------------------------------------------===//
// Compile-time integer tensors: constants and the shape computations
// exporters emit for `x.view(x.size(0), -1)`.
//===----------------------------------------------------------------------===//

static LogicalResult importConstant(NodeBinder &b) {
  if (b.hasAttr("value_int"))
    return b.setIntOutput(IntTensor{{}, {b.getInt("value_int", 0)}});
  if (b.hasAttr("value_ints")) {
    SmallVector<int64_t> values = b.getInts("value_ints", {});
    return b.setIntOutput(
        IntTensor{{static_cast<int64_t>(values.size())}, values});
  }
  const onnx::TensorProto *tensor = b.getTensor("value");
  if (!tensor)
    return b.error() << "only 'value', 'value_int' and 'value_ints' "
                        "constants are supported";
  if (FailureOr<IntTensor> ints = readIntTensor(*tensor); succeeded(ints))
    return b.setIntOutput(std::move(*ints));
  if (tensor->data_type() == onnx::TensorProto::FLOAT)
    return b.setFloatConstantOutput(*tensor);
  return b.error() << "a constant of type "
                   << onnx::TensorProto::DataType_Name(
                          static_cast<onnx::TensorProto::DataType>(
                              tensor->data_type()))
                   << " is not supported; only float32 and integer "
                      "constants";
}

/// Input `index` of a shape computation: it must be a compile-time integer
/// tensor, as blpa has no integer tensors at run time.
static FailureOr<IntTensor> shapeOperand(NodeBinder &b, int index) {
  if (b.hasInput(index) && !b.isIntInput(index))
    return b.error() << "input '" << b.node().input(index)
                     << "' is not a compile-time integer tensor; " << b.opType()
                     << " is supported only in shape computations (on "
                        "constants and Shape outputs)";
  return b.intInput(index);
}

static LogicalResult importShape(NodeBinder &b) {
  SmallVector<int64_t> dims;
  if (b.isIntInput(0)) {
    dims = b.intInput(0)->shape;
  } else if (b.isIndexInput(0)) {
    llvm::append_range(dims, getShape(*b.indexInput(0)));
  } else {
    FailureOr<Value> x = b.input(0);
    if (failed(x))
      return failure();
    dims.assign(getShape(*x).begin(), getShape(*x).end());
  }
  // Opset 15's start/end slice the shape, clamped like Python slices.
  int64_t rank = dims.size();
  auto clamp = [&](int64_t i) {
    return std::clamp<int64_t>(i < 0 ? i + rank : i, 0, rank);
  };
  int64_t start = clamp(b.getInt("start", 0));
  int64_t end = std::max(start, clamp(b.getInt("end", rank)));
  SmallVector<int64_t> values(dims.begin() + start, dims.begin() + end);
  return b.setIntOutput(
      IntTensor{{static_cast<int64_t>(values.size())}, values});
}

/// Gather from a float tensor at compile-time indices: positions that count
/// up by one are one slice (a scalar index, as x[:, 0] exports, is a slice
/// of one that drops the axis); others a concatenation of one-element
/// slices, in index order (repeats allowed). Both copy, so they are exact,
/// and their gradients add into the positions read.
static LogicalResult gatherFloat(NodeBinder &b) {
  FailureOr<Value> data = b.input(0);
  FailureOr<IntTensor> indices = shapeOperand(b, 1);
  if (failed(data) || failed(indices))
    return failure();
  ArrayRef<int64_t> shape = getShape(*data);
  FailureOr<int64_t> found = axisAttribute(b, 0, shape.size());
  if (failed(found))
    return failure();
  int64_t axis = *found, size = shape[axis];
  SmallVector<int64_t> positions;
  for (int64_t index : indices->values) {
    if (index < -size || index >= size)
      return b.error() << "index " << index << " is out of range for axis "
                       << axis << " of size " << size;
    positions.push_back(index < 0 ? index + size : index);
  }
  if (positions.empty())
    return b.error() << "no indices to gather; an empty result is not "
                        "supported";
  bool contiguous = true;
  for (size_t i = 1; i < positions.size(); ++i)
    contiguous &= positions[i] == positions[i - 1] + 1;
  FailureOr<Value> gathered;
  if (contiguous) {
    gathered =
        b.create<SliceOp>(*data, axis, positions.front(), positions.size());
  } else {
    SmallVector<Value> parts;
    for (int64_t position : positions) {
      FailureOr<Value> part = b.create<SliceOp>(*data, axis, position, 1);
      if (failed(part))
        return failure();
      parts.push_back(*part);
    }
    gathered = b.create<ConcatOp>(parts, axis);
  }
  if (failed(gathered))
    return failure();
  SmallVector<int64_t> outShape(shape.take_front(axis));
  llvm::append_range(outShape, indices->shape);
  llvm::append_range(outShape, shape.drop_front(axis + 1));
  return b.setOutput(b.reshape(*gathered, outShape));
}

/// Records on the graph input of token ids `indices` that they index a
/// table of `vocab` rows, so the executable can check the ids it is given.
static void recordIndexBound(NodeBinder &b, Value indices, int64_t vocab) {
  auto arg = dyn_cast<BlockArgument>(indices);
  if (!arg)
    return;
  auto func = cast<func::FuncOp>(arg.getOwner()->getParentOp());
  auto bound = func.getArgAttrOfType<IntegerAttr>(arg.getArgNumber(),
                                                  "blpa.index_bound");
  if (!bound || bound.getInt() > vocab)
    func.setArgAttr(arg.getArgNumber(), "blpa.index_bound",
                    b.builder().getI64IntegerAttr(vocab));
}

/// Gather of a float tensor at token ids: along axis 0 an embedding lookup
/// (the rows of a table [vocab, dim]); along another axis the same between
/// transposes that bring that axis first and the ids' dimensions back to
/// its place.
static LogicalResult gatherRows(NodeBinder &b) {
  FailureOr<Value> data = b.input(0), indices = b.indexInput(1);
  if (failed(data) || failed(indices))
    return failure();
  ArrayRef<int64_t> shape = getShape(*data);
  FailureOr<int64_t> found = axisAttribute(b, 0, shape.size());
  if (failed(found))
    return failure();
  int64_t axis = *found, rank = shape.size();
  recordIndexBound(b, *indices, shape[axis]);
  Value table = *data;
  if (axis != 0) {
    SmallVector<int64_t> first = {axis};
    for (int64_t d = 0; d < rank; ++d)
      if (d != axis)
        first.push_back(d);
    FailureOr<Value> moved = b.create<TransposeOp>(table, first);
    if (failed(moved))
      return failure();
    table = *moved;
  }
  FailureOr<Value> rows = b.create<EmbeddingOp>(table, *indices);
  if (failed(rows) || axis == 0)
    return b.setOutput(rows);
  // [ids..., d0 .. d(axis-1), d(axis+1) ...] to [d0 .., ids..., ...].
  int64_t idsRank = getShape(*indices).size();
  SmallVector<int64_t> back;
  for (int64_t d = 0; d < axis; ++d)
    back.push_back(idsRank + d);
  for (int64_t d = 0; d < idsRank; ++d)
    back.push_back(d);
  for (int64_t d = idsRank + axis; d < idsRank + rank - 1; ++d)
    back.push_back(d);
  return b.setOutput(b.create<TransposeOp>(*rows, back));
}

static LogicalResult importGather(NodeBinder &b) {
  if (b.isIndexInput(1))
    return gatherRows(b);
  if (!b.isIntInput(0))
    return gatherFloat(b);
  FailureOr<IntTensor> data = shapeOperand(b, 0), indices = shapeOperand(b, 1);
  if (failed(data) || failed(indices))
    return failure();
  int64_t axis = b.getInt("axis", 0);
  if (data->shape.size() != 1 || (axis != 0 && axis != -1))
    return b.error() << "only gathering from a 1-D integer tensor (a shape) "
                        "along axis 0 is supported";
  int64_t size = data->shape[0];
  IntTensor result{indices->shape, {}};
  for (int64_t index : indices->values) {
    if (index < -size || index >= size)
      return b.error() << "index " << index
                       << " is out of range for a tensor of " << size
                       << " elements";
    result.values.push_back(data->values[index < 0 ? index + size : index]);
  }
  return b.setIntOutput(std::move(result));
}

/// The axes of Unsqueeze, Squeeze and the reductions: an attribute before
/// `inputSinceOpset`, input 1 from it on; nullopt when not given.
static FailureOr<std::optional<SmallVector<int64_t>>>
readAxes(NodeBinder &b, int64_t inputSinceOpset) {
  using Axes = std::optional<SmallVector<int64_t>>;
  if (b.opset() < inputSinceOpset && b.hasInput(1))
    return b.error() << "axes are an input only from opset " << inputSinceOpset
                     << "; at opset " << b.opset()
                     << " give the attribute 'axes'";
  if (b.opset() < inputSinceOpset)
    return b.hasAttr("axes") ? Axes(b.getInts("axes", {})) : Axes();
  if (!b.hasInput(1))
    return Axes();
  FailureOr<IntTensor> axes = shapeOperand(b, 1);
  if (failed(axes))
    return failure();
  return Axes(axes->values);
}

/// `axes` counted from 0 (negative ones from `rank`), sorted; refused when
/// out of range or repeated.
static FailureOr<SmallVector<int64_t>>
normalizeAxes(NodeBinder &b, SmallVector<int64_t> axes, int64_t rank) {
  SmallVector<int64_t> given = axes;
  for (int64_t &axis : axes) {
    if (axis < -rank || axis >= rank)
      return b.error() << "axes " << formatInts(given)
                       << " are out of range for rank " << rank;
    axis = axis < 0 ? axis + rank : axis;
  }
  llvm::sort(axes);
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end())
    return b.error() << "axes " << formatInts(given) << " repeat an axis";
  return axes;
}

/// The shape of input 0, a compile-time integer tensor or a float one.
static FailureOr<SmallVector<int64_t>> dataShape(NodeBinder &b) {
  if (b.isIntInput(0))
    return b.intInput(0)->shape;
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  return SmallVector<int64_t>(getShape(*x));
}

/// Output 0 is input 0 with another shape of as many elements: a folded
/// integer tensor, or a view of a float one.
static LogicalResult setReshapedOutput(NodeBinder &b, ArrayRef<int64_t> shape) {
  if (b.isIntInput(0)) {
    IntTensor data = *b.intInput(0);
    data.shape.assign(shape.begin(), shape.end());
    return b.setIntOutput(std::move(data));
  }
  return b.setOutput(b.reshape(*b.input(0), shape));
}

static LogicalResult importUnsqueeze(NodeBinder &b) {
  FailureOr<SmallVector<int64_t>> shape = dataShape(b);
  FailureOr<std::optional<SmallVector<int64_t>>> given = readAxes(b, 13);
  if (failed(shape) || failed(given))
    return failure();
  if (!*given)
    return b.error() << "no axes are given; Unsqueeze needs them";
  int64_t rank = shape->size() + (*given)->size();
  FailureOr<SmallVector<int64_t>> axes = normalizeAxes(b, **given, rank);
  if (failed(axes))
    return failure();
  for (int64_t axis : *axes)
    shape->insert(shape->begin() + axis, 1);
  return setReshapedOutput(b, *shape);
}

/// Squeeze: the given axes (of size 1), or every axis of size 1.
static LogicalResult importSqueeze(NodeBinder &b) {
  FailureOr<SmallVector<int64_t>> shape = dataShape(b);
  FailureOr<std::optional<SmallVector<int64_t>>> given = readAxes(b, 13);
  if (failed(shape) || failed(given))
    return failure();
  int64_t rank = shape->size();
  SmallVector<int64_t> axes;
  if (*given) {
    FailureOr<SmallVector<int64_t>> normalized =
        normalizeAxes(b, **given, rank);
    if (failed(normalized))
      return failure();
    axes = std::move(*normalized);
  } else {
    for (int64_t d = 0; d < rank; ++d)
      if ((*shape)[d] == 1)
        axes.push_back(d);
  }
  for (int64_t axis : llvm::reverse(axes)) {
    if ((*shape)[axis] != 1)
      return b.error() << "axis " << axis << " has size " << (*shape)[axis]
                       << "; only axes of size 1 can be squeezed";
    shape->erase(shape->begin() + axis);
  }
  return setReshapedOutput(b, *shape);
}

/// `x` with the reduced `axes` (other than 1s) after every other axis of
/// size above 1: `x` itself when they are, else a transpose that keeps the
/// order of the kept axes and of the reduced ones.
static FailureOr<Value> moveReducedAxesLast(NodeBinder &b, Value x,
                                            ArrayRef<int64_t> axes) {
  ArrayRef<int64_t> shape = getShape(x);
  int64_t rank = shape.size();
  auto reduces = [&](int64_t d) { return llvm::is_contained(axes, d); };
  bool keptAfterReduced = false, reducedSeen = false;
  for (int64_t d = 0; d < rank; ++d) {
    if (shape[d] == 1)
      continue;
    keptAfterReduced |= reducedSeen && !reduces(d);
    reducedSeen |= reduces(d);
  }
  if (!keptAfterReduced)
    return x;
  SmallVector<int64_t> perm;
  for (bool reduced : {false, true})
    for (int64_t d = 0; d < rank; ++d)
      if (reduces(d) == reduced)
        perm.push_back(d);
  return b.create<TransposeOp>(x, perm);
}

/// Reduces the rows of `rows` ([outer, 1, inner]) to [outer, 1, 1].
using RowReduction = function_ref<FailureOr<Value>(NodeBinder &, Value)>;

/// ReduceMean, ReduceSum and ReduceMax: `reduceRows` of the input viewed as
/// [outer, 1, inner], the reduced axes transposed to the end first when
/// they are not there. Axes are an input from `axesInputOpset` on.
static LogicalResult importReduce(NodeBinder &b, int64_t axesInputOpset,
                                  RowReduction reduceRows) {
  FailureOr<Value> x = b.input(0);
  FailureOr<std::optional<SmallVector<int64_t>>> given =
      readAxes(b, axesInputOpset);
  if (failed(x) || failed(given))
    return failure();
  SmallVector<int64_t> shape(getShape(*x));
  int64_t rank = shape.size();
  bool noAxes = !*given || (*given)->empty();
  if (noAxes && b.getInt("noop_with_empty_axes", 0) != 0)
    return b.setOutput(*x);
  FailureOr<SmallVector<int64_t>> axes =
      noAxes ? FailureOr<SmallVector<int64_t>>(
                   llvm::to_vector(llvm::seq<int64_t>(0, rank)))
             : normalizeAxes(b, **given, rank);
  if (failed(axes))
    return failure();
  bool keepDims = b.getInt("keepdims", 1) != 0;
  SmallVector<int64_t> outShape;
  for (int64_t d = 0; d < rank; ++d)
    if (!llvm::is_contained(*axes, d) || keepDims)
      outShape.push_back(llvm::is_contained(*axes, d) ? 1 : shape[d]);
  FailureOr<Value> input = moveReducedAxesLast(b, *x, *axes);
  if (failed(input))
    return failure();
  shape.assign(getShape(*input).begin(), getShape(*input).end());
  // The reduction runs over the trailing axes from `first` (1s may be
  // among them).
  int64_t reduced = 0;
  for (int64_t a : *axes)
    reduced += getShape(*x)[a] != 1;
  int64_t first = rank;
  for (int64_t d = rank - 1, seen = 0; d >= 0 && seen < reduced; --d)
    if (shape[d] != 1) {
      first = d;
      ++seen;
    }
  if (first == rank)
    return b.setOutput(b.reshape(*input, outShape));
  int64_t outer = ShapedType::getNumElements(ArrayRef(shape).take_front(first));
  int64_t inner = ShapedType::getNumElements(ArrayRef(shape).drop_front(first));
  FailureOr<Value> result = reduceRows(b, b.reshape(*input, {outer, 1, inner}));
  if (failed(result))
    return failure();
  return b.setOutput(b.reshape(*result, outShape));
}

/// ReduceMean (the spatial mean of squeeze-and-excitation blocks and
/// classifier heads, a sequence's mean): a global average pooling.
static LogicalResult importReduceMean(NodeBinder &b) {
  return importReduce(b, 18, [](NodeBinder &b, Value rows) {
    return b.create<GlobalAvgPoolOp>(rows);
  });
}

/// ReduceSum: the mean times the row length (so the gradient is the
/// average pooling's, scaled).
static LogicalResult importReduceSum(NodeBinder &b) {
  return importReduce(b, 13, [](NodeBinder &b, Value rows) -> FailureOr<Value> {
    FailureOr<Value> mean = b.create<GlobalAvgPoolOp>(rows);
    if (failed(mean))
      return failure();
    return b.create<MulOp>(*mean,
                           scalarConstant(b, double(getShape(rows).back())));
  });
}

/// ReduceMax: the maximum of each row (rowMaxima).
static LogicalResult importReduceMax(NodeBinder &b) {
  return importReduce(b, 18, [](NodeBinder &b, Value rows) {
    ArrayRef<int64_t> shape = getShape(rows);
    return rowMaxima(b, rows, shape[0], 1, shape.back());
  });
}

/// The sizes Split cuts `dim` into: `split` (an attribute before opset 13,
/// input 1 from it on), else `num_outputs` (opset 18; the last part may be
/// smaller), else equal parts, one per output.
static FailureOr<SmallVector<int64_t>> splitSizes(NodeBinder &b, int64_t dim) {
  int64_t outputs = b.node().output_size();
  if (b.opset() < 13 && b.hasAttr("split"))
    return b.getInts("split", {});
  if (b.opset() >= 13 && b.hasInput(1)) {
    FailureOr<IntTensor> split = shapeOperand(b, 1);
    if (failed(split))
      return failure();
    return split->values;
  }
  int64_t parts = b.opset() >= 18 ? b.getInt("num_outputs", outputs) : outputs;
  if (parts != outputs || parts < 1)
    return b.error() << "attribute 'num_outputs' = " << parts << " but the "
                     << "node has " << outputs << " outputs";
  int64_t chunk = dim / parts + (dim % parts != 0);
  if (b.opset() < 18 && dim % parts != 0)
    return b.error() << "an axis of size " << dim << " does not split into "
                     << parts << " equal parts; give 'split'";
  SmallVector<int64_t> sizes;
  for (int64_t start = 0; start < dim; start += chunk)
    sizes.push_back(std::min(chunk, dim - start));
  return sizes;
}

/// Split of a float tensor: one blpa.slice per output.
static LogicalResult importSplit(NodeBinder &b) {
  FailureOr<Value> x = b.input(0);
  if (failed(x))
    return failure();
  ArrayRef<int64_t> shape = getShape(*x);
  FailureOr<int64_t> axis = axisAttribute(b, 0, shape.size());
  if (failed(axis))
    return failure();
  int64_t normalized = *axis;
  FailureOr<SmallVector<int64_t>> sizes = splitSizes(b, shape[normalized]);
  if (failed(sizes))
    return failure();
  int64_t total = 0;
  for (int64_t size : *sizes) {
    if (size < 1 || size > shape[normalized] - total)
      return b.error() << "split " << formatInts(*sizes) << " does not cut "
                       << "an axis of size " << shape[normalized]
                       << " into non-empty parts";
    total += size;
  }
  if (total != shape[normalized] ||
      int64_t(sizes->size()) != b.node().output_size())
    return b.error() << "split " << formatInts(*sizes) << " does not cut an "
                     << "axis of size " << shape[normalized] << " into the "
                     << b.node().output_size() << " outputs";
  SmallVector<Value> parts;
  int64_t start = 0;
  for (int64_t size : *sizes) {
    FailureOr<Value> part = b.create<SliceOp>(*x, normalized, start, size);
    if (failed(part))
      return failure();
    parts.push_back(*part);
    start += size;
  }
  return b.setOutputs(parts);
}

/// Concat of float tensors (activations) along `axis`.
static LogicalResult importTensorConcat(NodeBinder &b) {
  SmallVector<Value> inputs;
  for (int i = 0; i < b.node().input_size(); ++i) {
    FailureOr<Value> input = b.input(i);
    if (failed(input))
      return failure();
    inputs.push_back(*input);
  }
  int64_t rank = getShape(inputs.front()).size();
  int64_t axis = b.getInt("axis", 1);
  int64_t normalized = axis < 0 ? axis + rank : axis;
  if (normalized < 0 || normalized >= rank)
    return b.error() << "attribute 'axis' = " << axis
                     << " is out of range for inputs of rank " << rank;
  return b.setOutput(b.create<ConcatOp>(inputs, normalized));
}

/// Concat: of shapes (integer tensors known at compile time) it is folded;
/// of float tensors it is a blpa.concat.
static LogicalResult importConcat(NodeBinder &b) {
  if (b.node().input_size() > 0 && !b.isIntInput(0))
    return importTensorConcat(b);
  IntTensor result{{0}, {}};
  for (int i = 0; i < b.node().input_size(); ++i) {
    FailureOr<IntTensor> part = shapeOperand(b, i);
    if (failed(part))
      return failure();
    if (part->shape.size() != 1)
      return b.error() << "input " << i << " has rank " << part->shape.size()
                       << "; only 1-D integer tensors (shapes) are "
                          "concatenated";
    int64_t size = result.values.size() + part->values.size();
    if (failed(checkComputedCount(b, {size})))
      return failure();
    llvm::append_range(result.values, part->values);
  }
  // Of 1-D tensors, axis 0 is the only (and default) axis.
  if (int64_t axis = b.getInt("axis", 0); axis != 0 && axis != -1)
    return b.error() << "attribute 'axis' = " << axis
                     << " is out of range for 1-D inputs";
  result.shape[0] = result.values.size();
  return b.setIntOutput(std::move(result));
}

//===----------------------------------------------------------------------===//
// The table
//===----------------------------------------------------------------------===//

/// Each op's opset range is where its handler implements ONNX's semantics.
/// The handlers follow every version of their op from opset 1 to 21,
/// branching on the opset where the op changed (BatchNormalization's
/// training mode, Dropout's is_test and training_mode, Reshape's shape
/// attribute, Unsqueeze's axes attribute); the legacy broadcast attributes
/// of Add and Gemm before opset 7 only restrict numpy broadcasting. Concat
/// before opset 4 concatenated along axis 1 by default, which the handler
/// (folding 1-D shapes along axis 0) does not model. Clip's bounds moved
/// from attributes to inputs at opset 11 (both handled), as did Pad's pads
/// and value (both handled; axes from 18, opset 1's `paddings` left out);
/// HardSwish appeared at opset 14, LayerNormalization at 17, Gelu at 20.
/// Squeeze's, Unsqueeze's and ReduceSum's axes became an input at opset
/// 13, ReduceMean's and ReduceMax's at 18 (with noop_with_empty_axes);
/// Split's sizes became an input at 13 and num_outputs appeared at 18
/// (opset 1's Split, with sizes as an optional input too, is left out).
/// Softmax and LogSoftmax normalize along one axis from opset 13 and over
/// the flattened block from `axis` before (both handled).
const llvm::StringMap<NodeImporter> &onnximport::nodeHandlers() {
  static const llvm::StringMap<NodeImporter> table = {
      {"Add", {importBroadcast<AddOp>}},
      {"AveragePool", {importAveragePool}},
      {"BatchNormalization", {importBatchNormalization}},
      {"Concat", {importConcat, /*minOpset=*/4}},
      {"Clip", {importClip}},
      {"Constant", {importConstant}},
      {"Cast", {importCast}},
      {"ConstantOfShape", {importConstantOfShape, /*minOpset=*/9}},
      {"Conv", {importConv}},
      {"DepthToSpace", {importDepthToSpace}},
      {"Div", {importBroadcast<DivOp>}},
      {"Dropout", {importDropout}},
      {"Equal", {importIntLogic, /*minOpset=*/7}},
      {"Erf", {importElementwise<ErfOp>}},
      {"Exp", {importElementwise<ExpOp>}},
      {"Expand", {importExpand, /*minOpset=*/8}},
      {"Flatten", {importFlatten}},
      {"Gather", {importGather}},
      {"Gemm", {importGemm}},
      {"Gelu", {importGelu, /*minOpset=*/20}},
      {"GlobalAveragePool", {importGlobalAveragePool}},
      {"GlobalMaxPool", {importGlobalMaxPool}},
      {"Greater", {importIntLogic, /*minOpset=*/7}},
      {"HardSigmoid", {importHardSigmoid}},
      {"HardSwish", {importElementwise<HardSwishOp>, /*minOpset=*/14}},
      {"Identity", {importIdentity}},
      {"LayerNormalization", {importLayerNormalization, /*minOpset=*/17}},
      {"Less", {importIntLogic, /*minOpset=*/7}},
      {"Log", {importElementwise<LogOp>}},
      {"LogSoftmax", {importSoftmax<LogSoftmaxOp>}},
      {"MatMul", {importMatMul}},
      {"MaxPool", {importMaxPool}},
      {"Mul", {importBroadcast<MulOp>}},
      {"Neg", {importNeg}},
      {"Not", {importIntLogic}},
      {"Pad", {importPad, /*minOpset=*/2}},
      {"Pow", {importPow}},
      {"ReduceMax", {importReduceMax}},
      {"ReduceMean", {importReduceMean}},
      {"ReduceSum", {importReduceSum}},
      {"Relu", {importElementwise<ReluOp>}},
      {"Reshape", {importReshape}},
      {"Shape", {importShape}},
      {"Sigmoid", {importElementwise<SigmoidOp>}},
      {"Slice", {importSlice}},
      {"Softmax", {importSoftmax<SoftmaxOp>}},
      {"SpaceToDepth", {importSpaceToDepth}},
      {"Split", {importSplit, /*minOpset=*/2}},
      {"Sqrt", {importElementwise<SqrtOp>}},
      {"Squeeze", {importSqueeze}},
      {"Sub", {importBroadcast<SubOp>}},
      {"Tanh", {importElementwise<TanhOp>}},
      {"Transpose", {importTranspose}},
      {"Trilu", {importTrilu, /*minOpset=*/14}},
      {"Unsqueeze", {importUnsqueeze}},
      {"Where", {importIntLogic, /*minOpset=*/9}},
  };
  return table;
}
