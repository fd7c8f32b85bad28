//===- BlpaOps.cpp - Shape rules, verifiers and runtime calls -------------===//
//
// Per-op knowledge of the blpa dialect except the gradient rules (those are
// in BlpaGradients.cpp): result-type inference, verifiers, and the runtime
// call each op lowers to.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Runtime/Runtime.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/CheckedArithmetic.h"

#include <array>
#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::blpa;

#include "blpa/Dialect/Blpa/IR/BlpaInterfaces.cpp.inc"

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

void mlir::blpa::setPhase(Operation *op, Phase phase) {
  op->setAttr(kPhaseAttrName,
              StringAttr::get(op->getContext(), stringifyPhase(phase)));
}

Phase mlir::blpa::getPhase(Operation *op) {
  auto attr = op->getAttrOfType<StringAttr>(kPhaseAttrName);
  if (!attr)
    return Phase::Forward;
  if (attr.getValue() == "backward")
    return Phase::Backward;
  if (attr.getValue() == "update")
    return Phase::Update;
  return Phase::Forward;
}

StringRef mlir::blpa::stringifyPhase(Phase phase) {
  switch (phase) {
  case Phase::Forward:
    return "forward";
  case Phase::Backward:
    return "backward";
  case Phase::Update:
    return "update";
  }
  llvm_unreachable("unknown phase");
}

bool mlir::blpa::isInPhase(Operation *op, Phase phase) {
  return op->hasAttr(kPhaseAttrName) && getPhase(op) == phase;
}

bool mlir::blpa::hasBackwardReaders(Operation *op) {
  return llvm::any_of(op->getUsers(), [](Operation *user) {
    return isInPhase(user, Phase::Backward);
  });
}

int mlir::blpa::getExactnessRank(StringRef choice) {
  return llvm::StringSwitch<int>(choice)
      .Cases({"float32", "recompute"}, 4)
      .Case("8", 3)
      .Case("4", 2)
      .Case("2", 1)
      .Default(0);
}

std::optional<int64_t> mlir::blpa::getActChoiceBits(Operation *op) {
  auto choice = op->getAttrOfType<StringAttr>(kActChoiceAttrName);
  if (!choice)
    return std::nullopt;
  int64_t bits = 0;
  if (choice.getValue().getAsInteger(10, bits))
    return 0;
  return bits;
}

bool mlir::blpa::isActivationChoice(StringRef choice) {
  return getExactnessRank(choice) != 0;
}

void mlir::blpa::mergeActivationChoice(Operation *op, Operation *other) {
  auto theirs = other->getAttrOfType<StringAttr>(kActChoiceAttrName);
  if (!theirs)
    return;
  auto ours = op->getAttrOfType<StringAttr>(kActChoiceAttrName);
  if (!ours ||
      getExactnessRank(theirs.getValue()) > getExactnessRank(ours.getValue()))
    op->setAttr(kActChoiceAttrName, theirs);
}

void mlir::blpa::mergeRecomputes(Operation *op, Operation *other) {
  auto theirs = other->getAttrOfType<DenseI64ArrayAttr>(kRecomputesAttrName);
  if (!theirs)
    return;
  SmallVector<int64_t> ids;
  if (auto ours = op->getAttrOfType<DenseI64ArrayAttr>(kRecomputesAttrName))
    llvm::append_range(ids, ours.asArrayRef());
  for (int64_t id : theirs.asArrayRef())
    if (!llvm::is_contained(ids, id))
      ids.push_back(id);
  op->setAttr(kRecomputesAttrName,
              DenseI64ArrayAttr::get(op->getContext(), ids));
}

void mlir::blpa::mergeRecomputeId(Operation *op, Operation *other,
                                  DenseMap<int64_t, int64_t> &renames) {
  auto theirs = other->getAttrOfType<IntegerAttr>(kRecomputeIdAttrName);
  if (!theirs)
    return;
  auto ours = op->getAttrOfType<IntegerAttr>(kRecomputeIdAttrName);
  if (!ours) {
    op->setAttr(kRecomputeIdAttrName, theirs);
    return;
  }
  if (ours != theirs)
    renames[theirs.getInt()] = ours.getInt();
}

void mlir::blpa::renameRecomputes(Block &block,
                                  const DenseMap<int64_t, int64_t> &renames) {
  if (renames.empty())
    return;
  // An id renamed to one that was renamed in turn ends at the last.
  auto rename = [&](int64_t id) {
    for (auto it = renames.find(id); it != renames.end(); it = renames.find(id))
      id = it->second;
    return id;
  };
  for (Operation &copy : block) {
    auto ids = copy.getAttrOfType<DenseI64ArrayAttr>(kRecomputesAttrName);
    if (!ids || llvm::none_of(ids.asArrayRef(),
                              [&](int64_t id) { return renames.count(id); }))
      continue;
    SmallVector<int64_t> renamed;
    for (int64_t id : ids.asArrayRef())
      if (int64_t now = rename(id); !llvm::is_contained(renamed, now))
        renamed.push_back(now);
    copy.setAttr(kRecomputesAttrName,
                 DenseI64ArrayAttr::get(copy.getContext(), renamed));
  }
}

void mlir::blpa::replaceKeepingPhase(Operation *from, Operation *to) {
  to->setAttr(kPhaseAttrName, from->getAttr(kPhaseAttrName));
  // The encoder of a forward op still stands for the op's choice of what
  // its remaining saved results keep (a max pooling's output).
  for (StringRef name : {kActChoiceAttrName, kRecomputeIdAttrName})
    if (Attribute attr = from->getAttr(name))
      to->setAttr(name, attr);
  for (auto [oldResult, newResult] :
       llvm::zip(from->getResults(), to->getResults()))
    oldResult.replaceAllUsesWith(newResult);
  from->erase();
}

void mlir::blpa::decodeBeforeFirstUse(
    ArrayRef<OpOperand *> uses,
    function_ref<Value(OpBuilder &, Location)> build) {
  if (uses.empty())
    return;
  Operation *first = uses.front()->getOwner();
  for (OpOperand *use : uses)
    if (use->getOwner()->isBeforeInBlock(first))
      first = use->getOwner();
  OpBuilder b(first);
  Value replacement = build(b, first->getLoc());
  setPhase(replacement.getDefiningOp(), Phase::Backward);
  for (OpOperand *use : uses)
    use->set(replacement);
}

bool mlir::blpa::isCodesWriter(Operation *op) {
  return isa<QuantizeOp, ProbabilityEncodeOp>(op);
}

bool mlir::blpa::isCodeParams(Value v) {
  Operation *def = v.getDefiningOp();
  return !isa<PackedType>(v.getType()) && def && isCodesWriter(def);
}

ActivationNeed mlir::blpa::getActivationNeed(OpOperand &use) {
  if (auto op = dyn_cast<SavedActivationOpInterface>(use.getOwner()))
    return op.getActivationNeed(use.getOperandNumber());
  return ActivationNeed::Values;
}

bool mlir::blpa::isKnownNonNegative(Value v) {
  auto op = v.getDefiningOp<SavedActivationOpInterface>();
  return op && op.isResultNonNegative(isKnownNonNegative);
}

ArrayRef<int64_t> mlir::blpa::getShape(Value value) {
  return cast<ShapedType>(value.getType()).getShape();
}

int64_t mlir::blpa::getTensorBytes(Type type) {
  if (auto packed = dyn_cast<PackedType>(type))
    return packed.getNumBytes();
  auto shaped = cast<ShapedType>(type);
  return shaped.getNumElements() *
         static_cast<int64_t>(shaped.getElementTypeBitWidth() / 8);
}

static RankedTensorType f32Tensor(MLIRContext *ctx, ArrayRef<int64_t> shape) {
  return RankedTensorType::get(shape, Float32Type::get(ctx));
}

/// Appends the data pointers of `values` (a null value: a null pointer).
static void appendData(SmallVectorImpl<RuntimeArg> &args,
                       ArrayRef<Value> values) {
  for (Value v : values)
    args.push_back(RuntimeArg::data(v));
}

/// Checks that `attr` has `size` strictly positive (or, with allowZero,
/// non-negative) entries.
static LogicalResult checkArray(std::optional<Location> loc, StringRef name,
                                ArrayRef<int64_t> attr, size_t size,
                                bool allowZero = false) {
  if (attr.size() != size)
    return emitOptionalError(loc, "'", name, "' must have ", size,
                             " entries, got ", attr.size());
  for (int64_t v : attr)
    if (v < 0 || (!allowZero && v == 0))
      return emitOptionalError(loc, "'", name, "' entries must be ",
                               allowZero ? "non-negative" : "positive");
  return success();
}

static LogicalResult checkRank(std::optional<Location> loc, StringRef what,
                               Value v, int64_t rank) {
  if (static_cast<int64_t>(getShape(v).size()) != rank)
    return emitOptionalError(loc, what, " must have rank ", rank, ", got ",
                             v.getType());
  return success();
}

/// A per-channel vector of `channels` entries.
static LogicalResult checkChannelVector(std::optional<Location> loc,
                                        StringRef what, Value v,
                                        int64_t channels) {
  ArrayRef<int64_t> shape = getShape(v);
  if (shape.size() != 1 || shape[0] != channels)
    return emitOptionalError(loc, what, " must be tensor<", channels,
                             "xf32>, got ", v.getType());
  return success();
}

//===----------------------------------------------------------------------===//
// Convolution
//===----------------------------------------------------------------------===//

/// The window arrays of Runtime.h's convolution and pooling kernels:
/// `rank` spatial dimensions, then in, out, kernel, strides, pads (begins,
/// then ends) and dilations, one array each.
static void appendWindowArgs(ArrayRef<int64_t> input, ArrayRef<int64_t> output,
                             ArrayRef<int64_t> kernel,
                             ArrayRef<int64_t> strides, ArrayRef<int64_t> pads,
                             ArrayRef<int64_t> dilations,
                             SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::i64(kernel.size()));
  for (ArrayRef<int64_t> list : {input.drop_front(2), output.drop_front(2),
                                 kernel, strides, pads, dilations})
    args.push_back(RuntimeArg::i64Array(list));
}

namespace {
/// The static description of a 2-D or 3-D convolution shared by conv and its
/// two gradient ops, which all lower to runtime calls with the same
/// arguments.
struct ConvGeometry {
  SmallVector<int64_t, 5> input;  // N, C, spatial...
  SmallVector<int64_t, 5> weight; // K, C/group, kernel...
  SmallVector<int64_t, 5> output; // N, K, spatial...
  ArrayRef<int64_t> strides, pads, dilations;
  int64_t group;

  void appendRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) const {
    for (int64_t v : {input[0], input[1], weight[0], group})
      args.push_back(RuntimeArg::i64(v));
    appendWindowArgs(input, output, ArrayRef<int64_t>(weight).drop_front(2),
                     strides, pads, dilations, args);
  }
};
} // namespace

/// The number of windows along one dimension, or nullopt when the window
/// arithmetic overflows int64. Operands are non-negative and kernel, stride
/// and dilation positive (checked before); the values come from models, so
/// nothing bounds them further.
static std::optional<int64_t> convOutputDim(int64_t in, int64_t kernel,
                                            int64_t stride, int64_t padBegin,
                                            int64_t padEnd, int64_t dilation) {
  std::optional<int64_t> span =
      llvm::checkedMulAdd(dilation, kernel - 1, int64_t(1));
  std::optional<int64_t> padded = llvm::checkedAdd(in, padBegin);
  if (padded)
    padded = llvm::checkedAdd(*padded, padEnd);
  if (!span || !padded)
    return std::nullopt;
  // A kernel wider than the padded input has no window (not one: division
  // truncates toward zero).
  if (*padded < *span)
    return 0;
  return (*padded - *span) / stride + 1;
}

/// Validates the geometry of a convolution given its input and weight
/// shapes and fills in the output shape.
static LogicalResult
buildConvGeometry(std::optional<Location> loc, ArrayRef<int64_t> input,
                  ArrayRef<int64_t> weight, ArrayRef<int64_t> strides,
                  ArrayRef<int64_t> pads, ArrayRef<int64_t> dilations,
                  int64_t group, ConvGeometry &geom) {
  if ((input.size() != 4 && input.size() != 5) || weight.size() != input.size())
    return emitOptionalError(loc, "conv expects rank-4 (NCHW, KCRS) or rank-5 "
                                  "(NCDHW, KCTRS) input and weight");
  size_t spatial = input.size() - 2;
  if (failed(checkArray(loc, "strides", strides, spatial)) ||
      failed(checkArray(loc, "pads", pads, 2 * spatial, /*allowZero=*/true)) ||
      failed(checkArray(loc, "dilations", dilations, spatial)))
    return failure();
  if (llvm::any_of(weight.drop_front(2), [](int64_t k) { return k < 1; }))
    return emitOptionalError(loc, "conv kernel must not be empty");
  if (group < 1 || input[1] % group != 0 || weight[0] % group != 0 ||
      weight[1] != input[1] / group)
    return emitOptionalError(loc, "conv channel mismatch: input has ", input[1],
                             " channels, weight expects ", weight[1],
                             " per group with group = ", group);
  geom.input.assign(input.begin(), input.end());
  geom.weight.assign(weight.begin(), weight.end());
  geom.strides = strides;
  geom.pads = pads;
  geom.dilations = dilations;
  geom.group = group;
  geom.output = {input[0], weight[0]};
  for (size_t i = 0; i < spatial; ++i) {
    std::optional<int64_t> size =
        convOutputDim(input[2 + i], weight[2 + i], strides[i], pads[i],
                      pads[spatial + i], dilations[i]);
    if (!size)
      return emitOptionalError(loc, "conv window arithmetic overflows int64");
    if (*size < 1)
      return emitOptionalError(loc, "conv kernel larger than padded input");
    geom.output.push_back(*size);
  }
  return success();
}

