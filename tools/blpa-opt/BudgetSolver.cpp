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

#include "llvm/ADT/StringSet.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <tuple>

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

/// float32, then the candidate choices: a node's choice as a digit of the
/// exhaustive and ranked searches; without recompute, the widths of the
/// uniform and structured plans.
static SmallVector<std::string> getAllChoices(int minBits,
                                              bool allowRecompute) {
  SmallVector<std::string> choices{"float32"};
  llvm::append_range(choices, getCandidateChoices(minBits, allowRecompute));
  return choices;
}

/// All the choices `options` allows, float32 first.
static SmallVector<std::string> getAllChoices(const BudgetOptions &options) {
  return getAllChoices(options.minBits, options.allowRecompute);
}

/// 0 for recompute and 8 bits, which keep the gradient exact or nearly,
/// then one per halving of the width.
static int getPrecisionGroup(StringRef choice) {
  return choice == "4" ? 1 : choice == "2" ? 2 : 0;
}

/// How far a choice is from the exact tensor: 0 for float32 and recompute,
/// then 1, 2, 3 for 8, 4 and 2 bits.
static int getApproximation(StringRef choice) {
  return choice == "8" ? 1 : choice == "4" ? 2 : choice == "2" ? 3 : 0;
}

/// Charged times are compared in steps of this fraction of the
/// unconstrained step, and within a step the more exact plan wins: the
/// analytical cost model does not predict finer than this (docs/design.md,
/// "Cost model"), and a user would not trade exactness for a smaller gain.
constexpr double kTimeTolerance = 0.02;
/// The step with the model calibrated by profiles, which predict finer:
/// ResNet-164's uniform plans within 1.3% of their profiles' mean steps on
/// the Intel Xeon. With 2% there, the most exact plan of the fastest step
/// measured 1.02-1.06x uniform 4 bits' step.
constexpr double kProfiledTimeTolerance = 0.01;

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

/// What ranks the plans that fit.
struct Score {
  /// With --prefer exactness, the group of the narrowest codes; else 0.
  int precisionGroup = 0;
  /// Predicted step time, each node charged what its choice adds
  /// (getAddedSeconds).
  double seconds = 0;
  /// Sum of getApproximation over the nodes.
  int approximation = 0;
};

class Search {
public:
  Search(ArrayRef<std::string> nodes, const RecomputeBlocks &blocks,
         EvaluateCandidateFn evaluate, const BudgetOptions &options)
      : nodes(nodes), blocks(blocks), evaluate(evaluate), options(options) {}

  FailureOr<BudgetSolution> run();

private:
  FailureOr<CandidateFigures> compile(const NodeChoices &choices);
  Score score(const NodeChoices &choices,
              const CandidateFigures &figures) const;
  Score predictScore(const NodeChoices &choices) const;
  double getAddedSeconds(const CandidateFigures &figures, StringRef node) const;
  bool isBetter(const Score &a, const Score &b) const;
  int64_t getTimeStep(double seconds) const;
  double getTimeTolerance() const {
    return options.profiled ? kProfiledTimeTolerance : kTimeTolerance;
  }
  void consider(const NodeChoices &choices, const CandidateFigures &figures);
  void setBest(const NodeChoices &choices, const CandidateFigures &figures,
               const Score &score);
  void preferUniformPlan();
  LogicalResult rankMoves();
  void tryFastestPlan();
  void tryBlockPlans();
  void trySmallestPlans();
  NodeChoices applyPrefix(size_t length) const;
  void bisectPrefix();
  size_t findFirst(size_t n, llvm::function_ref<bool(size_t)> holds,
                   llvm::function_ref<bool(size_t)> stopGallop);
  void undoMoves();
  LogicalResult searchAll();
  LogicalResult searchRanked();
  BudgetSolution finish();
  SmallVector<SmallVector<std::string>> getImprovementUnits() const;
  NodeChoices raiseUnits(const NodeChoices &base,
                         ArrayRef<SmallVector<std::string>> units) const;
  int64_t getRaiseBytes(const NodeChoices &base,
                        const SmallVector<std::string> &unit) const;
  int64_t getKeptBytes(const NodeChoices &choices,
                       const std::string &node) const;
  bool cannotFit(const NodeChoices &from, const CandidateFigures &figures,
                 const NodeChoices &choices) const;
  void raiseCheapestUnits();
  bool recomputeCoded();
  void improveBest();

