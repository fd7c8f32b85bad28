//===- BlpaRecompute.cpp - How blpa ops are recomputed --------------------===//
//
// RecomputeOpInterface: what --blpa-recompute builds in the backward pass in
// place of a forward op's saved results.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

using namespace mlir;
using namespace mlir::blpa;

void mlir::blpa::recomputeByCopy(Operation *op, OpBuilder &builder,
                                 ValueRange operands,
                                 SmallVectorImpl<Value> &results) {
  IRMapping mapping;
  mapping.map(op->getOperands(), operands);
  Operation *copy = builder.clone(*op, mapping);
  llvm::append_range(results, copy->getResults());
}

/// A parameter lives outside the arena for the whole step: the backward pass
/// reads it directly, there is nothing to recompute.
void ParamOp::buildRecompute(OpBuilder &, ValueRange,
                             SmallVectorImpl<Value> &results) {
  results.push_back(getResult());
}

/// The output is recomputed by `blpa.batch_norm_apply` with the forward's own
/// mean and inv_std, not by a second batch norm: the statistics would come
/// out the same, but computing them is a reduction over the whole input, and
/// apply shares the forward's normalization code (`normalizeRun`), so the
/// output is bit for bit the forward's. The statistics stay saved (a few
/// floats per channel).
void BatchNormOp::buildRecompute(OpBuilder &builder, ValueRange operands,
                                 SmallVectorImpl<Value> &results) {
  BatchNormOp::Adaptor adaptor(operands, *this);
  results.push_back(BatchNormApplyOp::create(
      builder, getLoc(), adaptor.getInput(), adaptor.getScale(),
      adaptor.getBias(), getMean(), getInvStd(), /*relu=*/false));
  results.push_back(getMean());
  results.push_back(getInvStd());
}

/// A ReLU recomputed from an approximation of its input would take its
/// mask from it, flipping elements within a quantization step of zero
/// (docs/design.md, "Exactness"), where the method keeps masks exact. So
/// the forward pass keeps the 1-bit mask of its output (1/32 of float32):
/// the gradient reads the mask, and value readers `relu(x') * mask`, zero
/// wherever the forward's output was.
void ReluOp::buildApproximateRecompute(OpBuilder &saver, OpBuilder &builder,
                                       ValueRange operands,
                                       SmallVectorImpl<Value> &results,
                                       SmallVectorImpl<Value> &signResults) {
  auto mask =
      QuantizeOp::create(saver, getLoc(), getOutput(), /*bits=*/1, "mask");
  setPhase(mask, Phase::Forward);
  auto decode = [&] {
    return DequantizeOp::create(builder, getLoc(), mask.getCodes(),
                                mask.getParams());
  };
  Value relu = ReluOp::create(builder, getLoc(), operands.front());
  results.push_back(MulOp::create(builder, getLoc(), relu, decode()));
  // A decode of its own, which --blpa-recompute moves down to the gradient
  // (sinkToFirstUser): a float mask kept from the copy to there would cost
  // what the codes save.
  signResults.push_back(decode());
}
