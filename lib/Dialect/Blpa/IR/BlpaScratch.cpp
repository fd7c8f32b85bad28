//===- BlpaScratch.cpp - Scratch the CPU kernels take besides operands ----===//
//
// ScratchOpInterface for the convolutions, whose CPU kernels (oneDNN) copy
// the data operands and the weights into blocked layouts, with channels
// padded to a multiple of 16, and take a scratchpad (backward-weights
// reduces per-thread partial gradients in it). The figures bound what
// lib/Runtime/CPU/Conv.cpp takes for the whole batch at once; the runtime
// measures the exact need of each chunk and chunks to fit the workspace.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

using namespace mlir;
using namespace mlir::blpa;

namespace {

int64_t padChannels(int64_t channels) { return (channels + 15) / 16 * 16; }

/// Bytes of `dims` ([N, C, spatial...] or [K, C/group, kernel...]) with
/// dimension 1 padded to the blocked layouts' 16 channels.
int64_t blockedBytes(ArrayRef<int64_t> dims, bool padDim0 = false) {
  int64_t elements = 1;
  for (auto [i, d] : llvm::enumerate(dims))
    elements *= (i == 1 || (i == 0 && padDim0)) ? padChannels(d) : d;
  return int64_t(sizeof(float)) * elements;
}

ArrayRef<int64_t> shapeOf(Value v) {
  return cast<ShapedType>(v.getType()).getShape();
}

/// The blocked copies of the input, the output and the weights (dimension
/// 0, the output channels, padded too; backward-weights has the gradient's
/// instead); four weight-sized buffers, at most 256 KiB, for the
/// scratchpad; and 5% for what the layouts pad besides
/// channels, rounded up to 4 KiB. On the pre-activation ResNet-164 and
/// torchvision's resnet50 this is at least what oneDNN 2.6 takes (AVX-512,
/// 2 threads; docs/design.md, "CPU runtime").
int64_t convScratch(ArrayRef<int64_t> input, ArrayRef<int64_t> output,
                    ArrayRef<int64_t> weight) {
  int64_t weights = blockedBytes(weight, /*padDim0=*/true);
  int64_t bytes = blockedBytes(input) + blockedBytes(output) + weights +
                  std::min<int64_t>(4 * weights, int64_t(256) << 10);
  return (bytes + bytes / 20 + 4095) / 4096 * 4096;
}

template <typename Op, int64_t (*scratch)(Op)>
struct ScratchModelOf
    : public ScratchOpInterface::ExternalModel<ScratchModelOf<Op, scratch>,
                                               Op> {
  int64_t getCpuScratchBytes(Operation *op) const {
    return scratch(cast<Op>(op));
  }
};

int64_t convForward(ConvOp op) {
  return convScratch(shapeOf(op.getInput()), shapeOf(op.getOutput()),
                     shapeOf(op.getWeight()));
}
int64_t convGradInput(ConvGradInputOp op) {
  return convScratch(op.getInputShape(), shapeOf(op.getGrad()),
                     shapeOf(op.getWeight()));
}
int64_t convGradWeight(ConvGradWeightOp op) {
  return convScratch(shapeOf(op.getInput()), shapeOf(op.getGrad()),
                     op.getWeightShape());
}

} // namespace

void mlir::blpa::registerScratchModels(MLIRContext &context) {
  ConvOp::attachInterface<ScratchModelOf<ConvOp, convForward>>(context);
  ConvGradInputOp::attachInterface<
      ScratchModelOf<ConvGradInputOp, convGradInput>>(context);
  ConvGradWeightOp::attachInterface<
      ScratchModelOf<ConvGradWeightOp, convGradWeight>>(context);
}
