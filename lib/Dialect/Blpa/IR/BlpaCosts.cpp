//===- BlpaCosts.cpp - The work of one execution of each blpa op ---------===//
//
// CostOpInterface for the ops whose work is not one operation per element
// of their tensors: convolutions and matrix products (two operations per
// multiply-add), poolings (one per window tap), and the kernels that pass
// over their large operands more than once (batch norms compute statistics
// before they normalize, quantizers find each channel's range before they
// encode). Every other op costs what getOpCost gives an element-wise op.
// The figures are what the kernels do, not what a library could do: they
// are the analytical half of the cost model, which a profile calibrates.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

using namespace mlir;
using namespace mlir::blpa;

/// Elements of a tensor or of packed codes (0 for anything else).
static double numElements(Type type) {
  if (auto packed = dyn_cast<PackedType>(type))
    return double(packed.getNumElements());
  if (auto shaped = dyn_cast<ShapedType>(type))
    return shaped.hasStaticShape() ? double(shaped.getNumElements()) : 0;
  return 0;
}

static double product(ArrayRef<int64_t> dims) {
  double n = 1;
  for (int64_t d : dims)
    n *= double(d);
  return n;
}

/// An op that streams its tensors: every result written once, the operands
/// as large as its largest tensor read `passes` times, the others once, and
/// `flopsPerElement` operations per element of the largest tensor.
static OpCost streamingCost(Operation *op, double passes,
                            double flopsPerElement) {
  double largest = 0;
  for (Type type : op->getOperandTypes())
    largest = std::max(largest, numElements(type));
  for (Type type : op->getResultTypes())
    largest = std::max(largest, numElements(type));
  OpCost cost;
  cost.flops = flopsPerElement * largest;
  for (Type type : op->getResultTypes())
    cost.bytes += double(getTensorBytes(type));
  for (Type type : op->getOperandTypes())
    cost.bytes += (numElements(type) == largest ? passes : 1.0) *
                  double(getTensorBytes(type));
  return cost;
}

OpCost mlir::blpa::getOpCost(Operation *op) {
  if (auto costed = dyn_cast<CostOpInterface>(op))
    return costed.getCost();
  if (op->getNumResults() == 0 && op->getNumOperands() == 0)
    return {};
  return streamingCost(op, /*passes=*/1, /*flopsPerElement=*/1);
}

/// Bytes of a single pass over every tensor, with `flops` operations.
static OpCost onePass(Operation *op, double flops) {
  OpCost cost = streamingCost(op, 1, 0);
  cost.flops = flops;
  return cost;
}

/// 2 operations per multiply-add: each element on the convolution's output
/// side sums a (C / group) x kernel window, the weight's elements per
/// output channel, in the forward pass and in both gradients alike.
static double convFlops(Value outputSide, ArrayRef<int64_t> weightShape) {
  return 2 * numElements(outputSide.getType()) *
         product(weightShape.drop_front());
}

/// One operation per window tap of each pooled element: the smallest f32
/// tensor of the op is the pooled side (the forward output, the gradient
/// operand of a backward pooling).
static double poolFlops(Operation *op, ArrayRef<int64_t> kernelShape) {
  double pooled = std::numeric_limits<double>::infinity();
  for (Value v : llvm::concat<Value>(op->getOperands(), op->getResults()))
    if (isa<RankedTensorType>(v.getType()))
      pooled = std::min(pooled, numElements(v.getType()));
  return pooled * product(kernelShape);
}

namespace {

/// CostOpInterface from a function of the concrete op.
template <typename Op, OpCost (*costOf)(Op)>
struct CostModelOf
    : public CostOpInterface::ExternalModel<CostModelOf<Op, costOf>, Op> {
  OpCost getCost(Operation *op) const { return costOf(cast<Op>(op)); }
};

/// A multi-pass streaming kernel (see streamingCost).
template <typename Op, int passes, int flopsPerElement>
struct StreamingModel : public CostOpInterface::ExternalModel<
                            StreamingModel<Op, passes, flopsPerElement>, Op> {
  OpCost getCost(Operation *op) const {
    return streamingCost(op, passes, flopsPerElement);
  }
};

template <typename Op>
struct PoolModel : public CostOpInterface::ExternalModel<PoolModel<Op>, Op> {
  OpCost getCost(Operation *op) const {
    return onePass(op, poolFlops(op, cast<Op>(op).getKernelShape()));
  }
};

} // namespace

