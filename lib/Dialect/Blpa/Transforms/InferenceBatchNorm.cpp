//===- InferenceBatchNorm.cpp - Evaluate with running statistics ----------===//

#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPAINFERENCEBATCHNORM
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

struct BatchNormToInference : public OpRewritePattern<BatchNormOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(BatchNormOp op,
                                PatternRewriter &rewriter) const override {
    if (!op.getMean().use_empty() || !op.getInvStd().use_empty())
      return rewriter.notifyMatchFailure(op, "batch statistics are used");
    Value y = BatchNormInferenceOp::create(
        rewriter, op.getLoc(), op.getInput(), op.getScale(), op.getBias(),
        op.getRunningMean(), op.getRunningVar(), op.getEpsilonAttr(),
        op.getMomentumAttr());
    rewriter.replaceAllUsesWith(op.getOutput(), y);
    rewriter.eraseOp(op);
    return success();
  }
};

/// model.eval(): dropout passes its input through.
struct DropoutToIdentity : public OpRewritePattern<DropoutOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(DropoutOp op,
                                PatternRewriter &rewriter) const override {
    rewriter.replaceOp(op, op.getInput());
    return success();
  }
};

struct InferenceBatchNormPass
    : public blpa::impl::BlpaInferenceBatchNormBase<InferenceBatchNormPass> {
  void runOnOperation() override {
    auto forward = getOperation().lookupSymbol<func::FuncOp>("forward");
    if (!forward)
      return;
    RewritePatternSet patterns(&getContext());
    patterns.add<BatchNormToInference, DropoutToIdentity>(&getContext());
    if (failed(applyPatternsGreedily(forward, std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