  ArrayRef<std::string> nodes;
  /// Each plan compiled, by its choices (see getKey).
  std::map<std::string, FailureOr<CandidateFigures>> compiled;
  /// Per candidate choice and node: the seconds that choice adds to the
  /// node's ops in the uniform plan (getAddedSeconds).
  llvm::StringMap<llvm::StringMap<double>> addedSeconds;
  /// Per candidate choice and node: the bytes the node keeps in the uniform
  /// plan of that choice (float32's are the unconstrained plan's).
  llvm::StringMap<llvm::StringMap<int64_t>> keptBytes;
  const RecomputeBlocks &blocks;
  EvaluateCandidateFn evaluate;
  const BudgetOptions &options;
  BudgetSolution best;
  Score bestScore;
  /// Per precision group: the least charged time of a fitting plan.
  double fastestByGroup[3] = {HUGE_VAL, HUGE_VAL, HUGE_VAL};
  /// The smallest plan seen, for the answer when nothing fits.
  bool hasSmallest = false;
  NodeChoices smallestChoices;
  CandidateFigures smallest;
  SmallVector<Move> moves;
  /// Of the best plan found by bisection: the prefix it applies.
  size_t fittingPrefix = 0;
};

} // namespace

/// "choice;choice;..." in the order of the nodes.
static std::string getKey(ArrayRef<std::string> nodes,
                          const NodeChoices &choices) {
  std::string key;
  for (const std::string &node : nodes) {
    auto it = choices.find(node);
    key += it == choices.end() ? "float32" : it->second;
    key += ';';
  }
  return key;
}

/// Compiles each plan once: the phases meet some plans again (a block plan
/// equal to a uniform one, a hill-climbing step back).
FailureOr<CandidateFigures> Search::compile(const NodeChoices &choices) {
  auto [it, inserted] = compiled.try_emplace(getKey(nodes, choices),
                                             failure());
  if (!inserted)
    return it->second;
  ++best.evaluations;
  it->second = evaluate(choices);
  if (succeeded(it->second))
    consider(choices, *it->second);
  return it->second;
}

static int getApproximation(const NodeChoices &choices,
                            const llvm::StringSet<> &approximateRecomputes);

Score Search::score(const NodeChoices &choices,
                    const CandidateFigures &figures) const {
  Score result;
  if (options.preferExactness)
    for (const auto &entry : choices)
      result.precisionGroup = std::max(result.precisionGroup,
                                       getPrecisionGroup(entry.second));
  result.seconds = best.unconstrained.seconds;
  for (const auto &entry : figures.secondsByNode)
    result.seconds += getAddedSeconds(figures, entry.first());
  result.approximation =
      getApproximation(choices, figures.approximateRecomputes);
  return result;
}

/// What `node`'s ops in the plan of `figures` add to its ops in the
/// unconstrained plan. A saving counts only where profiles measured both
/// (on an Intel Xeon the method's batch-norm kernels ran faster than
/// float32's, on an AMD EPYC slower), and only by what exceeds the
/// measurements' noise (OpTime::spread of the node's ops in both plans: on
/// torchvision resnet50 the uniform plans' steps were within 2% of each
/// other, and savings of noise had put 11 nodes at 4 bits); else it is 0:
/// keeping a tensor float32 does the least work, so an estimated saving is the
/// model's error, and compressing for it would cost accuracy for nothing.
double Search::getAddedSeconds(const CandidateFigures &figures,
                               StringRef node) const {
  const CandidateFigures &exact = best.unconstrained;
  double added =
      figures.secondsByNode.lookup(node) - exact.secondsByNode.lookup(node);
  if (added >= 0)
    return added;
  if (figures.estimatedNodes.contains(node) ||
      exact.estimatedNodes.contains(node))
    return 0;
  return std::min(0.0, added + figures.spreadByNode.lookup(node) +
                           exact.spreadByNode.lookup(node));
}

/// Sum of getApproximation over a plan's nodes, where a node recomputed
/// from coded checkpoints (`approximateRecomputes`) counts as the plan's
/// narrowest codes: with the forward's ReLU masks replayed, its copies are
/// about as exact as codes of that width (pre-activation ResNet-164, batch
/// 32, every block recomputed from its checkpoint's codes: 1 - cos 1.1e-4
/// at 8 bits against 1.3e-3 for the codes alone, 1.6e-2 at 4 bits against
/// 6.7e-3; docs/design.md, "Exactness"). A node recomputed from exact
/// values is exact.
static int getApproximation(const NodeChoices &choices,
                            const llvm::StringSet<> &approximateRecomputes) {
  int narrowest = 0, recomputed = 0, sum = 0;
  for (const auto &entry : choices) {
    if (entry.second == "recompute") {
      recomputed += approximateRecomputes.contains(entry.first());
      continue;
    }
    narrowest = std::max(narrowest, getApproximation(entry.second));
    sum += getApproximation(entry.second);
  }
  return sum + recomputed * narrowest;
}

