//===- CompressActivations.cpp - Keep K-bit codes of saved activations ----===//
//
// The method of Chakrabarti & Moseley (docs/design.md, "Activation
// compression"): the forward pass stays exact, and every tensor the backward
// pass reads is kept in between only as compact codes. Three rewrites, in
// order, each leaving fewer saved tensors to the next:
//  1. batch norms whose gradient is taken keep the method's bn_relu codes;
//  2. max poolings whose gradient is taken keep their argmax;
//  3. every remaining saved tensor is quantized, masked or kept in float32.
// What a backward op needs of a saved operand, and whether a forward result
// is non-negative, comes from each op's SavedActivationOpInterface.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPACOMPRESSACTIVATIONS
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

/// What the user asked for the saved results of one ONNX node.
enum class Policy { Auto, Float32, Quantize };

bool inPhase(Operation *op, Phase phase) {
  return op->hasAttr(kPhaseAttrName) && getPhase(op) == phase;
}

/// Points `uses` at a value built right before the first of them (they are
/// all in one block): decoders run as late as possible.
template <typename BuildFn>
void redirectUses(ArrayRef<OpOperand *> uses, BuildFn &&build) {
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

ActivationNeed getNeed(OpOperand *use) {
  if (auto op = dyn_cast<SavedActivationOpInterface>(use->getOwner()))
    return op.getActivationNeed(use->getOperandNumber());
  return ActivationNeed::Values;
}

bool isKnownNonNegative(Value v) {
  auto op = v.getDefiningOp<SavedActivationOpInterface>();
  return op && op.isResultNonNegative(isKnownNonNegative);
}

/// Replaces every result of `from` with the matching result of `to` (the
/// first results correspond) and erases `from`, keeping its phase.
void replaceOp(Operation *from, Operation *to) {
  to->setAttr(kPhaseAttrName, from->getAttr(kPhaseAttrName));
  for (auto [oldResult, newResult] :
       llvm::zip(from->getResults(), to->getResults()))
    oldResult.replaceAllUsesWith(newResult);
  from->erase();
}

struct CompressActivationsPass
    : public blpa::impl::BlpaCompressActivationsBase<CompressActivationsPass> {
  using BlpaCompressActivationsBase::BlpaCompressActivationsBase;

  void runOnOperation() override;

private:
  LogicalResult parsePolicies();
  Policy getPolicy(Operation *op);
  SmallVector<OpOperand *> getBackwardUses(Value v);
  void encodeBatchNorms(func::FuncOp step);
  void encodeBatchNorm(BatchNormOp bn, ArrayRef<BatchNormGradOp> grads);
  void encodeMaxPools(func::FuncOp step);
  std::optional<StringRef> chooseScheme(Value v, ArrayRef<OpOperand *> uses);
  void compressRemaining(func::FuncOp step);
  void quantizeForward(func::FuncOp step);
  QuantizeOp buildQuantize(Operation *producer, Value v, StringRef scheme);

  llvm::StringMap<Policy> policies;
  llvm::StringSet<> policiesUsed;
};

} // namespace

LogicalResult CompressActivationsPass::parsePolicies() {
  for (StringRef entry : policy) {
    auto [node, value] = entry.rsplit('=');
    std::optional<Policy> parsed =
        llvm::StringSwitch<std::optional<Policy>>(value)
            .Case("auto", Policy::Auto)
            .Case("float32", Policy::Float32)
            .Case("quantize", Policy::Quantize)
            .Default(std::nullopt);
    if (node.empty() || !parsed)
      return getOperation().emitError("policy '")
             << entry << "' must be NODE=float32|quantize|auto";
    policies[node] = *parsed;
  }
  return success();
}

/// The policy of the ONNX node `op` comes from (gradient ops carry the
/// location of the forward node they differentiate).
Policy CompressActivationsPass::getPolicy(Operation *op) {
  auto name = dyn_cast<NameLoc>(op->getLoc());
  if (!name)
    return Policy::Auto;
  auto it = policies.find(name.getName().getValue());
  if (it == policies.end())
    return Policy::Auto;
  policiesUsed.insert(it->getKey());
  return it->getValue();
}

/// The uses of `v` by backward-phase ops that may read an approximation of
/// it: the gradients of nodes whose policy is float32 keep reading `v`.
SmallVector<OpOperand *> CompressActivationsPass::getBackwardUses(Value v) {
  SmallVector<OpOperand *> uses;
  bool keptExact = false;
  for (OpOperand &use : v.getUses()) {
    Operation *owner = use.getOwner();
    if (!inPhase(owner, Phase::Backward))
      continue;
    if (getPolicy(owner) == Policy::Float32)
      keptExact = true;
    else
      uses.push_back(&use);
  }
  Operation *producer = v.getDefiningOp();
  if (keptExact && producer) {
    ++numKeptFloat;
    producer->setAttr(kSavedPolicyAttrName,
                      StringAttr::get(producer->getContext(), "float32"));
  }
  return uses;
}

