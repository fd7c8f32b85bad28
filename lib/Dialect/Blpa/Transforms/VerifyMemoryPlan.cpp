//===- VerifyMemoryPlan.cpp - An independent check of a placed arena ------===//
//
// --blpa-verify-memory-plan re-derives every buffer's lifetime from the IR
// (mlir::Liveness, views extending their source) and checks the offsets
// --blpa-plan-memory recorded: every buffer inside the arena, no two
// buffers that are live at the same op sharing a byte, except where an
// InPlaceOpInterface op writes its result over an operand that dies there.
// It shares nothing with the planner but the IR, so a planner bug cannot
// hide itself.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Analysis/Liveness.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/Support/FormatVariadic.h"

#include <map>
#include <set>

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPAVERIFYMEMORYPLAN
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

/// One value with bytes of its own in the arena, live over ops
/// [start, end] of the block (its views' uses included).
struct Allocation {
  Value value;
  int64_t offset, bytes, start, end;
};

/// The recorded offset of `v` (the `blpa.offsets` entry of its result), or
/// -1 outside the arena.
int64_t recordedOffset(Value v) {
  auto result = dyn_cast<OpResult>(v);
  if (!result)
    return -1;
  auto offsets =
      result.getOwner()->getAttrOfType<DenseI64ArrayAttr>("blpa.offsets");
  if (!offsets || offsets.size() <= result.getResultNumber())
    return -1;
  return offsets[result.getResultNumber()];
}

/// The non-view value whose bytes `v` is.
Value viewRoot(Value v) {
  while (auto view = v.getDefiningOp<ViewLikeOpInterface>())
    v = view.getViewSource();
  return v;
}

/// "%name (N bytes at offset O, live over ops S..E)" for diagnostics.
std::string describe(const Allocation &a) {
  std::string name;
  llvm::raw_string_ostream os(name);
  a.value.printAsOperand(os, OpPrintingFlags());
  return llvm::formatv("{0} ({1} bytes at offset {2}, live over ops {3}..{4})",
                       name, a.bytes, a.offset, a.start, a.end)
      .str();
}

/// Whether `later` may take over `earlier`'s bytes: `later` is a result of
/// the InPlaceOpInterface op at which `earlier` dies, and that op names an
/// operand viewing `earlier` as one `later` may be written over.
bool isInPlaceHandOver(const Allocation &earlier, const Allocation &later) {
  if (earlier.end != later.start)
    return false;
  auto result = cast<OpResult>(later.value);
  auto op = dyn_cast<InPlaceOpInterface>(result.getOwner());
  if (!op)
    return false;
  SmallVector<unsigned> operands;
  op.getInPlaceOperands(result.getResultNumber(), operands);
  return llvm::any_of(operands, [&](unsigned i) {
    return viewRoot(op->getOperand(i)) == earlier.value &&
           earlier.offset == later.offset && earlier.bytes == later.bytes;
  });
}

/// The allocations live at the sweep's current op, by offset and by end.
struct LiveSet {
  std::multimap<int64_t, const Allocation *> byOffset;
  std::set<std::pair<int64_t, const Allocation *>> byEnd;

  void insert(const Allocation &a) {
    byOffset.emplace(a.offset, &a);
    byEnd.emplace(a.end, &a);
  }
  std::multimap<int64_t, const Allocation *>::iterator
  erase(std::multimap<int64_t, const Allocation *>::iterator it) {
    byEnd.erase({it->second->end, it->second});
    return byOffset.erase(it);
  }
  void dropEndedBefore(int64_t op) {
    while (!byEnd.empty() && byEnd.begin()->first < op) {
      const Allocation *a = byEnd.begin()->second;
      auto [first, last] = byOffset.equal_range(a->offset);
      for (auto it = first; it != last; ++it)
        if (it->second == a) {
          erase(it);
          break;
        }
    }
  }
};

struct VerifyMemoryPlanPass
    : public blpa::impl::BlpaVerifyMemoryPlanBase<VerifyMemoryPlanPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (func->hasAttr("blpa.arena_size") && failed(verify(func)))
        return signalPassFailure();
  }

  /// The arena's allocations in order of their first op.
  SmallVector<Allocation> collect(func::FuncOp func) {
    Block &block = func.getBody().front();
    Liveness liveness(func);
    const LivenessBlockInfo *info = liveness.getLiveness(&block);
    DenseMap<Operation *, int64_t> index;
    for (auto [i, op] : llvm::enumerate(block))
      index[&op] = i;
    SmallVector<Allocation> allocations;
    DenseMap<Value, size_t> allocationOf;
    for (Operation &op : block)
      for (Value result : op.getResults()) {
        Value root = viewRoot(result);
        int64_t offset = recordedOffset(root);
        if (offset < 0)
          continue;
        int64_t end = index[info->getEndOperation(result, &op)];
        if (root == result) {
          allocationOf[root] = allocations.size();
          allocations.push_back(
              {root, offset, getTensorBytes(root.getType()), index[&op], end});
        }
        Allocation &a = allocations[allocationOf[root]];
        a.end = std::max(a.end, end);
      }
    return allocations;
  }

  /// Sweeps the allocations in op order keeping the live ones by offset:
  /// a new one may only touch its neighbours by an in-place hand-over.
  LogicalResult verify(func::FuncOp func) {
    int64_t arenaBytes =
        func->getAttrOfType<IntegerAttr>("blpa.arena_size").getInt();
    auto workspace = func->getAttrOfType<IntegerAttr>("blpa.workspace_bytes");
    int64_t workspaceBytes = workspace ? workspace.getInt() : 0;
    SmallVector<Allocation> allocations = collect(func);
    LiveSet live;
    for (const Allocation &a : allocations) {
      if (a.offset + a.bytes > arenaBytes)
        return fail(func, a,
                    "ends past the arena (" + std::to_string(arenaBytes) +
                        " bytes)");
      // The workspace is the libraries' scratch at any time.
      if (a.offset < workspaceBytes)
        return fail(func, a,
                    "overlaps the workspace (" +
                        std::to_string(workspaceBytes) + " bytes)");
      live.dropEndedBefore(a.start);
      // Live allocations are disjoint, so only those starting before a's
      // end and ending after its start can overlap it: the last one
      // starting at or before a's offset, and those starting inside a.
      auto it = live.byOffset.upper_bound(a.offset);
      if (it != live.byOffset.begin())
        --it;
      while (it != live.byOffset.end() && it->first < a.offset + a.bytes) {
        const Allocation &other = *it->second;
        if (other.offset + other.bytes <= a.offset) {
          ++it;
          continue;
        }
        if (!isInPlaceHandOver(other, a))
          return fail(func, a, "overlaps " + describe(other));
        it = live.erase(it);
      }
      live.insert(a);
    }
    return success();
  }

  LogicalResult fail(func::FuncOp func, const Allocation &a,
                     const std::string &what) {
    Operation *op = a.value.getDefiningOp();
    return (op ? op->emitError() : func.emitError())
           << "memory plan: " << describe(a) << " " << what;
  }
};

} // namespace