/// The score `choices` would have, from the uniform plans' added seconds
/// per node, with every recomputed node exact. Mixing choices mostly adds
/// costs (a batch norm coded and its ReLU not no longer fuse), and a node
/// may turn out recomputed from codes, so a compiled plan mostly ranks at
/// best as predicted.
Score Search::predictScore(const NodeChoices &choices) const {
  Score predicted = score(choices, best.unconstrained);
  for (const auto &entry : choices)
    if (auto perNode = addedSeconds.find(entry.second);
        perNode != addedSeconds.end())
      predicted.seconds += perNode->second.lookup(entry.first());
  return predicted;
}

/// `a` ranks before `b`: by precision group, then by charged time in steps
/// of the tolerance (a total order, unlike "within the tolerance of each
/// other", so that the search's answer does not depend on the order it
/// meets plans in), then by approximation, then by time.
bool Search::isBetter(const Score &a, const Score &b) const {
  auto key = [&](const Score &score) {
    return std::make_tuple(score.precisionGroup, getTimeStep(score.seconds),
                           score.approximation, score.seconds);
  };
  return key(a) < key(b);
}

/// 0 for charged times from the unconstrained step's up to the tolerance
/// above it, then 1, 2, ...; -1, -2, ... below it (measured savings).
int64_t Search::getTimeStep(double seconds) const {
  double exact = best.unconstrained.seconds;
  return int64_t(std::floor((seconds - exact) / (getTimeTolerance() * exact)));
}

/// Keeps the best fitting candidate, and the smallest of all.
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
  Score candidate = score(choices, figures);
  double &fastest = fastestByGroup[candidate.precisionGroup];
  fastest = std::min(fastest, candidate.seconds);
  if (best.fits && !isBetter(candidate, bestScore))
    return;
  setBest(choices, figures, candidate);
}

void Search::setBest(const NodeChoices &choices,
                     const CandidateFigures &figures, const Score &score) {
  bestScore = score;
  best.fits = true;
  best.figures = figures;
  best.choices = choices;
  best.chargedSeconds = score.seconds;
  best.timeStep = getTimeStep(score.seconds);
  best.approximation = score.approximation;
}

/// With profiles, the answer is the most exact fitting uniform plan (every
/// node at one width) charged within the tolerance of the fastest fitting
/// plan of its precision group, where there is one. Profiles measure a
/// uniform plan whole (ResNet-164's four within 1.3%), while a mix of
/// widths is predicted from its ops as met in several profiles, and a mix
/// predicted within the tolerance of uniform plans is no evidence against
/// them: on the Intel Xeon (ResNet-164, bench/budget.py), 372 nodes at 8
/// bits and 119 at 4 stepped 0.98-1.00x as long as uniform 8 bits and was
/// less exact (1 - cos 1.73e-3 against 1.28e-3); 199 at 8 and 292 at 4
/// stepped 1.00-1.06x as long as uniform 4 bits.
void Search::preferUniformPlan() {
  if (!options.profiled || !best.fits)
    return;
  double window = getTimeTolerance() * best.unconstrained.seconds;
  double fastest = fastestByGroup[bestScore.precisionGroup];
  best.fastestSeconds = fastest;
  best.windowSeconds = window;
  struct Uniform {
    NodeChoices plan;
    const CandidateFigures *figures;
    Score score;
  };
  std::optional<Uniform> chosen;
  for (const std::string &width :
       getAllChoices(options.minBits, /*allowRecompute=*/false)) {
    NodeChoices plan = getBlockPlan(nodes, blocks, width, 0);
    auto it = compiled.find(getKey(nodes, plan));
    if (it == compiled.end() || failed(it->second) ||
        it->second->totals.total() > options.limit)
      continue;
    Score candidate = score(plan, *it->second);
    if (candidate.precisionGroup != bestScore.precisionGroup)
      continue;
    best.uniformSeconds.push_back({width, candidate.seconds});
    if (candidate.seconds > fastest + window)
      continue;
    if (!chosen ||
        std::tie(candidate.approximation, candidate.seconds) <
            std::tie(chosen->score.approximation, chosen->score.seconds))
      chosen = Uniform{plan, &*it->second, candidate};
  }
  if (chosen && chosen->plan != best.choices)
    setBest(chosen->plan, *chosen->figures, chosen->score);
}

