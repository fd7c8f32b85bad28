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
#include "mlir/IR/IRMapping.h"

using namespace mlir;
using namespace mlir::blpa;

/// Whether the owner of `use` can read decoded values: not when it needs
/// exact values or a window's argmax (ties among decoded values could move
/// it); those are left to other encodings.
static bool readsDecodedValues(OpOperand &use) {
  ActivationNeed need = getActivationNeed(use);
  return need == ActivationNeed::Values || need == ActivationNeed::Sign;
}

/// The uses among `uses` that can read decoded values.
static SmallVector<OpOperand *> decodableUses(ArrayRef<OpOperand *> uses) {
  SmallVector<OpOperand *> decodable;
  for (OpOperand *use : uses)
    if (readsDecodedValues(*use))
      decodable.push_back(use);
  return decodable;
}

/// The backward reads of `input` by the gradient ops of type GradOp that
/// `isOwnRead` says belong to the forward op encoding it (same statistics,
/// the operand that op's input is); those that must read the exact input
/// (the last layer's) are not among them.
template <typename GradOp>
static SmallVector<OpOperand *>
getGradientReads(Value input, const ActivationEncoding &encoding,
                 function_ref<bool(GradOp, OpOperand &)> isOwnRead) {
  SmallVector<OpOperand *> reads;
  for (OpOperand *use : encoding.getBackwardUses(input)) {
    auto grad = dyn_cast<GradOp>(use->getOwner());
    if (grad && isOwnRead(grad, *use))
      reads.push_back(use);
  }
  return reads;
}

