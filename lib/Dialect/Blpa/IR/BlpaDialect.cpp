//===- BlpaDialect.cpp - The blpa dialect ---------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaDialect.h"
#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::blpa;

#include "blpa/Dialect/Blpa/IR/BlpaOpsDialect.cpp.inc"

#define GET_TYPEDEF_CLASSES
#include "blpa/Dialect/Blpa/IR/BlpaOpsTypes.cpp.inc"

void BlpaDialect::initialize() {
  addTypes<
#define GET_TYPEDEF_LIST
#include "blpa/Dialect/Blpa/IR/BlpaOpsTypes.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "blpa/Dialect/Blpa/IR/BlpaOps.cpp.inc"
      >();
  registerCostModels(*getContext());
  registerScratchModels(*getContext());
}

/// The discardable attributes the pipeline records, and their kinds.
static LogicalResult verifyAttributeKind(Operation *op, NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  bool ok = false;
  if (name == "blpa.source")
    ok = isa<StringAttr>(attr.getValue());
  else if (name == kSavedPolicyAttrName)
    ok = isa<StringAttr>(attr.getValue());
  else if (name == kActChoiceAttrName) {
    auto choice = dyn_cast<StringAttr>(attr.getValue());
    if (!choice || !isActivationChoice(choice.getValue()))
      return op->emitError("'")
             << name << "' must be \"float32\", \"8\", \"4\", \"2\" or "
             << "\"recompute\"";
    ok = true;
  } else if (name == "blpa.offsets" || name == kRecomputesAttrName)
    ok = isa<DenseI64ArrayAttr>(attr.getValue());
  else if (name == kRecomputeIdAttrName)
    ok = isa<IntegerAttr>(attr.getValue());
  else if (name == kSyncBatchNormAttrName)
    ok = isa<UnitAttr>(attr.getValue());
  else if (llvm::is_contained({"blpa.arena_size", "blpa.lower_bound_bytes",
                               "blpa.saved_activation_bytes",
                               "blpa.workspace_bytes"},
                              name))
    ok = isa<IntegerAttr>(attr.getValue());
  else
    return op->emitError("unknown blpa attribute '") << name << "'";
  if (!ok)
    return op->emitError("attribute '") << name << "' has the wrong kind";
  return success();
}

LogicalResult BlpaDialect::verifyOperationAttribute(Operation *op,
                                                    NamedAttribute attr) {
  if (attr.getName() != kPhaseAttrName)
    return verifyAttributeKind(op, attr);
  auto phase = dyn_cast<StringAttr>(attr.getValue());
  if (!phase ||
      !llvm::is_contained({"forward", "backward", "update"}, phase.getValue()))
    return op->emitError("'blpa.phase' must be \"forward\", \"backward\" "
                         "or \"update\"");
  // State is written only after the step has read everything it needs.
  bool writesState = isa<SgdUpdateOp, UpdateRunningStatsOp>(op);
  if (writesState != (phase.getValue() == "update"))
    return op->emitError("only state updates belong to the update phase");
  return success();
}