LogicalResult ConvOp::inferReturnTypes(MLIRContext *ctx,
                                       std::optional<Location> loc,
                                       Adaptor adaptor,
                                       SmallVectorImpl<Type> &results) {
  ConvGeometry geom;
  if (failed(buildConvGeometry(
          loc, getShape(adaptor.getInput()), getShape(adaptor.getWeight()),
          adaptor.getStrides(), adaptor.getPads(), adaptor.getDilations(),
          adaptor.getGroup(), geom)))
    return failure();
  if (Value bias = adaptor.getBias())
    if (failed(checkChannelVector(loc, "conv bias", bias, geom.weight[0])))
      return failure();
  results.push_back(f32Tensor(ctx, geom.output));
  return success();
}

/// The geometry of a verified conv-like op; cannot fail.
template <typename OpTy>
static ConvGeometry getGeometry(OpTy op, ArrayRef<int64_t> input,
                                ArrayRef<int64_t> weight) {
  ConvGeometry geom;
  (void)buildConvGeometry(std::nullopt, input, weight, op.getStrides(),
                          op.getPads(), op.getDilations(), op.getGroup(), geom);
  return geom;
}

StringRef ConvOp::getRuntimeFunction() { return "blpa_conv"; }

void ConvOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getInput()));
  args.push_back(RuntimeArg::data(getWeight()));
  args.push_back(RuntimeArg::data(getBias()));
  args.push_back(RuntimeArg::data(getOutput()));
  getGeometry(*this, getShape(getInput()), getShape(getWeight()))
      .appendRuntimeArgs(args);
}

/// The result type of a convolution gradient: `result` (the input's or the
/// weight's shape) once the convolution of `input` by `weight` is valid and
/// produces the gradient's shape.
template <typename Adaptor>
static LogicalResult
inferConvGradType(MLIRContext *ctx, std::optional<Location> loc,
                  Adaptor adaptor, ArrayRef<int64_t> input,
                  ArrayRef<int64_t> weight, ArrayRef<int64_t> result,
                  SmallVectorImpl<Type> &results) {
  ConvGeometry geom;
  if (failed(buildConvGeometry(loc, input, weight, adaptor.getStrides(),
                               adaptor.getPads(), adaptor.getDilations(),
                               adaptor.getGroup(), geom)))
    return failure();
  if (ArrayRef<int64_t>(geom.output) != getShape(adaptor.getGrad()))
    return emitOptionalError(loc, "convolution gradient: grad shape does "
                                  "not match the convolution's output shape");
  results.push_back(f32Tensor(ctx, result));
  return success();
}

LogicalResult
ConvGradInputOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                  Adaptor adaptor,
                                  SmallVectorImpl<Type> &results) {
  return inferConvGradType(ctx, loc, adaptor, adaptor.getInputShape(),
                           getShape(adaptor.getWeight()),
                           adaptor.getInputShape(), results);
}

StringRef ConvGradInputOp::getRuntimeFunction() {
  return "blpa_conv_grad_input";
}

void ConvGradInputOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getGrad()));
  args.push_back(RuntimeArg::data(getWeight()));
  args.push_back(RuntimeArg::data(getInputGrad()));
  getGeometry(*this, getInputShape(), getShape(getWeight()))
      .appendRuntimeArgs(args);
}

LogicalResult
ConvGradWeightOp::inferReturnTypes(MLIRContext *ctx,
                                   std::optional<Location> loc, Adaptor adaptor,
                                   SmallVectorImpl<Type> &results) {
  return inferConvGradType(ctx, loc, adaptor, getShape(adaptor.getInput()),
                           adaptor.getWeightShape(), adaptor.getWeightShape(),
                           results);
}

StringRef ConvGradWeightOp::getRuntimeFunction() {
  return "blpa_conv_grad_weight";
}

void ConvGradWeightOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getGrad()));
  args.push_back(RuntimeArg::data(getInput()));
  args.push_back(RuntimeArg::data(getWeightGrad()));
  getGeometry(*this, getShape(getInput()), getWeightShape())
      .appendRuntimeArgs(args);
}

//===----------------------------------------------------------------------===//
// Batch normalization
//===----------------------------------------------------------------------===//

/// Checks a batch-norm input (or output) of shape `shape` and its
/// per-channel operands; returns the channel count.
static FailureOr<int64_t> checkBatchNorm(std::optional<Location> loc,
                                         ArrayRef<int64_t> shape,
                                         ArrayRef<Value> perChannel) {
  if (shape.size() < 2)
    return emitOptionalError(loc,
                             "batch norm input must have rank >= 2, got "
                             "rank ",
                             shape.size());
  for (Value v : perChannel)
    if (failed(checkChannelVector(loc, "batch norm operand", v, shape[1])))
      return failure();
  return shape[1];
}
static FailureOr<int64_t> checkBatchNorm(std::optional<Location> loc,
                                         Value input,
                                         ArrayRef<Value> perChannel) {
  return checkBatchNorm(loc, getShape(input), perChannel);
}

/// The [N, C, spatial] view the per-channel kernels take: channel is
/// dimension 1, spatial the product of the dimensions after it; a tensor of
/// rank < 2 is one channel of one sample.
static std::array<int64_t, 3> getChannelView(ArrayRef<int64_t> shape) {
  if (shape.size() < 2)
    return {1, 1, ShapedType::getNumElements(shape)};
  return {shape[0], shape[1], ShapedType::getNumElements(shape.drop_front(2))};
}

/// N, C and the number of elements per (sample, channel).
static void appendBatchNormDims(ArrayRef<int64_t> shape,
                                SmallVectorImpl<RuntimeArg> &args) {
  for (int64_t v : getChannelView(shape))
    args.push_back(RuntimeArg::i64(v));
}
static void appendBatchNormDims(Value input,
                                SmallVectorImpl<RuntimeArg> &args) {
  appendBatchNormDims(getShape(input), args);
}

/// The output, mean and inv_std types of a training-mode batch norm
/// (blpa.batch_norm, blpa.batch_norm_relu).
template <typename Adaptor>
static LogicalResult
inferTrainingBatchNorm(MLIRContext *ctx, std::optional<Location> loc,
                       Adaptor adaptor, SmallVectorImpl<Type> &results) {
  FailureOr<int64_t> channels =
      checkBatchNorm(loc, adaptor.getInput(),
                     {adaptor.getScale(), adaptor.getBias(),
                      adaptor.getRunningMean(), adaptor.getRunningVar()});
  if (failed(channels))
    return failure();
  results.push_back(adaptor.getInput().getType());
  results.push_back(f32Tensor(ctx, {*channels}));
  results.push_back(f32Tensor(ctx, {*channels}));
  return success();
}

/// The arguments of blpa_batch_norm_train and blpa_batch_norm_relu_train.
template <typename TrainingBatchNormOp>
static void appendTrainingBatchNormArgs(TrainingBatchNormOp op,
                                        SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {op.getInput(), op.getScale(), op.getBias(), op.getOutput(),
                    op.getMean(), op.getInvStd()});
  appendBatchNormDims(op.getInput(), args);
  args.push_back(RuntimeArg::f64(op.getEpsilon().convertToDouble()));
}

LogicalResult BatchNormOp::inferReturnTypes(MLIRContext *ctx,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  return inferTrainingBatchNorm(ctx, loc, adaptor, results);
}

StringRef BatchNormOp::getRuntimeFunction() { return "blpa_batch_norm_train"; }

void BatchNormOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendTrainingBatchNormArgs(*this, args);
}

LogicalResult BatchNormInferenceOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  if (failed(
          checkBatchNorm(loc, adaptor.getInput(),
                         {adaptor.getScale(), adaptor.getBias(),
                          adaptor.getRunningMean(), adaptor.getRunningVar()})))
    return failure();
  results.push_back(adaptor.getInput().getType());
  return success();
}

StringRef BatchNormInferenceOp::getRuntimeFunction() {
  return "blpa_batch_norm_infer";
}

void BatchNormInferenceOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  for (Value v : {getInput(), getScale(), getBias(), getRunningMean(),
                  getRunningVar(), getOutput()})
    args.push_back(RuntimeArg::data(v));
  appendBatchNormDims(getInput(), args);
  args.push_back(RuntimeArg::f64(getEpsilon().convertToDouble()));
}

/// The input, scale and bias gradient types of an exact batch-norm
/// gradient (blpa.batch_norm_grad, blpa.batch_norm_relu_grad) whose
/// per-channel operands are `perChannel`.
static LogicalResult inferBatchNormGradients(
    MLIRContext *ctx, std::optional<Location> loc, StringRef opName, Value grad,
    Value input, ArrayRef<Value> perChannel, SmallVectorImpl<Type> &results) {
  FailureOr<int64_t> channels = checkBatchNorm(loc, input, perChannel);
  if (failed(channels))
    return failure();
  if (grad.getType() != input.getType())
    return emitOptionalError(loc, opName, ": grad and input types differ");
  results.push_back(input.getType());
  results.push_back(f32Tensor(ctx, {*channels}));
  results.push_back(f32Tensor(ctx, {*channels}));
  return success();
}

LogicalResult
BatchNormGradOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                  Adaptor adaptor,
                                  SmallVectorImpl<Type> &results) {
  return inferBatchNormGradients(
      ctx, loc, "batch_norm_grad", adaptor.getGrad(), adaptor.getInput(),
      {adaptor.getScale(), adaptor.getMean(), adaptor.getInvStd()}, results);
}

StringRef BatchNormGradOp::getRuntimeFunction() {
  return "blpa_batch_norm_grad";
}

void BatchNormGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  for (Value v : {getGrad(), getInput(), getScale(), getMean(), getInvStd(),
                  getInputGrad(), getScaleGrad(), getBiasGrad()})
    args.push_back(RuntimeArg::data(v));
  appendBatchNormDims(getInput(), args);
}

//===----------------------------------------------------------------------===//
// Layer norm
//===----------------------------------------------------------------------===//

/// The [rows, cols] view of a tensor of `shape` at `axis` (0 <= axis <
/// rank, or failure).
static FailureOr<std::pair<int64_t, int64_t>>
layerNormView(std::optional<Location> loc, ArrayRef<int64_t> shape,
              int64_t axis) {
  if (axis < 0 || axis >= int64_t(shape.size()))
    return emitOptionalError(loc, "layer norm axis ", axis,
                             " is out of range for rank ", shape.size());
  return std::make_pair(ShapedType::getNumElements(shape.take_front(axis)),
                        ShapedType::getNumElements(shape.drop_front(axis)));
}

/// `shape` without its leading 1s.
static ArrayRef<int64_t> dropLeadingOnes(ArrayRef<int64_t> shape) {
  while (!shape.empty() && shape.front() == 1)
    shape = shape.drop_front();
  return shape;
}

/// Checks that each of `perColumn` holds the normalized shape (the input's
/// dimensions from `axis`), leading 1s aside; returns the [rows, cols] view.
static FailureOr<std::pair<int64_t, int64_t>>
checkLayerNorm(std::optional<Location> loc, Value input, int64_t axis,
               ArrayRef<Value> perColumn) {
  ArrayRef<int64_t> shape = getShape(input);
  auto view = layerNormView(loc, shape, axis);
  if (failed(view))
    return failure();
  ArrayRef<int64_t> normalized = dropLeadingOnes(shape.drop_front(axis));
  for (Value v : perColumn)
    if (v && dropLeadingOnes(getShape(v)) != normalized)
      return emitOptionalError(loc, "layer norm operand of type ", v.getType(),
                               " must have the normalized shape of ",
                               input.getType(), " from axis ", axis);
  return view;
}

/// The [rows, cols] view of a verified op's `input` at `axis`.
static std::pair<int64_t, int64_t> verifiedLayerNormView(Value input,
                                                         int64_t axis) {
  return *layerNormView(std::nullopt, getShape(input), axis);
}

std::pair<int64_t, int64_t> LayerNormOp::getRowsAndCols() {
  return verifiedLayerNormView(getInput(), getAxis());
}

LogicalResult LayerNormOp::inferReturnTypes(MLIRContext *ctx,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  auto view = checkLayerNorm(loc, adaptor.getInput(), adaptor.getAxis(),
                             {adaptor.getScale(), adaptor.getBias()});
  if (failed(view))
    return failure();
  results.push_back(adaptor.getInput().getType());
  results.push_back(f32Tensor(ctx, {view->first}));
  results.push_back(f32Tensor(ctx, {view->first}));
  return success();
}

StringRef LayerNormOp::getRuntimeFunction() { return "blpa_layer_norm"; }

void LayerNormOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getInput(), getScale(), getBias(), getOutput(), getMean(),
                    getInvStd()});
  auto [rows, cols] = getRowsAndCols();
  args.push_back(RuntimeArg::i64(rows));
  args.push_back(RuntimeArg::i64(cols));
  args.push_back(RuntimeArg::f64(getEpsilon().convertToDouble()));
}

