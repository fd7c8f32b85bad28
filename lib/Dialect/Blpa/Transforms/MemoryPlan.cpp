//===- MemoryPlan.cpp - Buffers, lifetimes and arena placement ------------===//

#include "blpa/Dialect/Blpa/Transforms/MemoryPlan.h"
#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/bit.h"
#include "llvm/Support/MathExtras.h"

#include <limits>
#include <map>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

using namespace mlir;
using namespace mlir::blpa;

Value mlir::blpa::getBufferRoot(Value v) {
  while (auto view = v.getDefiningOp<ViewLikeOpInterface>())
    v = view.getViewSource();
  if (isa<BlockArgument>(v) || v.getDefiningOp<ParamOp>())
    return Value();
  return v;
}

/// `value` rounded up to `alignment`, a power of two (PlanMemory checks).
static int64_t alignTo(int64_t value, int64_t alignment) {
  assert(llvm::isPowerOf2_64(alignment) && "alignment is a power of two");
  return (value + alignment - 1) & -alignment;
}

namespace {
/// The ops of a function's one block, numbered, with their phases looked up
/// once (a phase is a string attribute; analyzeBuffers runs several times
/// per candidate plan of the budget solver).
struct NumberedOps {
  explicit NumberedOps(Block &block) : block(block) {
    for (auto [i, op] : llvm::enumerate(block)) {
      index[&op] = i;
      forward.push_back(getPhase(&op) == Phase::Forward);
      backward.push_back(isInPhase(&op, Phase::Backward));
    }
  }
  Block &block;
  DenseMap<Operation *, int64_t> index;
  /// Per op: defines forward values (in the forward phase, or in none);
  /// runs in the backward phase.
  SmallVector<bool> forward, backward;
};
} // namespace

/// Extends `buffer` with the lifetime and uses of `v` (the root or a view):
/// to the last op of the block that uses `v` (directly or from a nested
/// region). A function is one block, so nothing is live out of it but what
/// the terminator, its last op, returns.
static void addUses(Buffer &buffer, Value v, const NumberedOps &ops) {
  Operation *def = v.getDefiningOp();
  bool forward = ops.forward[ops.index.lookup(def)];
  for (Operation *user : v.getUsers()) {
    Operation *inBlock = ops.block.findAncestorOpInBlock(*user);
    if (!inBlock)
      continue;
    int64_t at = ops.index.lookup(inBlock);
    buffer.end = std::max(buffer.end, at);
    if (forward &&
        (inBlock == user ? ops.backward[at] : isInPhase(user, Phase::Backward)))
      buffer.savedActivation = true;
  }
}

