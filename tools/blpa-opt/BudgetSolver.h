//===- BudgetSolver.h - Keep, codes or recompute under a byte budget -*- C++ -*-===//
//
// `--act-bits auto` under `--memory-limit`: for each ONNX node whose op
// saves tensors for the backward pass, choose float32, 8-, 4- or 2-bit codes
// or recompute, so that the planned total fits the limit at the least
// predicted step time. The search is independent of MLIR: it sees the
// model only through an evaluator that compiles a candidate (the pipeline
// from the choices to the memory plan) and returns the planner's own totals
// and the cost model's time, per node as well as in all. Whatever it
// returns was planned, so its promise is the planner's peak, not an
// estimate. docs/design.md ("The budget solver") describes the search.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_TOOLS_BLPA_OPT_BUDGETSOLVER_H
#define BLPA_TOOLS_BLPA_OPT_BUDGETSOLVER_H

#include "blpa/Dialect/Blpa/Transforms/MemoryPlan.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringSet.h"

#include <string>

namespace mlir {
namespace blpa {

/// A choice per decided node (absent: float32).
using NodeChoices = llvm::StringMap<std::string>;

/// The forward pass in blocks: per block, the nodes inside it, which can be
/// recomputed from the block's checkpoint (the output of the block before,
/// kept at whatever that node's choice is). The structured plans the search
/// starts from recompute every k-th block, as hand-written checkpointing
/// does.
using RecomputeBlocks = llvm::SmallVector<llvm::SmallVector<std::string>>;

/// What the evaluator reports of one candidate.
struct CandidateFigures {
  MemoryTotals totals;
  /// Predicted seconds of one training step.
  double seconds = 0;
  /// Predicted seconds of the ops of each node (a gradient, an encoder,
  /// a decoder or a recomputed copy counts for the node it carries).
  llvm::StringMap<double> secondsByNode;
  /// The nodes with an op whose time the cost model estimated rather than
  /// took from a profile (OpTime::measured).
  llvm::StringSet<> estimatedNodes;
  /// OpTime::spread summed over the ops of each node.
  llvm::StringMap<double> spreadByNode;
  /// Bytes kept for the backward pass of the saved tensors of each node.
  llvm::StringMap<int64_t> keptBytesByNode;
  /// The recomputed nodes whose copies read decoded codes, directly or
  /// through other copies: their values are approximations.
  llvm::StringSet<> approximateRecomputes;
  /// The arena's live bytes where the backward pass begins: every saved
  /// tensor and what else is live there.
  int64_t backwardStartBytes = 0;
};

/// Compiles the model with `choices` up to the memory plan; failure when
/// it cannot be compiled so.
using EvaluateCandidateFn =
    llvm::function_ref<FailureOr<CandidateFigures>(const NodeChoices &)>;

struct BudgetOptions {
  int64_t limit = 0;
  /// The narrowest codes allowed: 8, 4 or 2.
  int minBits = 4;
  /// Try recomputation before any tensor goes below 8 bits.
  bool preferExactness = false;
  bool allowRecompute = true;
  /// The cost model was calibrated by profiles: a node's choice may then
  /// be measured faster than float32, so the search goes on where the
  /// unconstrained plan fits.
  bool profiled = false;
  /// Plans the search may compile after its first ones (the time bound).
  int maxEvaluations = 64;
  /// Compile every combination of choices instead (for checking the search
  /// on small models); refused above maxExhaustivePlans.
  bool exhaustive = false;
  int64_t maxExhaustivePlans = 100000;
  /// Plans compiled right after the unconstrained one, whatever the
  /// search's phases would try: --batch-size max passes the plan it chose
  /// the batch by, so that the search finds a plan that fits.
  llvm::SmallVector<NodeChoices> seeds;
};

struct BudgetSolution {
  /// The nodes' choices (float32 ones omitted).
  NodeChoices choices;
  CandidateFigures figures;
  /// The predicted step time the search ranked it by: each node charged
  /// what its choice adds over float32, and credited what it saves only
  /// where profiles measured the ops of both.
  double chargedSeconds = 0;
  /// Its rank: the charged time in steps of 2% of the unconstrained step
  /// (1% with profiles) from it (negative below it), then the approximation
  /// (over the nodes: 0 for float32, 1, 2, 3 for 8, 4, 2 bits, and for a node
  /// recomputed from codes one more than the plan's narrowest codes, 0 from
  /// exact values), least first.
  int64_t timeStep = 0;
  int approximation = 0;
  /// With profiles (what preferUniformPlan weighed, for
  /// --print-budget-search): the least charged time of a fitting plan of
  /// the answer's precision group, the window above it, and each fitting
  /// uniform plan of that group's width and charged time.
  double fastestSeconds = 0;
  double windowSeconds = 0;
  llvm::SmallVector<std::pair<std::string, double>> uniformSeconds;
  /// The plan with every node float32 (the unconstrained one).
  CandidateFigures unconstrained;
  /// The smallest plan found when nothing fits.
  bool fits = false;
  int evaluations = 0;
};

/// The plan of least predicted time among those the search compiled whose
/// total fits `options.limit` (with profiles, the most exact uniform plan
/// within the tolerance of it where there is one); with `fits` false, the
/// smallest it found.
/// Failure when a plan the search needs cannot be compiled, or an
/// exhaustive search would compile more than its bound.
/// `nodes` are the nodes the solver decides (the user's pins excluded);
/// `blocks` group them for the structured plans.
FailureOr<BudgetSolution> solveBudget(llvm::ArrayRef<std::string> nodes,
                                      const RecomputeBlocks &blocks,
                                      EvaluateCandidateFn evaluate,
                                      const BudgetOptions &options);

/// How many plans there are of `numNodes` nodes, each float32 or one of the
/// choices `options` allows (what an exhaustive search compiles).
double countPlans(size_t numNodes, const BudgetOptions &options);

/// Every node at `width` (float32, 8, 4 or 2), the nodes inside every
/// `stride`-th block recomputed (none with stride 0).
NodeChoices getBlockPlan(llvm::ArrayRef<std::string> nodes,
                         const RecomputeBlocks &blocks, llvm::StringRef width,
                         size_t stride);

/// The plans likeliest to be the smallest: every node float32 or at one
/// width of codes allowed, and (where recomputation is allowed) the
/// narrowest codes with every k-th block recomputed, k = 1, 2, 4, ...
/// Which is smallest depends on the model and the batch: codes add their
/// scales and decoded copies, which on a small layer outweigh what they
/// save; recomputation saves activations, which grow with the batch, and
/// costs the recomputed values that live in the backward pass.
llvm::SmallVector<NodeChoices>
getSmallestPlanCandidates(llvm::ArrayRef<std::string> nodes,
                          const RecomputeBlocks &blocks,
                          const BudgetOptions &options);

/// The choices solveBudget tries, most exact first, for a floor of
/// `minBits`.
llvm::SmallVector<std::string> getCandidateChoices(int minBits,
                                                   bool allowRecompute);

} // namespace blpa
} // namespace mlir

#endif // BLPA_TOOLS_BLPA_OPT_BUDGETSOLVER_H
