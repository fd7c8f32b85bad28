//===- BlpaDialect.cpp - The blpa dialect ---------------------------------===//

#include "blpa/Dialect/Blpa/IR/BlpaDialect.h"
#include "blpa/Dialect/Blpa/IR/BlpaOps.h"

using namespace mlir;
using namespace mlir::blpa;

#include "blpa/Dialect/Blpa/IR/BlpaOpsDialect.cpp.inc"

void BlpaDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "blpa/Dialect/Blpa/IR/BlpaOps.cpp.inc"
      >();
}
