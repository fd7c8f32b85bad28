//===- MemoryPlan.cpp - Buffers, lifetimes and arena placement ------------===//

#include "blpa/Dialect/Blpa/Transforms/MemoryPlan.h"
#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include "mlir/Analysis/Liveness.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"

#include <map>

using namespace mlir;
using namespace mlir::blpa;

Value mlir::blpa::getBufferRoot(Value v) {
  while (auto view = v.getDefiningOp<ViewLikeOpInterface>())
    v = view.getViewSource();
  if (isa<BlockArgument>(v) || v.getDefiningOp<ParamOp>())
    return Value();
  return v;
}

static int64_t alignTo(int64_t value, int64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

/// Extends `buffer` with the lifetime and uses of `v` (the root or a view).
static void addUses(Buffer &buffer, Value v, const LivenessBlockInfo &info,
                    const DenseMap<Operation *, int64_t> &index) {
  Operation *def = v.getDefiningOp();
  Operation *end = info.getEndOperation(v, def);
  buffer.end = std::max(buffer.end, index.lookup(end));
  for (Operation *user : v.getUsers())
    if (getPhase(def) == Phase::Forward && user->hasAttr(kPhaseAttrName) &&
        getPhase(user) == Phase::Backward)
      buffer.savedActivation = true;
}

/// Counts a saved activation in the plan's totals, by kind.
static void addSavedBytes(MemoryPlan &plan, const Buffer &buffer) {
  plan.savedActivationBytes += buffer.bytes;
  Type type = buffer.root.getType();
  if (isa<PackedType>(type))
    plan.savedPackedBytes += buffer.bytes;
  else if (cast<ShapedType>(type).getRank() <= 1 ||
           buffer.root.getDefiningOp<QuantizeOp>())
    plan.savedPerChannelBytes += buffer.bytes;
  else
    plan.savedFloatBytes += buffer.bytes;
}

/// The buffer of an operand of `op` that result `resultIndex` may take
/// over (InPlaceOpInterface): one of the result's size that dies at `op`.
/// Buffer ends so far are final for a buffer that dies at `op`, since any
/// later use would be a use of the buffer's root or of one of its views,
/// all of them defined before `op`.
static std::optional<size_t> findInPlaceBuffer(Operation *op,
                                               unsigned resultIndex,
                                               int64_t opIndex,
                                               const MemoryPlan &plan) {
  auto inPlace = dyn_cast<InPlaceOpInterface>(op);
  if (!inPlace)
    return std::nullopt;
  SmallVector<unsigned> candidates;
  inPlace.getInPlaceOperands(resultIndex, candidates);
  int64_t bytes = getTensorBytes(op->getResult(resultIndex).getType());
  for (unsigned operandIndex : candidates) {
    Value root = getBufferRoot(op->getOperand(operandIndex));
    auto it = plan.bufferOf.find(root);
    if (!root || it == plan.bufferOf.end())
      continue;
    const Buffer &buffer = plan.buffers[it->second];
    if (buffer.end == opIndex && buffer.bytes == bytes)
      return it->second;
  }
  return std::nullopt;
}

MemoryPlan mlir::blpa::analyzeBuffers(func::FuncOp func, bool inPlace) {
  Block &block = func.getBody().front();
  Liveness liveness(func);
  const LivenessBlockInfo *info = liveness.getLiveness(&block);
  DenseMap<Operation *, int64_t> index;
  for (auto [i, op] : llvm::enumerate(block))
    index[&op] = i;

  MemoryPlan plan;
  for (Operation &op : block) {
    for (auto [resultIndex, result] : llvm::enumerate(op.getResults())) {
      Value root = getBufferRoot(result);
      if (!root)
        continue;
      if (root == result) {
        std::optional<size_t> reused =
            inPlace ? findInPlaceBuffer(&op, resultIndex, index[&op], plan)
                    : std::nullopt;
        if (reused) {
          plan.bufferOf[root] = *reused;
        } else {
          plan.bufferOf[root] = plan.buffers.size();
          Buffer buffer{root, getTensorBytes(root.getType()), index[&op],
                        index[&op]};
          plan.buffers.push_back(buffer);
        }
      }
      addUses(plan.buffers[plan.bufferOf[root]], result, *info, index);
    }
  }

  // Live bytes per op as a running sum of what starts and ends there: saved
  // tensors live across most of the step, so adding each buffer's bytes op
  // by op would be quadratic in the model's depth.
  SmallVector<int64_t> liveChange(block.getOperations().size() + 1, 0);
  for (const Buffer &buffer : plan.buffers) {
    liveChange[buffer.start] += buffer.bytes;
    liveChange[buffer.end + 1] -= buffer.bytes;
    if (buffer.savedActivation)
      addSavedBytes(plan, buffer);
  }
  int64_t live = 0;
  plan.lowerBoundBytes = 0;
  for (int64_t change : ArrayRef(liveChange).drop_back()) {
    live += change;
    plan.lowerBoundBytes = std::max(plan.lowerBoundBytes, live);
  }
  return plan;
}

namespace {
/// A placed buffer's bytes and lifetime, kept by value in offset order so
/// that the search for a gap scans contiguous memory without sorting.
struct PlacedSpan {
  int64_t offset, top, start, end;
};
} // namespace

void mlir::blpa::placeBuffers(MemoryPlan &plan, int64_t alignment,
                              int64_t workspaceBytes) {
  SmallVector<Buffer *> order;
  for (Buffer &buffer : plan.buffers)
    order.push_back(&buffer);
  llvm::stable_sort(order, [](const Buffer *a, const Buffer *b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->start < b->start;
  });

  std::vector<PlacedSpan> placed; // by offset
  plan.arenaBytes = 0;
  for (Buffer *buffer : order) {
    // The lowest offset below, between or above the placed buffers that
    // live at the same time as this one.
    int64_t size = alignTo(buffer->bytes, alignment);
    int64_t offset = 0;
    for (const PlacedSpan &other : placed) {
      if (other.start > buffer->end || buffer->start > other.end)
        continue;
      if (offset + size <= other.offset)
        break;
      offset = std::max(offset, alignTo(other.top, alignment));
    }
    buffer->offset = offset;
    plan.arenaBytes = std::max(plan.arenaBytes, offset + size);
    PlacedSpan span{offset, offset + buffer->bytes, buffer->start, buffer->end};
    placed.insert(llvm::upper_bound(placed, offset,
                                    [](int64_t v, const PlacedSpan &p) {
                                      return v < p.offset;
                                    }),
                  span);
  }
  // The workspace is live throughout, so it simply moves everything up.
  plan.workspaceBytes = alignTo(workspaceBytes, alignment);
  for (Buffer &buffer : plan.buffers)
    buffer.offset += plan.workspaceBytes;
  plan.arenaBytes += plan.workspaceBytes;
  plan.lowerBoundBytes += plan.workspaceBytes;
}

LogicalResult mlir::blpa::verifyPlacement(func::FuncOp func,
                                          const MemoryPlan &plan,
                                          int64_t alignment) {
  for (const Buffer &buffer : plan.buffers)
    if (buffer.offset < plan.workspaceBytes || buffer.offset % alignment != 0 ||
        buffer.offset + buffer.bytes > plan.arenaBytes)
      return func.emitError("memory plan: buffer at offset ")
             << buffer.offset << " (" << buffer.bytes
             << " bytes) is misaligned, in the workspace or outside the "
                "arena";
  // A sweep over the schedule: buffers in order of their first op, the live
  // ones by offset. Live ones never overlap (else the sweep stopped), so a
  // new buffer can only overlap its neighbours in offset order.
  SmallVector<const Buffer *> byStart;
  for (const Buffer &buffer : plan.buffers)
    if (buffer.bytes > 0)
      byStart.push_back(&buffer);
  llvm::stable_sort(byStart, [](const Buffer *a, const Buffer *b) {
    return a->start < b->start;
  });
  std::multimap<int64_t, const Buffer *> liveByOffset;
  auto overlap = [&](const Buffer *a, const Buffer *b) -> LogicalResult {
    if (b->end < a->start || a->offset >= b->offset + b->bytes ||
        b->offset >= a->offset + a->bytes)
      return success();
    return func.emitError("memory plan: buffers at offsets ")
           << a->offset << " and " << b->offset
           << " overlap while both are live";
  };
  for (const Buffer *buffer : byStart) {
    auto next = liveByOffset.lower_bound(buffer->offset);
    // Neighbours that died before this buffer starts are dropped as met.
    while (next != liveByOffset.end() && next->second->end < buffer->start)
      next = liveByOffset.erase(next);
    if (next != liveByOffset.end() && failed(overlap(buffer, next->second)))
      return failure();
    while (next != liveByOffset.begin()) {
      auto previous = std::prev(next);
      if (previous->second->end >= buffer->start) {
        if (failed(overlap(buffer, previous->second)))
          return failure();
        break;
      }
      liveByOffset.erase(previous);
    }
    liveByOffset.emplace(buffer->offset, buffer);
  }
  return success();
}

/// The function whose arena an executable allocates.
static func::FuncOp getPlannedEntry(ModuleOp module) {
  if (auto step = module.lookupSymbol<func::FuncOp>("train_step"))
    return step;
  return module.lookupSymbol<func::FuncOp>("forward");
}

MemoryTotals mlir::blpa::getMemoryTotals(ModuleOp module) {
  MemoryTotals totals;
  func::FuncOp entry = getPlannedEntry(module);
  if (!entry)
    return totals;
  if (auto arena = entry->getAttrOfType<IntegerAttr>("blpa.arena_size"))
    totals.arena = arena.getInt();
  // Each parameter once, however many functions read it; gradient and
  // momentum buffers only where a training step updates it.
  bool training = module.lookupSymbol<func::FuncOp>("train_step") != nullptr;
  llvm::StringSet<> seen;
  module.walk([&](ParamOp param) {
    if (!seen.insert(param.getName()).second)
      return;
    int64_t bytes = getTensorBytes(param.getType());
    if (!param.getTrainable()) {
      totals.state += bytes;
      return;
    }
    totals.parameters += bytes;
    if (training) {
      totals.gradients += bytes;
      totals.optimizerState += bytes;
    }
  });
  for (Type type : entry.getArgumentTypes())
    totals.batch += getTensorBytes(type);
  if (auto forward = module.lookupSymbol<func::FuncOp>("forward"))
    for (Type type : forward.getResultTypes())
      totals.batch += getTensorBytes(type);
  return totals;
}
