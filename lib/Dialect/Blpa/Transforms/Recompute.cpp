//===- Recompute.cpp - Recompute saved activations in the backward pass ---===//
//
// --blpa-recompute: a forward op whose activation choice is "recompute" keeps
// nothing for the backward pass; a copy of it (RecomputeOpInterface) runs in
// the backward phase right before the first op that reads its results, and
// every backward use reads the copy. Copies read the copies of recomputed
// producers (a segment) and any other forward value directly (a checkpoint,
// saved with its own choice).
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OperationSupport.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPARECOMPUTE
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

bool isMarkedForRecompute(Operation *op) {
  auto choice = op->getAttrOfType<StringAttr>(kActChoiceAttrName);
  return choice && choice.getValue() == "recompute";
}

/// The backward uses of any result of `op`, in block order of their owners.
SmallVector<OpOperand *> getBackwardUses(Operation *op) {
  SmallVector<OpOperand *> uses;
  for (OpOperand &use : op->getUses())
    if (isInPhase(use.getOwner(), Phase::Backward))
      uses.push_back(&use);
  llvm::stable_sort(uses, [](OpOperand *a, OpOperand *b) {
    return a->getOwner() != b->getOwner() &&
           a->getOwner()->isBeforeInBlock(b->getOwner());
  });
  return uses;
}

/// Collects the ops a recomputation builds.
struct InsertedOps : public OpBuilder::Listener {
  SmallVector<Operation *> ops;
  void notifyOperationInserted(Operation *op, OpBuilder::InsertPoint) override {
    ops.push_back(op);
  }
};

struct RecomputePass : public blpa::impl::BlpaRecomputeBase<RecomputePass> {
  using blpa::impl::BlpaRecomputeBase<RecomputePass>::BlpaRecomputeBase;

  void runOnOperation() override {
    auto step = getOperation().lookupSymbol<func::FuncOp>("train_step");
    if (!step)
      return;
    SmallVector<Operation *> marked;
    for (Operation &op : step.getBody().front())
      if (isMarkedForRecompute(&op))
        marked.push_back(&op);
    if (llvm::any_of(marked, [](Operation *op) { return failed(check(op)); }))
      return signalPassFailure();
    // Ids go on from those of an earlier run over the same step.
    nextId = 0;
    for (Operation &op : step.getBody().front())
      if (auto id = op.getAttrOfType<IntegerAttr>(kRecomputeIdAttrName))
        nextId = std::max(nextId, id.getInt() + 1);
    findApproximateCopies(marked);
    // Consumers first: a producer's backward uses then include its
    // consumers' copies, so its own copy goes before them and they read it.
    for (Operation *op : llvm::reverse(marked))
      recompute(op);
  }

  /// Whether forward value `v`, read by a copy but not recomputed, is a
  /// checkpoint the backward pass reads decoded from codes: its producer's
  /// width (blpa.act_choice, else `bits`) is not 0. Parameters and graph
  /// inputs are exact; so may be a value the compress pass keeps float32
  /// after all (then a mask is kept for nothing, never missed).
  bool isCodedCheckpoint(Value v) const {
    Operation *producer = v.getDefiningOp();
    if (!producer || isa<ParamOp>(producer))
      return false;
    return getActChoiceBits(producer).value_or(bits) != 0;
  }

  /// The marked ops whose copies compute from an approximation: reading a
  /// coded checkpoint, or the copy of such an op (in forward order).
  void findApproximateCopies(ArrayRef<Operation *> marked) {
    approximate.clear();
    llvm::SmallPtrSet<Operation *, 16> isMarked(marked.begin(), marked.end());
    for (Operation *op : marked)
      if (llvm::any_of(op->getOperands(), [&](Value v) {
            Operation *producer = v.getDefiningOp();
            return producer && isMarked.contains(producer)
                       ? approximate.contains(producer)
                       : isCodedCheckpoint(v);
          }))
        approximate.insert(op);
  }

  /// One line at the op when it cannot be recomputed.
  static LogicalResult check(Operation *op) {
    std::string node = getNodeName(op);
    if (!isInPhase(op, Phase::Forward))
      return op->emitError("node '")
             << node << "' (" << op->getName()
             << ") is not in the forward phase of @train_step: only forward "
                "ops can be recomputed; remove its blpa.act_choice";
    if (isa<RecomputeOpInterface>(op) ||
        (isa_and_nonnull<BlpaDialect>(op->getDialect()) &&
         isMemoryEffectFree(op)))
      return success();
    return op->emitError("node '")
           << node << "' (" << op->getName()
           << ") cannot be recomputed: running it again could change state "
              "or give other values; keep its saved results instead "
              "(--act-policy "
           << node << "=float32, or 8, 4, 2)";
  }

