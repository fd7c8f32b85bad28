//===- CandidatePlans.cpp - Compile the budget solver's candidates --------===//

#include "CandidatePlans.h"

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace mlir::blpa;

/// The forward ops of `step` a choice may be given: their results are read
/// by the backward pass and the user pinned none of them. A pin is on the
/// op from the front pipeline on, so it is told apart from a decision.
static SmallVector<Operation *> getDecidedOps(func::FuncOp step) {
  SmallVector<Operation *> ops;
  for (Operation &op : step.getBody().front()) {
    if (isInPhase(&op, Phase::Forward) && !isa<ParamOp>(op) &&
        !op.hasAttr(kActChoiceAttrName) && !getNodeName(&op).empty() &&
        hasBackwardReaders(&op))
      ops.push_back(&op);
  }
  return ops;
}

static func::FuncOp getStep(ModuleOp module) {
  return module.lookupSymbol<func::FuncOp>("train_step");
}

SmallVector<std::string> CandidatePlanner::getDecidedNodes() const {
  SmallVector<std::string> nodes;
  llvm::StringSet<> seen;
  for (Operation *op : getDecidedOps(getStep(front))) {
    std::string node = getNodeName(op);
    if (seen.insert(node).second)
      nodes.push_back(node);
  }
  return nodes;
}

void CandidatePlanner::applyChoices(ModuleOp module,
                                    const NodeChoices &choices) {
  for (Operation *op : getDecidedOps(getStep(module))) {
    auto it = choices.find(getNodeName(op));
    StringRef choice =
        it == choices.end() ? StringRef("float32") : StringRef(it->second);
    op->setAttr(kActChoiceAttrName, StringAttr::get(op->getContext(), choice));
  }
}

FailureOr<CandidateFigures>
CandidatePlanner::operator()(const NodeChoices &choices) {
  OwningOpRef<ModuleOp> module = front.clone();
  applyChoices(*module, choices);
  {
    // A candidate that cannot be compiled is the solver's business, not an
    // error for the user.
    ScopedDiagnosticHandler quiet(front.getContext(),
                                  [](Diagnostic &) { return success(); });
    PassManager pm(front.getContext());
    buildTail(pm);
    if (failed(pm.run(*module)))
      return failure();
  }
  CandidateFigures figures;
  figures.totals = getMemoryTotals(*module);
  func::FuncOp step = getStep(*module);
  for (Operation &op : step.getBody().front()) {
    double seconds = costs.seconds(&op);
    figures.seconds += seconds;
    figures.secondsByNode[getNodeName(&op)] += seconds;
  }
  MemoryPlan plan = analyzeBuffers(step);
  for (const SavedTensor &tensor : getSavedTensors(step, plan))
    figures.keptBytesByNode[getNodeName(tensor.source)] += tensor.bytes;
  return figures;
}
