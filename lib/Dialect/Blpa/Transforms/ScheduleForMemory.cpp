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
/// current order). Buffers read after the run never die in it. Ops and the
/// buffers they read are numbered once, and everything the loop consults
/// is an array indexed by those numbers: the solver schedules every
/// candidate plan of a model of thousands of ops.
class RunScheduler {
public:
  RunScheduler(ArrayRef<Operation *> ops, Priority priority)
      : ops(ops), priority(priority) {}

  /// The ops of the run in the order that keeps live bytes low.
  SmallVector<Operation *> schedule();

private:
  void numberBuffers();
  void addDependences();
  /// Op `later` waits for op `earlier` (positions in the run).
  void addEdge(unsigned later, unsigned earlier);
  void addUpdateDependences(unsigned update);
  /// Live-byte growth of running op `i` now; it must be ready.
  int64_t growth(unsigned i) const;
  void makeReady(unsigned i);
  void run(unsigned i, SmallVectorImpl<Operation *> &order);
  /// Re-keys the last reader of `buffer` left, whose growth just fell.
  void rekeyLastReader(unsigned buffer);

  /// The distinct buffers `op` reads (roots of its operands).
  static SmallVector<Value> readBuffers(Operation *op);

  using Key = std::tuple<int, int64_t, unsigned>; // phase, growth, position
  Key keyOf(unsigned i) const;

  ArrayRef<Operation *> ops;
  Priority priority;
  DenseMap<Operation *, unsigned> position;
  /// Per op: the ops that must wait for it, how many ops it still waits
  /// for, the buffers it reads, the bytes of the buffers it creates, and
  /// its key while it is ready.
  std::vector<SmallVector<unsigned, 2>> waiters;
  std::vector<unsigned> waitingFor;
  std::vector<SmallVector<unsigned, 2>> reads;
  std::vector<int64_t> createdBytes;
  std::vector<std::optional<Key>> readyKey;
  /// Per buffer: its bytes, whether it is read after the run (or
  /// returned), and its readers in the run that have not run yet.
  std::vector<int64_t> bufferBytes;
  std::vector<bool> outlivesRun;
  std::vector<SmallVector<unsigned, 2>> readersLeft;
  /// Readers of each parameter in the run, by name (it may be read
  /// through several blpa.param ops).
  llvm::StringMap<SmallVector<Operation *>> paramReaders;
  std::set<std::pair<Key, unsigned>> ready;
};

SmallVector<Value> RunScheduler::readBuffers(Operation *op) {
  llvm::SmallSetVector<Value, 4> roots;
  for (Value operand : op->getOperands())
    if (Value root = getBufferRoot(operand))
      roots.insert(root);
  return SmallVector<Value>(roots.begin(), roots.end());
}

/// Numbers the buffers the run reads, each op's reads and what it creates.
/// A reader after the run (views included: getBufferRoot sees through
/// them) keeps a buffer alive past it; readers before it are done.
void RunScheduler::numberBuffers() {
  DenseMap<Value, unsigned> bufferOf;
  reads.resize(ops.size());
  createdBytes.assign(ops.size(), 0);
  for (auto [i, op] : llvm::enumerate(ops)) {
    for (Value root : readBuffers(op)) {
      auto [it, inserted] = bufferOf.try_emplace(root, bufferBytes.size());
      if (inserted) {
        bufferBytes.push_back(getTensorBytes(root.getType()));
        readersLeft.emplace_back();
      }
      reads[i].push_back(it->second);
      readersLeft[it->second].push_back(i);
    }
    for (Value result : op->getResults())
      if (getBufferRoot(result) == result && !result.use_empty())
        createdBytes[i] += getTensorBytes(result.getType());
  }
  outlivesRun.assign(bufferBytes.size(), false);
  for (Operation *op = ops.back()->getNextNode(); op; op = op->getNextNode())
    for (Value operand : op->getOperands())
      if (Value root = getBufferRoot(operand))
        if (auto it = bufferOf.find(root); it != bufferOf.end())
          outlivesRun[it->second] = true;
}

void RunScheduler::addEdge(unsigned later, unsigned earlier) {
  waiters[earlier].push_back(later);
  ++waitingFor[later];
}

void RunScheduler::addDependences() {
  waiters.resize(ops.size());
  waitingFor.assign(ops.size(), 0);
  for (Operation *op : ops)
    if (auto param = dyn_cast<ParamOp>(op))
      paramReaders[param.getName()].append(param->user_begin(),
                                           param->user_end());
  for (auto [i, op] : llvm::enumerate(ops)) {
    for (Value operand : op->getOperands())
      if (Operation *def = operand.getDefiningOp())
        if (auto it = position.find(def); it != position.end())
          addEdge(i, it->second);
    if (!isMemoryEffectFree(op))
      addUpdateDependences(i);
  }
}

/// An update writes the parameters among its operands in place, so every
/// other reader of them (through any blpa.param of the same name) in the
/// run goes first and still sees the value from before the step.
void RunScheduler::addUpdateDependences(unsigned update) {
  for (Value operand : ops[update]->getOperands())
    if (auto param = operand.getDefiningOp<ParamOp>())
      for (Operation *reader : paramReaders.lookup(param.getName()))
        if (auto it = position.find(reader);
            reader != ops[update] && it != position.end())
          addEdge(update, it->second);
}

int64_t RunScheduler::growth(unsigned i) const {
  int64_t bytes = createdBytes[i];
  for (unsigned buffer : reads[i])
    if (readersLeft[buffer].size() == 1 && !outlivesRun[buffer])
      bytes -= bufferBytes[buffer];
  return bytes;
}

RunScheduler::Key RunScheduler::keyOf(unsigned i) const {
  // Updates may interleave with the backward pass, not run before it.
  Operation *op = ops[i];
  int phase = op->hasAttr(kPhaseAttrName) && getPhase(op) != Phase::Forward;
  int64_t bytes = growth(i);
  if (priority == Priority::FreeingFirst && bytes > 0)
    bytes = 1;
  return {phase, bytes, i};
}

void RunScheduler::makeReady(unsigned i) {
  Key key = keyOf(i);
  readyKey[i] = key;
  ready.insert({key, i});
}

void RunScheduler::rekeyLastReader(unsigned buffer) {
  unsigned last = readersLeft[buffer].front();
  if (!readyKey[last])
    return;
  ready.erase({*readyKey[last], last});
  makeReady(last);
}

void RunScheduler::run(unsigned i, SmallVectorImpl<Operation *> &order) {
  order.push_back(ops[i]);
  readyKey[i].reset();
  for (unsigned buffer : reads[i]) {
    SmallVector<unsigned, 2> &readers = readersLeft[buffer];
    llvm::erase(readers, i);
    if (readers.size() == 1)
      rekeyLastReader(buffer);
  }
  for (unsigned waiter : waiters[i])
    if (--waitingFor[waiter] == 0)
      makeReady(waiter);
}

SmallVector<Operation *> RunScheduler::schedule() {
  for (auto [i, op] : llvm::enumerate(ops))
    position[op] = i;
  numberBuffers();
  addDependences();
  readyKey.resize(ops.size());
  for (unsigned i = 0; i < ops.size(); ++i)
    if (waitingFor[i] == 0)
      makeReady(i);
  SmallVector<Operation *> order;
  while (!ready.empty()) {
    unsigned next = ready.begin()->second;
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
