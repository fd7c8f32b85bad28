//===- Passes.td - blpa transformation passes --------------*- tablegen -*-===//

#ifndef BLPA_DIALECT_BLPA_TRANSFORMS_PASSES_TD
#define BLPA_DIALECT_BLPA_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def BlpaAutodiff : Pass<"blpa-autodiff", "ModuleOp"> {
  let summary = "Builds the training step from the forward function";
  let description = [{
    From `func.func @forward` (graph inputs -> logits) builds
    `func.func @train_step(inputs..., labels) -> loss`: the forward ops, the
    mean softmax cross-entropy loss on the first result (logits [N, classes]
    with labels [N], or [B, T, vocab] with labels [B, T]; rows labelled
    `ignore-index` do not count), reverse-mode
    gradients from each op's GradientOpInterface (adjoints of values with
    several uses are summed), one `blpa.sgd_update` per trainable parameter
    and one `blpa.update_running_stats` per batch norm. Every op gets a
    `blpa.phase` attribute (forward, backward, update). Batch norms in
    inference mode (ONNX training_mode 0) are trained in training mode, with
    a warning. `@forward` is left unchanged.
  }];
  let dependentDialects = ["::mlir::blpa::BlpaDialect"];
  let options = [
    Option<"ignoreIndex", "ignore-index", "int64_t", /*default=*/"-100",
           "Label of rows the loss leaves out (PyTorch's ignore_index)">,
  ];
  let statistics = [
    Statistic<"numGradientOps", "gradient-ops", "Ops built by gradient rules">,
    Statistic<"numUpdates", "updates", "Parameter and state updates">,
  ];
}

def BlpaInferenceBatchNorm : Pass<"blpa-inference-batch-norm", "ModuleOp"> {
  let summary = "Puts @forward in evaluation mode (batch norms, dropout)";
  let description = [{
    Rewrites every training-mode `blpa.batch_norm` of `func.func @forward`
    into `blpa.batch_norm_inference` on the running statistics, and removes
    its `blpa.dropout`s, so that a training executable evaluates like
    PyTorch's `model.eval()`.
  }];
}

def BlpaAssignActivationChoices
    : Pass<"blpa-assign-activation-choices", "ModuleOp"> {
  let summary = "Records the user's per-node choices for saved activations";
  let description = [{
    Turns `policy=NODE=CHOICE` pins (blpa-opt `--act-policy`) into the
    `blpa.act_choice` attribute on the forward ops of `@train_step` whose
    saved results they concern, which --blpa-recompute and
    --blpa-compress-activations then apply. CHOICE is `float32`, `8`, `4`,
    `2`, `recompute`, or `auto` (no pin: the pipeline's default or the
    memory-budget solver decides). A pin on NODE concerns the saved results
    of the op from ONNX node NODE; a float32 pin also the saved tensors
    NODE's gradient reads (its inputs: "keep NODE's gradient exact"); `*`
    concerns every saved tensor. A tensor named by
    several pins takes the most exact of them (float32 or recompute, then
    8, 4, 2 bits); a pin naming the tensor outranks `*`. A pin naming a
    node that saves nothing and reads nothing saved is an error: most
    likely a typo.
  }];
  let options = [
    ListOption<"policy", "policy", "std::string",
               "Per-node pin NODE=float32|8|4|2|recompute|auto (ONNX node "
               "name, or * for every node)">,
  ];
  let statistics = [
    Statistic<"numPinned", "pinned", "Forward ops given a blpa.act_choice">,
  ];
}

