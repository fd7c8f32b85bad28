//===- ScheduleUpdates.cpp - Optimizer updates as early as they can run ---===//
//
// --blpa-schedule-updates: autodiff appends every parameter update after the
// whole backward pass, so every weight gradient lives from the op that
// computes it to the end of the step. Each update (an op of the update
// phase, which writes the parameters among its operands in place) moves to
// right after the last op it must follow: the producers of its operands and
// every other reader of a parameter it writes. A gradient then dies as soon
// as its update has consumed it, and every read of a parameter still sees
// the value from before the step, so the step computes exactly the same.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPASCHEDULEUPDATES
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

struct ScheduleUpdatesPass
    : public blpa::impl::BlpaScheduleUpdatesBase<ScheduleUpdatesPass> {
  void runOnOperation() override {
    auto step = getOperation().lookupSymbol<func::FuncOp>("train_step");
    if (!step)
      return;
    // Every read of each parameter, by name: a parameter may be read
    // through more than one blpa.param op.
    llvm::StringMap<SmallVector<Operation *>> readers;
    step.walk([&](ParamOp param) {
      for (Operation *user : param->getUsers())
        readers[param.getName()].push_back(user);
    });
    // Positions are taken once, before anything moves: anchors are never
    // updates themselves (an update reads only what it writes and its
    // gradients), and Operation::isBeforeInBlock would renumber the block
    // after every move.
    SmallVector<Operation *> updates;
    for (auto [i, op] : llvm::enumerate(step.getBody().front())) {
      position[&op] = i;
      if (op.getNumResults() == 0 && op.hasAttr(kPhaseAttrName) &&
          getPhase(&op) == Phase::Update)
        updates.push_back(&op);
    }
    // Updates that follow the same op keep their order.
    DenseMap<Operation *, Operation *> lastPlacedAfter;
    for (Operation *update : updates) {
      Operation *anchor = getLatestPredecessor(update, readers);
      if (!anchor)
        continue;
      Operation *&last = lastPlacedAfter[anchor];
      Operation *after = last ? last : anchor;
      last = update;
      if (after == update->getPrevNode() || after == update)
        continue;
      update->moveAfter(after);
      ++numMoved;
    }
  }

  /// The later of `a` and `b` in the block's original order (either may be
  /// null).
  Operation *later(Operation *a, Operation *b) const {
    if (!a || !b)
      return a ? a : b;
    return position.lookup(a) < position.lookup(b) ? b : a;
  }

  /// The last op `update` must follow.
  Operation *getLatestPredecessor(
      Operation *update,
      const llvm::StringMap<SmallVector<Operation *>> &readers) {
    Operation *anchor = nullptr;
    for (Value operand : update->getOperands()) {
      anchor = later(anchor, operand.getDefiningOp());
      auto param = operand.getDefiningOp<ParamOp>();
      if (!param)
        continue;
      for (Operation *reader : readers.lookup(param.getName()))
        if (reader != update)
          anchor = later(anchor, reader);
    }
    return anchor;
  }

  DenseMap<Operation *, int64_t> position;
};

} // namespace
