//===- Passes.td - blpa conversion passes ------------------*- tablegen -*-===//

#ifndef BLPA_CONVERSION_PASSES_TD
#define BLPA_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def BlpaLowerToLLVM : Pass<"blpa-lower-to-llvm", "ModuleOp"> {
  let summary = "Lowers planned blpa functions to runtime calls in LLVM IR";
  let description = [{
    Turns each planned `func.func` (after --blpa-plan-memory) into an
    `llvm.func @blpa_<name>` with the runtime ABI of
    include/blpa/Runtime/Runtime.h: tensors become pointers into the arena
    (at their planned offsets), into persistent parameter storage (indexed by
    the manifest's parameter table) or into the caller's input/output
    buffers, and every op becomes one call of the runtime function its
    RuntimeCallOpInterface names. Adds the `blpa_manifest` global that tells
    the driver the shapes, parameters and arena size.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // BLPA_CONVERSION_PASSES_TD
