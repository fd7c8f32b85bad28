//===- BlpaInterfaces.td - Per-op knowledge of blpa ops ----*- tablegen -*-===//

#ifndef BLPA_DIALECT_BLPA_IR_BLPAINTERFACES_TD
#define BLPA_DIALECT_BLPA_IR_BLPAINTERFACES_TD

include "mlir/IR/OpBase.td"

def Blpa_GradientOpInterface : OpInterface<"GradientOpInterface"> {
  let description = [{
    The reverse-mode gradient rule of a differentiable op. The autodiff pass
    calls it once per op, walking the forward ops in reverse.
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<[{
        Builds, at the builder's insertion point, the ops computing the
        adjoint of each operand from the adjoints of the results.
        `resultGrads` has one entry per result; an entry is null when no
        gradient flows into that result. On success `operandGrads` has one
        entry per operand, null for operands that take no gradient
        (non-differentiable inputs such as labels).
      }],
      "::llvm::LogicalResult", "buildGradients",
      (ins "::mlir::OpBuilder &":$builder,
           "::mlir::ValueRange":$resultGrads,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>,
  ];
}

def Blpa_RuntimeCallOpInterface : OpInterface<"RuntimeCallOpInterface"> {
  let description = [{
    How an op executes: the runtime C function it lowers to (declared in
    include/blpa/Runtime/Runtime.h) and that function's argument list after
    the context pointer.
  }];
  let cppNamespace = "::mlir::blpa";
  let methods = [
    InterfaceMethod<"The runtime C function's name.",
      "::llvm::StringRef", "getRuntimeFunction">,
    InterfaceMethod<[{
        Appends the call's arguments after the context: data pointers of
        operands and results, persistent optimizer storage, and static
        shape/attribute values.
      }],
      "void", "getRuntimeArgs",
      (ins "::llvm::SmallVectorImpl<::mlir::blpa::RuntimeArg> &":$args)>,
  ];
}

#endif // BLPA_DIALECT_BLPA_IR_BLPAINTERFACES_TD