LogicalResult
LayerNormGradOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                  Adaptor adaptor,
                                  SmallVectorImpl<Type> &results) {
  auto view = checkLayerNorm(loc, adaptor.getInput(), adaptor.getAxis(),
                             {adaptor.getScale()});
  if (failed(view))
    return failure();
  if (adaptor.getGrad().getType() != adaptor.getInput().getType())
    return emitOptionalError(loc, "layer_norm_grad: grad and input types "
                                  "differ");
  for (Value stats : {adaptor.getMean(), adaptor.getInvStd()})
    if (getShape(stats) != ArrayRef<int64_t>{view->first})
      return emitOptionalError(loc, "layer_norm_grad: statistics of type ",
                               stats.getType(), " are not [", view->first, "]");
  results.push_back(adaptor.getInput().getType());
  results.push_back(adaptor.getScale().getType());
  results.push_back(adaptor.getScale().getType());
  return success();
}

StringRef LayerNormGradOp::getRuntimeFunction() {
  return "blpa_layer_norm_grad";
}

void LayerNormGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getGrad(), getInput(), getScale(), getMean(), getInvStd(),
                    getInputGrad(), getScaleGrad(), getBiasGrad()});
  auto [rows, cols] = verifiedLayerNormView(getInput(), getAxis());
  args.push_back(RuntimeArg::i64(rows));
  args.push_back(RuntimeArg::i64(cols));
}

void LayerNormGradOp::getInPlaceOperands(unsigned resultIndex,
                                         SmallVectorImpl<unsigned> &operands) {
  if (resultIndex == 0)
    operands.push_back(getGradMutable().getOperandNumber());
}

// The per-row statistics are a few floats per token, and every element's
// gradient depends on them; the scale is a parameter.
ActivationNeed LayerNormGradOp::getActivationNeed(unsigned operandIndex) {
  return operandIndex == getInputMutable().getOperandNumber() ||
                 operandIndex == getGradMutable().getOperandNumber()
             ? ActivationNeed::Values
             : ActivationNeed::Exact;
}

LogicalResult UpdateRunningStatsOp::verify() {
  if (getShape(getMean()).size() != 1)
    return emitOpError("statistics must be per-channel vectors");
  for (Value v : {getRunningMean(), getRunningVar()})
    if (!v.getDefiningOp<ParamOp>())
      return emitOpError("running statistics must be blpa.param values");
  if (getCount() < 2)
    return emitOpError("count must be at least 2 for an unbiased variance");
  return success();
}

StringRef UpdateRunningStatsOp::getRuntimeFunction() {
  return "blpa_update_running_stats";
}

void UpdateRunningStatsOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  for (Value v : {getRunningMean(), getRunningVar(), getMean(), getInvStd()})
    args.push_back(RuntimeArg::data(v));
  args.push_back(RuntimeArg::i64(getShape(getMean()).front()));
  args.push_back(RuntimeArg::i64(getCount()));
  args.push_back(RuntimeArg::f64(getMomentum().convertToDouble()));
  args.push_back(RuntimeArg::f64(getEpsilon().convertToDouble()));
}

//===----------------------------------------------------------------------===//
// Elementwise ops
//===----------------------------------------------------------------------===//

LogicalResult ReluOp::inferReturnTypes(MLIRContext *ctx,
                                       std::optional<Location> loc,
                                       Adaptor adaptor,
                                       SmallVectorImpl<Type> &results) {
  results.push_back(adaptor.getInput().getType());
  return success();
}

StringRef ReluOp::getRuntimeFunction() { return "blpa_relu"; }

void ReluOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getInput()));
  args.push_back(RuntimeArg::data(getOutput()));
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(getShape(getInput()))));
}

LogicalResult ReluGradOp::inferReturnTypes(MLIRContext *ctx,
                                           std::optional<Location> loc,
                                           Adaptor adaptor,
                                           SmallVectorImpl<Type> &results) {
  if (adaptor.getGrad().getType() != adaptor.getOutput().getType())
    return emitOptionalError(loc, "relu_grad: grad and output types differ");
  results.push_back(adaptor.getGrad().getType());
  return success();
}

StringRef ReluGradOp::getRuntimeFunction() { return "blpa_relu_grad"; }

void ReluGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  for (Value v : {getGrad(), getOutput(), getInputGrad()})
    args.push_back(RuntimeArg::data(v));
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(getShape(getGrad()))));
}

/// `shape` right-aligned and padded with leading 1s to `rank` dimensions.
static SmallVector<int64_t> alignToRank(ArrayRef<int64_t> shape, size_t rank) {
  SmallVector<int64_t> result(rank - shape.size(), 1);
  result.append(shape.begin(), shape.end());
  return result;
}

FailureOr<SmallVector<int64_t>>
mlir::blpa::broadcastShapes(ArrayRef<int64_t> a, ArrayRef<int64_t> b) {
  size_t rank = std::max(a.size(), b.size());
  SmallVector<int64_t> lhs = alignToRank(a, rank), rhs = alignToRank(b, rank);
  SmallVector<int64_t> result;
  for (auto [x, y] : llvm::zip(lhs, rhs)) {
    if (x != y && x != 1 && y != 1)
      return failure();
    result.push_back(x == 1 ? y : x);
  }
  return result;
}

/// The shape rule of the broadcasting ops (Blpa_BroadcastOp).
static LogicalResult inferBroadcastType(MLIRContext *ctx,
                                        std::optional<Location> loc,
                                        StringRef name, Value lhs, Value rhs,
                                        SmallVectorImpl<Type> &results) {
  FailureOr<SmallVector<int64_t>> shape =
      broadcastShapes(getShape(lhs), getShape(rhs));
  if (failed(shape))
    return emitOptionalError(loc, name, ": shapes ", lhs.getType(), " and ",
                             rhs.getType(), " do not broadcast");
  results.push_back(f32Tensor(ctx, *shape));
  return success();
}

/// blpa_add's arguments, shared by every broadcasting kernel.
static void appendBroadcastArgs(Value lhs, Value rhs, Value output,
                                SmallVectorImpl<RuntimeArg> &args) {
  for (Value v : {lhs, rhs, output})
    args.push_back(RuntimeArg::data(v));
  ArrayRef<int64_t> out = getShape(output);
  args.push_back(RuntimeArg::i64(out.size()));
  args.push_back(RuntimeArg::i64Array(out));
  args.push_back(RuntimeArg::i64Array(alignToRank(getShape(lhs), out.size())));
  args.push_back(RuntimeArg::i64Array(alignToRank(getShape(rhs), out.size())));
}

LogicalResult ReduceToShapeOp::verify() {
  ArrayRef<int64_t> in = getShape(getInput()), out = getShape(getOutput());
  FailureOr<SmallVector<int64_t>> shape = broadcastShapes(in, out);
  if (out.size() > in.size() || failed(shape) ||
      ArrayRef<int64_t>(*shape) != in)
    return emitOpError("result type ")
           << getOutput().getType() << " does not broadcast to the input type "
           << getInput().getType();
  return success();
}

StringRef ReduceToShapeOp::getRuntimeFunction() { return "blpa_reduce_sum_to"; }

void ReduceToShapeOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getInput()));
  args.push_back(RuntimeArg::data(getOutput()));
  ArrayRef<int64_t> in = getShape(getInput());
  args.push_back(RuntimeArg::i64(in.size()));
  args.push_back(RuntimeArg::i64Array(in));
  args.push_back(
      RuntimeArg::i64Array(alignToRank(getShape(getOutput()), in.size())));
  args.push_back(RuntimeArg::f64(getScale().convertToDouble()));
}

//===----------------------------------------------------------------------===//
// Pooling
//===----------------------------------------------------------------------===//

/// The number of windows along one dimension, or nullopt when the window
/// arithmetic overflows int64 (as convOutputDim; pads are below the kernel).
static std::optional<int64_t> poolOutputDim(int64_t in, int64_t kernel,
                                            int64_t stride, int64_t padBegin,
                                            int64_t padEnd, bool ceilMode) {
  std::optional<int64_t> padded = llvm::checkedAdd(in, padBegin);
  if (padded)
    padded = llvm::checkedAdd(*padded, padEnd);
  if (!padded)
    return std::nullopt;
  int64_t span = *padded - kernel;
  // A kernel wider than the padded input has no window (not one: division
  // truncates toward zero).
  if (span < 0)
    return 0;
  // ceil(span / stride), without overflow.
  bool roundUp = ceilMode && span % stride != 0;
  int64_t out = span / stride + roundUp + 1;
  // As in PyTorch and ONNX, the last window must start inside the input or
  // the leading padding (a start past int64 does not).
  std::optional<int64_t> lastStart = llvm::checkedMul(out - 1, stride);
  if (ceilMode && (!lastStart || *lastStart >= in + padBegin))
    --out;
  return out;
}

/// The output shape of a 2-D or 3-D pooling of `input` ([N, C, H, W] or
/// [N, C, D, H, W]).
static FailureOr<SmallVector<int64_t>>
inferPoolShape(std::optional<Location> loc, ArrayRef<int64_t> input,
               ArrayRef<int64_t> kernel, ArrayRef<int64_t> strides,
               ArrayRef<int64_t> pads, ArrayRef<int64_t> dilations,
               bool ceilMode) {
  if (input.size() != 4 && input.size() != 5)
    return emitOptionalError(loc, "pooling expects a rank-4 (NCHW) or rank-5 "
                                  "(NCDHW) input");
  size_t spatial = input.size() - 2;
  if (failed(checkArray(loc, "kernel_shape", kernel, spatial)) ||
      failed(checkArray(loc, "strides", strides, spatial)) ||
      failed(checkArray(loc, "pads", pads, 2 * spatial, /*allowZero=*/true)) ||
      failed(checkArray(loc, "dilations", dilations, spatial)))
    return failure();
  SmallVector<int64_t> shape(input.take_front(2));
  for (size_t i = 0; i < spatial; ++i) {
    std::optional<int64_t> extent =
        llvm::checkedMulAdd(dilations[i], kernel[i] - 1, int64_t(1));
    if (!extent)
      return emitOptionalError(loc, "pooling window arithmetic overflows "
                                    "int64");
    if (pads[i] >= *extent || pads[spatial + i] >= *extent)
      return emitOptionalError(loc, "pooling pads must be smaller than the "
                                    "kernel's extent");
    std::optional<int64_t> size =
        poolOutputDim(input[2 + i], *extent, strides[i], pads[i],
                      pads[spatial + i], ceilMode);
    if (!size)
      return emitOptionalError(loc, "pooling window arithmetic overflows "
                                    "int64");
    if (*size < 1)
      return emitOptionalError(loc, "pooling window larger than padded input");
    shape.push_back(*size);
  }
  return shape;
}

/// Shape and window arguments shared by the pooling kernels: N, C, then the
/// window arrays (appendWindowArgs).
template <typename OpTy>
static void appendPoolArgs(OpTy op, ArrayRef<int64_t> input,
                           ArrayRef<int64_t> output,
                           SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::i64(input[0]));
  args.push_back(RuntimeArg::i64(input[1]));
  appendWindowArgs(input, output, op.getKernelShape(), op.getStrides(),
                   op.getPads(), op.getDilations(), args);
}

/// The result type of a pooling op or its gradient. Without `grad`: the
/// pooled shape. With `grad`: `input`'s shape, once the pooling of `input`
/// is valid and produces the gradient's shape.
template <typename Adaptor>
static LogicalResult inferPoolType(MLIRContext *ctx,
                                   std::optional<Location> loc, Adaptor adaptor,
                                   ArrayRef<int64_t> input, Value grad,
                                   SmallVectorImpl<Type> &results) {
  auto shape = inferPoolShape(loc, input, adaptor.getKernelShape(),
                              adaptor.getStrides(), adaptor.getPads(),
                              adaptor.getDilations(), adaptor.getCeilMode());
  if (failed(shape))
    return failure();
  if (!grad) {
    results.push_back(f32Tensor(ctx, *shape));
    return success();
  }
  if (ArrayRef<int64_t>(*shape) != getShape(grad))
    return emitOptionalError(loc, "pooling gradient: grad shape does not "
                                  "match the pooling's output shape");
  results.push_back(f32Tensor(ctx, input));
  return success();
}

LogicalResult MaxPoolOp::inferReturnTypes(MLIRContext *ctx,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &results) {
  return inferPoolType(ctx, loc, adaptor, getShape(adaptor.getInput()), Value(),
                       results);
}

StringRef MaxPoolOp::getRuntimeFunction() { return "blpa_max_pool"; }

void MaxPoolOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getInput()));
  args.push_back(RuntimeArg::data(getOutput()));
  appendPoolArgs(*this, getShape(getInput()), getShape(getOutput()), args);
}

LogicalResult MaxPoolGradOp::inferReturnTypes(MLIRContext *ctx,
                                              std::optional<Location> loc,
                                              Adaptor adaptor,
                                              SmallVectorImpl<Type> &results) {
  return inferPoolType(ctx, loc, adaptor, getShape(adaptor.getInput()),
                       adaptor.getGrad(), results);
}

StringRef MaxPoolGradOp::getRuntimeFunction() { return "blpa_max_pool_grad"; }

void MaxPoolGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  for (Value v : {getGrad(), getInput(), getInputGrad()})
    args.push_back(RuntimeArg::data(v));
  appendPoolArgs(*this, getShape(getInput()), getShape(getGrad()), args);
}

