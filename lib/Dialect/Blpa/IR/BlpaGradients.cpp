//===- BlpaGradients.cpp - Reverse-mode gradient rules of blpa ops --------===//
//
// GradientOpInterface implementations: each differentiable op builds the ops
// computing its operands' adjoints from its results' adjoints.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::blpa;

/// Sums `grad` down to `type` when broadcasting expanded it; `scale` scales
/// the result.
static Value reduceToType(OpBuilder &b, Location loc, Value grad, Type type,
                          double scale = 1.0) {
  if (grad.getType() == type && scale == 1.0)
    return grad;
  return ReduceToShapeOp::create(b, loc, type, grad, llvm::APFloat(scale));
}

/// Fills `operandGrads` with nulls for an op that receives no gradient.
static LogicalResult noGradients(Operation *op,
                                 SmallVectorImpl<Value> &operandGrads) {
  operandGrads.assign(op->getNumOperands(), Value());
  return success();
}

LogicalResult ConvOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                     SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  Location loc = getLoc();
  // The weight's adjoint first: it is the last reader of the input (a saved
  // activation, often decoded from codes just for it), so the input's bytes
  // are free before the input's adjoint takes as many. The other order
  // holds both at once, which at the widest layer of a ResNet is a fifth of
  // the training step's peak; the scheduler keeps the emitted order where
  // two ops tie.
  Value dw = ConvGradWeightOp::create(b, loc, dy, getInput(), getStrides(),
                                      getPads(), getDilations(), getGroup(),
                                      getShape(getWeight()));
  Value dx =
      ConvGradInputOp::create(b, loc, dy, getWeight(), getStrides(), getPads(),
                              getDilations(), getGroup(), getShape(getInput()));
  operandGrads.assign({dx, dw, Value()});
  if (Value bias = getBias()) {
    // Sum over N and the spatial dimensions keeping the rank, then view as
    // the bias' [K].
    SmallVector<int64_t> summedShape(getShape(dy).size(), 1);
    summedShape[1] = getShape(dy)[1];
    auto summed = RankedTensorType::get(summedShape, b.getF32Type());
    Value db = reduceToType(b, loc, dy, summed);
    operandGrads[2] = ReshapeOp::create(b, loc, bias.getType(), db);
  }
  return success();
}

/// The output's gradient of a normalization whose results 1 and 2 are its
/// `statistics`, which take none (failure when they have one).
static FailureOr<Value> normalizedOutputGrad(Operation *op,
                                             ValueRange resultGrads,
                                             StringRef statistics) {
  if (resultGrads[1] || resultGrads[2])
    return op->emitOpError("gradients through the ")
           << statistics << " results are not supported";
  return resultGrads[0];
}

LogicalResult
BatchNormOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  FailureOr<Value> dy =
      normalizedOutputGrad(*this, resultGrads, "batch statistics");
  if (failed(dy))
    return failure();
  if (!*dy)
    return noGradients(*this, operandGrads);
  auto grad = BatchNormGradOp::create(b, getLoc(), *dy, getInput(), getScale(),
                                      getMean(), getInvStd());
  operandGrads.assign({grad.getInputGrad(), grad.getScaleGrad(),
                       grad.getBiasGrad(), Value(), Value()});
  return success();
}

LogicalResult
LayerNormOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  FailureOr<Value> dy = normalizedOutputGrad(
      *this, resultGrads, "mean and inverse standard deviation");
  if (failed(dy))
    return failure();
  if (!*dy)
    return noGradients(*this, operandGrads);
  auto grad = LayerNormGradOp::create(b, getLoc(), *dy, getInput(), getScale(),
                                      getMean(), getInvStd(), getAxisAttr());
  operandGrads.assign({grad.getInputGrad(), grad.getScaleGrad()});
  if (Value bias = getBias())
    operandGrads.push_back(
        ReshapeOp::create(b, getLoc(), bias.getType(), grad.getBiasGrad()));
  return success();
}

