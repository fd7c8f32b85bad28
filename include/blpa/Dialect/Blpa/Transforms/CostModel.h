//===- CostModel.h - Predicted time and gradient error of a plan -*- C++ -*-===//
//
// What a plan of @train_step costs besides its bytes: the time of each op
// (CostOpInterface's operations and bytes through a roofline, or the time a
// profile of this model measured on this machine) and, for each saved tensor
// kept as K-bit codes, a proxy of the error it adds to the gradients.
// docs/design.md ("Cost model") gives the constants, the profile format, the
// fit and how the proxy was checked.
//
//===----------------------------------------------------------------------===//

#ifndef BLPA_DIALECT_BLPA_TRANSFORMS_COSTMODEL_H
#define BLPA_DIALECT_BLPA_TRANSFORMS_COSTMODEL_H

#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/Error.h"

#include <string>

namespace mlir {
namespace blpa {

/// The operand and result shapes of `op`, "32x16x8x8,16x16x3x3->32x16x8x8"
/// (packed codes: "p4:32x16x8x8"; float values the forward pass keeps for
/// the backward pass: "k32x16x8x8"): with the op name and the node, what
/// identifies an op of a step across compiles of one model.
std::string getShapeSignature(Operation *op);

/// The identity of the model a module was compiled from, as 16 hex digits:
/// a hash of its parameters' names and shapes and of its data inputs' shapes
/// past the batch dimension. Independent of the plan and of the batch size.
std::string getModelFingerprint(ModuleOp module);

/// The batch size of the module's step (its first input's first
/// dimension), or 0 without one.
int64_t getModelBatchSize(ModuleOp module);

/// The predicted time of one execution of an op (CostModel::time).
struct OpTime {
  double seconds = 0;
  /// Taken from a profile (or 0 for an op that makes no runtime call),
  /// not estimated.
  bool measured = false;
  /// The noise of the profiled mean: (mean_seconds - min_seconds) /
  /// sqrt(steps), an estimate of its standard error, averaged over the
  /// profiled ops of its key; a saving must exceed it to count. 0 when not
  /// measured.
  double spread = 0;
};

/// Predicts the step time of planned functions and the gradient error of
/// K-bit codes. Cheap: an op's time is a few arithmetic operations, or a
/// hash lookup when calibrated from a profile.
class CostModel {
public:
  /// The analytical model, with nominal constants of the 2-core AMD EPYC
  /// build machines (docs/design.md says where they come from).
  CostModel();

  /// The model calibrated by profiles written by training executables'
  /// `--profile FILE`, of one model and batch size (plans may differ: each
  /// op's time comes from the profiles that ran an op of its name, node and
  /// shapes). Fails (one line naming the file) on an unreadable file, one
  /// that is not such a profile, or one of another model or batch size than
  /// the first.
  static llvm::Expected<CostModel>
  fromProfiles(llvm::ArrayRef<std::string> paths);

  /// Succeeds when the profiles this model was read from describe
  /// `module`'s model at its batch size (always, for the analytical model).
  llvm::Error checkModule(ModuleOp module) const;

  /// The analytical model without `profiles`, else fromProfiles checked
  /// against `module` (checkModule).
  static llvm::Expected<CostModel>
  forModule(ModuleOp module, llvm::ArrayRef<std::string> profiles);

  /// Seconds of one execution of `op`: the profile's mean time of an op of
  /// the same name, node and shapes; otherwise the roofline estimate scaled
  /// by the profile's factor for the op's kind. Ops that make no runtime
  /// call (views, parameters) cost 0.
  double seconds(Operation *op) const;
  /// The sum over the ops of `fn`'s body.
  double seconds(func::FuncOp fn) const;
  /// The roofline estimate: max(flops / flopRate, bytes / bandwidth) plus
  /// callSeconds per runtime call.
  double analyticalSeconds(Operation *op) const;
  /// seconds(op), whether it is a measurement (a profile ran an op of its
  /// name, node and shapes, or it makes no runtime call: only a difference
  /// of measurements tells that one plan of a node is faster than another),
  /// and its spread.
  OpTime time(Operation *op) const;

  /// The error that keeping `saved` (a forward-phase value of @train_step
  /// that backward ops read, before compression) as `bits`-bit codes adds
  /// to the gradients: the quantization noise variance relative to the
  /// tensor's own mean square, summed over the backward readers that use
  /// the decoded values. 0 for 32 (float32) and for what codes keep exactly
  /// (a ReLU mask, argmax codes, activation regions). docs/design.md gives
  /// the formula for each kind of code.
  double gradientError(Value saved, int bits) const;
  /// The same proxy for `codes` of a compressed step (kept by a planned
  /// one): the backward readers gradientError counts are then the decoders'
  /// readers (and the batch norm's gradient, which reads the codes itself).
  /// 0 for exact codes (mask, argmax, region).
  double gradientErrorOfCodes(Value codes) const;

  /// What each of `tensors` (getSavedTensors of the planned `fn`) costs:
  /// the seconds of its getChoiceOps, each by its share, and the
  /// gradientErrorOfCodes of what it keeps; and `fn`'s whole step.
  PredictedCosts predictCosts(func::FuncOp fn,
                              ArrayRef<SavedTensor> tensors) const;

  bool isCalibrated() const { return !profilePaths.empty(); }

  /// Nominal constants of the analytical model.
  double flopRate = 50e9;   // floating-point operations per second
  double bandwidth = 10e9;  // bytes per second
  double callSeconds = 2e-6; // per runtime call (dispatch, OpenMP fork)

  /// max(flops / flopRate, bytes / bandwidth) plus callSeconds per call.
  double roofline(double flops, double bytes, double calls) const;

private:
  double scaledEstimate(Operation *op) const;

  /// Mean measured seconds and spread (OpTime) by "op|node|shapes".
  llvm::StringMap<std::pair<double, double>> measured;
  /// Measured over roofline seconds, summed over the profiled ops of each
  /// op name, and over all of them.
  llvm::StringMap<double> kindFactor;
  double defaultFactor = 1;
  /// The profiles read, and what they were taken of.
  SmallVector<std::string> profilePaths;
  std::string fingerprint;
  int64_t batchSize = 0;
};

} // namespace blpa
} // namespace mlir

#endif // BLPA_DIALECT_BLPA_TRANSFORMS_COSTMODEL_H