def BlpaRecompute : Pass<"blpa-recompute", "ModuleOp"> {
  let summary = "Recomputes in the backward pass what a forward op would save";
  let description = [{
    In `@train_step` (after --blpa-autodiff, before
    --blpa-compress-activations), every forward op whose activation choice
    `blpa.act_choice` is "recompute" and whose results the backward phase
    reads is run again in the backward phase, right before the first
    backward op that reads them; every backward use reads the copy, so the
    forward results are no longer kept. How an op is recomputed is its
    RecomputeOpInterface (a plain copy by default; a training batch norm as
    `blpa.batch_norm_apply` with its own saved statistics; a parameter is
    read directly). A copy reads the copy of an operand whose producer is
    recomputed too (a recomputed segment, each copy before its readers) and
    any other forward value directly: that value is then a saved activation
    with its own choice (kept, or K-bit codes that the compress pass adds).
    An op with side effects, or outside the blpa dialect, is refused.
    The recomputed op gets `blpa.recompute_id = N` and each op of its copy
    `blpa.recomputes = array<i64: N>`, so that the memory report can tell
    which copy's time each choice adds.

    One copy serves every backward reader (it lives from the first to the
    last); with `copy-per-reader`, each backward reader gets its own copy,
    built right before it (shorter lifetimes, more compute).

    A copy that reads, directly or through other copies, a checkpoint that
    will be kept as codes (its producer's `blpa.act_choice` is 8, 4 or 2,
    or, without a choice, `bits` is not 0) computes from an approximation:
    it is built by RecomputeOpInterface::buildApproximateRecompute, with
    which a ReLU keeps its exact 1-bit mask in the forward pass
    (docs/design.md, "Exactness").
  }];
  let dependentDialects = ["::mlir::blpa::BlpaDialect"];
  let options = [
    Option<"copyPerReader", "copy-per-reader", "bool", "false",
           "A copy before each backward reader rather than one shared by "
           "all of them">,
    Option<"bits", "bits", "int64_t", "0",
           "The width --blpa-compress-activations gives saved activations "
           "without a choice (0: kept exact)">,
  ];
  let statistics = [
    Statistic<"numRecomputed", "recomputed",
              "Forward ops recomputed in the backward pass">,
    Statistic<"numCopies", "copies", "Copies built in the backward pass">,
  ];
}