/// Plans every node at each candidate choice, and ranks the moves: those
/// measured to save time first, the most saved first, then by bytes saved
/// per second added (per precision group first with --prefer exactness).
LogicalResult Search::rankMoves() {
  for (const std::string &choice :
       getCandidateChoices(options.minBits, options.allowRecompute)) {
    FailureOr<CandidateFigures> figures =
        compile(getBlockPlan(nodes, blocks, choice, 0));
    if (failed(figures))
      return failure();
    int group = getPrecisionGroup(choice);
    // A move the cost model predicts free is charged a little per step of
    // approximation, so that where they save alike 8 bits come before 4
    // and 4 before 2.
    double approximationSeconds = getTimeTolerance() *
                                  best.unconstrained.seconds /
                                  std::max<size_t>(nodes.size(), 1);
    for (const std::string &node : nodes) {
      int64_t saved = best.unconstrained.keptBytesByNode.lookup(node) -
                      figures->keptBytesByNode.lookup(node);
      double added = getAddedSeconds(*figures, node);
      addedSeconds[choice][node] = added;
      keptBytes[choice][node] = figures->keptBytesByNode.lookup(node);
      double charged =
          added + approximationSeconds * getApproximation(choice) + 1e-12;
      if (saved > 0)
        moves.push_back({node, choice, saved, charged, group});
    }
  }
  bool byPrecision = options.preferExactness;
  std::stable_sort(moves.begin(), moves.end(),
                   [&](const Move &a, const Move &b) {
                     if (byPrecision && a.precisionGroup != b.precisionGroup)
                       return a.precisionGroup < b.precisionGroup;
                     bool aSaves = a.addedSeconds < 0;
                     if (aSaves != (b.addedSeconds < 0))
                       return aSaves;
                     if (aSaves)
                       return a.addedSeconds < b.addedSeconds;
                     return a.savedBytes / a.addedSeconds >
                            b.savedBytes / b.addedSeconds;
                   });
  return success();
}

/// Each node at the choice measured to save it the most time, where
/// profiles show one (rankMoves): where codes run faster than float32, the
/// fastest plan is not the unconstrained one, and where it fits, the
/// improvement takes back toward exactness what costs no time step.
void Search::tryFastestPlan() {
  NodeChoices fastest;
  llvm::StringMap<double> fastestCharge;
  for (const Move &move : moves) {
    if (move.addedSeconds >= 0)
      continue;
    auto [it, inserted] =
        fastestCharge.try_emplace(move.node, move.addedSeconds);
    if (inserted || move.addedSeconds < it->second) {
      it->second = move.addedSeconds;
      fastest[move.node] = move.choice;
    }
  }
  if (!fastest.empty())
    (void)compile(fastest);
}

NodeChoices mlir::blpa::getBlockPlan(ArrayRef<std::string> nodes,
                                     const RecomputeBlocks &blocks,
                                     StringRef width, size_t stride) {
  NodeChoices choices;
  if (width != "float32")
    for (const std::string &node : nodes)
      choices[node] = width.str();
  for (size_t i = 0; stride != 0 && i < blocks.size(); i += stride)
    for (const std::string &node : blocks[i])
      choices[node] = "recompute";
  return choices;
}

/// The recomputation strides of the structured plans: 1, 2, 4, ... up to
/// the number of blocks.
static SmallVector<size_t> getBlockStrides(const RecomputeBlocks &blocks) {
  SmallVector<size_t> strides;
  for (size_t stride = 1; stride <= blocks.size(); stride *= 2)
    strides.push_back(stride);
  return strides;
}

SmallVector<NodeChoices>
mlir::blpa::getSmallestPlanCandidates(ArrayRef<std::string> nodes,
                                      const RecomputeBlocks &blocks,
                                      const BudgetOptions &options) {
  std::string narrowest = std::to_string(options.minBits);
  SmallVector<NodeChoices> plans;
  for (const std::string &width :
       getAllChoices(options.minBits, /*allowRecompute=*/false))
    plans.push_back(getBlockPlan(nodes, blocks, width, 0));
  if (options.allowRecompute)
    for (size_t stride : getBlockStrides(blocks))
      plans.push_back(getBlockPlan(nodes, blocks, narrowest, stride));
  return plans;
}

