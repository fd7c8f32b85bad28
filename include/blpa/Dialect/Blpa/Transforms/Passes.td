//===- Passes.td - blpa transformation passes --------------*- tablegen -*-===//

#ifndef BLPA_DIALECT_BLPA_TRANSFORMS_PASSES_TD
#define BLPA_DIALECT_BLPA_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def BlpaAutodiff : Pass<"blpa-autodiff", "ModuleOp"> {
  let summary = "Builds the training step from the forward function";
  let description = [{
    From `func.func @forward` (graph inputs -> logits) builds
    `func.func @train_step(inputs..., labels) -> loss`: the forward ops, the
    mean softmax cross-entropy loss on the first result, reverse-mode
    gradients from each op's GradientOpInterface (adjoints of values with
    several uses are summed), one `blpa.sgd_update` per trainable parameter
    and one `blpa.update_running_stats` per batch norm. Every op gets a
    `blpa.phase` attribute (forward, backward, update). Batch norms in
    inference mode (ONNX training_mode 0) are trained in training mode, with
    a warning. `@forward` is left unchanged.
  }];
  let dependentDialects = ["::mlir::blpa::BlpaDialect"];
  let statistics = [
    Statistic<"numGradientOps", "gradient-ops", "Ops built by gradient rules">,
    Statistic<"numUpdates", "updates", "Parameter and state updates">,
  ];
}

def BlpaInferenceBatchNorm : Pass<"blpa-inference-batch-norm", "ModuleOp"> {
  let summary = "Puts the batch norms of @forward in inference mode";
  let description = [{
    Rewrites every training-mode `blpa.batch_norm` of `func.func @forward`
    into `blpa.batch_norm_inference` on the running statistics, so that a
    training executable evaluates like PyTorch's `model.eval()`.
  }];
}

def BlpaPlanMemory : Pass<"blpa-plan-memory", "ModuleOp"> {
  let summary = "Places every transient tensor of each function in one arena";
  let description = [{
    Computes each tensor buffer's lifetime over the function's op order
    (views share their source's buffer and extend its lifetime) and assigns
    offsets in one arena so that buffers whose lifetimes overlap never
    overlap in memory: largest first, each at the lowest offset that fits.
    Results get `blpa.offsets` (one entry per result), functions
    `blpa.arena_size`, `blpa.lower_bound_bytes` and
    `blpa.saved_activation_bytes`. Parameters and function arguments live
    outside the arena.
  }];
  let options = [
    Option<"alignment", "alignment", "int64_t", "64",
           "Byte alignment of every buffer">,
    Option<"reportFile", "report", "std::string", "\"\"",
           "Write the memory report (JSON) to this file">,
  ];
}

#endif // BLPA_DIALECT_BLPA_TRANSFORMS_PASSES_TD
