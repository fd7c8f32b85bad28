//===- FuseBatchNormRelu.cpp - A batch norm's ReLU inside its kernels -----===//
//
// --blpa-fuse-batch-norm-relu: relu(batch_norm(x)) becomes batch_norm_relu,
// batch_norm_grad(relu_grad(dy, r), x) becomes batch_norm_relu_grad, and the
// backward readers of r read batch_norm_apply {relu}(x) instead of a kept r.
// With compressed activations, the ReLU gradient of a decoded output goes
// into batch_norm_grad_decode {relu}. A pair that --blpa-recompute copied
// into the backward pass (relu(batch_norm_apply(x))) is fused the same way.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPAFUSEBATCHNORMRELU
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

/// The ReLU of `phase` (forward by default) that is the only reader of
/// `output`, if any.
ReluOp getOnlyRelu(Value output, Phase phase = Phase::Forward) {
  if (!output.hasOneUse())
    return nullptr;
  auto relu = dyn_cast<ReluOp>(*output.getUsers().begin());
  return relu && isInPhase(relu, phase) ? relu : nullptr;
}

/// The backward uses of `v`.
SmallVector<OpOperand *> getBackwardUses(Value v) {
  SmallVector<OpOperand *> uses;
  for (OpOperand &use : v.getUses())
    if (isInPhase(use.getOwner(), Phase::Backward))
      uses.push_back(&use);
  return uses;
}

