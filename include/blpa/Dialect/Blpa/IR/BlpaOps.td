//===- BlpaOps.td - blpa dialect ops -----------------------*- tablegen -*-===//
//
// Tensor ops with value semantics, static shapes, f32 data in NCHW layout.
// Every op states its shape rule (InferTypeOpAdaptor or a verifier), its
// gradient rule (GradientOpInterface) and its runtime call
// (RuntimeCallOpInterface); see BlpaOps.cpp and BlpaGradients.cpp.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_DIALECT_BLPA_IR_BLPAOPS_TD
#define BLPA_DIALECT_BLPA_IR_BLPAOPS_TD

include "blpa/Dialect/Blpa/IR/BlpaDialect.td"
include "blpa/Dialect/Blpa/IR/BlpaInterfaces.td"
include "blpa/Dialect/Blpa/IR/BlpaTypes.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ViewLikeInterface.td"

def Blpa_F32Tensor : StaticShapeTensorOf<[F32]>;
def Blpa_LabelTensor : StaticShapeTensorOf<[I64]>;
// Token ids and other run-time indices (a graph input of int64 or int32).
def Blpa_IndexTensor : StaticShapeTensorOf<[I64]>;
def Blpa_LossTensor : 0DTensorOf<[F32]>;

defvar Differentiable = DeclareOpInterfaceMethods<Blpa_GradientOpInterface>;
defvar RuntimeCall = DeclareOpInterfaceMethods<Blpa_RuntimeCallOpInterface>;
// A forward op that can say its result is never negative.
defvar NonNegativeRule = DeclareOpInterfaceMethods<
    Blpa_SavedActivationOpInterface, ["isResultNonNegative"]>;
// A forward op that encodes what its own gradient reads.
defvar SelfEncodingRule = DeclareOpInterfaceMethods<
    Blpa_SavedActivationOpInterface, ["encodeSavedActivations"]>;
// An op reading parameters from tensors when the step runs.
defvar RunTimeScalars = DeclareOpInterfaceMethods<Blpa_RunTimeScalarOpInterface>;
// An op whose kernel may write its result over a dying operand.
defvar InPlace = DeclareOpInterfaceMethods<Blpa_InPlaceOpInterface>;
// A forward op recomputed otherwise than by a plain copy (--blpa-recompute).
defvar RecomputeRule = DeclareOpInterfaceMethods<Blpa_RecomputeOpInterface,
    ["buildRecompute"]>;
// A backward op that needs less than the values of a saved operand.
defvar ActivationNeedRule = DeclareOpInterfaceMethods<
    Blpa_SavedActivationOpInterface, ["getActivationNeed"]>;
// A backward op that needs the exact piece of a piecewise activation.
defvar RegionRule = DeclareOpInterfaceMethods<
    Blpa_SavedActivationOpInterface, ["getActivationNeed", "encodeRegion"]>;

def Blpa_PackedTensor : Type<CPred<"::llvm::isa<::mlir::blpa::PackedType>($_self)">,
    "packed activation codes", "::mlir::blpa::PackedType">;

