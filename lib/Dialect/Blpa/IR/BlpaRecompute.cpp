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