static OpCost convCost(ConvOp op) {
  return onePass(op, convFlops(op.getOutput(), getShape(op.getWeight())));
}
static OpCost convGradInputCost(ConvGradInputOp op) {
  return onePass(op, convFlops(op.getGrad(), getShape(op.getWeight())));
}
static OpCost convGradWeightCost(ConvGradWeightOp op) {
  return onePass(op, convFlops(op.getGrad(), op.getWeightShape()));
}

/// 2 M N K: the inner dimension is op(a)'s last.
static OpCost gemmCost(GemmOp op) {
  ArrayRef<int64_t> a = getShape(op.getA());
  double inner = double(op.getTransA() ? a[0] : a[1]);
  return onePass(op, 2 * numElements(op.getType()) * inner);
}
static OpCost batchMatMulCost(BatchMatMulOp op) {
  ArrayRef<int64_t> a = getShape(op.getA());
  double inner = double(op.getTransA() ? a[1] : a[2]);
  return onePass(op, 2 * numElements(op.getType()) * inner);
}

void mlir::blpa::registerCostModels(MLIRContext &context) {
  ConvOp::attachInterface<CostModelOf<ConvOp, convCost>>(context);
  ConvGradInputOp::attachInterface<
      CostModelOf<ConvGradInputOp, convGradInputCost>>(context);
  ConvGradWeightOp::attachInterface<
      CostModelOf<ConvGradWeightOp, convGradWeightCost>>(context);
  GemmOp::attachInterface<CostModelOf<GemmOp, gemmCost>>(context);
  BatchMatMulOp::attachInterface<CostModelOf<BatchMatMulOp, batchMatMulCost>>(
      context);
  MaxPoolOp::attachInterface<PoolModel<MaxPoolOp>>(context);
  MaxPoolArgmaxOp::attachInterface<PoolModel<MaxPoolArgmaxOp>>(context);
  MaxPoolGradOp::attachInterface<PoolModel<MaxPoolGradOp>>(context);
  MaxPoolGradArgmaxOp::attachInterface<PoolModel<MaxPoolGradArgmaxOp>>(context);
  AvgPoolOp::attachInterface<PoolModel<AvgPoolOp>>(context);
  AvgPoolGradOp::attachInterface<PoolModel<AvgPoolGradOp>>(context);
  // Batch norms: a statistics pass over the input, then the normalizing
  // pass (sum, sum of squares, subtract, scale, shift); their gradients
  // reduce over dy and x, then write dx (about twice the operations).
  BatchNormOp::attachInterface<StreamingModel<BatchNormOp, 2, 5>>(context);
  BatchNormEncodeOp::attachInterface<StreamingModel<BatchNormEncodeOp, 2, 7>>(
      context);
  BatchNormReluOp::attachInterface<StreamingModel<BatchNormReluOp, 2, 6>>(
      context);
  BatchNormGradOp::attachInterface<StreamingModel<BatchNormGradOp, 2, 10>>(
      context);
  BatchNormGradDecodeOp::attachInterface<
      StreamingModel<BatchNormGradDecodeOp, 2, 12>>(context);
  BatchNormReluGradOp::attachInterface<
      StreamingModel<BatchNormReluGradOp, 2, 11>>(context);
  // Layer norms: as batch norms, over rows instead of channels.
  LayerNormOp::attachInterface<StreamingModel<LayerNormOp, 2, 5>>(context);
  LayerNormGradOp::attachInterface<StreamingModel<LayerNormGradOp, 2, 10>>(
      context);
  // Applying known statistics and decoding codes: one pass, a few
  // operations per element.
  BatchNormApplyOp::attachInterface<StreamingModel<BatchNormApplyOp, 1, 3>>(
      context);
  BatchNormInferenceOp::attachInterface<
      StreamingModel<BatchNormInferenceOp, 1, 3>>(context);
  BatchNormDecodeOp::attachInterface<StreamingModel<BatchNormDecodeOp, 1, 3>>(
      context);
  // The quantizer finds each channel's range, then encodes (scale, round,
  // pack); the dequantizer unpacks and scales.
  QuantizeOp::attachInterface<StreamingModel<QuantizeOp, 2, 4>>(context);
  DequantizeOp::attachInterface<StreamingModel<DequantizeOp, 1, 2>>(context);
  // A pass for the row's range and sum, one for the codes (a compare per
  // code up to 4 bits).
  ProbabilityEncodeOp::attachInterface<
      StreamingModel<ProbabilityEncodeOp, 2, 16>>(context);
  ProbabilityDecodeOp::attachInterface<
      StreamingModel<ProbabilityDecodeOp, 1, 2>>(context);
}