/// Counts a saved activation in the plan's totals, by kind.
static void addSavedBytes(MemoryPlan &plan, const Buffer &buffer) {
  plan.savedActivationBytes += buffer.bytes;
  Type type = buffer.root.getType();
  if (isa<PackedType>(type))
    plan.savedPackedBytes += buffer.bytes;
  else if (cast<ShapedType>(type).getRank() <= 1 ||
           isCodeParams(buffer.root))
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
  NumberedOps ops(block);
  MemoryPlan plan;
  for (auto [opIndex, op] : llvm::enumerate(block)) {
    int64_t at = opIndex;
    for (auto [resultIndex, result] : llvm::enumerate(op.getResults())) {
      Value root = getBufferRoot(result);
      if (!root)
        continue;
      if (root == result) {
        std::optional<size_t> reused =
            inPlace ? findInPlaceBuffer(&op, resultIndex, at, plan)
                    : std::nullopt;
        if (reused) {
          plan.bufferOf[root] = *reused;
          plan.buffers[*reused].lastHolder = root;
        } else {
          plan.bufferOf[root] = plan.buffers.size();
          Buffer buffer{root, root, getTensorBytes(root.getType()), at, at};
          plan.buffers.push_back(buffer);
        }
      }
      addUses(plan.buffers[plan.bufferOf[root]], result, ops);
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
/// The placed buffers in offset order, column by column: the search for a
/// gap rejects most of them by lifetime, and the test runs over contiguous
/// columns a block at a time, without branches (the budget solver places
/// ten thousand buffers per candidate plan of ResNet-1001). The columns
/// are padded to whole blocks with entries that live at no time.
class PlacedBuffers {
public:
  /// The lowest offset (a multiple of `alignment`) below, between or above
  /// the placed buffers that live at the same time as [start, end] where
  /// `size` bytes fit.
  int64_t findOffset(int32_t start, int32_t end, int64_t size,
                     int64_t alignment) const;
  void insert(int64_t offset, int64_t top, int32_t start, int32_t end);

private:
  /// Bit k set where placed buffer `base` + k lives at some time of
  /// [start, end].
  uint32_t getLiveMask(size_t base, int32_t start, int32_t end) const;

  static constexpr size_t kBlock = 16;
  size_t count = 0;
  SmallVector<int64_t> offsets, tops;
  /// Op indices: 32 bits compare four at a time.
  SmallVector<int32_t> starts, ends;
};
} // namespace

uint32_t PlacedBuffers::getLiveMask(size_t base, int32_t start,
                                    int32_t end) const {
  uint32_t mask = 0;
#if defined(__SSE2__)
  // Four lifetimes per compare; SSE2 is in every x86-64 CPU.
  __m128i first = _mm_set1_epi32(start), last = _mm_set1_epi32(end);
  for (size_t k = 0; k < kBlock; k += 4) {
    __m128i starts4 = _mm_loadu_si128(
        reinterpret_cast<const __m128i *>(starts.data() + base + k));
    __m128i ends4 = _mm_loadu_si128(
        reinterpret_cast<const __m128i *>(ends.data() + base + k));
    __m128i disjoint = _mm_or_si128(_mm_cmpgt_epi32(starts4, last),
                                    _mm_cmpgt_epi32(first, ends4));
    uint32_t disjointBits = _mm_movemask_ps(_mm_castsi128_ps(disjoint)) & 0xF;
    mask |= (~disjointBits & 0xFu) << k;
  }
#else
  for (size_t k = 0; k < kBlock; ++k)
    mask |= uint32_t(starts[base + k] <= end && start <= ends[base + k]) << k;
#endif
  return mask;
}

int64_t PlacedBuffers::findOffset(int32_t start, int32_t end, int64_t size,
                                  int64_t alignment) const {
  int64_t offset = 0;
  for (size_t base = 0; base < offsets.size(); base += kBlock) {
    for (uint32_t live = getLiveMask(base, start, end); live;
         live &= live - 1) {
      size_t other = base + llvm::countr_zero(live);
      if (offset + size <= offsets[other])
        return offset;
      offset = std::max(offset, alignTo(tops[other], alignment));
    }
  }
  return offset;
}

void PlacedBuffers::insert(int64_t offset, int64_t top, int32_t start,
                           int32_t end) {
  if (count == offsets.size()) {
    // A new block of padding: offsets past any buffer's, no lifetime.
    offsets.append(kBlock, std::numeric_limits<int64_t>::max());
    tops.append(kBlock, 0);
    starts.append(kBlock, std::numeric_limits<int32_t>::max());
    ends.append(kBlock, std::numeric_limits<int32_t>::min());
  }
  size_t at = llvm::upper_bound(ArrayRef(offsets).take_front(count), offset) -
              offsets.begin();
  // The padding entry at `count` makes room.
  auto makeRoom = [&](auto &column) {
    std::move_backward(column.begin() + at, column.begin() + count,
                       column.begin() + count + 1);
  };
  makeRoom(offsets);
  makeRoom(tops);
  makeRoom(starts);
  makeRoom(ends);
  offsets[at] = offset;
  tops[at] = top;
  starts[at] = start;
  ends[at] = end;
  ++count;
}

void mlir::blpa::placeBuffers(MemoryPlan &plan, int64_t alignment,
                              int64_t workspaceBytes) {
  SmallVector<Buffer *> order;
  for (Buffer &buffer : plan.buffers)
    order.push_back(&buffer);
  llvm::stable_sort(order, [](const Buffer *a, const Buffer *b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->start < b->start;
  });

  PlacedBuffers placed;
  plan.arenaBytes = 0;
  for (Buffer *buffer : order) {
    assert(buffer->end <= std::numeric_limits<int32_t>::max() &&
           "op indices fit 32 bits");
    int32_t start = buffer->start, end = buffer->end;
    int64_t size = alignTo(buffer->bytes, alignment);
    buffer->offset = placed.findOffset(start, end, size, alignment);
    plan.arenaBytes = std::max(plan.arenaBytes, buffer->offset + size);
    placed.insert(buffer->offset, buffer->offset + buffer->bytes, start, end);
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
