//===- MemoryBudget.h - --memory-limit and --batch-size max -----*- C++ -*-===//
//
// What blpa-opt tells a user whose model must fit in a given memory: the
// plan's total against the limit, the bit widths that would fit at this
// batch, and the largest batch that fits at each bit width. Each answer is
// a real plan (the pipeline up to --blpa-plan-memory at that batch and bit
// width), found with few of them: the total is affine in the batch size
// but for alignment, so two plans predict the answer and a short search
// around the prediction confirms it.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_TOOLS_BLPA_OPT_MEMORYBUDGET_H
#define BLPA_TOOLS_BLPA_OPT_MEMORYBUDGET_H

#include "blpa/Dialect/Blpa/Transforms/MemoryPlan.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"

#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/Support/Error.h"

#include <string>

namespace mlir {
namespace blpa {

/// Bytes from "1073741824", "512MiB", "2GB", "1.5 GiB" (KB, MB, GB, TB are
/// powers of 1000; KiB, MiB, GiB, TiB powers of 1024), given to `--flag`
/// (the error names it); 0 only where `allowZero`.
llvm::Expected<int64_t> parseMemorySize(llvm::StringRef text,
                                        llvm::StringRef flag,
                                        bool allowZero = false);

/// The totals of the model's plan at a batch size and bit width; failure
/// when the model cannot be compiled so.
using PlanTotalsFn =
    llvm::function_ref<FailureOr<MemoryTotals>(int64_t batch, int bits)>;

/// The largest batch that fits in `limit` bytes at `bits` as the plans at
/// batch 1 and 2 predict it (the total is affine in the batch size but for
/// alignment): 0 when batch 1 does not fit, failure when the model cannot
/// be planned.
FailureOr<int64_t> predictLargestBatch(PlanTotalsFn planTotals, int bits,
                                       int64_t limit);

/// The largest batch whose plan fits in `limit` bytes at `bits`: 0 when
/// not even batch 1 fits, failure when the model cannot be planned.
FailureOr<int64_t> findLargestBatch(PlanTotalsFn planTotals, int bits,
                                    int64_t limit);

/// One line for a plan over the limit: by how much, (with `bitsCanChange`)
/// which --act-bits would fit at this batch, and (with `batchCanChange`)
/// the largest batch that fits at each bit width.
std::string explainOverLimit(PlanTotalsFn planTotals, const MemoryTotals &plan,
                             int64_t batch, int bits, int64_t limit,
                             bool batchCanChange, bool bitsCanChange);

} // namespace blpa
} // namespace mlir

#endif // BLPA_TOOLS_BLPA_OPT_MEMORYBUDGET_H