LogicalResult AvgPoolOp::inferReturnTypes(MLIRContext *ctx,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &results) {
  return inferPoolType(ctx, loc, adaptor, getShape(adaptor.getInput()), Value(),
                       results);
}

LogicalResult AvgPoolOp::verify() {
  // Neither ONNX's reference nor PyTorch defines count_include_pad's divisor
  // for dilated windows the same way; none is needed yet.
  if (llvm::any_of(getDilations(), [](int64_t d) { return d != 1; }))
    return emitOpError("dilations must be 1 for average pooling");
  return success();
}

StringRef AvgPoolOp::getRuntimeFunction() { return "blpa_avg_pool"; }

void AvgPoolOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getInput()));
  args.push_back(RuntimeArg::data(getOutput()));
  appendPoolArgs(*this, getShape(getInput()), getShape(getOutput()), args);
  args.push_back(RuntimeArg::i64(getCountIncludePad()));
}

LogicalResult AvgPoolGradOp::inferReturnTypes(MLIRContext *ctx,
                                              std::optional<Location> loc,
                                              Adaptor adaptor,
                                              SmallVectorImpl<Type> &results) {
  return inferPoolType(ctx, loc, adaptor, adaptor.getInputShape(),
                       adaptor.getGrad(), results);
}

StringRef AvgPoolGradOp::getRuntimeFunction() { return "blpa_avg_pool_grad"; }

void AvgPoolGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getGrad()));
  args.push_back(RuntimeArg::data(getInputGrad()));
  appendPoolArgs(*this, getInputShape(), getShape(getGrad()), args);
  args.push_back(RuntimeArg::i64(getCountIncludePad()));
}

/// [N, C, 1, ..., 1] for an input of shape [N, C, ...].
static SmallVector<int64_t> globalPoolShape(ArrayRef<int64_t> input) {
  SmallVector<int64_t> shape(input.begin(), input.begin() + 2);
  shape.resize(input.size(), 1);
  return shape;
}

LogicalResult
GlobalAvgPoolOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                  Adaptor adaptor,
                                  SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> input = getShape(adaptor.getInput());
  if (input.size() < 3)
    return emitOptionalError(loc, "global_avg_pool expects rank >= 3");
  results.push_back(f32Tensor(ctx, globalPoolShape(input)));
  return success();
}

static void appendGlobalPoolArgs(ArrayRef<int64_t> input,
                                 SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::i64(input[0]));
  args.push_back(RuntimeArg::i64(input[1]));
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(input.drop_front(2))));
}

StringRef GlobalAvgPoolOp::getRuntimeFunction() {
  return "blpa_global_avg_pool";
}

void GlobalAvgPoolOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getInput()));
  args.push_back(RuntimeArg::data(getOutput()));
  appendGlobalPoolArgs(getShape(getInput()), args);
}

LogicalResult GlobalAvgPoolGradOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> input = adaptor.getInputShape();
  if (input.size() < 3 ||
      ArrayRef<int64_t>(globalPoolShape(input)) != getShape(adaptor.getGrad()))
    return emitOptionalError(loc, "global_avg_pool_grad: grad shape does not "
                                  "match input_shape");
  results.push_back(f32Tensor(ctx, input));
  return success();
}

StringRef GlobalAvgPoolGradOp::getRuntimeFunction() {
  return "blpa_global_avg_pool_grad";
}

void GlobalAvgPoolGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getGrad()));
  args.push_back(RuntimeArg::data(getInputGrad()));
  appendGlobalPoolArgs(getInputShape(), args);
}

//===----------------------------------------------------------------------===//
// Reshape
//===----------------------------------------------------------------------===//

LogicalResult ReshapeOp::verify() {
  if (ShapedType::getNumElements(getShape(getInput())) !=
      ShapedType::getNumElements(getShape(getOutput())))
    return emitOpError("cannot reshape ")
           << getInput().getType() << " to " << getOutput().getType()
           << ": element counts differ";
  return success();
}

Value ReshapeOp::getViewSource() { return getInput(); }

//===----------------------------------------------------------------------===//
// Gemm, batched matrix products and loss
//===----------------------------------------------------------------------===//

LogicalResult GemmOp::inferReturnTypes(MLIRContext *ctx,
                                       std::optional<Location> loc,
                                       Adaptor adaptor,
                                       SmallVectorImpl<Type> &results) {
  if (failed(checkRank(loc, "gemm operand a", adaptor.getA(), 2)) ||
      failed(checkRank(loc, "gemm operand b", adaptor.getB(), 2)))
    return failure();
  ArrayRef<int64_t> a = getShape(adaptor.getA()), b = getShape(adaptor.getB());
  int64_t m = adaptor.getTransA() ? a[1] : a[0];
  int64_t k = adaptor.getTransA() ? a[0] : a[1];
  int64_t kb = adaptor.getTransB() ? b[1] : b[0];
  int64_t n = adaptor.getTransB() ? b[0] : b[1];
  if (k != kb)
    return emitOptionalError(loc, "gemm inner dimensions differ: ", k, " vs ",
                             kb);
  if (Value c = adaptor.getC()) {
    auto shape = broadcastShapes(getShape(c), {m, n});
    if (getShape(c).size() > 2 || failed(shape) ||
        ArrayRef<int64_t>(*shape) != ArrayRef<int64_t>{m, n})
      return emitOptionalError(loc, "gemm operand c of type ", c.getType(),
                               " does not broadcast to [", m, ", ", n, "]");
  }
  results.push_back(f32Tensor(ctx, {m, n}));
  return success();
}

StringRef GemmOp::getRuntimeFunction() { return "blpa_gemm"; }

void GemmOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  for (Value v : {getA(), getB(), getC(), getOutput()})
    args.push_back(RuntimeArg::data(v));
  ArrayRef<int64_t> out = getShape(getOutput());
  int64_t k = getShape(getA())[getTransA() ? 0 : 1];
  SmallVector<int64_t> c =
      getC() ? alignToRank(getShape(getC()), 2) : SmallVector<int64_t>{0, 0};
  for (int64_t v :
       {out[0], out[1], k, int64_t(getTransA()), int64_t(getTransB())})
    args.push_back(RuntimeArg::i64(v));
  args.push_back(RuntimeArg::f64(getAlpha().convertToDouble()));
  args.push_back(RuntimeArg::f64(getBeta().convertToDouble()));
  args.push_back(RuntimeArg::i64(c[0]));
  args.push_back(RuntimeArg::i64(c[1]));
}

LogicalResult BatchMatMulOp::inferReturnTypes(MLIRContext *ctx,
                                              std::optional<Location> loc,
                                              Adaptor adaptor,
                                              SmallVectorImpl<Type> &results) {
  if (failed(checkRank(loc, "batch_matmul operand a", adaptor.getA(), 3)) ||
      failed(checkRank(loc, "batch_matmul operand b", adaptor.getB(), 3)))
    return failure();
  ArrayRef<int64_t> a = getShape(adaptor.getA()), b = getShape(adaptor.getB());
  // A batch of 1 broadcasts; any other pair must agree.
  if (a[0] != b[0] && a[0] != 1 && b[0] != 1)
    return emitOptionalError(loc, "batch_matmul batches differ: ", a[0], " vs ",
                             b[0]);
  int64_t m = adaptor.getTransA() ? a[2] : a[1];
  int64_t k = adaptor.getTransA() ? a[1] : a[2];
  int64_t kb = adaptor.getTransB() ? b[2] : b[1];
  int64_t n = adaptor.getTransB() ? b[1] : b[2];
  if (k != kb)
    return emitOptionalError(loc, "batch_matmul inner dimensions differ: ", k,
                             " vs ", kb);
  results.push_back(f32Tensor(ctx, {a[0] == 1 ? b[0] : a[0], m, n}));
  return success();
}

StringRef BatchMatMulOp::getRuntimeFunction() { return "blpa_batch_matmul"; }

void BatchMatMulOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  for (Value v : {getA(), getB(), getOutput()})
    args.push_back(RuntimeArg::data(v));
  ArrayRef<int64_t> out = getShape(getOutput());
  int64_t k = getShape(getA())[getTransA() ? 1 : 2];
  for (int64_t v :
       {out[0], out[1], out[2], k, int64_t(getTransA()), int64_t(getTransB()),
        getShape(getA())[0], getShape(getB())[0]})
    args.push_back(RuntimeArg::i64(v));
}

/// Logits [rows..., classes] and labels [rows...].
static LogicalResult checkLossOperands(std::optional<Location> loc,
                                       Value logits, Value labels) {
  ArrayRef<int64_t> logitsShape = getShape(logits);
  if (logitsShape.size() < 2)
    return emitOptionalError(loc, "the loss needs logits of rank 2 or more "
                                  "(classes last); they have rank ",
                             logitsShape.size());
  if (getShape(labels) != logitsShape.drop_back())
    return emitOptionalError(
        loc, "the labels' shape must be the logits' without the last "
             "dimension; labels ",
        labels.getType(), ", logits ", logits.getType());
  return success();
}

/// The loss kernels' arguments after the data pointers: rows, classes and
/// the ignored label.
static void appendLossShape(SmallVectorImpl<RuntimeArg> &args, Value logits,
                            int64_t ignoreIndex) {
  ArrayRef<int64_t> shape = getShape(logits);
  args.push_back(RuntimeArg::i64(ShapedType::getNumElements(shape.drop_back())));
  args.push_back(RuntimeArg::i64(shape.back()));
  args.push_back(RuntimeArg::i64(ignoreIndex));
}

LogicalResult SoftmaxCrossEntropyOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  if (failed(checkLossOperands(loc, adaptor.getLogits(), adaptor.getLabels())))
    return failure();
  results.push_back(f32Tensor(ctx, {}));
  return success();
}

StringRef SoftmaxCrossEntropyOp::getRuntimeFunction() {
  return "blpa_softmax_cross_entropy";
}

void SoftmaxCrossEntropyOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getLogits(), getLabels(), getLoss()});
  appendLossShape(args, getLogits(), getIgnoreIndex());
}

LogicalResult SoftmaxCrossEntropyGradOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  if (failed(checkLossOperands(loc, adaptor.getLogits(), adaptor.getLabels())))
    return failure();
  results.push_back(adaptor.getLogits().getType());
  return success();
}

StringRef SoftmaxCrossEntropyGradOp::getRuntimeFunction() {
  return "blpa_softmax_cross_entropy_grad";
}

void SoftmaxCrossEntropyGradOp::getRuntimeArgs(
    SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getLogits(), getLabels(), getLossGrad(), getLogitsGrad()});
  appendLossShape(args, getLogits(), getIgnoreIndex());
}

StringRef FillOp::getRuntimeFunction() { return "blpa_fill"; }

void FillOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getOutput()));
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(getShape(getOutput()))));
  args.push_back(RuntimeArg::f64(getValue().convertToDouble()));
}

//===----------------------------------------------------------------------===//
// Optimizer
//===----------------------------------------------------------------------===//

LogicalResult SgdUpdateOp::verify() {
  auto param = getParam().getDefiningOp<ParamOp>();
  if (!param || !param.getTrainable())
    return emitOpError("updates only trainable blpa.param values");
  return success();
}

StringRef SgdUpdateOp::getRuntimeFunction() { return "blpa_sgd_update"; }

void SgdUpdateOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getParam()));
  args.push_back(RuntimeArg::data(getGrad()));
  args.push_back(RuntimeArg::momentum(getParam()));
  args.push_back(RuntimeArg::gradStore(getParam()));
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(getShape(getParam()))));
}

//===----------------------------------------------------------------------===//
// Data parallelism
//===----------------------------------------------------------------------===//

Value AllreduceStartOp::getViewSource() { return getBucket(); }
Value AllreduceWaitOp::getViewSource() { return getBucket(); }

LogicalResult AllreduceStartOp::verify() {
  if (!getResult().hasOneUse() ||
      !isa<AllreduceWaitOp>(*getResult().getUsers().begin()))
    return emitOpError("must be read by exactly one blpa.allreduce_wait");
  return success();
}

LogicalResult AllreduceWaitOp::verify() {
  auto start = getBucket().getDefiningOp<AllreduceStartOp>();
  if (!start)
    return emitOpError("waits for a value no blpa.allreduce_start made");
  if (start.getIndex() != getIndex())
    return emitOpError("waits for bucket ")
           << getIndex() << " but its operand is bucket " << start.getIndex();
  return success();
}

/// Both ops pass the bucket's data pointer, its length and its number.
static void appendBucketArgs(Value bucket, int64_t index,
                             SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(bucket));
  args.push_back(RuntimeArg::i64(ShapedType::getNumElements(getShape(bucket))));
  args.push_back(RuntimeArg::i64(index));
}

StringRef AllreduceStartOp::getRuntimeFunction() {
  return "blpa_allreduce_start";
}
void AllreduceStartOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendBucketArgs(getBucket(), getIndex(), args);
}
StringRef AllreduceWaitOp::getRuntimeFunction() {
  return "blpa_allreduce_wait";
}
void AllreduceWaitOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendBucketArgs(getBucket(), getIndex(), args);
}

//===----------------------------------------------------------------------===//
// What ops know about saved activations (SavedActivationOpInterface)
//===----------------------------------------------------------------------===//

bool ReluOp::isResultNonNegative(function_ref<bool(Value)>) { return true; }