def BlpaCompressActivations : Pass<"blpa-compress-activations", "ModuleOp"> {
  let summary = "Keeps only K-bit codes of the activations the backward pass reads";
  let description = [{
    Rewrites `@train_step` (after --blpa-autodiff) so that every value the
    forward phase produces and the backward phase reads (a saved activation)
    is kept until the backward pass in compact form, while the forward pass
    stays exact:

    * first, the gradient of a piecewise activation (clip, hard sigmoid,
      hard swish) reads exact region codes of its input
      (`blpa.activation_region`, 1 or 2 bits, computed in the forward pass),
      so its mask is exact; hard swish's slope inside [-3, 3] still reads
      the input's values, saved like any other tensor;
    * a training batch norm whose gradient is taken becomes
      `blpa.batch_norm_encode`, writing the method's `bn_relu` codes of its
      output; its gradient (`blpa.batch_norm_grad_decode`), the gradient of
      a ReLU of its output, and every other backward reader of the output or
      of such a ReLU work from the codes (`blpa.batch_norm_decode`), so the
      batch norm's input and the ReLU's output are no longer kept;
    * a max pooling whose gradient is taken records where each window's
      maximum is (`blpa.max_pool_argmax`), exactly;
    * every other saved tensor gets a policy: float32 (graph inputs, which
      live outside the arena, and tensors of fewer than `min-elements`
      elements), a 1-bit mask when its backward readers need only its sign
      (a ReLU gradient), or `blpa.quantize` with per-channel ranges
      (`nonneg` when the op's SavedActivationOpInterface says it is never
      negative, so zero stays exact; else `affine`).

    Whatever produced it, the input of the last layer (read by the gradient
    of the op that reads the logits' gradient) stays float32 for that
    reader, as in the reference library: no encoder sees that use.

    Encoders are placed right after the producer, decoders right before the
    first backward reader, so the full-precision tensor dies in the forward
    phase and the planner reuses its bytes. Ops whose saved results stay in
    float32 are marked `blpa.saved = "float32"`.

    Each forward op may choose for its own saved results
    (`blpa.act_choice`): "8", "4" or "2" (codes of that width, coding
    tensors under `min-elements` too; the batch norm's own choice for its
    `bn_relu` codes; exact masks, argmax and region codes whatever the
    width), "float32" (every backward reader reads the exact tensor) or
    "recompute" (nothing left to do after --blpa-recompute; a value still
    read stays exact). Ops without one get `bits`; with `bits=0` they are
    left as they are. `policy=NODE=float32`
    keeps the saved results of the op from ONNX node NODE exact,
    `policy=NODE=quantize` forces the generic quantizer on them.

    With `naive`, the paper's baseline instead: each saved tensor is
    quantized right after its producer and the forward pass itself goes on
    with the decoded approximation.
  }];
  let dependentDialects = ["::mlir::blpa::BlpaDialect"];
  let options = [
    Option<"bits", "bits", "int64_t", "4",
           "Default bits per code of saved activations: 8, 4 or 2; 0 codes "
           "only ops that carry a blpa.act_choice">,
    Option<"naive", "naive", "bool", "false",
           "Quantize inside the forward pass (the paper's naive baseline)">,
    Option<"minElements", "min-elements", "int64_t", "4096",
           "Saved tensors with fewer elements stay float32">,
    ListOption<"policy", "policy", "std::string",
               "Per-node override NODE=float32|quantize|auto (ONNX node "
               "name)">,
  ];
  let statistics = [
    Statistic<"numSelfEncoded", "self-encoded",
              "Forward ops encoding what their gradient reads (batch-norm "
              "codes, argmax)">,
    Statistic<"numQuantized", "quantized", "Tensors quantized per channel">,
    Statistic<"numMasks", "masks", "Tensors kept as 1-bit masks">,
    Statistic<"numRegions", "regions",
              "Activation gradients reading exact region codes">,
    Statistic<"numKeptFloat", "kept-float32", "Saved tensors kept in float32">,
  ];
}

def BlpaFuseGelu : Pass<"blpa-fuse-gelu", "func::FuncOp"> {
  let summary = "Replaces GELU written op by op with one blpa.gelu";
  let description = [{
    Exporters without ONNX's Gelu (torch.onnx before opset 20) write
    nn.GELU as `x * (1 + erf(x / sqrt(2))) * 0.5`: Div, Erf, Add, Mul, Mul,
    whose intermediates the backward pass would keep (four tensors of the
    input's size). The expression, in either order of its products, becomes
    `blpa.gelu %x`: one kernel and one saved tensor. Runs on the imported
    `@forward`, before autodiff.
  }];
  let dependentDialects = ["::mlir::blpa::BlpaDialect"];
}

def BlpaFuseBatchNormRelu : Pass<"blpa-fuse-batch-norm-relu", "ModuleOp"> {
  let summary = "Runs each ReLU of a batch norm inside the batch norm's kernels";
  let description = [{
    In `@train_step`, a forward `blpa.relu` whose input is the output of a
    `blpa.batch_norm` (and nothing else reads that output) becomes one
    `blpa.batch_norm_relu`: one pass over memory, and the pre-ReLU output
    is never stored. Its gradient `blpa.batch_norm_grad` of a
    `blpa.relu_grad` becomes `blpa.batch_norm_relu_grad`, which masks the
    incoming gradient itself.

    With `recompute` (the default), the ReLU output is not kept for the
    backward pass either: every backward reader (a convolution's weight
    gradient, a pooling gradient) reads a `blpa.batch_norm_apply {relu}`
    placed right before the first of them, which recomputes it bit for bit
    from the batch norm's input, kept for the batch-norm gradient anyway.
    That halves what a pre-activation ResNet keeps at the cost of one
    element-wise pass per fused batch norm.

    Runs after --blpa-compress-activations: the batch norms that pass
    encoded are not `blpa.batch_norm` any more. Their gradients are fused
    too: `blpa.batch_norm_grad_decode` of a `blpa.relu_grad` of
    `blpa.batch_norm_decode {relu}` of the same codes becomes
    `blpa.batch_norm_grad_decode {relu}`, which masks the gradient from the
    codes in the same pass.

    A pair --blpa-recompute copied into the backward pass is fused too: the
    ReLU copy of a `blpa.batch_norm_apply` becomes its `relu` attribute, and
    the batch-norm gradient of that ReLU's gradient becomes
    `blpa.batch_norm_relu_grad`.
  }];
  let dependentDialects = ["::mlir::blpa::BlpaDialect"];
  let options = [
    Option<"recompute", "recompute", "bool", "true",
           "Recompute the ReLU output in the backward pass instead of "
           "keeping it">,
  ];
  let statistics = [
    Statistic<"numFused", "fused", "Batch norms fused with their ReLU">,
    Statistic<"numGradsFused", "grads-fused",
              "Batch-norm gradients fused with the ReLU gradient">,
    Statistic<"numRecomputed", "recomputed",
              "ReLU outputs recomputed in the backward pass">,
  ];
}

def BlpaScheduleForMemory : Pass<"blpa-schedule-for-memory", "ModuleOp"> {
  let summary = "Orders independent ops so that fewer bytes are live at once";
  let description = [{
    Reorders the ops of every function by greedy list scheduling: of the
    ops whose operands are computed, the one that adds the fewest live
    bytes (bytes of the buffers it creates less those it reads for the
    last time) runs next, or, in a second try, the ones that free bytes
    first and the rest in the original order; forward ops before backward
    ones; ties keep the original order. This orders independent branches
    (inception towers, dense-block inputs, residual sides and their
    gradients) by what they cost. An update (update phase) moves too, but
    only after every other reader of the parameter it writes; any other op
    with side effects stays in place. A function keeps the try with the
    lowest live-bytes bound (what `--blpa-plan-memory` places against),
    or its original order when neither lowers it. blpa-opt runs it after
    `--blpa-schedule-updates`.
    Results do not change: only independent ops move.
  }];
  let statistics = [
    Statistic<"bytesSaved", "bytes-saved",
              "Live-bytes lower bound removed, over all functions">,
  ];
}

def BlpaScheduleUpdates : Pass<"blpa-schedule-updates", "ModuleOp"> {
  let summary = "Moves each parameter update right after its last input";
  let description = [{
    In `@train_step`, each op of the update phase (`blpa.sgd_update`,
    `blpa.update_running_stats`) moves to right after the last op it must
    follow: the producers of its operands and every other reader of a
    parameter it updates in place. Autodiff appends the updates after the
    whole backward pass, which keeps every weight gradient alive until
    the end of the step; here each dies as soon as its update consumed
    it. Every read of a parameter still sees its value from before the
    step, so the step's results do not change.
  }];
  let statistics = [
    Statistic<"numMoved", "moved", "Updates moved earlier">,
  ];
}

def BlpaAllreduceGradients : Pass<"blpa-allreduce-gradients", "ModuleOp"> {
  let summary = "Averages the gradients over data-parallel replicas in buckets";
  let description = [{
    In `@train_step`, the gradients that `blpa.sgd_update`s read are grouped
    into buckets of at most `bucket-bytes` (a gradient larger than that is a
    bucket of its own) in the order the backward pass finishes them. Right
    after a bucket's last gradient is computed, its gradients are
    concatenated into one 1-D tensor and `blpa.allreduce_start` hands it to
    the runtime's all-reduce thread, so the sum runs while the rest of the
    backward pass does. After the last op of the step that is not an
    update, each bucket's `blpa.allreduce_wait` yields the mean over the
    replicas, from which each update reads its gradient (a slice), and the
    updates move there. Batch-norm running statistics stay each replica's
    own unless `sync-batch-norm` marks the step for synchronized batch
    norms. Runs after the schedulers and before --blpa-plan-memory, which
    places the buckets in the arena like any tensor.
  }];
  let options = [
    Option<"bucketBytes", "bucket-bytes", "int64_t", /*default=*/"1 << 20",
           "Largest bucket in bytes (a larger gradient is a bucket alone)">,
    Option<"syncBatchNorm", "sync-batch-norm", "bool", /*default=*/"false",
           "Mark the step (blpa.sync_batch_norm) so that its training-mode "
           "batch norms normalize every replica's batch together">,
  ];
  let statistics = [
    Statistic<"numBuckets", "buckets", "Gradient buckets all-reduced">,
  ];
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

    With `in-place` (the default), a result of an op with
    InPlaceOpInterface (ReLU, sums, the ReLU and batch-norm gradients)
    takes over the buffer of an operand of its size that dies at that op:
    the sum of a residual join is written over a dead operand, fan-out
    gradients are accumulated into one of them.

    Targets differ only in options: the CUDA target asks for 256-byte
    alignment and a `workspace-bytes` region (recorded as
    `blpa.workspace_bytes`) that cuDNN's algorithms are chosen to fit; the
    CPU target for `cpu-workspace-limit`: each function's workspace is
    then at least what its hungriest op needs at the whole batch
    (ScratchOpInterface: oneDNN's blocked copies of a convolution's
    operands), up to the limit; the runtime runs larger ones over the batch
    in chunks that fit.

    The report and the table also give the cost model's predictions
    (CostModel::predictCosts): the step's time and, per saved tensor, the
    time its choice adds (its encoders and decoders, or its recomputed
    copies) and the gradient-error proxy of its codes; analytical, or
    calibrated by `profile`.
  }];
  let options = [
    Option<"alignment", "alignment", "int64_t", "64",
           "Byte alignment of every buffer (the CUDA target uses 256)">,
    Option<"workspaceBytes", "workspace-bytes", "int64_t", "0",
           "Scratch space for library calls (cuDNN convolutions) reserved "
           "at the arena's start, live over the whole function">,
    Option<"cpuWorkspaceLimit", "cpu-workspace-limit", "int64_t", "0",
           "Reserve at the arena's start what the function's CPU kernels "
           "take as scratch (ScratchOpInterface), up to this many bytes "
           "(0: none)">,
    Option<"inPlace", "in-place", "bool", "true",
           "Write results over dying operands where the op allows it">,
    Option<"reportFile", "report", "std::string", "\"\"",
           "Write the memory report (JSON) to this file">,
    Option<"print", "print", "bool", "false",
           "Print the plan's totals, what is live at the peak and the "
           "largest buffers as a table on stdout">,
    Option<"timelineFile", "timeline", "std::string", "\"\"",
           "Write live bytes over the schedule by category as an SVG to "
           "this file">,
    ListOption<"profile", "profile", "std::string",
           "Profiles written by training executables' --profile (one model "
           "and batch size): calibrate the report's predicted times">,
  ];
}

