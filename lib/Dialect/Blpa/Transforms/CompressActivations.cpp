//===- CompressActivations.cpp - Keep K-bit codes of saved activations ----===//
//
// The method of Chakrabarti & Moseley (docs/design.md, "Activation
// compression"): the forward pass stays exact, and every tensor the backward
// pass reads is kept in between only as compact codes. The rewrites, in
// order, each leaving fewer saved tensors to the next:
//  0. backward ops that need the exact piece of a piecewise activation
//     (ActivationNeed::Region) read region codes computed in the forward
//     pass instead (SavedActivationOpInterface::encodeRegion);
//  1. forward ops that know a better encoding of what their gradient reads
//     apply it themselves (SavedActivationOpInterface::
//     encodeSavedActivations: batch norms keep the method's bn_relu codes,
//     max poolings their argmax);
//  2. every remaining saved tensor is quantized, masked or kept in float32.
// How many bits each forward op's saved results get is its own choice
// (blpa.act_choice: float32, 8, 4, 2 or recompute), else the pass's `bits`;
// with bits=0 only ops with a choice are touched.
// What a backward op needs of a saved operand, and whether a forward result
// is non-negative, also comes from each op's SavedActivationOpInterface.
// Every step sees a saved value's uses through getBackwardUses, which keeps
// the last layer's input and the per-node float32 policies exact.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
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

/// The width at which the backward pass keeps a forward op's saved results:
/// its blpa.act_choice when it has one, else the pass's default; 0 keeps
/// them exact.
struct SavedWidth {
  int64_t bits = 0;
  /// Chosen for this op rather than by default: a bit width then codes
  /// tensors under min-elements too, and float32 (or recompute, for values
  /// the recompute pass left read) keeps every backward reader exact.
  bool pinned = false;

  bool keepsExact() const { return pinned && bits == 0; }
};

struct CompressActivationsPass
    : public blpa::impl::BlpaCompressActivationsBase<CompressActivationsPass> {
  using BlpaCompressActivationsBase::BlpaCompressActivationsBase;

  void runOnOperation() override;

private:
  LogicalResult parsePolicies();
  Policy getPolicy(Operation *op);
  SavedWidth getWidth(Operation *producer);
  SmallVector<OpOperand *> getBackwardUses(Value v);
  void encodeRegions(func::FuncOp step);
  void encodeByOps(func::FuncOp step);
  std::optional<StringRef> chooseScheme(Value v, ArrayRef<OpOperand *> uses,
                                        bool pinned);
  void compressRemaining(func::FuncOp step);
  void quantizeForward(func::FuncOp step);
  QuantizeOp buildQuantize(Operation *producer, Value v, StringRef scheme,
                           int64_t width);

  llvm::StringMap<Policy> policies;
  llvm::StringSet<> policiesUsed;
  /// getParamValues of @train_step before the generic quantizer runs.
  DenseSet<Value> paramValues;
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
    if (*parsed == Policy::Quantize && bits == 0)
      return getOperation().emitError("policy '")
             << entry << "' needs a width: give bits=8|4|2, or set "
             << kActChoiceAttrName << " on the producer";
    policies[node] = *parsed;
  }
  return success();
}

