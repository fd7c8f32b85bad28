//===- ScheduleForMemory.cpp - Op order that lowers the live-bytes peak ---===//
//
// --blpa-schedule-for-memory: the importer and autodiff emit ops in the
// ONNX graph's order and its reverse, which fixes the order of independent
// branches (an inception module's towers, a dense block's concatenated
// inputs, the two sides of a residual join, and their gradients) without
// regard to memory. This pass reorders each function by greedy list
// scheduling: among the ops whose inputs are ready, it runs the one that
// grows the live bytes least (the bytes of the buffers it creates less
// those of the buffers it reads for the last time), forward ops before
// backward ones, ties in the original order. An optimizer update (update
// phase) may move too, but only after every other reader of the parameter
// it writes, as --blpa-schedule-updates places it; any other op with side
// effects stays in place and splits the block into runs scheduled apart.
// The new order is kept only if it lowers the function's live-bytes lower
// bound (analyzeBuffers, the figure the planner places against).
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryPlan.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringSet.h"

#include <set>
#include <tuple>

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPASCHEDULEFORMEMORY
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

/// Whether the pass may move `op`: side-effect-free ops, and updates, which
/// write only the parameters (and state) among their operands.
static bool isMovable(Operation *op) {
  if (isMemoryEffectFree(op))
    return true;
  return op->hasAttr(kPhaseAttrName) && getPhase(op) == Phase::Update;
}

/// How the list scheduler ranks the ops that are ready (forward ones
/// always first, then by this, then in the original order).
enum class Priority {
  /// Least live-byte growth first. Myopic where a cheap op's result waits
  /// long for its reader (a small decoder run early).
  LeastGrowth,
  /// Ops that free bytes first (most freed first); every other op in the
  /// original order, which already puts decoders right before their use.
  FreeingFirst,
};

/// Greedy list scheduling of one run of movable ops (`ops`, in their
/// current order). Buffers read after the run never die in it.
class RunScheduler {
public:
  RunScheduler(ArrayRef<Operation *> ops, Priority priority)
      : ops(ops), priority(priority) {}

  /// The ops of the run in the order that keeps live bytes low.
  SmallVector<Operation *> schedule();

private:
  void addDependences();
  /// `later` waits for `earlier` (both in the run).
  void addEdge(Operation *later, Operation *earlier);
  void addUpdateDependences(Operation *update);
  void countReaders();
  /// Live-byte growth of running `op` now; `op` must be ready.
  int64_t growth(Operation *op) const;
  void makeReady(Operation *op);
  void run(Operation *op, SmallVectorImpl<Operation *> &order);
  /// Re-keys the last reader of `root` left, whose growth just fell.
  void rekeyLastReader(Value root);

  /// The distinct buffers `op` reads (roots of its operands).
  static SmallVector<Value> readBuffers(Operation *op);

  using Key = std::tuple<int, int64_t, int64_t>; // phase, growth, position
  Key keyOf(Operation *op) const;

  ArrayRef<Operation *> ops;
  Priority priority;
  DenseMap<Operation *, int64_t> position;
  /// Ops of the run that must wait for each op, and how many ops of the
  /// run each op still waits for.
  DenseMap<Operation *, SmallVector<Operation *>> waiters;
  DenseMap<Operation *, int64_t> waitingFor;
  /// Readers of each parameter in the run, by name (it may be read
  /// through several blpa.param ops).
  llvm::StringMap<SmallVector<Operation *>> paramReaders;
  /// Readers in the run that have not run yet, per buffer.
  DenseMap<Value, SmallVector<Operation *>> readersLeft;
  /// Buffers read after the run (or returned): they outlive it.
  llvm::SmallDenseSet<Value> outlivesRun;
  DenseMap<Operation *, Key> readyKey;
  std::set<std::pair<Key, Operation *>> ready;
};

SmallVector<Value> RunScheduler::readBuffers(Operation *op) {
  llvm::SmallSetVector<Value, 4> roots;
  for (Value operand : op->getOperands())
    if (Value root = getBufferRoot(operand))
      roots.insert(root);
  return SmallVector<Value>(roots.begin(), roots.end());
}

void RunScheduler::addEdge(Operation *later, Operation *earlier) {
  waiters[earlier].push_back(later);
  ++waitingFor[later];
}

void RunScheduler::addDependences() {
  for (Operation *op : ops) {
    waitingFor.try_emplace(op, 0);
    if (auto param = dyn_cast<ParamOp>(op))
      paramReaders[param.getName()].append(param->user_begin(),
                                           param->user_end());
  }
  for (Operation *op : ops) {
    for (Value operand : op->getOperands())
      if (Operation *def = operand.getDefiningOp(); def && position.count(def))
        addEdge(op, def);
    if (!isMemoryEffectFree(op))
      addUpdateDependences(op);
  }
}

/// An update writes the parameters among its operands in place, so every
/// other reader of them (through any blpa.param of the same name) in the
/// run goes first and still sees the value from before the step.
void RunScheduler::addUpdateDependences(Operation *update) {
  for (Value operand : update->getOperands())
    if (auto param = operand.getDefiningOp<ParamOp>())
      for (Operation *reader : paramReaders.lookup(param.getName()))
        if (reader != update && position.count(reader))
          addEdge(update, reader);
}

