//===- FuseGelu.cpp - One blpa.gelu for GELU written op by op -------------===//
//
// --blpa-fuse-gelu: exporters without an ONNX Gelu (torch.onnx before opset
// 20) write nn.GELU as x * (1 + erf(x / sqrt(2))) * 0.5, five element-wise
// ops whose four intermediates the backward pass would keep. The pattern
// below matches that expression (either order of the products, constants
// on either side) and replaces it with blpa.gelu(x): one kernel, one saved
// tensor (x), the same function to float32 rounding.
//
//===----------------------------------------------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "blpa/Dialect/Blpa/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <cmath>

namespace mlir {
namespace blpa {
#define GEN_PASS_DEF_BLPAFUSEGELU
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"
} // namespace blpa
} // namespace mlir

using namespace mlir;
using namespace mlir::blpa;

namespace {

/// Whether `v` is a blpa.fill of `value` (to float32 precision).
bool isFill(Value v, double value) {
  auto fill = v.getDefiningOp<FillOp>();
  return fill && std::abs(fill.getValue().convertToDouble() - value) <=
                     1e-6 * std::abs(value);
}

/// The operand of the commutative `op` that is not a fill of `value`, when
/// the other one is.
template <typename OpTy> Value otherThanFill(OpTy op, double value) {
  if (!op)
    return Value();
  if (isFill(op.getRhs(), value))
    return op.getLhs();
  if (isFill(op.getLhs(), value))
    return op.getRhs();
  return Value();
}

/// The x of `v` = 1 + erf(x / sqrt(2)), or null.
Value erfTermInput(Value v) {
  Value erfValue = otherThanFill(v.getDefiningOp<AddOp>(), 1.0);
  auto erf = erfValue ? erfValue.getDefiningOp<ErfOp>() : nullptr;
  auto div = erf ? erf.getInput().getDefiningOp<DivOp>() : nullptr;
  if (!div || !isFill(div.getRhs(), std::sqrt(2.0)))
    return Value();
  return div.getLhs();
}

/// Whether `v` is x * (1 + erf(x / sqrt(2))) (either order).
bool isXTimesErfTerm(Value v, Value x) {
  auto mul = v.getDefiningOp<MulOp>();
  return mul && ((mul.getLhs() == x && erfTermInput(mul.getRhs()) == x) ||
                 (mul.getRhs() == x && erfTermInput(mul.getLhs()) == x));
}

/// The x of a GELU written out as a product of x, 1 + erf(x / sqrt(2)) and
/// 0.5 in one of the orders exporters use; null when `root` is none.
Value matchGelu(MulOp root) {
  // (x * (1 + erf)) * 0.5
  if (Value product = otherThanFill(root, 0.5)) {
    auto inner = product.getDefiningOp<MulOp>();
    for (Value x : inner ? SmallVector<Value>{inner.getLhs(), inner.getRhs()}
                         : SmallVector<Value>{})
      if (isXTimesErfTerm(product, x))
        return x;
  }
  // (x * 0.5) * (1 + erf)
  for (auto [half, term] : {std::pair(root.getLhs(), root.getRhs()),
                            std::pair(root.getRhs(), root.getLhs())}) {
    Value x = otherThanFill(half.getDefiningOp<MulOp>(), 0.5);
    if (x && erfTermInput(term) == x)
      return x;
  }
  return Value();
}

struct GeluPattern : public OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(MulOp root,
                                PatternRewriter &rewriter) const override {
    Value x = matchGelu(root);
    if (!x || x.getType() != root.getType())
      return failure();
    rewriter.replaceOpWithNewOp<GeluOp>(root, root.getType(), x,
                                        /*tanh_approximation=*/false);
    return success();
  }
};

struct FuseGeluPass : public blpa::impl::BlpaFuseGeluBase<FuseGeluPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<GeluPattern>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};

} // namespace