// An op computing a tensor function of its operands: pure, shape inferred,
// executed by one runtime call.
class Blpa_ComputeOp<string mnemonic, list<Trait> traits = []>
    : Blpa_Op<mnemonic, !listconcat(traits, [Pure, InferTypeOpAdaptor,
                                             RuntimeCall])> {
  let assemblyFormat =
      "operands attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Parameters
//===----------------------------------------------------------------------===//

def Blpa_ParamOp : Blpa_Op<"param", [Pure, RecomputeRule]> {
  let summary = "A named parameter or state tensor (an ONNX initializer)";
  let description = [{
    The current value of the persistent tensor named `name`. `trainable`
    parameters receive gradients and optimizer updates; the others are state
    (batch-norm running statistics). The data stays in the ONNX model and is
    loaded by the executable by name.
  }];
  let arguments = (ins StrAttr:$name, UnitAttr:$trainable);
  let results = (outs Blpa_F32Tensor:$result);
  let assemblyFormat = "$name (`trainable` $trainable^)? attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Forward ops
//===----------------------------------------------------------------------===//

// Attributes shared by convolutions and their gradients: one entry per
// spatial dimension (pads: all begins, then all ends, as ONNX); the
// default dilations are those of a 2-D convolution.
defvar ConvAttrs = (ins DenseI64ArrayAttr:$strides, DenseI64ArrayAttr:$pads,
    DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$dilations,
    DefaultValuedAttr<I64Attr, "1">:$group);

def Blpa_ConvOp : Blpa_ComputeOp<"conv", [Differentiable]> {
  let summary = "2-D or 3-D convolution with optional bias";
  let description = [{
    `output[N,K,OD,OH,OW] = conv(input[N,C,D,H,W], weight[K,C/group,T,R,S])
    + bias[K]`, or the same without the depth (rank-4 NCHW operands). `pads`
    is [front, top, left, back, bottom, right] ([top, left, bottom, right]
    in 2-D) as in ONNX.
  }];
  let arguments = !con((ins Blpa_F32Tensor:$input, Blpa_F32Tensor:$weight,
                            Optional<Blpa_F32Tensor>:$bias), ConvAttrs);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_BatchNormOp : Blpa_ComputeOp<"batch_norm", [Differentiable,
    SelfEncodingRule, RecomputeRule]> {
  let summary = "Training-mode batch normalization";
  let description = [{
    Normalizes over all dimensions but the channel (dim 1) with the batch's
    mean and biased variance. Results: the output, the batch mean and
    `inv_std = 1/sqrt(var + epsilon)` per channel. The running statistics
    operands are not read; they name the state that
    `blpa.update_running_stats` updates with `momentum` (ONNX convention).
  }];
  let arguments = (ins Blpa_F32Tensor:$input, Blpa_F32Tensor:$scale, Blpa_F32Tensor:$bias,
      Blpa_F32Tensor:$running_mean, Blpa_F32Tensor:$running_var, F64Attr:$epsilon,
      F64Attr:$momentum);
  let results = (outs Blpa_F32Tensor:$output, Blpa_F32Tensor:$mean, Blpa_F32Tensor:$inv_std);
}

def Blpa_LayerNormOp : Blpa_ComputeOp<"layer_norm", [Differentiable,
    SelfEncodingRule]> {
  let summary = "Layer normalization over the dimensions from `axis` on";
  let description = [{
    ONNX LayerNormalization: the input is viewed as [rows, cols] at `axis`
    (rows the product of the dimensions before it); each row is normalized
    with its mean and biased variance, then scaled and shifted per column.
    `scale` and the optional `bias` hold the normalized shape's elements
    (leading 1s allowed). Results: the output, and per row the mean and
    `inv_std = 1/sqrt(var + epsilon)` ([rows]), which the gradient reads.
  }];
  let arguments = (ins Blpa_F32Tensor:$input, Blpa_F32Tensor:$scale,
                   Optional<Blpa_F32Tensor>:$bias, I64Attr:$axis,
                   F64Attr:$epsilon);
  let results = (outs Blpa_F32Tensor:$output, Blpa_F32Tensor:$mean,
                 Blpa_F32Tensor:$inv_std);
  let extraClassDeclaration = [{
    /// The [rows, cols] view of the input at `axis`.
    std::pair<int64_t, int64_t> getRowsAndCols();
  }];
}

def Blpa_LayerNormGradOp : Blpa_ComputeOp<"layer_norm_grad", [
    ActivationNeedRule, InPlace]> {
  let summary = "Gradients of blpa.layer_norm from its input and statistics";
  let arguments = (ins Blpa_F32Tensor:$grad, Blpa_F32Tensor:$input,
                   Blpa_F32Tensor:$scale, Blpa_F32Tensor:$mean,
                   Blpa_F32Tensor:$inv_std, I64Attr:$axis);
  let results = (outs Blpa_F32Tensor:$input_grad, Blpa_F32Tensor:$scale_grad,
                 Blpa_F32Tensor:$bias_grad);
}

def Blpa_BatchNormInferenceOp : Blpa_ComputeOp<"batch_norm_inference"> {
  let summary = "Batch normalization with the running statistics";
  let arguments = (ins Blpa_F32Tensor:$input, Blpa_F32Tensor:$scale, Blpa_F32Tensor:$bias,
      Blpa_F32Tensor:$running_mean, Blpa_F32Tensor:$running_var, F64Attr:$epsilon,
      F64Attr:$momentum);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_ReluOp : Blpa_ComputeOp<"relu", [Differentiable, NonNegativeRule,
    InPlace, DeclareOpInterfaceMethods<Blpa_RecomputeOpInterface,
    ["buildApproximateRecompute"]>]> {
  let summary = "max(x, 0)";
  let arguments = (ins Blpa_F32Tensor:$input);
  let results = (outs Blpa_F32Tensor:$output);
}


// Element-wise arithmetic with numpy (ONNX multidirectional) broadcasting,
// executed by blpa_<mnemonic>. The shape rule, runtime arguments and
// in-place rule are shared (BlpaOps.cpp); each op has its gradient rule.
class Blpa_BroadcastOp<string mnemonic, string summaryText,
                       list<Trait> traits = []>
    : Blpa_ComputeOp<mnemonic, !listconcat(traits, [Differentiable, InPlace])> {
  let summary = summaryText;
  let arguments = (ins Blpa_F32Tensor:$lhs, Blpa_F32Tensor:$rhs);
  let results = (outs Blpa_F32Tensor:$output);
  let extraClassDefinition = [{
    ::llvm::LogicalResult $cppClass::inferReturnTypes(
        ::mlir::MLIRContext *ctx, std::optional<::mlir::Location> loc,
        Adaptor adaptor, ::llvm::SmallVectorImpl<::mlir::Type> &results) {
      return inferBroadcastType(ctx, loc, "}] # mnemonic # [{",
                                adaptor.getLhs(), adaptor.getRhs(), results);
    }
    ::llvm::StringRef $cppClass::getRuntimeFunction() {
      return "blpa_}] # mnemonic # [{";
    }
    void $cppClass::getRuntimeArgs(
        ::llvm::SmallVectorImpl<::mlir::blpa::RuntimeArg> &args) {
      appendBroadcastArgs(getLhs(), getRhs(), getOutput(), args);
    }
    // Either side; a broadcast one never has the result's size.
    void $cppClass::getInPlaceOperands(unsigned,
        ::llvm::SmallVectorImpl<unsigned> &operands) {
      operands.append({0, 1});
    }
  }];
}

def Blpa_AddOp : Blpa_BroadcastOp<"add", "lhs + rhs, broadcast", [Commutative]>;
def Blpa_MulOp : Blpa_BroadcastOp<"mul", "lhs * rhs, broadcast", [Commutative]>;
def Blpa_SubOp : Blpa_BroadcastOp<"sub", "lhs - rhs, broadcast">;
def Blpa_DivOp : Blpa_BroadcastOp<"div", "lhs / rhs, broadcast">;
def Blpa_PowerOp : Blpa_BroadcastOp<"power", "pow(lhs, rhs), broadcast">;

// Element-wise activations executed by blpa_activation (Runtime.h's
// BLPA_ACT_* kinds). Each op says its kind and parameters
// (getActivation()) and whether its gradient reads the output (sigmoid) or
// the input; shape rule, runtime call, in-place rule and gradient are
// shared (BlpaOps.cpp, BlpaGradients.cpp).
class Blpa_ActivationOp<string mnemonic, dag attrs, list<Trait> traits = []>
    : Blpa_ComputeOp<mnemonic, !listconcat(traits, [Differentiable, InPlace,
        DeclareOpInterfaceMethods<Blpa_SavedActivationOpInterface,
            ["isResultNonNegative", "encodeSavedActivations"]>])> {
  let arguments = !con((ins Blpa_F32Tensor:$input), attrs);
  let results = (outs Blpa_F32Tensor:$output);
  let extraClassDeclaration = [{
    /// The runtime kind and its two parameters.
    ::mlir::blpa::Activation getActivation();
  }];
  let extraClassDefinition = [{
    ::llvm::LogicalResult $cppClass::inferReturnTypes(
        ::mlir::MLIRContext *, std::optional<::mlir::Location>,
        Adaptor adaptor, ::llvm::SmallVectorImpl<::mlir::Type> &results) {
      results.push_back(adaptor.getInput().getType());
      return ::mlir::success();
    }
    ::llvm::StringRef $cppClass::getRuntimeFunction() {
      return activationRuntimeFunction(getActivation());
    }
    void $cppClass::getRuntimeArgs(
        ::llvm::SmallVectorImpl<::mlir::blpa::RuntimeArg> &args) {
      appendActivationArgs(getInput(), getOutput(), getActivation(), args);
    }
    void $cppClass::getInPlaceOperands(unsigned,
        ::llvm::SmallVectorImpl<unsigned> &operands) {
      operands.push_back(0);
    }
    bool $cppClass::isResultNonNegative(
        ::llvm::function_ref<bool(::mlir::Value)>) {
      return isActivationNonNegative(getActivation());
    }
    bool $cppClass::encodeSavedActivations(
        const ::mlir::blpa::ActivationEncoding &encoding) {
      return encodeActivationInput(getOperation(), getActivation(), encoding);
    }
    ::llvm::LogicalResult $cppClass::buildGradients(::mlir::OpBuilder &b,
        ::mlir::ValueRange resultGrads,
        ::llvm::SmallVectorImpl<::mlir::Value> &operandGrads) {
      return buildActivationGradient(getOperation(), getActivation(), b,
                                     resultGrads, operandGrads);
    }
  }];
}

def Blpa_SigmoidOp : Blpa_ActivationOp<"sigmoid", (ins)> {
  let summary = "1 / (1 + exp(-x))";
}
def Blpa_HardSigmoidOp : Blpa_ActivationOp<"hard_sigmoid",
    (ins F32Attr:$alpha, F32Attr:$beta)> {
  let summary = "max(0, min(1, alpha * x + beta))";
}
def Blpa_HardSwishOp : Blpa_ActivationOp<"hard_swish", (ins)> {
  let summary = "x * max(0, min(1, x / 6 + 1/2))";
}
def Blpa_TanhOp : Blpa_ActivationOp<"tanh", (ins)> {
  let summary = "tanh(x)";
}
def Blpa_ErfOp : Blpa_ActivationOp<"erf", (ins)> {
  let summary = "erf(x)";
}
def Blpa_GeluOp : Blpa_ActivationOp<"gelu",
    (ins DefaultValuedAttr<BoolAttr, "false">:$tanh_approximation)> {
  let summary = "x / 2 * (1 + erf(x / sqrt(2))), or its tanh approximation";
}
def Blpa_ExpOp : Blpa_ActivationOp<"exp", (ins)> {
  let summary = "exp(x)";
}
def Blpa_LogOp : Blpa_ActivationOp<"log", (ins)> {
  let summary = "log(x) (NaN below 0)";
}
def Blpa_SqrtOp : Blpa_ActivationOp<"sqrt", (ins)> {
  let summary = "sqrt(x) (NaN below 0)";
}
def Blpa_PowOp : Blpa_ActivationOp<"pow", (ins F32Attr:$exponent)> {
  let summary = "pow(x, exponent), the exponent a compile-time constant";
}
def Blpa_ClipOp : Blpa_ActivationOp<"clip",
    (ins Optional<Blpa_F32Tensor>:$runtime_min,
         Optional<Blpa_F32Tensor>:$runtime_max,
         DefaultValuedAttr<F32Attr, "-INFINITY">:$min,
         DefaultValuedAttr<F32Attr, "INFINITY">:$max),
    [AttrSizedOperandSegments, RunTimeScalars]> {
  let summary = "min(max(x, min), max) (ReLU6 with 0 and 6)";
  let description = [{
    A bound given as `runtime_min` / `runtime_max` (a 1-element tensor: a
    graph input or a computed value, ONNX Clip's bound inputs) is read when
    the step runs and replaces the attribute, which then keeps its default
    (unbounded). Its gradient reaches x only.
  }];
  let assemblyFormat = [{
    $input (`min` $runtime_min^)? (`max` $runtime_max^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

// Softmax and log-softmax along `axis` (ONNX Softmax and LogSoftmax from
// opset 13, torch.softmax; the importer runs the opset < 13 form, over the
// flattened trailing block, as axis 1 of a 2-D view). Executed by
// blpa_<mnemonic> over the input viewed as [outer, length, inner] around
// the axis; the gradient (blpa.<mnemonic>_grad) reads the output, not the
// input. Shape rule, verifier, runtime call and in-place rule are shared
// (BlpaOps.cpp).
class Blpa_SoftmaxFamilyOp<string mnemonic, string summaryText,
                           list<Trait> traits = []>
    : Blpa_ComputeOp<mnemonic, !listconcat(traits, [Differentiable, InPlace])> {
  let summary = summaryText;
  let arguments = (ins Blpa_F32Tensor:$input, I64Attr:$axis);
  let results = (outs Blpa_F32Tensor:$output);
  let extraClassDefinition = [{
    ::llvm::LogicalResult $cppClass::inferReturnTypes(
        ::mlir::MLIRContext *, std::optional<::mlir::Location> loc,
        Adaptor adaptor, ::llvm::SmallVectorImpl<::mlir::Type> &results) {
      return inferSoftmaxType(loc, "}] # mnemonic # [{", adaptor.getInput(),
                              ::mlir::Value(), adaptor.getAxis(), results);
    }
    ::llvm::StringRef $cppClass::getRuntimeFunction() {
      return "blpa_}] # mnemonic # [{";
    }
    void $cppClass::getRuntimeArgs(
        ::llvm::SmallVectorImpl<::mlir::blpa::RuntimeArg> &args) {
      appendSoftmaxArgs({getInput(), getOutput()}, getAxis(), args);
    }
    void $cppClass::getInPlaceOperands(unsigned,
        ::llvm::SmallVectorImpl<unsigned> &operands) {
      operands.push_back(0);
    }
  }];
}

def Blpa_SoftmaxOp : Blpa_SoftmaxFamilyOp<"softmax",
    "exp(x - max) / sum(exp(x - max)) along axis", [
    DeclareOpInterfaceMethods<Blpa_SavedActivationOpInterface,
        ["isResultNonNegative", "encodeSavedActivations"]>]>;
def Blpa_LogSoftmaxOp : Blpa_SoftmaxFamilyOp<"log_softmax",
    "x - max - log(sum(exp(x - max))) along axis">;

// A plain copy replays the mask: it hashes (seed, step, stream, element),
// and the step number changes only after the whole step.
def Blpa_DropoutOp : Blpa_ComputeOp<"dropout", [Differentiable, InPlace,
    Blpa_RecomputeOpInterface]> {
  let summary = "Training-mode dropout: kept elements scaled by 1/(1-ratio)";
  let description = [{
    The mask is a counter-based hash of the executable's seed, the step,
    `stream` (one per dropout of the model) and the element, so the
    gradient (blpa.dropout_grad with the same ratio and stream) recomputes
    it and nothing is saved. In @forward (evaluation) it is the identity
    (--blpa-inference-batch-norm).
  }];
  let arguments = (ins Blpa_F32Tensor:$input, F32Attr:$ratio, I64Attr:$stream);
  let results = (outs Blpa_F32Tensor:$output);
  let hasVerifier = 1;
}

def Blpa_ConcatOp : Blpa_ComputeOp<"concat", [Differentiable]> {
  let summary = "Joins the inputs along `axis`";
  let description = [{
    Runs as one blpa_copy_strided per input, each writing its columns of
    the output (RuntimeCallOpInterface::getNumRuntimeCalls).
  }];
  let arguments = (ins Variadic<Blpa_F32Tensor>:$inputs, I64Attr:$axis);
  let results = (outs Blpa_F32Tensor:$output);
  let extraClassDeclaration = [{
    unsigned getNumRuntimeCalls() { return getInputs().size(); }
    ::llvm::StringRef getRuntimeCall(unsigned index,
        ::llvm::SmallVectorImpl<::mlir::blpa::RuntimeArg> &args);
  }];
}

def Blpa_SliceOp : Blpa_ComputeOp<"slice", [Differentiable]> {
  let summary = "The part of the input from `start` along `axis`, of the "
                "result's size (a concatenation's gradient)";
  let arguments = (ins Blpa_F32Tensor:$input, I64Attr:$axis, I64Attr:$start,
                   I64Attr:$size);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_PadOp : Blpa_ComputeOp<"pad", [Differentiable, RunTimeScalars]> {
  let summary = "Constant, reflect or edge padding (ONNX Pad)";
  let description = [{
    `pads` holds the begin pads of every dimension, then the end pads (as
    ONNX Pad). `mode` "constant" writes `value` (or the 1-element
    `runtime_value`, read when the step runs) and crops where pads are
    negative; its gradient is the padding of the gradient by the negated
    pads with value 0. "reflect" mirrors about the edge elements (pads
    under the dimension's size), "edge" repeats them (pads >= 0); their
    gradient is blpa.pad_grad. Nothing is saved for either.
  }];
  let arguments = (ins Blpa_F32Tensor:$input,
                   Optional<Blpa_F32Tensor>:$runtime_value,
                   DenseI64ArrayAttr:$pads,
                   DefaultValuedAttr<StrAttr, "\"constant\"">:$mode,
                   DefaultValuedAttr<F32Attr, "0.0f">:$value);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_PadGradOp : Blpa_ComputeOp<"pad_grad"> {
  let summary = "Gradient of a reflect or edge blpa.pad";
  let description = [{
    For each element of the padded op's input, the sum of `grad` over the
    elements of its output that copy it (`pads` and `mode` as the pad's;
    the result has the pad's input shape).
  }];
  let arguments = (ins Blpa_F32Tensor:$grad, DenseI64ArrayAttr:$pads,
                   StrAttr:$mode);
  let results = (outs Blpa_F32Tensor:$input_grad);
}

def Blpa_TransposeOp : Blpa_ComputeOp<"transpose", [Differentiable,
    NonNegativeRule]> {
  let summary = "Permutes the dimensions (ONNX Transpose)";
  let description = [{
    Output dimension `d` is input dimension `perm[d]`, a permutation of
    0..rank-1. The gradient is the transpose of the gradient by the inverse
    permutation; nothing is saved for it.
  }];
  let arguments = (ins Blpa_F32Tensor:$input, DenseI64ArrayAttr:$perm);
  let results = (outs Blpa_F32Tensor:$output);
}

// Attributes shared by poolings and their gradients: one entry per spatial
// dimension (1-D poolings run as 2-D ones over a height of 1, so 2 or 3;
// pads: all begins, then all ends); the default dilations are those of a
// 2-D pooling.
defvar PoolAttrs = (ins DenseI64ArrayAttr:$kernel_shape,
    DenseI64ArrayAttr:$strides, DenseI64ArrayAttr:$pads,
    DefaultValuedAttr<BoolAttr, "false">:$ceil_mode,
    DefaultValuedAttr<DenseI64ArrayAttr, "{1, 1}">:$dilations);

def Blpa_TriluOp : Blpa_ComputeOp<"trilu", [Differentiable, InPlace]> {
  let summary = "Keeps a triangle of the last two dimensions (ONNX Trilu)";
  let description = [{
    Elements with column - row >= `k` (`upper`) or <= `k` (lower) are kept,
    the others zeroed, in every matrix of the last two dimensions. The
    gradient is the same triangle of the gradient; nothing is saved.
  }];
  let arguments = (ins Blpa_F32Tensor:$input, I64Attr:$k, BoolAttr:$upper);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_EmbeddingOp : Blpa_ComputeOp<"embedding", [Differentiable]> {
  let summary = "Rows of a table at run-time indices (an embedding lookup)";
  let description = [{
    output[i..., j...] = table[indices[i...], j...] for a table [vocab,
    ...] (a row may have any shape; [vocab, dim] for an embedding): ONNX
    Gather along axis 0 by token ids the step is given. Indices lie in [-vocab, vocab) (negative ones count from the end,
    as Gather's do); others are a run-time error. The table's gradient is a
    scatter-add (blpa.embedding_grad); indices have none. The backward pass
    reads the indices, a graph input, so nothing is saved.
  }];
  let arguments = (ins Blpa_F32Tensor:$table, Blpa_IndexTensor:$indices);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_MaxPoolOp : Blpa_ComputeOp<"max_pool", [Differentiable,
    DeclareOpInterfaceMethods<Blpa_SavedActivationOpInterface,
        ["isResultNonNegative", "encodeSavedActivations"]>]> {
  let summary = "2-D or 3-D max pooling (NCHW or NCDHW)";
  let description = [{
    Each output is the first maximum, in row-major order, of its window's
    taps inside the input (taps `dilations` apart; padding never wins).
    With `ceil_mode` the last window may run past the end padding.
  }];
  let arguments = !con((ins Blpa_F32Tensor:$input), PoolAttrs);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_AvgPoolOp : Blpa_ComputeOp<"avg_pool", [Differentiable,
    NonNegativeRule]> {
  let summary = "2-D or 3-D average pooling (NCHW or NCDHW)";
  let description = [{
    The mean of each window's taps inside the input, or with
    `count_include_pad` their sum divided by the window's taps inside the
    padded extent: a `ceil_mode` window running past the end padding is
    clipped to it (as PyTorch does). Dilations must be 1.
  }];
  let arguments = !con((ins Blpa_F32Tensor:$input), PoolAttrs,
      (ins DefaultValuedAttr<BoolAttr, "false">:$count_include_pad));
  let results = (outs Blpa_F32Tensor:$output);
  let hasVerifier = 1;
}

def Blpa_GlobalAvgPoolOp : Blpa_ComputeOp<"global_avg_pool", [Differentiable,
    NonNegativeRule]> {
  let summary = "Mean over all dimensions after the channel; keeps them as 1s";
  let arguments = (ins Blpa_F32Tensor:$input);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_ReshapeOp : Blpa_Op<"reshape", [Pure, Differentiable, NonNegativeRule,
    DeclareOpInterfaceMethods<ViewLikeOpInterface>]> {
  let summary = "Reinterprets the data with another static shape (a view)";
  let arguments = (ins Blpa_F32Tensor:$input);
  let results = (outs Blpa_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
  let hasVerifier = 1;
}

def Blpa_GemmOp : Blpa_ComputeOp<"gemm", [Differentiable]> {
  let summary = "alpha * op(a) * op(b) + beta * c, c broadcast to [M, N]";
  let arguments = (ins Blpa_F32Tensor:$a, Blpa_F32Tensor:$b, Optional<Blpa_F32Tensor>:$c,
      DefaultValuedAttr<BoolAttr, "false">:$trans_a,
      DefaultValuedAttr<BoolAttr, "false">:$trans_b,
      DefaultValuedAttr<F64Attr, "1.0">:$alpha,
      DefaultValuedAttr<F64Attr, "1.0">:$beta);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_BatchMatMulOp : Blpa_ComputeOp<"batch_matmul", [Differentiable]> {
  let summary = "op(a[i]) * op(b[i]) for each i of a batch; a batch of 1 broadcasts";
  let description = [{
    `output[B, M, N]`: matrix i is `op(a[i]) * op(b[i])`, op(a) `[M, K]`
    (a stores `[K, M]` when `trans_a`), op(b) `[K, N]` (b stores `[N, K]`
    when `trans_b`). Each operand's batch is B or 1; a batch of 1 is the
    same matrix for every i (numpy's broadcasting of matmul, which the
    importer reduces to this form).
  }];
  let arguments = (ins Blpa_F32Tensor:$a, Blpa_F32Tensor:$b,
      DefaultValuedAttr<BoolAttr, "false">:$trans_a,
      DefaultValuedAttr<BoolAttr, "false">:$trans_b);
  let results = (outs Blpa_F32Tensor:$output);
}

// The loss's labels: one per row of the logits (their shape without the last
// dimension); rows labelled `ignore_index` count neither in the loss nor in
// the mean's divisor (PyTorch's cross_entropy).
defvar LossLabels = (ins Blpa_LabelTensor:$labels,
    DefaultValuedAttr<I64Attr, "-100">:$ignore_index);

def Blpa_SoftmaxCrossEntropyOp
    : Blpa_ComputeOp<"softmax_cross_entropy", [Differentiable]> {
  let summary = "Mean over the labelled rows of -log softmax(logits)[label]";
  let description = [{
    Logits [N, classes] with labels [N], or [B, T, classes] with labels
    [B, T] (a language model's next tokens): the softmax runs over the last
    dimension, the mean over the rows whose label is not `ignore_index`
    (0 when every row is ignored).
  }];
  let arguments = !con((ins Blpa_F32Tensor:$logits), LossLabels);
  let results = (outs Blpa_LossTensor:$loss);
}

def Blpa_FillOp : Blpa_Op<"fill", [Pure, RuntimeCall, Differentiable]> {
  let summary = "A tensor whose elements all equal `value`";
  let description = [{
    Seeds the backward pass (the adjoint of the loss is `blpa.fill 1.0`),
    and stands for the uniform constants of ONNX models (`3 * x`): a
    constant, so no gradient flows past it.
  }];
  let arguments = (ins F64Attr:$value);
  let results = (outs Blpa_F32Tensor:$output);
  let assemblyFormat = "$value attr-dict `:` type($output)";
}

//===----------------------------------------------------------------------===//
// Gradient ops (built by the gradient rules)
//===----------------------------------------------------------------------===//

def Blpa_ConvGradInputOp : Blpa_ComputeOp<"conv_grad_input"> {
  let summary = "Gradient of conv with respect to its input";
  let arguments = !con((ins Blpa_F32Tensor:$grad, Blpa_F32Tensor:$weight), ConvAttrs,
                       (ins DenseI64ArrayAttr:$input_shape));
  let results = (outs Blpa_F32Tensor:$input_grad);
}

def Blpa_ConvGradWeightOp : Blpa_ComputeOp<"conv_grad_weight"> {
  let summary = "Gradient of conv with respect to its weight";
  let arguments = !con((ins Blpa_F32Tensor:$grad, Blpa_F32Tensor:$input), ConvAttrs,
                       (ins DenseI64ArrayAttr:$weight_shape));
  let results = (outs Blpa_F32Tensor:$weight_grad);
}

def Blpa_BatchNormGradOp : Blpa_ComputeOp<"batch_norm_grad", [ActivationNeedRule,
    InPlace]> {
  let summary = "Gradients of training-mode batch norm";
  let arguments = (ins Blpa_F32Tensor:$grad, Blpa_F32Tensor:$input, Blpa_F32Tensor:$scale,
      Blpa_F32Tensor:$mean, Blpa_F32Tensor:$inv_std);
  let results = (outs Blpa_F32Tensor:$input_grad, Blpa_F32Tensor:$scale_grad,
      Blpa_F32Tensor:$bias_grad);
}

def Blpa_ReluGradOp : Blpa_ComputeOp<"relu_grad", [ActivationNeedRule, InPlace]> {
  let summary = "grad where the relu's output is positive, else 0";
  let arguments = (ins Blpa_F32Tensor:$grad, Blpa_F32Tensor:$output);
  let results = (outs Blpa_F32Tensor:$input_grad);
}

def Blpa_ReduceToShapeOp : Blpa_Op<"reduce_to_shape", [Pure, RuntimeCall]> {
  let summary = "scale * sum over the dimensions that broadcasting expanded";
  let description = [{
    The adjoint of broadcasting: the result shape broadcasts (numpy rules,
    right-aligned) to the input shape; expanded dimensions are summed.
  }];
  let arguments = (ins Blpa_F32Tensor:$input,
      DefaultValuedAttr<F64Attr, "1.0">:$scale);
  let results = (outs Blpa_F32Tensor:$output);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($output)";
  let hasVerifier = 1;
}

def Blpa_DropoutGradOp : Blpa_ComputeOp<"dropout_grad", [InPlace]> {
  let summary = "The gradient through blpa.dropout's recomputed mask";
  let arguments = (ins Blpa_F32Tensor:$grad, F32Attr:$ratio, I64Attr:$stream);
  let results = (outs Blpa_F32Tensor:$input_grad);
}

def Blpa_ActivationGradOp : Blpa_ComputeOp<"activation_grad", [InPlace,
    AttrSizedOperandSegments, RegionRule]> {
  let summary = "Gradient of an element-wise activation of `kind`";
  let description = [{
    `saved` is the activation's output for sigmoid and its input for the
    other kinds (blpa_activation_grad in Runtime.h); `runtime_alpha` /
    `runtime_beta` replace the parameters as in the activation. For the
    piecewise kinds (clip, hard sigmoid, hard swish) it needs the exact
    piece of `saved` (ActivationNeed::Region): compression turns it into
    `blpa.activation_grad_region`.
  }];
  let arguments = (ins Blpa_F32Tensor:$grad, Blpa_F32Tensor:$saved,
                   Optional<Blpa_F32Tensor>:$runtime_alpha,
                   Optional<Blpa_F32Tensor>:$runtime_beta,
                   I64Attr:$kind, F32Attr:$alpha, F32Attr:$beta);
  let results = (outs Blpa_F32Tensor:$input_grad);
  let assemblyFormat = [{
    $grad `,` $saved (`alpha` $runtime_alpha^)? (`beta` $runtime_beta^)?
    attr-dict `:` functional-type(operands, results)
  }];
}

// Gradients of blpa.softmax and blpa.log_softmax along `axis`, from the
// forward op's output, which they need exact (getActivationNeed): y near 0
// or 1, and exp(y) of a log-probability, lose most of their relative
// precision in a few bits (docs/design.md: coded attention probabilities
// made a 4-bit ViT diverge).
class Blpa_SoftmaxGradFamilyOp<string mnemonic, string summaryText>
    : Blpa_ComputeOp<mnemonic, [ActivationNeedRule, InPlace]> {
  let summary = summaryText;
  let arguments = (ins Blpa_F32Tensor:$grad, Blpa_F32Tensor:$output,
                   I64Attr:$axis);
  let results = (outs Blpa_F32Tensor:$input_grad);
  let extraClassDefinition = [{
    ::llvm::LogicalResult $cppClass::inferReturnTypes(
        ::mlir::MLIRContext *, std::optional<::mlir::Location> loc,
        Adaptor adaptor, ::llvm::SmallVectorImpl<::mlir::Type> &results) {
      return inferSoftmaxType(loc, "}] # mnemonic # [{", adaptor.getGrad(),
                              adaptor.getOutput(), adaptor.getAxis(), results);
    }
    ::llvm::StringRef $cppClass::getRuntimeFunction() {
      return "blpa_}] # mnemonic # [{";
    }
    void $cppClass::getRuntimeArgs(
        ::llvm::SmallVectorImpl<::mlir::blpa::RuntimeArg> &args) {
      appendSoftmaxArgs({getGrad(), getOutput(), getInputGrad()}, getAxis(),
                        args);
    }
    // The kernel sums each row before writing it, element by element.
    void $cppClass::getInPlaceOperands(unsigned,
        ::llvm::SmallVectorImpl<unsigned> &operands) {
      operands.append({0, 1});
    }
    ::mlir::blpa::ActivationNeed $cppClass::getActivationNeed(
        unsigned operandIndex) {
      return operandIndex == getOutputMutable().getOperandNumber()
                 ? ::mlir::blpa::ActivationNeed::Exact
                 : ::mlir::blpa::ActivationNeed::Values;
    }
  }];
}

def Blpa_SoftmaxGradOp : Blpa_SoftmaxGradFamilyOp<"softmax_grad",
    "output * (grad - sum(grad * output)) along axis">;
def Blpa_LogSoftmaxGradOp : Blpa_SoftmaxGradFamilyOp<"log_softmax_grad",
    "grad - exp(output) * sum(grad) along axis">;

def Blpa_MaxPoolGradOp : Blpa_ComputeOp<"max_pool_grad", [ActivationNeedRule]> {
  let summary = "Routes each gradient to its window's first maximum";
  let arguments = !con((ins Blpa_F32Tensor:$grad, Blpa_F32Tensor:$input), PoolAttrs);
  let results = (outs Blpa_F32Tensor:$input_grad);
}

def Blpa_AvgPoolGradOp : Blpa_ComputeOp<"avg_pool_grad"> {
  let summary = "Gradient of avg_pool";
  let arguments = !con((ins Blpa_F32Tensor:$grad), PoolAttrs,
      (ins DefaultValuedAttr<BoolAttr, "false">:$count_include_pad,
           DenseI64ArrayAttr:$input_shape));
  let results = (outs Blpa_F32Tensor:$input_grad);
}

def Blpa_GlobalAvgPoolGradOp : Blpa_ComputeOp<"global_avg_pool_grad"> {
  let summary = "Gradient of global_avg_pool";
  let arguments = (ins Blpa_F32Tensor:$grad, DenseI64ArrayAttr:$input_shape);
  let results = (outs Blpa_F32Tensor:$input_grad);
}

def Blpa_SoftmaxCrossEntropyGradOp
    : Blpa_ComputeOp<"softmax_cross_entropy_grad", [ActivationNeedRule]> {
  let summary = "Gradient of the mean softmax cross-entropy";
  let arguments = !con((ins Blpa_F32Tensor:$logits), LossLabels,
      (ins Blpa_LossTensor:$loss_grad));
  let results = (outs Blpa_F32Tensor:$logits_grad);
}

def Blpa_EmbeddingGradOp : Blpa_ComputeOp<"embedding_grad"> {
  let summary = "Gradient of an embedding lookup: a deterministic scatter-add";
  let description = [{
    table_grad[v, ...] = the sum of grad[i..., ...] over the positions whose
    index is v, added in position order (the same on every thread count and
    runtime); rows no index names are zero. `table_shape` is the table's.
  }];
  let arguments = (ins Blpa_F32Tensor:$grad, Blpa_IndexTensor:$indices,
      DenseI64ArrayAttr:$table_shape);
  let results = (outs Blpa_F32Tensor:$table_grad);
}

//===----------------------------------------------------------------------===//
// State updates (side effects on persistent storage, the update phase)
//===----------------------------------------------------------------------===//

def Blpa_SgdUpdateOp : Blpa_Op<"sgd_update", [RuntimeCall,
    MemoryEffects<[MemWrite]>, AllTypesMatch<["param", "grad"]>]> {
  let summary = "SGD with momentum and weight decay, in place on a parameter";
  let description = [{
    Records `grad` as the parameter's gradient and updates the trainable
    parameter `param` (a `blpa.param`) and its momentum buffer in place.
    Learning rate, momentum and weight decay are runtime values.
  }];
  let arguments = (ins Blpa_F32Tensor:$param, Blpa_F32Tensor:$grad);
  let assemblyFormat = "$param `,` $grad attr-dict `:` type($param)";
  let hasVerifier = 1;
}

def Blpa_UpdateRunningStatsOp : Blpa_Op<"update_running_stats", [RuntimeCall,
    MemoryEffects<[MemWrite]>,
    AllTypesMatch<["running_mean", "running_var", "mean", "inv_std"]>]> {
  let summary = "Updates batch-norm running statistics in place";
  let description = [{
    `running = running * momentum + batch * (1 - momentum)`; the running
    variance uses the unbiased batch variance from `inv_std` and `count`
    (the number of elements per channel), as PyTorch does.
  }];
  let arguments = (ins Blpa_F32Tensor:$running_mean, Blpa_F32Tensor:$running_var,
      Blpa_F32Tensor:$mean, Blpa_F32Tensor:$inv_std, F64Attr:$momentum,
      F64Attr:$epsilon, I64Attr:$count);
  let assemblyFormat = "operands attr-dict `:` type($running_mean)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Data parallelism (built by --blpa-allreduce-gradients)
//
// A bucket is a 1-D tensor of gradients concatenated in the order the
// backward pass finishes them. Its sum over the replicas runs between the
// two ops, in place, while the step goes on; both results are views of the
// bucket, so the plan keeps its buffer untouched until the wait.
//===----------------------------------------------------------------------===//

class Blpa_AllreduceOp<string mnemonic> : Blpa_Op<mnemonic, [RuntimeCall,
    DeclareOpInterfaceMethods<ViewLikeOpInterface>, MemoryEffects<[MemWrite]>,
    AllTypesMatch<["bucket", "result"]>]> {
  let arguments = (ins 1DTensorOf<[F32]>:$bucket,
      ConfinedAttr<I64Attr, [IntNonNegative]>:$index);
  let results = (outs 1DTensorOf<[F32]>:$result);
  let assemblyFormat = "$bucket attr-dict `:` type($bucket)";
  let hasVerifier = 1;
}

def Blpa_AllreduceStartOp : Blpa_AllreduceOp<"allreduce_start"> {
  let summary = "Starts summing a gradient bucket over every replica";
  let description = [{
    Hands bucket number `index` to the runtime's all-reduce thread
    (`blpa_allreduce_start`) and returns at once; the result is the bucket
    while it is being summed, for `blpa.allreduce_wait` alone to read.
  }];
}

def Blpa_AllreduceWaitOp : Blpa_AllreduceOp<"allreduce_wait"> {
  let summary = "Waits for a bucket's sum and divides it by the replicas";
  let description = [{
    Reads the result of the `blpa.allreduce_start` of the same bucket; its
    own result is the mean gradient over the replicas, in the bucket's
    buffer (`blpa_allreduce_wait`).
  }];
}

//===----------------------------------------------------------------------===//
// Activation compression (built by --blpa-compress-activations)
//
// Encoders run in the forward phase right after the producer of a saved
// activation, decoders in the backward phase right before its first reader;
// only the packed codes (and a few floats per channel) live in between.
//===----------------------------------------------------------------------===//

def Blpa_BatchNormEncodeOp : Blpa_ComputeOp<"batch_norm_encode"> {
  let summary = "Training-mode batch norm that also writes the method's codes";
  let description = [{
    `blpa.batch_norm` (the same output, mean and inv_std, bit for bit) and,
    in the same pass over memory, the `bits`-bit `bn_relu` codes of
    `output / |scale|` per channel, laid out so that the ReLU threshold is a
    bin boundary (docs/design.md, "Data layouts"). With the scale and bias
    and `inv_std`, the codes are all the backward pass needs of the batch
    norm and of a ReLU applied to its output. With `relu` (from
    --blpa-fuse-batch-norm-relu) `output` is that ReLU's output; the codes
    are still those of the batch norm's.
  }];
  let arguments = (ins Blpa_F32Tensor:$input, Blpa_F32Tensor:$scale, Blpa_F32Tensor:$bias,
      Blpa_F32Tensor:$running_mean, Blpa_F32Tensor:$running_var, F64Attr:$epsilon,
      F64Attr:$momentum, I64Attr:$bits, UnitAttr:$relu);
  let results = (outs Blpa_F32Tensor:$output, Blpa_F32Tensor:$mean,
      Blpa_F32Tensor:$inv_std, Blpa_PackedTensor:$codes);
}

def Blpa_BatchNormGradDecodeOp : Blpa_ComputeOp<"batch_norm_grad_decode",
    [ActivationNeedRule, InPlace]> {
  let summary = "Batch-norm gradients from the codes of its output";
  let description = [{
    `blpa.batch_norm_grad` with x-hat recovered from `bn_relu` codes: the
    bias gradient is exact, the scale gradient and the variance term of the
    input gradient use the approximation. With `relu`, `grad` is the
    gradient of a ReLU of the decoded output and is first masked where
    `blpa.batch_norm_decode {relu}` gives 0 (--blpa-fuse-batch-norm-relu).
  }];
  let arguments = (ins Blpa_F32Tensor:$grad, Blpa_PackedTensor:$codes,
      Blpa_F32Tensor:$scale, Blpa_F32Tensor:$bias, Blpa_F32Tensor:$inv_std,
      UnitAttr:$relu);
  let results = (outs Blpa_F32Tensor:$input_grad, Blpa_F32Tensor:$scale_grad,
      Blpa_F32Tensor:$bias_grad);
}

def Blpa_BatchNormDecodeOp : Blpa_ComputeOp<"batch_norm_decode"> {
  let summary = "The batch norm's output (or its ReLU) decoded from its codes";
  let description = [{
    Approximates the output of the batch norm whose `bn_relu` codes these
    are; with `relu`, the output of a ReLU applied to it, whose zeros are
    exactly the original's.
  }];
  let arguments = (ins Blpa_PackedTensor:$codes, Blpa_F32Tensor:$scale,
      Blpa_F32Tensor:$bias, UnitAttr:$relu);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_QuantizeOp : Blpa_ComputeOp<"quantize"> {
  let summary = "Per-channel uniform quantization of a saved activation";
  let description = [{
    Codes of `input` (channel = dimension 1) in `scheme`: `affine` (each
    channel's [min, max] of the batch in 2^bits - 1 steps), `nonneg` (an
    input known to be >= 0: (0, max] in 2^bits - 1 bins, zero exact) or
    `mask` (1 bit, input > 0). `params` ([2, C]: per-channel low end and
    step) is absent for masks.
  }];
  let arguments = (ins Blpa_F32Tensor:$input, I64Attr:$bits, StrAttr:$scheme);
  let results = (outs Blpa_PackedTensor:$codes, Optional<Blpa_F32Tensor>:$params);
}

def Blpa_DequantizeOp : Blpa_ComputeOp<"dequantize"> {
  let summary = "Decodes blpa.quantize codes (a mask decodes to 1.0 / 0.0)";
  let arguments = (ins Blpa_PackedTensor:$codes, Optional<Blpa_F32Tensor>:$params);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_ProbabilityEncodeOp : Blpa_ComputeOp<"probability_encode"> {
  let summary = "Log-domain codes of probabilities along the last dimension";
  let description = [{
    Codes of `input` (elements >= 0: a softmax output along its last
    dimension), one row per index of the other dimensions, uniform in
    log2 below each row's maximum, zero exact (blpa_probability_encode,
    docs/design.md "Attention probabilities"). `codes` is [rows, length
    rounded up to whole bytes], scheme `logprob`, so that every row starts
    on a byte; `params` is [rows, 2]: each row's scale and step.
  }];
  let arguments = (ins Blpa_F32Tensor:$input, I64Attr:$bits);
  let results = (outs Blpa_PackedTensor:$codes, Blpa_F32Tensor:$params);
}

def Blpa_ProbabilityDecodeOp : Blpa_ComputeOp<"probability_decode"> {
  let summary = "Decodes blpa.probability_encode codes into a tensor of `shape`";
  let description = [{
    The probabilities of `codes` (blpa_probability_decode): `shape` is the
    encoded tensor's, or a view of it with the same last dimension. Each
    decoded row sums to what the encoded row summed to.
  }];
  let arguments = (ins Blpa_PackedTensor:$codes, Blpa_F32Tensor:$params,
                   DenseI64ArrayAttr:$shape);
  let results = (outs Blpa_F32Tensor:$output);
}

def Blpa_ActivationRegionOp : Blpa_ComputeOp<"activation_region",
    [AttrSizedOperandSegments]> {
  let summary = "Which piece of a piecewise activation each element is in";
  let description = [{
    The `region` codes of `input` for the activation `kind` with parameters
    `alpha`, `beta` (or `runtime_alpha`, `runtime_beta`), as
    blpa.activation_grad has them: 1 bit for clip and hard sigmoid (1 where
    the gradient passes), 2 bits for hard swish (0 below -3, 1 in [-3, 3],
    2 above). Each code is the exact gradient's own decision on the exact
    input, so a gradient read from the codes masks exactly as it does.
  }];
  let arguments = (ins Blpa_F32Tensor:$input,
                   Optional<Blpa_F32Tensor>:$runtime_alpha,
                   Optional<Blpa_F32Tensor>:$runtime_beta,
                   I64Attr:$kind, F32Attr:$alpha, F32Attr:$beta);
  let results = (outs Blpa_PackedTensor:$codes);
  let assemblyFormat = [{
    $input (`alpha` $runtime_alpha^)? (`beta` $runtime_beta^)?
    attr-dict `:` functional-type(operands, results)
  }];
}

def Blpa_ActivationGradRegionOp : Blpa_ComputeOp<"activation_grad_region",
    [InPlace]> {
  let summary = "Gradient of a piecewise activation from its region codes";
  let description = [{
    `blpa.activation_grad` with the piece of each element read from
    `blpa.activation_region` codes: clip passes `grad` in region 1, hard
    sigmoid `alpha * grad`; hard swish gives 0 in region 0, `grad` in
    region 2 and `grad * (v / 3 + 1/2)` in region 1, where `values` (an
    approximation of the input will do; present for hard swish only) is
    clamped to [-3, 3], the piece the input is known to be in.
  }];
  let arguments = (ins Blpa_F32Tensor:$grad, Blpa_PackedTensor:$codes,
                   Optional<Blpa_F32Tensor>:$values,
                   I64Attr:$kind, F32Attr:$alpha, F32Attr:$beta);
  let results = (outs Blpa_F32Tensor:$input_grad);
}

def Blpa_MaxPoolArgmaxOp : Blpa_ComputeOp<"max_pool_argmax", [
    DeclareOpInterfaceMethods<Blpa_SavedActivationOpInterface,
        ["isResultNonNegative"]>]> {
  let summary = "Max pooling that also records each window's maximum";
  let description = [{
    `blpa.max_pool` and `argmax` codes: per output element, the position of
    its window's first maximum (row-major within the kernel window). With
    them the gradient is routed exactly without keeping the input.
  }];
  let arguments = !con((ins Blpa_F32Tensor:$input), PoolAttrs);
  let results = (outs Blpa_F32Tensor:$output, Blpa_PackedTensor:$codes);
}

def Blpa_MaxPoolGradArgmaxOp : Blpa_ComputeOp<"max_pool_grad_argmax"> {
  let summary = "Gradient of max pooling from its argmax codes";
  let arguments = !con((ins Blpa_F32Tensor:$grad, Blpa_PackedTensor:$codes),
      PoolAttrs, (ins DenseI64ArrayAttr:$input_shape));
  let results = (outs Blpa_F32Tensor:$input_grad);
}

//===----------------------------------------------------------------------===//
// Fusion (built by --blpa-fuse-batch-norm-relu)
//
// A ReLU applied to a training-mode batch norm's output runs inside the
// batch norm's kernels; its output is recomputed in the backward pass from
// the batch norm's input, which the batch-norm gradient keeps anyway.
//===----------------------------------------------------------------------===//

def Blpa_BatchNormReluOp : Blpa_ComputeOp<"batch_norm_relu"> {
  let summary = "Training-mode batch norm followed by a ReLU, in one pass";
  let description = [{
    `blpa.relu` of `blpa.batch_norm`'s output; the mean and inv_std results
    are the batch norm's. The pre-ReLU output is never stored.
  }];
  let arguments = (ins Blpa_F32Tensor:$input, Blpa_F32Tensor:$scale, Blpa_F32Tensor:$bias,
      Blpa_F32Tensor:$running_mean, Blpa_F32Tensor:$running_var, F64Attr:$epsilon,
      F64Attr:$momentum);
  let results = (outs Blpa_F32Tensor:$output, Blpa_F32Tensor:$mean, Blpa_F32Tensor:$inv_std);
}

def Blpa_BatchNormReluGradOp : Blpa_ComputeOp<"batch_norm_relu_grad",
    [ActivationNeedRule, InPlace]> {
  let summary = "Gradients of blpa.batch_norm_relu from its input";
  let description = [{
    `blpa.batch_norm_grad` of `blpa.relu_grad`: `grad` (the gradient of the
    ReLU output) is masked where the batch norm's output, recomputed from
    `input`, `scale`, `bias`, `mean` and `inv_std`, is not positive.
  }];
  let arguments = (ins Blpa_F32Tensor:$grad, Blpa_F32Tensor:$input, Blpa_F32Tensor:$scale,
      Blpa_F32Tensor:$bias, Blpa_F32Tensor:$mean, Blpa_F32Tensor:$inv_std);
  let results = (outs Blpa_F32Tensor:$input_grad, Blpa_F32Tensor:$scale_grad,
      Blpa_F32Tensor:$bias_grad);
}

def Blpa_BatchNormApplyOp : Blpa_ComputeOp<"batch_norm_apply"> {
  let summary = "Recomputes a batch norm's output (or its ReLU) from its input";
  let description = [{
    `scale * (input - mean) * inv_std + bias` with the batch statistics the
    forward pass computed, and `max(., 0)` with `relu`: bit for bit the
    output of `blpa.batch_norm` (or `blpa.batch_norm_relu`) on that input.
  }];
  let arguments = (ins Blpa_F32Tensor:$input, Blpa_F32Tensor:$scale, Blpa_F32Tensor:$bias,
      Blpa_F32Tensor:$mean, Blpa_F32Tensor:$inv_std, UnitAttr:$relu);
  let results = (outs Blpa_F32Tensor:$output);
}

#endif // BLPA_DIALECT_BLPA_IR_BLPAOPS_TD
