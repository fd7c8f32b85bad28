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
    the driver the shapes, parameters, arena size, target and workspace.

    With `chunk-size=N` (N > 0), consecutive calls go into internal
    functions `@blpa_<name>_chunk<K>` of at most N calls each, taking the
    entry point's arguments, and the entry point calls them in order: the
    code generator's time then grows linearly with the number of ops
    instead of superlinearly in one huge function. `chunk-size=0` keeps all
    calls in the entry point.
  }];
  let options = [
    Option<"chunkSize", "chunk-size", "unsigned", /*default=*/"64",
           "Runtime calls per outlined chunk of an entry point (0: no "
           "chunks)">,
    Option<"target", "target", "std::string", /*default=*/"\"cpu\"",
           "The runtime the manifest names (cpu or cuda): the driver "
           "refuses to run a step with the other runtime">,
  ];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // BLPA_CONVERSION_PASSES_TD