LogicalResult ReluOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                     SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(*this, operandGrads);
  operandGrads.assign(
      {ReluGradOp::create(b, getLoc(), resultGrads[0], getOutput())});
  return success();
}

LogicalResult AddOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  operandGrads.assign({reduceToType(b, getLoc(), dy, getLhs().getType()),
                       reduceToType(b, getLoc(), dy, getRhs().getType())});
  return success();
}

// A constant has no operands to pass a gradient to.
LogicalResult FillOp::buildGradients(OpBuilder &, ValueRange,
                                     SmallVectorImpl<Value> &operandGrads) {
  operandGrads.clear();
  return success();
}

LogicalResult MulOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  Location loc = getLoc();
  Value dLhs = MulOp::create(b, loc, dy, getRhs());
  Value dRhs = MulOp::create(b, loc, dy, getLhs());
  operandGrads.assign({reduceToType(b, loc, dLhs, getLhs().getType()),
                       reduceToType(b, loc, dRhs, getRhs().getType())});
  return success();
}

LogicalResult SubOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  operandGrads.assign(
      {reduceToType(b, getLoc(), dy, getLhs().getType()),
       reduceToType(b, getLoc(), dy, getRhs().getType(), /*scale=*/-1.0)});
  return success();
}

// y = a / b: da = dy / b, db = -dy * a / b^2 = -(dy / b) * y.
LogicalResult DivOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  Location loc = getLoc();
  Value quotient = DivOp::create(b, loc, dy, getRhs());
  Value product = MulOp::create(b, loc, quotient, getOutput());
  operandGrads.assign(
      {reduceToType(b, loc, quotient, getLhs().getType()),
       reduceToType(b, loc, product, getRhs().getType(), /*scale=*/-1.0)});
  return success();
}

// d(x^y)/dx = y * x^(y - 1) and d(x^y)/dy = x^y * log(x), each summed
// back over what broadcasting added. (PyTorch masks the points where these
// formulas give 0 * inf: a zero exponent, a zero base; they do not.)
LogicalResult PowerOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  Location loc = getLoc();
  auto scalar = RankedTensorType::get({}, b.getF32Type());
  Value one = FillOp::create(b, loc, scalar, b.getF64FloatAttr(1.0));
  Value lowered =
      PowerOp::create(b, loc, getLhs(), SubOp::create(b, loc, getRhs(), one));
  Value dx =
      MulOp::create(b, loc, dy, MulOp::create(b, loc, getRhs(), lowered));
  Value dexp = MulOp::create(
      b, loc, dy,
      MulOp::create(b, loc, getOutput(), LogOp::create(b, loc, getLhs())));
  operandGrads.assign({reduceToType(b, loc, dx, getLhs().getType()),
                       reduceToType(b, loc, dexp, getRhs().getType())});
  return success();
}

LogicalResult
mlir::blpa::buildActivationGradient(Operation *op, const Activation &act,
                                    OpBuilder &b, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(op, operandGrads);
  Value saved = act.gradFromOutput ? op->getResult(0) : op->getOperand(0);
  operandGrads.assign({ActivationGradOp::create(
      b, op->getLoc(), resultGrads[0], saved, act.runtimeAlpha, act.runtimeBeta,
      b.getI64IntegerAttr(act.kind), b.getF32FloatAttr(act.alpha),
      b.getF32FloatAttr(act.beta))});
  // Run-time parameters (Clip's bounds) take no gradient.
  operandGrads.resize(op->getNumOperands());
  return success();
}

// Both gradients read the forward op's output y, not its input: softmax
// dx = y * (dy - sum(dy * y)), log-softmax dx = dy - exp(y) * sum(dy).
template <typename GradOpTy, typename OpTy>
static LogicalResult
buildSoftmaxGradient(OpTy op, OpBuilder &b, ValueRange resultGrads,
                     SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(op, operandGrads);
  operandGrads.assign({GradOpTy::create(b, op.getLoc(), resultGrads[0],
                                        op.getOutput(), op.getAxisAttr())});
  return success();
}

