//===- Autodiff.cpp - Build the training step from @forward ---------------===//
//
// Reverse-mode automatic differentiation over the single block of @forward.
// The gradient of each op comes from its GradientOpInterface; this pass only
// orders the calls, sums adjoints of values with several uses, and appends
// the optimizer and running-statistics updates.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/DenseMap.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPAAUTODIFF
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

/// Trains every inference-mode batch norm with batch statistics: a user who
/// hands us a model exported in eval mode to train means training mode. One
/// warning, on the first such node, says so.
void trainInferenceBatchNorms(func::FuncOp func) {
  SmallVector<BatchNormInferenceOp> ops;
  func.walk([&](BatchNormInferenceOp op) { ops.push_back(op); });
  if (ops.empty())
    return;
  ops.front().emitWarning("BatchNormalization is in inference mode "
                          "(training_mode=0) in ")
      << ops.size()
      << " node(s); they are trained in training mode (batch statistics)";
  for (BatchNormInferenceOp op : ops) {
    OpBuilder b(op);
    auto train = BatchNormOp::create(b, op.getLoc(), op.getInput(),
                                     op.getScale(), op.getBias(),
                                     op.getRunningMean(), op.getRunningVar(),
                                     op.getEpsilonAttr(), op.getMomentumAttr());
    op.replaceAllUsesWith(train.getOutput());
    op.erase();
  }
}

/// The loss is softmax cross-entropy on the first output. On a LogSoftmax
/// output that is the NLL loss a PyTorch user means (log-softmax is
/// idempotent); on a Softmax output it would apply softmax twice, so say so
/// (the ONNX node) and what to do.
void warnIfSoftmaxOutput(Value logits) {
  while (auto reshape = logits.getDefiningOp<ReshapeOp>())
    logits = reshape.getInput();
  if (auto softmax = logits.getDefiningOp<SoftmaxOp>())
    softmax.emitWarning(
        "the first output is a Softmax's, and the training loss (softmax "
        "cross-entropy) applies softmax again; export the logits (the "
        "Softmax's input) or a LogSoftmax as the first output");
}

/// Adjoints of the values of one function, summed over their uses.
class AdjointMap {
public:
  Value lookup(Value v) const { return adjoints.lookup(v); }

  void accumulate(OpBuilder &b, Location loc, Value v, Value grad) {
    Value &slot = adjoints[v];
    slot = slot ? Value(AddOp::create(b, loc, slot, grad)) : grad;
  }

private:
  llvm::DenseMap<Value, Value> adjoints;
};

struct AutodiffPass : public blpa::impl::BlpaAutodiffBase<AutodiffPass> {
  using BlpaAutodiffBase::BlpaAutodiffBase;
  void runOnOperation() override;

private:
  FailureOr<func::FuncOp> createTrainStep(func::FuncOp forward);
  LogicalResult buildBackward(func::FuncOp step, Value loss,
                              AdjointMap &adjoints);
  void buildUpdates(func::FuncOp step, const AdjointMap &adjoints);
};

} // namespace

