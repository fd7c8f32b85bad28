//===- Manifest.cpp - What the driver learns about a compiled model -------===//

#include "Manifest.h"

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/CostModel.h"
#include "blpa/Dialect/Blpa/Transforms/MemoryReport.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::blpa;

FailureOr<ParamTable> mlir::blpa::collectParams(ModuleOp module) {
  ParamTable table;
  WalkResult result = module.walk([&](ParamOp param) {
    auto shape = cast<ShapedType>(param.getType()).getShape();
    auto [it, inserted] =
        table.indexOf.try_emplace(param.getName(), table.entries.size());
    if (inserted) {
      table.entries.push_back({param.getName().str(), param.getTrainable(),
                               SmallVector<int64_t>(shape)});
      return WalkResult::advance();
    }
    const ParamTable::Entry &entry = table.entries[it->second];
    if (ArrayRef<int64_t>(entry.shape) != shape ||
        entry.trainable != param.getTrainable()) {
      param.emitError("parameter '")
          << param.getName() << "' is used with another type or kind";
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  if (result.wasInterrupted())
    return failure();
  return table;
}

static void printDims(llvm::raw_ostream &os, ArrayRef<int64_t> shape) {
  os << shape.size();
  for (int64_t d : shape)
    os << ' ' << d;
}

static StringRef nameOf(DictionaryAttr attrs, StringRef fallback) {
  if (attrs)
    if (auto name = attrs.getAs<StringAttr>("blpa.name"))
      return name.getValue();
  return fallback;
}

/// `kind rank dims... name` for each data input and output of the forward
/// function (the training step's inputs are the same plus the labels).
static void printInterface(llvm::raw_ostream &os, func::FuncOp func,
                           unsigned numDataInputs) {
  for (unsigned i = 0; i < numDataInputs; ++i) {
    auto type = cast<ShapedType>(func.getArgumentTypes()[i]);
    // Token ids: int64, below the bound of the tables they index (0:
    // none reads them).
    if (type.getElementType().isInteger(64)) {
      auto bound = func.getArgAttrOfType<IntegerAttr>(i, "blpa.index_bound");
      os << "index_input " << (bound ? bound.getInt() : 0) << ' ';
    } else {
      os << "input ";
    }
    printDims(os, type.getShape());
    os << ' ' << nameOf(func.getArgAttrDict(i), "input") << '\n';
  }
  if (func.getName() != "forward")
    return;
  for (unsigned i = 0; i < func.getNumResults(); ++i) {
    os << "output ";
    printDims(os, cast<ShapedType>(func.getResultTypes()[i]).getShape());
    os << ' ' << nameOf(func.getResultAttrDict(i), "output") << '\n';
  }
}

/// `op index calls flops bytes name shapes node` for each op of the
/// training step that makes runtime calls, numbered as the lowering numbers
/// its profiling hooks: what a profile needs to name and judge each op.
static void printProfiledOps(llvm::raw_ostream &os, func::FuncOp step) {
  int64_t index = 0;
  for (Operation &op : step.getBody().front()) {
    auto call = dyn_cast<RuntimeCallOpInterface>(op);
    if (!call)
      continue;
    OpCost cost = getOpCost(&op);
    std::string node = getNodeName(&op);
    os << llvm::formatv("op {0} {1} {2:F0} {3:F0} {4} {5}{6}{7}\n", index++,
                        call.getNumRuntimeCalls(), cost.flops, cost.bytes,
                        op.getName(), getShapeSignature(&op),
                        node.empty() ? "" : " ", node);
  }
}

std::string mlir::blpa::buildManifest(ModuleOp module, const ParamTable &params,
                                      const ManifestTotals &totals) {
  std::string text;
  llvm::raw_string_ostream os(text);
  auto step = module.lookupSymbol<func::FuncOp>("train_step");
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  os << "blpa-manifest 1\n";
  os << "mode " << (step ? "train" : "infer") << '\n';
  os << "target " << totals.target << '\n';
  os << "arena " << totals.arenaBytes << '\n';
  if (totals.workspaceBytes)
    os << "workspace 0 " << totals.workspaceBytes << '\n';
  if (forward)
    printInterface(os, forward, forward.getNumArguments());
  else if (step)
    printInterface(os, step, step.getNumArguments() - 1);
  if (step) {
    auto labels = cast<ShapedType>(step.getArgumentTypes().back());
    os << "labels ";
    printDims(os, labels.getShape());
    os << '\n';
    step.walk([&](SoftmaxCrossEntropyOp loss) {
      os << "ignore_index " << int64_t(loss.getIgnoreIndex()) << '\n';
    });
  }
  if (step) {
    // A data-parallel step averages its gradients over replicas: the driver
    // must join the launcher's job before the first step.
    auto buckets = llvm::range_size(step.getOps<AllreduceStartOp>());
    if (buckets)
      os << "data_parallel " << buckets << '\n';
    if (step->hasAttr(kSyncBatchNormAttrName))
      os << "sync_batch_norm\n";
    os << "model " << getModelFingerprint(module) << '\n';
    printProfiledOps(os, step);
  }
  for (auto [index, entry] : llvm::enumerate(params.entries)) {
    os << "param " << index << ' '
       << (entry.trainable ? "trainable " : "state ");
    printDims(os, entry.shape);
    os << ' ' << entry.name << '\n';
  }
  return text;
}