/// The structured plans of checkpointing by hand: for each width (float32
/// and the codes allowed), recomputing every k-th block, k = 1, 2, 4, ...;
/// per width, the largest k whose plan fits (the fewest recomputed), by
/// bisection, as fewer blocks recomputed keep more. They seed the answer:
/// the greedy's per-node estimates miss that a block's recomputed values
/// are live together in the backward pass.
void Search::tryBlockPlans() {
  if (!options.allowRecompute || blocks.empty())
    return;
  SmallVector<size_t> strides = getBlockStrides(blocks);
  for (const std::string &width :
       getAllChoices(options.minBits, /*allowRecompute=*/false)) {
    auto fits = [&](size_t i) {
      FailureOr<CandidateFigures> figures =
          compile(getBlockPlan(nodes, blocks, width, strides[i]));
      return succeeded(figures) && figures->totals.total() <= options.limit;
    };
    // Where the uniform plan of a width fits, it is more exact and no
    // slower than its block plans and than any plan of a narrower width.
    FailureOr<CandidateFigures> uniform =
        compile(getBlockPlan(nodes, blocks, width, 0));
    if (succeeded(uniform) && uniform->totals.total() <= options.limit)
      return;
    if (best.evaluations >= options.maxEvaluations || !fits(0))
      continue;
    size_t lo = 0, hi = strides.size();
    while (hi - lo > 1 && best.evaluations < options.maxEvaluations) {
      size_t mid = lo + (hi - lo) / 2;
      (fits(mid) ? lo : hi) = mid;
    }
  }
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

/// Where nothing the search compiled so far fits: the other structured
/// plans of the narrowest codes, every stride (getSmallestPlanCandidates).
/// Their totals do not fall with the number of blocks recomputed
/// (torchvision resnet50 at 2 bits: every block 312.36 MiB, every 2nd
/// 313.11, every 4th 302.60, none 303.85), so one the bisection skipped may
/// fit, or be the smallest a refusal names.
void Search::trySmallestPlans() {
  for (const NodeChoices &plan :
       getSmallestPlanCandidates(nodes, blocks, options)) {
    if (best.fits || best.evaluations >= options.maxEvaluations)
      return;
    (void)compile(plan);
  }
}

/// The shortest prefix of the ranked moves whose plan fits: galloping
/// from the shortest, then bisection, as the kept bytes fall with the
/// prefix's length. Galloping rather than planning every move at once:
/// the estimates of recomputation are optimistic (a recomputed copy lives
/// in the backward pass), so the plan of all moves may be larger than one
/// of some. Galloping stops where a prefix is predicted to rank no better
/// than a plan that fits: past the moves measured to save time, every move
/// adds time or approximation, so no longer prefix can beat it.
void Search::bisectPrefix() {
  auto fits = [&](size_t length) {
    FailureOr<CandidateFigures> figures = compile(applyPrefix(length));
    return succeeded(figures) && figures->totals.total() <= options.limit;
  };
  fittingPrefix = findFirst(moves.size(), fits, [&](size_t length) {
    return best.fits && !isBetter(predictScore(applyPrefix(length)), bestScore);
  });
}

/// The first length in 1..n at which `holds` does, given that it holds at
/// every longer one (a prefix's bytes fall or grow with its length):
/// galloping (1, 2, 4, ..., n), then bisection between the last length
/// where it did not hold and the first where it did. `stopGallop(length)`
/// ends the search before a galloping step, the evaluation bound either
/// phase. 0 where no length was found to hold.
size_t Search::findFirst(size_t n, llvm::function_ref<bool(size_t)> holds,
                         llvm::function_ref<bool(size_t)> stopGallop) {
  size_t lo = 0, hi = 0;
  for (size_t length = 1;; length = std::min(2 * length, n)) {
    if (best.evaluations >= options.maxEvaluations || stopGallop(length))
      return 0;
    if (holds(length)) {
      hi = length;
      break;
    }
    lo = length;
    if (length == n)
      return 0;
  }
  while (hi - lo > 1 && best.evaluations < options.maxEvaluations) {
    size_t mid = lo + (hi - lo) / 2;
    (holds(mid) ? hi : lo) = mid;
  }
  return hi;
}

/// Undoes the prefix's moves, least efficient first, where the plan still
/// fits without them and ranks no worse (the ranking is an estimate: a move
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
        !isBetter(bestScore, score(trial, *figures)))
      current = std::move(trial);
  }
}