struct FuseBatchNormReluPass
    : public blpa::impl::BlpaFuseBatchNormReluBase<FuseBatchNormReluPass> {
  using blpa::impl::BlpaFuseBatchNormReluBase<
      FuseBatchNormReluPass>::BlpaFuseBatchNormReluBase;

  void runOnOperation() override {
    auto step = getOperation().lookupSymbol<func::FuncOp>("train_step");
    if (!step)
      return;
    SmallVector<BatchNormOp> batchNorms;
    step.walk([&](BatchNormOp bn) {
      if (isInPhase(bn, Phase::Forward) && getOnlyRelu(bn.getOutput()))
        batchNorms.push_back(bn);
    });
    for (BatchNormOp bn : batchNorms)
      fuse(bn, getOnlyRelu(bn.getOutput()));
    // Recomputed by --blpa-recompute: relu(batch_norm_apply(x)) in the
    // backward phase, read by a ReLU gradient and a weight gradient.
    // Collected first: fusing erases the ReLU after each apply.
    SmallVector<BatchNormApplyOp> applies;
    step.walk([&](BatchNormApplyOp apply) { applies.push_back(apply); });
    for (BatchNormApplyOp apply : applies)
      fuseRecomputedRelu(apply);
    step.walk([&](BatchNormGradOp grad) { fuseRecomputedGradient(grad); });
    step.walk([&](BatchNormGradDecodeOp grad) { fuseDecodedGradient(grad); });
    // Collected first: fusing erases the ReLU after each encode.
    SmallVector<BatchNormEncodeOp> encodes;
    step.walk([&](BatchNormEncodeOp encode) { encodes.push_back(encode); });
    for (BatchNormEncodeOp encode : encodes)
      fuseEncode(encode);
    renameRecomputes(step.getBody().front(), recomputeRenames);
  }

  /// The recompute ids of absorbed ReLUs and those of the ops that absorbed
  /// them (mergeRecomputeId).
  DenseMap<int64_t, int64_t> recomputeRenames;

  /// `op`, which now does `relu`'s work too, keeps what was asked of the
  /// ReLU: the more exact activation choice of the two (what the report's
  /// saved tensors and the solver's bytes per node read), its recompute id
  /// and, for a copy, the ops it recomputes.
  void takeOver(Operation *op, ReluOp relu) {
    mergeActivationChoice(op, relu);
    mergeRecomputeId(op, relu, recomputeRenames);
    mergeRecomputes(op, relu);
  }

  /// With compressed activations: the forward ReLU that is the only reader
  /// of a batch_norm_encode's output runs in its kernel (the codes are the
  /// batch norm's either way).
  void fuseEncode(BatchNormEncodeOp encode) {
    ReluOp relu = getOnlyRelu(encode.getOutput());
    if (encode.getRelu() || !relu)
      return;
    absorbRelu(encode, relu);
  }

  /// `op` (with a `relu` attribute) applies `relu`, the only reader of its
  /// output, itself.
  template <typename OpTy> void absorbRelu(OpTy op, ReluOp relu) {
    op.setRelu(true);
    takeOver(op, relu);
    relu.getOutput().replaceAllUsesWith(op.getOutput());
    relu.erase();
    ++numFused;
  }

  /// With compressed activations: batch_norm_grad_decode(relu_grad(dy,
  /// batch_norm_decode {relu}(codes)), codes) masks dy itself, from the
  /// same codes. The decode stays only for its other readers.
  void fuseDecodedGradient(BatchNormGradDecodeOp grad) {
    auto reluGrad = grad.getGrad().getDefiningOp<ReluGradOp>();
    if (grad.getRelu() || !reluGrad || !reluGrad.getInputGrad().hasOneUse())
      return;
    auto decode = reluGrad.getOutput().getDefiningOp<BatchNormDecodeOp>();
    if (!decode || !decode.getRelu() || decode.getCodes() != grad.getCodes() ||
        decode.getScale() != grad.getScale() ||
        decode.getBias() != grad.getBias())
      return;
    grad.getGradMutable().assign(reluGrad.getGrad());
    grad.setRelu(true);
    reluGrad.erase();
    if (decode->use_empty())
      decode.erase();
    ++numGradsFused;
  }

  void fuse(BatchNormOp bn, ReluOp relu) {
    OpBuilder b(bn);
    auto fused = BatchNormReluOp::create(
        b, bn.getLoc(), bn.getInput(), bn.getScale(), bn.getBias(),
        bn.getRunningMean(), bn.getRunningVar(), bn.getEpsilonAttr(),
        bn.getMomentumAttr());
    if (Attribute saved = bn->getAttr(kSavedPolicyAttrName))
      fused->setAttr(kSavedPolicyAttrName, saved);
    replaceKeepingPhase(bn, fused);
    takeOver(fused, relu);
    relu.getOutput().replaceAllUsesWith(fused.getOutput());
    relu.erase();
    ++numFused;

    // The gradients of this batch norm read its mean (as in
    // BlpaEncodings.cpp).
    SmallVector<BatchNormGradOp> grads;
    for (Operation *user : fused.getMean().getUsers())
      if (auto grad = dyn_cast<BatchNormGradOp>(user))
        grads.push_back(grad);
    bool inputKept = false;
    for (BatchNormGradOp grad : grads)
      inputKept |= fuseGradient(grad, fused.getOutput(), fused.getInput(),
                                fused.getBias());
    if (recompute && inputKept)
      recomputeForBackward(fused);
  }

  /// A backward ReLU that is the only reader of a batch_norm_apply (a
  /// recomputed BN-ReLU pair) runs in the apply's kernel.
  void fuseRecomputedRelu(BatchNormApplyOp apply) {
    ReluOp relu = getOnlyRelu(apply.getOutput(), Phase::Backward);
    if (apply.getRelu() || !relu)
      return;
    absorbRelu(apply, relu);
  }

  /// batch_norm_grad(relu_grad(dy, batch_norm_apply {relu}(x, ...)), x, ...)
  /// of the same statistics becomes batch_norm_relu_grad, which recomputes
  /// the mask from x itself.
  void fuseRecomputedGradient(BatchNormGradOp grad) {
    auto reluGrad = grad.getGrad().getDefiningOp<ReluGradOp>();
    auto apply = reluGrad
                     ? reluGrad.getOutput().getDefiningOp<BatchNormApplyOp>()
                     : nullptr;
    if (!apply || !apply.getRelu() || apply.getScale() != grad.getScale() ||
        apply.getMean() != grad.getMean() ||
        apply.getInvStd() != grad.getInvStd())
      return;
    if (fuseGradient(grad, apply.getOutput(), apply.getInput(),
                     apply.getBias()) &&
        apply->use_empty())
      apply.erase();
  }

  /// batch_norm_grad(relu_grad(dy, `reluOutput`), `input`, ...) becomes
  /// batch_norm_relu_grad(dy, input, ..., `bias`). Returns whether it did,
  /// and so keeps the batch norm's input for the backward pass.
  bool fuseGradient(BatchNormGradOp grad, Value reluOutput, Value input,
                    Value bias) {
    auto reluGrad = grad.getGrad().getDefiningOp<ReluGradOp>();
    if (!reluGrad || reluGrad.getOutput() != reluOutput ||
        !reluGrad.getInputGrad().hasOneUse() || grad.getInput() != input)
      return false;
    OpBuilder b(grad);
    auto fusedGrad = BatchNormReluGradOp::create(
        b, grad.getLoc(), reluGrad.getGrad(), grad.getInput(), grad.getScale(),
        bias, grad.getMean(), grad.getInvStd());
    replaceKeepingPhase(grad, fusedGrad);
    reluGrad.erase();
    ++numGradsFused;
    return true;
  }

  /// Points the backward readers of the fused output at a recomputation
  /// from the batch norm's input right before the first of them.
  void recomputeForBackward(BatchNormReluOp fused) {
    SmallVector<OpOperand *> uses = getBackwardUses(fused.getOutput());
    if (uses.empty())
      return;
    decodeBeforeFirstUse(uses, [&](OpBuilder &b, Location loc) {
      auto apply = BatchNormApplyOp::create(
          b, loc, fused.getInput(), fused.getScale(), fused.getBias(),
          fused.getMean(), fused.getInvStd(), /*relu=*/true);
      // A recomputation, though not one a choice asked for.
      apply->setAttr(kRecomputesAttrName,
                     b.getDenseI64ArrayAttr(ArrayRef<int64_t>{}));
      return apply;
    });
    ++numRecomputed;
  }
};

} // namespace
