//===- CandidatePlans.cpp - Compile the budget solver's candidates --------===//

#include "CandidatePlans.h"

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/ADT/SmallPtrSet.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace mlir::blpa;

/// The forward ops of `step` but parameters, in block order.
static SmallVector<Operation *> getForwardOps(func::FuncOp step) {
  SmallVector<Operation *> ops;
  for (Operation &op : step.getBody().front())
    if (isInPhase(&op, Phase::Forward) && !isa<ParamOp>(op))
      ops.push_back(&op);
  return ops;
}

/// The forward ops of `step` a choice may be given: their results are read
/// by the backward pass and the user pinned none of them. A pin is on the
/// op from the front pipeline on, so it is told apart from a decision.
static SmallVector<Operation *> getDecidedOps(func::FuncOp step) {
  SmallVector<Operation *> ops;
  for (Operation *op : getForwardOps(step))
    if (!op->hasAttr(kActChoiceAttrName) && !getNodeName(op).empty() &&
        hasBackwardReaders(op))
      ops.push_back(op);
  return ops;
}

static func::FuncOp getStep(ModuleOp module) {
  return module.lookupSymbol<func::FuncOp>("train_step");
}

CandidatePlanner::CandidatePlanner(
    ModuleOp front, const CostModel &costs,
    llvm::function_ref<void(PassManager &)> buildTail)
    : front(front), stepOnly(front.clone()), costs(costs),
      buildTail(buildTail) {
  // The other functions (the inference forward pass) are the same for
  // every candidate; scheduling and placing them would be a quarter of
  // each candidate's compile. Their declarations stay: the totals count
  // the forward pass's outputs among the batch buffers.
  for (auto func : stepOnly->getOps<func::FuncOp>())
    if (!func.isExternal() && func.getName() != "train_step") {
      func.eraseBody();
      func.setPrivate();
    }
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

/// For each of `ops`: the index of the last of `ops` that reads its
/// results, and how many of `ops` read them.
static void getForwardReaders(ArrayRef<Operation *> ops,
                              SmallVectorImpl<size_t> &lastReader,
                              SmallVectorImpl<unsigned> &numReaders) {
  DenseMap<Operation *, size_t> index;
  for (auto [i, op] : llvm::enumerate(ops))
    index[op] = i;
  lastReader.assign(ops.size(), 0);
  numReaders.assign(ops.size(), 0);
  for (auto [i, op] : llvm::enumerate(ops)) {
    lastReader[i] = i;
    llvm::SmallPtrSet<Operation *, 4> readers;
    for (Operation *user : op->getUsers()) {
      auto it = index.find(user);
      if (it == index.end() || !readers.insert(user).second)
        continue;
      lastReader[i] = std::max(lastReader[i], it->second);
      ++numReaders[i];
    }
  }
}

RecomputeBlocks CandidatePlanner::getBlocks() const {
  func::FuncOp step = getStep(front);
  SmallVector<Operation *> ops = getForwardOps(step);
  SmallVector<size_t> lastReader;
  SmallVector<unsigned> numReaders;
  getForwardReaders(ops, lastReader, numReaders);
  llvm::SmallPtrSet<Operation *, 16> decided;
  for (Operation *op : getDecidedOps(step))
    decided.insert(op);
  RecomputeBlocks blocks(1);
  size_t reach = 0; // the last read of anything before op i
  for (auto [i, op] : llvm::enumerate(ops)) {
    bool isCut = reach <= i;
    reach = std::max(reach, lastReader[i]);
    if (isCut && numReaders[i] > 1) {
      // The checkpoint: the block's output, not recomputed with it.
      if (!blocks.back().empty())
        blocks.emplace_back();
      continue;
    }
    std::string node = getNodeName(op);
    SmallVector<std::string> &block = blocks.back();
    if (decided.contains(op) && llvm::find(block, node) == block.end())
      block.push_back(node);
  }
  if (blocks.back().empty())
    blocks.pop_back();
  return blocks;
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

/// Whether `value` is decoded from codes: the result of an op that reads
/// codes (a decoder), of a copy in `approximate`, or a view of either.
static bool isDecoded(Value value,
                      const llvm::SmallPtrSetImpl<Operation *> &approximate) {
  while (auto view = value.getDefiningOp<ViewLikeOpInterface>())
    value = view.getViewSource();
  Operation *def = value.getDefiningOp();
  return def &&
         (approximate.contains(def) ||
          llvm::any_of(def->getOperandTypes(), llvm::IsaPred<PackedType>));
}

/// The nodes of `step` whose recomputed copies read decoded codes,
/// directly or through other copies (docs/design.md, "Exactness").
static llvm::StringSet<> getApproximateRecomputes(func::FuncOp step) {
  llvm::StringSet<> nodes;
  llvm::SmallPtrSet<Operation *, 16> approximate;
  for (Operation &op : step.getBody().front()) {
    if (!op.hasAttr(kRecomputesAttrName) ||
        llvm::none_of(op.getOperands(), [&](Value operand) {
          return isDecoded(operand, approximate);
        }))
      continue;
    approximate.insert(&op);
    nodes.insert(getNodeName(&op));
  }
  return nodes;
}

/// The bytes of `plan`'s buffers live at the first backward op of `step`.
static int64_t getBackwardStartBytes(func::FuncOp step,
                                     const MemoryPlan &plan) {
  int64_t first = 0;
  for (Operation &op : step.getBody().front()) {
    if (isInPhase(&op, Phase::Backward))
      break;
    ++first;
  }
  int64_t bytes = 0;
  for (const Buffer &buffer : plan.buffers)
    if (buffer.start <= first && first <= buffer.end)
      bytes += buffer.bytes;
  return bytes;
}

FailureOr<CandidateFigures>
CandidatePlanner::operator()(const NodeChoices &choices) {
  OwningOpRef<ModuleOp> module = stepOnly->clone();
  applyChoices(*module, choices);
  {
    // A candidate that cannot be compiled is the solver's business, not an
    // error for the user.
    ScopedDiagnosticHandler quiet(front.getContext(),
                                  [](Diagnostic &) { return success(); });
    PassManager pm(front.getContext());
    // The IR verifier after every pass is a tenth of a candidate's time;
    // the chosen plan's final compile runs it.
    pm.enableVerifier(false);
    buildTail(pm);
    if (failed(pm.run(*module)))
      return failure();
  }
  CandidateFigures figures;
  figures.totals = getMemoryTotals(*module);
  func::FuncOp step = getStep(*module);
  for (Operation &op : step.getBody().front()) {
    OpTime time = costs.time(&op);
    std::string node = getNodeName(&op);
    figures.seconds += time.seconds;
    figures.secondsByNode[node] += time.seconds;
    figures.spreadByNode[node] += time.spread;
    if (!time.measured)
      figures.estimatedNodes.insert(node);
  }
  figures.approximateRecomputes = getApproximateRecomputes(step);
  MemoryPlan plan = analyzeBuffers(step);
  for (const SavedTensor &tensor : getSavedTensors(step, plan))
    figures.keptBytesByNode[getNodeName(tensor.source)] += tensor.bytes;
  figures.backwardStartBytes = getBackwardStartBytes(step, plan);
  return figures;
}
