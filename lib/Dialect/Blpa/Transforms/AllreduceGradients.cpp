//===- AllreduceGradients.cpp - Gradient buckets for data parallelism ----===//
//
// --blpa-allreduce-gradients: each replica of a data-parallel job computes
// gradients on its own part of the batch; before any update they are
// averaged over the replicas. As PyTorch's DistributedDataParallel does,
// gradients are grouped into buckets in the order the backward pass
// finishes them and a bucket's all-reduce starts as soon as its last
// gradient exists, so communication overlaps the rest of the backward
// pass. A bucket is an ordinary tensor (a concatenation), so the memory
// plan places and counts it.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPAALLREDUCEGRADIENTS
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

/// The updates whose gradients are summed together.
using Bucket = SmallVector<SgdUpdateOp>;

/// `value` viewed as `type` (itself when it has that type), in `phase`.
Value reshapeTo(OpBuilder &b, Value value, Type type, Phase phase) {
  if (value.getType() == type)
    return value;
  auto reshape = ReshapeOp::create(b, value.getLoc(), type, value);
  setPhase(reshape, phase);
  return reshape;
}

struct AllreduceGradientsPass
    : public blpa::impl::BlpaAllreduceGradientsBase<AllreduceGradientsPass> {
  using BlpaAllreduceGradientsBase::BlpaAllreduceGradientsBase;

  void runOnOperation() override {
    auto step = getOperation().lookupSymbol<func::FuncOp>("train_step");
    if (!step)
      return;
    Block &body = step.getBody().front();
    DenseMap<Operation *, unsigned> position;
    for (auto [i, op] : llvm::enumerate(body))
      position[&op] = i;
    // The runtime's batch-norm kernels do the synchronizing; the step only
    // says it wants them to (the manifest passes it on).
    if (syncBatchNorm)
      step->setAttr(kSyncBatchNormAttrName, UnitAttr::get(&getContext()));
    SmallVector<SgdUpdateOp> updates(body.getOps<SgdUpdateOp>());
    if (updates.empty())
      return;
    // The order the backward pass finishes the gradients in.
    auto readyAt = [&](SgdUpdateOp update) -> unsigned {
      Operation *def = update.getGrad().getDefiningOp();
      return def ? position.lookup(def) : 0;
    };
    llvm::stable_sort(updates, [&](SgdUpdateOp a, SgdUpdateOp b) {
      return readyAt(a) < readyAt(b);
    });
    SmallVector<Bucket> buckets = groupIntoBuckets(updates);
    Operation *terminator = body.getTerminator();
    for (auto [index, bucket] : llvm::enumerate(buckets)) {
      Value inFlight = startBucket(bucket, index);
      finishBucket(bucket, index, inFlight, terminator);
    }
    numBuckets += buckets.size();
  }

  /// Consecutive gradients up to `bucketBytes` each.
  SmallVector<Bucket> groupIntoBuckets(ArrayRef<SgdUpdateOp> updates) {
    SmallVector<Bucket> buckets;
    int64_t bytes = 0;
    for (SgdUpdateOp update : updates) {
      int64_t size = 4 * ShapedType::getNumElements(getShape(update.getGrad()));
      if (buckets.empty() || bytes + size > bucketBytes) {
        buckets.emplace_back();
        bytes = 0;
      }
      buckets.back().push_back(update);
      bytes += size;
    }
    return buckets;
  }

  /// Concatenates the bucket's gradients right after the last of them is
  /// computed and starts their sum; returns the bucket in flight.
  Value startBucket(Bucket &bucket, int64_t index) {
    // Buckets hold gradients in the order they are finished (a gradient
    // without a producer counts as first).
    Operation *last = bucket.back().getGrad().getDefiningOp();
    OpBuilder b(bucket.front());
    if (last)
      b.setInsertionPointAfter(last);
    else
      b.setInsertionPointToStart(bucket.front()->getBlock());
    Location loc = bucket.front().getLoc();
    // A lone gradient that only its update reads is summed in its own
    // buffer; otherwise the bucket is a copy, so that no other reader sees
    // the buffer while the replicas sum it.
    bool inPlace = bucket.size() == 1 && bucket.front().getGrad().hasOneUse();
    SmallVector<Value> parts;
    for (SgdUpdateOp update : bucket) {
      Value grad = update.getGrad();
      auto flat = RankedTensorType::get(
          {ShapedType::getNumElements(getShape(grad))}, b.getF32Type());
      parts.push_back(reshapeTo(b, grad, flat, Phase::Backward));
    }
    Value joined = parts.front();
    if (!inPlace) {
      auto concat = ConcatOp::create(b, loc, parts, /*axis=*/0);
      setPhase(concat, Phase::Backward);
      joined = concat;
    }
    auto start = AllreduceStartOp::create(b, loc, joined, index);
    setPhase(start, Phase::Backward);
    return start;
  }

  /// Waits for the bucket's mean before `end` and moves its updates there,
  /// each reading its slice of the mean.
  void finishBucket(Bucket &bucket, int64_t index, Value inFlight,
                    Operation *end) {
    OpBuilder b(end);
    Location loc = bucket.front().getLoc();
    auto wait = AllreduceWaitOp::create(b, loc, inFlight, index);
    setPhase(wait, Phase::Backward);
    int64_t offset = 0;
    for (SgdUpdateOp update : bucket) {
      Value grad = update.getGrad();
      int64_t count = ShapedType::getNumElements(getShape(grad));
      Value mean = wait.getResult();
      if (bucket.size() > 1) {
        auto slice = SliceOp::create(b, loc, mean, /*axis=*/0, offset, count);
        setPhase(slice, Phase::Backward);
        mean = slice;
      }
      update.getGradMutable().assign(
          reshapeTo(b, mean, grad.getType(), Phase::Backward));
      update->moveBefore(end);
      offset += count;
    }
  }
};

} // namespace