void RunScheduler::countReaders() {
  for (Operation *op : ops)
    for (Value root : readBuffers(op))
      readersLeft[root].push_back(op);
  // A reader after the run (views included: getBufferRoot sees through
  // them) keeps the buffer alive past it; readers before it are done.
  for (Operation *op = ops.back()->getNextNode(); op; op = op->getNextNode())
    for (Value root : readBuffers(op))
      outlivesRun.insert(root);
}

int64_t RunScheduler::growth(Operation *op) const {
  int64_t bytes = 0;
  for (Value result : op->getResults())
    if (getBufferRoot(result) == result && !result.use_empty())
      bytes += getTensorBytes(result.getType());
  for (Value root : readBuffers(op))
    if (readersLeft.find(root)->second.size() == 1 &&
        !outlivesRun.contains(root))
      bytes -= getTensorBytes(root.getType());
  return bytes;
}

RunScheduler::Key RunScheduler::keyOf(Operation *op) const {
  // Updates may interleave with the backward pass, not run before it.
  int phase = op->hasAttr(kPhaseAttrName) && getPhase(op) != Phase::Forward;
  int64_t bytes = growth(op);
  if (priority == Priority::FreeingFirst && bytes > 0)
    bytes = 1;
  return {phase, bytes, position.lookup(op)};
}

void RunScheduler::makeReady(Operation *op) {
  Key key = keyOf(op);
  readyKey[op] = key;
  ready.insert({key, op});
}

void RunScheduler::rekeyLastReader(Value root) {
  Operation *last = readersLeft[root].front();
  auto it = readyKey.find(last);
  if (it == readyKey.end())
    return;
  ready.erase({it->second, last});
  makeReady(last);
}

void RunScheduler::run(Operation *op, SmallVectorImpl<Operation *> &order) {
  order.push_back(op);
  readyKey.erase(op);
  for (Value root : readBuffers(op)) {
    SmallVector<Operation *> &readers = readersLeft[root];
    llvm::erase(readers, op);
    if (readers.size() == 1)
      rekeyLastReader(root);
  }
  for (Operation *waiter : waiters.lookup(op))
    if (--waitingFor[waiter] == 0)
      makeReady(waiter);
}

SmallVector<Operation *> RunScheduler::schedule() {
  for (auto [i, op] : llvm::enumerate(ops))
    position[op] = i;
  addDependences();
  countReaders();
  for (Operation *op : ops)
    if (waitingFor[op] == 0)
      makeReady(op);
  SmallVector<Operation *> order;
  while (!ready.empty()) {
    Operation *next = ready.begin()->second;
    ready.erase(ready.begin());
    run(next, order);
  }
  assert(order.size() == ops.size() && "a dependence cycle in one block");
  return order;
}

/// Splits `block` (less its terminator) into runs of movable ops.
static SmallVector<SmallVector<Operation *>> getRuns(Block &block) {
  SmallVector<SmallVector<Operation *>> runs(1);
  for (Operation &op : block.without_terminator()) {
    if (isMovable(&op))
      runs.back().push_back(&op);
    else if (!runs.back().empty())
      runs.emplace_back();
  }
  if (runs.back().empty())
    runs.pop_back();
  return runs;
}

/// The ops of `block` but its terminator, in order.
static SmallVector<Operation *> getOrder(Block &block) {
  SmallVector<Operation *> order;
  for (Operation &op : block.without_terminator())
    order.push_back(&op);
  return order;
}

/// Puts the ops of `block` but its terminator in `order`.
static void setOrder(Block &block, ArrayRef<Operation *> order) {
  Operation *terminator = block.getTerminator();
  for (Operation *op : order)
    op->moveBefore(terminator);
}

/// Puts `order` where the run `run` was (its ops are the same).
static void reorderRun(ArrayRef<Operation *> run, ArrayRef<Operation *> order) {
  Operation *before = run.back()->getNextNode();
  for (Operation *op : order)
    op->moveBefore(before);
}

struct ScheduleForMemoryPass
    : public blpa::impl::BlpaScheduleForMemoryBase<ScheduleForMemoryPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>())
      scheduleFunction(func);
  }

  void scheduleFunction(func::FuncOp func) {
    if (func.isExternal() || !func.getBody().hasOneBlock())
      return;
    Block &block = func.getBody().front();
    SmallVector<Operation *> original = getOrder(block), best = original;
    int64_t originalBytes = analyzeBuffers(func).lowerBoundBytes;
    int64_t bestBytes = originalBytes;
    // Like XLA's memory scheduler: try each heuristic from the original
    // order (its tie-break), keep the order of lowest bound, the original
    // one included.
    for (Priority priority : {Priority::LeastGrowth, Priority::FreeingFirst}) {
      setOrder(block, original);
      for (SmallVector<Operation *> &run : getRuns(block))
        reorderRun(run, RunScheduler(run, priority).schedule());
      int64_t bytes = analyzeBuffers(func).lowerBoundBytes;
      if (bytes < bestBytes) {
        bestBytes = bytes;
        best = getOrder(block);
      }
    }
    setOrder(block, best);
    bytesSaved += originalBytes - bestBytes;
  }
};

} // namespace
