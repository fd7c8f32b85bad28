//===- BudgetSolver.cpp - Keep, codes or recompute under a byte budget ----===//
//
// A greedy with improvement over real plans (docs/design.md, "The budget
// solver"): uniform plans measure, per node, the bytes each choice keeps and
// the time it adds; moves (a node to a choice) are ranked by bytes saved per
// second added; the shortest prefix of the ranking whose plan fits is found
// by bisection, then moves are undone one by one while the plan still fits.
// Every candidate is compiled, so the answer is the planner's own peak.
//
//===----------------------------------------------------------------------===//

#include "BudgetSolver.h"

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include <algorithm>
#include <limits>

using namespace mlir;
using namespace mlir::blpa;

SmallVector<std::string> mlir::blpa::getCandidateChoices(int minBits,
                                                         bool allowRecompute) {
  SmallVector<std::string> choices;
  if (allowRecompute)
    choices.push_back("recompute");
  for (int bits : {8, 4, 2})
    if (bits >= minBits)
      choices.push_back(std::to_string(bits));
  return choices;
}

/// 0 for recompute and 8 bits, which keep the gradient exact or nearly,
/// then one per halving of the width.
static int getPrecisionGroup(StringRef choice) {
  return choice == "4" ? 1 : choice == "2" ? 2 : 0;
}

/// The group of a plan's narrowest choice.
static int getPrecisionGroup(const NodeChoices &choices) {
  int group = 0;
  for (const auto &entry : choices)
    group = std::max(group, getPrecisionGroup(entry.second));
  return group;
}

namespace {

/// Moving one node from float32 to `choice`.
struct Move {
  std::string node, choice;
  int64_t savedBytes;
  double addedSeconds;
  /// getPrecisionGroup of the choice: with --prefer exactness all moves
  /// of a group come before any of the next.
  int precisionGroup;
};

class Search {
public:
  Search(ArrayRef<std::string> nodes, EvaluateCandidateFn evaluate,
         const BudgetOptions &options)
      : nodes(nodes), evaluate(evaluate), options(options) {}

  FailureOr<BudgetSolution> run();

private:
  FailureOr<CandidateFigures> compile(const NodeChoices &choices);
  void consider(const NodeChoices &choices, const CandidateFigures &figures);
  LogicalResult rankMoves();
  NodeChoices applyPrefix(size_t length) const;
  void bisectPrefix();
  void undoMoves();

  ArrayRef<std::string> nodes;
  EvaluateCandidateFn evaluate;
  const BudgetOptions &options;
  BudgetSolution best;
  int bestGroup = 0;
  /// The smallest plan seen, for the answer when nothing fits.
  bool hasSmallest = false;
  NodeChoices smallestChoices;
  CandidateFigures smallest;
  SmallVector<Move> moves;
  /// Of the best plan found by bisection: the prefix it applies.
  size_t fittingPrefix = 0;
};

} // namespace

FailureOr<CandidateFigures> Search::compile(const NodeChoices &choices) {
  ++best.evaluations;
  FailureOr<CandidateFigures> figures = evaluate(choices);
  if (succeeded(figures))
    consider(choices, *figures);
  return figures;
}

/// Keeps the fastest fitting candidate, and the smallest of all.
void Search::consider(const NodeChoices &choices,
                      const CandidateFigures &figures) {
  int64_t total = figures.totals.total();
  if (!hasSmallest || total < smallest.totals.total()) {
    hasSmallest = true;
    smallest = figures;
    smallestChoices = choices;
  }
  if (total > options.limit)
    return;
  // With --prefer exactness a plan is better first by its narrowest codes.
  int group = options.preferExactness ? getPrecisionGroup(choices) : 0;
  if (!best.fits || group < bestGroup ||
      (group == bestGroup && figures.seconds < best.figures.seconds)) {
    bestGroup = group;
    best.fits = true;
    best.figures = figures;
    best.choices = choices;
  }
}

