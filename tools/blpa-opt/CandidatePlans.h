//===- CandidatePlans.h - Compile the budget solver's candidates -*- C++ -*-===//
//
// The budget solver's evaluator: a training module after the front of the
// pipeline (autodiff, evaluation mode, the user's pins), copied for each
// candidate, given the candidate's blpa.act_choice per node, and compiled
// through the rest of the pipeline to its checked memory plan. It reports
// the planner's totals and the cost model's step time, per node and in all.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_TOOLS_BLPA_OPT_CANDIDATEPLANS_H
#define BLPA_TOOLS_BLPA_OPT_CANDIDATEPLANS_H

#include "BudgetSolver.h"

#include "blpa/Dialect/Blpa/Transforms/CostModel.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"

namespace mlir {
namespace blpa {

class CandidatePlanner {
public:
  /// `buildTail` adds the passes from the choices to the checked plan.
  CandidatePlanner(ModuleOp front, const CostModel &costs,
                   llvm::function_ref<void(PassManager &)> buildTail);

  /// The nodes the solver decides: those of forward ops of @train_step
  /// whose results the backward pass reads and that no pin of the user's
  /// decides already, in block order.
  SmallVector<std::string> getDecidedNodes() const;

  /// The forward pass cut into blocks, each given by its decided nodes but
  /// the one of its checkpoint (see BudgetSolver.h, RecomputeBlocks). A
  /// block ends at an op whose results are the only values of the forward
  /// pass so far that later forward ops still read (a cut of the dataflow
  /// graph) and that several later ops read (a residual fan-out: in a chain
  /// every op is a cut, and the chain's ops would be blocks of one).
  RecomputeBlocks getBlocks() const;

  /// Compiles a copy of the front module with `choices` (float32 for the
  /// decided nodes it omits).
  FailureOr<CandidateFigures> operator()(const NodeChoices &choices);

  /// Gives the decided ops of `module` (the front module itself, for the
  /// final compile) their choices.
  static void applyChoices(ModuleOp module, const NodeChoices &choices);

private:
  ModuleOp front;
  /// The front module with every function but @train_step a declaration:
  /// the copy each candidate compiles.
  OwningOpRef<ModuleOp> stepOnly;
  const CostModel &costs;
  llvm::function_ref<void(PassManager &)> buildTail;
};

} // namespace blpa
} // namespace mlir

#endif // BLPA_TOOLS_BLPA_OPT_CANDIDATEPLANS_H