LogicalResult SoftmaxOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                        SmallVectorImpl<Value> &operandGrads) {
  return buildSoftmaxGradient<SoftmaxGradOp>(*this, b, resultGrads,
                                             operandGrads);
}

LogicalResult
LogSoftmaxOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                             SmallVectorImpl<Value> &operandGrads) {
  return buildSoftmaxGradient<LogSoftmaxGradOp>(*this, b, resultGrads,
                                                operandGrads);
}

// The mask is recomputed from the same seed, step and stream.
LogicalResult DropoutOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                        SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(*this, operandGrads);
  operandGrads.assign({DropoutGradOp::create(b, getLoc(), resultGrads[0],
                                             getRatioAttr(), getStreamAttr())});
  return success();
}

/// `x` padded (negative pads: cropped) with zeros.
static Value padWithZeros(OpBuilder &b, Location loc, Value x,
                          ArrayRef<int64_t> pads) {
  return PadOp::create(b, loc, x, /*runtime_value=*/Value(),
                       b.getDenseI64ArrayAttr(pads),
                       b.getStringAttr("constant"), b.getF32FloatAttr(0));
}

// Each input's gradient is its columns of the output's gradient.
LogicalResult ConcatOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                       SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  int64_t axis = getAxis(), start = 0;
  operandGrads.clear();
  for (Value input : getInputs()) {
    int64_t size = getShape(input)[axis];
    operandGrads.push_back(SliceOp::create(b, getLoc(), dy, axis, start, size));
    start += size;
  }
  return success();
}

// The gradient of a slice is the gradient padded back with zeros.
LogicalResult SliceOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  ArrayRef<int64_t> in = getShape(getInput());
  int64_t rank = in.size(), axis = getAxis();
  SmallVector<int64_t> pads(2 * rank, 0);
  pads[axis] = getStart();
  pads[rank + axis] = in[axis] - getStart() - getSize();
  operandGrads.assign({padWithZeros(b, getLoc(), dy, pads)});
  return success();
}

// Constant padding's gradient is the gradient cropped (the negated pads);
// reflect and edge ones add up the copies of each element (pad_grad). A
// run-time value takes no gradient.
LogicalResult PadOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  Value dx;
  if (getMode() == "constant") {
    SmallVector<int64_t> negated;
    for (int64_t pad : getPads())
      negated.push_back(-pad);
    dx = padWithZeros(b, getLoc(), dy, negated);
  } else {
    dx = PadGradOp::create(b, getLoc(), dy, getPadsAttr(), getModeAttr());
  }
  operandGrads.assign({dx});
  operandGrads.resize(getNumOperands());
  return success();
}

// The gradient of a transpose is the gradient transposed back: by the
// inverse permutation.
LogicalResult TriluOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(*this, operandGrads);
  operandGrads.assign(
      {TriluOp::create(b, getLoc(), resultGrads[0], getK(), getUpper())});
  return success();
}

LogicalResult
TransposeOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  ArrayRef<int64_t> perm = getPerm();
  SmallVector<int64_t> inverse(perm.size());
  for (auto [d, p] : llvm::enumerate(perm))
    inverse[p] = d;
  operandGrads.assign({TransposeOp::create(b, getLoc(), dy, inverse)});
  return success();
}

LogicalResult MaxPoolOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                        SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(*this, operandGrads);
  operandGrads.assign({MaxPoolGradOp::create(
      b, getLoc(), resultGrads[0], getInput(), getKernelShape(), getStrides(),
      getPads(), getCeilMode(), getDilations())});
  return success();
}

