//===- BlpaDialect.h - The blpa dialect -------------------------*- C++ -*-===//

#ifndef BLPA_DIALECT_BLPA_IR_BLPADIALECT_H
#define BLPA_DIALECT_BLPA_IR_BLPADIALECT_H

#include "mlir/IR/Dialect.h"

#include "blpa/Dialect/Blpa/IR/BlpaOpsDialect.h.inc"

#endif // BLPA_DIALECT_BLPA_IR_BLPADIALECT_H