/// One step more exact: 2 -> 4 -> 8 -> float32, recompute -> float32.
static std::optional<std::string> getMoreExact(StringRef choice) {
  if (choice == "2")
    return std::string("4");
  if (choice == "4")
    return std::string("8");
  return std::nullopt; // 8 and recompute become float32
}

/// What the improvement raises together: each node where the search can
/// afford a plan per node, else each block of nodes with the nodes before
/// it outside any block (its checkpoint, the previous block's output), as
/// a block's nodes share their recomputed values and its first ops fuse
/// only where their input is kept as they are (a coded checkpoint under a
/// float32 block splits its batch norm from its ReLU: 2.3 ms more per
/// block of ResNet-164 at batch 32, which no plan would then take).
SmallVector<SmallVector<std::string>> Search::getImprovementUnits() const {
  SmallVector<SmallVector<std::string>> units;
  if (2 * nodes.size() <= size_t(options.maxEvaluations) || blocks.empty()) {
    for (const std::string &node : nodes)
      units.push_back({node});
    return units;
  }
  llvm::StringMap<size_t> blockOf;
  for (auto [i, block] : llvm::enumerate(blocks))
    for (const std::string &node : block)
      blockOf[node] = i;
  // `nodes` are in block order: each block's unit takes the nodes outside
  // blocks met since the previous block's nodes.
  SmallVector<std::string> pending;
  DenseMap<size_t, size_t> unitOfBlock;
  for (const std::string &node : nodes) {
    auto it = blockOf.find(node);
    if (it == blockOf.end()) {
      pending.push_back(node);
      continue;
    }
    auto [unit, inserted] = unitOfBlock.try_emplace(it->second, units.size());
    if (inserted)
      units.emplace_back(std::move(pending));
    pending.clear();
    units[unit->second].push_back(node);
  }
  for (const std::string &node : pending)
    units.push_back({node});
  return units;
}

/// `base` with each node of `units` one step more exact.
NodeChoices Search::raiseUnits(const NodeChoices &base,
                               ArrayRef<SmallVector<std::string>> units) const {
  NodeChoices raised = base;
  for (const SmallVector<std::string> &unit : units)
    for (const std::string &node : unit) {
      auto it = raised.find(node);
      if (it == raised.end())
        continue;
      if (std::optional<std::string> moreExact = getMoreExact(it->second))
        it->second = *moreExact;
      else
        raised.erase(it);
    }
  return raised;
}

/// The bytes raising `unit` one step adds to `base`, as the uniform plans
/// estimate them (0 for a unit with nothing to raise). Node by node, not
/// through raiseUnits: a copy of the plan per unit was a third of the
/// search's time on ResNet-1001.
int64_t Search::getRaiseBytes(const NodeChoices &base,
                              const SmallVector<std::string> &unit) const {
  NodeChoices raised;
  int64_t bytes = 0;
  for (const std::string &node : unit) {
    auto it = base.find(node);
    if (it == base.end())
      continue; // float32 already
    if (std::optional<std::string> moreExact = getMoreExact(it->second))
      raised[node] = *moreExact;
    bytes += getKeptBytes(raised, node) - getKeptBytes(base, node);
  }
  return bytes;
}

/// The bytes `node` keeps with its choice in `choices`, as the uniform
/// plan of that choice (the unconstrained one for float32) measured them.
int64_t Search::getKeptBytes(const NodeChoices &choices,
                             const std::string &node) const {
  auto choice = choices.find(node);
  if (choice == choices.end())
    return best.unconstrained.keptBytesByNode.lookup(node);
  // find, not lookup: lookup would copy the choice's map of every node.
  auto perNode = keptBytes.find(choice->second);
  return perNode == keptBytes.end() ? 0 : perNode->second.lookup(node);
}

/// Whether `choices` cannot fit, judged without compiling from a compiled
/// plan `from` (its choices and figures): every saved tensor is live where
/// the backward pass begins, so a plan's total is at least what does not
/// depend on the choices (parameters, optimizer state, batch buffers) plus
/// the bytes live there, which the choices change by what their nodes keep
/// (as the uniform plans measure it per node and choice).
bool Search::cannotFit(const NodeChoices &from, const CandidateFigures &figures,
                       const NodeChoices &choices) const {
  int64_t bytes = figures.totals.total() - figures.totals.arena +
                  figures.backwardStartBytes;
  for (const std::string &node : nodes)
    bytes += getKeptBytes(choices, node) - getKeptBytes(from, node);
  return bytes > options.limit;
}