LogicalResult AvgPoolOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                        SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(*this, operandGrads);
  operandGrads.assign({AvgPoolGradOp::create(
      b, getLoc(), resultGrads[0], getKernelShape(), getStrides(), getPads(),
      getCeilMode(), getDilations(), getCountIncludePad(),
      getShape(getInput()))});
  return success();
}

LogicalResult
GlobalAvgPoolOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(*this, operandGrads);
  operandGrads.assign({GlobalAvgPoolGradOp::create(b, getLoc(), resultGrads[0],
                                                   getShape(getInput()))});
  return success();
}

LogicalResult ReshapeOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                        SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(*this, operandGrads);
  operandGrads.assign(
      {ReshapeOp::create(b, getLoc(), getInput().getType(), resultGrads[0])});
  return success();
}

/// Builds op(x) * op(y) (scaled as the caller's product is).
using ProductBuilder =
    llvm::function_ref<Value(Value x, bool transX, Value y, bool transY)>;

/// The adjoints of Y = op(A) op(B) given dY: d op(A) = dY op(B)^T and
/// d op(B) = op(A)^T dY; a transposed operand takes the transposed adjoint.
/// Shared by gemm and batch_matmul, which differ only in `product`. B's
/// adjoint comes first: in a layer B is the weight and A the activation,
/// whose last reader it is (as for a convolution's weight).
static std::pair<Value, Value> buildProductGradients(Value a, bool ta, Value b,
                                                     bool tb, Value dy,
                                                     ProductBuilder product) {
  Value db = tb ? product(dy, true, a, ta) : product(a, !ta, dy, false);
  Value da = ta ? product(b, tb, dy, true) : product(dy, false, b, !tb);
  return {da, db};
}

LogicalResult GemmOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                     SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  Location loc = getLoc();
  llvm::APFloat alpha = getAlpha();
  // alpha * op(x) * op(y) as a gemm without bias.
  auto product = [&](Value x, bool transX, Value y, bool transY) -> Value {
    return GemmOp::create(b, loc, x, y, /*c=*/Value(), transX, transY, alpha,
                          llvm::APFloat(1.0));
  };
  auto [da, db] = buildProductGradients(getA(), getTransA(), getB(),
                                        getTransB(), dy, product);
  Value dc;
  if (Value c = getC())
    dc = reduceToType(b, loc, dy, c.getType(), getBeta().convertToDouble());
  operandGrads.assign({da, db, dc});
  return success();
}

LogicalResult
BatchMatMulOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                              SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  if (!dy)
    return noGradients(*this, operandGrads);
  Location loc = getLoc();
  auto product = [&](Value x, bool transX, Value y, bool transY) -> Value {
    return BatchMatMulOp::create(b, loc, x, y, transX, transY);
  };
  auto [da, db] = buildProductGradients(getA(), getTransA(), getB(),
                                        getTransB(), dy, product);
  // The adjoint of an operand broadcast over the batch (a batch of 1) is
  // the sum of its per-matrix adjoints.
  operandGrads.assign({reduceToType(b, loc, da, getA().getType()),
                       reduceToType(b, loc, db, getB().getType())});
  return success();
}

LogicalResult
SoftmaxCrossEntropyOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(*this, operandGrads);
  operandGrads.assign(
      {SoftmaxCrossEntropyGradOp::create(b, getLoc(), getLogits(), getLabels(),
                                         getIgnoreIndex(), resultGrads[0]),
       Value()});
  return success();
}

/// The table's gradient is the scatter-add of the rows' gradients; the
/// indices are integers, with none.
LogicalResult EmbeddingOp::buildGradients(OpBuilder &b, ValueRange resultGrads,
                                          SmallVectorImpl<Value> &operandGrads) {
  if (!resultGrads[0])
    return noGradients(*this, operandGrads);
  ArrayRef<int64_t> table = cast<ShapedType>(getTable().getType()).getShape();
  operandGrads.assign({EmbeddingGradOp::create(b, getLoc(), resultGrads[0],
                                               getIndices(), table),
                       Value()});
  return success();
}