void CompressActivationsPass::encodeBatchNorms(func::FuncOp step) {
  SmallVector<std::pair<BatchNormOp, SmallVector<BatchNormGradOp>>> work;
  step.walk([&](BatchNormOp bn) {
    if (!inPhase(bn, Phase::Forward) || getPolicy(bn) != Policy::Auto)
      return;
    // (A float32 policy keeps this gradient exact; quantize leaves the
    // tensors to the generic quantizer.)
    // The gradient ops of this batch norm read its input and its mean.
    SmallVector<BatchNormGradOp> grads;
    for (Operation *user : bn.getMean().getUsers())
      if (auto grad = dyn_cast<BatchNormGradOp>(user))
        grads.push_back(grad);
    if (!grads.empty())
      work.push_back({bn, grads});
  });
  for (auto &[bn, grads] : work)
    encodeBatchNorm(bn, grads);
}

void CompressActivationsPass::encodeBatchNorm(BatchNormOp bn,
                                              ArrayRef<BatchNormGradOp> grads) {
  OpBuilder b(bn);
  auto encode = BatchNormEncodeOp::create(
      b, bn.getLoc(), bn.getInput(), bn.getScale(), bn.getBias(),
      bn.getRunningMean(), bn.getRunningVar(), bn.getEpsilonAttr(),
      bn.getMomentumAttr(), b.getI64IntegerAttr(bits));
  replaceOp(bn, encode);
  ++numBatchNormCodes;
  Value codes = encode.getCodes(), scale = encode.getScale(),
        bias = encode.getBias();
  for (BatchNormGradOp grad : grads) {
    b.setInsertionPoint(grad);
    replaceOp(grad, BatchNormGradDecodeOp::create(b, grad.getLoc(),
                                                  grad.getGrad(), codes, scale,
                                                  bias, encode.getInvStd()));
  }
  // Backward readers of the output, or of a ReLU of it, decode the codes;
  // a ReLU's zeros are recovered exactly.
  auto decodeFor = [&](Value v, bool relu) {
    redirectUses(getBackwardUses(v), [&](OpBuilder &b, Location loc) {
      return BatchNormDecodeOp::create(b, loc, codes, scale, bias, relu);
    });
  };
  decodeFor(encode.getOutput(), /*relu=*/false);
  for (Operation *user : encode.getOutput().getUsers())
    if (auto relu = dyn_cast<ReluOp>(user))
      if (inPhase(relu, Phase::Forward))
        decodeFor(relu.getOutput(), /*relu=*/true);
}

void CompressActivationsPass::encodeMaxPools(func::FuncOp step) {
  SmallVector<MaxPoolGradOp> grads;
  step.walk([&](MaxPoolGradOp grad) { grads.push_back(grad); });
  for (MaxPoolGradOp grad : grads) {
    if (!getArgmaxCodeBits(grad.getKernelShape()) ||
        getPolicy(grad) != Policy::Auto)
      continue;
    // The forward pooling this gradient belongs to: same input and window.
    MaxPoolArgmaxOp pool;
    for (Operation *user : grad.getInput().getUsers()) {
      auto candidate = dyn_cast<MaxPoolArgmaxOp>(user);
      if (auto plain = dyn_cast<MaxPoolOp>(user);
          plain && inPhase(plain, Phase::Forward)) {
        OpBuilder b(plain);
        candidate = MaxPoolArgmaxOp::create(
            b, plain.getLoc(), plain.getInput(), plain.getKernelShape(),
            plain.getStrides(), plain.getPads(), plain.getCeilMode());
        replaceOp(plain, candidate);
        ++numArgmaxCodes;
      }
      if (candidate && candidate.getKernelShape() == grad.getKernelShape() &&
          candidate.getStrides() == grad.getStrides() &&
          candidate.getPads() == grad.getPads() &&
          candidate.getCeilMode() == grad.getCeilMode()) {
        pool = candidate;
        break;
      }
    }
    if (!pool)
      continue;
    OpBuilder b(grad);
    replaceOp(grad, MaxPoolGradArgmaxOp::create(
                        b, grad.getLoc(), grad.getGrad(), pool.getCodes(),
                        grad.getKernelShape(), grad.getStrides(),
                        grad.getPads(), grad.getCeilMode(),
                        getShape(grad.getInput())));
  }
}

/// The quantize scheme for saved `v` read by `uses`, or none to keep it in
/// float32.
std::optional<StringRef>
CompressActivationsPass::chooseScheme(Value v, ArrayRef<OpOperand *> uses) {
  // Decoded values would move a window's maximum among near-ties.
  if (llvm::any_of(uses, [](OpOperand *use) {
        ActivationNeed need = getNeed(use);
        return need == ActivationNeed::WindowArgmax ||
               need == ActivationNeed::Exact;
      }))
    return std::nullopt;
  auto type = cast<ShapedType>(v.getType());
  bool forced = llvm::any_of(uses, [&](OpOperand *use) {
    return getPolicy(use->getOwner()) == Policy::Quantize;
  });
  if (!forced && type.getNumElements() < minElements)
    return std::nullopt;
  if (llvm::all_of(uses, [](OpOperand *use) {
        return getNeed(use) == ActivationNeed::Sign;
      }))
    return StringRef("mask");
  return StringRef(isKnownNonNegative(v) ? "nonneg" : "affine");
}

