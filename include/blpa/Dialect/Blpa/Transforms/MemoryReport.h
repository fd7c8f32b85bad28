//===- MemoryReport.h - Where a planned arena's bytes go --------*- C++ -*-===//
//
// What --blpa-plan-memory tells a user about a plan beyond its totals: live
// bytes over the schedule by category (the --memory-timeline SVG), what is
// live at the peak, and the largest buffers with their op, ONNX node and
// live range (the JSON report and the --print-memory table).
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_DIALECT_BLPA_TRANSFORMS_MEMORYREPORT_H
#define BLPA_DIALECT_BLPA_TRANSFORMS_MEMORYREPORT_H

#include "blpa/Dialect/Blpa/Transforms/MemoryPlan.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"

#include <array>

namespace mlir {
namespace blpa {

/// What a transient buffer holds, from its defining op and its readers.
enum class BufferCategory {
  /// Saved for the backward pass as packed codes.
  SavedCodes,
  /// Saved for the backward pass as floats (tensors kept exact, batch
  /// statistics and quantization ranges).
  SavedFloat,
  /// Forward values that die in the forward pass.
  Activations,
  /// Decoded or recomputed activations in the backward pass.
  Decoded,
  /// Gradients and other backward values.
  Gradients,
};
constexpr unsigned kNumBufferCategories = 5;

BufferCategory getBufferCategory(const Buffer &buffer);
/// "saved_codes", "saved_float32", "activations", "decoded", "gradients".
llvm::StringRef stringifyBufferCategory(BufferCategory category);

/// Live bytes per category at every op of the planned function.
struct MemoryTimeline {
  SmallVector<std::array<int64_t, kNumBufferCategories>> liveBytes;
  /// The first op where the total is largest.
  int64_t peakOp = 0;
  /// The first op of the backward phase (the number of ops when none).
  int64_t backwardStart = 0;
};

MemoryTimeline computeTimeline(func::FuncOp func, const MemoryPlan &plan);

/// "1.50 GiB", "512 bytes".
std::string formatSize(int64_t bytes);

/// The ONNX node an op came from (its NameLoc), or "".
std::string getNodeName(Operation *op);

/// The report's "at_peak", "peak_op" and "largest_buffers" entries.
void addBreakdownToReport(llvm::json::Object &report, func::FuncOp func,
                          const MemoryPlan &plan,
                          const MemoryTimeline &timeline);

/// The --print-memory table.
void printMemoryTable(llvm::raw_ostream &os, func::FuncOp func,
                      const MemoryPlan &plan, const MemoryTotals &totals,
                      const MemoryTimeline &timeline);

/// A self-contained SVG of live bytes over the schedule, stacked by
/// category, with the forward/backward boundary and the peak marked.
void writeTimelineSvg(llvm::raw_ostream &os, func::FuncOp func,
                      const MemoryTimeline &timeline);

} // namespace blpa
} // namespace mlir

#endif // BLPA_DIALECT_BLPA_TRANSFORMS_MEMORYREPORT_H
