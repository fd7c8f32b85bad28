//===- AssignActivationChoices.cpp - The user's pins per saved tensor -----===//
//
// blpa-opt's `--act-policy NODE=CHOICE` pins, recorded as `blpa.act_choice`
// on the forward ops whose saved results they concern. The passes that act
// on the choices (--blpa-recompute, --blpa-compress-activations) and the
// memory-budget solver read only the attribute, so a pin and a solver's
// decision are the same thing in the IR.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPAASSIGNACTIVATIONCHOICES
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

struct AssignActivationChoicesPass
    : public blpa::impl::BlpaAssignActivationChoicesBase<
          AssignActivationChoicesPass> {
  using BlpaAssignActivationChoicesBase::BlpaAssignActivationChoicesBase;

  void runOnOperation() override;

private:
  LogicalResult parsePins();
  std::optional<StringRef> chooseFor(Operation *producer);
  void collectPinnedNodes(Operation *op, SmallVectorImpl<StringRef> &nodes,
                          bool asReader);

  /// NODE -> CHOICE, "auto" included (it undoes `*` for NODE).
  llvm::StringMap<std::string> pins;
  llvm::StringSet<> pinsUsed;
};

} // namespace

LogicalResult AssignActivationChoicesPass::parsePins() {
  for (StringRef entry : policy) {
    auto [node, choice] = entry.rsplit('=');
    if (node.empty() || (choice != "auto" && !isActivationChoice(choice)))
      return getOperation().emitError("--act-policy '")
             << entry << "': expected NODE=float32|8|4|2|recompute|auto "
             << "(NODE an ONNX node name, or * for every node)";
    pins[node] = choice.str();
  }
  return success();
}

/// Appends the ONNX node of `op` (its NameLoc) when a pin names it; for a
/// reader (`asReader`), only a float32 pin.
void AssignActivationChoicesPass::collectPinnedNodes(
    Operation *op, SmallVectorImpl<StringRef> &nodes, bool asReader) {
  auto name = dyn_cast<NameLoc>(op->getLoc());
  if (!name)
    return;
  auto pin = pins.find(name.getName().getValue());
  if (pin == pins.end())
    return;
  // A reader's pin is still used (no typo), but only float32 reaches
  // back: `conv=recompute` recomputes the convolution's output, not the
  // input its gradient reads, which another block's op produced.
  pinsUsed.insert(pin->getKey());
  if (!asReader || pin->getValue() == "float32")
    nodes.push_back(pin->getKey());
}

/// The pinned choice for the saved results of `producer`: the most exact
/// named pin among its own node and, for float32, the nodes of its
/// backward readers (a gradient op carries the location of the node it
/// differentiates: "keep exact what NODE's gradient reads"), else `*`;
/// none for "auto" or no pin.
std::optional<StringRef>
AssignActivationChoicesPass::chooseFor(Operation *producer) {
  SmallVector<StringRef> nodes;
  collectPinnedNodes(producer, nodes, /*asReader=*/false);
  for (Value result : producer->getResults())
    for (Operation *reader : result.getUsers())
      if (isInPhase(reader, Phase::Backward))
        collectPinnedNodes(reader, nodes, /*asReader=*/true);
  std::optional<StringRef> best;
  for (StringRef node : nodes) {
    StringRef choice = pins.find(node)->getValue();
    if (!best || getExactnessRank(choice) > getExactnessRank(*best))
      best = choice;
  }
  if (!best) {
    auto all = pins.find("*");
    if (all == pins.end())
      return std::nullopt;
    best = all->getValue();
  }
  if (*best == "auto")
    return std::nullopt;
  return best;
}

void AssignActivationChoicesPass::runOnOperation() {
  ModuleOp module = getOperation();
  pins.clear();
  pinsUsed.clear();
  if (failed(parsePins()))
    return signalPassFailure();
  auto step = module.lookupSymbol<func::FuncOp>("train_step");
  if (!step) {
    module.emitError("no func.func @train_step to assign activation "
                     "choices in; run --blpa-autodiff first");
    return signalPassFailure();
  }
  for (Operation &op : step.getBody().front()) {
    if (!isInPhase(&op, Phase::Forward) || isa<ParamOp>(op) ||
        !hasBackwardReaders(&op))
      continue;
    if (std::optional<StringRef> choice = chooseFor(&op)) {
      op.setAttr(kActChoiceAttrName, StringAttr::get(&getContext(), *choice));
      ++numPinned;
    }
  }
  for (const auto &pin : pins)
    if (pin.getKey() != "*" && !pinsUsed.contains(pin.getKey())) {
      module.emitError("--act-policy names node '")
          << pin.getKey()
          << "', which neither saves an activation for the backward pass "
             "nor reads one in @train_step; pin a node listed in "
             "--print-memory's saved tensors";
      return signalPassFailure();
    }
}
