//===- PrintOpCosts.cpp - The cost model's figures, printed ---------------===//
//
// --blpa-print-op-costs makes the cost model's per-op figures visible, so
// that lit tests can check them against values derived by hand and Python
// tests can read the gradient-error proxy. It changes nothing.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/CostModel.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "llvm/Support/FormatVariadic.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPAPRINTOPCOSTS
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

/// Whether a backward op reads `v`, a forward-phase value.
static bool isSaved(Value v) {
  return llvm::any_of(v.getUsers(), [](Operation *user) {
    return isInPhase(user, Phase::Backward);
  });
}

static void printFunction(llvm::raw_ostream &os, func::FuncOp fn,
                          const CostModel &model) {
  StringRef name = fn.getName();
  for (auto [index, op] : llvm::enumerate(fn.getBody().front())) {
    if (op.hasTrait<OpTrait::IsTerminator>())
      continue;
    OpCost cost = getOpCost(&op);
    auto call = dyn_cast<RuntimeCallOpInterface>(&op);
    os << llvm::formatv("cost @{0} #{1} {2} node={3} calls={4} flops={5:F0} "
                        "bytes={6:F0} seconds={7:e} shapes={8}\n",
                        name, index, op.getName(), getNodeName(&op),
                        call ? call.getNumRuntimeCalls() : 0, cost.flops,
                        cost.bytes, model.seconds(&op),
                        getShapeSignature(&op));
    if (!isInPhase(&op, Phase::Forward))
      continue;
    // A batch norm's codes have a figure even when only its gradient reads
    // them (through its input).
    for (OpResult result : op.getResults())
      if (isSaved(result) || model.gradientError(result, 2) > 0)
        os << llvm::formatv(
            "saved @{0} #{1} {2} node={3} result={4} error8={5:e} "
            "error4={6:e} error2={7:e}\n",
            name, index, op.getName(), getNodeName(&op),
            result.getResultNumber(),
            model.gradientError(result, 8), model.gradientError(result, 4),
            model.gradientError(result, 2));
  }
  os << llvm::formatv("total @{0} seconds={1:e}\n", name, model.seconds(fn));
}

namespace {
struct PrintOpCostsPass
    : public blpa::impl::BlpaPrintOpCostsBase<PrintOpCostsPass> {
  using BlpaPrintOpCostsBase::BlpaPrintOpCostsBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    llvm::Expected<CostModel> model = CostModel::forModule(module, *profile);
    if (!model) {
      emitError(module.getLoc(), llvm::toString(model.takeError()));
      return signalPassFailure();
    }
    llvm::outs() << "model fingerprint=" << getModelFingerprint(module)
                 << " batch=" << getModelBatchSize(module) << "\n";
    for (func::FuncOp fn : module.getOps<func::FuncOp>())
      printFunction(llvm::outs(), fn, *model);
    markAllAnalysesPreserved();
  }
};
} // namespace