/// Builds the quantize op of `v` right after its producer, in the forward
/// phase.
QuantizeOp CompressActivationsPass::buildQuantize(Operation *producer, Value v,
                                                  StringRef scheme) {
  OpBuilder b(producer->getContext());
  b.setInsertionPointAfter(producer);
  auto quantize = QuantizeOp::create(b, producer->getLoc(), v,
                                     scheme == "mask" ? 1 : bits, scheme);
  setPhase(quantize, Phase::Forward);
  return quantize;
}

/// Backward uses of `quantize`'s input read its decoded codes instead.
static void decodeForBackward(QuantizeOp quantize,
                              ArrayRef<OpOperand *> uses) {
  redirectUses(uses, [&](OpBuilder &b, Location loc) {
    return DequantizeOp::create(b, loc, quantize.getCodes(),
                                quantize.getParams());
  });
}

void CompressActivationsPass::compressRemaining(func::FuncOp step) {
  SmallVector<Operation *> producers;
  for (Operation &op : step.getBody().front())
    if (inPhase(&op, Phase::Forward) && !isa<ParamOp, QuantizeOp>(op))
      producers.push_back(&op);
  for (Operation *op : producers) {
    bool keptFloat = false;
    for (Value v : op->getResults()) {
      SmallVector<OpOperand *> uses = getBackwardUses(v);
      if (uses.empty() || isa<PackedType>(v.getType()))
        continue;
      std::optional<StringRef> scheme = chooseScheme(v, uses);
      if (!scheme) {
        keptFloat = true;
        ++numKeptFloat;
        continue;
      }
      decodeForBackward(buildQuantize(op, v, *scheme), uses);
      ++(*scheme == "mask" ? numMasks : numQuantized);
    }
    // Per-channel statistics beside codes are not worth a mark.
    bool hasCodes = llvm::any_of(op->getResultTypes(), llvm::IsaPred<PackedType>);
    if (keptFloat && !hasCodes)
      op->setAttr(kSavedPolicyAttrName,
                  StringAttr::get(op->getContext(), "float32"));
  }
}

void CompressActivationsPass::quantizeForward(func::FuncOp step) {
  SmallVector<Operation *> producers;
  for (Operation &op : step.getBody().front())
    if (inPhase(&op, Phase::Forward) && !isa<ParamOp>(op))
      producers.push_back(&op);
  for (Operation *op : producers) {
    for (Value v : op->getResults()) {
      SmallVector<OpOperand *> uses = getBackwardUses(v);
      std::optional<StringRef> scheme;
      if (!uses.empty())
        scheme = chooseScheme(v, uses);
      if (!scheme)
        continue;
      // The naive baseline quantizes values, never only their sign.
      QuantizeOp quantize =
          buildQuantize(op, v, isKnownNonNegative(v) ? "nonneg" : "affine");
      // The forward pass goes on with the approximation...
      OpBuilder b(quantize->getBlock(), std::next(quantize->getIterator()));
      auto decoded = DequantizeOp::create(b, op->getLoc(), quantize.getCodes(),
                                          quantize.getParams());
      setPhase(decoded, Phase::Forward);
      v.replaceUsesWithIf(decoded, [&](OpOperand &use) {
        return inPhase(use.getOwner(), Phase::Forward) &&
               use.getOwner() != quantize;
      });
      // ...and the backward pass reads the same codes.
      decodeForBackward(quantize, uses);
      ++numQuantized;
    }
  }
}

void CompressActivationsPass::runOnOperation() {
  ModuleOp module = getOperation();
  if (!llvm::is_contained({2, 4, 8}, bits)) {
    module.emitError("bits must be 8, 4 or 2, got ") << bits.getValue();
    return signalPassFailure();
  }
  policies.clear();
  policiesUsed.clear();
  if (failed(parsePolicies()))
    return signalPassFailure();
  auto step = module.lookupSymbol<func::FuncOp>("train_step");
  if (!step) {
    module.emitError("no func.func @train_step to compress; run "
                     "--blpa-autodiff first");
    return signalPassFailure();
  }
  if (naive) {
    quantizeForward(step);
  } else {
    encodeBatchNorms(step);
    encodeMaxPools(step);
    compressRemaining(step);
  }
  // A policy naming no node is most likely a typo: say so.
  for (const auto &entry : policies)
    if (!policiesUsed.contains(entry.getKey())) {
      module.emitError("policy names node '")
          << entry.getKey() << "', which saves no activation in @train_step";
      return signalPassFailure();
    }
}
