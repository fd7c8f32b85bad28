//===- BlpaDialect.td - The blpa dialect -------------------*- tablegen -*-===//

#ifndef BLPA_DIALECT_BLPA_IR_BLPADIALECT_TD
#define BLPA_DIALECT_BLPA_IR_BLPADIALECT_TD

include "mlir/IR/OpBase.td"

def Blpa_Dialect : Dialect {
  let name = "blpa";
  let summary = "Tensor-level training IR for memory-efficient backprop";
  let description = [{
    Value-semantics tensor ops (static shapes, f32, NCHW) for the forward
    pass, the loss, the backward pass and the optimizer update of a network
    imported from ONNX. Parameters are referenced by their ONNX initializer
    name through `blpa.param`. Ops carry the per-op knowledge the compiler
    needs through interfaces: result types (InferTypeOpInterface), the
    gradient rule (GradientOpInterface) and the runtime call they lower to
    (RuntimeCallOpInterface).
  }];
  let cppNamespace = "::mlir::blpa";
  // Checks the discardable `blpa.phase` attribute autodiff records.
  let hasOperationAttrVerify = 1;
  let useDefaultTypePrinterParser = 1;
}

class Blpa_Op<string mnemonic, list<Trait> traits = []>
    : Op<Blpa_Dialect, mnemonic, traits>;

#endif // BLPA_DIALECT_BLPA_IR_BLPADIALECT_TD