// Pooling, reshaping and transposing keep values, so they keep their sign.
bool MaxPoolOp::isResultNonNegative(function_ref<bool(Value)> isNonNegative) {
  return isNonNegative(getInput());
}
// Also once the pooling keeps its argmax codes, which happens before the
// generic quantizer chooses a scheme for the pooled output.
bool MaxPoolArgmaxOp::isResultNonNegative(
    function_ref<bool(Value)> isNonNegative) {
  return isNonNegative(getInput());
}
bool AvgPoolOp::isResultNonNegative(function_ref<bool(Value)> isNonNegative) {
  return isNonNegative(getInput());
}
bool GlobalAvgPoolOp::isResultNonNegative(
    function_ref<bool(Value)> isNonNegative) {
  return isNonNegative(getInput());
}
bool ReshapeOp::isResultNonNegative(function_ref<bool(Value)> isNonNegative) {
  return isNonNegative(getInput());
}
bool TransposeOp::isResultNonNegative(function_ref<bool(Value)> isNonNegative) {
  return isNonNegative(getInput());
}

ActivationNeed ReluGradOp::getActivationNeed(unsigned operandIndex) {
  return operandIndex == getOutputMutable().getOperandNumber()
             ? ActivationNeed::Sign
             : ActivationNeed::Values;
}

ActivationNeed MaxPoolGradOp::getActivationNeed(unsigned operandIndex) {
  return operandIndex == getInputMutable().getOperandNumber()
             ? ActivationNeed::WindowArgmax
             : ActivationNeed::Values;
}

// The per-channel statistics are the method's "few floats per channel":
// tiny, and every element's gradient depends on them.
ActivationNeed BatchNormGradOp::getActivationNeed(unsigned operandIndex) {
  return operandIndex == getInputMutable().getOperandNumber() ||
                 operandIndex == getGradMutable().getOperandNumber()
             ? ActivationNeed::Values
             : ActivationNeed::Exact;
}
ActivationNeed BatchNormGradDecodeOp::getActivationNeed(unsigned operandIndex) {
  return operandIndex == getGradMutable().getOperandNumber()
             ? ActivationNeed::Values
             : ActivationNeed::Exact;
}

ActivationNeed
SoftmaxCrossEntropyGradOp::getActivationNeed(unsigned operandIndex) {
  // The logits are small and the softmax amplifies their errors.
  return operandIndex == getLogitsMutable().getOperandNumber()
             ? ActivationNeed::Exact
             : ActivationNeed::Values;
}

//===----------------------------------------------------------------------===//
// Packed codes and the ops that make and read them
//===----------------------------------------------------------------------===//

/// Why `bits`-bit codes of `scheme` are invalid, or an empty string.
static std::string packedCodeError(unsigned bits, StringRef scheme) {
  if (!llvm::is_contained({1u, 2u, 4u, 8u}, bits))
    return "packed codes have 1, 2, 4 or 8 bits, got " + std::to_string(bits);
  if (scheme == "mask")
    return bits == 1 ? "" : "mask codes have 1 bit";
  if (scheme == "argmax")
    return "";
  if (scheme == "region")
    return bits <= 2 ? "" : "region codes have 1 or 2 bits";
  if (llvm::is_contained({"bn_relu", "affine", "nonneg", "logprob"}, scheme))
    return bits != 1 ? ""
                     : ("'" + scheme + "' codes have 2, 4 or 8 bits").str();
  return ("unknown packed scheme '" + scheme +
          "'; expected bn_relu, affine, nonneg, logprob, mask, argmax or "
          "region")
      .str();
}

LogicalResult PackedType::verify(function_ref<InFlightDiagnostic()> emitError,
                                 ArrayRef<int64_t> shape, unsigned bits,
                                 StringRef scheme) {
  if (llvm::any_of(shape, [](int64_t d) { return d <= 0; }))
    return emitError() << "packed codes need a static, positive shape";
  std::string error = packedCodeError(bits, scheme);
  if (!error.empty())
    return emitError() << error;
  return success();
}

int64_t PackedType::getNumElements() const {
  return ShapedType::getNumElements(getShape());
}

int64_t PackedType::getNumBytes() const {
  return (getNumElements() * getBits() + 7) / 8;
}

Type PackedType::parse(AsmParser &parser) {
  SMLoc loc = parser.getCurrentLocation();
  SmallVector<int64_t> shape;
  Type codeType;
  StringRef scheme;
  if (parser.parseLess() ||
      parser.parseDimensionList(shape, /*allowDynamic=*/false,
                                /*withTrailingX=*/true) ||
      parser.parseType(codeType) || parser.parseComma() ||
      parser.parseKeyword(&scheme) || parser.parseGreater())
    return {};
  auto intType = dyn_cast<IntegerType>(codeType);
  if (!intType || !intType.isSignless()) {
    parser.emitError(loc, "expected the code width as a signless iK type");
    return {};
  }
  return getChecked([&] { return parser.emitError(loc); }, parser.getContext(),
                    ArrayRef<int64_t>(shape), intType.getWidth(), scheme);
}

void PackedType::print(AsmPrinter &printer) const {
  printer << "<";
  for (int64_t d : getShape())
    printer << d << "x";
  printer << "i" << getBits() << ", " << getScheme() << ">";
}

/// Codes of the given scheme and shape, or an error at `loc`.
static FailureOr<PackedType> checkCodes(std::optional<Location> loc,
                                        Value codes,
                                        ArrayRef<StringRef> schemes,
                                        ArrayRef<int64_t> shape) {
  auto type = cast<PackedType>(codes.getType());
  if (!llvm::is_contained(schemes, type.getScheme()))
    return emitOptionalError(loc, "expected ", schemes.front(), " codes, got ",
                             type);
  if (type.getShape() != shape)
    return emitOptionalError(loc, "codes ", type,
                             " do not match the tensor shape");
  return type;
}

/// Codes `bits` wide of `scheme` for a tensor of `shape`, once valid.
static FailureOr<PackedType> makeCodes(MLIRContext *ctx,
                                       std::optional<Location> loc,
                                       ArrayRef<int64_t> shape, int64_t bits,
                                       StringRef scheme) {
  std::string error = packedCodeError(bits, scheme);
  if (!error.empty())
    return emitOptionalError(loc, error);
  return PackedType::get(ctx, shape, static_cast<unsigned>(bits), scheme);
}

LogicalResult BatchNormEncodeOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> shape = getShape(adaptor.getInput());
  FailureOr<int64_t> channels =
      checkBatchNorm(loc, shape,
                     {adaptor.getScale(), adaptor.getBias(),
                      adaptor.getRunningMean(), adaptor.getRunningVar()});
  if (failed(channels))
    return failure();
  FailureOr<PackedType> codes =
      makeCodes(ctx, loc, shape, adaptor.getBits(), "bn_relu");
  if (failed(codes))
    return failure();
  results.push_back(adaptor.getInput().getType());
  results.push_back(f32Tensor(ctx, {*channels}));
  results.push_back(f32Tensor(ctx, {*channels}));
  results.push_back(*codes);
  return success();
}

StringRef BatchNormEncodeOp::getRuntimeFunction() {
  return getRelu() ? "blpa_batch_norm_relu_train_encode"
                   : "blpa_batch_norm_train_encode";
}

void BatchNormEncodeOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getInput(), getScale(), getBias(), getOutput(), getMean(),
                    getInvStd(), getCodes()});
  appendBatchNormDims(getInput(), args);
  args.push_back(RuntimeArg::f64(getEpsilon().convertToDouble()));
  args.push_back(RuntimeArg::i64(getBits()));
}

LogicalResult BatchNormGradDecodeOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> shape = getShape(adaptor.getGrad());
  FailureOr<int64_t> channels = checkBatchNorm(
      loc, shape, {adaptor.getScale(), adaptor.getBias(), adaptor.getInvStd()});
  if (failed(channels) ||
      failed(checkCodes(loc, adaptor.getCodes(), {"bn_relu"}, shape)))
    return failure();
  results.push_back(adaptor.getGrad().getType());
  results.push_back(f32Tensor(ctx, {*channels}));
  results.push_back(f32Tensor(ctx, {*channels}));
  return success();
}

StringRef BatchNormGradDecodeOp::getRuntimeFunction() {
  return getRelu() ? "blpa_batch_norm_relu_grad_decode"
                   : "blpa_batch_norm_grad_decode";
}

void BatchNormGradDecodeOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getGrad(), getCodes(), getScale(), getBias(), getInvStd(),
                    getInputGrad(), getScaleGrad(), getBiasGrad()});
  appendBatchNormDims(getGrad(), args);
  args.push_back(RuntimeArg::i64(getCodes().getType().getBits()));
}

LogicalResult BatchNormDecodeOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  auto codes = cast<PackedType>(adaptor.getCodes().getType());
  if (failed(
          checkCodes(loc, adaptor.getCodes(), {"bn_relu"}, codes.getShape())) ||
      failed(checkBatchNorm(loc, codes.getShape(),
                            {adaptor.getScale(), adaptor.getBias()})))
    return failure();
  results.push_back(f32Tensor(ctx, codes.getShape()));
  return success();
}

StringRef BatchNormDecodeOp::getRuntimeFunction() { return "blpa_bn_decode"; }

void BatchNormDecodeOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getCodes(), getScale(), getBias(), getOutput()});
  appendBatchNormDims(getOutput(), args);
  args.push_back(RuntimeArg::i64(getCodes().getType().getBits()));
  args.push_back(RuntimeArg::i64(getRelu()));
}

/// The runtime's number for a blpa.quantize scheme (BLPA_SCHEME_* in
/// Runtime.h).
static int64_t getSchemeNumber(StringRef scheme) {
  return llvm::StringSwitch<int64_t>(scheme)
      .Case("affine", 0)
      .Case("nonneg", 1)
      .Case("mask", 2)
      .Default(-1);
}

/// The per-channel [2, C] parameters of quantized codes of `shape`.
static RankedTensorType quantParamsType(MLIRContext *ctx,
                                        ArrayRef<int64_t> shape) {
  return f32Tensor(ctx, {2, getChannelView(shape)[1]});
}

LogicalResult QuantizeOp::inferReturnTypes(MLIRContext *ctx,
                                           std::optional<Location> loc,
                                           Adaptor adaptor,
                                           SmallVectorImpl<Type> &results) {
  StringRef scheme = adaptor.getScheme();
  if (getSchemeNumber(scheme) < 0)
    return emitOptionalError(loc,
                             "quantize scheme must be affine, nonneg or "
                             "mask, got '",
                             scheme, "'");
  ArrayRef<int64_t> shape = getShape(adaptor.getInput());
  FailureOr<PackedType> codes =
      makeCodes(ctx, loc, shape, adaptor.getBits(), scheme);
  if (failed(codes))
    return failure();
  results.push_back(*codes);
  if (scheme != "mask")
    results.push_back(quantParamsType(ctx, shape));
  return success();
}

/// The [N, C, spatial] view, bits and scheme number shared by quantize and
/// dequantize.
static void appendQuantArgs(PackedType codes,
                            SmallVectorImpl<RuntimeArg> &args) {
  appendBatchNormDims(codes.getShape(), args);
  args.push_back(RuntimeArg::i64(codes.getBits()));
  args.push_back(RuntimeArg::i64(getSchemeNumber(codes.getScheme())));
}

StringRef QuantizeOp::getRuntimeFunction() { return "blpa_quantize"; }

void QuantizeOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getInput(), getCodes(), getParams()});
  appendQuantArgs(getCodes().getType(), args);
}

LogicalResult DequantizeOp::inferReturnTypes(MLIRContext *ctx,
                                             std::optional<Location> loc,
                                             Adaptor adaptor,
                                             SmallVectorImpl<Type> &results) {
  auto codes = cast<PackedType>(adaptor.getCodes().getType());
  if (failed(checkCodes(loc, adaptor.getCodes(), {"affine", "nonneg", "mask"},
                        codes.getShape())))
    return failure();
  bool needsParams = codes.getScheme() != "mask";
  Value params = adaptor.getParams();
  if (needsParams != bool(params) ||
      (params && params.getType() != quantParamsType(ctx, codes.getShape())))
    return emitOptionalError(
        loc, "dequantize takes [2, C] parameters exactly when the codes are "
             "not a mask");
  results.push_back(f32Tensor(ctx, codes.getShape()));
  return success();
}

StringRef DequantizeOp::getRuntimeFunction() { return "blpa_dequantize"; }

void DequantizeOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getCodes(), getParams(), getOutput()});
  appendQuantArgs(getCodes().getType(), args);
}

/// The [rows, length] view of probabilities of `shape` at their last
/// dimension.
static std::pair<int64_t, int64_t> probabilityRows(ArrayRef<int64_t> shape) {
  return {ShapedType::getNumElements(shape.drop_back()), shape.back()};
}

/// The codes of `bits`-bit log-domain codes of probabilities of `shape`:
/// [rows, length rounded up to whole bytes].
static FailureOr<PackedType> probabilityCodesType(MLIRContext *ctx,
                                                  std::optional<Location> loc,
                                                  ArrayRef<int64_t> shape,
                                                  int64_t bits) {
  if (shape.empty())
    return emitOptionalError(loc, "probability codes need a rank >= 1 tensor");
  if (!llvm::is_contained({2, 4, 8}, bits))
    return emitOptionalError(loc, "probability codes have 2, 4 or 8 bits, got ",
                             bits);
  auto [rows, length] = probabilityRows(shape);
  int64_t perByte = 8 / bits;
  int64_t padded = (length + perByte - 1) / perByte * perByte;
  return makeCodes(ctx, loc, {rows, padded}, bits, "logprob");
}

