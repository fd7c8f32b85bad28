//===- Passes.h - blpa conversion passes ------------------------*- C++ -*-===//

#ifndef BLPA_CONVERSION_PASSES_H
#define BLPA_CONVERSION_PASSES_H

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
namespace blpa {

#define GEN_PASS_DECL
#include "blpa/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "blpa/Conversion/Passes.h.inc"

} // namespace blpa
} // namespace mlir

#endif // BLPA_CONVERSION_PASSES_H
