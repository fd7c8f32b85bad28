//===- Passes.h - blpa transformation passes --------------------*- C++ -*-===//

#ifndef BLPA_DIALECT_BLPA_TRANSFORMS_PASSES_H
#define BLPA_DIALECT_BLPA_TRANSFORMS_PASSES_H

#include "blpa/Dialect/Blpa/IR/BlpaOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
namespace blpa {

#define GEN_PASS_DECL
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "blpa/Dialect/Blpa/Transforms/Passes.h.inc"

} // namespace blpa
} // namespace mlir

#endif // BLPA_DIALECT_BLPA_TRANSFORMS_PASSES_H