/// A training executable feeds every graph input batch by batch as data,
/// so none may be a parameter an op reads at run time (Clip's bounds given
/// as inputs): the training loop has nothing to feed it.
static LogicalResult checkNoRunTimeScalarInputs(func::FuncOp forward) {
  WalkResult result = forward.walk([&](RunTimeScalarOpInterface op) {
    SmallVector<Value> scalars;
    op.getRunTimeScalars(scalars);
    for (Value scalar : scalars) {
      auto arg = dyn_cast<BlockArgument>(scalar);
      if (!arg)
        continue;
      auto name =
          forward.getArgAttrOfType<StringAttr>(arg.getArgNumber(), "blpa.name");
      op->emitError("graph input '")
          << (name ? name.getValue() : "?")
          << "' is a parameter read at run time (a bound or a padding "
             "value), which a training executable cannot feed (it feeds "
             "graph inputs as batches of data); make it an initializer or "
             "a Constant, or compile with --infer";
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return failure(result.wasInterrupted());
}

FailureOr<func::FuncOp> AutodiffPass::createTrainStep(func::FuncOp forward) {
  if (failed(checkNoRunTimeScalarInputs(forward)))
    return failure();
  auto returnOp = cast<func::ReturnOp>(forward.getBody().front().back());
  if (returnOp.getNumOperands() == 0)
    return forward.emitError("@forward returns nothing to compute a loss on");
  auto logitsType = cast<ShapedType>(returnOp.getOperand(0).getType());
  if (logitsType.getRank() < 2)
    return forward.emitError("the loss needs logits of shape [N, classes] "
                             "(or [N, T, classes]); the first output has type ")
           << logitsType;

  func::FuncOp step = forward.clone();
  step.setName("train_step");
  OpBuilder b(forward->getContext());
  b.setInsertionPointAfter(forward);
  b.insert(step);

  Block &body = step.getBody().front();
  auto labelsType = RankedTensorType::get(logitsType.getShape().drop_back(),
                                          b.getI64Type());
  body.addArgument(labelsType, forward.getLoc());
  unsigned labelsIndex = body.getNumArguments() - 1;
  SmallVector<Type> argTypes(body.getArgumentTypes());
  step.setType(
      b.getFunctionType(argTypes, {RankedTensorType::get({}, b.getF32Type())}));
  SmallVector<Attribute> argAttrs;
  for (unsigned i = 0; i < labelsIndex; ++i)
    argAttrs.push_back(forward.getArgAttrDict(i)
                           ? Attribute(forward.getArgAttrDict(i))
                           : b.getDictionaryAttr({}));
  argAttrs.push_back(b.getDictionaryAttr(
      b.getNamedAttr("blpa.name", b.getStringAttr("labels"))));
  step.setAllArgAttrs(argAttrs);
  step.setAllResultAttrs(ArrayRef<DictionaryAttr>{b.getDictionaryAttr(
      b.getNamedAttr("blpa.name", b.getStringAttr("loss")))});
  return step;
}

LogicalResult AutodiffPass::buildBackward(func::FuncOp step, Value loss,
                                          AdjointMap &adjoints) {
  Block &body = step.getBody().front();
  Operation *returnOp = body.getTerminator();
  SmallVector<Operation *> forwardOps;
  for (Operation &op : body.without_terminator())
    forwardOps.push_back(&op);

  OpBuilder b(returnOp);
  adjoints.accumulate(
      b, loss.getLoc(), loss,
      FillOp::create(b, loss.getLoc(), loss.getType(), llvm::APFloat(1.0)));
  for (Operation *op : llvm::reverse(forwardOps)) {
    SmallVector<Value> resultGrads;
    for (Value result : op->getResults())
      resultGrads.push_back(adjoints.lookup(result));
    // Parameters are the leaves: their adjoints are the gradients.
    if (isa<ParamOp>(op) ||
        llvm::all_of(resultGrads, [](Value v) { return !v; }))
      continue;
    auto rule = dyn_cast<GradientOpInterface>(op);
    if (!rule)
      return op->emitError("no gradient rule for '")
             << op->getName() << "'; it cannot be trained through";
    SmallVector<Value> operandGrads;
    if (failed(rule.buildGradients(b, resultGrads, operandGrads)))
      return failure();
    for (auto [operand, grad] : llvm::zip(op->getOperands(), operandGrads))
      if (grad)
        adjoints.accumulate(b, op->getLoc(), operand, grad);
  }
  return success();
}

void AutodiffPass::buildUpdates(func::FuncOp step, const AdjointMap &adjoints) {
  Operation *returnOp = step.getBody().front().getTerminator();
  OpBuilder b(returnOp);
  step.walk([&](ParamOp param) {
    if (!param.getTrainable())
      return;
    // A parameter that does not influence the loss has no adjoint and is
    // left unchanged, as in PyTorch (its .grad stays None).
    if (Value grad = adjoints.lookup(param.getResult())) {
      SgdUpdateOp::create(b, param.getLoc(), param.getResult(), grad);
      ++numUpdates;
    }
  });
  step.walk([&](BatchNormOp bn) {
    // Statistics given as graph inputs (an inference model) are not state.
    if (!bn.getRunningMean().getDefiningOp<ParamOp>() ||
        !bn.getRunningVar().getDefiningOp<ParamOp>())
      return;
    int64_t count = cast<ShapedType>(bn.getInput().getType()).getNumElements() /
                    cast<ShapedType>(bn.getMean().getType()).getNumElements();
    UpdateRunningStatsOp::create(
        b, bn.getLoc(), bn.getRunningMean(), bn.getRunningVar(), bn.getMean(),
        bn.getInvStd(), bn.getMomentumAttr(), bn.getEpsilonAttr(),
        b.getI64IntegerAttr(count));
    ++numUpdates;
  });
}

/// Records each op's phase: forward ops precede the seed of the backward
/// pass, update ops have side effects, everything else is backward.
static void markPhases(func::FuncOp step, Operation *firstBackwardOp) {
  Phase phase = Phase::Forward;
  for (Operation &op : step.getBody().front().without_terminator()) {
    if (&op == firstBackwardOp)
      phase = Phase::Backward;
    bool isUpdate = isa<SgdUpdateOp, UpdateRunningStatsOp>(op);
    setPhase(&op, isUpdate ? Phase::Update : phase);
  }
}

void AutodiffPass::runOnOperation() {
  ModuleOp module = getOperation();
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward) {
    module.emitError("no func.func @forward to differentiate");
    return signalPassFailure();
  }
  if (module.lookupSymbol("train_step")) {
    module.emitError("the module already has a @train_step");
    return signalPassFailure();
  }
  FailureOr<func::FuncOp> step = createTrainStep(forward);
  if (failed(step))
    return signalPassFailure();
  trainInferenceBatchNorms(*step);
  warnIfSoftmaxOutput(forward.getBody().front().getTerminator()->getOperand(0));

  Block &body = step->getBody().front();
  auto returnOp = cast<func::ReturnOp>(body.getTerminator());
  OpBuilder b(returnOp);
  Value loss = SoftmaxCrossEntropyOp::create(b, returnOp.getLoc(),
                                             returnOp.getOperand(0),
                                             body.getArguments().back(),
                                             ignoreIndex.getValue());
  unsigned numForwardOps = body.getOperations().size() - 1;

  AdjointMap adjoints;
  if (failed(buildBackward(*step, loss, adjoints)))
    return signalPassFailure();
  buildUpdates(*step, adjoints);
  returnOp->setOperands(loss);

  Operation *firstBackwardOp = &*std::next(body.begin(), numForwardOps);
  numGradientOps = body.getOperations().size() - 1 - numForwardOps;
  markPhases(*step, firstBackwardOp);

  // Gradient rules build every operand's adjoint; drop the ones nothing
  // needs (e.g. the adjoint of the network input).
  IRRewriter rewriter(&getContext());
  (void)runRegionDCE(rewriter, step->getBody());
}