LogicalResult ProbabilityEncodeOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> shape = getShape(adaptor.getInput());
  FailureOr<PackedType> codes =
      probabilityCodesType(ctx, loc, shape, adaptor.getBits());
  if (failed(codes))
    return failure();
  results.push_back(*codes);
  results.push_back(f32Tensor(ctx, {probabilityRows(shape).first, 2}));
  return success();
}

/// The rows, length and bits of blpa_probability_encode / _decode for
/// probabilities of `shape`.
static void appendProbabilityArgs(ArrayRef<int64_t> shape, PackedType codes,
                                  SmallVectorImpl<RuntimeArg> &args) {
  auto [rows, length] = probabilityRows(shape);
  args.push_back(RuntimeArg::i64(rows));
  args.push_back(RuntimeArg::i64(length));
  args.push_back(RuntimeArg::i64(codes.getBits()));
}

StringRef ProbabilityEncodeOp::getRuntimeFunction() {
  return "blpa_probability_encode";
}

void ProbabilityEncodeOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getInput(), getCodes(), getParams()});
  appendProbabilityArgs(getShape(getInput()), getCodes().getType(), args);
}

LogicalResult ProbabilityDecodeOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> shape = adaptor.getShape();
  auto codes = cast<PackedType>(adaptor.getCodes().getType());
  FailureOr<PackedType> expected =
      probabilityCodesType(ctx, loc, shape, codes.getBits());
  if (failed(expected))
    return failure();
  if (codes != *expected)
    return emitOptionalError(loc, "probability_decode: codes ", codes,
                             " do not encode a ", f32Tensor(ctx, shape),
                             "; expected ", *expected);
  auto paramsType = f32Tensor(ctx, {probabilityRows(shape).first, 2});
  if (adaptor.getParams().getType() != paramsType)
    return emitOptionalError(loc, "probability_decode: expected params ",
                             paramsType);
  results.push_back(f32Tensor(ctx, shape));
  return success();
}

StringRef ProbabilityDecodeOp::getRuntimeFunction() {
  return "blpa_probability_decode";
}

void ProbabilityDecodeOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getCodes(), getParams(), getOutput()});
  appendProbabilityArgs(getShape(), getCodes().getType(), args);
}

std::optional<unsigned>
mlir::blpa::getArgmaxCodeBits(ArrayRef<int64_t> kernelShape) {
  int64_t positions = ShapedType::getNumElements(kernelShape);
  for (unsigned bits : {1u, 2u, 4u, 8u})
    if (positions <= (int64_t(1) << bits))
      return bits;
  return std::nullopt;
}

LogicalResult
MaxPoolArgmaxOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                  Adaptor adaptor,
                                  SmallVectorImpl<Type> &results) {
  if (failed(inferPoolType(ctx, loc, adaptor, getShape(adaptor.getInput()),
                           Value(), results)))
    return failure();
  std::optional<unsigned> bits = getArgmaxCodeBits(adaptor.getKernelShape());
  if (!bits)
    return emitOptionalError(loc, "argmax codes need a window of at most 256 "
                                  "positions");
  results.push_back(PackedType::get(
      ctx, cast<ShapedType>(results.front()).getShape(), *bits, "argmax"));
  return success();
}

StringRef MaxPoolArgmaxOp::getRuntimeFunction() {
  return "blpa_max_pool_argmax";
}

void MaxPoolArgmaxOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getInput(), getOutput(), getCodes()});
  appendPoolArgs(*this, getShape(getInput()), getShape(getOutput()), args);
  args.push_back(RuntimeArg::i64(getCodes().getType().getBits()));
}

LogicalResult MaxPoolGradArgmaxOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  if (failed(checkCodes(loc, adaptor.getCodes(), {"argmax"},
                        getShape(adaptor.getGrad()))))
    return failure();
  return inferPoolType(ctx, loc, adaptor, adaptor.getInputShape(),
                       adaptor.getGrad(), results);
}

StringRef MaxPoolGradArgmaxOp::getRuntimeFunction() {
  return "blpa_max_pool_grad_argmax";
}

void MaxPoolGradArgmaxOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getGrad(), getCodes(), getInputGrad()});
  appendPoolArgs(*this, getInputShape(), getShape(getGrad()), args);
  args.push_back(RuntimeArg::i64(getCodes().getType().getBits()));
}

//===----------------------------------------------------------------------===//
// Activations (Blpa_ActivationOp)
//===----------------------------------------------------------------------===//

/// The kind and parameters of blpa_activation(_grad), and of the _dynamic
/// forms the run-time parameters' pointers (null for a static one).
static void appendActivationParams(const Activation &act,
                                   SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::i64(act.kind));
  args.push_back(RuntimeArg::f64(act.alpha));
  args.push_back(RuntimeArg::f64(act.beta));
  if (!act.isDynamic())
    return;
  args.push_back(RuntimeArg::data(act.runtimeAlpha));
  args.push_back(RuntimeArg::data(act.runtimeBeta));
}

static void appendActivationArgs(Value input, Value output,
                                 const Activation &act,
                                 SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(input));
  args.push_back(RuntimeArg::data(output));
  args.push_back(RuntimeArg::i64(ShapedType::getNumElements(getShape(input))));
  appendActivationParams(act, args);
}

StringRef mlir::blpa::activationRuntimeFunction(const Activation &act) {
  return act.isDynamic() ? "blpa_activation_dynamic" : "blpa_activation";
}

/// Whether the activation's values are all >= 0, so that its saved codes
/// keep zero exact.
static bool isActivationNonNegative(const Activation &act) {
  switch (act.kind) {
  case BLPA_ACT_SIGMOID:
  case BLPA_ACT_HARD_SIGMOID:
  case BLPA_ACT_SQRT:
  case BLPA_ACT_EXP:
    return true;
  case BLPA_ACT_CLIP:
    return act.alpha >= 0 && !act.runtimeAlpha;
  case BLPA_ACT_POW: // an even integer power
    return std::fmod(act.alpha, 2.0f) == 0.0f;
  default:
    return false;
  }
}

Activation SigmoidOp::getActivation() {
  return {BLPA_ACT_SIGMOID, 0, 0, /*gradFromOutput=*/true};
}

Activation HardSigmoidOp::getActivation() {
  return {BLPA_ACT_HARD_SIGMOID, getAlpha().convertToFloat(),
          getBeta().convertToFloat()};
}

Activation HardSwishOp::getActivation() { return {BLPA_ACT_HARD_SWISH}; }

Activation TanhOp::getActivation() {
  return {BLPA_ACT_TANH, 0, 0, /*gradFromOutput=*/true};
}

Activation ErfOp::getActivation() { return {BLPA_ACT_ERF}; }

Activation GeluOp::getActivation() {
  return {getTanhApproximation() ? BLPA_ACT_GELU_TANH : BLPA_ACT_GELU};
}

Activation ExpOp::getActivation() {
  return {BLPA_ACT_EXP, 0, 0, /*gradFromOutput=*/true};
}

Activation LogOp::getActivation() { return {BLPA_ACT_LOG}; }

Activation SqrtOp::getActivation() {
  return {BLPA_ACT_SQRT, 0, 0, /*gradFromOutput=*/true};
}

Activation PowOp::getActivation() {
  return {BLPA_ACT_POW, getExponent().convertToFloat()};
}

Activation ClipOp::getActivation() {
  Activation act{BLPA_ACT_CLIP, getMin().convertToFloat(),
                 getMax().convertToFloat()};
  act.runtimeAlpha = getRuntimeMin();
  act.runtimeBeta = getRuntimeMax();
  return act;
}

/// A parameter read at run time: one float32 element.
static LogicalResult verifyRunTimeScalar(Operation *op, Value scalar,
                                         StringRef name) {
  if (!scalar || ShapedType::getNumElements(getShape(scalar)) == 1)
    return success();
  return op->emitOpError(name)
         << " must have one element; it has type " << scalar.getType();
}

LogicalResult ClipOp::verify() {
  float lo = getMin().convertToFloat(), hi = getMax().convertToFloat();
  if (lo > hi)
    return emitOpError("min ") << lo << " is greater than max " << hi;
  // A run-time bound replaces its attribute, which must not say otherwise.
  if (getRuntimeMin() && lo != -std::numeric_limits<float>::infinity())
    return emitOpError("has both a run-time min and min ") << lo;
  if (getRuntimeMax() && hi != std::numeric_limits<float>::infinity())
    return emitOpError("has both a run-time max and max ") << hi;
  if (failed(verifyRunTimeScalar(*this, getRuntimeMin(), "runtime_min")))
    return failure();
  return verifyRunTimeScalar(*this, getRuntimeMax(), "runtime_max");
}

void ClipOp::getRunTimeScalars(SmallVectorImpl<Value> &scalars) {
  for (Value bound : {getRuntimeMin(), getRuntimeMax()})
    if (bound)
      scalars.push_back(bound);
}

/// The run-time parameters of an activation (null when static) have one
/// element each.
static LogicalResult checkRunTimeParams(std::optional<Location> loc,
                                        StringRef op, ArrayRef<Value> params) {
  for (Value param : params)
    if (param && ShapedType::getNumElements(getShape(param)) != 1)
      return emitOptionalError(loc, op, ": a run-time parameter has type ",
                               param.getType(), "; expected one element");
  return success();
}

LogicalResult
ActivationGradOp::inferReturnTypes(MLIRContext *, std::optional<Location> loc,
                                   Adaptor adaptor,
                                   SmallVectorImpl<Type> &results) {
  if (adaptor.getGrad().getType() != adaptor.getSaved().getType())
    return emitOptionalError(loc, "activation_grad: grad and saved types "
                                  "differ");
  if (failed(checkRunTimeParams(
          loc, "activation_grad",
          {adaptor.getRuntimeAlpha(), adaptor.getRuntimeBeta()})))
    return failure();
  results.push_back(adaptor.getGrad().getType());
  return success();
}

/// The activation whose gradient this is, as the runtime executes it.
static Activation activationOf(ActivationGradOp op) {
  Activation act{static_cast<int64_t>(op.getKind()),
                 op.getAlpha().convertToFloat(), op.getBeta().convertToFloat()};
  act.runtimeAlpha = op.getRuntimeAlpha();
  act.runtimeBeta = op.getRuntimeBeta();
  return act;
}

StringRef ActivationGradOp::getRuntimeFunction() {
  return activationOf(*this).isDynamic() ? "blpa_activation_grad_dynamic"
                                         : "blpa_activation_grad";
}

void ActivationGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  for (Value v : {getGrad(), getSaved(), getInputGrad()})
    args.push_back(RuntimeArg::data(v));
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(getShape(getGrad()))));
  appendActivationParams(activationOf(*this), args);
}

// Each element of dx reads dy and saved at its own position only.
void ActivationGradOp::getInPlaceOperands(unsigned,
                                          SmallVectorImpl<unsigned> &operands) {
  operands.append({0, 1});
}

//===----------------------------------------------------------------------===//
// Exact pieces of piecewise activations (ActivationNeed::Region)
//===----------------------------------------------------------------------===//

namespace {
/// How the gradient of a piecewise activation reads its pieces.
struct ActivationRegions {
  /// Bits of a region code (Runtime.h's blpa_activation_region).
  unsigned bits;
  /// Whether the slope inside a piece depends on the input (hard swish).
  bool readsValues;
};
} // namespace

/// The pieces of the activation `kind`'s gradient, or none for a smooth
/// one (sigmoid).
static std::optional<ActivationRegions> getActivationRegions(int64_t kind) {
  switch (kind) {
  case BLPA_ACT_CLIP:
  case BLPA_ACT_HARD_SIGMOID:
    return ActivationRegions{1, false};
  case BLPA_ACT_HARD_SWISH:
    return ActivationRegions{2, true};
  default:
    return std::nullopt;
  }
}

ActivationNeed ActivationGradOp::getActivationNeed(unsigned operandIndex) {
  return operandIndex == getSavedMutable().getOperandNumber() &&
                 getActivationRegions(getKind())
             ? ActivationNeed::Region
             : ActivationNeed::Values;
}

/// Where an op reading `values` can go in their block: after the last of
/// their definitions.
static OpBuilder builderAfterDefinitions(ArrayRef<Value> values) {
  Block *block = Value(values.front()).getParentBlock();
  Operation *last = nullptr;
  for (Value v : values) {
    Operation *def = v ? v.getDefiningOp() : nullptr;
    if (def && (!last || last->isBeforeInBlock(def)))
      last = def;
  }
  if (!last)
    return OpBuilder::atBlockBegin(block);
  return OpBuilder(block, std::next(last->getIterator()));
}