/// Raises many units at once where the budget leaves room: the units that
/// have something to raise, those the uniform plans estimate to add the
/// fewest bytes first; the longest prefix of them raised one step whose
/// plan fits, by galloping and bisection (findFirst, as bytes grow
/// with the prefix); repeated from the new best while a round raises any.
/// Hill climbing one unit at a time would spend a plan per block where a
/// generous budget has room for most of them.
void Search::raiseCheapestUnits() {
  SmallVector<SmallVector<std::string>> units = getImprovementUnits();
  while (best.fits && best.evaluations < options.maxEvaluations) {
    NodeChoices base = best.choices;
    CandidateFigures baseFigures = best.figures;
    SmallVector<std::pair<int64_t, size_t>> order;
    for (auto [i, unit] : llvm::enumerate(units))
      if (llvm::any_of(unit, [&](const std::string &node) {
            return base.contains(node);
          }))
        order.push_back({getRaiseBytes(base, unit), i});
    if (order.empty())
      return;
    llvm::stable_sort(order, llvm::less_first());
    SmallVector<SmallVector<std::string>> sorted;
    for (auto [bytes, i] : order)
      sorted.push_back(units[i]);
    auto fits = [&](size_t length) {
      NodeChoices raised =
          raiseUnits(base, ArrayRef(sorted).take_front(length));
      if (cannotFit(base, baseFigures, raised))
        return false;
      FailureOr<CandidateFigures> figures = compile(raised);
      return succeeded(figures) && figures->totals.total() <= options.limit;
    };
    // The longest fitting prefix compiled becomes the best plan.
    (void)findFirst(
        sorted.size(), [&](size_t length) { return !fits(length); },
        [](size_t) { return false; });
    if (best.choices == base)
      return;
  }
}

/// Hill climbing stops after this many plans in a row that did not improve:
/// after raiseCheapestUnits, a unit that does not fit is most often
/// followed by others as large (a ResNet's blocks of a stage), and on
/// ResNet-1001 the rest of the plan bound went to 20 such trials.
constexpr int kMaxIdleClimbs = 16;

/// Hill climbing from the best plan: every node still coded recomputed
/// instead (as exact as float32 where the checkpoints are then exact, and
/// smaller, for time, which within a time step a plan may spend); then
/// each unit in turn made one step more exact, kept where the plan still
/// fits and ranks better (not compiled where cannotFit tells it would not
/// fit: ResNet-1001 at batch 8 under 550 MiB had spent 19 plans on such
/// raises). Passes repeat while one improves, within the evaluation bound.
/// The greedy phases overshoot (a uniform plan codes every node alike), and
/// this takes back what the budget did not need.
void Search::improveBest() {
  if (!best.fits)
    return;
  SmallVector<SmallVector<std::string>> units = getImprovementUnits();
  int idle = 0;
  for (bool improved = true; improved;) {
    improved = options.allowRecompute && recomputeCoded();
    for (const SmallVector<std::string> &unit : units) {
      if (best.evaluations >= options.maxEvaluations ||
          idle >= kMaxIdleClimbs)
        return;
      NodeChoices trial =
          raiseUnits(best.choices, ArrayRef<SmallVector<std::string>>(unit));
      if (trial == best.choices || cannotFit(best.choices, best.figures, trial))
        continue;
      NodeChoices before = best.choices;
      (void)compile(trial);
      bool better = best.choices != before;
      improved |= better;
      idle = better ? 0 : idle + 1;
    }
  }
}

/// Compiles the best plan with every coded node recomputed instead, where
/// that is predicted to rank better. Returns whether the best plan changed.
bool Search::recomputeCoded() {
  if (best.evaluations >= options.maxEvaluations)
    return false;
  NodeChoices recomputed = best.choices;
  for (auto &entry : recomputed)
    if (getApproximation(entry.second) > 0)
      entry.second = "recompute";
  if (recomputed == best.choices ||
      !isBetter(predictScore(recomputed), bestScore))
    return false;
  NodeChoices before = best.choices;
  (void)compile(recomputed);
  return best.choices != before;
}

double mlir::blpa::countPlans(size_t numNodes, const BudgetOptions &options) {
  return std::pow(double(getAllChoices(options).size()), double(numNodes));
}

