//===- BlpaInterfaces.td - Per-op knowledge of blpa ops ----*- tablegen -*-===//

#ifndef BLPA_DIALECT_BLPA_IR_BLPAINTERFACES_TD
#define BLPA_DIALECT_BLPA_IR_BLPAINTERFACES_TD

include "mlir/IR/OpBase.td"

def Blpa_GradientOpInterface : OpInterface<"GradientOpInterface"> {
  let description = [{
    The reverse-mode gradient rule of a differentiable op. The autodiff pass
    calls it once per op, walking the forward ops in reverse.
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<[{
        Builds, at the builder's insertion point, the ops computing the
        adjoint of each operand from the adjoints of the results.
        `resultGrads` has one entry per result; an entry is null when no
        gradient flows into that result. On success `operandGrads` has one
        entry per operand, null for operands that take no gradient
        (non-differentiable inputs such as labels).
      }],
      "::llvm::LogicalResult", "buildGradients",
      (ins "::mlir::OpBuilder &":$builder,
           "::mlir::ValueRange":$resultGrads,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>,
  ];
}

def Blpa_RuntimeCallOpInterface : OpInterface<"RuntimeCallOpInterface"> {
  let description = [{
    How an op executes: the runtime C function it lowers to (declared in
    include/blpa/Runtime/Runtime.h) and that function's argument list after
    the context pointer.
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<"The runtime C function's name.",
      "::llvm::StringRef", "getRuntimeFunction">,
    InterfaceMethod<[{
        Appends the call's arguments after the context: data pointers of
        operands and results, persistent optimizer storage, and static
        shape/attribute values.
      }],
      "void", "getRuntimeArgs",
      (ins "::llvm::SmallVectorImpl<::mlir::blpa::RuntimeArg> &":$args)>,
    InterfaceMethod<[{
        How many runtime calls the op makes, in order (one unless the op
        says otherwise, e.g. a concatenation copies each input).
      }],
      "unsigned", "getNumRuntimeCalls", (ins), [{}], [{ return 1; }]>,
    InterfaceMethod<[{
        Call `index`: appends its arguments and returns its function (by
        default getRuntimeFunction with getRuntimeArgs).
      }],
      "::llvm::StringRef", "getRuntimeCall",
      (ins "unsigned":$index,
           "::llvm::SmallVectorImpl<::mlir::blpa::RuntimeArg> &":$args),
      [{}], [{
        $_op.getRuntimeArgs(args);
        return $_op.getRuntimeFunction();
      }]>,
  ];
}

def Blpa_RunTimeScalarOpInterface : OpInterface<"RunTimeScalarOpInterface"> {
  let description = [{
    An op that reads parameters (Clip's bounds, Pad's value) from 1-element
    tensors when the step runs rather than from its attributes. A training
    executable feeds its graph inputs as batches of data, so autodiff
    refuses a graph input read this way.
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<"Appends the operands read as run-time scalars.",
      "void", "getRunTimeScalars",
      (ins "::llvm::SmallVectorImpl<::mlir::Value> &":$scalars)>,
  ];
}

def Blpa_SavedActivationOpInterface : OpInterface<"SavedActivationOpInterface"> {
  let description = [{
    What an op knows about the activations a training step keeps for its
    backward pass, used by --blpa-compress-activations: how much of a saved
    operand a backward op really needs (its values, only their sign, only
    where each pooling window's maximum is, or the exact piece of a
    piecewise activation), how a forward op encodes what its own gradient
    reads, how a backward op keeps its pieces exact, and whether a forward
    op's result is never negative (then zero is encoded exactly). Ops
    without the interface need the values, encode nothing themselves and
    may produce anything.
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<"What this op needs of its operand `operandIndex`.",
      "::mlir::blpa::ActivationNeed", "getActivationNeed",
      (ins "unsigned":$operandIndex), [{}],
      [{ return ::mlir::blpa::ActivationNeed::Values; }]>,
    InterfaceMethod<[{
        Rewrites this forward op, and the gradient ops that read what it
        saves, so that only compact codes of it are kept until the backward
        pass (a batch norm's codes, a max pooling's argmax); returns whether
        it did. Ops without a rewrite of their own leave their saved values
        to the generic quantizer.
      }],
      "bool", "encodeSavedActivations",
      (ins "const ::mlir::blpa::ActivationEncoding &":$encoding), [{}],
      [{ return false; }]>,
    InterfaceMethod<[{
        Rewrites this backward op, which needs the exact region of its
        operand `operandIndex` (getActivationNeed returns Region), to read
        region codes that a forward-phase encoder, built right after the
        operand's producer, computes from the exact operand. The values the
        op still needs (an approximation will do) it reads from the operand,
        an ordinary saved activation then. Returns whether it did.
      }],
      "bool", "encodeRegion", (ins "unsigned":$operandIndex), [{}],
      [{ return false; }]>,
    InterfaceMethod<[{
        Whether every element of the op's results is >= 0, given a predicate
        telling the same of other values.
      }],
      "bool", "isResultNonNegative",
      (ins "::llvm::function_ref<bool(::mlir::Value)>":$isNonNegative), [{}],
      [{ return false; }]>,
  ];
}

def Blpa_InPlaceOpInterface : OpInterface<"InPlaceOpInterface"> {
  let description = [{
    An op whose runtime kernel may write a result over one of its operands:
    it reads each element of that operand no later than it writes the
    result element at the same position, and never reads an element it has
    overwritten (element-wise kernels, and kernels that read the whole
    operand before writing). --blpa-plan-memory gives such a result its
    operand's buffer when the operand dies at this op.
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<[{
        The operands whose buffer result `resultIndex` may take over, in
        order of preference. Only operands of the result's size qualify;
        the planner checks that.
      }],
      "void", "getInPlaceOperands",
      (ins "unsigned":$resultIndex,
           "::llvm::SmallVectorImpl<unsigned> &":$operandIndices)>,
  ];
}

def Blpa_RecomputeOpInterface : OpInterface<"RecomputeOpInterface"> {
  let description = [{
    How --blpa-recompute re-runs a forward op in the backward pass when its
    activation choice is "recompute". Ops without the interface are
    recomputed by a plain copy (`recomputeByCopy`: the same op with the same
    attributes and location) when they have no side effects, and refused
    otherwise. An op implements it when it knows a cheaper or more faithful
    way (a training batch norm: `blpa.batch_norm_apply` with the forward's
    own statistics), or that nothing needs recomputing (a parameter).
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<[{
        Builds, at the builder's insertion point, ops that compute this op's
        results again from `operands` (one per operand: the values the
        backward pass reads in place of the forward ones), and appends one
        value per result for the backward pass to read. A result the op
        does not recompute (a batch norm's statistics) is appended as
        itself: it stays a saved activation. The pass gives every new op
        the backward phase.
      }],
      "void", "buildRecompute",
      (ins "::mlir::OpBuilder &":$builder, "::mlir::ValueRange":$operands,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$results), [{}],
      [{ ::mlir::blpa::recomputeByCopy($_op, builder, operands, results); }]>,
    InterfaceMethod<[{
        Like buildRecompute, when `operands` are approximations of the
        forward's values (a checkpoint kept as codes, read decoded): the op
        may first save, with `saver` (in the forward pass, right after the
        op), what keeps the copy's decisions exact where an approximation
        would flip them, and build the copy to honour it. Appends one value
        per result for readers that need the values and one for readers
        that need only each element's sign (ActivationNeed::Sign). The
        default: buildRecompute, both lists the same. A ReLU keeps its
        1-bit mask: its copy is `relu(x') * mask`, and its gradient reads
        the mask itself.
      }],
      "void", "buildApproximateRecompute",
      (ins "::mlir::OpBuilder &":$saver, "::mlir::OpBuilder &":$builder,
           "::mlir::ValueRange":$operands,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$results,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$signResults), [{}],
      [{
        $_op.buildRecompute(builder, operands, results);
        signResults.append(results.begin(), results.end());
      }]>,
  ];
}

def Blpa_CostOpInterface : OpInterface<"CostOpInterface"> {
  let description = [{
    The work one execution of an op does, for the cost model
    (include/blpa/Dialect/Blpa/Transforms/CostModel.h): floating-point
    operations and bytes moved between memory and the cores. Ops without the
    interface are element-wise in cost (one operation per element of their
    largest tensor, every operand read and every result written once:
    getOpCost); ops whose work is not proportional to their tensors' size
    (convolutions, matrix products, poolings) or that pass over an operand
    more than once (batch norms, quantizers) implement it, as external models
    in lib/Dialect/Blpa/IR/BlpaCosts.cpp.
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<"The floating-point operations and bytes of one execution.",
      "::mlir::blpa::OpCost", "getCost">,
  ];
}

def Blpa_ScratchOpInterface : OpInterface<"ScratchOpInterface"> {
  let description = [{
    Scratch memory an op's CPU kernel takes besides its operands, for the
    plan's workspace (--blpa-plan-memory's `cpu-workspace-limit`): oneDNN's
    convolutions copy their operands into blocked layouts and take a
    scratchpad. Attached as external models in
    lib/Dialect/Blpa/IR/BlpaScratch.cpp; ops without it take none.
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<[{
        Bytes of scratch the kernel takes when it runs over the op's whole
        batch at once, estimated from above; the runtime runs the op over
        the batch in chunks when the workspace is smaller.
      }],
      "int64_t", "getCpuScratchBytes">,
  ];
}

#endif // BLPA_DIALECT_BLPA_IR_BLPAINTERFACES_TD