bool ActivationGradOp::encodeRegion(unsigned operandIndex) {
  std::optional<ActivationRegions> regions = getActivationRegions(getKind());
  if (!regions || operandIndex != getSavedMutable().getOperandNumber())
    return false;
  // The encoder runs in the forward pass on the exact input, as soon as it
  // and any run-time bound exist.
  Value saved = getSaved();
  OpBuilder b =
      builderAfterDefinitions({saved, getRuntimeAlpha(), getRuntimeBeta()});
  auto encode = ActivationRegionOp::create(
      b, getLoc(), saved, getRuntimeAlpha(), getRuntimeBeta(), getKindAttr(),
      getAlphaAttr(), getBetaAttr());
  setPhase(encode, Phase::Forward);
  b.setInsertionPoint(*this);
  Value values = regions->readsValues ? saved : Value();
  replaceKeepingPhase(*this,
                      ActivationGradRegionOp::create(
                          b, getLoc(), getGrad(), encode.getCodes(), values,
                          getKindAttr(), getAlphaAttr(), getBetaAttr()));
  return true;
}

/// The region codes of the activation `kind` for a tensor of `shape`, or
/// an error at `loc` for a kind without pieces.
static FailureOr<PackedType> regionCodesType(MLIRContext *ctx,
                                             std::optional<Location> loc,
                                             int64_t kind,
                                             ArrayRef<int64_t> shape) {
  std::optional<ActivationRegions> regions = getActivationRegions(kind);
  if (!regions)
    return emitOptionalError(loc, "activation kind ", kind,
                             " has no region codes");
  return PackedType::get(ctx, shape, regions->bits, "region");
}

LogicalResult ActivationRegionOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  if (failed(checkRunTimeParams(
          loc, "activation_region",
          {adaptor.getRuntimeAlpha(), adaptor.getRuntimeBeta()})))
    return failure();
  FailureOr<PackedType> codes = regionCodesType(ctx, loc, adaptor.getKind(),
                                                getShape(adaptor.getInput()));
  if (failed(codes))
    return failure();
  results.push_back(*codes);
  return success();
}

StringRef ActivationRegionOp::getRuntimeFunction() {
  return "blpa_activation_region";
}

// Run-time bounds are passed as pointers, null when static.
void ActivationRegionOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getInput(), getCodes()});
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(getShape(getInput()))));
  args.push_back(RuntimeArg::i64(getKind()));
  args.push_back(RuntimeArg::f64(getAlpha().convertToFloat()));
  args.push_back(RuntimeArg::f64(getBeta().convertToFloat()));
  appendData(args, {getRuntimeAlpha(), getRuntimeBeta()});
  args.push_back(RuntimeArg::i64(getCodes().getType().getBits()));
}

LogicalResult ActivationGradRegionOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  Type gradType = adaptor.getGrad().getType();
  FailureOr<PackedType> codes =
      regionCodesType(ctx, loc, adaptor.getKind(), getShape(adaptor.getGrad()));
  if (failed(codes))
    return failure();
  if (adaptor.getCodes().getType() != *codes)
    return emitOptionalError(loc, "activation_grad_region: expected codes ",
                             *codes, ", got ", adaptor.getCodes().getType());
  Value values = adaptor.getValues();
  if (bool(values) != getActivationRegions(adaptor.getKind())->readsValues ||
      (values && values.getType() != gradType))
    return emitOptionalError(loc, "activation_grad_region: values of the "
                                  "grad's type are read by hard swish only");
  results.push_back(gradType);
  return success();
}

StringRef ActivationGradRegionOp::getRuntimeFunction() {
  return "blpa_activation_grad_region";
}

void ActivationGradRegionOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getGrad(), getCodes(), getValues(), getInputGrad()});
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(getShape(getGrad()))));
  args.push_back(RuntimeArg::i64(getKind()));
  args.push_back(RuntimeArg::f64(getAlpha().convertToFloat()));
  args.push_back(RuntimeArg::f64(getBeta().convertToFloat()));
  args.push_back(RuntimeArg::i64(getCodes().getType().getBits()));
}

// Each element of dx reads dy, its code and its value at its own position
// only.
void ActivationGradRegionOp::getInPlaceOperands(
    unsigned, SmallVectorImpl<unsigned> &operands) {
  operands.push_back(getGradMutable().getOperandNumber());
  if (getValues())
    operands.push_back(getValuesMutable()[0].getOperandNumber());
}

//===----------------------------------------------------------------------===//
// Softmax and log-softmax (Blpa_SoftmaxFamilyOp, Blpa_SoftmaxGradFamilyOp)
//===----------------------------------------------------------------------===//

/// The result type of `op` along `axis` of `x`: x's, when the axis is one
/// of x's dimensions and `other` (a gradient's saved output), when given,
/// has x's type.
static LogicalResult inferSoftmaxType(std::optional<Location> loc, StringRef op,
                                      Value x, Value other, int64_t axis,
                                      SmallVectorImpl<Type> &results) {
  int64_t rank = getShape(x).size();
  if (axis < 0 || axis >= rank)
    return emitOptionalError(loc, op, ": axis ", axis,
                             " is not a dimension of a rank-", rank, " tensor");
  if (other && other.getType() != x.getType())
    return emitOptionalError(loc, op, ": grad and output types differ");
  results.push_back(x.getType());
  return success();
}

/// The data pointers `data`, then the [outer, length, inner] view of the
/// first one around `axis`.
static void appendSoftmaxArgs(ArrayRef<Value> data, int64_t axis,
                              SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, data);
  ArrayRef<int64_t> shape = getShape(data.front());
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(shape.take_front(axis))));
  args.push_back(RuntimeArg::i64(shape[axis]));
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(shape.drop_front(axis + 1))));
}

// Probabilities.
bool SoftmaxOp::isResultNonNegative(function_ref<bool(Value)>) { return true; }

//===----------------------------------------------------------------------===//
// Dropout
//===----------------------------------------------------------------------===//

LogicalResult DropoutOp::verify() {
  float ratio = getRatio().convertToFloat();
  if (!(ratio >= 0 && ratio < 1))
    return emitOpError("ratio ") << ratio << " is outside [0, 1)";
  return success();
}

LogicalResult DropoutOp::inferReturnTypes(MLIRContext *,
                                          std::optional<Location>,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &results) {
  results.push_back(adaptor.getInput().getType());
  return success();
}

/// blpa_dropout's and blpa_dropout_grad's arguments.
static void appendDropoutArgs(Value in, Value out, FloatAttr ratio,
                              int64_t stream,
                              SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(in));
  args.push_back(RuntimeArg::data(out));
  args.push_back(RuntimeArg::i64(ShapedType::getNumElements(getShape(in))));
  args.push_back(RuntimeArg::f64(ratio.getValueAsDouble()));
  args.push_back(RuntimeArg::i64(stream));
}

StringRef DropoutOp::getRuntimeFunction() { return "blpa_dropout"; }

void DropoutOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendDropoutArgs(getInput(), getOutput(), getRatioAttr(), getStream(), args);
}

void DropoutOp::getInPlaceOperands(unsigned,
                                   SmallVectorImpl<unsigned> &operands) {
  operands.push_back(0);
}

LogicalResult DropoutGradOp::inferReturnTypes(MLIRContext *,
                                              std::optional<Location>,
                                              Adaptor adaptor,
                                              SmallVectorImpl<Type> &results) {
  results.push_back(adaptor.getGrad().getType());
  return success();
}

StringRef DropoutGradOp::getRuntimeFunction() { return "blpa_dropout_grad"; }

void DropoutGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendDropoutArgs(getGrad(), getInputGrad(), getRatioAttr(), getStream(),
                    args);
}

void DropoutGradOp::getInPlaceOperands(unsigned,
                                       SmallVectorImpl<unsigned> &operands) {
  operands.push_back(0);
}

//===----------------------------------------------------------------------===//
// Concatenation, slices, padding and transposition
//===----------------------------------------------------------------------===//

/// The product of `shape`'s dimensions in [from, to).
static int64_t productOf(ArrayRef<int64_t> shape, int64_t from, int64_t to) {
  return ShapedType::getNumElements(shape.slice(from, to - from));
}

LogicalResult ConcatOp::inferReturnTypes(MLIRContext *ctx,
                                         std::optional<Location> loc,
                                         Adaptor adaptor,
                                         SmallVectorImpl<Type> &results) {
  if (adaptor.getInputs().empty())
    return emitOptionalError(loc, "concat: no inputs");
  SmallVector<int64_t> shape(getShape(adaptor.getInputs().front()));
  int64_t axis = adaptor.getAxis();
  if (axis < 0 || axis >= int64_t(shape.size()))
    return emitOptionalError(loc, "concat: axis ", axis, " is out of range");
  shape[axis] = 0;
  for (Value input : adaptor.getInputs()) {
    ArrayRef<int64_t> in = getShape(input);
    for (auto [d, size] : llvm::enumerate(in))
      if (in.size() != shape.size() || (int64_t(d) != axis && size != shape[d]))
        return emitOptionalError(loc, "concat: input ", input.getType(),
                                 " differs from the others off axis ", axis);
    std::optional<int64_t> size = llvm::checkedAdd(shape[axis], in[axis]);
    if (!size)
      return emitOptionalError(loc, "concat: axis ", axis,
                               " of the result overflows int64");
    shape[axis] = *size;
  }
  results.push_back(f32Tensor(ctx, shape));
  return success();
}

StringRef ConcatOp::getRuntimeFunction() { return "blpa_copy_strided"; }

// The interface requires it; the lowering asks for every call through
// getRuntimeCall, and this is the first of them.
void ConcatOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  getRuntimeCall(0, args);
}

/// The arguments of blpa_copy_strided moving a block of `size` along `axis`
/// between `src` at `srcStart` and `dst` at `dstStart` (both of the other
/// dimensions of `dst`).
static void appendAxisCopyArgs(Value src, Value dst, int64_t axis,
                               int64_t srcStart, int64_t dstStart, int64_t size,
                               SmallVectorImpl<RuntimeArg> &args) {
  ArrayRef<int64_t> srcShape = getShape(src), dstShape = getShape(dst);
  int64_t rank = dstShape.size();
  int64_t outer = productOf(dstShape, 0, axis),
          inner = productOf(dstShape, axis + 1, rank);
  args.push_back(RuntimeArg::data(src));
  args.push_back(RuntimeArg::data(dst));
  args.push_back(RuntimeArg::i64(outer));
  args.push_back(RuntimeArg::i64(size * inner));
  args.push_back(RuntimeArg::i64(srcShape[axis] * inner));
  args.push_back(RuntimeArg::i64(dstShape[axis] * inner));
  args.push_back(RuntimeArg::i64(srcStart * inner));
  args.push_back(RuntimeArg::i64(dstStart * inner));
}

StringRef ConcatOp::getRuntimeCall(unsigned index,
                                   SmallVectorImpl<RuntimeArg> &args) {
  int64_t axis = getAxis(), start = 0;
  for (Value earlier : getInputs().take_front(index))
    start += getShape(earlier)[axis];
  Value input = getInputs()[index];
  appendAxisCopyArgs(input, getOutput(), axis, 0, start, getShape(input)[axis],
                     args);
  return getRuntimeFunction();
}

LogicalResult SliceOp::inferReturnTypes(MLIRContext *ctx,
                                        std::optional<Location> loc,
                                        Adaptor adaptor,
                                        SmallVectorImpl<Type> &results) {
  SmallVector<int64_t> shape(getShape(adaptor.getInput()));
  int64_t axis = adaptor.getAxis(), start = adaptor.getStart(),
          size = adaptor.getSize();
  if (axis < 0 || axis >= int64_t(shape.size()) || start < 0 || size < 0 ||
      start > shape[axis] || size > shape[axis] - start)
    return emitOptionalError(loc, "slice: ", size, " elements from ", start,
                             " of axis ", axis, " are outside ",
                             adaptor.getInput().getType());
  shape[axis] = size;
  results.push_back(f32Tensor(ctx, shape));
  return success();
}

StringRef SliceOp::getRuntimeFunction() { return "blpa_copy_strided"; }

void SliceOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendAxisCopyArgs(getInput(), getOutput(), getAxis(), getStart(), 0,
                     getSize(), args);
}

/// Runtime.h's BLPA_PAD_* for a pad mode, none for an unknown one.
static std::optional<int64_t> padModeCode(StringRef mode) {
  return llvm::StringSwitch<std::optional<int64_t>>(mode)
      .Case("constant", BLPA_PAD_CONSTANT)
      .Case("reflect", BLPA_PAD_REFLECT)
      .Case("edge", BLPA_PAD_EDGE)
      .Default(std::nullopt);
}

/// The shape `in` padded by `pads` in `mode`; the rule shared by blpa.pad
/// and (inverted) blpa.pad_grad. Reflect pads must stay under the
/// dimension's size (ONNX), reflect and edge ones be >= 0.
static FailureOr<SmallVector<int64_t>>
paddedShape(std::optional<Location> loc, StringRef opName, ArrayRef<int64_t> in,
            ArrayRef<int64_t> pads, StringRef mode) {
  std::optional<int64_t> code = padModeCode(mode);
  if (!code)
    return emitOptionalError(loc, opName, ": unknown mode '", mode,
                             "'; expected constant, reflect or edge");
  int64_t rank = in.size();
  if (int64_t(pads.size()) != 2 * rank)
    return emitOptionalError(loc, opName, ": ", pads.size(), " pads for rank ",
                             rank, "; expected ", 2 * rank);
  SmallVector<int64_t> shape(in);
  for (int64_t d = 0; d < rank; ++d) {
    int64_t front = pads[d], back = pads[rank + d];
    if (*code != BLPA_PAD_CONSTANT && (front < 0 || back < 0))
      return emitOptionalError(loc, opName, ": ", mode, " pads of dimension ",
                               d, " are negative");
    if (*code == BLPA_PAD_REFLECT && (front >= in[d] || back >= in[d]))
      return emitOptionalError(loc, opName, ": reflect pads ", front, " and ",
                               back, " of dimension ", d,
                               " must be under its size ", in[d]);
    std::optional<int64_t> size = llvm::checkedAdd(in[d], front);
    if (size)
      size = llvm::checkedAdd(*size, back);
    if (!size)
      return emitOptionalError(loc, opName, ": dimension ", d,
                               " overflows int64");
    if (*size < 1 || (*code == BLPA_PAD_EDGE && in[d] < 1))
      return emitOptionalError(loc, opName, ": dimension ", d, " of size ",
                               in[d], " would become ", *size);
    shape[d] = *size;
  }
  return shape;
}