/// How many time steps better than predicted a compiled plan may rank:
/// the ranked search stops only past predictions that much worse than its
/// best. The per-node figures come from uniform plans, and a mix can cost
/// less than they add up to (a random 2-block net at its smallest total:
/// predicted more than a step worse than the plan exhaustive search found,
/// compiled two steps better than the answer without this slack; with it,
/// 27% more plans compiled, 2.9 s instead of 2.2).
constexpr double kRankedSlackSteps = 1;

/// Combinations the ranked search takes on: it may compile them all where
/// only the last fit (a few seconds for models this small: 5 nodes with 5
/// choices, 7 with 4, 9 with 3).
constexpr double kMaxRankedPlans = 1 << 15;

/// Small models: every combination of choices, ranked by its predicted
/// score (the seconds each node's choice adds in the uniform plans and its
/// approximation: choices of different nodes add up), compiled best first
/// until no later one can rank better. Failure where there are too many
/// combinations.
LogicalResult Search::searchRanked() {
  SmallVector<std::string> choices = getAllChoices(options);
  double count = countPlans(nodes.size(), options);
  if (count > kMaxRankedPlans)
    return failure();
  auto decode = [&](uint32_t index) {
    NodeChoices plan;
    for (const std::string &node : nodes) {
      if (index % choices.size() != 0)
        plan[node] = choices[index % choices.size()];
      index /= choices.size();
    }
    return plan;
  };
  SmallVector<std::pair<Score, uint32_t>> ranked;
  for (uint32_t index = 0; index < uint32_t(count); ++index) {
    ranked.push_back({predictScore(decode(index)), index});
  }
  llvm::stable_sort(ranked, [&](const auto &a, const auto &b) {
    return isBetter(a.first, b.first);
  });
  // Once the next prediction ranks below the best fitting plan compiled,
  // by more than the slack, no later plan is likely to beat it.
  for (const auto &entry : ranked) {
    Score hoped = entry.first;
    hoped.seconds -=
        kRankedSlackSteps * getTimeTolerance() * best.unconstrained.seconds;
    if (best.fits && !isBetter(hoped, bestScore))
      break;
    (void)compile(decode(entry.second));
  }
  return success();
}

/// Every combination of float32 and the candidate choices over the nodes,
/// in odometer order; ranked as the search ranks its plans.
LogicalResult Search::searchAll() {
  SmallVector<std::string> choices = getAllChoices(options);
  if (countPlans(nodes.size(), options) > double(options.maxExhaustivePlans))
    return failure();
  SmallVector<size_t> digits(nodes.size(), 0);
  while (true) {
    NodeChoices plan;
    for (auto [node, digit] : llvm::zip(nodes, digits))
      if (digit != 0)
        plan[node] = choices[digit];
    (void)compile(plan);
    size_t i = 0;
    for (; i < digits.size() && ++digits[i] == choices.size(); ++i)
      digits[i] = 0;
    if (i == digits.size())
      return success();
  }
}

FailureOr<BudgetSolution> Search::run() {
  ++best.evaluations;
  FailureOr<CandidateFigures> unconstrained = evaluate({});
  if (failed(unconstrained))
    return failure();
  best.unconstrained = *unconstrained;
  compiled.try_emplace(getKey(nodes, {}), unconstrained);
  consider({}, *unconstrained);
  if (options.exhaustive) {
    if (failed(searchAll()))
      return failure();
  } else {
    if (best.fits && !options.profiled)
      return best;
    for (const NodeChoices &seed : options.seeds)
      (void)compile(seed);
    if (failed(rankMoves()))
      return failure();
    tryFastestPlan();
    if (succeeded(searchRanked()))
      return finish();
    tryBlockPlans();
    trySmallestPlans();
    bisectPrefix();
    raiseCheapestUnits();
    if (fittingPrefix != 0)
      undoMoves();
    improveBest();
  }
  return finish();
}

/// The answer: the best fitting plan (preferUniformPlan), else the
/// smallest found.
BudgetSolution Search::finish() {
  preferUniformPlan();
  if (!best.fits) {
    best.choices = smallestChoices;
    best.figures = smallest;
  }
  return best;
}

FailureOr<BudgetSolution>
mlir::blpa::solveBudget(ArrayRef<std::string> nodes,
                        const RecomputeBlocks &blocks,
                        EvaluateCandidateFn evaluate,
                        const BudgetOptions &options) {
  return Search(nodes, blocks, evaluate, options).run();
}
