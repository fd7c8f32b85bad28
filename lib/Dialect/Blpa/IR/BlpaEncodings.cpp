//===- BlpaEncodings.cpp - Ops that encode their own saved activations ----===//
//
// SavedActivationOpInterface::encodeSavedActivations of the forward ops that
// know a better encoding of what their gradient reads than the generic
// per-channel quantizer: the method's batch-norm codes, and max pooling's
// argmax. --blpa-compress-activations calls them in block order.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mlir::blpa;

/// The uses among `uses` whose owner can read decoded values: not those that
/// need exact values or a window's argmax (ties among decoded values could
/// move it); those are left to other encodings.
static SmallVector<OpOperand *> decodableUses(ArrayRef<OpOperand *> uses) {
  SmallVector<OpOperand *> decodable;
  for (OpOperand *use : uses) {
    ActivationNeed need = getActivationNeed(*use);
    if (need == ActivationNeed::Values || need == ActivationNeed::Sign)
      decodable.push_back(use);
  }
  return decodable;
}

/// The method (docs/design.md, "Activation compression"): the batch norm
/// writes the codes of its output, its gradient recovers x-hat from them,
/// and every backward reader of the output or of a ReLU of it reads a
/// decode; the batch norm's input and the ReLU's output are no longer kept.
bool BatchNormOp::encodeSavedActivations(const ActivationEncoding &encoding) {
  if (!isInPhase(*this, Phase::Forward))
    return false;
  // The gradient ops of this batch norm read its input and its mean; those
  // that must read the exact input (the last layer's) are left as they are.
  SmallVector<BatchNormGradOp> grads;
  for (OpOperand *use : encoding.getBackwardUses(getInput())) {
    auto grad = dyn_cast<BatchNormGradOp>(use->getOwner());
    if (grad && grad.getMean() == getMean() &&
        use->getOperandNumber() == grad.getInputMutable().getOperandNumber())
      grads.push_back(grad);
  }
  if (grads.empty())
    return false;

  OpBuilder b(*this);
  auto encode = BatchNormEncodeOp::create(
      b, getLoc(), getInput(), getScale(), getBias(), getRunningMean(),
      getRunningVar(), getEpsilonAttr(), getMomentumAttr(),
      b.getI64IntegerAttr(encoding.bits));
  replaceKeepingPhase(*this, encode);
  Value codes = encode.getCodes(), scale = encode.getScale(),
        bias = encode.getBias();
  for (BatchNormGradOp grad : grads) {
    b.setInsertionPoint(grad);
    replaceKeepingPhase(grad, BatchNormGradDecodeOp::create(
                                  b, grad.getLoc(), grad.getGrad(), codes,
                                  scale, bias, encode.getInvStd()));
  }
  auto decodeFor = [&](Value v, bool relu) {
    decodeBeforeFirstUse(decodableUses(encoding.getBackwardUses(v)),
                         [&](OpBuilder &b, Location loc) {
                           return BatchNormDecodeOp::create(b, loc, codes,
                                                            scale, bias, relu);
                         });
  };
  decodeFor(encode.getOutput(), /*relu=*/false);
  for (Operation *user : encode.getOutput().getUsers())
    if (auto relu = dyn_cast<ReluOp>(user))
      if (isInPhase(relu, Phase::Forward))
        decodeFor(relu.getOutput(), /*relu=*/true);
  return true;
}

/// Records where each window's first maximum is: the gradient is routed
/// exactly without the input. Windows of more than 256 positions have no
/// code.
bool MaxPoolOp::encodeSavedActivations(const ActivationEncoding &encoding) {
  if (!isInPhase(*this, Phase::Forward) || !getArgmaxCodeBits(getKernelShape()))
    return false;
  // The gradients of this pooling: same input, same window.
  SmallVector<MaxPoolGradOp> grads;
  for (OpOperand *use : encoding.getBackwardUses(getInput())) {
    auto grad = dyn_cast<MaxPoolGradOp>(use->getOwner());
    if (grad &&
        use->getOperandNumber() == grad.getInputMutable().getOperandNumber() &&
        grad.getKernelShape() == getKernelShape() &&
        grad.getStrides() == getStrides() && grad.getPads() == getPads() &&
        grad.getCeilMode() == getCeilMode() &&
        grad.getDilations() == getDilations())
      grads.push_back(grad);
  }
  if (grads.empty())
    return false;

  OpBuilder b(*this);
  auto pool = MaxPoolArgmaxOp::create(b, getLoc(), getInput(), getKernelShape(),
                                      getStrides(), getPads(), getCeilMode(),
                                      getDilations());
  replaceKeepingPhase(*this, pool);
  for (MaxPoolGradOp grad : grads) {
    b.setInsertionPoint(grad);
    replaceKeepingPhase(grad,
                        MaxPoolGradArgmaxOp::create(
                            b, grad.getLoc(), grad.getGrad(), pool.getCodes(),
                            grad.getKernelShape(), grad.getStrides(),
                            grad.getPads(), grad.getCeilMode(),
                            grad.getDilations(), getShape(grad.getInput())));
  }
  return true;
}