def BlpaVerifyMemoryPlan : Pass<"blpa-verify-memory-plan", "ModuleOp"> {
  let summary = "Checks a placed arena against lifetimes derived afresh";
  let description = [{
    After --blpa-plan-memory: re-derives each buffer's lifetime from the
    IR with mlir::Liveness (views extend their source) and checks the
    recorded `blpa.offsets`: every buffer inside `blpa.arena_size`, and no
    two buffers live at the same op sharing a byte, unless an op with
    InPlaceOpInterface writes its result over an operand that dies there
    (the operand dead after it). Shares no code with the planner. blpa-opt
    runs it after planning in every --train and --infer compile
    (--no-verify-memory-plan, for measuring its cost, skips it).
  }];
}

def BlpaPrintOpCosts : Pass<"blpa-print-op-costs", "ModuleOp"> {
  let summary = "Prints the cost model's figures for every op (a test aid)";
  let description = [{
    Prints `model fingerprint=HEX batch=N` (what a profile must match),
    then, for each op of each function, in order, to stdout one line
    `cost @FN #I OP node=NODE calls=C flops=F bytes=B seconds=S` (the
    CostOpInterface figures of one execution and the cost model's time),
    then, for each forward-phase result that backward ops read, `saved @FN
    #I OP node=NODE result=R error8=E error4=E error2=E` (CostModel::gradientError),
    and last `total @FN seconds=S`. With `profile=FILE`, times come from
    the cost model calibrated by those profiles (`profile=A,B`: each checked
    against the module's model and batch size first). Changes nothing.
  }];
  let options = [
    ListOption<"profile", "profile", "std::string",
           "Profiles written by training executables' --profile (one model "
           "and batch size)">,
  ];
}

#endif // BLPA_DIALECT_BLPA_TRANSFORMS_PASSES_TD