LogicalResult PadOp::inferReturnTypes(MLIRContext *ctx,
                                      std::optional<Location> loc,
                                      Adaptor adaptor,
                                      SmallVectorImpl<Type> &results) {
  FailureOr<SmallVector<int64_t>> shape =
      paddedShape(loc, "pad", getShape(adaptor.getInput()), adaptor.getPads(),
                  adaptor.getMode());
  if (failed(shape))
    return failure();
  Value value = adaptor.getRuntimeValue();
  if (value && adaptor.getMode() != "constant")
    return emitOptionalError(loc, "pad: a run-time value in ",
                             adaptor.getMode(), " mode");
  if (value && ShapedType::getNumElements(getShape(value)) != 1)
    return emitOptionalError(loc, "pad: the run-time value has type ",
                             value.getType(), "; expected one element");
  results.push_back(f32Tensor(ctx, *shape));
  return success();
}

StringRef PadOp::getRuntimeFunction() { return "blpa_pad"; }

void PadOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getInput()));
  args.push_back(RuntimeArg::data(getOutput()));
  ArrayRef<int64_t> in = getShape(getInput());
  args.push_back(RuntimeArg::i64(in.size()));
  args.push_back(RuntimeArg::i64Array(in));
  args.push_back(RuntimeArg::i64Array(getShape(getOutput())));
  args.push_back(RuntimeArg::i64Array(getPads().take_front(in.size())));
  args.push_back(RuntimeArg::i64(*padModeCode(getMode())));
  args.push_back(RuntimeArg::f64(getValue().convertToFloat()));
  args.push_back(RuntimeArg::data(getRuntimeValue()));
}

void PadOp::getRunTimeScalars(SmallVectorImpl<Value> &scalars) {
  if (Value value = getRuntimeValue())
    scalars.push_back(value);
}

// The pad's input shape: the gradient's without the pads.
LogicalResult PadGradOp::inferReturnTypes(MLIRContext *ctx,
                                          std::optional<Location> loc,
                                          Adaptor adaptor,
                                          SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> out = getShape(adaptor.getGrad());
  ArrayRef<int64_t> pads = adaptor.getPads();
  int64_t rank = out.size();
  if (int64_t(pads.size()) != 2 * rank)
    return emitOptionalError(loc, "pad_grad: ", pads.size(), " pads for rank ",
                             rank);
  SmallVector<int64_t> in(out);
  for (int64_t d = 0; d < rank; ++d)
    in[d] -= pads[d] + pads[rank + d];
  // The pad this is the gradient of must be valid.
  FailureOr<SmallVector<int64_t>> padded =
      paddedShape(loc, "pad_grad", in, pads, adaptor.getMode());
  if (failed(padded))
    return failure();
  if (ArrayRef<int64_t>(*padded) != out)
    return emitOptionalError(loc, "pad_grad: no input pads to ",
                             adaptor.getGrad().getType());
  results.push_back(f32Tensor(ctx, in));
  return success();
}

StringRef PadGradOp::getRuntimeFunction() { return "blpa_pad_grad"; }

void PadGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getGrad()));
  args.push_back(RuntimeArg::data(getInputGrad()));
  ArrayRef<int64_t> in = getShape(getInputGrad());
  args.push_back(RuntimeArg::i64(in.size()));
  args.push_back(RuntimeArg::i64Array(in));
  args.push_back(RuntimeArg::i64Array(getShape(getGrad())));
  args.push_back(RuntimeArg::i64Array(getPads().take_front(in.size())));
  args.push_back(RuntimeArg::i64(*padModeCode(getMode())));
}

LogicalResult TransposeOp::inferReturnTypes(MLIRContext *ctx,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> in = getShape(adaptor.getInput());
  ArrayRef<int64_t> perm = adaptor.getPerm();
  int64_t rank = in.size();
  if (int64_t(perm.size()) != rank)
    return emitOptionalError(loc, "transpose: ", perm.size(),
                             " perm entries for rank ", rank);
  SmallVector<bool> seen(rank, false);
  SmallVector<int64_t> shape;
  for (int64_t p : perm) {
    if (p < 0 || p >= rank || seen[p])
      return emitOptionalError(loc, "transpose: perm [", perm,
                               "] is not a permutation of 0..", rank - 1);
    seen[p] = true;
    shape.push_back(in[p]);
  }
  results.push_back(f32Tensor(ctx, shape));
  return success();
}

LogicalResult TriluOp::inferReturnTypes(MLIRContext *,
                                        std::optional<Location> loc,
                                        Adaptor adaptor,
                                        SmallVectorImpl<Type> &results) {
  if (getShape(adaptor.getInput()).size() < 2)
    return emitOptionalError(loc, "trilu: the input has rank ",
                             getShape(adaptor.getInput()).size(),
                             "; it needs two dimensions to take a triangle of");
  results.push_back(adaptor.getInput().getType());
  return success();
}

/// Table [vocab, row...] and indices of any shape.
LogicalResult EmbeddingOp::inferReturnTypes(MLIRContext *ctx,
                                            std::optional<Location> loc,
                                            Adaptor adaptor,
                                            SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> table = getShape(adaptor.getTable());
  if (table.empty())
    return emitOptionalError(loc, "embedding: the table has rank 0; it "
                                  "needs rows to look up");
  SmallVector<int64_t> shape(getShape(adaptor.getIndices()));
  llvm::append_range(shape, table.drop_front());
  results.push_back(f32Tensor(ctx, shape));
  return success();
}

/// Data pointers, then positions, vocabulary and row size.
static void appendEmbeddingArgs(SmallVectorImpl<RuntimeArg> &args,
                                ArrayRef<Value> data, Value indices,
                                ArrayRef<int64_t> tableShape) {
  appendData(args, data);
  args.push_back(
      RuntimeArg::i64(cast<ShapedType>(indices.getType()).getNumElements()));
  args.push_back(RuntimeArg::i64(tableShape.front()));
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(tableShape.drop_front())));
}

StringRef EmbeddingOp::getRuntimeFunction() { return "blpa_embedding"; }

void EmbeddingOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendEmbeddingArgs(args, {getTable(), getIndices(), getOutput()},
                      getIndices(), getShape(getTable()));
}

LogicalResult EmbeddingGradOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  ArrayRef<int64_t> table = adaptor.getTableShape();
  SmallVector<int64_t> expected(getShape(adaptor.getIndices()));
  if (!table.empty())
    llvm::append_range(expected, table.drop_front());
  if (table.empty() || table.front() < 1 ||
      getShape(adaptor.getGrad()) != ArrayRef<int64_t>(expected))
    return emitOptionalError(
        loc, "embedding_grad: the gradient ", adaptor.getGrad().getType(),
        " must be the indices' shape plus a row of the table ",
        f32Tensor(ctx, table));
  results.push_back(f32Tensor(ctx, table));
  return success();
}

StringRef EmbeddingGradOp::getRuntimeFunction() {
  return "blpa_embedding_grad";
}

void EmbeddingGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendEmbeddingArgs(args, {getGrad(), getIndices(), getTableGrad()},
                      getIndices(), getTableShape());
}

StringRef TriluOp::getRuntimeFunction() { return "blpa_trilu"; }

void TriluOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getInput(), getOutput()});
  ArrayRef<int64_t> shape = getShape(getInput());
  args.push_back(
      RuntimeArg::i64(ShapedType::getNumElements(shape.drop_back(2))));
  args.push_back(RuntimeArg::i64(shape[shape.size() - 2]));
  args.push_back(RuntimeArg::i64(shape.back()));
  args.push_back(RuntimeArg::i64(getK()));
  args.push_back(RuntimeArg::i64(getUpper()));
}

void TriluOp::getInPlaceOperands(unsigned,
                                 SmallVectorImpl<unsigned> &operands) {
  operands.push_back(0);
}

StringRef TransposeOp::getRuntimeFunction() { return "blpa_transpose"; }

void TransposeOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  args.push_back(RuntimeArg::data(getInput()));
  args.push_back(RuntimeArg::data(getOutput()));
  ArrayRef<int64_t> in = getShape(getInput());
  args.push_back(RuntimeArg::i64(in.size()));
  args.push_back(RuntimeArg::i64Array(in));
  args.push_back(RuntimeArg::i64Array(getPerm()));
}

#define GET_OP_CLASSES
#include "blpa/Dialect/Blpa/IR/BlpaOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Fused batch norm and ReLU
//===----------------------------------------------------------------------===//

LogicalResult
BatchNormReluOp::inferReturnTypes(MLIRContext *ctx, std::optional<Location> loc,
                                  Adaptor adaptor,
                                  SmallVectorImpl<Type> &results) {
  return inferTrainingBatchNorm(ctx, loc, adaptor, results);
}

StringRef BatchNormReluOp::getRuntimeFunction() {
  return "blpa_batch_norm_relu_train";
}

void BatchNormReluOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendTrainingBatchNormArgs(*this, args);
}

LogicalResult BatchNormReluGradOp::inferReturnTypes(
    MLIRContext *ctx, std::optional<Location> loc, Adaptor adaptor,
    SmallVectorImpl<Type> &results) {
  return inferBatchNormGradients(ctx, loc, "batch_norm_relu_grad",
                                 adaptor.getGrad(), adaptor.getInput(),
                                 {adaptor.getScale(), adaptor.getBias(),
                                  adaptor.getMean(), adaptor.getInvStd()},
                                 results);
}

StringRef BatchNormReluGradOp::getRuntimeFunction() {
  return "blpa_batch_norm_relu_grad";
}

void BatchNormReluGradOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args,
             {getGrad(), getInput(), getScale(), getBias(), getMean(),
              getInvStd(), getInputGrad(), getScaleGrad(), getBiasGrad()});
  appendBatchNormDims(getInput(), args);
}

// Like the exact batch-norm gradient's: the statistics must stay exact.
ActivationNeed BatchNormReluGradOp::getActivationNeed(unsigned operandIndex) {
  return operandIndex == getInputMutable().getOperandNumber() ||
                 operandIndex == getGradMutable().getOperandNumber()
             ? ActivationNeed::Values
             : ActivationNeed::Exact;
}

LogicalResult
BatchNormApplyOp::inferReturnTypes(MLIRContext *ctx,
                                   std::optional<Location> loc, Adaptor adaptor,
                                   SmallVectorImpl<Type> &results) {
  if (failed(checkBatchNorm(loc, adaptor.getInput(),
                            {adaptor.getScale(), adaptor.getBias(),
                             adaptor.getMean(), adaptor.getInvStd()})))
    return failure();
  results.push_back(adaptor.getInput().getType());
  return success();
}

StringRef BatchNormApplyOp::getRuntimeFunction() {
  return "blpa_batch_norm_apply";
}

void BatchNormApplyOp::getRuntimeArgs(SmallVectorImpl<RuntimeArg> &args) {
  appendData(args, {getInput(), getScale(), getBias(), getMean(), getInvStd(),
                    getOutput()});
  appendBatchNormDims(getInput(), args);
  args.push_back(RuntimeArg::i64(getRelu()));
}

//===----------------------------------------------------------------------===//
// In-place results (InPlaceOpInterface)
//===----------------------------------------------------------------------===//

void ReluOp::getInPlaceOperands(unsigned, SmallVectorImpl<unsigned> &operands) {
  operands.push_back(getInputMutable().getOperandNumber());
}

void ReluGradOp::getInPlaceOperands(unsigned,
                                    SmallVectorImpl<unsigned> &operands) {
  operands.push_back(getGradMutable().getOperandNumber());
}

// The batch-norm backward kernels read all of dy for the channel sums
// before the pass that writes dx, which reads dy[j] before writing dx[j].
template <typename BatchNormGradientOp>
static void appendGradOperand(BatchNormGradientOp op, unsigned resultIndex,
                              SmallVectorImpl<unsigned> &operands) {
  if (resultIndex == 0)
    operands.push_back(op.getGradMutable().getOperandNumber());
}
void BatchNormGradOp::getInPlaceOperands(unsigned resultIndex,
                                         SmallVectorImpl<unsigned> &operands) {
  appendGradOperand(*this, resultIndex, operands);
}
void BatchNormReluGradOp::getInPlaceOperands(
    unsigned resultIndex, SmallVectorImpl<unsigned> &operands) {
  appendGradOperand(*this, resultIndex, operands);
}
void BatchNormGradDecodeOp::getInPlaceOperands(
    unsigned resultIndex, SmallVectorImpl<unsigned> &operands) {
  appendGradOperand(*this, resultIndex, operands);
}