/// The width of `producer`'s saved results: its blpa.act_choice (float32
/// and recompute keep them exact; the dialect verified the value), else the
/// pass's default.
SavedWidth CompressActivationsPass::getWidth(Operation *producer) {
  if (std::optional<int64_t> width = getActChoiceBits(producer))
    return {*width, /*pinned=*/true};
  return {bits, /*pinned=*/false};
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

/// The forward ops of `step` whose results may be saved activations, as a
/// list taken before the rewrites insert encoders and decoders: not the
/// parameters (persistent) nor the encoders already there.
static SmallVector<Operation *> getForwardProducers(func::FuncOp step) {
  SmallVector<Operation *> producers;
  for (Operation &op : step.getBody().front())
    if (isInPhase(&op, Phase::Forward) && !isa<ParamOp>(op) &&
        !isCodesWriter(&op))
      producers.push_back(&op);
  return producers;
}

/// Whether `v` is the loss's gradient of the logits, or a view of it.
static bool isLogitsGradient(Value v) {
  Operation *def = v.getDefiningOp();
  if (auto reshape = dyn_cast_or_null<ReshapeOp>(def))
    return isLogitsGradient(reshape.getInput());
  return isa_and_nonnull<SoftmaxCrossEntropyGradOp>(def);
}

/// Whether `op` reads the loss's gradient of the logits: it differentiates
/// the last layer, whose input the method keeps exact, as the reference
/// does (it is small, and the classifier's weight gradient is made of it
/// alone).
static bool differentiatesLastLayer(Operation *op) {
  return llvm::any_of(op->getOperands(), isLogitsGradient);
}

/// The uses of `v` by backward-phase ops that may read an approximation of
/// it: none when its producer's choice is float32; the gradients of the
/// last layer and of nodes whose policy is float32 keep reading `v`. Every
/// encoder finds its uses here, so these rules hold whatever encodes `v`.
SmallVector<OpOperand *> CompressActivationsPass::getBackwardUses(Value v) {
  SmallVector<OpOperand *> uses;
  Operation *producer = v.getDefiningOp();
  bool keptExact = false;
  bool pinnedExact = producer && getWidth(producer).keepsExact();
  for (OpOperand &use : v.getUses()) {
    Operation *owner = use.getOwner();
    if (!isInPhase(owner, Phase::Backward))
      continue;
    if (pinnedExact || getPolicy(owner) == Policy::Float32 ||
        differentiatesLastLayer(owner))
      keptExact = true;
    else
      uses.push_back(&use);
  }
  if (keptExact && producer && !producer->hasAttr(kSavedPolicyAttrName)) {
    ++numKeptFloat;
    producer->setAttr(kSavedPolicyAttrName,
                      StringAttr::get(producer->getContext(), "float32"));
  }
  return uses;
}

/// Lets each backward op that needs the exact piece of a piecewise
/// activation in a saved value read region codes of it instead (a value
/// with a width: region codes are exact at any). It runs first, so that the
/// values such an op still reads are left to the encoders that follow like
/// any other saved value.
void CompressActivationsPass::encodeRegions(func::FuncOp step) {
  SmallVector<std::pair<SavedActivationOpInterface, unsigned>> readers;
  for (Operation *producer : getForwardProducers(step)) {
    if (getWidth(producer).bits == 0)
      continue;
    for (Value v : producer->getResults())
      for (OpOperand *use : getBackwardUses(v))
        if (getActivationNeed(*use) == ActivationNeed::Region)
          readers.emplace_back(
              cast<SavedActivationOpInterface>(use->getOwner()),
              use->getOperandNumber());
  }
  for (auto [reader, operandIndex] : readers)
    if (reader.encodeRegion(operandIndex))
      ++numRegions;
}

/// Lets each forward op that knows how to encode what its gradient reads
/// (SavedActivationOpInterface), in block order: a batch norm before the
/// max pooling of its ReLU, which then takes the pooling gradient over.
/// Each op encodes at its own width; one whose width is 0 (float32, or no
/// choice under bits=0) encodes nothing.
void CompressActivationsPass::encodeByOps(func::FuncOp step) {
  SmallVector<std::pair<SavedActivationOpInterface, int64_t>> ops;
  for (Operation &op : step.getBody().front())
    if (auto encoder = dyn_cast<SavedActivationOpInterface>(op))
      if (isInPhase(&op, Phase::Forward) && getPolicy(&op) == Policy::Auto)
        if (int64_t width = getWidth(&op).bits)
          ops.emplace_back(encoder, width);
  auto backwardUses = [&](Value v) { return getBackwardUses(v); };
  for (auto [op, width] : ops)
    if (op.encodeSavedActivations(ActivationEncoding{width, backwardUses}))
      ++numSelfEncoded;
}

/// The values of `step` computed from parameters alone (transposed
/// weights): weights, which the method keeps exact, rather than
/// activations. One sweep in op order, as asking per saved tensor would
/// walk back through the whole network from each.
static DenseSet<Value> getParamValues(func::FuncOp step) {
  DenseSet<Value> values;
  for (Operation &op : step.getBody().front()) {
    bool fromParams =
        isa<ParamOp>(op) ||
        (op.getNumOperands() != 0 &&
         llvm::all_of(op.getOperands(),
                      [&](Value operand) { return values.contains(operand); }));
    if (fromParams)
      values.insert(op.getResults().begin(), op.getResults().end());
  }
  return values;
}

/// Whether a backward op reads the values of `v`'s buffer exactly, through
/// `v`, its source or another view of that source (a softmax's output kept
/// for its gradient, read as [B * heads, T, T] by the gradient of
/// `probabilities @ V`): the float32 buffer is then saved anyway, and codes
/// of a view of it would only add memory.
static bool isReadExactlyElsewhere(Value v) {
  Value root = v;
  while (auto view = root.getDefiningOp<ViewLikeOpInterface>())
    root = view.getViewSource();
  SmallVector<Value> pending = {root};
  while (!pending.empty()) {
    Value value = pending.pop_back_val();
    for (OpOperand &use : value.getUses()) {
      Operation *owner = use.getOwner();
      if (auto view = dyn_cast<ViewLikeOpInterface>(owner);
          view && view.getViewSource() == value) {
        llvm::append_range(pending, owner->getResults());
        continue;
      }
      if (isInPhase(owner, Phase::Backward) &&
          getActivationNeed(use) == ActivationNeed::Exact)
        return true;
    }
  }
  return false;
}

/// The quantize scheme for saved `v` read by `uses`, or none to keep it in
/// float32. A `pinned` width (the producer's own choice) codes `v` however
/// small.
std::optional<StringRef>
CompressActivationsPass::chooseScheme(Value v, ArrayRef<OpOperand *> uses,
                                      bool pinned) {
  if (paramValues.contains(v))
    return std::nullopt;
  // Decoded values would move a window's maximum among near-ties, or an
  // element across an activation's threshold (a piece no op encoded; the
  // naive baseline decides pieces on decoded values on purpose).
  if (llvm::any_of(uses, [&](OpOperand *use) {
        ActivationNeed need = getActivationNeed(*use);
        return need == ActivationNeed::WindowArgmax ||
               need == ActivationNeed::Exact ||
               (need == ActivationNeed::Region && !naive);
      }) ||
      isReadExactlyElsewhere(v))
    return std::nullopt;
  auto type = cast<ShapedType>(v.getType());
  bool forced = pinned || llvm::any_of(uses, [&](OpOperand *use) {
                  return getPolicy(use->getOwner()) == Policy::Quantize;
                });
  if (!forced && type.getNumElements() < minElements)
    return std::nullopt;
  if (llvm::all_of(uses, [](OpOperand *use) {
        return getActivationNeed(*use) == ActivationNeed::Sign;
      }))
    return StringRef("mask");
  return StringRef(isKnownNonNegative(v) ? "nonneg" : "affine");
}

/// Builds the quantize op of `v` right after its producer, in the forward
/// phase: `width`-bit codes, or 1 bit for a mask.
QuantizeOp CompressActivationsPass::buildQuantize(Operation *producer, Value v,
                                                  StringRef scheme,
                                                  int64_t width) {
  OpBuilder b(producer->getContext());
  b.setInsertionPointAfter(producer);
  auto quantize = QuantizeOp::create(b, producer->getLoc(), v,
                                     scheme == "mask" ? 1 : width, scheme);
  setPhase(quantize, Phase::Forward);
  return quantize;
}

/// Backward uses of `quantize`'s input read its decoded codes instead.
static void decodeForBackward(QuantizeOp quantize, ArrayRef<OpOperand *> uses) {
  decodeBeforeFirstUse(uses, [&](OpBuilder &b, Location loc) {
    return DequantizeOp::create(b, loc, quantize.getCodes(),
                                quantize.getParams());
  });
}

/// The generic policy for every saved tensor left; a producer whose width
/// is 0 keeps its results as they are.
void CompressActivationsPass::compressRemaining(func::FuncOp step) {
  for (Operation *op : getForwardProducers(step)) {
    SavedWidth width = getWidth(op);
    bool keptFloat = false;
    for (Value v : op->getResults()) {
      SmallVector<OpOperand *> uses = getBackwardUses(v);
      if (uses.empty() || isa<PackedType>(v.getType()) || width.bits == 0)
        continue;
      std::optional<StringRef> scheme = chooseScheme(v, uses, width.pinned);
      if (!scheme) {
        keptFloat = true;
        ++numKeptFloat;
        continue;
      }
      decodeForBackward(buildQuantize(op, v, *scheme, width.bits), uses);
      ++(*scheme == "mask" ? numMasks : numQuantized);
    }
    // Per-channel statistics beside codes are not worth a mark.
    bool hasCodes =
        llvm::any_of(op->getResultTypes(), llvm::IsaPred<PackedType>);
    if (keptFloat && !hasCodes)
      op->setAttr(kSavedPolicyAttrName,
                  StringAttr::get(op->getContext(), "float32"));
  }
}

void CompressActivationsPass::quantizeForward(func::FuncOp step) {
  for (Operation *op : getForwardProducers(step)) {
    SavedWidth width = getWidth(op);
    if (width.bits == 0)
      continue;
    for (Value v : op->getResults()) {
      SmallVector<OpOperand *> uses = getBackwardUses(v);
      std::optional<StringRef> scheme;
      if (!uses.empty())
        scheme = chooseScheme(v, uses, width.pinned);
      if (!scheme)
        continue;
      // The naive baseline quantizes values, never only their sign.
      QuantizeOp quantize = buildQuantize(
          op, v, isKnownNonNegative(v) ? "nonneg" : "affine", width.bits);
      // The forward pass goes on with the approximation...
      OpBuilder b(quantize->getBlock(), std::next(quantize->getIterator()));
      auto decoded = DequantizeOp::create(b, op->getLoc(), quantize.getCodes(),
                                          quantize.getParams());
      setPhase(decoded, Phase::Forward);
      v.replaceUsesWithIf(decoded, [&](OpOperand &use) {
        return isInPhase(use.getOwner(), Phase::Forward) &&
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
  if (!llvm::is_contained({0, 2, 4, 8}, bits)) {
    module.emitError("bits must be 8, 4, 2 or 0 (only ops with a ")
        << kActChoiceAttrName << "), got " << bits.getValue();
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
    paramValues = getParamValues(step);
    quantizeForward(step);
  } else {
    encodeRegions(step);
    encodeByOps(step);
    paramValues = getParamValues(step);
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
