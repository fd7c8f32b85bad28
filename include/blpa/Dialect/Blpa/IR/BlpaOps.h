//===- BlpaOps.h - blpa dialect ops -----------------------------*- C++ -*-===//

#ifndef BLPA_DIALECT_BLPA_IR_BLPAOPS_H
#define BLPA_DIALECT_BLPA_IR_BLPAOPS_H

#include "blpa/Dialect/Blpa/IR/BlpaDialect.h"
#include "blpa/Dialect/Blpa/IR/BlpaInterfaces.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

#include <optional>

#define GET_TYPEDEF_CLASSES
#include "blpa/Dialect/Blpa/IR/BlpaOpsTypes.h.inc"

#define GET_OP_CLASSES
#include "blpa/Dialect/Blpa/IR/BlpaOps.h.inc"

namespace mlir {
namespace blpa {

/// The phase of an op in a training step, recorded by --blpa-autodiff as the
/// discardable attribute `blpa.phase`. The planner and the memory report use
/// it: a saved activation is a value defined in the forward phase and read in
/// the backward phase.
enum class Phase { Forward, Backward, Update };

constexpr llvm::StringLiteral kPhaseAttrName = "blpa.phase";
/// On `@train_step`: its training-mode batch norms normalize the batches of
/// every data-parallel replica together (--sync-batch-norm).
constexpr llvm::StringLiteral kSyncBatchNormAttrName = "blpa.sync_batch_norm";

void setPhase(Operation *op, Phase phase);

/// Whether `op` carries `blpa.phase` = `phase` (ops outside a training step
/// carry none).
bool isInPhase(Operation *op, Phase phase);

/// Whether a backward-phase op reads a result of `op`: a forward op whose
/// results are saved activations.
bool hasBackwardReaders(Operation *op);

/// Replaces each result of `from` with the result of `to` at the same
/// position and erases `from`; `to` takes its phase (and its
/// blpa.act_choice and blpa.recompute_id).
void replaceKeepingPhase(Operation *from, Operation *to);

/// Points `uses` (in one block) at the value `build` creates right before
/// the first of them, in the backward phase: decoders run as late as
/// possible, so that only codes live across the step.
void decodeBeforeFirstUse(
    ArrayRef<OpOperand *> uses,
    llvm::function_ref<Value(OpBuilder &, Location)> build);

/// What the owner of `use` needs of the value (SavedActivationOpInterface;
/// the values themselves for ops without it).
ActivationNeed getActivationNeed(OpOperand &use);

/// Whether every element of `v` is known to be >= 0.
bool isKnownNonNegative(Value v);

/// Whether `op` only writes codes of its first operand and the floats that
/// decode them (blpa.quantize, blpa.probability_encode): an encoder
/// --blpa-compress-activations placed, whose input is the saved tensor.
bool isCodesWriter(Operation *op);

/// Whether `v` is the few floats per channel or per row that decode codes
/// (a quantizer's ranges, probability codes' row scales) rather than a
/// float32 tensor of its own.
bool isCodeParams(Value v);

/// Marks a forward op whose saved results --blpa-compress-activations kept
/// in float32 on purpose (too small to matter, or asked for per op), so that
/// the decision is visible in the IR.
constexpr llvm::StringLiteral kSavedPolicyAttrName = "blpa.saved";
/// What the backward pass keeps of the saved results of a forward op of a
/// training step, chosen per op by --blpa-assign-activation-choices (from
/// the user's pins) or by the memory-budget solver: "float32", "8", "4",
/// "2" (K-bit codes) or "recompute". Without it, the pipeline's default.
constexpr llvm::StringLiteral kActChoiceAttrName = "blpa.act_choice";

/// Set by --blpa-recompute on a forward op it recomputes: a number that
/// identifies the op within its function, so that the ops recomputing it can
/// name it (kRecomputesAttrName).
constexpr llvm::StringLiteral kRecomputeIdAttrName = "blpa.recompute_id";
/// On a backward op that computes forward values again: the
/// blpa.recompute_id of each forward op whose results it recomputes (a
/// --blpa-recompute copy: its op; a fused copy: every op fused into it),
/// or none for a recomputation that no choice asked for (the ReLU output
/// --blpa-fuse-batch-norm-relu recomputes).
constexpr llvm::StringLiteral kRecomputesAttrName = "blpa.recomputes";

/// Gives `op` the blpa.act_choice of `other` when that is more exact
/// (getExactnessRank; a tie keeps `op`'s), as the pins of one tensor are
/// resolved: an op that takes over another's work keeps what both asked.
void mergeActivationChoice(Operation *op, Operation *other);
/// Adds the blpa.recomputes ids of `other` to those of `op` (an op that
/// now recomputes what `other` did too).
void mergeRecomputes(Operation *op, Operation *other);
/// Makes `op` (a forward op that takes over `other`'s work, which is then
/// erased) stand for `other`'s blpa.recompute_id too: `op` takes it, or,
/// when `op` has one already, the ops recomputing `other` are to name
/// `op`'s instead: `renames` records it, for renameRecomputes to apply to
/// all of them at once (one walk of the function, not one per merge).
void mergeRecomputeId(Operation *op, Operation *other,
                      llvm::DenseMap<int64_t, int64_t> &renames);
/// Applies the renames of mergeRecomputeId to the blpa.recomputes of the
/// ops of `block`.
void renameRecomputes(Block &block,
                      const llvm::DenseMap<int64_t, int64_t> &renames);

/// Whether `choice` is a value of `blpa.act_choice`.
bool isActivationChoice(llvm::StringRef choice);

/// Orders choices by how exactly the backward pass sees the tensor:
/// float32 and recompute (exact from exact inputs) above 8, 4 and 2 bits.
/// Where several pins name one tensor, the highest rank wins.
int getExactnessRank(llvm::StringRef choice);
/// The width at which `op`'s blpa.act_choice keeps its saved results: 8, 4
/// or 2 for codes, 0 for float32 and recompute (kept exact); none without a
/// choice (the pipeline's default then applies).
std::optional<int64_t> getActChoiceBits(Operation *op);

/// The op's phase; ops without the attribute (inference programs) are
/// forward.
Phase getPhase(Operation *op);
llvm::StringRef stringifyPhase(Phase phase);

/// Number of bytes of a statically shaped tensor or of packed codes.
int64_t getTensorBytes(Type type);

/// Bits of the argmax codes of a max-pooling window of `kernelShape`: the
/// fewest of 1, 2, 4, 8 that number every position; none past 256.
std::optional<unsigned> getArgmaxCodeBits(ArrayRef<int64_t> kernelShape);

/// The static shape of a tensor value.
ArrayRef<int64_t> getShape(Value value);

/// Numpy broadcasting of two shapes (right-aligned; each pair of dimensions
/// equal or one of them 1); failure if they do not broadcast.
FailureOr<SmallVector<int64_t>> broadcastShapes(ArrayRef<int64_t> a,
                                                ArrayRef<int64_t> b);

/// The gradient rule of every element-wise activation op: one
/// blpa.activation_grad reading the op's input, or its output when `act`
/// says so.
LogicalResult buildActivationGradient(Operation *op, const Activation &act,
                                      OpBuilder &b, ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads);

/// The compression rule of every element-wise activation op whose gradient
/// reads its input (SavedActivationOpInterface::encodeSavedActivations):
/// codes of the input, which the output's backward readers also read,
/// through a copy of `op` on the decoded input (GELU's output is the next
/// linear layer's input). Returns whether it rewrote anything.
bool encodeActivationInput(Operation *op, const Activation &act,
                           const ActivationEncoding &encoding);

/// The runtime function of an activation: blpa_activation, or
/// blpa_activation_dynamic when a parameter is given at run time.
llvm::StringRef activationRuntimeFunction(const Activation &act);

} // namespace blpa
} // namespace mlir

#endif // BLPA_DIALECT_BLPA_IR_BLPAOPS_H