/// Plans every node at each candidate choice, and ranks the moves by bytes
/// saved per second added (per precision group first with --prefer
/// exactness).
LogicalResult Search::rankMoves() {
  for (const std::string &choice :
       getCandidateChoices(options.minBits, options.allowRecompute)) {
    NodeChoices uniform;
    for (const std::string &node : nodes)
      uniform[node] = choice;
    FailureOr<CandidateFigures> figures = compile(uniform);
    if (failed(figures))
      return failure();
    int group = getPrecisionGroup(choice);
    for (const std::string &node : nodes) {
      int64_t saved = best.unconstrained.keptBytesByNode.lookup(node) -
                      figures->keptBytesByNode.lookup(node);
      double added = figures->secondsByNode.lookup(node) -
                     best.unconstrained.secondsByNode.lookup(node);
      if (saved > 0)
        moves.push_back({node, choice, saved, std::max(added, 1e-9), group});
    }
  }
  bool byPrecision = options.preferExactness;
  std::stable_sort(moves.begin(), moves.end(),
                   [&](const Move &a, const Move &b) {
                     if (byPrecision && a.precisionGroup != b.precisionGroup)
                       return a.precisionGroup < b.precisionGroup;
                     return a.savedBytes / a.addedSeconds >
                            b.savedBytes / b.addedSeconds;
                   });
  return success();
}

/// The choices after the first `length` moves: each node at the move of
/// the prefix that saves it the most bytes, so that a longer prefix never
/// keeps more of a node.
NodeChoices Search::applyPrefix(size_t length) const {
  NodeChoices choices;
  llvm::StringMap<int64_t> savedSoFar;
  for (const Move &move : ArrayRef(moves).take_front(length)) {
    int64_t &saved = savedSoFar[move.node];
    if (move.savedBytes > saved) {
      saved = move.savedBytes;
      choices[move.node] = move.choice;
    }
  }
  return choices;
}

/// The shortest prefix of the ranked moves whose plan fits: galloping
/// from the shortest, then bisection, as the kept bytes fall with the
/// prefix's length. Galloping rather than planning every move at once:
/// the estimates of recomputation are optimistic (a recomputed copy lives
/// in the backward pass), so the plan of all moves may be larger than one
/// of some.
void Search::bisectPrefix() {
  auto fits = [&](size_t length) {
    FailureOr<CandidateFigures> figures = compile(applyPrefix(length));
    return succeeded(figures) && figures->totals.total() <= options.limit;
  };
  size_t lo = 0, hi = 0;
  for (size_t length = 1;; length = std::min(2 * length, moves.size())) {
    if (best.evaluations >= options.maxEvaluations)
      return;
    if (fits(length)) {
      hi = length;
      break;
    }
    lo = length;
    if (length == moves.size())
      return;
  }
  while (hi - lo > 1 && best.evaluations < options.maxEvaluations) {
    size_t mid = lo + (hi - lo) / 2;
    (fits(mid) ? hi : lo) = mid;
  }
  fittingPrefix = hi;
}

/// Undoes the prefix's moves, least efficient first, where the plan still
/// fits without them and gets faster (the ranking is an estimate: a move
/// may not have been needed, or a cheaper one later may do).
void Search::undoMoves() {
  NodeChoices current = applyPrefix(fittingPrefix);
  for (size_t i = fittingPrefix; i-- > 0;) {
    if (best.evaluations >= options.maxEvaluations)
      return;
    const Move &move = moves[i];
    auto it = current.find(move.node);
    if (it == current.end() || it->second != move.choice)
      continue;
    NodeChoices trial = current;
    trial.erase(move.node);
    FailureOr<CandidateFigures> figures = compile(trial);
    if (succeeded(figures) && figures->totals.total() <= options.limit &&
        figures->seconds <= best.figures.seconds)
      current = std::move(trial);
  }
}

FailureOr<BudgetSolution> Search::run() {
  FailureOr<CandidateFigures> unconstrained = compile({});
  if (failed(unconstrained))
    return failure();
  best.unconstrained = *unconstrained;
  if (best.fits)
    return best;
  if (failed(rankMoves()))
    return failure();
  bisectPrefix();
  if (fittingPrefix != 0)
    undoMoves();
  if (!best.fits) {
    best.choices = smallestChoices;
    best.figures = smallest;
  }
  return best;
}

FailureOr<BudgetSolution>
mlir::blpa::solveBudget(ArrayRef<std::string> nodes,
                        EvaluateCandidateFn evaluate,
                        const BudgetOptions &options) {
  return Search(nodes, evaluate, options).run();
}