/// The method (docs/design.md, "Activation compression"): the batch norm
/// writes the codes of its output, its gradient recovers x-hat from them,
/// and every backward reader of the output or of a ReLU of it reads a
/// decode; the batch norm's input and the ReLU's output are no longer kept.
bool BatchNormOp::encodeSavedActivations(const ActivationEncoding &encoding) {
  if (!isInPhase(*this, Phase::Forward))
    return false;
  // The gradient ops of this batch norm read its input and its mean.
  SmallVector<BatchNormGradOp> grads;
  for (OpOperand *use : getGradientReads<BatchNormGradOp>(
           getInput(), encoding, [&](BatchNormGradOp grad, OpOperand &use) {
             return grad.getMean() == getMean() &&
                    use.getOperandNumber() ==
                        grad.getInputMutable().getOperandNumber();
           }))
    grads.push_back(cast<BatchNormGradOp>(use->getOwner()));
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

namespace {
/// A value the backward pass reads (a saved tensor or a view of it) and
/// those of its backward uses an encoder redirects to decoded values.
struct BackwardReads {
  Value value;
  SmallVector<OpOperand *> uses;
};
} // namespace

/// The backward reads of `v` and of forward-phase reshapes of it, which the
/// backward pass reads as other shapes (the gradient of attention's
/// `P @ V` reads P as [B * heads, T, T]); `v` first. Fails when a use is
/// not `accepted`: the exact tensor must then be kept anyway.
static FailureOr<SmallVector<BackwardReads>>
readsThroughViews(Value v, const ActivationEncoding &encoding,
                  function_ref<bool(OpOperand &)> accepted) {
  SmallVector<BackwardReads> reads;
  SmallVector<Value> pending = {v};
  while (!pending.empty()) {
    Value value = pending.pop_back_val();
    SmallVector<OpOperand *> uses = encoding.getBackwardUses(value);
    if (!llvm::all_of(uses, [&](OpOperand *use) { return accepted(*use); }))
      return failure();
    if (!uses.empty())
      reads.push_back({value, std::move(uses)});
    for (Operation *user : value.getUsers())
      if (auto view = dyn_cast<ReshapeOp>(user))
        if (isInPhase(view, Phase::Forward))
          pending.push_back(view.getOutput());
  }
  return reads;
}

/// Points every read of `reads` at decoded values: `decode` builds those of
/// `root` right before the first of all the uses, and the uses of each view
/// of it read a reshape of them, built before the first of those uses.
static void decodeReads(ArrayRef<BackwardReads> reads, Value root,
                        function_ref<Value(OpBuilder &, Location)> decode) {
  SmallVector<OpOperand *> all;
  for (const BackwardReads &read : reads)
    all.append(read.uses.begin(), read.uses.end());
  Value decoded;
  decodeBeforeFirstUse(all, [&](OpBuilder &b, Location loc) {
    return decoded = decode(b, loc);
  });
  for (const BackwardReads &read : reads) {
    if (read.value.getType() == root.getType())
      continue;
    decodeBeforeFirstUse(read.uses, [&](OpBuilder &b, Location loc) {
      return ReshapeOp::create(b, loc, read.value.getType(), decoded);
    });
  }
}

/// The attention probabilities (docs/design.md, "Attention probabilities"):
/// log-domain codes of each row of the output along the last axis, which
/// the softmax gradient and every other backward reader, through views
/// too, read decoded. Other axes keep their float32 output.
bool SoftmaxOp::encodeSavedActivations(const ActivationEncoding &encoding) {
  int64_t rank = getShape(getOutput()).size();
  if (!isInPhase(*this, Phase::Forward) || int64_t(getAxis()) != rank - 1)
    return false;
  // The gradient of this softmax is made for the decoded probabilities;
  // other readers take them as any approximation of values.
  auto accepted = [&](OpOperand &use) {
    auto grad = dyn_cast<SoftmaxGradOp>(use.getOwner());
    if (grad && grad.getAxis() == getAxis() &&
        use.getOperandNumber() == grad.getOutputMutable().getOperandNumber())
      return true;
    return readsDecodedValues(use);
  };
  FailureOr<SmallVector<BackwardReads>> reads =
      readsThroughViews(getOutput(), encoding, accepted);
  if (failed(reads) || reads->empty())
    return false;
  // A reader kept exact (the last layer's, a float32 pin) keeps the float32
  // probabilities, which the others then read too: codes would only add.
  if (llvm::any_of(*reads, [](const BackwardReads &read) {
        return read.value.getDefiningOp()->hasAttr(kSavedPolicyAttrName);
      }))
    return false;

  OpBuilder b(getContext());
  b.setInsertionPointAfter(*this);
  auto encode =
      ProbabilityEncodeOp::create(b, getLoc(), getOutput(), encoding.bits);
  setPhase(encode, Phase::Forward);
  decodeReads(*reads, getOutput(), [&](OpBuilder &b, Location loc) {
    return ProbabilityDecodeOp::create(b, loc, encode.getCodes(),
                                       encode.getParams(),
                                       getShape(getOutput()));
  });
  return true;
}

/// The width of codes of `input` that an op of width `bits` keeps: the
/// more exact of its own and of the K-bit choice of `input`'s producer.
/// The codes stand for the producer's value (the memory report and the
/// budget solver name that node), so a pin or a solver's choice there must
/// count as much as one on the op that reads it.
static int64_t getInputCodeBits(Value input, int64_t bits) {
  Operation *producer = input.getDefiningOp();
  if (!producer)
    return bits;
  return std::max(bits, getActChoiceBits(producer).value_or(0));
}

/// One set of codes of `op`'s input serves its gradient's reads `gradUses`
/// and every backward reader of its output that takes approximate values
/// (through views too): those read a copy of `op` run on the decoded input,
/// rather than codes of the output of their own. The quantizer sees the
/// input as `codesShape` (its channel at dimension 1).
static void encodeInputForOutputReaders(Operation *op,
                                        ArrayRef<OpOperand *> gradUses,
                                        ArrayRef<int64_t> codesShape,
                                        const ActivationEncoding &encoding) {
  Value input = op->getOperand(0), output = op->getResult(0);
  int64_t bits = getInputCodeBits(input, encoding.bits);
  FailureOr<SmallVector<BackwardReads>> outputReads =
      readsThroughViews(output, encoding, readsDecodedValues);

  OpBuilder b(op->getContext());
  b.setInsertionPointAfter(op);
  Location loc = op->getLoc();
  auto inputType = cast<RankedTensorType>(input.getType());
  Value codesView = input;
  if (inputType.getShape() != codesShape) {
    codesView = ReshapeOp::create(
        b, loc, RankedTensorType::get(codesShape, b.getF32Type()), input);
    setPhase(codesView.getDefiningOp(), Phase::Forward);
  }
  auto quantize = QuantizeOp::create(
      b, loc, codesView, bits, isKnownNonNegative(input) ? "nonneg" : "affine");
  setPhase(quantize, Phase::Forward);

  // One decode of the input, before the first of all the reads: the
  // output's readers point at it too until decodeReads below gives them the
  // copy of `op` (built later, so it needs the decode placed first).
  SmallVector<OpOperand *> all(gradUses);
  if (succeeded(outputReads))
    for (const BackwardReads &read : *outputReads)
      all.append(read.uses.begin(), read.uses.end());
  Value decoded;
  decodeBeforeFirstUse(all, [&](OpBuilder &b, Location loc) {
    decoded = DequantizeOp::create(b, loc, quantize.getCodes(),
                                   quantize.getParams());
    if (decoded.getType() != inputType) {
      setPhase(decoded.getDefiningOp(), Phase::Backward);
      decoded = ReshapeOp::create(b, loc, inputType, decoded);
    }
    return decoded;
  });
  if (failed(outputReads) || outputReads->empty())
    return;
  decodeReads(*outputReads, output, [&](OpBuilder &b, Location) {
    IRMapping mapping;
    mapping.map(input, decoded);
    Operation *copy = b.clone(*op, mapping);
    copy->removeAttr(kActChoiceAttrName);
    return copy->getResult(0);
  });
}

/// The layer norm's gradient reads codes of each row (token) of its input,
/// which also give the output's backward readers (a linear layer's weight
/// gradient): per-row ranges of x are per-row ranges of the normalized
/// x-hat (x = mean + x-hat / inv_std per row), the scale the method takes
/// from batch norm's statistics. Without this the input and the output
/// were coded apart.
bool LayerNormOp::encodeSavedActivations(const ActivationEncoding &encoding) {
  if (!isInPhase(*this, Phase::Forward))
    return false;
  SmallVector<OpOperand *> gradUses = getGradientReads<LayerNormGradOp>(
      getInput(), encoding, [&](LayerNormGradOp grad, OpOperand &use) {
        return grad.getMean() == getMean() &&
               use.getOperandNumber() ==
                   grad.getInputMutable().getOperandNumber();
      });
  if (gradUses.empty())
    return false;
  auto [rows, cols] = getRowsAndCols();
  encodeInputForOutputReaders(*this, gradUses, {1, rows, cols}, encoding);
  return true;
}

bool mlir::blpa::encodeActivationInput(Operation *op, const Activation &act,
                                       const ActivationEncoding &encoding) {
  if (!isInPhase(op, Phase::Forward) || act.gradFromOutput)
    return false;
  // The gradient ops of this activation that read its input's values (the
  // piecewise kinds read region codes by now, made by encodeRegions).
  SmallVector<OpOperand *> gradUses = getGradientReads<ActivationGradOp>(
      op->getOperand(0), encoding, [&](ActivationGradOp grad, OpOperand &use) {
        return int64_t(grad.getKind()) == act.kind &&
               use.getOperandNumber() ==
                   grad.getSavedMutable().getOperandNumber();
      });
  if (gradUses.empty())
    return false;
  encodeInputForOutputReaders(op, gradUses, getShape(op->getOperand(0)),
                              encoding);
  return true;
}
