//===- MemoryReport.h - Where a planned arena's bytes go --------*- C++ -*-===//
//
// What --blpa-plan-memory tells a user about a plan beyond its totals: live
// bytes over the schedule by category (the --memory-timeline SVG), what is
// live at the peak, the largest buffers with their op, ONNX node and live
// range, and what is kept of each saved tensor (the JSON report and the
// --print-memory table).
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
  /// Activations decoded from codes in the backward pass (isDecoder).
  Decoded,
  /// Forward values computed again in the backward pass: results of ops
  /// with blpa.recomputes (--blpa-recompute's copies, the ReLU outputs
  /// --blpa-fuse-batch-norm-relu recomputes).
  Recomputed,
  /// Gradients and other backward values.
  Gradients,
  /// Softmax outputs saved for the backward pass (a transformer's attention
  /// maps, [B * heads, T, T] per layer), which stay float32.
  SavedAttention,
};
constexpr unsigned kNumBufferCategories = 7;

BufferCategory getBufferCategory(const Buffer &buffer);
/// "saved_codes", "saved_float32", "saved_attention", "activations",
/// "decoded", "recomputed", "gradients".
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

/// One tensor that the backward phase of a planned function reads from its
/// forward phase, as the plan keeps it: after --blpa-compress-activations,
/// so codes stand for the tensor they encode. The cost model adds what each
/// choice costs (PredictedCosts, CostModel::predictCosts).
struct SavedTensor {
  /// The op whose result is kept (an encoder, for codes), or the op the
  /// recompute pass re-runs.
  Operation *keptBy = nullptr;
  /// The result kept (codes, for codes); null for recompute.
  Value kept;
  /// The op of the tensor the entry stands for: the quantized value's
  /// producer for generic codes, else `keptBy`.
  Operation *source = nullptr;
  /// Shape of the tensor it stands for.
  SmallVector<int64_t> shape;
  /// "float32", "8", "4", "2" (value codes of that width), "mask",
  /// "argmax", "region" (exact codes), or "recompute" (a forward op marked
  /// blpa.act_choice = "recompute" that the backward phase no longer reads).
  std::string choice;
  /// Bytes kept for the backward pass: the tensor, or its codes plus the
  /// op's per-channel floats (quantization ranges, inv_std) that decode
  /// them; 0 for recompute. Over all entries: saved_activation_bytes.
  int64_t bytes = 0;
};

/// The saved tensors of `func` in schedule order: the order of the report's
/// "saved_tensors", so a later stage can add its fields by index.
SmallVector<SavedTensor> getSavedTensors(func::FuncOp func,
                                         const MemoryPlan &plan);

/// Whether `op` decodes codes: a backward op that reads packed codes and
/// nothing computed in the backward phase (no gradient), so that it only
/// turns what the forward phase kept back into values.
bool isDecoder(Operation *op);

/// An op of the planned step that a saved tensor's choice adds, and the
/// share of its time that the tensor accounts for.
struct ChoiceOp {
  Operation *op;
  double share;
};

/// The ops that `tensor`'s choice adds to the step over keeping it float32,
/// as the IR says: for codes, the encoder when it is an op of its own (a
/// forward op whose results only the backward phase reads, such as
/// blpa.quantize; an op that encodes in its own kernel, such as
/// blpa.batch_norm_encode, is not one) and every decoder of the codes
/// (isDecoder); for recompute, the backward ops whose blpa.recomputes names
/// the op's blpa.recompute_id, a fused copy of n ops counting 1/n for each.
/// None for float32.
SmallVector<ChoiceOp> getChoiceOps(const SavedTensor &tensor);

/// What a saved tensor's choice costs.
struct ChoiceCost {
  /// Predicted seconds of the ops of getChoiceOps, each by its share.
  double seconds = 0;
  /// The gradient-error proxy of value codes (0 for float32, recompute and
  /// exact codes).
  double gradientError = 0;
};

/// What each saved tensor's choice costs, from the cost model
/// (CostModel::predictCosts), for the report and the table.
struct PredictedCosts {
  /// Predicted seconds of one execution of the whole function.
  double stepSeconds = 0;
  /// By index of getSavedTensors.
  SmallVector<ChoiceCost> tensors;
};

/// The report's "at_peak", "peak_op", "largest_buffers" and
/// "saved_tensors" entries; with `costs`, "predicted_step_seconds" and each
/// entry's "predicted_seconds" and "gradient_error".
void addBreakdownToReport(llvm::json::Object &report, func::FuncOp func,
                          const MemoryPlan &plan,
                          const MemoryTimeline &timeline,
                          const PredictedCosts *costs = nullptr);

/// The --print-memory table (with `costs`, the predicted step time and each
/// saved tensor's added time and gradient error).
void printMemoryTable(llvm::raw_ostream &os, func::FuncOp func,
                      const MemoryPlan &plan, const MemoryTotals &totals,
                      const MemoryTimeline &timeline,
                      const PredictedCosts *costs = nullptr);

/// A self-contained SVG of live bytes over the schedule, stacked by
/// category, with the forward/backward boundary and the peak marked.
void writeTimelineSvg(llvm::raw_ostream &os, func::FuncOp func,
                      const MemoryTimeline &timeline);

} // namespace blpa
} // namespace mlir

#endif // BLPA_DIALECT_BLPA_TRANSFORMS_MEMORYREPORT_H
