//===- BlpaInterfaces.h - Per-op knowledge of blpa ops ----------*- C++ -*-===//

#ifndef BLPA_DIALECT_BLPA_IR_BLPAINTERFACES_H
#define BLPA_DIALECT_BLPA_IR_BLPAINTERFACES_H

#include "mlir/IR/OpDefinition.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/SmallVector.h"

namespace mlir {
namespace blpa {

/// One argument of a runtime call, after the context pointer. The lowering
/// turns each into an LLVM value: a data pointer (arena, persistent storage
/// or graph input), or a constant.
struct RuntimeArg {
  enum class Kind {
    /// The data pointer of `value`; a null `value` is a null pointer.
    Data,
    /// The momentum buffer of the trainable parameter `value`.
    Momentum,
    /// The persistent gradient storage of the trainable parameter `value`.
    GradStore,
    Int,
    Float,
    /// Pointer to a constant int64_t array.
    IntArray,
  };
  Kind kind;
  Value value;
  int64_t intValue = 0;
  double floatValue = 0;
  SmallVector<int64_t> intArray;

  static RuntimeArg data(Value v) { return {Kind::Data, v}; }
  static RuntimeArg momentum(Value param) { return {Kind::Momentum, param}; }
  static RuntimeArg gradStore(Value param) { return {Kind::GradStore, param}; }
  static RuntimeArg i64(int64_t v) { return {Kind::Int, {}, v}; }
  static RuntimeArg f64(double v) { return {Kind::Float, {}, 0, v}; }
  static RuntimeArg i64Array(ArrayRef<int64_t> v) {
    return {Kind::IntArray, {}, 0, 0, SmallVector<int64_t>(v)};
  }
};

/// An element-wise activation as the runtime executes it (Runtime.h's
/// BLPA_ACT_* kinds).
struct Activation {
  int64_t kind;
  float alpha = 0, beta = 0;
  /// Whether the gradient reads the output (sigmoid) rather than the input.
  bool gradFromOutput = false;
  /// 1-element tensors read when the step runs in place of alpha and beta
  /// (Clip's bounds given as inputs); null when static.
  Value runtimeAlpha = nullptr, runtimeBeta = nullptr;

  bool isDynamic() const { return runtimeAlpha || runtimeBeta; }
};

/// How a backward op uses a saved forward value (SavedActivationOpInterface).
enum class ActivationNeed {
  /// The values themselves (a weight gradient's input, a gemm operand).
  Values,
  /// Only whether each element is > 0 (a ReLU gradient's mask).
  Sign,
  /// Only where each max-pooling window's first maximum is.
  WindowArgmax,
  /// Exactly which piece of a piecewise activation each element is in (the
  /// gradient's mask: Clip's, HardSigmoid's, HardSwish's), plus the values
  /// where the slope inside a piece depends on them; decoded values would
  /// move elements near a threshold into the wrong piece.
  Region,
  /// The exact values: an approximation would distort the gradient too much
  /// for the memory it saves (the loss's logits).
  Exact,
};

/// What --blpa-compress-activations hands to a forward op that encodes its
/// own saved activations (SavedActivationOpInterface::encodeSavedActivations).
/// The pass builds one per op: each op encodes at the width chosen for it.
struct ActivationEncoding {
  /// Bits per code of this op's value codes: 8, 4 or 2 (its
  /// `blpa.act_choice`, or the pass's default width).
  int64_t bits;
  /// The backward-phase uses of a value that may read an approximation of
  /// it (the user's per-node policies applied).
  llvm::function_ref<SmallVector<OpOperand *>(Value)> getBackwardUses;
};

/// The default recomputation of an op without side effects
/// (RecomputeOpInterface): a copy of `op` with `operands`, built at the
/// builder's insertion point; appends the copy's results.
void recomputeByCopy(Operation *op, OpBuilder &builder, ValueRange operands,
                     SmallVectorImpl<Value> &results);

/// The work of one execution of an op (CostOpInterface): floating-point
/// operations and bytes read plus written.
struct OpCost {
  double flops = 0;
  double bytes = 0;
};

/// The work of one execution of `op`: its CostOpInterface, or, without one,
/// that of an element-wise op (one operation per element of its largest
/// tensor, each operand read and each result written once).
OpCost getOpCost(Operation *op);

/// Attaches CostOpInterface to the ops that override the element-wise cost
/// (lib/Dialect/Blpa/IR/BlpaCosts.cpp); the dialect does it when loaded.
void registerCostModels(MLIRContext &context);

/// Attaches ScratchOpInterface to the ops whose CPU kernels take scratch
/// (lib/Dialect/Blpa/IR/BlpaScratch.cpp); the dialect does it when loaded.
void registerScratchModels(MLIRContext &context);

} // namespace blpa
} // namespace mlir

#include "blpa/Dialect/Blpa/IR/BlpaInterfaces.h.inc"

#endif // BLPA_DIALECT_BLPA_IR_BLPAINTERFACES_H
