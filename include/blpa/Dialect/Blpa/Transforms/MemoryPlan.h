//===- MemoryPlan.h - Buffers, lifetimes and arena placement ----*- C++ -*-===//
//
// The analysis shared by --blpa-plan-memory, its memory report and the
// lowering: which values own a transient buffer, how long each buffer lives
// over the function's op order, which buffers are saved activations, and
// where each one sits in the arena.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_DIALECT_BLPA_TRANSFORMS_MEMORYPLAN_H
#define BLPA_DIALECT_BLPA_TRANSFORMS_MEMORYPLAN_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/DenseMap.h"

namespace mlir {
namespace blpa {

/// One transient buffer: an op result that is not a view, together with the
/// views of it. Lifetimes are inclusive op indices in the function's block.
struct Buffer {
  Value root;
  /// The last value written into the buffer: the root, or a result that
  /// took the buffer over in place (a softmax over its scores).
  Value lastHolder;
  int64_t bytes = 0;
  int64_t start = 0;
  int64_t end = 0;
  /// Defined in the forward phase and read in the backward phase.
  bool savedActivation = false;
  int64_t offset = -1;
};

struct MemoryPlan {
  SmallVector<Buffer> buffers;
  /// The buffer (index into `buffers`) of each buffer-owning value: roots,
  /// and results written in place over a buffer whose holder died
  /// (InPlaceOpInterface), which share its index.
  DenseMap<Value, size_t> bufferOf;
  int64_t arenaBytes = 0;
  /// Scratch space for library calls (cuDNN) at the arena's start, live
  /// over the whole function; every buffer is placed after it.
  int64_t workspaceBytes = 0;
  /// The largest total of live buffer bytes at any op: no placement can do
  /// better.
  int64_t lowerBoundBytes = 0;
  int64_t savedActivationBytes = 0;
  /// savedActivationBytes split: packed codes, per-channel vectors (batch
  /// statistics, quantization ranges), and tensors kept in float32.
  int64_t savedPackedBytes = 0;
  int64_t savedPerChannelBytes = 0;
  int64_t savedFloatBytes = 0;
};

/// The buffer-owning value behind `v`: `v` itself, or the source of the view
/// chain that produced it. Null for values outside the arena (parameters and
/// function arguments, and views of them).
Value getBufferRoot(Value v);

/// Buffers and their lifetimes (each to its last user in the block) and the
/// lower bound; offsets are not assigned. With `inPlace`, a result of an
/// InPlaceOpInterface op takes over an operand's buffer that dies there.
MemoryPlan analyzeBuffers(func::FuncOp func, bool inPlace = true);

/// Assigns every buffer an offset (multiple of `alignment`) so that buffers
/// whose lifetimes overlap are disjoint: largest first, lowest fitting
/// offset, all after `workspaceBytes` (rounded up to the alignment) of
/// workspace. Sets arenaBytes and workspaceBytes, and counts the workspace
/// in the lower bound (it is live throughout).
void placeBuffers(MemoryPlan &plan, int64_t alignment,
                  int64_t workspaceBytes = 0);

/// Checks a placement independently of how it was made: every buffer is
/// aligned, inside the arena and after the workspace, and no two buffers that
/// are live at the same op share a byte. Reports the first violation on `func`.
LogicalResult verifyPlacement(func::FuncOp func, const MemoryPlan &plan,
                              int64_t alignment);

/// Everything an executable of a planned module allocates at start, by
/// category (the driver's start-up check adds up the same).
struct MemoryTotals {
  /// The arena of @train_step, or of @forward in an inference module.
  int64_t arena = 0;
  /// Trainable parameters, their gradients and their momenta (every
  /// trainable parameter has both buffers), and non-trainable state
  /// (batch-norm running statistics).
  int64_t parameters = 0, gradients = 0, optimizerState = 0, state = 0;
  /// One batch: the step's data inputs and labels, and @forward's outputs.
  int64_t batch = 0;

  int64_t persistent() const {
    return parameters + gradients + optimizerState + state;
  }
  int64_t total() const { return arena + persistent() + batch; }
};

/// The totals of a module after --blpa-plan-memory.
MemoryTotals getMemoryTotals(ModuleOp module);

} // namespace blpa
} // namespace mlir

#endif // BLPA_DIALECT_BLPA_TRANSFORMS_MEMORYPLAN_H