  void recompute(Operation *op) {
    SmallVector<OpOperand *> uses = getBackwardUses(op);
    bool copied = false;
    if (!copyPerReader && !uses.empty())
      copied = recomputeFor(op, uses);
    for (auto begin = uses.begin(); copyPerReader && begin != uses.end();) {
      auto end = std::find_if(begin, uses.end(), [&](OpOperand *use) {
        return use->getOwner() != (*begin)->getOwner();
      });
      copied |= recomputeFor(op, ArrayRef<OpOperand *>(begin, end));
      begin = end;
    }
    if (copied)
      ++numRecomputed;
  }

  /// Builds a recomputation of `op` for `uses` (in block order) and points
  /// them at it; the new ops end up right before the first use that reads
  /// a recomputed value (not one that reads a result kept as it is).
  /// Returns whether any use reads it (a pass over IR already recomputed
  /// finds only kept results still read: the copy is dropped).
  bool recomputeFor(Operation *op, ArrayRef<OpOperand *> uses) {
    OpBuilder builder(uses.front()->getOwner());
    InsertedOps inserted, saved;
    builder.setListener(&inserted);
    OpBuilder saver(op->getContext(), &saved);
    saver.setInsertionPointAfter(op);
    SmallVector<Value> replacements, signReplacements;
    auto recomputable = dyn_cast<RecomputeOpInterface>(op);
    if (recomputable && approximate.contains(op))
      recomputable.buildApproximateRecompute(saver, builder, op->getOperands(),
                                             replacements, signReplacements);
    else if (recomputable)
      recomputable.buildRecompute(builder, op->getOperands(), replacements);
    else
      recomputeByCopy(op, builder, op->getOperands(), replacements);
    if (signReplacements.empty())
      signReplacements = replacements;
    reuseSavedOps(saved.ops);

    Operation *firstReader = nullptr;
    for (OpOperand *use : uses) {
      unsigned result = cast<OpResult>(use->get()).getResultNumber();
      Value replacement = getActivationNeed(*use) == ActivationNeed::Sign
                              ? signReplacements[result]
                              : replacements[result];
      if (replacement == use->get())
        continue;
      use->set(replacement);
      if (!firstReader)
        firstReader = use->getOwner();
    }
    for (Operation *copy : inserted.ops) {
      setPhase(copy, Phase::Backward);
      copy->removeAttr(kActChoiceAttrName);
      copy->removeAttr(kRecomputeIdAttrName);
    }
    // Nothing recomputed is read here (only kept results, such as a batch
    // norm's statistics): the copy would be dead.
    if (!firstReader) {
      for (Operation *copy : llvm::reverse(inserted.ops))
        copy->erase();
      for (Operation *kept : llvm::reverse(saved.ops))
        if (kept->use_empty())
          kept->erase();
      return false;
    }
    // The report attributes each copy's time to the op it recomputes.
    auto id = op->getAttrOfType<IntegerAttr>(kRecomputeIdAttrName);
    if (!id) {
      id = IntegerAttr::get(IntegerType::get(op->getContext(), 64), nextId++);
      op->setAttr(kRecomputeIdAttrName, id);
    }
    auto recomputes = DenseI64ArrayAttr::get(op->getContext(), {id.getInt()});
    for (Operation *copy : inserted.ops) {
      copy->setAttr(kRecomputesAttrName, recomputes);
      copy->moveBefore(firstReader);
    }
    sinkToFirstUser(signReplacements, replacements);
    numCopies += inserted.ops.size();
    return true;
  }

  /// Moves each copy that only readers of signs read (a ReLU's decoded
  /// mask) down to its first reader: it is cheap to decode, and would
  /// otherwise live as a float tensor from the copy to the gradient.
  static void sinkToFirstUser(ArrayRef<Value> signReplacements,
                              ArrayRef<Value> replacements) {
    for (auto [sign, value] : llvm::zip(signReplacements, replacements)) {
      Operation *def = sign.getDefiningOp();
      if (sign == value || !def || !def->hasAttr(kRecomputesAttrName) ||
          sign.use_empty())
        continue;
      Operation *first = nullptr;
      for (Operation *user : sign.getUsers())
        if (!first || user->isBeforeInBlock(first))
          first = user;
      def->moveBefore(first);
    }
  }

  /// What a copy had the forward pass keep (`saved`) is kept once: with a
  /// copy per reader, a later copy's mask is the first's (an equivalent
  /// op reading the same value).
  static void reuseSavedOps(SmallVectorImpl<Operation *> &saved) {
    llvm::erase_if(saved, [](Operation *kept) {
      if (kept->getNumOperands() == 0)
        return false;
      for (Operation *other : kept->getOperand(0).getUsers()) {
        if (other == kept ||
            !OperationEquivalence::isEquivalentTo(
                other, kept, OperationEquivalence::IgnoreLocations))
          continue;
        kept->replaceAllUsesWith(other);
        kept->erase();
        return true;
      }
      return false;
    });
  }

  /// The blpa.recompute_id the next recomputed op gets.
  int64_t nextId = 0;
  /// The marked ops whose copies read approximations (findApproximateCopies).
  llvm::SmallPtrSet<Operation *, 16> approximate;
};

} // namespace
