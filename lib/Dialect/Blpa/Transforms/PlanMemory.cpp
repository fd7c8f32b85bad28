//===- PlanMemory.cpp - Arena placement of transient tensors --------------===//

#include "blpa/Dialect/Blpa/Transforms/CostModel.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryPlan.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/ToolOutputFile.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPAPLANMEMORY
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

/// Records the plan in the IR: `blpa.offsets` on every op with results (-1
/// for results outside the arena, views carry their source's offset) and the
/// totals on the function.
void annotate(func::FuncOp func, const MemoryPlan &plan) {
  Builder b(func.getContext());
  func.walk([&](Operation *op) {
    if (op->getNumResults() == 0 || isa<func::FuncOp>(op))
      return;
    SmallVector<int64_t> offsets;
    for (Value result : op->getResults()) {
      Value root = getBufferRoot(result);
      offsets.push_back(root ? plan.buffers[plan.bufferOf.at(root)].offset
                             : -1);
    }
    op->setAttr("blpa.offsets", b.getDenseI64ArrayAttr(offsets));
  });
  func->setAttr("blpa.arena_size", b.getI64IntegerAttr(plan.arenaBytes));
  if (plan.workspaceBytes)
    func->setAttr("blpa.workspace_bytes",
                  b.getI64IntegerAttr(plan.workspaceBytes));
  else
    func->removeAttr("blpa.workspace_bytes");
  func->setAttr("blpa.lower_bound_bytes",
                b.getI64IntegerAttr(plan.lowerBoundBytes));
  func->setAttr("blpa.saved_activation_bytes",
                b.getI64IntegerAttr(plan.savedActivationBytes));
}

llvm::json::Object planToJson(const MemoryPlan &plan) {
  return llvm::json::Object{
      {"peak_bytes", plan.arenaBytes},
      {"lower_bound_bytes", plan.lowerBoundBytes},
      {"saved_activation_bytes", plan.savedActivationBytes},
      {"saved_packed_bytes", plan.savedPackedBytes},
      {"saved_per_channel_bytes", plan.savedPerChannelBytes},
      {"saved_float32_bytes", plan.savedFloatBytes},
      {"workspace_bytes", plan.workspaceBytes},
      {"buffers", static_cast<int64_t>(plan.buffers.size())}};
}

/// The scratch the hungriest op of `func` takes on the CPU over its whole
/// batch, at most `limit` bytes.
int64_t getCpuWorkspaceBytes(func::FuncOp func, int64_t limit) {
  int64_t bytes = 0;
  func.walk([&](ScratchOpInterface op) {
    bytes = std::max(bytes, op.getCpuScratchBytes());
  });
  return std::min(bytes, limit);
}

struct PlanMemoryPass : public blpa::impl::BlpaPlanMemoryBase<PlanMemoryPass> {
  using blpa::impl::BlpaPlanMemoryBase<PlanMemoryPass>::BlpaPlanMemoryBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (alignment <= 0 || (alignment & (alignment - 1)) != 0) {
      module.emitError("alignment must be a power of two");
      return signalPassFailure();
    }
    if (workspaceBytes < 0 || cpuWorkspaceLimit < 0) {
      module.emitError(workspaceBytes < 0 ? "workspace-bytes"
                                          : "cpu-workspace-limit")
          << " must not be negative";
      return signalPassFailure();
    }
    llvm::json::Object functions;
    std::optional<MemoryPlan> reported;
    func::FuncOp reportedFunc;
    for (auto func : module.getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      MemoryPlan plan = analyzeBuffers(func, inPlace);
      placeBuffers(
          plan, alignment,
          std::max<int64_t>(workspaceBytes,
                            getCpuWorkspaceBytes(func, cpuWorkspaceLimit)));
      // The placement is checked on every compiled model, not only in
      // tests: a wrong plan would silently corrupt training.
      if (failed(verifyPlacement(func, plan, alignment)))
        return signalPassFailure();
      annotate(func, plan);
      functions[func.getName()] = planToJson(plan);
      // The report's headline figures describe the training step when there
      // is one, else the forward pass.
      if (!reported || func.getName() == "train_step") {
        reported = plan;
        reportedFunc = func;
      }
    }
    if (!reported)
      return;
    if (!print && timelineFile.empty() && reportFile.empty())
      return;
    MemoryTimeline timeline = computeTimeline(reportedFunc, *reported);
    FailureOr<PredictedCosts> costs = predict(module, reportedFunc, *reported);
    if (failed(costs))
      return signalPassFailure();
    if (print)
      printMemoryTable(llvm::outs(), reportedFunc, *reported,
                       getMemoryTotals(module), timeline, &*costs);
    if (!timelineFile.empty() &&
        failed(writeAtomically(module, timelineFile, [&](raw_ostream &os) {
          writeTimelineSvg(os, reportedFunc, timeline);
        })))
      return signalPassFailure();
    if (!reportFile.empty() &&
        failed(writeReport(module, reportedFunc, *reported, timeline, *costs,
                           std::move(functions))))
      return signalPassFailure();
  }

  /// The cost model's predictions for the saved tensors of `func`.
  FailureOr<PredictedCosts> predict(ModuleOp module, func::FuncOp func,
                                    const MemoryPlan &plan) {
    llvm::Expected<CostModel> model = CostModel::forModule(module, *profile);
    if (!model)
      return module.emitError(llvm::toString(model.takeError()));
    return model->predictCosts(func, getSavedTensors(func, plan));
  }

  /// Writes `path` through a temporary renamed on success, so that a
  /// failure never leaves a half-written file.
  LogicalResult writeAtomically(ModuleOp module, StringRef path,
                                llvm::function_ref<void(raw_ostream &)> write) {
    std::string error;
    auto file = openOutputFile(path, &error);
    if (!file)
      return module.emitError("cannot write ") << path << ": " << error;
    write(file->os());
    file->keep();
    return success();
  }

  LogicalResult writeReport(ModuleOp module, func::FuncOp func,
                            const MemoryPlan &plan,
                            const MemoryTimeline &timeline,
                            const PredictedCosts &costs,
                            llvm::json::Object functions) {
    llvm::json::Object report = planToJson(plan);
    addBreakdownToReport(report, func, plan, timeline, &costs);
    MemoryTotals totals = getMemoryTotals(module);
    report["arena_bytes"] = totals.arena;
    report["persistent_bytes"] = totals.persistent();
    report["persistent"] =
        llvm::json::Object{{"parameters", totals.parameters},
                           {"gradients", totals.gradients},
                           {"optimizer_state", totals.optimizerState},
                           {"state", totals.state}};
    report["batch_bytes"] = totals.batch;
    report["total_bytes"] = totals.total();
    report["functions"] = std::move(functions);
    return writeAtomically(module, reportFile, [&](raw_ostream &os) {
      os << llvm::formatv("{0:2}", llvm::json::Value(std::move(report)))
         << "\n";
    });
  }
};

} // namespace
